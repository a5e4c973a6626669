"""FACS-inspired expression fields and the class recipes of SynthME.

Each action unit (AU) is a sum of Gaussian-weighted displacement bumps anchored at landmarks, with a
right and a left part (``_r`` = subject's right = image left). Offsets, directions and widths are in
units of the inter-ocular distance (iod) and in face axes: ``out`` points away from the face midline
on that side, ``down`` towards the chin. The apex expression field E is the sum of the clip's AUs,
scaled so that its largest displacement equals the clip's amplitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from selfme.synth.face import Subject
from selfme.synth.fields import bump_field, max_jacobian_norm

#: Sheet emotions (CASME II's "Estimated Emotion" names) and their 3-class label (None: dropped).
EMOTION_TO_CLASS: dict[str, str | None] = {
    "happiness": "positive", "disgust": "negative", "repression": "negative",
    "surprise": "surprise", "others": None,
}

# (anchor landmark, offset (out, down), displacement (out, down), sigma); anchors with "{s}" and
# every bump of a "sided" AU exist once per side; "central" AUs use the mean of both intensities.
_Bump = tuple[str, tuple[float, float], tuple[float, float], float]
AU_BUMPS: dict[str, tuple[str, tuple[_Bump, ...]]] = {
    "1+2": ("sided", (  # inner + outer brow raiser: brows and lower forehead up
        ("brow_{s}_inner", (0, 0), (0, -1.0), 0.20), ("brow_{s}_mid", (0, 0), (0, -1.0), 0.20),
        ("brow_{s}_outer", (0, 0), (0, -0.8), 0.18), ("brow_{s}_mid", (0, -0.35), (0, -0.6), 0.30))),
    "4": ("sided", (  # brow lowerer: brows down and towards the midline
        ("brow_{s}_inner", (0, 0), (-0.55, 0.75), 0.18), ("brow_{s}_mid", (0, 0), (-0.3, 0.6), 0.20))),
    "5": ("sided", (  # upper lid raiser
        ("eye_{s}_upper", (0, -0.03), (0, -1.0), 0.10),)),
    "6": ("sided", (  # cheek raiser: cheek and lower lid up, crow's feet
        ("cheek_{s}", (0, 0), (0.1, -1.0), 0.25), ("eye_{s}_lower", (0, 0.05), (0, -0.6), 0.10),
        ("eye_{s}_outer", (0.1, 0.05), (0, -0.4), 0.12))),
    "9": ("sided", (  # nose wrinkler: nose wings up, inner brows slightly down
        ("nose_tip", (0.2, -0.15), (0.1, -1.0), 0.13), ("glabella", (0.12, 0.05), (-0.2, 0.6), 0.14))),
    "12": ("sided", (  # lip-corner puller: corners out and up, nasolabial skin follows
        ("mouth_{s}", (0, 0), (0.75, -0.65), 0.18), ("mouth_{s}", (0.15, -0.3), (0.4, -0.6), 0.25))),
    "14": ("sided", (  # dimpler: corners tightened inwards
        ("mouth_{s}", (0, 0), (-0.8, -0.15), 0.14),)),
    "15": ("sided", (  # lip-corner depressor: corners down
        ("mouth_{s}", (0, 0), (0.1, 1.0), 0.17), ("mouth_{s}", (0.05, 0.2), (0, 0.5), 0.20))),
    "17": ("central", (  # chin raiser: chin boss and lower lip up
        ("chin", (0, -0.1), (0, -1.0), 0.30), ("lip_lower", (0, 0), (0, -0.8), 0.17))),
    "26": ("central", (  # jaw drop: chin and lower lip down
        ("chin", (0, 0), (0, 1.0), 0.40), ("lip_lower", (0, 0), (0, 0.9), 0.18))),
}

#: Largest Jacobian norm allowed in an expression field (keeps the warp invertible and smooth).
MAX_JACOBIAN = 0.5


@dataclass(frozen=True)
class AUActivation:
    """One AU in a clip: intensities of the subject's right and left part (0 = unilateral)."""

    au: str
    right: float
    left: float

    @property
    def code(self) -> str:
        """CASME II style code: '12', or 'L12'/'R12' when only one side moves."""
        if self.left == 0:
            return f"R{self.au}"
        if self.right == 0:
            return f"L{self.au}"
        return self.au


@dataclass(frozen=True, kw_only=True)
class Expression:
    """The apex expression of one clip: the AUs used and the field E_apex [H, W, 2] (pixels)."""

    emotion: str
    aus: tuple[AUActivation, ...]
    apex_field: np.ndarray
    peak_px: dict[str, float] = field(default_factory=dict)
    left_right_ratio: float = 1.0

    @property
    def action_units(self) -> str:
        """The sheet's 'Action Units' string, e.g. '6+12' or '4+R14'."""
        def key(a: AUActivation) -> float:
            return float(a.au.split("+")[0])
        return "+".join(a.code for a in sorted(self.aus, key=key))


