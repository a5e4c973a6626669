"""Cropping one clip: landmarks on the onset frame, one similarity transform from its eye centres, and
that same transform applied to every frame (and to the clip's ground-truth motion, when there is one).

Frames keep their file names (so onset/apex/offset numbers stay valid); the clip folder is written into a
temporary sibling and renamed when complete, with its stamp (``crop.json``) inside. A few later frames
(``drift_check_frames``) get landmarks too, only to measure how far the eyes drift under the fixed crop.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Callable

import numpy as np

from selfme.datasets.frames import index_frames, looks_gray
from selfme.face import records as R
from selfme.face.align import align_eyes, warp_displacement
from selfme.face.config import CropConfig
from selfme.face.consistency import describe, inconsistent_fraction, outlier_frames, references, thumbnail
from selfme.face.frame import FrameColorError, FrameSizeError, warp_frame
from selfme.face.job import ClipJob, drift_frame_numbers, plain, select_frames
from selfme.face.landmarks import Face, LandmarkBackend, eye_centres, largest_face
from selfme.face.readers import CorruptFrame, read_frame
from selfme.face.records import ClipFailed, ClipResult, Problem
from selfme.face.stamp import clip_key, read_stamp, write_stamp
from selfme.io import atomic_dir, write_npy

log = logging.getLogger(__name__)


class ClipCropper:
    """Crops clips with one configuration; the landmark backend is built on first use (never when every
    clip is up to date), frames are warped on the ``pool`` threads."""

    def __init__(self, *, config: CropConfig, backend_factory: Callable[[], LandmarkBackend],
                 pool: Executor) -> None:
        self.config = config
        self.target = config.target()
        self._backend_factory = backend_factory
        self._backend: LandmarkBackend | None = None
        self.pool = pool

    @property
    def backend(self) -> LandmarkBackend:
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    def crop(self, job: ClipJob, *, force: bool = False) -> ClipResult:
        """Crop one clip, or return its stamp's result when it is up to date; never raises for bad input."""
        try:
            frames = index_frames(job.frames_dir)
        except FileNotFoundError as exc:
            return self.failed(job, [], ClipFailed(R.MISSING_CLIP_FOLDER, str(exc)))
        except ValueError as exc:  # two files with one frame number
            return self.failed(job, [], ClipFailed(R.AMBIGUOUS_FRAMES, str(exc)))
        onset, apex, offset = job.key_frames()
        missing = [n for n in (onset, apex, offset) if n not in frames]
        if missing:
            return self.failed(job, [], ClipFailed(
                R.MISSING_FRAME, f"no file for frame(s) {sorted(set(missing))} in {job.frames_dir}"))
        selected = select_frames(frames, onset, offset, self.config.frames)
        gt_in = job.gt_in if job.gt_in is not None and job.gt_in.is_file() else None
        annotation = {k: plain(job.row[k]) for k in ("onset", "apex", "offset", "color")}
        key = clip_key(fingerprint=self.config.fingerprint(), annotation=annotation,
                       sources=selected.values(), ground_truth=gt_in)
        if not force:
            stamp = read_stamp(job.out_dir, key)
            if stamp and (gt_in is None or (job.gt_out and job.gt_out.is_file())):
                return ClipResult(status="skipped", row=self._refreshed(job, stamp["row"]),
                                  problems=[Problem(**w) for w in stamp.get("warnings", [])],
                                  frames_in_output=len(stamp.get("frames", [])))
        warnings: list[Problem] = []
        if job.gt_in is not None and gt_in is None:
            warnings.append(self._problem(job, R.GROUND_TRUTH, f"no ground-truth file {job.gt_in}", "warning"))
        try:
            return self._crop(job, selected, key, gt_in, warnings)
        except ClipFailed as exc:
            return self.failed(job, warnings, exc)

    # -- internals -------------------------------------------------------------------------------

    def _refreshed(self, job: ClipJob, stamped: dict[str, Any]) -> dict[str, Any]:
        """An up-to-date clip's row: the current manifest's columns (labels may have changed without
        touching the crops), the stamp's crop columns, and today's paths."""
        row = {k: plain(v) for k, v in job.row.items()}
        row.update({k: stamped.get(k) for k in (*R.EXTRA_COLUMNS, "color", "n_frames")})
        row["frames_dir"] = job.out_dir.as_posix()
        row["source_frames_dir"] = job.frames_dir.as_posix()
        if row.get("ground_truth") and job.gt_out is not None:
            row["ground_truth"] = job.gt_out.as_posix()
        return row

    def _problem(self, job: ClipJob, problem: str, detail: str, severity: str) -> Problem:
        return Problem(subject=job.subject, clip=job.clip, problem=problem, detail=detail, severity=severity)

    def failed(self, job: ClipJob, warnings: list[Problem], exc: ClipFailed) -> ClipResult:
        """The result of a clip that cannot be cropped: its warnings so far plus the failure."""
        log.warning("%s/%s not cropped: %s", job.subject, job.clip, exc)
        return ClipResult(status="failed", problems=[*warnings, self._problem(job, exc.problem, exc.detail, "failure")])

    def _read(self, path: Path, gray: bool) -> np.ndarray:
        try:
            return read_frame(path, gray=gray)
        except (CorruptFrame, FileNotFoundError) as exc:
            raise ClipFailed(R.CORRUPT_FRAME, str(exc)) from exc

    def _crop(self, job: ClipJob, selected: dict[int, Path], key: str, gt_in: Path | None,
              warnings: list[Problem]) -> ClipResult:
        cfg = self.config
        onset, apex, offset = job.key_frames()
        gray = str(job.row["color"]) == "gray"
        onset_image = self._read(selected[onset], gray)
        self._check_onset(selected, onset, onset_image, gray)
        drift_numbers, drift_images = [], []
        for n in drift_frame_numbers(list(selected), onset, apex, offset, cfg.drift_check_frames):
            try:
                drift_images.append(read_frame(selected[n], gray=gray))
                drift_numbers.append(n)
            except CorruptFrame:
                pass  # reported by the warp pass below
        faces = self.backend.detect([onset_image])[0]
        h, w = onset_image.shape[:2]
        if not faces:
            raise ClipFailed(R.NO_FACE, f"no face found on the onset frame {selected[onset].name} ({w}x{h})")
        face = largest_face(faces)
        if len(faces) > 1:
            boxes = ", ".join(f"{f.area:.0f}" for f in sorted(faces, key=lambda f: -f.area))
            warnings.append(self._problem(job, R.SEVERAL_FACES, (
                f"{len(faces)} faces on the onset frame {selected[onset].name} (box areas {boxes} px); "
                f"took the largest at {[round(v) for v in face.box]}"), "warning"))
        eyes = face.eyes()
        try:
            matrix = align_eyes(eyes, self.target)
        except ValueError as exc:
            raise ClipFailed(R.ALIGNMENT, str(exc)) from exc
        drift = self._drift(job, face, matrix, drift_numbers, drift_images, warnings)

        with atomic_dir(job.out_dir) as tmp:
            onset_gray = gray or looks_gray(thumbnail(onset_image))
            futures = {n: self.pool.submit(warp_frame, path, tmp, matrix, (h, w), gray, onset_gray, config=cfg)
                       for n, path in selected.items()}
            written = self._collect(job, selected, futures, tmp, f"{w}x{h}", warnings)
            gt_written = self._ground_truth(job, gt_in, matrix, (h, w), warnings)
            row = self._row(job, written, gray, face, len(faces), eyes, matrix, drift, gt_written)
            write_stamp(tmp, key=key, row=row, frames=[name for _, name in written],
                        warnings=[p.as_row() for p in warnings])
        return ClipResult(status="cropped", row=row, problems=warnings, frames_written=len(written),
                          frames_in_output=len(written), ground_truth_written=gt_written)

    def _check_onset(self, selected: dict[int, Path], onset: int, image: np.ndarray, gray: bool) -> None:
        """The onset against its two reference frames (``selfme.face.consistency``) before any landmark
        search, so damaged onset data fails the clip as corrupt_frame, not as a face that is not there.
        Unreadable or differently sized references are left to the warp pass, which reports them."""
        numbers = list(selected)
        refs = references(numbers.index(onset), len(numbers))
        if refs is None or self.config.corrupt_area <= 0:
            return
        try:
            ref_images = [read_frame(selected[numbers[j]], gray=gray) for j in refs]
        except (CorruptFrame, FileNotFoundError):
            return
        if any(ref.shape != image.shape for ref in ref_images):
            return
        fraction = inconsistent_fraction(thumbnail(image), *(thumbnail(ref) for ref in ref_images))
        if fraction > self.config.corrupt_area:
            raise ClipFailed(R.CORRUPT_FRAME, f"key frame {onset}: {describe(selected[onset].name, fraction)}")

    def _collect(self, job: ClipJob, selected: dict[int, Path], futures: dict[int, Future], tmp: Path,
                 onset_size: str, warnings: list[Problem]) -> list[tuple[int, str]]:
        """Wait for every frame, then decide: a key frame that is unreadable, damaged (decodes, but
        disagrees with its neighbours: ``selfme.face.consistency``) or of another colour mode than the
        onset (a grey frame in a colour clip) fails the clip, as do frames of another size; another such frame is left out with a warning. Returns
        (number, file) of the frames written."""
        keys = set(job.key_frames())
        written, thumbs, size_errors, corrupt_keys, color_keys = {}, {}, [], [], []
        for n, future in futures.items():
            try:
                written[n], thumbs[n] = future.result()
            except FrameSizeError as exc:
                size_errors.append(str(exc))
            except FrameColorError as exc:
                if n in keys:
                    color_keys.append(f"key frame {n}: {exc}")
                else:
                    warnings.append(self._problem(job, R.COLOR_MISMATCH, f"{exc}; frame {n} left out", "warning"))
            except (CorruptFrame, FileNotFoundError) as exc:
                if n in keys:
                    corrupt_keys.append(f"key frame {n}: {exc}")
                else:
                    warnings.append(self._problem(job, R.CORRUPT_FRAME, f"{exc}; frame {n} left out", "warning"))
        if not size_errors:
            for n, fraction in outlier_frames(thumbs, area=self.config.corrupt_area).items():
                detail = describe(selected[n].name, fraction)
                if n in keys:
                    corrupt_keys.append(f"key frame {n}: {detail}")
                else:
                    warnings.append(self._problem(job, R.CORRUPT_FRAME, f"{detail}; frame {n} left out", "warning"))
                    (tmp / written.pop(n)).unlink()
        if corrupt_keys:
            raise ClipFailed(R.CORRUPT_FRAME, "; ".join(corrupt_keys))
        if color_keys:
            raise ClipFailed(R.COLOR_MISMATCH, "; ".join(color_keys))
        if size_errors:
            raise ClipFailed(R.FRAME_SIZE_MISMATCH, (
                f"the onset frame is {onset_size} but {len(size_errors)} frame(s) differ: "
                + "; ".join(size_errors[:5])))
        return list(written.items())

    def _drift(self, job: ClipJob, face: Face, matrix: np.ndarray, numbers: list[int],
               images: list[np.ndarray], warnings: list[Problem]) -> float:
        """Largest eye movement (crop pixels) between the onset and the checked frames, with landmarks
        fitted inside the onset's face box (no detection); warns above ``drift_warn_px``."""
        if not images:
            return float("nan")
        eyes = face.eyes()
        moved = [float(np.linalg.norm((eye_centres(points) - eyes) @ matrix[:, :2].T, axis=1).max())
                 for points in self.backend.fit(images, face.box)]
        k = int(np.argmax(moved))
        if moved[k] > self.config.drift_warn_px:
            warnings.append(self._problem(job, R.EYE_DRIFT, (
                f"the eyes move {moved[k]:.1f} crop px between the onset and frame {numbers[k]} "
                f"(limit {self.config.drift_warn_px}): head motion the fixed crop does not remove"), "warning"))
        return moved[k]

    def _ground_truth(self, job: ClipJob, gt_in: Path | None, matrix: np.ndarray, shape: tuple[int, int],
                      warnings: list[Problem]) -> bool:
        """Map the clip's onset->apex displacement into crop coordinates; False when there is none."""
        if gt_in is None or job.gt_out is None:
            return False
        try:
            field = np.load(gt_in)
        except (OSError, ValueError) as exc:
            warnings.append(self._problem(job, R.GROUND_TRUTH, f"unreadable {gt_in.name}: {exc}", "warning"))
            return False
        if field.shape != (*shape, 2):
            warnings.append(self._problem(job, R.GROUND_TRUTH, (
                f"{gt_in.name} is {list(field.shape)}, the frames are {list(shape)}: not mapped"), "warning"))
            return False
        write_npy(job.gt_out, warp_displacement(field, matrix, self.config.size, border=self.config.border))
        return True

    def _row(self, job: ClipJob, written: list[tuple[int, str]], gray: bool, face: Face, n_faces: int,
             eyes: np.ndarray, matrix: np.ndarray, drift: float, gt_written: bool) -> dict[str, Any]:
        """The output manifest row: the contract's columns (frames now the crops) plus the alignment."""
        onset, _, offset = job.key_frames()
        row = {k: plain(v) for k, v in job.row.items()}
        row.update({
            "frames_dir": job.out_dir.as_posix(),
            "n_frames": sum(1 for n, _ in written if onset <= n <= offset),
            "color": "gray" if gray and self.config.gray == "keep" else "rgb",
            "source_frames_dir": job.frames_dir.as_posix(),
            "source_color": str(job.row["color"]),
            "crop_size": int(self.config.size),
            "backend": self.backend.name,
            "n_faces": int(n_faces),
            "face_score": round(float(face.score), 4),
            "eye_left_x": round(float(eyes[0, 0]), 3), "eye_left_y": round(float(eyes[0, 1]), 3),
            "eye_right_x": round(float(eyes[1, 0]), 3), "eye_right_y": round(float(eyes[1, 1]), 3),
            "eye_drift_px": None if drift != drift else round(drift, 3),
            "transform": json.dumps(np.round(matrix, 8).tolist()),
            "landmarks": json.dumps(np.round(face.landmarks, 2).tolist()),
            "ground_truth": job.gt_out.as_posix() if gt_written and job.gt_out else "",
        })
        return row
