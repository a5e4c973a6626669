"""Micro-expression datasets: adapters (CASME II, SMIC-HS, SAMM, CAS(ME)^3, SynthME) and the manifest."""

from selfme.datasets.adapters import ADAPTERS, get_adapter
from selfme.datasets.manifest import MANIFEST_COLUMNS, ManifestResult, build_manifest, read_manifest, write_manifest
from selfme.datasets.protocol import CLASSES, class_names

__all__ = ["ADAPTERS", "CLASSES", "MANIFEST_COLUMNS", "ManifestResult", "build_manifest", "class_names",
           "get_adapter", "read_manifest", "write_manifest"]
