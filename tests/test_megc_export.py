"""``selfme export-megc``: MEGC2019-style (u, v, strain) motion images from motion indexes."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from selfme.cli import main
from selfme.extract.megc_export import export_megc, megc_image
from selfme.scvit.sources import image_samples

N = 56  # crop side of the synthetic fields: INTER_AREA shrinks 2 x 2 blocks to one 28 x 28 pixel
COLS = np.arange(28)


def _ramp_u() -> np.ndarray:
    """u = 1 + 0.1 x > 0, v = 0."""
    field = np.zeros((N, N, 2), np.float32)
    field[..., 0] = 1.0 + 0.1 * np.arange(N, dtype=np.float32)[None, :]
    return field


def _smile(size: int = 112) -> np.ndarray:
    """Mouth corners moving apart and up, mirror-symmetric about the face's midline (x = 55.5)."""
    y, x = np.mgrid[:size, :size].astype(np.float32)
    left = np.exp(-((x - 30) ** 2 + (y - 80) ** 2) / (2 * 8.0 ** 2))
    right = np.exp(-((x - (size - 1 - 30)) ** 2 + (y - 80) ** 2) / (2 * 8.0 ** 2))
    return np.stack([1.5 * (right - left), -0.8 * (right + left)], axis=-1)


def _mirror_corr(channel: np.ndarray) -> float:
    channel = channel.astype(np.float64)
    return float(np.corrcoef(channel.ravel(), channel[:, ::-1].ravel())[0, 1])


def _index(tmp_path, dataset: str, clips: dict[tuple[str, str], tuple[int, np.ndarray]], *,
           labels: dict | None = None) -> str:
    """A motion index like the extract stage's: manifest columns plus motion_path (float16 .npy fields)."""
    rows = []
    for (subject, clip), (label_id, field) in clips.items():
        path = tmp_path / "motion" / dataset / subject / f"{clip}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, field.astype(np.float16))
        name = (labels or {}).get(label_id, ("negative", "positive", "surprise")[label_id % 3])
        rows.append({"dataset": dataset, "subject": subject, "clip": clip, "label": name, "label_id": label_id,
                     "motion_path": path.as_posix(), "motion_method": "tvl1"})
    index = tmp_path / "motion" / dataset / "index.csv"
    pd.DataFrame(rows).to_csv(index, index=False)
    return str(index)


def test_u_ramp_gives_the_hand_worked_channels():
    # u = 1 + 0.1 x: each 28 px column j averages crop columns 2j, 2j+1 -> u = 1 + 0.1 (2j + 0.5), which
    # min-max maps to j / 27, i.e. R = round(255 j / 27) = 0, 9, 19, 28, ..., 246, 255 on every row.
    # v = 0 and the strain |u_x| = 0.1 are constant: both channels are mid-grey 128.
    image = megc_image(_ramp_u())
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    expected = np.rint(255 * COLS / 27).astype(np.uint8)
    assert list(expected[:4]) == [0, 9, 19, 28] and expected[-1] == 255
    assert (image[..., 0] == expected[None, :]).all()
    assert (image[..., 1] == 128).all() and (image[..., 2] == 128).all()
    # The sign survives (no flip): u decreasing to the right reverses the ramp.
    flipped = _ramp_u()
    flipped[..., 0] *= -1
    assert (megc_image(flipped)[..., 0] == expected[::-1][None, :]).all()
    # v = the same ramp along y (u = 0) lands in G, along rows.
    transposed = np.zeros((N, N, 2), np.float32)
    transposed[..., 1] = _ramp_u()[..., 0].T
    image = megc_image(transposed)
    assert (image[..., 1] == expected[:, None]).all() and (image[..., 0] == 128).all()


