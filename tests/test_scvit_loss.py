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


def _supcon(regions, labels, **kwargs):
    return symmetric_contrastive_loss(regions, labels, form="supcon", **kwargs)


def test_supcon_hand_computed_different_labels():
    # Sample 0's four regions all equal e1, sample 1's all e2 (orthogonal); labels differ.
    # Anchor (0, UL): its only positive is its own UR (same sample, mirrored region). Candidates: the 7
    # other embeddings: (0, UR), (0, BL), (0, BR) with dot 1 and the four of sample 1 with dot 0.
    # loss = -(1/tau - log(3 e^{1/tau} + 4 e^0)); every anchor is alike by symmetry.
    tau = 0.5
    expected = math.log(3 * math.exp(1 / tau) + 4) - 1 / tau
    loss = _supcon(_two_samples(E1, E2), torch.tensor([0, 1]), tau=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_supcon_hand_computed_same_label():
    # Same embeddings, one label: anchor (0, UL) has positives (0, UR) [dot 1], (1, UL) and (1, UR) [dot 0];
    # with L = log(3 e^{1/tau} + 4): loss = -(1/3) [(1/tau - L) + (0 - L) + (0 - L)] = L - 1/(3 tau).
    tau = 0.5
    big_l = math.log(3 * math.exp(1 / tau) + 4)
    loss = _supcon(_two_samples(E1, E2), torch.tensor([2, 2]), tau=tau)
    assert loss.item() == pytest.approx(big_l - 1 / (3 * tau), rel=1e-6)


def _supcon_reference(emb, labels, tau):
    """The supcon form written out with Python floats: one softmax over all 4B region embeddings."""
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


def test_supcon_matches_its_written_out_formula_on_unnormalised_embeddings():
    emb = [[[1.0, 2.0, 0.0], [0.5, -1.0, 1.0], [2.0, 0.0, 1.0], [0.0, 1.0, 3.0]],
           [[-1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [0.3, 0.2, 0.1], [2.0, -1.0, 0.0]],
           [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-2.0, 1.0, 0.5]]]
    labels = [0, 1, 0]
    loss = _supcon(torch.tensor(emb), torch.tensor(labels), tau=0.07)
    assert loss.item() == pytest.approx(_supcon_reference(emb, labels, 0.07), rel=1e-5)


def test_supcon_invariant_to_batch_order():
    g = torch.Generator().manual_seed(0)
    emb, labels = torch.randn(6, 4, 8, generator=g), torch.tensor([0, 1, 0, 2, 1, 0])
    perm = torch.randperm(6, generator=g)
    a = _supcon(emb, labels, tau=0.07)
    b = _supcon(emb[perm], labels[perm], tau=0.07)
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
    # A single sample, supcon: every anchor still has its own mirrored region; finite and positive.
    single = _supcon(torch.randn(1, 4, 4), torch.tensor([0]), tau=0.07)
    assert torch.isfinite(single) and single.item() > 0
    # Eq. 14: only the mirror terms have a positive, each a softmax over its one candidate: exactly 0.
    assert symmetric_contrastive_loss(torch.randn(1, 4, 4), torch.tensor([0]), tau=0.07).item() == 0.0


def test_supcon_own_mirror_off_uses_only_other_samples():
    # Two samples, one label, regions e1 (sample 0) / e2 (sample 1). Without own-mirror positives the
    # anchor (0, UL) has positives (1, UL), (1, UR), both dot 0: loss = L - 0 with L = log(3 e^{1/tau} + 4).
    tau = 0.5
    loss = _supcon(_two_samples(E1, E2), torch.tensor([0, 0]), tau=tau, own_mirror=False)
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
    sc = math.log(1 + math.exp(-2.0))  # Eq. 14 with distinct labels (see test_eq14_two_samples_...)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item() + 0.1 * sc, rel=1e-6)
    assert parts["sc"] == pytest.approx(sc, rel=1e-6)
    with pytest.raises(ValueError, match="region"):
        SCViTLoss(omega=0.1, tau=0.5)(logits, labels)


# ---- Eq. 14 (the default form) ------------------------------------------------------------------------
# Worked on paper with tau = 0.5, so z.z'/tau is 2 for equal unit vectors and 0 for orthogonal ones.
# Terms are l(i, alpha, beta) for beta in {alpha, mirror(alpha)}; A(i, alpha, beta) holds the batch's
# region-beta embeddings, without sample i when beta = alpha; P is the same-label part of A.

def test_eq14_two_samples_different_labels():
    # Sample 0: every region e1 (label 0); sample 1: every region e2 (label 1).
    # beta = alpha: A = {other sample}, which has another label: P empty, no term.
    # beta = mirror: A = {i, other}, P = {i}: l = -log(e^2 / (e^2 + e^0)) = log(1 + e^-2) = 0.126928.
    # All 8 terms (2 samples x 4 anchors) are equal, so the mean is log(1 + e^-2).
    regions, labels = _two_samples(E1, E2), torch.tensor([0, 1])
    eq14 = symmetric_contrastive_loss(regions, labels, tau=0.5)
    assert eq14.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    assert eq14.item() == pytest.approx(0.126928, abs=1e-6)
    # The supcon form gives log(3 e^2 + 4) - 2 = 1.264506 on the same batch.
    assert _supcon(regions, labels, tau=0.5).item() == pytest.approx(1.264506, abs=1e-6)


def test_eq14_two_samples_same_label():
    # Same embeddings, one label.
    # beta = alpha: A = {other} = P: a softmax over one candidate, l = -log 1 = 0 (8 such terms).
    # beta = mirror: A = P = {i, other}, dots 2 and 0: l = log(e^2 + 1) - (2 + 0) / 2 = 1.126928 (8 terms).
    # Mean over the 16 terms: (log(e^2 + 1) - 1) / 2 = 0.563464.
    eq14 = symmetric_contrastive_loss(_two_samples(E1, E2), torch.tensor([2, 2]), tau=0.5)
    assert eq14.item() == pytest.approx((math.log(math.exp(2) + 1) - 1) / 2, rel=1e-6)
    assert eq14.item() == pytest.approx(0.563464, abs=1e-6)


def test_eq14_three_samples():
    # Samples 0 and 1: every region e1, label 0; sample 2: every region e2, label 1.
    # Sample 0 (and 1 alike), beta = alpha: A = {1, 2}, P = {1}: l = log(e^2 + 1) - 2 = 0.126928.
    #                        beta = mirror: A = {0, 1, 2}, P = {0, 1}: l = log(2 e^2 + 1) - 2 = 0.758624.
    # Sample 2, beta = alpha: A = {0, 1}, P empty: no term.
    #           beta = mirror: A = {0, 1, 2}, P = {2}: l = log(e^2 + 2) - 2 = 0.239545.
    # Terms: 8 x 0.126928 + 8 x 0.758624 (samples 0, 1) + 4 x 0.239545 (sample 2), 20 in all: 0.402130.
    regions = torch.tensor([[E1] * 4, [E1] * 4, [E2] * 4])
    expected = (8 * (math.log(math.exp(2) + 1) - 2) + 8 * (math.log(2 * math.exp(2) + 1) - 2)
                + 4 * (math.log(math.exp(2) + 2) - 2)) / 20
    loss = symmetric_contrastive_loss(regions, torch.tensor([0, 0, 1]), tau=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() == pytest.approx(0.402130, abs=1e-6)


def _eq14_reference(emb, labels, tau, own_mirror=True):
    """Eq. 14 written out term by term with Python floats (mean instead of the sum)."""
    z = [[[v / math.sqrt(sum(c * c for c in vec)) for v in vec] for vec in sample] for sample in emb]
    n = len(z)
    terms = []
    for i in range(n):
        for alpha, name in enumerate(QUADRANTS):
            for beta in (alpha, QUADRANTS.index(MIRROR[name])):
                skip_self = beta == alpha or not own_mirror
                cands = [a for a in range(n) if not (skip_self and a == i)]
                pos = [p for p in cands if labels[p] == labels[i]]
                if not pos:
                    continue
                sim = {a: sum(x * y for x, y in zip(z[i][alpha], z[a][beta])) / tau for a in cands}
                log_den = math.log(sum(math.exp(v) for v in sim.values()))
                terms.append(-sum(sim[p] - log_den for p in pos) / len(pos))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("own_mirror", [True, False])
def test_eq14_matches_the_written_out_equation(own_mirror):
    g = torch.Generator().manual_seed(3)
    emb, labels = torch.randn(5, 4, 6, generator=g), [0, 1, 0, 2, 1]
    loss = symmetric_contrastive_loss(emb, torch.tensor(labels), tau=0.07, own_mirror=own_mirror)
    assert loss.item() == pytest.approx(_eq14_reference(emb.tolist(), labels, 0.07, own_mirror), rel=1e-5)


def test_eq14_invariant_to_batch_order_and_zero_safe():
    g = torch.Generator().manual_seed(1)
    emb, labels = torch.randn(6, 4, 8, generator=g), torch.tensor([0, 1, 0, 2, 1, 0])
    perm = torch.randperm(6, generator=g)
    a = symmetric_contrastive_loss(emb, labels, tau=0.07)
    assert torch.allclose(a, symmetric_contrastive_loss(emb[perm], labels[perm], tau=0.07), rtol=1e-6)
    # Distinct labels and no own-mirror pull: no term has a positive; 0 with a finite (zero) gradient.
    quads = torch.randn(3, 4, 4, requires_grad=True)
    loss = symmetric_contrastive_loss(quads, torch.tensor([0, 1, 2]), tau=0.07, own_mirror=False)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(quads.grad).all() and not quads.grad.any()


def test_unknown_form_is_an_error():
    with pytest.raises(ValueError, match="eq14"):
        symmetric_contrastive_loss(torch.randn(2, 4, 3), torch.tensor([0, 1]), tau=0.1, form="sum")


def test_label_smoothing_is_passed_to_cross_entropy():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    loss, _ = SCViTLoss(omega=0.0, tau=0.07, label_smoothing=0.2)(logits, labels)
    # Smoothed target: 1 - 0.2 + 0.2/3 on the label, 0.2/3 elsewhere.
    target = torch.full((4, 3), 0.2 / 3)
    target[torch.arange(4), labels] += 0.8
    expected = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
