"""SelfME's self-supervised motion learner (Sec. 3.2): keypoints, zeroth-order dense motion, reconstruction.

Modules follow First Order Motion Model's layout (and names, so its vox-256 checkpoint loads):
``keypoint_detector`` (F_kp, Eq. 1), ``dense_motion`` (F_dense, Eq. 2-5), ``generator``, ``losses``
(Eq. 6-7), ``transform`` (thin-plate splines), ``model`` (the learner, Eq. 8; saving and loading),
``data`` (frame-pair datasets), ``train`` (the loop), ``checkpoint`` (resumable, hash-keyed),
``evaluate`` and ``viz`` (checks and pictures), ``pipeline`` (the pretrain / finetune stages), ``cli``
(``selfme motion-eval``).

For motion extraction: ``load_motion_model(path).estimate_motion(source, target, gamma=2.0)`` with frames
resized to ``model.config['image_size']`` gives ``displacement`` [B, 2, H/4, W/4] in pixels of that size.
"""

from selfme.motion.dense_motion import DenseMotionNetwork, displacement_to_opencv_flow, grid_to_displacement
from selfme.motion.generator import OcclusionAwareGenerator
from selfme.motion.keypoint_detector import KPDetector
from selfme.motion.model import (PAPER_ARCHITECTURE, MotionLearner, load_motion_model, load_weights, model_config,
                                 save_motion_model)

__all__ = ["PAPER_ARCHITECTURE", "DenseMotionNetwork", "KPDetector", "MotionLearner", "OcclusionAwareGenerator",
           "displacement_to_opencv_flow", "grid_to_displacement", "load_motion_model", "load_weights",
           "model_config", "save_motion_model"]
