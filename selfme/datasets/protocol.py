"""Class protocols: how each dataset's emotion labels map to the classes of an evaluation protocol;
and the LOSO protocols, how the folds treat several datasets.

``megc3`` is the MEGC2019 composite 3-class protocol behind the paper's Table 2 (negative, positive,
surprise; 'others' dropped). ``casme2_5`` is CASME II's 5-class protocol (26 LOSO folds).
"""

from __future__ import annotations

#: LOSO protocols: ``per_dataset`` (each dataset's subjects alone, the paper's) or ``composite`` (all
#: datasets pooled, one fold per subject across datasets, MEGC2019's); ``loso.protocol``
LOSO_PROTOCOLS = ("per_dataset", "composite")

CLASSES = {
    "megc3": ("negative", "positive", "surprise"),
    "casme2_5": ("happiness", "disgust", "repression", "surprise", "others"),
}

#: Every emotion label each dataset's sheet (or folder names, for SMIC) is known to use, lower-cased.
VOCABULARY = {
    "casme2": {"happiness", "disgust", "repression", "surprise", "others", "sadness", "fear"},
    "smic_hs": {"negative", "positive", "surprise"},
    "samm": {"anger", "contempt", "disgust", "fear", "sadness", "happiness", "surprise", "other"},
    "casme3a": {"disgust", "surprise", "others", "fear", "anger", "sad", "happy"},
}
VOCABULARY["synthme"] = VOCABULARY["casme2"]  # SynthME is written as CASME II

_CASME2_MEGC3 = {"disgust": "negative", "repression": "negative", "happiness": "positive",
                 "surprise": "surprise"}

#: protocol -> dataset -> {source emotion: class}; emotions absent from a mapping are dropped.
MAPPINGS = {
    "megc3": {
        "casme2": _CASME2_MEGC3,
        "synthme": _CASME2_MEGC3,
        "smic_hs": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
        "samm": {"anger": "negative", "contempt": "negative", "disgust": "negative", "fear": "negative",
                 "sadness": "negative", "happiness": "positive", "surprise": "surprise"},
        "casme3a": {"disgust": "negative", "fear": "negative", "anger": "negative", "sad": "negative",
                    "happy": "positive", "surprise": "surprise"},
    },
    "casme2_5": {
        name: {e: e for e in CLASSES["casme2_5"]} for name in ("casme2", "synthme")
    },
}

#: CASME II samples whose 20190701 emotion maps into the 3 classes but which the official MEGC2019
#: composite list (built from the earlier sheet) does not contain. Checked against the organisers'
#: 442-sample ground truth: without these five the mapping reproduces its 145 CASME II samples exactly.
MEGC2019_NOT_IN_COMPOSITE = {
    ("casme2", "sub04", "EP12_01f"): "not in the MEGC2019 composite list (apex not annotated: '/')",
    ("casme2", "sub05", "EP09_05f"): "not in the MEGC2019 composite list",
    ("casme2", "sub24", "EP07_01"): "not in the MEGC2019 composite list",
    ("casme2", "sub24", "EP07_04f"): "not in the MEGC2019 composite list",
    ("casme2", "sub24", "EP10_03"): "not in the MEGC2019 composite list",
}


def class_names(protocol: str) -> tuple[str, ...]:
    if protocol not in CLASSES:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(CLASSES)}")
    return CLASSES[protocol]


def label_mapping(protocol: str, dataset: str) -> dict[str, str]:
    """The {source emotion: class} mapping of ``protocol`` for ``dataset`` (clear error if undefined)."""
    class_names(protocol)
    if dataset not in MAPPINGS[protocol]:
        raise ValueError(f"protocol {protocol!r} is not defined for dataset {dataset!r} "
                         f"(defined for: {sorted(MAPPINGS[protocol])})")
    return MAPPINGS[protocol][dataset]


def protocol_exclusion(protocol: str, dataset: str, subject: str, clip: str) -> str | None:
    """The reason a protocol drops a sample regardless of its label, or None."""
    if protocol == "megc3":
        return MEGC2019_NOT_IN_COMPOSITE.get((dataset, subject, clip))
    return None
