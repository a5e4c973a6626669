"""Motion-aware augmentation: the flip negates u and swaps the left/right regions, shifts move
vectors without changing them, labels never change, and the draws are reproducible."""

from __future__ import annotations

import torch

from selfme.scvit.augment import augment, shift
from selfme.scvit.regions import region_embeddings


def pixel_regions(x: torch.Tensor) -> torch.Tensor:
    """Region embeddings of the input itself (every pixel one patch): [B, 4, C]."""
    b, c, h, w = x.shape
    return region_embeddings(x.flatten(2).transpose(1, 2), (h, w))


def test_flip_negates_u_and_swaps_left_and_right_regions():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    out = augment(x, generator=torch.Generator().manual_seed(0), hflip=1.0, negate=(0,))
    assert torch.equal(out[:, 0], -x[:, 0].flip(-1))
    assert torch.equal(out[:, 1:], x[:, 1:].flip(-1))
    before, after = pixel_regions(x), pixel_regions(out)
    sign = torch.tensor([-1.0, 1.0, 1.0])
    # UL after the flip is UR before it, with u negated (and BL <-> BR)
    for new, old in ((0, 1), (1, 0), (2, 3), (3, 2)):
        assert torch.allclose(after[:, new], before[:, old] * sign, atol=1e-6)
    assert torch.equal(x, x.clone())  # the input itself is untouched
    twice = augment(out, generator=torch.Generator().manual_seed(0), hflip=1.0, negate=(0,))
    assert torch.equal(twice, x)


def test_shift_moves_pixels_and_replicates_the_border():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = shift(x, torch.tensor([[1, -1]]))           # down one row, left one column
    # out[y, x] = in[y - 1, x + 1], rows/columns outside taken from the nearest border pixel
    expected = torch.tensor([[1.0, 2, 3, 3], [1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]])
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(shift(x, torch.zeros(1, 2, dtype=torch.long)), x)


def test_shift_keeps_vector_values_and_labels():
    torch.manual_seed(0)
    x = torch.zeros(6, 3, 12, 12)
    x[:, :, 4:8, 4:8] = torch.tensor([0.5, -0.25, 0.75]).view(1, 3, 1, 1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    yb = y.clone()
    out = augment(x, generator=torch.Generator().manual_seed(3), shift_px=2)
    assert torch.equal(y, yb)                          # augmentation never touches labels
    for i in range(6):                                # the motion patch moved, its vectors did not change
        assert torch.equal(out[i].sum((1, 2)), x[i].sum((1, 2)))
        assert set(out[i, 0].unique().tolist()) == {0.0, 0.5}


def test_draws_are_reproducible_and_hflip_only_draws_as_before():
    x = torch.randn(8, 3, 6, 6)
    a = augment(x, generator=torch.Generator().manual_seed(5), hflip=0.5, shift_px=1, negate=(0,))
    b = augment(x, generator=torch.Generator().manual_seed(5), hflip=0.5, shift_px=1, negate=(0,))
    assert torch.equal(a, b)
    # hflip alone: the same draws as the original loop (one torch.rand per batch)
    g = torch.Generator().manual_seed(7)
    flip = torch.rand(8, generator=g) < 0.5
    expected = x.clone()
    expected[flip] = (x[flip].flip(-1) * torch.tensor([-1.0, 1, 1]).view(1, 3, 1, 1))
    assert torch.equal(augment(x, generator=torch.Generator().manual_seed(7), hflip=0.5, negate=(0,)), expected)
