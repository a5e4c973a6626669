"""Several LOSO folds trained at once as one stacked model (``loso.stack_folds``), for small models on CPU.

A tiny SCViT or CNN step on a batch of 16-32 motion images costs about as much in per-call overhead as
in arithmetic, so LOSO's dozens of folds are stacked: every fold keeps its own parameters, its own
Adam state, its own seed, batch order and augmentation draws, and one ``torch.func.vmap`` over
``functional_call`` runs all their forward passes together. Each fold's loss is computed on its own
batch only, and the sum over folds has the per-fold gradients (no parameter is shared), so a stacked
fold computes what the plain ``train_fold`` computes, up to float rounding (tested on a tiny case).

What this needs: no dropout or stochastic depth (vmap runs with ``randomness='error'``) and no batch
norm. A fold's last batch of an epoch is usually smaller: every fold's batch is padded to the largest
one of the step and the padded rows are masked out of the cross-entropy and the SC loss (the masked
forms below equal ``F.cross_entropy`` and ``symmetric_contrastive_loss`` on the unpadded rows). Folds
with fewer training rows have fewer batches per epoch: in the steps after their last batch they sit
out (no valid row, and ``StackedAdam`` leaves their parameters and Adam state untouched), so folds of
any size share a stack.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from selfme.scvit.augment import augment
from selfme.scvit.factory import SCViTConfig, create_scvit
from selfme.scvit.losses import _EXCLUDED
from selfme.scvit.model import SoftmaxEnsemble
from selfme.scvit.regions import QUADRANTS, positive_region_pairs
from selfme.scvit.stacked_adam import StackedAdam
from selfme.scvit.swa import WeightAverage, averages_epoch
from selfme.scvit.train import LosoConfig, class_weights, lr_scheduler, member_seed


def ensemble_of(members: Sequence[tuple[nn.Module, list[dict[str, float]]]]
                ) -> tuple[nn.Module, list[dict[str, float]]]:
    """One run's (model, history) from its ``loso.ensemble`` members' (model, history): a single member
    as it is; several as a ``SoftmaxEnsemble`` (mean softmax) with the per-epoch mean of their histories."""
    if len(members) == 1:
        return members[0]
    histories = [h for _, h in members]
    history = [{k: (row[k] if k in ("epoch", "lr") else sum(h[e][k] for h in histories) / len(histories))
                for k in row} for e, row in enumerate(histories[0])]
    return SoftmaxEnsemble(members=[m for m, _ in members]), history


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """``F.cross_entropy(logits[valid], labels[valid], weight, label_smoothing)`` without indexing
    (mean reduction: weighted by weight[y], label smoothing spread uniformly over the classes)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    w_y = weight[labels] * valid
    total = w_y.sum().clamp(min=torch.finfo(w_y.dtype).tiny)   # no valid row (a fold sitting out): 0
    nll = -(w_y * logp.gather(1, labels[:, None])[:, 0]).sum() / total
    if label_smoothing == 0:
        return nll
    smooth = -((logp * weight[None, :]).sum(1) * valid).sum() / total
    return (1 - label_smoothing) * nll + label_smoothing / logits.shape[1] * smooth


