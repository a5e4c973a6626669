"""The symmetric contrastive (SC) loss (Eq. 12-14) and SCViT's training objective CE + omega * SC.

SC pulls together the embeddings of the left and right face halves of micro-expressions of the same
class. It is a supervised contrastive loss (Khosla et al., 2020) over region embeddings: every sample
contributes one embedding per region (UL, UR, BL, BR; see ``selfme.scvit.regions``), L2-normalised.
For an anchor a = (sample i, region r) with label y_i:

    positives  P(a) = {(j, s) : y_j = y_i, s in {r, mirror(r)}, (j, s) != (i, r)}
    candidates A(a) = {every region embedding of the batch} minus a itself
    loss(a)    = -1/|P(a)| * sum_{p in P(a)} log( exp(z_a . z_p / tau) / sum_{k in A(a)} exp(z_a . z_k / tau) )
    SC         = mean of loss(a) over the anchors with |P(a)| > 0   (0 when no anchor has a positive)

So a sample's UL and its own UR are positives of each other (the anchor is excluded only for the same
region), and so are the UL and UR of two different samples of one class. Normalising first keeps
z_a . z_k / tau within [-1/tau, 1/tau] (with tau = 0.07, raw dot products would overflow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfme.scvit.regions import QUADRANTS, positive_region_pairs

#: Fills the anchor's own entry in its softmax: exp() of it is exactly 0 in float32, yet it stays finite.
_EXCLUDED = -1e9


def symmetric_contrastive_loss(regions: torch.Tensor, labels: torch.Tensor, *, tau: float,
                               pairs: torch.Tensor | None = None, own_mirror: bool = True) -> torch.Tensor:
    """SC loss (Eq. 12-14) of region embeddings [B, R, D] with class labels [B].

    pairs: [R, R] boolean, region s is a positive partner of region r (default: the quadrants' same or
    mirrored region). own_mirror: whether a sample's own partner regions count as positives (the
    paper's symmetric pull; False leaves only other samples of the same class). Zero-safe: returns a
    graph-connected 0 when no anchor has a positive.
    """
    if regions.ndim != 3:
        raise ValueError(f"expected region embeddings [B, R, D], got {tuple(regions.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    b, r, _ = regions.shape
    device = regions.device
    if pairs is None:
        pairs = positive_region_pairs(QUADRANTS) if r == len(QUADRANTS) else torch.eye(r, dtype=torch.bool)
    pairs = pairs.to(device)
    if pairs.shape != (r, r):
        raise ValueError(f"pairs must be [{r}, {r}], got {tuple(pairs.shape)}")
    z = F.normalize(regions.float().reshape(b * r, -1), dim=1)
    sample = torch.arange(b, device=device).repeat_interleave(r)
    region = torch.arange(r, device=device).repeat(b)
    itself = torch.eye(b * r, dtype=torch.bool, device=device)

    logits = (z @ z.T / tau).masked_fill(itself, _EXCLUDED)      # the anchor leaves its own softmax
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    y = labels.to(device)[sample]
    positive = (y[:, None] == y[None, :]) & pairs[region][:, region] & ~itself
    if not own_mirror:
        positive &= sample[:, None] != sample[None, :]
    n_pos = positive.sum(dim=1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return regions.sum() * 0.0
    per_anchor = -torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return (per_anchor[anchors] / n_pos[anchors]).mean()


class SCViTLoss(nn.Module):
    """CE + omega * SC (Sec. 3.3); omega = 0 is plain cross-entropy and skips SC altogether."""

    def __init__(self, *, omega: float, tau: float, own_mirror: bool = True,
                 class_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if omega < 0:
            raise ValueError(f"omega must be >= 0, got {omega}")
        self.omega = float(omega)
        self.tau = float(tau)
        self.own_mirror = bool(own_mirror)
        self.register_buffer("class_weight", class_weight, persistent=False)

    @property
    def needs_regions(self) -> bool:
        return self.omega > 0

    def forward(self, logits: torch.Tensor, labels: torch.Tensor,
                regions: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        ce = F.cross_entropy(logits, labels, weight=self.class_weight)
        if not self.needs_regions:
            return ce, {"ce": float(ce.detach()), "sc": 0.0}
        if regions is None:
            raise ValueError("omega > 0 needs the region embeddings")
        sc = symmetric_contrastive_loss(regions, labels, tau=self.tau, own_mirror=self.own_mirror)
        return ce + self.omega * sc, {"ce": float(ce.detach()), "sc": float(sc.detach())}
