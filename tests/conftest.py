"""Shared fixtures: the real published data in ../shared/realdata (tests skip cleanly without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SELFME_SHARED", REPO.parent / "shared"))
REALDATA = SHARED / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent")
    return REALDATA


@pytest.fixture(scope="session")
def annotations(realdata: Path) -> Path:
    return realdata / "annotations"


@pytest.fixture(scope="session")
def megc_composite(annotations: Path):
    """The organisers' 442-sample MEGC2019 composite ground truth as a DataFrame."""
    import pandas as pd

    return pd.read_csv(annotations / "megc2019_combined_3class_gt.csv", header=None,
                       names=["db", "subject", "clip", "label_id"], dtype={"subject": str, "clip": str})
