"""``selfme motion-eval``: how well a trained motion learner reconstructs frames, against the identity.

For onset -> apex pairs (and optionally random frame pairs) of a face-crop folder's clips it prints the
mean L1 of the reconstruction vs the target and of the source vs the target (the identity baseline: a
learner that explains no motion). A useful learner has the first below the second.
"""

from __future__ import annotations

import argparse
import json

from selfme.device import resolve_device
from selfme.motion.data import FramePairDataset
from selfme.motion.model import load_motion_model
from selfme.motion.holdout import load_face_manifests
from selfme.motion.pipeline import ManifestOnsetApexPairs, manifest_clip_videos
from selfme.motion.evaluate import evaluate_reconstruction


def evaluate(model_path: str, data: list[str], *, random_pairs: int = 0, seed: int = 0,
             gamma: float = 1.0, subjects: list[str] | None = None) -> dict[str, dict[str, float]]:
    """{'onset_apex': {...}, 'random_pairs': {...}} of :func:`evaluate_reconstruction` results."""
    device = resolve_device("auto")
    model = load_motion_model(model_path, map_location=device)
    manifest, _ = load_face_manifests(data)
    if subjects:
        manifest = manifest[manifest["subject"].astype(str).isin(subjects)].reset_index(drop=True)
        if manifest.empty:
            raise ValueError(f"no clips of subjects {subjects}")
    size = int(model.config["image_size"])
    onset_apex = ManifestOnsetApexPairs(manifest, size)
    result = {"onset_apex": evaluate_reconstruction(model, onset_apex, device=device, gamma=gamma)}
    if random_pairs:
        pairs = FramePairDataset(manifest_clip_videos(manifest), image_size=size, pairs_per_epoch=random_pairs,
                                 seed=seed)
        result["random_pairs"] = evaluate_reconstruction(model, pairs, device=device, gamma=gamma)
    return result


def run(args: argparse.Namespace) -> int:
    result = evaluate(args.model, args.data, random_pairs=args.random_pairs, seed=args.seed, gamma=args.gamma,
                      subjects=args.subjects)
    for name, r in result.items():
        verdict = "better" if r["l1_reconstruction"] < r["l1_identity"] else "NOT better"
        print(f"{name}: {r['n']} pairs, L1 reconstruction {r['l1_reconstruction']:.4f} vs identity "
              f"{r['l1_identity']:.4f} ({verdict} than the identity)")
    if args.json:
        from selfme.io import write_json

        write_json(args.json, result)
    else:
        print(json.dumps(result))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("motion-eval", help="reconstruction L1 of a motion model vs the identity baseline",
                              description=__doc__)
    p.add_argument("--model", required=True, help="models/motion/finetune.pt or pretrain.pt")
    p.add_argument("--data", required=True, nargs="+", help="face-crop folder(s) with manifest.csv")
    p.add_argument("--subjects", nargs="*", default=None, help="only these subjects (e.g. held-out ones)")
    p.add_argument("--random-pairs", type=int, default=0, help="also this many random frame pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gamma", type=float, default=1.0, help="motion amplification (1 = as trained)")
    p.add_argument("--json", default=None, help="write the numbers to this JSON file")
    p.set_defaults(func=run)
