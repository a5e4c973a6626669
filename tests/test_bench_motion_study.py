"""bench/motion_study.py caches its classical-flow baselines with selfme.cache: the key holds the extract
params, the held-out clip list and the code digest of the scoring code, so editing any of them recomputes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def study(monkeypatch):
    spec = importlib.util.spec_from_file_location("motion_study", REPO / "bench" / "motion_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []

    def fake_evaluate(manifest, variants, *, extract, progress):
        calls.append(dict(extract))
        return {"zero_motion_epe": 1.5, "clips": 2,
                "variants": {name: {"epe": 0.25 * (i + 1)} for i, name in enumerate(variants)}}

    monkeypatch.setattr(module, "evaluate_methods", fake_evaluate)
    return module, calls


def test_baselines_are_recomputed_when_params_clips_or_code_change(study, tmp_path, monkeypatch):
    module, calls = study
    manifest = tmp_path / "heldout_manifest.csv"
    manifest.write_text("subject,clip\ns1,c1\ns1,c2\n", encoding="utf-8")
    first = module.baselines(manifest, {"gamma": 2.0}, tmp_path)
    assert first == {"zero": 1.5, "clips": 2, "tvl1": 0.25, "farneback": 0.5, "dis": 0.75}
    assert module.baselines(manifest, {"gamma": 2.0}, tmp_path) == first and len(calls) == 1  # cached
    module.baselines(manifest, {"gamma": 1.0}, tmp_path)
    assert len(calls) == 2  # other extract params
    manifest.write_text("subject,clip\ns1,c1\n", encoding="utf-8")
    module.baselines(manifest, {"gamma": 2.0}, tmp_path)
    assert len(calls) == 3  # another held-out clip list
    key = module.baselines_key(manifest, {"gamma": 2.0})
    monkeypatch.setattr(module, "code_digest", lambda *modules: "edited-code")
    assert module.baselines_key(manifest, {"gamma": 2.0}) != key
    module.baselines(manifest, {"gamma": 2.0}, tmp_path)
    assert len(calls) == 4  # the scoring code changed
    cached = tmp_path / f"motion_study_baselines_{module.baselines_key(manifest, {'gamma': 2.0})[:12]}.json"
    cached.write_text('{"zero": 9.0}', encoding="utf-8")  # a file of the old layout: no key, not trusted
    assert module.baselines(manifest, {"gamma": 2.0}, tmp_path)["zero"] == 1.5 and len(calls) == 5
