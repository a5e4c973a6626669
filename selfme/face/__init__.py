"""Face crop and alignment (Sec. 4.3): landmarks on each clip's onset frame, one similarity transform per
clip (eye line horizontal, fixed inter-ocular distance and eye position), the same crop for every frame."""

from selfme.face.align import AlignTarget, align_eyes, similarity_from_eyes, warp, warp_displacement
from selfme.face.backends import BACKENDS, make_backend, require_face_alignment_weights
from selfme.face.config import CropConfig
from selfme.face.crop import CropFailureRate, crop_dataset
from selfme.face.landmarks import Face, eye_centres

__all__ = ["AlignTarget", "BACKENDS", "CropConfig", "CropFailureRate", "Face", "align_eyes", "crop_dataset",
           "eye_centres", "make_backend", "require_face_alignment_weights", "similarity_from_eyes", "warp",
           "warp_displacement"]
