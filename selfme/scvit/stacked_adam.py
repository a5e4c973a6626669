"""Adam for stacked folds (``selfme.scvit.stacked``) in which some folds sit a step out.

Folds of one stack can have different numbers of training rows, hence different numbers of batches per
epoch. A fold with fewer batches must not move in the steps it has no batch for: plain Adam would still
move it (its momentum) and would count the step in its bias correction. ``StackedAdam`` keeps every
fold's own step count and updates only the folds marked active, so each fold follows exactly the
Adam trajectory (Kingma & Ba 2015, Algorithm 1; L2 weight decay added to the gradient, as
``torch.optim.Adam``) that the plain per-fold training gives it:

    g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Every parameter is stacked [F, ...] along the fold dimension; the learning rate is a param group's
``lr`` (so ``torch.optim.lr_scheduler`` schedules it).
"""

from __future__ import annotations

from typing import Iterable

import torch


class StackedAdam(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.Tensor], *, folds: int, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.folds = folds
        self.steps = torch.zeros(folds, dtype=torch.float64)   # t, per fold

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:  # type: ignore[override]
        """One Adam step for the folds where ``active`` [F] (bool; default all)."""
        active = torch.ones(self.folds, dtype=torch.bool) if active is None else active.cpu()
        self.steps += active.double()
        everyone = bool(active.all())
        t = self.steps.clamp(min=1)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            step_size = (group["lr"] / (1 - beta1 ** t)).float()            # [F]
            bc2_sqrt = (1 - beta2 ** t).sqrt().float()                       # [F]
            for p in group["params"]:
                if p.grad is None:
                    continue
                shape = (self.folds,) + (1,) * (p.dim() - 1)
                on = active.to(p.device).view(shape)
                grad = p.grad if group["weight_decay"] == 0 else p.grad + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                if everyone:   # the usual step: no fold sits out, so in place (the same values, fewer temporaries)
                    m.lerp_(grad, 1 - beta1)
                    v.mul_(beta2).add_((1 - beta2) * grad * grad)
                else:
                    m.copy_(torch.where(on, m.lerp(grad, 1 - beta1), m))
                    v.copy_(torch.where(on, v * beta2 + (1 - beta2) * grad * grad, v))
                denom = v.sqrt() / bc2_sqrt.to(p.device).view(shape) + group["eps"]
                update = step_size.to(p.device).view(shape) * m / denom
                p.sub_(update if everyone else torch.where(on, update, torch.zeros_like(update)))
