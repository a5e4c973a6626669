"""Ablation tables and sweep curves from DVC experiments (``dvc exp show --json``).

The paper's tables are parameter flips on one pipeline, so each is a view of the experiments:
Table 1 (B-spline ``extract.bspline`` / SC ``scvit.omega > 0`` / motion amplification
``extract.gamma > 1`` against UF1, UAR), Table 3 (motion source ``motion.method`` x classifier: ViT
without SC, SCViT with it; the learned motion with and without ``extract.refine``, "selfme + refinement"
and "selfme"), Table 4 (``extract.gamma``), and Fig. 4 (UF1/UAR against ``scvit.omega``
and ``scvit.tau``). Each table is drawn from the HEAD commit (the baseline) and its experiments whose
parameters differ from the baseline only in that table's keys (Table 1: each of B-spline, SC and MA at
the baseline value or switched off); where several experiments share a row, the baseline commit wins,
then the most recent experiment. Metrics are the mean over ``loso.seeds`` and the tables print
``mean ± std`` (the sample std over the seeds, from summary.json's ``uf1_std`` / ``uar_std``; the mean
alone where a run had one seed); the sweep plots draw the std as error bars.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from selfme.io import atomic_path, write_text
from selfme.metrics.aggregate import mean_pm_std

SUMMARY = "metrics/summary.json"
KEYS = {"bspline": "extract.bspline", "gamma": "extract.gamma", "method": "motion.method",
        "omega": "scvit.omega", "tau": "scvit.tau", "refine": "extract.refine.steps"}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _summary(data: dict | None) -> dict | None:
    """metrics/summary.json of one `dvc exp show` entry's data, or None."""
    return ((data or {}).get("metrics") or {}).get(SUMMARY, {}).get("data")


def _row(name: str, rev: str, data: dict, *, baseline: str, kind: str) -> dict[str, Any] | None:
    metrics = _summary(data)
    if not metrics:
        return None
    params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
    row = {"experiment": name, "rev": rev[:7], "timestamp": data.get("timestamp") or "", "kind": kind,
           "baseline": baseline[:7]}
    row.update({key: _flatten(params).get(path) for key, path in KEYS.items()})
    for dataset, values in metrics.items():
        for metric in METRICS:
            if isinstance(values, dict) and metric in values:
                row[f"{dataset}.{metric}"] = values[metric]
    return row


def experiments_table(exp_show: list[dict]) -> pd.DataFrame:
    """One row per commit or experiment that has metrics/summary.json: key params and UF1/UAR."""
    rows = []

    def visit(entries: Iterable[dict], baseline: str | None) -> None:
        for entry in entries or []:
            kind = "experiment" if baseline else "commit"
            if entry.get("data") and entry["rev"] != "workspace":
                row = _row(entry.get("name") or entry["rev"], entry["rev"], entry["data"],
                           baseline=baseline or entry["rev"], kind=kind)
                if row:
                    rows.append(row)
            for exp in entry.get("experiments") or []:
                visit(exp.get("revs"), baseline or entry["rev"])

    visit(exp_show, None)
    return pd.DataFrame(rows)


def uncommitted_baseline(exp_show: list[dict]) -> bool:
    """True when the workspace's metrics differ from those of the commit after it (HEAD): the baseline's
    results were reproduced but not committed, so the tables' baseline row would be stale."""
    revs = [entry["rev"] for entry in exp_show]
    at = revs.index("workspace") if "workspace" in revs else len(revs)
    if at + 1 >= len(exp_show):
        return False
    workspace, head = _summary(exp_show[at].get("data")), _summary(exp_show[at + 1].get("data"))
    return bool(workspace) and workspace != head


