"""``selfme predict`` (classify a new clip with a model bundle) and ``selfme visualize`` (Fig. 5-style
Grad-CAM panels with and without the SC loss).

    selfme predict CLIP [--onset N --apex M] [--model models/bundle/synthme.pt] [--out DIR] [--json]
    selfme visualize CLIP ... | --manifest CSV [--limit 4]  --model A.pt [--compare B.pt] [--out FIG.png]

CLIP is a folder of numbered frames (numbers from the file names, ``img46.jpg`` is 46) or a video file
(mp4, avi, ...; its frames are numbered from 0). Bad input (unreadable video, no face, onset not
before the apex, fewer than two frames, a bundle of another format version) ends with one error line
and exit status 2.
"""

from __future__ import annotations

import argparse
import json

from selfme.predict.bundle import DEFAULT_BUNDLE
from selfme.predict.predict import DEFAULT_OUT, Predictor
from selfme.predict.visualize import ClipItem, manifest_items, visualize


def format_result(record: dict) -> str:
    """The human-readable summary ``selfme predict`` prints without --json."""
    frames = record["frames"]
    width = max(len(c) for c in record["probabilities"])
    numbering = "numbered from 0" if record["clip_kind"] == "video" else "numbers from the file names"
    lines = [f"clip {record['clip']} ({record['clip_kind']}, frames {frames['first']}..{frames['last']}, {numbering})",
             f"onset {record['onset']}, apex {record['apex']} ({record['apex_source']})",
             f"prediction: {record['label']}"]
    lines += [f"  {name:<{width}}  {p:.4f}" for name, p in record["probabilities"].items()]
    lines += [f"warning: {w}" for w in record["warnings"]]
    if record["gradcam"]["empty"]:
        lines.append(f"note: the Grad-CAM map is empty (no patch raises the score of {record['label']})")
    out = record["outputs"]
    lines.append(f"motion {out['motion_png']}, Grad-CAM {out['gradcam_png']}, panel {out['panel_png']} "
                 f"({record['seconds']['total']:.2f} s)")
    return "\n".join(lines)


def run_predict(args: argparse.Namespace) -> int:
    predictor = Predictor(args.model, device=args.device)
    record = predictor.predict(args.clip, onset=args.onset, apex=args.apex, out=args.out)
    print(json.dumps(record, indent=2) if args.json else format_result(record))
    return 0


def run_visualize(args: argparse.Namespace) -> int:
    if bool(args.clips) == bool(args.manifest):
        raise ValueError("give either clip paths or --manifest CSV")
    items = (manifest_items(args.manifest, limit=args.limit) if args.manifest
             else [ClipItem(path=c, name=c.rstrip("/").split("/")[-1]) for c in args.clips])
    model = Predictor(args.model, device=args.device)
    compare = Predictor(args.compare, device=args.device) if args.compare else None
    records = visualize(items, model=model, compare=compare, out=args.out, tile=args.tile)
    omega = {p: p.bundle.payload["scvit"].get("omega") for p in (model, compare) if p is not None}
    for r in records:
        line = (f"{r['clip']}: onset {r['onset']}, apex {r['apex']}; omega {omega[model]:g}: {r['model']} "
                f"({r['model_p']:.2f})")
        if compare is not None:
            line += f"; omega {omega[compare]:g}: {r['compare']} ({r['compare_p']:.2f})"
        print(line + (f", ground truth {r['label']}" if r["label"] else ""))
    print(f"figure: {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify a new clip (folder of frames or video) with a model bundle")
    p.add_argument("clip", help="a folder of numbered frames or a video file (frames numbered from 0)")
    p.add_argument("--onset", type=int, default=None, help="onset frame number (default: the first frame)")
    p.add_argument("--apex", type=int, default=None,
                   help="apex frame number (default: spotted on the aligned crops, onset to last frame)")
    p.add_argument("--model", default=DEFAULT_BUNDLE, help=f"model bundle (default {DEFAULT_BUNDLE})")
    p.add_argument("--out", default=None, help=f"folder for the pictures (default {DEFAULT_OUT}/<clip name>)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda:N")
    p.set_defaults(func=run_predict)

    v = subparsers.add_parser("visualize", help="Fig. 5-style panels: onset, apex, motion, Grad-CAM with/without SC")
    v.add_argument("clips", nargs="*", help="clip folders or videos (onset = first frame, apex spotted)")
    v.add_argument("--manifest", default=None, help="or a manifest CSV: its clips with their onset, apex, label")
    v.add_argument("--limit", type=int, default=4, help="clips taken from --manifest, classes in turn (default 4)")
    v.add_argument("--model", default=DEFAULT_BUNDLE, help="the bundle trained with SC (omega > 0)")
    v.add_argument("--compare", default=None,
                   help="the bundle trained without SC (python -m stages.train_full -S scvit.omega=0 --out ...)")
    v.add_argument("--out", default=f"{DEFAULT_OUT}/figure5.png", help="output PNG")
    v.add_argument("--tile", type=int, default=160, help="tile side in pixels")
    v.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda:N")
    v.set_defaults(func=run_visualize)
