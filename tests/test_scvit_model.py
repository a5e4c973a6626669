"""SCViT: region pooling on a known patch grid, the model's layers, the motion input, weight loading."""

from __future__ import annotations

import time

import numpy as np
import pytest
import timm
import torch

from selfme.scvit import SCViTConfig, WeightsNotFound, create_scvit, motion_to_input, quadrant_masks, region_embeddings
from selfme.scvit.inputs import InputConfig, hflip, image_to_input

TINY = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=16, depth=1, embed_dim=32, num_heads=2,
            pretrained=False)


def test_region_pooling_picks_the_quadrants_of_a_4x4_grid():
    patches = torch.arange(16, dtype=torch.float32).view(1, 16, 1)  # value = row-major patch index
    # UL = {0, 1, 4, 5}, UR = {2, 3, 6, 7}, BL = {8, 9, 12, 13}, BR = {10, 11, 14, 15}
    assert region_embeddings(patches, (4, 4)).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_odd_grid_leaves_the_middle_row_and_column_out():
    patches = torch.arange(25, dtype=torch.float32).view(1, 25, 1)
    # 5x5: rows 0-1 / 3-4, columns 0-1 / 3-4. UL {0,1,5,6}, UR {3,4,8,9}, BL {15,16,20,21}, BR {18,19,23,24}
    assert region_embeddings(patches, (5, 5)).flatten().tolist() == [3.0, 6.0, 18.0, 21.0]
    assert quadrant_masks((5, 5)).sum(dim=1).tolist() == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="quadrants"):
        quadrant_masks((1, 4))


def test_model_regions_follow_image_positions():
    torch.manual_seed(0)
    model, _ = create_scvit(SCViTConfig(**TINY), num_classes=3, in_chans=2)
    torch.nn.init.zeros_(model.backbone.patch_embed.proj.bias)
    x = torch.zeros(1, 2, 32, 32)
    x[0, :, 16:, :16] = 1.0  # the bottom-left patch of the 2x2 grid only
    regions = model.regions(model.forward_features(x))
    nonzero = regions.abs().sum(dim=-1)[0]
    assert model.grid == (2, 2)
    assert nonzero[2] > 0 and nonzero[[0, 1, 3]].eq(0).all()  # UL, UR, BL, BR -> only BL


def test_forward_shapes_and_feature_choice():
    for where in ("patch_embed", "last_block"):
        model, source = create_scvit(SCViTConfig(**TINY, sc_features=where), num_classes=3, in_chans=3)
        logits, regions = model(torch.randn(4, 3, 32, 32), with_regions=True)
        assert logits.shape == (4, 3) and regions.shape == (4, 4, 32)
        assert "random" in source
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.patches.shape == (2, 4, 32) and features.tokens.shape == (2, 5, 32)  # class token + 2x2
    model.eval()
    assert torch.equal(model.forward_head(model.forward_features(x)), model(x))
    assert torch.allclose(model(x), model.backbone(x), atol=1e-6)  # the same network as timm's forward


def test_motion_to_input_uses_a_fixed_scale():
    motion = np.zeros((8, 8, 2), np.float16)
    motion[..., 0], motion[..., 1] = 3.0, -4.0
    config = InputConfig(img_size=16, channels=("dx", "dy", "mag"), motion_scale=2.0)
    x = motion_to_input(motion, config)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[:, 5, 5], torch.tensor([1.5, -2.0, 2.5]))  # values / 2 px, not min-max
    weak = motion_to_input(motion * np.float16(0.1), config)
    assert torch.allclose(weak, x * 0.1, atol=1e-3)  # relative strength survives
    mm = motion_to_input(np.random.default_rng(0).normal(size=(8, 8, 2)), InputConfig(img_size=8, normalize="minmax"))
    assert mm.amin(dim=(1, 2)).tolist() == [-1.0] * 3 and mm.amax(dim=(1, 2)).tolist() == [1.0] * 3
    strain = motion_to_input(np.stack(np.meshgrid(np.arange(8.0), np.zeros(8)), -1) * 0.1,
                             InputConfig(img_size=8, channels=("strain",), strain_scale=0.1))
    assert torch.allclose(strain, torch.ones(1, 8, 8))  # u = 0.1 x: u_x = 0.1 everywhere


