"""The symmetric contrastive loss (Eq. 12-14) against hand-computed values, and CE + omega * SC."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selfme.scvit import SCViTLoss, symmetric_contrastive_loss
from selfme.scvit.regions import MIRROR, QUADRANTS, positive_region_pairs

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def _two_samples(first, second):
    return torch.tensor([[first] * 4, [second] * 4])  # [B=2, R=4, D=2]


def test_hand_computed_different_labels():
    # Sample 0's four regions all equal e1, sample 1's all e2 (orthogonal); labels differ.
    # Anchor (0, UL): its only positive is its own UR (same sample, mirrored region). Candidates: the 7
    # other embeddings: (0, UR), (0, BL), (0, BR) with dot 1 and the four of sample 1 with dot 0.
    # loss = -(1/tau - log(3 e^{1/tau} + 4 e^0)); every anchor is alike by symmetry.
    tau = 0.5
    expected = math.log(3 * math.exp(1 / tau) + 4) - 1 / tau
    loss = symmetric_contrastive_loss(_two_samples(E1, E2), torch.tensor([0, 1]), tau=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_computed_same_label():
    # Same embeddings, one label: anchor (0, UL) has positives (0, UR) [dot 1], (1, UL) and (1, UR) [dot 0];
    # with L = log(3 e^{1/tau} + 4): loss = -(1/3) [(1/tau - L) + (0 - L) + (0 - L)] = L - 1/(3 tau).
    tau = 0.5
    big_l = math.log(3 * math.exp(1 / tau) + 4)
    loss = symmetric_contrastive_loss(_two_samples(E1, E2), torch.tensor([2, 2]), tau=tau)
    assert loss.item() == pytest.approx(big_l - 1 / (3 * tau), rel=1e-6)


def _reference(emb, labels, tau):
    """Eq. 12-14 written out with Python floats, anchor by anchor."""
    items = []
    for i, sample in enumerate(emb):
        for r, vec in enumerate(sample):
            norm = math.sqrt(sum(v * v for v in vec))
            items.append((i, QUADRANTS[r], [v / norm for v in vec]))
    losses = []
    for a, (i, region, za) in enumerate(items):
        sims = {k: sum(p * q for p, q in zip(za, zk)) / tau for k, (_, _, zk) in enumerate(items) if k != a}
        log_denominator = math.log(sum(math.exp(s) for s in sims.values()))
        positives = [k for k, (j, s, _) in enumerate(items)
                     if k != a and labels[j] == labels[i] and s in (region, MIRROR[region])]
        if positives:
            losses.append(-sum(sims[k] - log_denominator for k in positives) / len(positives))
    return sum(losses) / len(losses) if losses else 0.0


def test_matches_the_written_out_formula_on_unnormalised_embeddings():
    emb = [[[1.0, 2.0, 0.0], [0.5, -1.0, 1.0], [2.0, 0.0, 1.0], [0.0, 1.0, 3.0]],
           [[-1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [0.3, 0.2, 0.1], [2.0, -1.0, 0.0]],
           [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-2.0, 1.0, 0.5]]]
    labels = [0, 1, 0]
    loss = symmetric_contrastive_loss(torch.tensor(emb), torch.tensor(labels), tau=0.07)
    assert loss.item() == pytest.approx(_reference(emb, labels, 0.07), rel=1e-5)


def test_invariant_to_batch_order():
    g = torch.Generator().manual_seed(0)
    emb, labels = torch.randn(6, 4, 8, generator=g), torch.tensor([0, 1, 0, 2, 1, 0])
    perm = torch.randperm(6, generator=g)
    a = symmetric_contrastive_loss(emb, labels, tau=0.07)
    b = symmetric_contrastive_loss(emb[perm], labels[perm], tau=0.07)
    assert torch.allclose(a, b, rtol=1e-6)


def test_zero_safe_without_positives():
    emb = torch.randn(3, 1, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    # One region per sample and no two samples share a label: no anchor has a positive.
    loss = symmetric_contrastive_loss(emb, labels, tau=0.07, pairs=torch.ones(1, 1, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(emb.grad).all() and not emb.grad.any()
    # Quadrants without the own-mirror pull, distinct labels: no positives either.
    quads = torch.randn(3, 4, 4, requires_grad=True)
    loss = symmetric_contrastive_loss(quads, labels, tau=0.07, own_mirror=False)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(quads.grad).all()
    # A single sample: every anchor still has its own mirrored region; finite and positive.
    single = symmetric_contrastive_loss(torch.randn(1, 4, 4), torch.tensor([0]), tau=0.07)
    assert torch.isfinite(single) and single.item() > 0


def test_own_mirror_off_uses_only_other_samples():
    # Two samples, one label, regions e1 (sample 0) / e2 (sample 1). Without own-mirror positives the
    # anchor (0, UL) has positives (1, UL), (1, UR), both dot 0: loss = L - 0 with L = log(3 e^{1/tau} + 4).
    tau = 0.5
    loss = symmetric_contrastive_loss(_two_samples(E1, E2), torch.tensor([0, 0]), tau=tau, own_mirror=False)
    assert loss.item() == pytest.approx(math.log(3 * math.exp(1 / tau) + 4), rel=1e-6)


def test_positive_region_pairs():
    pairs = positive_region_pairs()
    assert pairs.tolist() == [[True, True, False, False], [True, True, False, False],
                              [False, False, True, True], [False, False, True, True]]


def test_omega_zero_is_exactly_cross_entropy():
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    loss, parts = SCViTLoss(omega=0.0, tau=0.07)(logits, labels)
    assert torch.equal(loss, F.cross_entropy(logits, labels))
    assert parts["sc"] == 0.0 and not SCViTLoss(omega=0.0, tau=0.07).needs_regions


def test_total_loss_is_ce_plus_omega_sc():
    logits, labels = torch.randn(2, 3), torch.tensor([0, 1])
    regions = _two_samples(E1, E2)
    loss, parts = SCViTLoss(omega=0.1, tau=0.5)(logits, labels, regions)
    sc = math.log(3 * math.exp(2.0) + 4) - 2.0
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item() + 0.1 * sc, rel=1e-6)
    assert parts["sc"] == pytest.approx(sc, rel=1e-6)
    with pytest.raises(ValueError, match="region"):
        SCViTLoss(omega=0.1, tau=0.5)(logits, labels)
