"""bench/device_check.py and bench/bench_loso.py: the time plan, the figures and the synthetic LOSO set."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_loso  # noqa: E402
import device_check  # noqa: E402


def test_time_limits_fit_the_promised_minutes():
    # The promise: at most 8 minutes with CUDA, 5 without (a few seconds left for start-up).
    assert sum(part["limit"] for part in device_check.plan(True, 6).values()) <= 8 * 60 - 15
    assert sum(part["limit"] for part in device_check.plan(False, 2).values()) <= 5 * 60 - 15


def test_extraction_ratios():
    part = {"extract_device": {"extract": {"methods": {"selfme": {"pairs_per_second": 300.0},
                                                       "selfme_bf16": {"pairs_per_second": 480.0},
                                                       "tvl1": {"pairs_per_second": 60.0}}}},
            "extract_cpu": {"extract": {"methods": {"tvl1": {"pairs_per_second": 2.0, "cpu_ms_per_pair": 400.0}}}}}
    figures = device_check.extraction_figures(part)
    assert figures["learned_over_tvl1_same_device"] == 5.0
    assert figures["learned_over_tvl1_cpu"] == 150.0 and figures["tvl1_device_over_tvl1_cpu"] == 30.0
    assert figures["learned_bf16_over_tvl1_same_device"] == 8.0 and figures["learned_bf16_over_tvl1_cpu"] == 240.0
    assert figures["learned_over_tvl1_cpu_time"] is None  # no learned row on the CPU: no CPU-time ratio
    cpu_only = device_check.extraction_figures({"extract_cpu": part["extract_device"]})  # no GPU: one device
    assert cpu_only["learned_over_tvl1_same_device"] == cpu_only["learned_over_tvl1_cpu"] == 5.0
    assert cpu_only["tvl1_device_over_tvl1_cpu"] is None
    assert device_check.extraction_figures({"extract_cpu": {"extract": {"methods": {
        "selfme": {"pairs_per_second": 10.0, "cpu_ms_per_pair": 100.0},
        "tvl1": {"pairs_per_second": 2.0, "cpu_ms_per_pair": 450.0}}}}})["learned_over_tvl1_cpu_time"] == 4.5


def test_table_reports_a_failed_part_and_the_others():
    report = {"host": {"cuda": False, "cpu_count": 2, "torch_threads": 1}, "seconds": 12.0,
              "extract": {"error": "timed out after 75 s"}, "loso": {"error": "bench_loso.py exited 1: boom"},
              "motion": {"motion": {"images_per_second": 0.1, "image_size": 256, "batch_size": 1,
                                    "bf16_autocast": False, "cpu_peak_rss_gib": 2.4,
                                    "per_step": [{"seconds": 9.0, "peak_gib": 2.3}, {"seconds": 8.0, "peak_gib": 2.4}]}}}
    text = device_check.table(report)
    assert "timed out after 75 s" in text and "boom" in text
    assert "0.10 images/s" in text and "9.00 s / 2.3 GiB, 8.00 s / 2.4 GiB" in text


def test_casme2_sized_set(tmp_path):
    index = pd.read_csv(bench_loso.casme2_sized_index(tmp_path, 8))
    assert len(index) == 145 and index["subject"].nunique() == 24
    assert index["label_id"].value_counts().sort_index().tolist() == [88, 32, 25]
    assert index.groupby("subject").size().min() >= 2