def au_field(subject: Subject, activation: AUActivation, grid: np.ndarray, *, width_scale: float = 1.0
             ) -> np.ndarray:
    """E_AU on ``grid`` ([H, W, 2] frame coordinates): the AU's bumps placed on this subject's face."""
    kind, bumps = AU_BUMPS[activation.au]
    ex, ey = subject.axes
    centres, vectors, sigmas = [], [], []
    sides = (("r", -1.0, activation.right), ("l", 1.0, activation.left))
    for anchor, (off_out, off_down), (d_out, d_down), sigma in bumps:
        if kind == "central":
            parts = [("", 1.0, 0.5 * (activation.right + activation.left))]
        else:
            parts = sides
        for side, sign, intensity in parts:
            if intensity == 0:
                continue
            base = subject.point(anchor.format(s=side))
            centres.append(base + subject.iod * (sign * off_out * ex + off_down * ey))
            vectors.append(intensity * (sign * d_out * ex + d_down * ey))
            sigmas.append(sigma * subject.iod * width_scale)
    if not centres:
        return np.zeros(grid.shape, np.float32)
    return bump_field(grid, np.array(centres), np.array(vectors), np.array(sigmas))


def subject_style(rng: np.random.Generator) -> dict[str, float]:
    """Per-subject expression habits: widths, strength, asymmetry and optional-AU propensities."""
    return {
        "width_scale": float(rng.uniform(0.85, 1.15)), "intensity_scale": float(rng.uniform(0.8, 1.0)),
        "asymmetry_bias": float(rng.uniform(-0.1, 0.1)), "p_au6": float(rng.uniform(0.5, 0.95)),
        "p_au9": float(rng.uniform(0.2, 0.6)), "p_au5": float(rng.uniform(0.3, 0.8)),
        "p_au26": float(rng.uniform(0.1, 0.4)),
    }


def sample_recipe(emotion: str, rng: np.random.Generator, style: dict[str, float]
                  ) -> list[tuple[str, float, str]]:
    """The AUs of one clip of ``emotion``: (au, base intensity, side 'both' | 'r' | 'l')."""
    u = rng.uniform
    if emotion == "happiness":
        recipe = [("12", u(0.7, 1.0), "both")]
        if rng.random() < style["p_au6"]:
            recipe.append(("6", u(0.5, 0.9), "both"))
    elif emotion == "disgust":
        recipe = [("4", u(0.7, 1.0), "both")]
        if rng.random() < style["p_au9"]:
            recipe.append(("9", u(0.5, 0.9), "both"))
        if rng.random() < 0.3:
            recipe.append((str(rng.choice(["15", "17"])), u(0.4, 0.7), "both"))
    elif emotion == "repression":
        combo = [["15"], ["17"], ["15", "17"], ["14", "17"]][int(rng.integers(4))]
        recipe = [(au, u(0.6, 1.0), "both") for au in combo]
    elif emotion == "surprise":
        recipe = [("1+2", u(0.7, 1.0), "both")]
        if rng.random() < style["p_au5"]:
            recipe.append(("5", u(0.5, 0.9), "both"))
        if rng.random() < style["p_au26"]:
            recipe.append(("26", u(0.4, 0.8), "both"))
    elif emotion == "others":
        side = str(rng.choice(["r", "l"]))
        options = [[("4", u(0.3, 0.5), "both")], [("26", u(0.6, 1.0), "both")], [("5", u(0.6, 1.0), "both")],
                   [("14", u(0.6, 1.0), side)], [("17", u(0.3, 0.5), "both")], [("12", u(0.6, 1.0), side)]]
        recipe = options[int(rng.integers(len(options)))]
    else:
        raise ValueError(f"unknown emotion {emotion!r}; known: {sorted(EMOTION_TO_CLASS)}")
    return [(au, float(v), s) for au, v, s in recipe]


def build_expression(subject: Subject, emotion: str, *, grid: np.ndarray, style: dict[str, float],
                     amplitude_px: float, rng: np.random.Generator) -> Expression:
    """Sample a recipe, add its AU fields and scale the sum to this clip's apex amplitude.

    Clip amplitude: ``amplitude_px`` x uniform(0.6, 1) x the subject's intensity scale (uniform(0.4,
    0.8) for 'others'); left/right ratio exp(bias + N(0, 0.07)) clipped to [0.8, 1.2]. If the summed
    field's Jacobian norm would exceed ``MAX_JACOBIAN`` (tiny faces), the field is scaled down to it.
    """
    recipe = sample_recipe(emotion, rng, style)
    ratio = float(np.clip(math.exp(style["asymmetry_bias"] + rng.normal(0, 0.07)), 0.8, 1.2))
    low, high = (0.4, 0.8) if emotion == "others" else (0.6, 1.0)
    target = amplitude_px * float(rng.uniform(low, high)) * style["intensity_scale"]
    aus, fields = [], []
    for au, base, side in recipe:
        act = AUActivation(au, base if side in ("both", "r") else 0.0, base * ratio if side in ("both", "l") else 0.0)
        aus.append(act)
        fields.append(au_field(subject, act, grid, width_scale=style["width_scale"]))
    total = np.sum(fields, axis=0).astype(np.float32)
    peak = float(np.sqrt((total ** 2).sum(-1)).max())
    scale = target / peak if peak > 0 else 0.0
    jac = max_jacobian_norm(total) * scale
    if jac > MAX_JACOBIAN:
        scale *= MAX_JACOBIAN / jac
    peaks = {a.code: float(np.sqrt((f ** 2).sum(-1)).max() * scale) for a, f in zip(aus, fields)}
    return Expression(emotion=emotion, aus=tuple(aus), apex_field=total * np.float32(scale),
                      peak_px=peaks, left_right_ratio=ratio)