def load_experiments(repo: str | Path = ".") -> pd.DataFrame:
    """Run ``dvc exp show --json`` in ``repo`` and tabulate it; refuses a stale baseline
    (:func:`uncommitted_baseline`)."""
    out = subprocess.run(["dvc", "exp", "show", "--json", "--all-commits"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    exp_show = json.loads(out)
    if uncommitted_baseline(exp_show):
        raise SystemExit(f"{Path(repo) / SUMMARY} differs from the HEAD commit's: commit the baseline's results "
                         "(git add dvc.lock metrics && git commit) before queueing experiments, or the tables' "
                         "baseline row is stale")
    return experiments_table(exp_show)


METRICS = ("uf1", "uar", "uf1_std", "uar_std")


def _metric_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.endswith(tuple(f".{m}" for m in METRICS))]


def with_std(frame: pd.DataFrame) -> pd.DataFrame:
    """Each ``<scope>.uf1`` / ``<scope>.uar`` column as ``mean ± std`` text, its ``_std`` column folded in."""
    out = frame.drop(columns=[c for c in frame.columns if c.endswith(("_std",))])
    for column in out.columns:
        if column.endswith((".uf1", ".uar")):
            std = frame[f"{column}_std"] if f"{column}_std" in frame.columns else [None] * len(frame)
            out[column] = [mean_pm_std(None if pd.isna(m) else float(m), None if pd.isna(s) else float(s))
                           for m, s in zip(frame[column], std)]
    return out


#: The "off" value of each switch of Table 1.
OFF = {"bspline": False, "omega": 0.0, "gamma": 1.0}


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def varying_only(table: pd.DataFrame, free: dict[str, set | None]) -> pd.DataFrame:
    """HEAD and its experiments whose KEYS equal HEAD's except those in ``free`` (allowed values, or
    None for any value)."""
    commits = table[table["kind"] == "commit"]
    if commits.empty:
        return table.iloc[0:0]
    base = commits.iloc[0]  # `dvc exp show` lists HEAD first
    rows = table[table["baseline"] == base["rev"]]
    keep = []
    for _, row in rows.iterrows():
        ok = True
        for key in KEYS:
            if key not in free:
                ok &= _same(row[key], base[key])
            elif free[key] is not None:
                ok &= any(_same(row[key], v) for v in free[key])
        keep.append(ok)
    return rows[keep]


def paper_table(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows = distinct values of ``keys`` (the baseline commit first, else the most recent experiment)."""
    order = table.assign(_commit=table["kind"] == "commit").sort_values(["_commit", "timestamp"], kind="stable")
    view = order.drop_duplicates(keys, keep="last")
    return view[keys + ["experiment"] + _metric_columns(view)].sort_values(keys).reset_index(drop=True)


def _refined(steps: Any) -> bool:
    """Whether ``extract.refine.steps`` switches the instance refinement on (absent in older params)."""
    return not pd.isna(steps) and float(steps) > 0


def ablation_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The paper's Tables 1, 3 and 4 as DataFrames."""
    if table.empty:
        return {}
    base = table[table["kind"] == "commit"].iloc[0]
    t1 = varying_only(table, {k: {base[k], v} for k, v in OFF.items()})
    t3 = varying_only(table, {"method": None, "omega": {base["omega"], 0.0}, "refine": None})
    t3 = t3[(t3["method"] == "selfme") | t3["refine"].map(lambda r: _same(r, base["refine"]))]
    t3 = t3.assign(method=[m + " + refinement" if m == "selfme" and _refined(r) else m
                           for m, r in zip(t3["method"], t3["refine"])])
    t4 = varying_only(table, {"gamma": None})
    label = lambda t: t.assign(**{  # noqa: E731
        "B-spline": t["bspline"], "SC": t["omega"].astype(float) > 0, "MA": t["gamma"].astype(float) > 1,
        "classifier": (t["omega"].astype(float) > 0).map({True: "SCViT", False: "ViT"})})
    return {
        "Table 1: ablation (B-spline, SC loss, motion amplification)": paper_table(label(t1), ["B-spline", "SC", "MA"]),
        "Table 3: motion source x classifier": paper_table(label(t3), ["method", "classifier"]),
        "Table 4: motion amplification gamma": paper_table(t4, ["gamma"]),
    }


def to_markdown(tables: dict[str, pd.DataFrame]) -> str:
    parts = ["# SelfME ablations\n", "Generated by `selfme report` from `dvc exp show`; UF1/UAR are MEGC2019 "
             "pooled LOSO metrics from metrics/summary.json.\n"]
    for title, frame in tables.items():
        parts.append(f"## {title}\n")
        parts.append(with_std(frame).to_markdown(index=False, floatfmt=".4f") if len(frame) else "(no experiments)")
        parts.append("")
    return "\n".join(parts) + "\n"


def plot_sweep(table: pd.DataFrame, key: str, path: str | Path, *, dataset: str = "average") -> bool:
    """UF1 and UAR against ``key`` (Fig. 4) for experiments that differ in it; False if fewer than 2."""
    columns = [f"{dataset}.uf1", f"{dataset}.uar"]
    if table.empty or key not in table or not set(columns) <= set(table.columns):
        return False
    data = paper_table(varying_only(table, {key: None}), [key])
    data = data.assign(**{key: data[key].astype(float)}).sort_values(key)
    if len(data) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.0), dpi=120)
    for column, marker in zip(columns, ("o", "s")):
        std = data[f"{column}_std"].astype(float).fillna(0.0) if f"{column}_std" in data.columns else None
        ax.errorbar(data[key], data[column], yerr=std, marker=marker, capsize=3, label=column.split(".")[1].upper())
    ax.set_xlabel(KEYS.get(key, key))
    ax.set_ylabel(dataset)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def write_report(table: pd.DataFrame, out_dir: str | Path) -> dict[str, Any]:
    """metrics/report.md (Tables 1, 3, 4) and sweep PNGs for omega and tau (Fig. 4)."""
    out_dir = Path(out_dir)
    write_text(out_dir / "report.md", to_markdown(ablation_tables(table)))
    written = {"report": str(out_dir / "report.md"), "experiments": int(len(table))}
    for key in ("omega", "tau"):
        if plot_sweep(table, key, out_dir / "plots" / f"sweep_{key}.png"):
            written[f"sweep_{key}"] = str(out_dir / "plots" / f"sweep_{key}.png")
    return written