def test_hflip_negates_horizontal_motion_exactly():
    rng = np.random.default_rng(1)
    motion = rng.normal(size=(8, 8, 2)).astype(np.float32)
    mirrored = motion[:, ::-1].copy()
    mirrored[..., 0] *= -1
    for normalize in ("fixed", "minmax"):
        config = InputConfig(img_size=8, channels=("dx", "dy", "mag"), normalize=normalize)
        flipped = hflip(motion_to_input(motion, config)[None], negate=(0,))[0]
        assert torch.allclose(flipped, motion_to_input(mirrored, config), atol=1e-6)
    image = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    x = image_to_input(image, InputConfig(img_size=8))
    assert x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(image_to_input(255 - image, InputConfig(img_size=8)), -x, atol=1e-6)  # minmax(-u) = 1 - minmax(u)


def test_pretrained_from_a_local_file_adapts_channels_and_depth(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # 3 channels, 12 blocks, 1000 classes
    path = tmp_path / "vit_tiny.pth"
    torch.save(reference.state_dict(), path)
    config = SCViTConfig(model_name="vit_tiny_patch16_224", img_size=32, depth=2, pretrained=True,
                         weights_file=str(path))
    model, source = create_scvit(config, num_classes=3, in_chans=2)
    assert str(path) in source
    w = reference.patch_embed.proj.weight
    assert torch.allclose(model.backbone.patch_embed.proj.weight, w[:, :2] * 1.5)  # timm: repeat, scale 3/C
    assert torch.equal(model.backbone.blocks[1].mlp.fc1.weight, reference.blocks[1].mlp.fc1.weight)
    assert model.backbone.pos_embed.shape == (1, 5, 192)  # resampled to the 2x2 grid
    assert model(torch.randn(1, 2, 32, 32)).shape == (1, 3)


def test_missing_weights_fail_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    with pytest.raises(WeightsNotFound, match="vit_small_patch16_224") as err:
        create_scvit(SCViTConfig(pretrained=True), num_classes=3, in_chans=3)
    assert time.perf_counter() - start < 5
    assert "scvit.pretrained: false" in str(err.value) and "scvit.weights_file" in str(err.value)
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(WeightsNotFound, match="nowhere.safetensors"):
        create_scvit(SCViTConfig(pretrained=True, weights_file=str(missing)), num_classes=3, in_chans=3)
    with pytest.raises(ValueError, match="embed_dim"):
        SCViTConfig(pretrained=True, embed_dim=64)


def test_eq15_head_is_ln_then_one_hidden_layer():
    torch.manual_seed(0)
    model, _ = create_scvit(SCViTConfig(**TINY, head_hidden=24), num_classes=3, in_chans=2)
    head = model.backbone.head
    assert [type(m).__name__ for m in head] == ["Linear", "Tanh", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (32, 24, 3)
    assert isinstance(model.backbone.norm, torch.nn.LayerNorm)  # the LN of Eq. 15
    x = torch.randn(2, 2, 32, 32)
    features = model.forward_features(x)
    # Written out: class token after the final LN, then W2 tanh(W1 z + b1) + b2.
    z = features.tokens[:, 0]
    expected = torch.tanh(z @ head[0].weight.T + head[0].bias) @ head[2].weight.T + head[2].bias
    assert torch.allclose(model(x), expected, atol=1e-6)
    linear, _ = create_scvit(SCViTConfig(**TINY, head_hidden=0), num_classes=3, in_chans=2)
    assert isinstance(linear.backbone.head, torch.nn.Linear)
    with pytest.raises(ValueError, match="head_hidden"):
        SCViTConfig(**TINY, head_hidden=-1)
    with pytest.raises(ValueError, match="sc_form"):
        SCViTConfig(**TINY, sc_form="sum")
