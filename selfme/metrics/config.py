"""params.yaml's ``aggregate`` section (:func:`selfme.config.from_mapping`)."""

from __future__ import annotations

from dataclasses import dataclass

from selfme.config import Section


@dataclass(frozen=True, kw_only=True)
class AggregateConfig(Section):
    """average: the datasets whose mean is summary.json's ``average`` (Table 2's last column); null: all."""

    SECTION = "aggregate"

    average: list[str] | None = None
