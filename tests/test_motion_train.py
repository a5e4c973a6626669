"""Training the motion learner: data determinism, overfitting, exact resume, checkpoint keying, the stages'
functions end to end. Tiny frames made from skimage's astronaut, CPU, random-init VGG (no downloads)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from selfme.datasets import MANIFEST_COLUMNS
from selfme.motion.data import FramePairDataset, me_clip_videos, voxceleb_videos
from selfme.motion.holdout import split_holdout
from selfme.motion.model import MotionLearner, load_motion_model
from selfme.motion.pipeline import run_stage
from selfme.motion.checkpoint import CHECKPOINT_NAME, resolve_checkpoint_dir
from selfme.motion.train import TrainConfig, train_motion
from motion_testing import one_torch_thread, tiny_motion  # noqa: F401 (autouse fixtures)

TINY = tiny_motion(method="selfme")
LOSS = {"scales": [1, 0.5]}
VGG = {"pretrained": False}


def _face(size: int, dx: float, dy: float, angle: float = 0.0) -> np.ndarray:
    from skimage import data

    image = data.astronaut()
    centre = (250.0 + dx * 5, 120.0 + dy * 5)  # the face; motion in units of output pixels (x5 scale)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    matrix[:, 2] += (size * 5 / 2 - centre[0], size * 5 / 2 - centre[1])
    crop = cv2.warpAffine(image, matrix, (size * 5, size * 5), flags=cv2.INTER_LINEAR)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def me_data(tmp_path_factory) -> Path:
    """A face-crop folder: manifest.csv + 4 clips of 6 frames (36 px crops, a face moving a few pixels)."""
    root = tmp_path_factory.mktemp("faces")
    rows = []
    for c in range(4):
        clip_dir = root / f"s{c // 2 + 1}" / f"EP0{c}"
        clip_dir.mkdir(parents=True)
        for f in range(6):
            image = _face(36, dx=f * 0.6 * (1 if c % 2 else -1), dy=0.3 * f, angle=0.5 * f)
            cv2.imwrite(str(clip_dir / f"img{10 + f}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"dataset": "tiny", "subject": f"s{c // 2 + 1}", "clip": f"EP0{c}", "label": "positive",
                     "label_id": 1, "source_label": "happiness", "onset": 10, "apex": 13, "offset": 15,
                     "apex_source": "annotated", "frames_dir": clip_dir.relative_to(root).as_posix(),
                     "n_frames": 6, "fps": 200.0, "color": "rgb"})
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(root / "manifest.csv", index=False)
    return root


def _config(**kw) -> TrainConfig:
    values = {"epochs": 2, "lr": 2e-3, "batch_size": 2, "pairs_per_epoch": 4, "milestones": [3], "seed": 3,
              "image_every": 0, "amp": False}
    values.update(kw)
    return TrainConfig.from_mapping(values)


def test_pair_dataset_is_a_function_of_seed_epoch_and_index(me_data):
    videos = me_clip_videos(me_data / "manifest.csv")
    assert len(videos) == 4 and all(len(v) == 6 for v in videos)
    make = lambda **kw: FramePairDataset(videos, image_size=32, pairs_per_epoch=8, seed=1, **kw)
    a, b = make(hflip=True), make(hflip=True)
    b.set_epoch(1)
    b[3]
    b.set_epoch(0)
    for i in (0, 5):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
    source, target = a[0]
    assert source.shape == (3, 32, 32) and source.dtype == torch.float32 and 0 <= source.min() <= source.max() <= 1
    a.set_epoch(1)
    assert not torch.equal(a[0][0], b[0][0]) or not torch.equal(a[0][1], b[0][1])
    moved = make(head_motion={"translate_px": 3, "rotate_deg": 4, "scale": 0.03})
    still = make()
    assert torch.equal(moved[2][0], still[2][0]) and not torch.equal(moved[2][1], still[2][1])


def test_grey_frames_and_voxceleb_layouts(tmp_path):
    video = tmp_path / "vox" / "train" / "id001_abc"
    video.mkdir(parents=True)
    for f in range(3):
        cv2.imwrite(str(video / f"{f:07d}.png"), np.full((40, 40), 60 * f, np.uint8))
    writer = cv2.VideoWriter(str(tmp_path / "vox" / "train" / "id002.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (40, 40))
    for f in range(4):
        writer.write(np.full((40, 40, 3), 50 * f, np.uint8))
    writer.release()
    videos = voxceleb_videos(tmp_path / "vox")
    assert [v.name for v in videos] == ["id001_abc", "id002"] and len(videos[0]) == 3
    dataset = FramePairDataset(videos, image_size=32, pairs_per_epoch=4, seed=0)
    for i in range(4):
        source, target = dataset[i]
        assert source.shape == target.shape == (3, 32, 32)
        assert torch.equal(source[0], source[2])  # grey replicated to 3 channels


def test_overfitting_one_moving_pair_halves_the_total_loss():
    torch.manual_seed(0)
    learner = MotionLearner(config=TINY, losses=LOSS, vgg=VGG)
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float().div(255)[None]
    source, target = to_t(_face(32, 0, 0)), to_t(_face(32, 2, 1, 3))
    optimizer = torch.optim.Adam(learner.trainable_parameters(), lr=3e-3, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        out = learner(source, target, rng=rng)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert min(losses[-5:]) < 0.5 * losses[0], losses[::10]


def _train(me_data, checkpoint_dir, out, epochs, payload, live_dir=None, **kw):
    torch.manual_seed(123)  # a different global state each time must not matter
    model = MotionLearner(config=TINY, losses=LOSS, vgg=VGG)
    videos = me_clip_videos(me_data / "manifest.csv")
    dataset = FramePairDataset(videos, image_size=32, pairs_per_epoch=4, seed=3, hflip=True)
    return train_motion(model, dataset, config=_config(epochs=epochs, **kw), out_path=out,
                        checkpoint_dir=checkpoint_dir, live_dir=live_dir, hash_payload=payload, progress=False)


def test_resume_continues_the_same_run_exactly(me_data, tmp_path):
    payload = {"run": "a"}
    straight = _train(me_data, tmp_path / "a", tmp_path / "a.pt", 4, payload)
    first = _train(me_data, tmp_path / "b", tmp_path / "b.pt", 2, payload, live_dir=tmp_path / "live")
    state = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    resumed = _train(me_data, tmp_path / "b", tmp_path / "b.pt", 4, payload, live_dir=tmp_path / "live")
    curve = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert curve["step"].tolist() == [0, 1, 2, 3]  # the dvclive curve continues, no duplicated steps
    assert curve["loss"].tolist() == pytest.approx([r["loss"] for r in straight])
    keys = ("loss", "perceptual", "equivariance", "l1_reconstruction", "lr")
    assert [[r[k] for k in keys] for r in first] == [[r[k] for k in keys] for r in straight[:2]]
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in straight]
    a, b = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert all(torch.equal(a["generator"][k], b["generator"][k]) for k in a["generator"])


def test_a_checkpoint_for_other_params_is_not_resumed(me_data, tmp_path, caplog):
    assert resolve_checkpoint_dir(tmp_path, {"lr": 1}) != resolve_checkpoint_dir(tmp_path, {"lr": 2})
    _train(me_data, tmp_path / "ck", tmp_path / "m.pt", 1, {"lr": 1})
    with caplog.at_level(logging.WARNING):
        history = _train(me_data, tmp_path / "ck", tmp_path / "m.pt", 1, {"lr": 2})
    assert len(history) == 1 and history[0]["epoch"] == 1  # trained from scratch, not "already done"
    assert "written for other parameters" in caplog.text
    assert torch.load(tmp_path / "ck" / CHECKPOINT_NAME, weights_only=True)["epoch"] == 1


def test_pretrain_then_finetune_stage_functions(me_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = {"epochs": 2, "pairs_per_epoch": 4, "batch_size": 2, "lr": 2e-3, "betas": [0.5, 0.999],
              "milestones": [1], "lr_decay": 0.1, "seed": 0, "num_workers": 0, "checkpoint_every": 1,
              "image_every": 1, "amp": True, "loss": {**LOSS, "perceptual": 10.0, "equivariance": 10.0},
              "vgg": VGG}
    pretrain = {**common, "source": "synthme", "data": str(me_data), "init": None, "hflip": True,
                "head_motion": {"translate_px": 2.0, "rotate_deg": 3.0, "scale": 0.02}}
    history = run_stage("pretrain", TINY, pretrain, out="models/pretrain.pt", checkpoints="models/ck",
                        live_dir="dvclive/pretrain", progress=False)
    assert [r["lr"] for r in history] == [2e-3, 2e-4]
    assert Path("dvclive/pretrain/plots/metrics/train/loss.tsv").is_file()
    assert Path("dvclive/pretrain/plots/images/sample_epoch0002.png").is_file()
    finetune = {**common, "data": str(me_data), "holdout_clips": 1, "hflip": False, "lr": 2e-6,
                "pairs_per_epoch": None, "repeats": 2}  # 2 pairs for each of the 3 training clips
    history = run_stage("finetune", TINY, finetune, out="models/finetune.pt", checkpoints="models/ck",
                        live_dir="dvclive/finetune", init="models/pretrain.pt", progress=False)
    assert "val_l1_reconstruction" in history[-1] and history[-1]["val_l1_identity"] > 0
    assert history[-1]["images"] == 6
    assert len(list(Path("models/ck").iterdir())) == 2  # one folder per parameter set
    model = load_motion_model("models/finetune.pt")
    assert not model.training and model.perceptual is None
    motion = model.estimate_motion(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert motion["displacement"].shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match="finetune.learning_rate: unknown key"):
        run_stage("finetune", TINY, {**finetune, "learning_rate": 1}, out="x.pt", checkpoints="ck", live_dir=None)


def test_holdout_split_is_seeded_and_disjoint(me_data):
    manifest = pd.read_csv(me_data / "manifest.csv")
    train, held = split_holdout(manifest, 1, seed=0)
    assert len(train) == 3 and len(held) == 1 and set(train["clip"]).isdisjoint(held["clip"])
    assert split_holdout(manifest, 1, seed=0)[1].equals(held)
    with pytest.raises(ValueError, match="leaves no training clips"):
        split_holdout(manifest, 4, seed=0)


def test_weight_average_is_the_ema_of_the_steps_weights(me_data, tmp_path, monkeypatch):
    """The saved model of an ema_decay d run is e_1 = w_1, e_t = d e_(t-1) + (1 - d) w_t over the weights w_t
    after each Adam step (written from that recursion here); the training trajectory itself is unchanged."""
    from selfme.motion.averaging import WeightAverage

    seen: list[dict[str, torch.Tensor]] = []
    update = WeightAverage.update
    monkeypatch.setattr(WeightAverage, "update", lambda self, model: (
        seen.append({k: v.detach().clone() for k, v in model.generator.state_dict().items()}), update(self, model)))
    d = 0.7
    averaged = _train(me_data, tmp_path / "e", tmp_path / "e.pt", 2, {"run": "e"}, ema_decay=d)
    plain = _train(me_data, tmp_path / "p", tmp_path / "p.pt", 2, {"run": "p"})
    assert len(seen) == 4  # 2 epochs x 2 steps
    saved = torch.load(tmp_path / "e.pt", weights_only=True)["generator"]
    last = torch.load(tmp_path / "p.pt", weights_only=True)["generator"]
    floats = [k for k, v in saved.items() if v.is_floating_point()]
    for k in floats:
        expected = seen[0][k].double()
        for w in seen[1:]:
            expected = d * expected + (1 - d) * w[k].double()
        torch.testing.assert_close(saved[k].double(), expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(seen[-1][k], last[k])  # the run's own weights: those of the plain run
    assert any(not torch.equal(saved[k], last[k]) for k in floats)
    assert [r["loss"] for r in averaged] == [r["loss"] for r in plain]


def test_resume_restores_the_weight_average(me_data, tmp_path):
    straight = tmp_path / "a.pt"
    _train(me_data, tmp_path / "a", straight, 3, {"run": "a"}, ema_decay=0.8)
    _train(me_data, tmp_path / "b", tmp_path / "b.pt", 1, {"run": "a"}, ema_decay=0.8)
    assert "ema" in torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    _train(me_data, tmp_path / "b", tmp_path / "b.pt", 3, {"run": "a"}, ema_decay=0.8)
    a, b = torch.load(straight, weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    for net in ("kp_detector", "generator"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
    with pytest.raises(ValueError, match="ema_decay must be in"):
        _config(ema_decay=1.0)
