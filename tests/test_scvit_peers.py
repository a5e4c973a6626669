"""The published peers (STSTNet, OFF-ApexNet) and the conv stem: shapes, parameter counts worked out
from the papers' layer descriptions, region embeddings, and the factory's dispatch."""

from __future__ import annotations

import pytest
import torch

from selfme.scvit import SCViTConfig, create_scvit
from selfme.scvit.peers import OFFApexNet, STSTNet
from selfme.scvit.stem import ConvStem

PEER = dict(img_size=28, pretrained=False)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_ststnet_layers_and_parameter_count():
    torch.manual_seed(0)
    model, source = create_scvit(SCViTConfig(model_name="ststnet", **PEER), num_classes=3, in_chans=3)
    assert isinstance(model, STSTNet) and "random" in source
    # three 3x3 convs on 3 channels: 3*(27+1) + 5*(27+1) + 8*(27+1) = 448; maps 16 x 10 x 10 after
    # the 3/3 max pool (padding 1: 28 -> 10), 16 x 5 x 5 = 400 after the 2x2 average pool;
    # dense 400 -> 3: 1203. Total 1651.
    assert n_params(model) == 448 + 1203 == 1651
    x = torch.randn(5, 3, 28, 28)
    assert model.feature_map(x).shape == (5, 16, 10, 10)
    logits, regions = model(x, with_regions=True)
    assert logits.shape == (5, 3) and regions.shape == (5, 4, 16)
    assert torch.equal(model(x), logits)


def test_ststnet_feature_map_is_the_published_conv_relu_pool_order():
    """STSTNet pools before its ReLU (faster); the paper's order is conv -> ReLU -> max pool. ReLU is
    monotone, so both give the same values and the same gradients, to the bit, ties at zero included."""
    torch.manual_seed(0)
    model = STSTNet(num_classes=3)
    x = torch.randn(6, 3, 28, 28)
    # a constant sample: inside the border every pooling window ties, and the filters that respond
    # negatively to it (5 of the 16 with this seed) give windows that are negative throughout
    x[0] = -1.0
    published = torch.cat([torch.nn.functional.max_pool2d(torch.relu(conv(x)), 3, stride=3, padding=1)
                           for conv in model.streams], dim=1)
    ours = model.feature_map(x)
    assert torch.equal(ours, published)
    streams = list(model.streams.parameters())
    g_ours = torch.autograd.grad(ours.square().sum(), streams)
    g_published = torch.autograd.grad(published.square().sum(), streams)
    assert all(torch.equal(a, b) for a, b in zip(g_ours, g_published))
    assert any(a.abs().sum() > 0 for a in g_ours)


def test_off_apexnet_layers_and_parameter_count():
    model, _ = create_scvit(SCViTConfig(model_name="off_apexnet", **PEER), num_classes=3, in_chans=3)
    assert isinstance(model, OFFApexNet)
    conv = (25 * 1 * 6 + 6) + (25 * 6 * 16 + 16)          # per stream: 156 + 2416
    fc = (2 * 7 * 7 * 16) * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 3 + 3
    assert n_params(model) == 2 * conv + fc == 2_664_475
    x = torch.randn(2, 3, 28, 28)
    logits, regions = model(x, with_regions=True)
    assert logits.shape == (2, 3) and regions.shape == (2, 4, 32)
    # the streams read u and v only: the strain channel cannot change the output
    x2 = x.clone()
    x2[:, 2] = torch.randn(2, 28, 28)
    assert torch.equal(model(x), model(x2))


def test_peer_regions_are_quadrant_means_of_the_feature_map():
    torch.manual_seed(1)
    model = STSTNet(num_classes=3)
    x = torch.randn(3, 3, 28, 28)
    maps = model.feature_map(x)                      # [3, 16, 10, 10]: quadrants are 5 x 5 blocks
    _, regions = model(x, with_regions=True)
    expected = torch.stack([maps[:, :, :5, :5].mean((2, 3)), maps[:, :, :5, 5:].mean((2, 3)),
                            maps[:, :, 5:, :5].mean((2, 3)), maps[:, :, 5:, 5:].mean((2, 3))], dim=1)
    assert torch.allclose(regions, expected, atol=1e-6)


