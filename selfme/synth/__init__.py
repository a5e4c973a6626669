"""SynthME: an embedded synthetic micro-expression dataset in CASME II's on-disk layout.

Real face texture (scikit-image's public-domain astronaut portrait) under per-subject identity
variation, FACS-inspired action-unit displacement fields with an onset -> apex -> offset profile,
realistic nuisances (head jitter, blinks, flicker, sensor noise, JPEG), and the exact onset -> apex
ground-truth motion of every clip. See ``selfme.synth.dataset`` for the layout written.
"""

from selfme.synth.config import SynthConfig
from selfme.synth.dataset import generate_synthme

__all__ = ["SynthConfig", "generate_synthme"]
