"""Onset -> apex motion of every clip (Eq. 2-5, 9): the learned SelfME motion with cubic B-spline
diffeomorphic expansion and amplification, or a classical optical flow (Table 3 baselines).

``extract_dataset`` is the extract@<dataset> stage; ``evaluate_methods`` compares every method against
SynthME's ground-truth motion (metrics/motion.json).
"""

from selfme.extract.config import CONVENTION, METHODS, ExtractConfig
from selfme.extract.dataset import extract_dataset
from selfme.extract.engine import MotionEngine, PairMotion, expand_learned
from selfme.extract.evaluate import evaluate_methods

__all__ = ["CONVENTION", "METHODS", "ExtractConfig", "MotionEngine", "PairMotion", "evaluate_methods",
           "expand_learned", "extract_dataset"]
