"""The symmetric contrastive (SC) loss (Eq. 12-14) and SCViT's training objective CE + omega * SC.

SC pulls together the embeddings of the left and right face halves of micro-expressions of the same
class. Every sample i of the batch I contributes one L2-normalised embedding z_{i,alpha} per region
alpha in {UL, UR, BL, BR} (see ``selfme.scvit.regions``); mirror(alpha) swaps left and right.

``sc_form: eq14`` (the paper's Eq. 14, the default). One term per anchor (i, alpha) and partner region
beta in {alpha, mirror(alpha)}, contrasting z_{i,alpha} against the batch's region-beta embeddings only:

    A(i, alpha, beta) = {a in I : a != i if alpha = beta}
    P(i, alpha, beta) = {p in A(i, alpha, beta) : y_p = y_i}
    l(i, alpha, beta) = -1/|P| sum_{p in P} log( exp(z_{i,alpha} . z_{p,beta} / tau)
                                                 / sum_{a in A} exp(z_{i,alpha} . z_{a,beta} / tau) )

Eq. 14 sums l over every (i, alpha, beta) with |P| > 0; we take their MEAN. A sum grows with the batch
size (up to 8 B terms), so the weight omega of CE + omega * SC would mean something different for every
batch size, and for the last, smaller batch of an epoch; with the mean, omega is the weight of one
average term, comparable across batch sizes and datasets (the paper's omega 0.1 refers to its batch 32:
omega_sum = omega_mean / n_terms).

``sc_form: supcon`` (the earlier form, kept for comparison): one supervised contrastive softmax
(Khosla et al., 2020) over all 4 B region embeddings of the batch, for an anchor a = (i, alpha):
P(a) = {(j, s) : y_j = y_i, s in {alpha, mirror(alpha)}, (j, s) != a}, candidates every region embedding
of the batch but a itself; mean over anchors with |P(a)| > 0.

``own_mirror: false`` (both forms) also takes a sample's own mirrored region out of its candidates and
positives, leaving only other samples of the class. Normalising first keeps z . z / tau within
[-1/tau, 1/tau] (with tau = 0.07 raw dot products would overflow). Zero-safe: a graph-connected 0 when
no term has a positive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfme.scvit.regions import QUADRANTS, positive_region_pairs

SC_FORMS = ("eq14", "supcon")
#: Fills excluded entries of a softmax: exp() of it is exactly 0 in float32, yet it stays finite.
_EXCLUDED = -1e9


def _default_pairs(r: int, pairs: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if pairs is None:
        pairs = positive_region_pairs(QUADRANTS) if r == len(QUADRANTS) else torch.eye(r, dtype=torch.bool)
    if pairs.shape != (r, r):
        raise ValueError(f"pairs must be [{r}, {r}], got {tuple(pairs.shape)}")
    return pairs.to(device)


def _check(regions: torch.Tensor, tau: float) -> None:
    if regions.ndim != 3:
        raise ValueError(f"expected region embeddings [B, R, D], got {tuple(regions.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")


def eq14_terms(z: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor, *, tau: float,
               own_mirror: bool = True) -> torch.Tensor:
    """Every term l(i, alpha, beta) of Eq. 14 that has positives, as a 1-D tensor.

    z: normalised region embeddings [B, R, D]; pairs[alpha, beta]: beta is a partner of alpha.
    """
    b = z.shape[0]
    itself = torch.eye(b, dtype=torch.bool, device=z.device)
    same_label = labels[:, None] == labels[None, :]                       # [B, B]
    terms = []
    for alpha, beta in pairs.nonzero().tolist():
        excluded = itself if (alpha == beta or not own_mirror) else torch.zeros_like(itself)
        logits = (z[:, alpha] @ z[:, beta].T / tau).masked_fill(excluded, _EXCLUDED)   # [B (anchor i), B (a)]
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positive = same_label & ~excluded                                 # P(i, alpha, beta)
        n_pos = positive.sum(dim=1)
        has = n_pos > 0
        summed = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        terms.append(-summed[has] / n_pos[has])
    return torch.cat(terms)


def supcon_terms(z: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor, *, tau: float,
                 own_mirror: bool = True) -> torch.Tensor:
    """The per-anchor losses of one supervised contrastive softmax over all B x R region embeddings."""
    b, r, _ = z.shape
    flat = z.reshape(b * r, -1)
    sample = torch.arange(b, device=z.device).repeat_interleave(r)
    region = torch.arange(r, device=z.device).repeat(b)
    itself = torch.eye(b * r, dtype=torch.bool, device=z.device)
    logits = (flat @ flat.T / tau).masked_fill(itself, _EXCLUDED)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    y = labels[sample]
    positive = (y[:, None] == y[None, :]) & pairs[region][:, region] & ~itself
    if not own_mirror:
        positive &= sample[:, None] != sample[None, :]
    n_pos = positive.sum(dim=1)
    has = n_pos > 0
    summed = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -summed[has] / n_pos[has]


def symmetric_contrastive_loss(regions: torch.Tensor, labels: torch.Tensor, *, tau: float,
                               pairs: torch.Tensor | None = None, own_mirror: bool = True,
                               form: str = "eq14") -> torch.Tensor:
    """SC loss of region embeddings [B, R, D] with class labels [B]: the mean of Eq. 14's terms
    (``form='eq14'``) or of the supervised-contrastive anchors (``form='supcon'``); see the module doc.

    pairs: [R, R] boolean, region beta is a partner of region alpha (default: the quadrants' same or
    mirrored region).
    """
    _check(regions, tau)
    if form not in SC_FORMS:
        raise ValueError(f"SC form must be one of {SC_FORMS}, got {form!r}")
    pairs = _default_pairs(regions.shape[1], pairs, regions.device)
    z = F.normalize(regions.float(), dim=2)
    terms_of = eq14_terms if form == "eq14" else supcon_terms
    terms = terms_of(z, labels.to(regions.device), pairs, tau=tau, own_mirror=own_mirror)
    if terms.numel() == 0:
        return regions.sum() * 0.0
    return terms.mean()


class SCViTLoss(nn.Module):
    """CE + omega * SC (Sec. 3.3); omega = 0 is plain cross-entropy and skips SC altogether.

    label_smoothing: of the cross-entropy (0: none); class_weight: per-class CE weights; form: the SC
    form (``eq14`` | ``supcon``).
    """

    def __init__(self, *, omega: float, tau: float, own_mirror: bool = True, form: str = "eq14",
                 label_smoothing: float = 0.0, class_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if omega < 0:
            raise ValueError(f"omega must be >= 0, got {omega}")
        if form not in SC_FORMS:
            raise ValueError(f"SC form must be one of {SC_FORMS}, got {form!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.omega = float(omega)
        self.tau = float(tau)
        self.own_mirror = bool(own_mirror)
        self.form = form
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("class_weight", class_weight, persistent=False)

    @property
    def needs_regions(self) -> bool:
        return self.omega > 0

    def forward(self, logits: torch.Tensor, labels: torch.Tensor,
                regions: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        loss, ce, sc = self.terms(logits, labels, regions)
        return loss, {"ce": float(ce.detach()), "sc": float(sc.detach()) if self.needs_regions else 0.0}

    def terms(self, logits: torch.Tensor, labels: torch.Tensor, regions: torch.Tensor | None = None, *,
              masked: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(CE + omega * SC, CE, SC) as tensors, read by nothing on the host. ``masked``: SC's mean over
        its terms by masks (``selfme.scvit.stacked.masked_sc_loss``, every row valid) instead of selecting
        them, which needs no host synchronisation on CUDA; equal up to float rounding."""
        ce = F.cross_entropy(logits, labels, weight=self.class_weight, label_smoothing=self.label_smoothing)
        if not self.needs_regions:
            return ce, ce, ce.new_zeros(())
        if regions is None:
            raise ValueError("omega > 0 needs the region embeddings")
        if masked:
            from selfme.scvit.stacked import masked_sc_loss

            valid = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
            sc = masked_sc_loss(regions, labels, valid, tau=self.tau, form=self.form, own_mirror=self.own_mirror)
        else:
            sc = symmetric_contrastive_loss(regions, labels, tau=self.tau, own_mirror=self.own_mirror, form=self.form)
        return ce + self.omega * sc, ce, sc
