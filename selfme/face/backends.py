"""Landmark backends: ``dlib`` (offline: HOG detector + the 68-point predictor shipped in the
``face-recognition-models`` package) and ``face_alignment`` (S3FD + 2DFAN4, GPU when present, batched;
its weights must be on disk, nothing is downloaded).

Both detect on a copy shrunk to at most ``max_side`` pixels (faces in ME frames are large) and fit the
landmarks on the full-resolution frame. ``fit`` re-finds a face whose box is known (the onset's) on later
frames of a clip, for the eye-drift check.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from selfme.face.landmarks import Face, LandmarkBackend, as_rgb, detection_scale

log = logging.getLogger(__name__)

BACKENDS = ("dlib", "face_alignment")

#: face_alignment's weight files (name -> where its authors publish it) and their folder.
FACE_ALIGNMENT_WEIGHTS = {
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
    "s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
}
DLIB_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
#: Face width (px) the dlib detector sees when re-finding a known face (its window is 80 px).
FIT_FACE_WIDTH = 120.0


def _shrunk(image: np.ndarray, factor: float) -> np.ndarray:
    if factor >= 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                      interpolation=cv2.INTER_AREA)


def dlib_predictor_path() -> Path:
    """The 68-point shape predictor shipped inside the ``face-recognition-models`` package (located
    without importing the package, whose ``__init__`` needs the removed ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the dlib backend needs the 68-point landmark model from the 'face-recognition-models' "
            "package: pip install dlib-bin face-recognition-models")
    for folder in spec.submodule_search_locations:
        path = Path(folder, "models", DLIB_PREDICTOR)
        if path.is_file():
            return path
    raise FileNotFoundError(f"{DLIB_PREDICTOR} is missing from the face-recognition-models package "
                            f"({list(spec.submodule_search_locations)}); reinstall it")


