"""``selfme predict``: one new clip through the trained pipeline, with pictures of what it saw.

Steps, each the pipeline's own code: read the clip (:mod:`selfme.predict.clip`), crop the face with the
bundle's ``crop`` parameters (the crop stage's per-clip function), spot the apex on the aligned crops
when it is not given (:func:`selfme.datasets.spotting.spot_apex`, from the onset to the last frame),
compute the onset -> apex motion with the extract stage's engine (:class:`selfme.extract.MotionEngine`,
the bundle's ``extract`` parameters and motion learner; stored as float16 like the extract stage's
files), turn it into SCViT's input (:func:`selfme.scvit.motion_to_input`) and classify; Grad-CAM of the
predicted class is drawn over the cropped apex frame.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfme.datasets.spotting import spot_apex
from selfme.extract.engine import MotionEngine
from selfme.face.backends import make_backend
from selfme.face.landmarks import LandmarkBackend
from selfme.flow.viz import flow_to_rgb, motion_figure
from selfme.io import read_image, write_image, write_json, write_npy
from selfme.predict.bundle import DEFAULT_BUNDLE, Bundle, load_bundle
from selfme.predict.clip import ClipSource, crop_clip, key_frames, read_clip
from selfme.predict.gradcam import gradcam, overlay
from selfme.scvit.inputs import motion_to_input

log = logging.getLogger(__name__)

DEFAULT_OUT = "predict_out"


@dataclass
class PreparedClip:
    """A clip up to the classifier's input: key frames, cropped onset/apex, the stored-form motion."""

    source: ClipSource
    onset: int
    apex: int
    apex_source: str
    onset_image: np.ndarray
    apex_image: np.ndarray
    flow: np.ndarray
    crop_row: dict[str, Any]
    warnings: list[str]
    folding: float
    seconds: dict[str, float] = field(default_factory=dict)


