"""params.yaml's ``datasets`` and ``prepare`` sections as dataclasses (:func:`selfme.config.from_mapping`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from selfme.config import ParamsError, Section, from_mapping
from selfme.datasets.adapters import ADAPTERS
from selfme.datasets.manifest import APEX_POLICIES
from selfme.datasets.protocol import CLASSES

PROTOCOL_NAMES = tuple(CLASSES)


@dataclass(frozen=True, kw_only=True)
class DatasetEntry:
    """One entry of ``datasets``: the adapter (default: the entry's key), the dataset's root folder and
    its annotation sheet (null where the dataset has none, as SMIC-HS)."""

    adapter: str | None = None
    root: str
    annotations: str | None = None

    def __post_init__(self) -> None:
        if self.adapter is not None and self.adapter not in ADAPTERS:
            raise ValueError(f"adapter: expected one of {sorted(ADAPTERS)}, got {self.adapter!r}")


def load_datasets(section: Mapping[str, Any] | None, *, prefix: str = "datasets") -> dict[str, DatasetEntry]:
    """Every entry of the ``datasets`` section, checked (the adapter defaults to the entry's key)."""
    if not isinstance(section, Mapping) or not section:
        raise ParamsError(f"{prefix}: expected a mapping of dataset names to entries, got {section!r}")
    out = {}
    for name, values in section.items():
        entry = from_mapping(DatasetEntry, values, prefix=f"{prefix}.{name}")
        if entry.adapter is None and name not in ADAPTERS:
            raise ParamsError(f"{prefix}.{name}.adapter: missing key (the name is not an adapter: "
                              f"one of {sorted(ADAPTERS)})")
        out[str(name)] = entry
    return out


@dataclass(frozen=True, kw_only=True)
class PrepareConfig(Section):
    """params.yaml's ``prepare`` section: the class protocol, what to do without a (valid) apex and
    whether to build manifests from the sheets alone."""

    SECTION = "prepare"

    protocol: Literal[PROTOCOL_NAMES] = "megc3"
    apex_missing: Literal[APEX_POLICIES] = "spot"
    allow_missing_frames: bool = False