def _masked_mean(summed: torch.Tensor, n_pos: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    has = (n_pos > 0) & anchors
    terms = torch.where(has, -summed / n_pos.clamp(min=1), torch.zeros_like(summed))
    return terms.sum(), has.sum()


def masked_sc_loss(regions: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, *, tau: float,
                   form: str = "eq14", own_mirror: bool = True) -> torch.Tensor:
    """``symmetric_contrastive_loss`` (Eq. 14 or supcon; see ``selfme.scvit.losses``) of the rows where
    ``valid``: invalid rows are neither anchors nor candidates. Mean over the terms with positives."""
    b, r, _ = regions.shape
    z = F.normalize(regions.float(), dim=2)
    pairs = positive_region_pairs(QUADRANTS) if r == len(QUADRANTS) else torch.eye(r, dtype=torch.bool)
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(b, dtype=torch.bool, device=z.device)
    absent = ~valid[None, :].expand(b, b)
    total, count = z.sum() * 0.0, torch.zeros((), dtype=torch.long, device=z.device)
    if form == "eq14":
        for alpha, beta in pairs.nonzero().tolist():
            excluded = (itself if (alpha == beta or not own_mirror) else torch.zeros_like(itself)) | absent
            logits = (z[:, alpha] @ z[:, beta].T / tau).masked_fill(excluded, _EXCLUDED)
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            positive = same & ~excluded
            summed = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(1)
            t, c = _masked_mean(summed, positive.sum(1), valid)
            total, count = total + t, count + c
    else:
        flat = z.reshape(b * r, -1)
        sample = torch.arange(b, device=z.device).repeat_interleave(r)
        region = torch.arange(r, device=z.device).repeat(b)
        self_flat = torch.eye(b * r, dtype=torch.bool, device=z.device)
        excluded = self_flat | ~valid[sample][None, :].expand(b * r, b * r)
        logits = (flat @ flat.T / tau).masked_fill(excluded, _EXCLUDED)
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positive = same[sample][:, sample] & pairs.to(z.device)[region][:, region] & ~excluded
        if not own_mirror:
            positive = positive & (sample[:, None] != sample[None, :])
        summed = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(1)
        total, count = _masked_mean(summed, positive.sum(1), valid[sample])
    return total / count.clamp(min=1)


def _check_stackable(model_config: SCViTConfig, models: Sequence[nn.Module]) -> None:
    if model_config.drop_rate or model_config.drop_path_rate:
        raise ValueError("loso.stack_folds > 1 needs scvit.drop_rate: 0 and scvit.drop_path_rate: 0")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
        raise ValueError("loso.stack_folds > 1 cannot train models with batch norm")


def _batch(x: torch.Tensor, y: torch.Tensor, parts: list[torch.Tensor], generators: list[torch.Generator],
           config: LosoConfig, negate: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every fold's batch, augmented with its own generator, padded to the largest: x, y, valid."""
    width = max(len(p) for p in parts)
    xb = x.new_zeros((len(parts), width, *x.shape[1:]))
    yb = torch.zeros((len(parts), width), dtype=torch.long)
    valid = torch.zeros((len(parts), width), dtype=torch.bool)
    for f, (idx, gen) in enumerate(zip(parts, generators)):
        part = x[idx]
        if len(idx) and (config.hflip > 0 or config.shift_px > 0):
            part = augment(part, generator=gen, hflip=config.hflip, shift_px=config.shift_px, negate=negate)
        xb[f, :len(idx)], yb[f, :len(idx)], valid[f, :len(idx)] = part, y[idx], True
    return xb, yb, valid


def _initial_models(seeds: Sequence[int], *, model_config: SCViTConfig, num_classes: int, in_chans: int,
                    device: torch.device) -> list[nn.Module]:
    """One freshly initialised model per seed (torch seeded with it first, as train_fold), checked stackable."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)  # initialisation, as train_fold
        models.append(create_scvit(model_config, num_classes=num_classes, in_chans=in_chans)[0].to(device))
    _check_stackable(model_config, models)
    return models


def _explicit_attention(model: nn.Module) -> nn.Module:
    """``model`` with timm's attention written out (softmax(q k^T / sqrt(d)) v, ``fused_attn = False``)
    instead of ``scaled_dot_product_attention``: the same equation, which vmap batches natively, where
    torch has no vmap rule for the CPU SDPA kernel and falls back to a slower path (about 1.5x per
    stacked fold step at 42 folds). Only the stacked forward uses it; saved models are unchanged."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model


def _append_histories(histories: list[list[dict[str, float]]], sums: torch.Tensor, train: Sequence[torch.Tensor],
                      *, epoch: int, lr: float) -> None:
    """Each fold's epoch row: loss, CE, SC and accuracy summed over its samples, divided by their count."""
    for f, t in enumerate(train):
        loss_f, ce_f, sc_f, correct_f = (float(v) / len(t) for v in sums[f])
        histories[f].append({"epoch": epoch + 1, "lr": lr, "loss": loss_f, "ce": ce_f, "sc": sc_f,
                             "train_acc": correct_f})


def train_folds_stacked(x: torch.Tensor, y: torch.Tensor, train: Sequence[torch.Tensor], seeds: Sequence[int], *,
                        model_config: SCViTConfig, config: LosoConfig, num_classes: int, device: torch.device,
                        negate: tuple[int, ...] = ()) -> tuple[list[nn.Module], list[list[dict[str, float]]]]:
    """Train one model per fold (training rows ``train[f]`` of x [N, C, S, S] / y [N], seed ``seeds[f]``)
    as ``train_fold`` would; returns the models after the last epoch and their per-epoch histories."""
    models = _initial_models(seeds, model_config=model_config, num_classes=num_classes, in_chans=int(x.shape[1]),
                             device=device)
    params, buffers = stack_module_state(models)
    base = _explicit_attention(copy.deepcopy(models[0]).to("meta"))
    omega = model_config.omega

    def forward(p, b, xb):
        return functional_call(base, (p, b), (xb,), {"with_regions": True}) if omega > 0 else \
            (functional_call(base, (p, b), (xb,)), xb.new_zeros(()))

    ones = torch.ones(num_classes)
    weights = torch.stack([class_weights(y[t], num_classes) if config.class_weight == "balanced" else ones
                           for t in train]).to(device)
    ce_fn = vmap(lambda lo, yy, v, w: masked_cross_entropy(lo, yy, v, w, config.label_smoothing))
    sc_fn = vmap(lambda r, yy, v: masked_sc_loss(r, yy, v, tau=model_config.tau, form=model_config.sc_form,
                                                  own_mirror=model_config.sc_own_mirror))
    step_fn = vmap(forward, randomness="error")
    optimizer = StackedAdam(list(params.values()), folds=len(seeds), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    histories: list[list[dict[str, float]]] = [[] for _ in seeds]
    average = WeightAverage()
    for epoch in range(config.epochs):
        orders = [t[torch.randperm(len(t), generator=g)] for t, g in zip(train, generators)]
        sums = torch.zeros(len(seeds), 4, dtype=torch.float64)   # loss, ce, sc, correct (per fold)
        for start in range(0, max(len(o) for o in orders), config.batch_size):
            parts = [o[start:start + config.batch_size] for o in orders]
            xb, yb, valid = (t.to(device) for t in _batch(x, y, parts, generators, config, negate))
            logits, regions = step_fn(params, buffers, xb)
            ce = ce_fn(logits, yb, valid, weights)
            sc = sc_fn(regions, yb, valid) if omega > 0 else torch.zeros_like(ce)
            loss = ce + omega * sc
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step(valid.any(1))   # a fold with fewer batches (no valid row) sits out
            n = valid.sum(1).double().cpu()
            correct = ((logits.argmax(2) == yb) & valid).sum(1).double().cpu()
            sums += torch.stack([loss.detach().double().cpu() * n, ce.detach().double().cpu() * n,
                                 sc.detach().double().cpu() * n, correct], dim=1)
        _append_histories(histories, sums, train, epoch=epoch, lr=optimizer.param_groups[0]["lr"])
        scheduler.step()
        if averages_epoch(epoch, epochs=config.epochs, swa_epochs=config.swa_epochs):
            average.update(params)   # every fold has finished the epoch: the same epochs as train_fold
    final = average.mean() if average.count else params
    for f, model in enumerate(models):
        model.load_state_dict({**{k: v[f].detach() for k, v in final.items()},
                               **{k: v[f] for k, v in buffers.items()}})
    return models, histories


def run_folds_stacked(data: Mapping[str, Any], runs: Sequence[Any], *, out: Path, model_config: SCViTConfig,
                      config: LosoConfig, num_classes: int, device: torch.device, negate: tuple[int, ...],
                      progress: bool = False) -> Iterator[tuple[Any, dict[str, Any]]]:
    """LOSO runs (``selfme.scvit.loso.FoldRun``) in stacks of up to ``config.stack_folds`` folds; yields
    (run, record) as ``loso.run_fold`` returns it, stack by stack."""
    from selfme.scvit.folds import run_seed
    from selfme.scvit.loso import check_fold, finish_fold
    from selfme.scvit.train import deterministic

    if config.live:
        raise ValueError("loso.live (dvclive curves per fold) needs loso.stack_folds: 1")
    for run in runs:
        check_fold(data, run)
    x, y = data["x"], data["y"]
    for i in range(0, len(runs), config.stack_folds):
        stack = runs[i:i + config.stack_folds]
        k = config.ensemble  # every run's members train side by side in the stack
        start = time.perf_counter()
        with deterministic():
            models, histories = train_folds_stacked(
                x, y, [torch.as_tensor(r.fold.train) for r in stack for _ in range(k)],
                [run_seed(member_seed(r.seed, m, k), r.fold) for r in stack for m in range(k)],
                model_config=model_config, config=config, num_classes=num_classes, device=device, negate=negate)
        seconds = (time.perf_counter() - start) / len(stack)
        for j, run in enumerate(stack):
            model, history = ensemble_of(list(zip(models[j * k:(j + 1) * k], histories[j * k:(j + 1) * k])))
            yield run, finish_fold(data, run, model, history, out=out, config=config, num_classes=num_classes,
                                   device=device, negate=negate, seconds=seconds)
