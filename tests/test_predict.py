"""Using a trained model: the train_full bundle, ``selfme predict`` on a held-out clip (folder and mp4),
Grad-CAM, ``selfme visualize``, and the one-line errors for bad input (selfme.predict)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from selfme import cli as selfme_cli
from selfme.datasets import build_manifest, write_manifest
from selfme.datasets.frames import index_frames
from selfme.extract import ExtractConfig, extract_dataset
from selfme.io import file_sha256
from selfme.face import CropConfig, crop_dataset
from selfme.io import read_image
from selfme.motion.model import MotionLearner, save_motion_model
from selfme.predict import BUNDLE_VERSION, gradcam, load_bundle, train_full
from selfme.predict.train_full import check_provenance
from selfme.scvit import load_samples, motion_to_input
from selfme.synth import SynthConfig, generate_synthme
from motion_testing import tiny_motion

MOTION = tiny_motion(kp_detector={"scale_factor": 1, "pad": 0})
SCVIT = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=32, num_heads=2,
             pretrained=False, omega=0.1, tau=0.07)
LOSO = dict(epochs=2, batch_size=4, lr=1e-3, gamma_lr=0.9, seeds=[0], workers=1, device="cpu", threads=1)
CROP = dict(size=64, drift_check_frames=0, workers=1)
EXTRACT = dict(gamma=2.0, batch_size=8, plot_clips=0, device="cpu")
HELD_OUT = "sub03"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """A tiny SynthME (3 subjects x 3 clips x 12 frames) through the real prepare, crop and extract
    functions with a random tiny motion learner; SCViT trained for 2 epochs on sub01 + sub02 (sub03 is
    held out) by train_full; a no-SC bundle by the train_full stage with -S scvit.omega=0."""
    root = tmp_path_factory.mktemp("predict")
    generate_synthme(root / "raw", SynthConfig(subjects=3, clips_per_subject=3, frames_per_clip=12, seed=0))
    result = build_manifest("synthme", root / "raw", annotations=None, protocol="megc3",
                            allow_missing_frames=False, apex_missing="spot")
    write_manifest(result, root / "manifests" / "synthme.csv")
    manifest = result.manifest
    train = manifest[manifest["subject"] != HELD_OUT].reset_index(drop=True)
    crop_dataset(train, root / "faces", config=CropConfig(**CROP), progress=False)
    torch.manual_seed(0)
    save_motion_model(root / "motion.pt", MotionLearner(config=MOTION))
    extract_dataset(root / "faces" / "manifest.csv", root / "motion", model_path=root / "motion.pt",
                    config=ExtractConfig.from_mapping(EXTRACT, method="selfme"), progress=False)
    common = dict(motions=root / "motion" / "index.csv", dataset="synthme", protocol="megc3", crop=CROP,
                  motion_method="selfme", extract=EXTRACT, loso_params=LOSO, motion_model=root / "motion.pt",
                  progress=False)
    summary = train_full(scvit=SCVIT, out=root / "bundle.pt", **common)
    return {"root": root, "manifest": manifest, "summary": summary, "bundle": root / "bundle.pt",
            "held_out": manifest[manifest["subject"] == HELD_OUT].iloc[0], "common": common}


def selfme(argv: list[str], monkeypatch) -> int:
    """``selfme`` with the predict commands registered (as selfme.cli lists them once wired in)."""
    if "selfme.predict.cli" not in selfme_cli.COMMAND_MODULES:
        monkeypatch.setattr(selfme_cli, "COMMAND_MODULES", (*selfme_cli.COMMAND_MODULES, "selfme.predict.cli"))
    return selfme_cli.main([str(a) for a in argv])


def predict_json(argv: list[str], monkeypatch, capsys) -> dict:
    assert selfme(["predict", *argv, "--json"], monkeypatch) == 0
    return json.loads(capsys.readouterr().out)


def write_video(folder: Path, path: Path, fourcc: str = "mp4v") -> Path:
    frames = [cv2.imread(str(p)) for p in index_frames(folder).values()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, frames[0].shape[1::-1])
    assert writer.isOpened(), f"this OpenCV build cannot write {fourcc}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def check_pictures(record: dict) -> None:
    out = record["outputs"]
    motion, apex, cam = (read_image(out[k]) for k in ("motion_png", "apex_png", "gradcam_png"))
    assert motion.shape == (64, 64, 3) and motion.std() > 1.0          # flow colours, not a flat image
    assert cam.shape == apex.shape and cam.std() > 1.0
    assert np.abs(cam.astype(int) - apex.astype(int)).mean() > 5.0   # the heat map is really drawn
    assert Path(out["panel_png"]).stat().st_size > 1000


def test_bundle_is_self_contained_and_loads_with_weights_only(built):
    payload = torch.load(built["bundle"], weights_only=True)
    assert payload["format"] == "selfme-bundle" and payload["format_version"] == BUNDLE_VERSION
    assert payload["class_names"] == ["negative", "positive", "surprise"] and payload["motion_method"] == "selfme"
    assert payload["crop"]["size"] == 64 and payload["extract"]["gamma"] == 2.0
    assert payload["motion_model"]["config"]["image_size"] == 32 and payload["scvit"]["omega"] == 0.1
    assert payload["training"]["subjects"] == ["sub01", "sub02"] and payload["training"]["n_samples"] == 6
    assert payload["selfme_version"]
    bundle = load_bundle(built["bundle"])
    assert bundle.classifier().num_classes == 3 and bundle.motion_learner().config == payload["motion_model"]["config"]


def test_predict_folder_uses_the_extract_stage_motion(built, monkeypatch, capsys, tmp_path):
    """A training clip with its annotated key frames: predict's motion is the extract stage's file."""
    row = built["manifest"].iloc[0]
    record = predict_json([row["frames_dir"], "--onset", row["onset"], "--apex", row["apex"], "--model",
                           built["bundle"], "--out", tmp_path], monkeypatch, capsys)
    assert (record["onset"], record["apex"], record["apex_source"]) == (row["onset"], row["apex"], "given")
    stored = np.load(built["root"] / "motion" / row["subject"] / f"{row['clip']}.npy")
    mine = np.load(record["outputs"]["motion_npy"])
    np.testing.assert_allclose(mine.astype(np.float32), stored.astype(np.float32), atol=2e-3)
    bundle = load_bundle(built["bundle"])
    with torch.no_grad():
        x = motion_to_input(stored.astype(np.float32), bundle.scvit_config().input_config())[None]
        expected = torch.softmax(bundle.classifier()(x), dim=1)[0].numpy()
    np.testing.assert_allclose(list(record["probabilities"].values()), expected, atol=1e-3)


def test_predict_held_out_clip_folder_and_mp4(built, monkeypatch, capsys, tmp_path):
    folder = Path(built["held_out"]["frames_dir"])
    first = next(iter(index_frames(folder)))
    record = predict_json([folder, "--model", built["bundle"], "--out", tmp_path / "folder"], monkeypatch, capsys)
    assert record["label"] in ("negative", "positive", "surprise")
    assert set(record["probabilities"]) == {"negative", "positive", "surprise"}
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert record["onset"] == first and record["apex"] > first and record["apex_source"] == "spotted"
    assert record["model"] == built["bundle"].as_posix() and record["face"]["n_faces"] == 1
    check_pictures(record)

    video = write_video(folder, tmp_path / "clip.mp4")
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and capture.read()[0]  # mp4v reads back in this OpenCV build
    capture.release()
    from_video = predict_json([video, "--model", built["bundle"], "--out", tmp_path / "video"], monkeypatch, capsys)
    assert from_video["clip_kind"] == "video" and from_video["frames"]["first"] == 0
    assert from_video["frames"]["count"] == len(index_frames(folder)) and from_video["onset"] == 0
    assert sum(from_video["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    check_pictures(from_video)

    assert selfme(["predict", folder, "--model", built["bundle"], "--out", tmp_path / "text"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert f"prediction: {record['label']}" in text and "(spotted)" in text


def test_gradcam_reads_tokens_that_reach_the_logits(built):
    model = load_bundle(built["bundle"]).classifier()
    x = torch.randn(1, 3, 32, 32)
    cam, index = gradcam(model, x)
    assert cam.shape == model.grid and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    assert index == int(model(x).argmax())
    # Why not the last block's patch outputs: with class-token pooling their gradient is exactly zero.
    outputs = {}
    handle = model.backbone.blocks[-1].register_forward_hook(lambda m, i, o: outputs.setdefault("t", o))
    logits = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(logits[0, index], outputs["t"])
    assert torch.count_nonzero(grad[0, 1:]) == 0


def test_visualize_with_and_without_sc(built, monkeypatch, capsys, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the stages/ scripts
    import stages.train_full as stage

    root = built["root"]
    params = {"crop": CROP, "motion": {"method": "selfme", **MOTION}, "extract": EXTRACT, "scvit": SCVIT,
              "loso": LOSO, "prepare": {"protocol": "megc3"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert stage.main(["--dataset", "synthme", "--motions", str(root / "motion" / "index.csv"), "--model",
                       str(root / "motion.pt"), "--out", "nosc.pt", "-S", "scvit.omega=0"]) == 0
    assert load_bundle("nosc.pt").payload["scvit"]["omega"] == 0.0
    capsys.readouterr()
    clip = built["held_out"]["frames_dir"]
    assert selfme(["visualize", clip, "--model", built["bundle"], "--compare", "nosc.pt", "--out", "fig.png",
                   "--tile", 96], monkeypatch) == 0
    figure = read_image(tmp_path / "fig.png")
    assert figure.shape[1] == 6 * 96 and figure.std() > 10  # onset, apex, motion, SC, no SC, key
    assert "figure: fig.png" in capsys.readouterr().out


def test_provenance_check_refuses_motions_of_other_settings(built):
    samples = load_samples(built["root"] / "motion" / "index.csv", dataset="synthme")
    checksum = file_sha256(built["root"] / "motion.pt")
    assert check_provenance(samples, ExtractConfig.from_mapping(EXTRACT, method="selfme"), checksum) == 6
    other = ExtractConfig.from_mapping({**EXTRACT, "gamma": 1.0}, method="selfme")
    with pytest.raises(ValueError, match="rerun the extract stage"):
        check_provenance(samples, other, checksum)
    with pytest.raises(ValueError, match="model_checksum"):
        check_provenance(samples, ExtractConfig.from_mapping(EXTRACT, method="selfme"), "0" * 64)


def _blank_clip(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        cv2.imwrite(str(folder / f"img{i}.jpg"), np.full((240, 320, 3), 128, np.uint8))
    return folder


def _nan_classifier(bundle: Path, tmp_path: Path) -> Path:
    payload = torch.load(bundle, weights_only=True)
    name = next(k for k in payload["classifier"] if k.endswith("head.2.bias") or k.endswith("head.bias"))
    payload["classifier"][name][0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    return tmp_path / "nan.pt"


def _wrong_version(bundle: Path, tmp_path: Path) -> Path:
    payload = torch.load(bundle, weights_only=True)
    payload["format_version"] = BUNDLE_VERSION + 98
    torch.save(payload, tmp_path / "old.pt")
    return tmp_path / "old.pt"


@pytest.mark.parametrize("case, expected", [
    ("unreadable video", "cannot open the video"),
    ("no face", "no face found on the onset frame"),
    ("onset after apex", "must come before the apex"),
    ("one frame", "a clip needs at least two"),
    ("bundle version", f"format version {BUNDLE_VERSION + 98}"),
    ("nan classifier", "nan.pt: model bundle has NaN or infinite weights in 1 tensor(s)"),
    ("missing bundle", "model bundle not found"),
])
def test_bad_input_is_one_clear_line(case, expected, built, monkeypatch, capsys, tmp_path):
    clip, model, extra = built["held_out"]["frames_dir"], built["bundle"], []
    if case == "unreadable video":
        clip = tmp_path / "broken.mp4"
        clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    elif case == "no face":
        clip = _blank_clip(tmp_path / "blank", 4)
    elif case == "onset after apex":
        onset = int(built["held_out"]["onset"])
        extra = ["--onset", onset + 5, "--apex", onset + 2]
    elif case == "one frame":
        clip = _blank_clip(tmp_path / "single", 1)
    elif case == "bundle version":
        model = _wrong_version(built["bundle"], tmp_path)
    elif case == "nan classifier":
        model = _nan_classifier(built["bundle"], tmp_path)
    else:
        model = tmp_path / "nowhere.pt"
    capsys.readouterr()
    assert selfme(["predict", clip, "--model", model, "--out", tmp_path / "out", *extra], monkeypatch) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("selfme predict")]
    assert len(err) == 1 and expected in err[0], err
    if case == "bundle version":
        assert f"reads format version {BUNDLE_VERSION}" in err[0]
    assert "Traceback" not in err[0]


def test_bundle_with_a_classical_motion_method(built, monkeypatch, capsys, tmp_path):
    """motion.method farneback: no motion learner in the bundle, the same engine computes the flow."""
    root = built["root"]
    extract_dataset(root / "faces" / "manifest.csv", tmp_path / "motion",
                    config=ExtractConfig.from_mapping(EXTRACT, method="farneback"), progress=False)
    common = {**built["common"], "motions": tmp_path / "motion" / "index.csv", "motion_method": "farneback",
              "motion_model": None}
    train_full(scvit=SCVIT, out=tmp_path / "farneback.pt", **common)
    assert torch.load(tmp_path / "farneback.pt", weights_only=True)["motion_model"] is None
    record = predict_json([built["held_out"]["frames_dir"], "--model", tmp_path / "farneback.pt", "--out",
                           tmp_path / "out"], monkeypatch, capsys)
    assert record["motion"]["method"] == "farneback" and record["label"] in ("negative", "positive", "surprise")
