"""SC against no SC over more seeds: bench/bench_realflow.py's cells of two runs with disjoint seeds
(e.g. seeds 0-2 in metrics/realflow.json and 3-5 from ``--seeds 3 4 5 --metrics metrics/realflow_seeds345``)
pooled per row, protocol and slice: UF1 mean and sample std over all seeds, each run's 3-seed ensemble,
and the SC effect (first row minus second) with its standard error. A script, not a test.

    python bench/realflow_seeds.py metrics/realflow.json metrics/realflow_seeds345/realflow.json \\
        --rows recipe recipe_nosc --out metrics/realflow_seeds.md --png metrics/plots/realflow_seeds.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the leaderboard's slices and protocols, one definition
from bench_realflow import PROTOCOLS, SLICES  # noqa: E402


def pooled(groups: Sequence[tuple[int, float, float]]) -> tuple[int, float, float]:
    """(n, mean, sample std) of the union of groups given as (n, mean, sample std): the total sum of
    squares is each group's (n - 1) s^2 plus n (mean - overall mean)^2."""
    n = sum(g[0] for g in groups)
    mean = sum(g[0] * g[1] for g in groups) / n
    squares = sum((g[0] - 1) * g[2] ** 2 + g[0] * (g[1] - mean) ** 2 for g in groups)
    return n, mean, math.sqrt(squares / (n - 1))


def _groups(runs: Sequence[dict[str, Any]], row: str, protocol: str, scope: str) -> list[dict[str, Any]]:
    return [run["results"][row][protocol]["scores"][scope] for run in runs]


def effects(runs: Sequence[dict[str, Any]], rows: Sequence[str], metric: str = "uf1") -> list[dict[str, Any]]:
    """Per (protocol, slice): each row's pooled (n, mean, std) and per-run ensembles, and rows[0] minus
    rows[1] with its Welch standard error."""
    seeds = [run["seeds"] for run in runs]
    overlap = set(seeds[0]).intersection(*map(set, seeds[1:]))
    if overlap:
        raise ValueError(f"the runs share seeds {sorted(overlap)}: pool runs of disjoint seeds only")
    out = []
    for protocol in PROTOCOLS:
        for scope in SLICES:
            stats, ensembles = [], []
            for row in rows:
                groups = _groups(runs, row, protocol, scope)
                stats.append(pooled([(g["n_seeds"], g[metric], g[f"{metric}_std"]) for g in groups]))
                ensembles.append([g[f"{metric}_ens"] for g in groups])
            (na, ma, sa), (nb, mb, sb) = stats[0], stats[1]
            out.append({"protocol": protocol, "scope": scope, "stats": stats, "ensembles": ensembles,
                        "difference": ma - mb, "se": math.sqrt(sa ** 2 / na + sb ** 2 / nb)})
    return out


def table(runs: Sequence[dict[str, Any]], rows: Sequence[str], metric: str = "uf1") -> str:
    entries = effects(runs, rows, metric)
    seeds = [run["seeds"] for run in runs]
    head = (f"{metric.upper()} over seeds {sorted(s for group in seeds for s in group)} (runs of seeds "
            + ", ".join(map(str, seeds)) + f"): mean ± sample std of single models; each run's 3-seed ensemble "
            f"in brackets; {rows[0]} minus {rows[1]} with its standard error (Welch). Written by "
            f"bench/realflow_seeds.py.")
    lines = [head, "", "| protocol | slice | " + " | ".join(rows) + " | difference ± s.e. | ensembles' differences |",
             "|---|---|" + "---|" * len(rows) + "---|---|"]
    for e in entries:
        cells = [f"{mean:.3f} ± {std:.3f} (" + ", ".join(f"{v:.3f}" for v in ens) + ")"
                 for (_, mean, std), ens in zip(e["stats"], e["ensembles"])]
        diffs = ", ".join(f"{a - b:+.3f}" for a, b in zip(*e["ensembles"]))
        lines.append(f"| {e['protocol']} | {e['scope']} | " + " | ".join(cells)
                     + f" | {e['difference']:+.3f} ± {e['se']:.3f} | {diffs} |")
    return "\n".join(lines) + "\n"


def plot(entries: Sequence[dict[str, Any]], rows: Sequence[str], path: Path, metric: str = "uf1") -> None:
    """A PNG: per (protocol, slice), each row's pooled mean ± std (bars) and its runs' ensembles (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selfme.io import atomic_path

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
    width = 0.8 / len(rows)
    for r, row in enumerate(rows):
        xs = [i + (r - (len(rows) - 1) / 2) * width for i in range(len(entries))]
        ax.bar(xs, [e["stats"][r][1] for e in entries], width, yerr=[e["stats"][r][2] for e in entries],
               capsize=3, label=f"{row} (single models, mean ± std)", alpha=0.75)
        for x, e in zip(xs, entries):
            ax.plot([x] * len(e["ensembles"][r]), e["ensembles"][r], "k.", ms=6)
    ax.plot([], [], "k.", label="3-seed ensembles (one per run)")
    ax.set_xticks(range(len(entries)), [f"{e['protocol']}\n{e['scope']}" for e in entries], fontsize=8)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel(metric.upper())
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    ax.set_title(f"{rows[0]} against {rows[1]}, pooled over seeds", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="bench/bench_realflow.py metrics JSONs of disjoint seeds")
    p.add_argument("--rows", nargs=2, default=["recipe", "recipe_nosc"], help="the two rows compared")
    p.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    p.add_argument("--png", default=None, help="PNG of the comparison to write")
    args = p.parse_args(argv)
    runs = [json.loads(Path(r).read_text(encoding="utf-8")) for r in args.runs]
    text = table(runs, args.rows)
    print(text)
    if args.out:
        from selfme.io import write_text

        write_text(Path(args.out), text)
    if args.png:
        plot(effects(runs, args.rows), args.rows, Path(args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
