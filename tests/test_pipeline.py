"""The DVC pipeline's wiring: every stage's script and params exist, the paper profile matches the demo's
shape, and `dvc repro` runs the embedded-dataset pipeline end to end on a copy of the repository, then
again on a fresh clone of that copy, which must reproduce its lock file and metrics byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def _stage_bodies(dvc: dict):
    for name, stage in dvc["stages"].items():
        yield name, stage.get("do", stage)


def test_every_stage_runs_a_stage_module_and_declares_existing_params():
    dvc, params = _load("dvc.yaml"), _load("params.yaml")
    for name, body in _stage_bodies(dvc):
        cmd = body["cmd"]
        assert cmd.startswith("python -m stages."), f"{name}: {cmd}"
        module = cmd.split()[2]
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
        for entry in body.get("params", []):
            section = entry.split(".")[0]
            assert section in params, f"{name} declares params section {section!r} missing from params.yaml"


def test_paper_profile_has_the_same_sections_and_keys():
    demo, paper = _load("params.yaml"), _load("configs/paper.yaml")
    assert set(demo) == set(paper)
    for section in demo:
        if section == "datasets":
            continue
        if isinstance(demo[section], dict):
            assert set(demo[section]) == set(paper[section]), section


def test_dvc_yaml_parses_and_has_the_dag():
    out = subprocess.run([sys.executable, "-m", "dvc", "dag", "--md"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert '"synth"' in out and '"prepare@synthme"' in out


#: The demo pipeline, shrunk so that the end-to-end test (two full repros) takes a few minutes on two
#: cores (8 subjects still; the LOSO schedule is shorter, every stage still runs its whole code path).
TINY_OVERRIDES = {
    "synth.clips_per_subject": 3,
    "synth.frames_per_clip": 12,
    "pretrain.epochs": 1,
    "pretrain.pairs_per_epoch": 16,
    "finetune.epochs": 1,
    "finetune.pairs_per_epoch": 16,
    "finetune.holdout_clips": 2,
    "motion_eval.max_clips": 2,
    "loso.epochs": 10,
    "loso.seeds": [0, 1],
}


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """A fresh copy of the repository's files (as a clone would have them) in its own git repo."""
    dest = tmp_path_factory.mktemp("clone") / "selfme"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for dotted, value in TINY_OVERRIDES.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        assert last in node, f"params.yaml has no {dotted}"
        node[last] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(GIT + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(GIT + ["commit", "-qm", "copy"], cwd=dest, check=True)  # dvclive wants a commit
    return dest


GIT = ["git", "-c", "user.name=selfme-tests", "-c", "user.email=tests@selfme.invalid"]


def _porcelain(repo: Path) -> list[str]:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.splitlines()


def _repro(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "dvc", "repro", *args], cwd=repo, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_dvc_repro_runs_the_demo_pipeline_on_a_fresh_copy_and_a_clone_reproduces_it(repo_copy, tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1")
    first = _repro(repo_copy, env)
    manifest = pd.read_csv(repo_copy / "data/manifests/synthme.csv")
    assert manifest["subject"].nunique() >= 8
    assert set(manifest["label"]) == {"negative", "positive", "surprise"}
    report = json.loads((repo_copy / "data/manifests/synthme_report.json").read_text())
    assert report["n_samples"] + report["n_excluded"] == len(pd.read_excel(
        repo_copy / "data/raw/synthme/CASME2-coding-synthme.xlsx"))
    summary = json.loads((repo_copy / "metrics/summary.json").read_text())
    assert summary["synthme"]["n_folds"] == 8 and summary["synthme"]["n_samples"] == len(manifest)
    assert 0.0 <= summary["synthme"]["uf1"] <= 1.0 and "average" in summary
    seeds = yaml.safe_load((repo_copy / "params.yaml").read_text())["loso"]["seeds"]
    assert summary["synthme"]["n_seeds"] == len(seeds)
    for seed in seeds:
        assert len(list((repo_copy / f"results/synthme/seed_{seed}").glob("sub*.csv"))) == 8
    motion = json.loads((repo_copy / "metrics/motion.json").read_text())
    variants = yaml.safe_load((repo_copy / "params.yaml").read_text())["motion_eval"]["variants"]
    assert set(motion["variants"]) == set(variants) >= {"selfme", "selfme_no_bspline", "tvl1", "farneback", "dis"}
    assert (repo_copy / "models/motion/finetune.pt").is_file()
    # A second repro has nothing to do: every stage's inputs are unchanged.
    again = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo_copy, env=env, capture_output=True,
                           text=True, check=True)
    assert "didn't change, skipping" in again.stdout or "is cached" in again.stdout, again.stdout
    assert "Running stage" not in again.stdout
    # The repro rewrote or removed tracked files (the lock and the metrics of these params, the logs
    # of seeds they do not run): commit that, and a fresh clone's repro (no cache, no outputs) must leave
    # its checkout unchanged. --force runs every stage again, also those whose only outputs are the
    # committed metrics (a plain repro would keep them once their inputs come out the same).
    written = _porcelain(repo_copy)
    # New files may only be metrics (these params plot other clips than the committed ones); anything else
    # untracked is an output that .gitignore or DVC should own.
    assert written, "the repro wrote nothing tracked"
    assert [line for line in written
            if line[:3] not in (" M ", " D ") and not line.startswith("?? metrics/")] == []
    subprocess.run(GIT + ["add", "-A"], cwd=repo_copy, check=True)
    subprocess.run(GIT + ["commit", "-qm", "repro"], cwd=repo_copy, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_copy), str(clone)], check=True)
    assert not (clone / "results").exists() and not (clone / ".dvc" / "cache").exists()
    second = _repro(clone, env, "--force")
    assert second.stdout.count("Running stage") == first.stdout.count("Running stage") >= 10
    for rel in sorted({"dvc.lock", *(line[3:] for line in written if line[:3] in (" M ", "?? "))}):
        assert (clone / rel).read_bytes() == (repo_copy / rel).read_bytes(), f"{rel} differs in the second clone"
    assert _porcelain(clone) == []


def test_readme_shows_the_current_dag():
    out = subprocess.run([sys.executable, "-m", "dvc", "dag", "--md"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out in (REPO / "README.md").read_text(), "README's Mermaid graph is stale: paste `dvc dag --md`"