class DlibBackend:
    """dlib's HOG frontal face detector and its 68-point shape predictor (iBUG layout), on the CPU."""

    name = "dlib"

    def __init__(self, *, upsample: int = 1, min_score: float = 0.5, max_side: int | None = 640,
                 predictor_path: str | Path | None = None) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ImportError("the dlib backend needs dlib: pip install dlib-bin face-recognition-models") from exc
        self._dlib = dlib
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.max_side = max_side
        path = Path(predictor_path) if predictor_path else dlib_predictor_path()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces with a HOG score above ``min_score`` and their 68 landmarks, for each image."""
        results = []
        for image in images:
            image = np.ascontiguousarray(image if image.ndim == 2 else as_rgb(image))
            factor = detection_scale(image.shape, self.max_side)
            small = np.ascontiguousarray(_shrunk(image, factor))
            rects, scores, _ = self._detector.run(small, self.upsample, self.min_score)
            faces = []
            for rect, score in zip(rects, scores):
                box = (rect.left() / factor, rect.top() / factor, rect.right() / factor, rect.bottom() / factor)
                faces.append(Face(box=box, score=float(score), landmarks=self._shape(image, box)))
            results.append(faces)
        return results

    def fit(self, images: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> list[np.ndarray]:
        """Landmarks of the face near ``box`` on each image: the detector runs only on a window around
        the box (resampled so the face is about 120 px wide), the shape predictor on the full frame; when
        the window holds no face, the landmarks are fitted inside ``box`` itself."""
        results = []
        for image in images:
            image = np.ascontiguousarray(image if image.ndim == 2 else as_rgb(image))
            results.append(self._shape(image, self._detect_near(image, box) or box))
        return results

    def _detect_near(self, image: np.ndarray, box: tuple[float, float, float, float]
                     ) -> tuple[float, float, float, float] | None:
        x0, y0, x1, y1 = box
        w, h = max(1.0, x1 - x0), max(1.0, y1 - y0)
        rx0, ry0 = max(0, int(x0 - w / 2)), max(0, int(y0 - h / 2))
        rx1, ry1 = min(image.shape[1], int(x1 + w / 2)), min(image.shape[0], int(y1 + h / 2))
        if rx1 - rx0 < 8 or ry1 - ry0 < 8:
            return None
        factor = FIT_FACE_WIDTH / w
        window = cv2.resize(image[ry0:ry1, rx0:rx1], None, fx=factor, fy=factor,
                            interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        rects, _, _ = self._detector.run(np.ascontiguousarray(window), 0, self.min_score)
        if not rects:
            return None
        found = [(r.left() / factor + rx0, r.top() / factor + ry0, r.right() / factor + rx0,
                  r.bottom() / factor + ry0) for r in rects]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return min(found, key=lambda b: (b[0] + b[2] - 2 * cx) ** 2 + (b[1] + b[3] - 2 * cy) ** 2)

    def _shape(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(image, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def face_alignment_checkpoints() -> Path:
    """The folder face_alignment reads its weights from: ``$TORCH_HOME/hub/checkpoints`` (torch's
    default ``~/.cache/torch/hub/checkpoints``)."""
    import torch.hub

    return Path(torch.hub.get_dir(), "checkpoints")


def require_face_alignment_weights() -> dict[str, Path]:
    """Paths of both face_alignment weight files, or a FileNotFoundError naming the missing files, the
    folder they go in and where to get them (checked before face_alignment could try to download)."""
    folder = face_alignment_checkpoints()
    paths = {name: folder / name for name in FACE_ALIGNMENT_WEIGHTS}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        sources = "; ".join(f"{name} from {FACE_ALIGNMENT_WEIGHTS[name]}" for name in missing)
        raise FileNotFoundError(
            f"the face_alignment backend needs its weights {' and '.join(missing)} in {folder} "
            f"(that is $TORCH_HOME/hub/checkpoints/, default ~/.cache/torch/hub/checkpoints/), and "
            f"nothing is downloaded here. On a connected machine fetch {sources}, copy them into that "
            f"folder, or set crop.backend: dlib (offline, ships with pip packages).")
    return paths


class FaceAlignmentBackend:
    """face_alignment (Bulat & Tzimiropoulos): S3FD detector + 2DFAN4 68-point landmarks, batched,
    on the GPU when one is present."""

    name = "face_alignment"

    def __init__(self, *, device: str = "auto", batch_size: int = 8, min_score: float = 0.5,
                 max_side: int | None = 640, compile: bool = False) -> None:
        paths = require_face_alignment_weights()
        import face_alignment
        import torch

        from selfme.device import resolve_device

        device = str(resolve_device(device, key="crop.face_alignment.device"))
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.max_side = max_side
        self._torch = torch
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, flip_input=False, face_detector="sfd",
            face_detector_kwargs={"path_to_detector": str(paths["s3fd-619a316812.pth"]),
                                  "filter_threshold": float(min_score)},
            compile=bool(compile), max_batch_size=self.batch_size)
        log.info("face_alignment backend on %s (batch %d)", device, self.batch_size)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """S3FD boxes in batches of equally sized images, then 2DFAN4 landmarks on the full frames."""
        rgb = [as_rgb(image) for image in images]
        results: list[list[Face]] = [[] for _ in rgb]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, image in enumerate(rgb):
            by_shape[image.shape].append(i)
        for shape, indices in by_shape.items():
            factor = detection_scale(shape, self.max_side)
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                batch = np.stack([_shrunk(rgb[i], factor) for i in chunk]).transpose(0, 3, 1, 2)
                tensor = self._torch.from_numpy(np.ascontiguousarray(batch)).float()
                boxes = self._fa.face_detector.detect_from_batch(tensor)
                for i, found in zip(chunk, boxes):
                    results[i] = self._landmarks(rgb[i], found, factor)
        return results

    def fit(self, images: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> list[np.ndarray]:
        """Landmarks of the face nearest ``box`` on each image (batched detection); fitted inside
        ``box`` itself where no face is found."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        results = []
        for image, faces in zip(images, self.detect(images)):
            if faces:
                near = min(faces, key=lambda f: (f.box[0] + f.box[2] - 2 * cx) ** 2 + (f.box[1] + f.box[3] - 2 * cy) ** 2)
                results.append(near.landmarks)
                continue
            points = self._fa.get_landmarks_from_image(as_rgb(image), detected_faces=[np.array([*box, 1.0])])
            results.append(np.asarray(points[0], dtype=np.float64)[:, :2])
        return results

    def _landmarks(self, image: np.ndarray, boxes: Any, factor: float) -> list[Face]:
        if len(boxes) == 0:
            return []
        full = [np.concatenate([np.asarray(b[:4], dtype=np.float64) / factor, [float(b[4])]]) for b in boxes]
        points = self._fa.get_landmarks_from_image(image, detected_faces=full)
        return [Face(box=tuple(float(v) for v in b[:4]), score=float(b[4]),
                     landmarks=np.asarray(p, dtype=np.float64)[:, :2]) for b, p in zip(full, points or [])]


def make_backend(name: str, *, max_side: int | None = 640, options: dict[str, Any] | None = None) -> LandmarkBackend:
    """Construct the backend ``name`` with its options (the ``crop.<name>`` params section)."""
    options = dict(options or {})
    if name == "dlib":
        return DlibBackend(max_side=max_side, **options)
    if name == "face_alignment":
        return FaceAlignmentBackend(max_side=max_side, **options)
    raise ValueError(f"unknown landmark backend {name!r}; choose from {list(BACKENDS)}")