class Predictor:
    """A loaded bundle ready to classify clips: motion engine, classifier, landmark backend (built on
    the first clip)."""

    def __init__(self, bundle: Bundle | str | os.PathLike = DEFAULT_BUNDLE, *, device: str = "auto") -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.crop_config = self.bundle.crop_config()
        self.extract_config = self.bundle.extract_config(device=device)
        self.engine = MotionEngine(self.extract_config, learner=self.bundle.motion_learner())
        self.device = self.engine.device
        self.model = self.bundle.classifier().to(self.device)
        self.input_config = self.bundle.scvit_config().input_config()
        self._backend: LandmarkBackend | None = None
        self.backend_seconds = 0.0  # loading the landmark models (once, on the first clip)

    def backend(self) -> LandmarkBackend:
        if self._backend is None:
            tic = time.perf_counter()
            c = self.crop_config
            self._backend = make_backend(c.backend, max_side=c.detect_max_side, options=c.backend_options())
            self.backend_seconds = time.perf_counter() - tic
        return self._backend

    def prepare(self, clip: str | os.PathLike, *, onset: int | None = None, apex: int | None = None,
                workdir: str | os.PathLike) -> PreparedClip:
        """Read, crop, spot (when ``apex`` is None) and compute the motion of one clip."""
        seconds: dict[str, float] = {}
        tic = time.perf_counter()
        source = read_clip(clip, workdir=workdir)
        onset, apex = key_frames(source, onset=onset, apex=apex)
        seconds["read"] = time.perf_counter() - tic
        tic, loaded = time.perf_counter(), self._backend is not None
        crops = crop_clip(source, onset=onset, apex=apex, config=self.crop_config, backend=self.backend,
                          out_dir=Path(workdir) / "crop" / source.name)
        seconds["crop"] = time.perf_counter() - tic
        if not loaded and self._backend is not None:  # the first clip also loaded the landmark models
            seconds["landmark_models"] = self.backend_seconds
            seconds["crop"] -= self.backend_seconds
        apex_source = "given"
        if apex is None:
            tic = time.perf_counter()
            numbers = list(crops.frames)
            apex = numbers[spot_apex([crops.frames[n] for n in numbers])]
            apex_source = "spotted"
            seconds["spot"] = time.perf_counter() - tic
        tic = time.perf_counter()
        onset_image, apex_image = read_image(crops.frames[onset]), read_image(crops.frames[apex])
        result = self.engine.compute([onset_image], [apex_image])[0]
        flow = result.flow.astype(np.float16).astype(np.float32)  # what the extract stage stores
        seconds["motion"] = time.perf_counter() - tic
        return PreparedClip(source=source, onset=onset, apex=apex, apex_source=apex_source,
                            onset_image=onset_image, apex_image=apex_image, flow=flow, crop_row=crops.row,
                            warnings=crops.warnings, folding=result.folding, seconds=seconds)

    def classify(self, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Class probabilities [C], the Grad-CAM grid map of the predicted class, and that class."""
        x = motion_to_input(flow, self.input_config)[None].to(self.device)
        with torch.no_grad():
            probs = torch.softmax(self.model(x).float(), dim=1)[0].cpu().numpy().astype(np.float64)
        cam, index = gradcam(self.model, x, class_index=int(probs.argmax()))
        return probs, cam, index

    def predict(self, clip: str | os.PathLike, *, onset: int | None = None, apex: int | None = None,
                out: str | os.PathLike | None = None) -> dict[str, Any]:
        """Classify one clip and write its pictures into ``out`` (default ``predict_out/<clip name>``);
        returns the result record (also written as ``prediction.json``)."""
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="selfme-predict-") as workdir:
            prepared = self.prepare(clip, onset=onset, apex=apex, workdir=workdir)
        tic = time.perf_counter()
        probs, cam, index = self.classify(prepared.flow)
        prepared.seconds["classify"] = time.perf_counter() - tic
        out_dir = Path(out) if out is not None else Path(DEFAULT_OUT) / prepared.source.name
        outputs = write_outputs(prepared, cam=cam, label=self.bundle.class_names[index],
                                probability=float(probs[index]), out_dir=out_dir)
        prepared.seconds["total"] = time.perf_counter() - start
        record = result_record(prepared, probs=probs, index=index, bundle=self.bundle, outputs=outputs,
                               extract=self.extract_config.method_params(), cam=cam)
        write_json(out_dir / "prediction.json", record)
        log.info("predict %s: %s (p %.3f), onset %d, apex %d (%s), %.2f s -> %s", prepared.source.path,
                 record["label"], probs[index], prepared.onset, prepared.apex, prepared.apex_source,
                 prepared.seconds["total"], out_dir)
        return record


def write_outputs(prepared: PreparedClip, *, cam: np.ndarray, label: str, probability: float,
                  out_dir: Path) -> dict[str, str]:
    """onset.png, apex.png (crops), motion.png (flow colours), motion.npy (float16, as the extract stage
    stores it), gradcam.png (overlay on the apex crop) and panel.png (all side by side, with the key)."""
    heat = overlay(prepared.apex_image, cam)
    files = {"onset_png": out_dir / "onset.png", "apex_png": out_dir / "apex.png",
             "motion_png": out_dir / "motion.png", "motion_npy": out_dir / "motion.npy",
             "gradcam_png": out_dir / "gradcam.png", "panel_png": out_dir / "panel.png"}
    write_image(files["onset_png"], prepared.onset_image)
    write_image(files["apex_png"], prepared.apex_image)
    write_image(files["motion_png"], flow_to_rgb(prepared.flow))
    write_npy(files["motion_npy"], prepared.flow.astype(np.float16))
    write_image(files["gradcam_png"], heat)
    panels = [(f"onset {prepared.onset}", prepared.onset_image), (f"apex {prepared.apex}", prepared.apex_image),
              ("motion", prepared.flow), (f"Grad-CAM: {label} {probability:.2f}", heat)]
    write_image(files["panel_png"], motion_figure(panels, tile=160))
    return {k: v.as_posix() for k, v in files.items()}


def result_record(prepared: PreparedClip, *, probs: np.ndarray, index: int, bundle: Bundle,
                  outputs: dict[str, str], extract: dict[str, Any], cam: np.ndarray) -> dict[str, Any]:
    """The JSON ``--json`` prints (see README): label, probabilities, key frames, provenance, timings."""
    source, row = prepared.source, prepared.crop_row
    numbers = list(source.frames)
    magnitude = np.hypot(prepared.flow[..., 0], prepared.flow[..., 1])
    return {
        "label": bundle.class_names[index],
        "probabilities": {name: round(float(p), 6) for name, p in zip(bundle.class_names, probs)},
        "onset": prepared.onset, "apex": prepared.apex, "apex_source": prepared.apex_source,
        "clip": source.path.as_posix(), "clip_kind": source.kind,
        "frames": {"first": numbers[0], "last": numbers[-1], "count": len(numbers),
                   "numbering": "from 0" if source.kind == "video" else "file names",
                   **({"fps": source.fps} if source.fps else {})},
        "model": bundle.path.as_posix(), "model_dataset": bundle.payload["dataset"],
        "selfme_version": bundle.payload["selfme_version"],
        "motion": {"method": bundle.motion_method, **extract,
                   "mean_magnitude_px": round(float(magnitude.mean()), 5),
                   "max_magnitude_px": round(float(magnitude.max()), 5), "folding": round(prepared.folding, 6)},
        "face": {"backend": row.get("backend"), "crop_size": row.get("crop_size"), "n_faces": row.get("n_faces"),
                 "score": row.get("face_score"), "eye_drift_px": row.get("eye_drift_px")},
        # empty: no patch token raises the class score (every weighted sum is <= 0 before the ReLU)
        "gradcam": {"layer": "blocks[-1].norm1", "grid": list(cam.shape), "empty": bool(cam.max() <= 0)},
        "warnings": prepared.warnings,
        "outputs": outputs,
        "seconds": {k: round(v, 4) for k, v in prepared.seconds.items()},
    }