def test_peers_train_with_the_sc_loss():
    from selfme.scvit.losses import SCViTLoss

    torch.manual_seed(0)
    model = STSTNet(num_classes=3)
    criterion = SCViTLoss(omega=0.1, tau=0.07)
    logits, regions = model(torch.randn(6, 3, 28, 28), with_regions=True)
    loss, parts = criterion(logits, torch.tensor([0, 0, 1, 1, 2, 2]), regions)
    loss.backward()
    assert parts["sc"] > 0 and all(p.grad is not None for p in model.parameters())


def test_peers_refuse_pretrained_weights_and_bad_inputs():
    with pytest.raises(ValueError, match="pretrained: false"):
        SCViTConfig(model_name="ststnet", img_size=28, pretrained=True)
    with pytest.raises(ValueError, match="channels"):
        OFFApexNet(num_classes=3, in_chans=1)


def test_conv_stem_keeps_the_patch_grid():
    torch.manual_seed(0)
    config = SCViTConfig(model_name="vit_tiny_patch16_224", img_size=28, patch_size=4, depth=1, embed_dim=32,
                         num_heads=2, pretrained=False, stem="conv", stem_channels=8, head_hidden=16)
    model, _ = create_scvit(config, num_classes=3, in_chans=3)
    assert isinstance(model.backbone.patch_embed.proj, ConvStem)
    assert model.grid == (7, 7) and model.in_chans == 3
    # stem: 3x3 conv 3 -> 8 (224), 2x2 conv 8 -> 32 (1056)
    assert n_params(model.backbone.patch_embed) == 3 * 9 * 8 + 8 + 8 * 4 * 32 + 32
    x = torch.zeros(1, 3, 28, 28)
    x[0, :, 16:, :12] = 1.0                           # bottom-left image block only
    features = model.forward_features(x)
    base = model.forward_features(torch.zeros(1, 3, 28, 28)).patches
    changed = (features.patches - base).abs().sum(-1).view(7, 7) > 0
    # stride-4 tokens: rows 4-6 / columns 0-2 see the block (a 3x3 stride-2 kernel reaches one pixel back)
    assert changed[4:, :3].all() and not changed[:3].any() and not changed[:, 4:].any()
    logits, regions = model(torch.randn(2, 3, 28, 28), with_regions=True)
    assert logits.shape == (2, 3) and regions.shape == (2, 4, 32)
    with pytest.raises(ValueError, match="pretrained: false"):
        SCViTConfig(img_size=28, patch_size=4, stem="conv", pretrained=True)


@pytest.mark.parametrize("name", ["realflow", "ststnet", "off_apexnet"])
def test_shipped_configs_build_their_model(name):
    from pathlib import Path

    from selfme.scvit.cli import read_params
    from selfme.scvit.train import LosoConfig

    params = read_params(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    model_config, config = SCViTConfig.from_mapping(params["scvit"]), LosoConfig.from_mapping(params["loso"])
    model, _ = create_scvit(model_config, num_classes=3, in_chans=3)
    logits, regions = model(torch.zeros(2, 3, model_config.img_size, model_config.img_size), with_regions=True)
    assert logits.shape == (2, 3) and regions.shape[:2] == (2, 4)
    assert not model_config.pretrained
    # three models a fold: the realflow recipe as a 3-seed ensemble, the peers as 3 seeds
    assert (config.seeds, config.ensemble) == (((0,), 3) if name == "realflow" else ((0, 1, 2), 1))
    if name == "ststnet":   # the published recipe
        assert (config.epochs, config.batch_size, config.lr, config.gamma_lr) == (800, 256, 5e-5, 1.0)