def test_hinge_field_separates_strain_from_flow_and_magnitude():
    # u = 0 for x < 28, 0.5 (x - 28) beyond; v = 0. Central differences: u_x = 0 for x <= 27, 0.25 at 28,
    # 0.5 for x >= 29, so the strain sqrt(u_x^2) is that; shrunk: 0 (j <= 13), 0.375 (j = 14), 0.5 (j >= 15);
    # min-max: B = 0, round(0.75 * 255) = 191, 255. u shrunk: 0 (j <= 13), j - 13.75 (j >= 14, max 13.25 at
    # j = 27): R = round(255 (j - 13.75) / 13.25). The magnitude |u| would equal R, not B.
    field = np.zeros((N, N, 2), np.float32)
    field[..., 0] = np.maximum(0.0, 0.5 * (np.arange(N) - 28.0))[None, :]
    image = megc_image(field)
    strain = np.where(COLS <= 13, 0, np.where(COLS == 14, 191, 255))
    u = np.where(COLS <= 13, 0, np.rint(255 * (COLS - 13.75) / 13.25))
    assert (image[..., 2] == strain[None, :]).all()
    assert (image[..., 0] == u[None, :]).all()
    assert (image[..., 1] == 128).all()


def test_detail_finer_than_an_output_pixel_averages_out():
    # 112 -> 28: each output pixel is a 4 x 4 block. u = 1 on one crop column per block (column 0 of the
    # block in even blocks, column 1 in odd ones). Area averaging gives 0.25 everywhere (constant: R = 128);
    # a bilinear shrink would sample columns 1 and 2 of each block only (0 or 0.5: stripes 0 / 255).
    x = np.arange(112)
    field = np.zeros((112, 112, 2), np.float32)
    field[..., 0] = (x % 4 == (x // 4) % 2)[None, :]
    assert (megc_image(field)[..., 0] == 128).all()


def test_export_writes_the_megc2019_folder_that_loso_reads(tmp_path):
    rng = np.random.default_rng(0)
    fields = [cv2.GaussianBlur(rng.normal(size=(64, 64, 2)).astype(np.float32), (0, 0), 4) for _ in range(3)]
    casme = _index(tmp_path, "casme2", {("sub01", "EP02_01f"): (1, fields[0]), ("sub02", "EP09_01"): (0, fields[1])})
    smic = _index(tmp_path, "smic_hs", {("s01", "s01_ne_01"): (2, fields[2])})
    out = tmp_path / "megc"
    counts = export_megc([casme, tmp_path / "motion" / "smic_hs"], out)  # an index file or its folder
    assert counts == {"casme2": 2, "smic": 1}
    names = {"sub01_EP02_01f.png", "sub02_EP09_01.png", "s01_s01_ne_01.png"}
    assert {p.name for p in out.iterdir()} == names | {"labels.csv", "export.json"}
    for name in names:
        raw = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert raw.shape == (28, 28, 3) and raw.dtype == np.uint8 and Image.open(out / name).mode == "RGB"
        assert (raw.min(axis=(0, 1)) == 0).all() and (raw.max(axis=(0, 1)) == 255).all()  # per-channel min-max
    # Headerless db,subject,clip,label with CRLF ends, like megc2019_combined_3class_gt.csv; smic_hs -> smic.
    assert (out / "labels.csv").read_bytes() == (b"casme2,sub01,EP02_01f,1\r\ncasme2,sub02,EP09_01,0\r\n"
                                                 b"smic,s01,s01_ne_01,2\r\n")
    # The stored (u, v, strain) is the float16 field's image, R = u (cv2 reads BGR).
    np.testing.assert_array_equal(cv2.imread(str(out / "sub01_EP02_01f.png"))[..., ::-1],
                                  megc_image(fields[0].astype(np.float16)))
    samples = image_samples(out, out / "labels.csv", dataset="casme2")
    assert len(samples) == 2 and set(samples.frame["label_id"]) == {0, 1}
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    export_megc([casme, smic], out)  # same inputs: byte-identical folder
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_channel_order_matches_a_published_image(realdata, tmp_path):
    """cv2 reads both the published image and ours as (strain, v, u): the strain channel (file B) is the
    non-negative one with the lowest median, u (file R) is antisymmetric under a left-right mirror of the
    face, v (file G) symmetric."""
    folder = realdata / "composite_flow_28px"
    published = cv2.imread(str(folder / "sub11_EP08_01f.png"), cv2.IMREAD_UNCHANGED)
    out = tmp_path / "megc"
    export_megc([_index(tmp_path, "casme2", {("sub01", "EP01_01"): (1, _smile())})], out)
    ours = cv2.imread(str(out / "sub01_EP01_01.png"), cv2.IMREAD_UNCHANGED)
    for image in (published, ours):
        assert image.shape == (28, 28, 3) and image.dtype == np.uint8
        assert (image.min(axis=(0, 1)) == 0).all() and (image.max(axis=(0, 1)) == 255).all()
        assert int(np.argmin(np.median(image, axis=(0, 1)))) == 0 and np.median(image[..., 0]) < 32
        assert _mirror_corr(image[..., 2]) < -0.5 and _mirror_corr(image[..., 1]) > 0.5
    # Every published image is min-max normalised per channel (0 and 255 in each channel).
    stack = np.stack([cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))])
    assert len(stack) == 309
    assert (stack.min(axis=(1, 2)) == 0).all() and (stack.max(axis=(1, 2)) == 255).all()


