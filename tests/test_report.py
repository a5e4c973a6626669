"""Ablation tables and sweep plots from `dvc exp show --json` output."""

from __future__ import annotations

import pandas as pd

from selfme.report import ablation_tables, experiments_table, to_markdown, uncommitted_baseline, with_std, write_report


def _entry(name, ts, *, omega=0.1, tau=0.07, gamma=2, bspline=True, method="selfme", uf1=0.5, uar=0.6, std=0.01,
           refine=100):
    params = {"scvit": {"omega": omega, "tau": tau},
              "extract": {"gamma": gamma, "bspline": bspline, "refine": {"steps": refine}},
              "motion": {"method": method}}
    metrics = {"synthme": {"uf1": uf1, "uar": uar, "uf1_std": std, "uar_std": std, "n_seeds": 3, "n_samples": 47,
                           "n_folds": 8},
               "average": {"uf1": uf1, "uar": uar, "uf1_std": std, "uar_std": std, "n_seeds": 3}}
    return {"rev": name * 6, "name": name, "data": {
        "rev": name * 6, "timestamp": ts, "params": {"params.yaml": {"data": params}},
        "metrics": {"metrics/summary.json": {"data": metrics}}}}


def _exp_show():
    base = _entry("main", "2026-01-01T00:00:00")
    base["experiments"] = [
        {"name": "a", "revs": [_entry("a", "2026-01-02T00:00:00", omega=0.0, uf1=0.4, uar=0.45)]},
        {"name": "b", "revs": [_entry("b", "2026-01-03T00:00:00", gamma=1, uf1=0.45, uar=0.5)]},
        {"name": "c", "revs": [_entry("c", "2026-01-04T00:00:00", method="tvl1", bspline=False, uf1=0.3, uar=0.35)]},
        {"name": "d", "revs": [_entry("d", "2026-01-05T00:00:00", omega=0.2, uf1=0.55, uar=0.62)]},
        {"name": "e", "revs": [_entry("e", "2026-01-06T00:00:00", method="tvl1", uf1=0.35, uar=0.4)]},
        {"name": "f", "revs": [_entry("f", "2026-01-07T00:00:00", omega=0.0, gamma=1, bspline=False, std=None)]},
        {"name": "g", "revs": [_entry("g", "2026-01-08T00:00:00", omega=0.0, refine=0, uf1=0.61)]},
        {"name": "h", "revs": [_entry("h", "2026-01-09T00:00:00", method="tvl1", refine=0, uf1=0.62)]},
    ]
    workspace = {"rev": "workspace", "name": None, "data": {"rev": "workspace", "timestamp": None,
                                                            "params": {}, "metrics": {}}}
    return [workspace, base]


def test_experiments_table_flattens_params_and_metrics():
    table = experiments_table(_exp_show())
    assert list(table["experiment"]) == ["main", "a", "b", "c", "d", "e", "f", "g", "h"]  # the workspace has none
    assert list(table["kind"]) == ["commit"] + ["experiment"] * 8 and set(table["baseline"]) == {"mainmai"}
    row = table.set_index("experiment").loc["c"]
    assert row["method"] == "tvl1" and not row["bspline"]
    assert row["synthme.uf1"] == 0.3 and row["average.uar"] == 0.35 and row["synthme.uf1_std"] == 0.01


def test_ablation_tables_have_the_paper_shapes():
    tables = ablation_tables(experiments_table(_exp_show()))
    t1, t3, t4 = tables.values()
    # Table 1: only runs that switch B-spline / SC / MA off from the baseline; c (tvl1) and d (omega 0.2)
    # differ in other keys and stay out, and so do g and h (refinement off); the all-on row is the baseline.
    rows = {tuple(r[:3]): r[3] for r in t1[["B-spline", "SC", "MA", "experiment"]].itertuples(index=False)}
    assert rows == {(True, True, True): "main", (True, False, True): "a", (True, True, False): "b",
                    (False, False, False): "f"}
    # Table 3: the learned motion with and without refinement are two motion sources (g is the learner
    # alone); h, TV-L1 with refinement steps that TV-L1 never uses, differs from the baseline and stays out
    assert {(m, c): e for m, c, e in t3[["method", "classifier", "experiment"]].itertuples(index=False)} == {
        ("selfme + refinement", "SCViT"): "main", ("selfme + refinement", "ViT"): "a", ("selfme", "ViT"): "g",
        ("tvl1", "SCViT"): "e"}
    assert dict(zip(t4["gamma"], t4["experiment"])) == {1: "b", 2: "main"}
    md = to_markdown(tables)
    assert "## Table 3: motion source x classifier" in md and "| tvl1" in md
    assert "0.3500 ± 0.0100" in md and "uf1_std" not in md  # e's mean and std over seeds, one column


def test_tables_print_mean_plus_minus_std():
    frame = pd.DataFrame({"experiment": ["x", "y", "z"], "casme2.uf1": [0.56154, 0.5, None],
                          "casme2.uf1_std": [0.01234, None, None], "casme2.uar": [0.6, 0.7, 0.8]})
    shown = with_std(frame)
    assert list(shown.columns) == ["experiment", "casme2.uf1", "casme2.uar"]
    assert shown["casme2.uf1"].tolist() == ["0.5615 ± 0.0123", "0.5000", ""]  # one seed: no std; no run: blank
    assert shown["casme2.uar"].tolist() == ["0.6000", "0.7000", "0.8000"]      # summaries without std columns


def test_write_report_plots_sweeps(tmp_path):
    written = write_report(experiments_table(_exp_show()), tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("# SelfME ablations")
    assert "sweep_omega" in written  # omega takes 0, 0.1, 0.2
    assert (tmp_path / "plots" / "sweep_omega.png").read_bytes()[:4] == b"\x89PNG"
    assert "sweep_tau" not in written  # a single tau value: no curve


def test_uncommitted_baseline_is_detected():
    """The baseline reproduced but not committed: the workspace's summary differs from HEAD's."""
    exp_show = _exp_show()
    assert not uncommitted_baseline(exp_show)  # the workspace has no metrics
    fresh = _entry("main", "2026-01-10T00:00:00", uf1=0.8)
    exp_show[0]["data"]["metrics"] = fresh["data"]["metrics"]
    assert uncommitted_baseline(exp_show)
    exp_show[0]["data"]["metrics"] = _entry("main", "x")["data"]["metrics"]  # committed: the same summary
    assert not uncommitted_baseline(exp_show)
