"""Our TV-L1 (selfme.flow.tvl1) against OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` (a script, not a test).

OpenCV's TV-L1 lives in opencv-contrib, which must never be installed next to the project's opencv-python
(both provide ``cv2``). So the reference flows are made in a separate, throwaway environment that has only
numpy, scikit-image and opencv-contrib-python-headless, and compared here in the project's environment:

    python3 -m venv .venv-contrib && .venv-contrib/bin/pip install opencv-contrib-python-headless scikit-image
    .venv-contrib/bin/python bench/compare_tvl1_opencv.py make --out tests/data/tvl1_opencv.npz
    .venv-contrib/bin/python bench/compare_tvl1_opencv.py make --out tvl1_synthme.npz --synthme-clips 47 \
        --astronaut 0
    python bench/compare_tvl1_opencv.py compare --fixtures tests/data/tvl1_opencv.npz

``make`` (needs cv2.optflow; imports nothing from this project) writes grey image pairs and OpenCV's flows
with its default parameters: scikit-image's astronaut crops with a known sub-pixel translation and a small
affine warp, and SynthME onset/apex face crops (from data/faces/synthme/manifest.csv). ``compare`` runs our
TV-L1 on the same pairs and prints the end-point error (EPE) between the two flows, overall and on the
interior (8 px from the border), and each one's EPE against the known warp where there is one. Either mode
prints a line and exits 0 when what it needs is absent (no cv2.optflow, no fixtures).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

MARGIN = 8


def _warp_pair(gray: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre crops I0, I1 of ``gray`` with I1(A x) = I0(x) for the 2x3 affine A (crop coordinates), so the
    true forward flow is F(x) = A x - x. I1 is sampled from the whole image, so its border has real content."""
    import cv2

    h, w = gray.shape
    top, left = (h - size) // 2, (w - size) // 2
    i0 = gray[top:top + size, left:left + size]
    a = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(a)[:2]
    inv[:, 2] += (left, top)  # I1(y) = G(A^-1 y + offset)
    i1 = cv2.warpAffine(gray.astype(np.float32), inv, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REFLECT_101)
    i1 = np.clip(np.rint(i1), 0, 255).astype(np.uint8)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    moved = np.einsum("ij,jhw->ihw", matrix, np.stack([xs, ys, np.ones_like(xs)]))
    flow = np.stack([moved[0] - xs, moved[1] - ys], axis=-1)
    return i0.copy(), i1, flow.astype(np.float32)


def astronaut_pairs(size: int) -> list[dict]:
    import cv2
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[40:360, 120:440]  # the face and helmet
    c = (size - 1) / 2.0
    shift = np.array([[1, 0, 0.4], [0, 1, -0.3]])
    rot = cv2.getRotationMatrix2D((c, c), 2.0, 1.02)
    rot[:, 2] += (0.6, 0.25)
    pairs = []
    for name, matrix in (("astronaut_shift", shift), ("astronaut_affine", rot)):
        i0, i1, flow = _warp_pair(gray, matrix, size)
        pairs.append({"name": name, "i0": i0, "i1": i1, "truth": flow})
    return pairs


def synthme_pairs(manifest: Path, clips: int) -> list[dict]:
    import cv2

    if not manifest.is_file() or clips <= 0:
        return []
    pairs = []
    with open(manifest, newline="", encoding="utf-8") as fh:
        for row in list(csv.DictReader(fh))[:clips]:
            folder = Path(row["frames_dir"])
            frames = {int("".join(ch for ch in p.stem if ch.isdigit()) or -1): p for p in folder.iterdir()}
            i0 = cv2.imread(str(frames[int(row["onset"])]), cv2.IMREAD_GRAYSCALE)
            i1 = cv2.imread(str(frames[int(row["apex"])]), cv2.IMREAD_GRAYSCALE)
            pair = {"name": f"synthme_{row['subject']}_{row['clip']}", "i0": i0, "i1": i1}
            if row.get("ground_truth") and Path(row["ground_truth"]).is_file():
                pair["truth"] = np.load(row["ground_truth"]).astype(np.float32)
            pairs.append(pair)
    return pairs


