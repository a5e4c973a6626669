"""The extract stage's function: contract files, skipping, conventions, gamma (selfme.extract)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

from selfme.bspline import bspline_expand, invert_displacement
from selfme.datasets import MANIFEST_COLUMNS
from selfme.extract import ExtractConfig, MotionEngine, evaluate_methods, expand_learned, extract_dataset
from selfme.extract.cli import config_from_args, register
from selfme.motion.dense_motion import DenseMotionNetwork
from selfme.motion.model import MotionLearner
from motion_testing import tiny_motion

TINY = tiny_motion(kp_detector={"scale_factor": 1, "pad": 0})
SHIFTS = {"EP01_01": (0.6, -0.4), "EP02_01": (-0.3, 0.8)}
SIZE = 64


@pytest.fixture(scope="module")
def learner() -> MotionLearner:
    torch.manual_seed(0)
    return MotionLearner(config=TINY).eval()


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    """Two clips of 64 x 64 RGB crops (onset 1, apex 3 = onset shifted by a known sub-pixel translation),
    their ground truth, landmarks and transform; returns the crop manifest's path."""
    base = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    rows = []
    for k, (clip, (dx, dy)) in enumerate(SHIFTS.items()):
        folder = tmp_path / "faces" / f"sub0{k + 1}" / clip
        folder.mkdir(parents=True)
        for n in (1, 2, 3, 4):
            s = (dx, dy) if n >= 3 else (0.0, 0.0)
            frame = cv2.warpAffine(base, np.float32([[1, 0, s[0]], [0, 1, s[1]]]), (SIZE, SIZE),
                                   flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
            cv2.imwrite(str(folder / f"img{n}.png"), np.clip(np.rint(frame), 0, 255).astype(np.uint8)[:, :, ::-1])
        truth = tmp_path / "faces" / "ground_truth" / f"sub0{k + 1}" / f"{clip}.npy"
        truth.parent.mkdir(parents=True, exist_ok=True)
        np.save(truth, np.broadcast_to(np.float32([dx, dy]), (SIZE, SIZE, 2)).copy())
        rows.append({"dataset": "tiny", "subject": f"sub0{k + 1}", "clip": clip, "label": "positive", "label_id": 1,
                     "source_label": "happiness", "onset": 1, "apex": 3, "offset": 4, "apex_source": "annotated",
                     "frames_dir": folder.as_posix(), "n_frames": 4, "fps": 200.0, "color": "rgb",
                     "landmarks": json.dumps([[10, 10], [50, 12], [52, 50], [12, 52]]),
                     "transform": json.dumps([[1, 0, 0], [0, 1, 0]]), "ground_truth": truth.as_posix()})
    manifest = tmp_path / "faces" / "manifest.csv"
    pd.DataFrame(rows)[MANIFEST_COLUMNS + ["landmarks", "transform", "ground_truth"]].to_csv(manifest, index=False)
    return manifest


def test_extraction_writes_the_contract_and_skips_on_rerun(tiny, tmp_path, learner):
    out = tmp_path / "motion" / "selfme" / "tiny"
    config = ExtractConfig.from_mapping({"gamma": 2.0, "batch_size": 2, "plot_clips": 1}, method="selfme")
    summary = extract_dataset(tiny, out, config=config, learner=learner, metrics_path=tmp_path / "m.json",
                              timing_path=tmp_path / "timing.json", plots_dir=tmp_path / "plots", progress=False)
    assert summary["computed"] == 2 and summary["skipped"] == 0 and summary["clips_with_ground_truth"] == 2
    for clip in SHIFTS:
        subject = "sub01" if clip == "EP01_01" else "sub02"
        flow = np.load(out / subject / f"{clip}.npy")
        assert flow.dtype == np.float16 and flow.shape == (SIZE, SIZE, 2)  # crop size, not the learner's 32
        side = json.loads((out / subject / f"{clip}.json").read_text())
        assert side["method"] == "selfme" and side["gamma"] == 2.0 and side["bspline"] is True
        assert side["crop_size"] == [SIZE, SIZE] and len(side["source_checksum"]) == 64
        assert side["ss_steps"] == 7 and "onset(x) ~= apex(x + F(x))" in side["convention"]
        assert {"folding_raw", "folding", "epe_all", "epe_face", "epe_expression"} <= set(side["quality"])
    index = pd.read_csv(out / "index.csv", dtype={"subject": str, "clip": str})
    assert list(index["motion_path"]) == [(out / s / f"{c}.npy").as_posix() for s, c in
                                          [("sub01", "EP01_01"), ("sub02", "EP02_01")]]
    assert set(MANIFEST_COLUMNS) <= set(index.columns)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["method"] == "selfme" and "all" in metrics["epe"]
    # Run times and the device differ between identical runs: only in the timing file, never in the
    # metrics or the sidecars inside the output.
    assert not {"seconds_per_pair", "pairs_per_second", "devices"} & set(metrics)
    assert not {"seconds", "device"} & set(side)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["computed"] == 2 and timing["seconds_per_pair"] > 0 and timing["device"] == "cpu"
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["sub01_EP01_01.png"]

    before = (out / "sub01" / "EP01_01.npy").stat().st_mtime_ns
    again = extract_dataset(tiny, out, config=config, learner=learner, progress=False)
    assert again["computed"] == 0 and again["skipped"] == 2
    assert (out / "sub01" / "EP01_01.npy").stat().st_mtime_ns == before
    assert again["epe"] == metrics["epe"]  # figures come from the sidecars

    changed = ExtractConfig.from_mapping({"gamma": 1.0, "batch_size": 2}, method="selfme")
    assert extract_dataset(tiny, out, config=changed, learner=learner, progress=False)["computed"] == 2

    frame = pd.read_csv(tiny)
    frame.iloc[:1].to_csv(tiny, index=False)  # a clip leaves the manifest: its files go
    pruned = extract_dataset(tiny, out, config=changed, learner=learner, progress=False)
    assert pruned["removed"] == 2 and not (out / "sub02").exists()


@pytest.mark.parametrize("method", ["tvl1", "farneback"])
def test_classical_methods_through_the_stage_function(tiny, tmp_path, method):
    out = tmp_path / "motion" / method / "tiny"
    config = ExtractConfig.from_mapping({"gamma": 2.0}, method=method)
    summary = extract_dataset(tiny, out, config=config, progress=False)
    side = json.loads((out / "sub01" / "EP01_01.json").read_text())
    assert side["gamma"] == 1.0 and side["bspline"] is None  # gamma amplifies the learned motion only
    assert summary["epe"]["expression"] is None  # a pure translation has no expression region
    assert summary["epe"]["face"] < 0.2  # the known translation, on the landmark hull
    flow = np.load(out / "sub01" / "EP01_01.npy").astype(np.float32)[16:-16, 16:-16]
    assert np.allclose(np.median(flow.reshape(-1, 2), axis=0), SHIFTS["EP01_01"], atol=0.1)


def test_forward_convention_of_the_learned_motion():
    # Backward lattice d: apex(p) = onset(p + d). A translation d = (1.5, -0.5): forward F = -d.
    d = torch.zeros(1, 2, 8, 8)
    d[:, 0], d[:, 1] = 1.5, -0.5
    for bspline in (True, False):
        fwd, raw, fold = expand_learned(d, image_size=32, bspline=bspline, ss_steps=7, source_frame="onset")
        assert fwd.shape == (1, 2, 32, 32) and torch.allclose(fwd, -torch.nn.functional.interpolate(d, size=32),
                                                                atol=1e-4)
        assert float(raw) == 0 and float(fold) == 0
        fwd, _, _ = expand_learned(d, image_size=32, bspline=bspline, ss_steps=7, source_frame="apex")
        assert torch.allclose(fwd, torch.nn.functional.interpolate(d, size=32), atol=1e-4)


class _GivenLattice(torch.nn.Module):
    """A stand-in learner that returns a given backward lattice displacement for any frames."""

    def __init__(self, lattice: torch.Tensor, image_size: int) -> None:
        super().__init__()
        self.config = {"image_size": image_size}
        self.register_buffer("lattice", lattice)

    def estimate_motion(self, source, target, *, gamma=1.0):
        return {"displacement": gamma * self.lattice.expand(source.shape[0], -1, -1, -1)}


@pytest.mark.parametrize("bspline", [True, False])
def test_smooth_learned_motion_is_stored_as_the_forward_field(bspline):
    # Forward field F (onset -> apex) smooth at the learner's 32 px; the learner's backward map is its
    # inverse, sampled on the H/4 lattice at the control points (pixels 4k + 1.5); crops are 64 px.
    g = torch.Generator().manual_seed(0)
    forward = bspline_expand(torch.randn(1, 2, 4, 4, generator=g), 8)  # about 1 px, low frequency
    lattice = torch.nn.functional.interpolate(invert_displacement(forward), size=(8, 8), mode="bilinear",
                                              align_corners=False)
    config = ExtractConfig.from_mapping({"gamma": 1.0, "bspline": bspline}, method="selfme")
    frames = [np.zeros((SIZE, SIZE, 3), np.uint8)]
    stored = MotionEngine(config, learner=_GivenLattice(lattice, 32)).compute(frames, frames)[0].flow
    truth = 2 * torch.nn.functional.interpolate(forward, size=SIZE, mode="bilinear")[0].permute(1, 2, 0).numpy()
    err = np.linalg.norm(stored - truth, axis=-1)[8:-8, 8:-8].mean()
    scale = np.linalg.norm(truth, axis=-1)[8:-8, 8:-8].mean()
    # exp(-v) inverts exp(v), not id + v exactly (second order in |v| |grad v|): about 10 % here.
    assert err < 0.15 * scale
    assert np.linalg.norm(stored + truth, axis=-1)[8:-8, 8:-8].mean() > 1.5 * scale  # not the backward sign


class _FixedLearner(torch.nn.Module):
    """A stand-in learner whose lattice motion is gamma times a fixed field (Eq. 2's role of gamma)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = {"image_size": 32}
        g = torch.Generator().manual_seed(0)
        self.register_buffer("field", torch.randn(1, 2, 8, 8, generator=g) * 0.3)
        self.calls: list[float] = []

    def estimate_motion(self, source, target, *, gamma=1.0):
        self.calls.append(gamma)
        return {"displacement": gamma * self.field.expand(source.shape[0], -1, -1, -1)}


def test_gamma_scales_the_keypoint_displacements(learner):
    # Eq. 2: the local motions are gamma (z_s - z_t): gamma 2 doubles them.
    kp_s, kp_t = torch.rand(2, 4, 2) * 2 - 1, torch.rand(2, 4, 2) * 2 - 1
    one = DenseMotionNetwork.local_motions(kp_s, kp_t, 1.0)
    assert torch.allclose(DenseMotionNetwork.local_motions(kp_s, kp_t, 2.0), 2 * one)
    # The engine passes gamma to the learner; without exponentiation the stored field scales with it.
    frames = [np.zeros((SIZE, SIZE, 3), np.uint8)] * 2
    stored = {}
    for gamma in (1.0, 2.0):
        fixed = _FixedLearner()
        config = ExtractConfig.from_mapping({"gamma": gamma, "bspline": False, "source_frame": "apex"}, method="selfme")
        stored[gamma] = MotionEngine(config, learner=fixed).compute(frames, frames)[0].flow
        assert fixed.calls == [gamma]
    assert np.allclose(stored[2.0], 2 * stored[1.0], atol=1e-6)
    # The real learner at gamma 2 and 1 (with_gamma1 gives the accuracy pass).
    config = ExtractConfig.from_mapping({"gamma": 2.0}, method="selfme")
    result = MotionEngine(config, learner=learner).compute(frames, frames, with_gamma1=True)[0]
    assert result.flow.shape == (SIZE, SIZE, 2) and result.flow_gamma1.shape == (SIZE, SIZE, 2)


def test_config_validation():
    with pytest.raises(ValueError):
        ExtractConfig.from_mapping({}, method="raft")
    with pytest.raises(ValueError, match="extract.gama: unknown key"):
        ExtractConfig.from_mapping({"gama": 2})
    with pytest.raises(ValueError, match="extract.tvl1.iterations: unknown key"):
        ExtractConfig.from_mapping({"tvl1": {"iterations": 300}}, method="tvl1")
    assert ExtractConfig.from_mapping({"bspline": False}).method_params()["ss_steps"] == 0
    assert ExtractConfig.from_mapping({}, method="dis").method_params() == {"preset": "medium"}
    # flow_size keys a classical field only when set (fields stored before it existed stay valid)
    assert ExtractConfig.from_mapping({"flow_size": 64}, method="dis").method_params() == {"preset": "medium",
                                                                                          "flow_size": 64}
    with pytest.raises(ValueError, match="flow_size"):
        ExtractConfig.from_mapping({"flow_size": -1}, method="tvl1")


def test_evaluate_methods_and_cli(tiny, tmp_path, learner):
    result = evaluate_methods(tiny, {"farneback": {"method": "farneback"},
                                     "selfme_bilinear": {"method": "selfme", "bspline": False}},
                              extract={"gamma": 2.0}, learner=learner, metrics_path=tmp_path / "motion.json",
                              plots_dir=tmp_path / "eval", plot_clips=1, progress=False)
    saved = json.loads((tmp_path / "motion.json").read_text())
    assert saved == json.loads(json.dumps({k: v for k, v in result.items() if k != "timing"})) and saved["clips"] == 2
    assert "timing" not in saved and result["timing"]["farneback"]["pairs_per_second"] > 0
    assert {"all", "face"} <= set(saved["variants"]["farneback"]["epe"])  # a pure translation: no expression region
    assert "all_stored_over_gamma" in saved["variants"]["selfme_bilinear"]["epe"]
    assert saved["variants"]["farneback"]["epe"]["all"] < saved["zero_motion_epe"]["all"]
    assert len(list((tmp_path / "eval").iterdir())) == 1

    import argparse
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    params = tmp_path / "params.yaml"
    params.write_text("motion:\n  method: dis\nextract:\n  gamma: 3.0\n  dis: {preset: fast}\n")
    args = parser.parse_args(["extract", "--manifest", str(tiny), "--out", str(tmp_path / "cli"), "--params",
                              str(params), "--no-progress"])
    config = config_from_args(args)
    assert config.method == "dis" and config.gamma == 3.0 and config.dis == {"preset": "fast"}
    assert args.func(args) == 0 and (tmp_path / "cli" / "index.csv").is_file()


def test_evaluate_methods_scores_the_held_out_clips_apart(tiny, tmp_path):
    variants = {"farneback": {"method": "farneback"}}
    full = evaluate_methods(tiny, variants, plots_dir=tmp_path / "eval", plot_clips=1, held_out=["sub02/EP02_01"],
                            progress=False)
    alone = evaluate_methods(tiny, variants, max_clips=1, held_out=["sub02/EP02_01"], progress=False)  # held out first
    assert full["held_out_clips"] == 1 and alone["clips"] == 1
    assert full["variants"]["farneback"]["epe_held_out"] == alone["variants"]["farneback"]["epe"]
    assert full["zero_motion_epe_held_out"] == alone["zero_motion_epe"]
    assert full["variants"]["farneback"]["epe_held_out"] != full["variants"]["farneback"]["epe"]
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["sub02_EP02_01.png"]  # the held-out clip is plotted
    assert "epe_held_out" not in evaluate_methods(tiny, variants, progress=False)["variants"]["farneback"]
    with pytest.raises(ValueError, match="held-out"):
        evaluate_methods(tiny, variants, held_out=["sub09/EP09"], progress=False)
