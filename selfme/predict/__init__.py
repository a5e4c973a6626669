"""Using a trained model on new clips: the model bundle (train_full stage), ``selfme predict`` (crop,
apex spotting, motion, classification, Grad-CAM) and ``selfme visualize`` (Fig. 5-style panels).

Modules: ``bundle`` (format, save/load), ``train_full`` (SCViT on all subjects -> bundle), ``clip``
(folder / video reading, key frames, cropping), ``gradcam``, ``predict`` (the Predictor), ``visualize``,
``cli``.
"""

from selfme.predict.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, Bundle, load_bundle, make_bundle, save_bundle
from selfme.predict.gradcam import gradcam, overlay
from selfme.predict.predict import Predictor
from selfme.predict.train_full import train_full

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "Bundle", "Predictor", "gradcam", "load_bundle", "make_bundle",
           "overlay", "save_bundle", "train_full"]