def make(args: argparse.Namespace) -> int:
    import cv2

    if not hasattr(cv2, "optflow"):
        print("skipped: cv2.optflow is absent (it ships in opencv-contrib; make fixtures in a separate venv)")
        return 0
    pairs = (astronaut_pairs(args.size) if args.astronaut else []) + synthme_pairs(Path(args.manifest),
                                                                                   args.synthme_clips)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    arrays, names, seconds = {}, [], []
    for k, pair in enumerate(pairs):
        tic = time.perf_counter()
        flow = tvl1.calc(pair["i0"], pair["i1"], None)
        seconds.append(time.perf_counter() - tic)
        names.append(pair["name"])
        arrays[f"i0_{k}"], arrays[f"i1_{k}"] = pair["i0"], pair["i1"]
        arrays[f"opencv_{k}"] = flow.astype(np.float16 if args.float16 else np.float32)
        if "truth" in pair and (args.truth or not pair["name"].startswith("synthme")):
            arrays[f"truth_{k}"] = pair["truth"].astype(np.float16 if args.float16 else np.float32)
    meta = {"names": names, "opencv": cv2.__version__, "params": "DualTVL1OpticalFlow_create() defaults",
            "opencv_seconds": seconds}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)
    print(f"{len(pairs)} pairs -> {out} ({out.stat().st_size / 1024:.0f} KiB), OpenCV {cv2.__version__}, "
          f"{1000 * float(np.mean(seconds)):.0f} ms per pair")
    return 0


def _epe(a: np.ndarray, b: np.ndarray, margin: int = 0) -> float:
    if margin:
        a, b = a[margin:-margin, margin:-margin], b[margin:-margin, margin:-margin]
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64), axis=-1).mean())


def compare(args: argparse.Namespace) -> int:
    path = Path(args.fixtures)
    if not path.is_file():
        print(f"skipped: no fixtures at {path} (make them with the 'make' mode in an opencv-contrib venv)")
        return 0
    import torch

    from selfme.flow.tvl1 import TVL1Params, tvl1_flow

    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    rows = []
    for k, name in enumerate(meta["names"]):
        tic = time.perf_counter()
        ours = tvl1_flow(data[f"i0_{k}"], data[f"i1_{k}"], TVL1Params(), device=args.device).cpu().numpy()
        seconds = time.perf_counter() - tic
        ref = data[f"opencv_{k}"].astype(np.float32)
        row = {"pair": name, "size": list(ref.shape[:2]), "epe_vs_opencv": _epe(ours, ref),
               "epe_vs_opencv_interior": _epe(ours, ref, MARGIN),
               "max_ep_diff_interior": float(np.linalg.norm(ours - ref, axis=-1)[MARGIN:-MARGIN, MARGIN:-MARGIN].max()),
               "ours_seconds": seconds, "opencv_seconds": meta["opencv_seconds"][k]}
        if f"truth_{k}" in data:
            truth = data[f"truth_{k}"].astype(np.float32)
            row["epe_truth_ours_interior"] = _epe(ours, truth, MARGIN)
            row["epe_truth_opencv_interior"] = _epe(ref, truth, MARGIN)
        rows.append(row)
        print(json.dumps({k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()}))
    summary = {"opencv": meta["opencv"], "pairs": len(rows), "device": str(args.device or "cpu"),
               "torch_threads": torch.get_num_threads(),
               "mean_epe_vs_opencv": float(np.mean([r["epe_vs_opencv"] for r in rows])),
               "mean_epe_vs_opencv_interior": float(np.mean([r["epe_vs_opencv_interior"] for r in rows]))}
    truths = [r for r in rows if "epe_truth_ours_interior" in r]
    if truths:
        summary["mean_epe_truth_ours_interior"] = float(np.mean([r["epe_truth_ours_interior"] for r in truths]))
        summary["mean_epe_truth_opencv_interior"] = float(np.mean([r["epe_truth_opencv_interior"] for r in truths]))
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "pairs": rows}, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    mk = sub.add_parser("make", help="OpenCV reference flows (needs cv2.optflow)")
    mk.add_argument("--out", default="tests/data/tvl1_opencv.npz")
    mk.add_argument("--size", type=int, default=80, help="astronaut crop side")
    mk.add_argument("--astronaut", type=int, default=1, help="1: include the two astronaut pairs")
    mk.add_argument("--manifest", default="data/faces/synthme/manifest.csv")
    mk.add_argument("--synthme-clips", type=int, default=1)
    mk.add_argument("--float16", type=int, default=1, help="store flows as float16 (small fixtures)")
    mk.add_argument("--truth", type=int, default=0, help="1: also store SynthME's ground truth (bigger file)")
    cmp_ = sub.add_parser("compare", help="our TV-L1 against the stored OpenCV flows")
    cmp_.add_argument("--fixtures", default="tests/data/tvl1_opencv.npz")
    cmp_.add_argument("--device", default=None)
    cmp_.add_argument("--json", default=None, help="also write the rows and summary to this file")
    args = parser.parse_args(argv)
    return make(args) if args.mode == "make" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