@pytest.mark.parametrize("field, message", [
    (np.full((32, 32, 2), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((32, 32, 3), np.float32), r"expected a displacement field \[H, W, 2\]"),
    (np.zeros((32, 32), np.float32), r"expected a displacement field \[H, W, 2\]"),
])
def test_bad_fields_fail_with_one_line_naming_the_file_and_leave_the_output(tmp_path, field, message):
    index = _index(tmp_path, "casme2", {("sub01", "EP01_01"): (1, _ramp_u()), ("sub02", "EP02_01"): (0, field)})
    out = tmp_path / "megc"
    out.mkdir()
    (out / "old.png").write_bytes(b"kept")
    with pytest.raises(ValueError, match=message) as error:
        export_megc([index], out)
    assert "EP02_01.npy" in str(error.value) and "\n" not in str(error.value)
    assert [p.name for p in out.iterdir()] == ["old.png"]  # the folder is replaced only on success


def test_bad_indexes_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="motion index not found"):
        export_megc([tmp_path / "nowhere"], tmp_path / "out")
    index = _index(tmp_path, "casme2", {("sub01", "EP01_01"): (1, _ramp_u())})
    (tmp_path / "motion" / "casme2" / "sub01" / "EP01_01.npy").unlink()
    with pytest.raises(FileNotFoundError, match="motion file"):
        export_megc([index], tmp_path / "out")
    five = _index(tmp_path, "casme2", {("sub01", "EP01_01"): (4, _ramp_u())}, labels={4: "others"})
    with pytest.raises(ValueError, match=r"label ids \[4\] are not classes of protocol 'megc3'"):
        export_megc([five], tmp_path / "out")
    renamed = _index(tmp_path, "casme2", {("sub01", "EP01_01"): (1, _ramp_u())}, labels={1: "surprise"})
    with pytest.raises(ValueError, match="label 'surprise' with label_id 1 does not match"):
        export_megc([renamed], tmp_path / "out")
    a = _index(tmp_path, "casme2", {("s01", "EP01"): (1, _ramp_u())})
    b = _index(tmp_path, "samm", {("s01", "EP01"): (0, _ramp_u())})
    with pytest.raises(ValueError, match="same file s01_EP01.png"):
        export_megc([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exports_and_reports_bad_input_in_one_line(tmp_path, capsys):
    index = _index(tmp_path, "smic_hs", {("s01", "s01_po_01"): (1, _ramp_u())})
    assert main(["export-megc", "--motions", index, "--out", str(tmp_path / "megc")]) == 0
    assert (tmp_path / "megc" / "labels.csv").read_text() == "smic,s01,s01_po_01,1\n"  # CRLF read as \n
    capsys.readouterr()
    assert main(["export-megc", "--motions", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfme export-megc: error: motion index not found") and "\n" not in err
