"""Training one LOSO fold with a fixed schedule and predicting its held-out subject.

Paper schedule (Sec. 4.3): Adam lr 1e-4, batch 32, ExponentialLR 0.9 per epoch, 60 epochs; the model
after the LAST epoch predicts the test subject. Nothing here ever sees the test subject while training:
no early stopping, no epoch or model selection, no statistics of its data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch

from selfme.config import Section, check_rules
from selfme.datasets.protocol import LOSO_PROTOCOLS
from selfme.scvit.factory import SCViTConfig, create_scvit
from selfme.scvit.augment import augment
from selfme.device import AMP_MODES, autocast
from selfme.scvit.fast import NUMERIC_DEFAULTS, SYNC_MODES, EpochSums, training_forward
from selfme.scvit.losses import SCViTLoss
from selfme.scvit.model import SCViT
from selfme.scvit.swa import WeightAverage, averages_epoch

log = logging.getLogger(__name__)

CLASS_WEIGHTS = ("none", "balanced")
PROTOCOLS = LOSO_PROTOCOLS  # loso.protocol's choices
LR_SCHEDULES = ("exponential", "cosine")


@dataclass(frozen=True, kw_only=True)
class LosoConfig(Section):
    """The fold schedule (params.yaml section ``loso``).

    epochs, batch_size, lr, gamma_lr (ExponentialLR factor per epoch), weight_decay: Adam schedule.
    lr_schedule: ``exponential`` (lr * gamma_lr^epoch, the paper's) or ``cosine`` (after warmup_epochs of
        linear warmup, lr * (1 + cos(pi * t)) / 2 over the rest, t from 0 to (n - 1) / n; gamma_lr unused;
        warmup_epochs > 0 is refused under ``exponential``).
    hflip: probability of mirroring a training sample (the horizontal motion changes sign); 0 is off.
    shift_px: random translation of a training sample by up to this many pixels (``selfme.scvit.augment``).
    tta_hflip: predict each test sample as the mean softmax of it and its mirror (left and right swapped,
        the horizontal motion negated: the flip that ``hflip`` trains on); a departure, off by default.
    label_smoothing: of the cross-entropy (0: none).
    swa_epochs: predict with the mean of the weights after each of the last N epochs (``selfme.scvit.swa``;
        0 or 1: the last epoch's weights).
    class_weight: ``none`` or ``balanced`` (inverse class frequency of the training subjects only).
    seeds: every fold runs once per seed, with its own seed derived from that seed and its
        (dataset, subject); the list does not key a fold's result, each run keys its own seed.
    protocol: ``per_dataset`` (a fold trains on the other subjects of its own dataset) or
        ``composite`` (MEGC2019: every dataset of the run pooled, one fold per (dataset, subject)).
    Execution only (they do not change what a fold computes, so they do not key its results):
    workers (parallel fold processes), device (auto | cpu | cuda | cuda:N), live (dvclive training
    curves per fold). threads (torch threads per worker, 1 by default; 0: cores / workers) is left
    out of ``result_key`` too, but the count a run trains with keys it (``selfme.scvit.folds.fold_key``:
    float sums follow the threads).
    ensemble: models trained per run (1: one), each as the single run of its own base seed
        (``member_seed``: seed * K + k), predicting the mean of their softmax (a seed ensemble,
        ``selfme.scvit.model.SoftmaxEnsemble``). K members cost K trainings.
    stack_folds: train up to this many folds at once as one stacked model (``selfme.scvit.stacked``;
        1: one at a time). The same computation in exact arithmetic, but float rounding differs and
        grows over a long schedule as a different seed would, so it keys the results.
    Fast settings (``selfme.scvit.fast``; all off by default): resident (inputs on the device once per
    fold; execution only), sync (step | epoch: no host synchronisation inside an epoch), amp (none |
    bf16 autocast), channels_last, compile (torch.compile); the last four key the results when set.
    """

    SECTION = "loso"

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-4
    gamma_lr: float = 0.9
    lr_schedule: Literal[LR_SCHEDULES] = "exponential"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    hflip: float = 0.0
    shift_px: int = 0
    tta_hflip: bool = False
    label_smoothing: float = 0.0
    swa_epochs: int = 0
    class_weight: Literal[CLASS_WEIGHTS] = "none"
    seeds: tuple[int, ...] = (0,)
    protocol: Literal[PROTOCOLS] = "per_dataset"
    workers: int = 1
    device: str = "auto"
    threads: int = 1
    live: bool = False
    stack_folds: int = 1
    ensemble: int = 1
    resident: bool = False
    sync: Literal[SYNC_MODES] = "step"
    amp: Literal[AMP_MODES] = "none"
    channels_last: bool = False
    compile: bool = False

    EXECUTION_KEYS = ("workers", "device", "threads", "live", "resident")
    #: settings left out of a fold's key at these values (added after results were keyed without them)
    UNKEYED_DEFAULTS = {**NUMERIC_DEFAULTS, "ensemble": 1, "tta_hflip": False, "lr_schedule": "exponential",
                        "warmup_epochs": 0, "swa_epochs": 0}

    def __post_init__(self) -> None:
        check_rules([(self.epochs >= 1, f"loso.epochs must be >= 1, got {self.epochs}"),
                     (self.batch_size >= 1, f"loso.batch_size must be >= 1, got {self.batch_size}"),
                     (self.lr > 0, f"loso.lr must be > 0, got {self.lr}"),
                     (0 < self.gamma_lr <= 1, f"loso.gamma_lr must be in (0, 1], got {self.gamma_lr}"),
                     (0 <= self.warmup_epochs < self.epochs,
                      f"loso.warmup_epochs must be in [0, loso.epochs), got {self.warmup_epochs}"),
                     (self.warmup_epochs == 0 or self.lr_schedule == "cosine",
                      f"loso.warmup_epochs ({self.warmup_epochs}) needs loso.lr_schedule: cosine"),
                     (0 <= self.swa_epochs <= self.epochs,
                      f"loso.swa_epochs must be in [0, loso.epochs], got {self.swa_epochs}"),
                     (0 <= self.hflip <= 1, f"loso.hflip is a probability, got {self.hflip}"),
                     (self.shift_px >= 0, f"loso.shift_px must be >= 0, got {self.shift_px}"),
                     (0 <= self.label_smoothing < 1,
                      f"loso.label_smoothing must be in [0, 1), got {self.label_smoothing}"),
                     (self.workers >= 1, f"loso.workers must be >= 1, got {self.workers}"),
                     (self.stack_folds >= 1, f"loso.stack_folds must be >= 1, got {self.stack_folds}"),
                     (self.threads >= 0, f"loso.threads must be >= 0, got {self.threads}")])
        if self.ensemble < 1:
            raise ValueError(f"loso.ensemble is the number of models per run (>= 1), got {self.ensemble}")
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ValueError(f"loso.seeds is a non-empty list of seeds, e.g. [0, 1, 2], got {self.seeds!r}")
        seeds = tuple(int(s) for s in self.seeds)
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"loso.seeds must be distinct non-negative integers, got {list(self.seeds)}")
        object.__setattr__(self, "seeds", seeds)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_key(self) -> dict[str, Any]:
        """The settings that change a fold's predictions (``seeds`` aside: each run keys its own seed; the
        ``UNKEYED_DEFAULTS`` settings only where they are not their defaults, so the plain path keeps its keys)."""
        return {k: v for k, v in self.as_dict().items() if k not in self.EXECUTION_KEYS and k != "seeds"
                and not (k in self.UNKEYED_DEFAULTS and v == self.UNKEYED_DEFAULTS[k])}


def cosine_factor(epoch: int, config: LosoConfig) -> float:
    """``loso.lr_schedule: cosine``'s learning rate of 0-based ``epoch`` over ``loso.lr`` (see ``LosoConfig``)."""
    warmup = config.warmup_epochs
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (config.epochs - warmup)))


def lr_scheduler(optimizer: torch.optim.Optimizer, config: LosoConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch schedule of ``loso.lr_schedule`` (stepped once after every epoch)."""
    if config.lr_schedule == "exponential":  # torch's own, so the paper's schedule keeps its rounding
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: cosine_factor(epoch, config))


def member_seed(seed: int, member: int, ensemble: int) -> int:
    """The base seed of member ``member`` of a run with base seed ``seed`` in a ``loso.ensemble`` of
    ``ensemble``: seed * ensemble + member, so the ensemble of seeds [0] is the three single runs of
    seeds [0, 1, 2] averaged, seeds [0, 1, 2] give disjoint member sets, and an ensemble of 1 is seed."""
    return int(seed) * int(ensemble) + int(member)


def fold_seed(seed: int, subject: str) -> int:
    """A fold's seed: independent of which other folds run, in which order or in which worker."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(subject).encode())) % (2 ** 31)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels where torch has them (warnings, not errors, where it has none)."""
    enabled, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn)
        torch.backends.cudnn.benchmark = benchmark


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def train_fold(x: torch.Tensor, y: torch.Tensor, *, model_config: SCViTConfig, config: LosoConfig,
               num_classes: int, seed: int, device: torch.device, negate: tuple[int, ...] = (),
               live_dir: str | Path | None = None, progress: bool = False) -> tuple[SCViT, list[dict[str, float]]]:
    """Train SCViT on the training subjects' inputs x [N, C, S, S] and labels y [N] for the fixed
    schedule; returns the model after the last epoch and the per-epoch training losses."""
    from tqdm.auto import trange

    torch.manual_seed(seed)  # initialisation and dropout
    model, _ = create_scvit(model_config, num_classes=num_classes, in_chans=int(x.shape[1]))
    model.to(device)
    weight = class_weights(y, num_classes).to(device) if config.class_weight == "balanced" else None
    criterion = SCViTLoss(omega=model_config.omega, tau=model_config.tau, own_mirror=model_config.sc_own_mirror,
                          form=model_config.sc_form, label_smoothing=config.label_smoothing,
                          class_weight=weight).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config)
    generator = torch.Generator().manual_seed(seed)  # batch order and flips
    forward = training_forward(model, channels_last=config.channels_last, compile=config.compile)
    if config.resident:
        x, y = x.to(device), y.to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    live = _open_live(live_dir)
    history, average = [], WeightAverage()
    for epoch in trange(config.epochs, desc="epochs", leave=False, disable=not progress):
        model.train()
        sums = EpochSums(device, lazy=config.sync == "epoch")
        order = torch.randperm(len(y), generator=generator).to(x.device)
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            xb, yb = x[idx], y[idx]
            if config.hflip > 0 or config.shift_px > 0:
                xb = augment(xb, generator=generator, hflip=config.hflip, shift_px=config.shift_px, negate=negate)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with autocast(config.amp, device):
                if criterion.needs_regions:
                    logits, regions = forward(xb.contiguous(memory_format=memory_format), with_regions=True)
                else:
                    logits, regions = forward(xb.contiguous(memory_format=memory_format)), None
                loss, ce, sc = criterion.terms(logits, yb, regions, masked=config.sync == "epoch")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums.add(loss, ce, sc, logits, yb)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **sums.read(len(y))}
        history.append(record)
        scheduler.step()
        if averages_epoch(epoch, epochs=config.epochs, swa_epochs=config.swa_epochs):
            average.update(dict(model.named_parameters()))
        if live is not None:
            for name in ("loss", "ce", "sc", "train_acc", "lr"):
                live.log_metric(f"train/{name}", record[name])
            live.next_step()
    if live is not None:
        live.end()
    if average.count:
        model.load_state_dict(average.mean(), strict=False)  # parameters averaged; buffers as they are
    return model, history


def _open_live(live_dir: str | Path | None):
    if live_dir is None:
        return None
    from dvclive import Live

    return Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)


@torch.no_grad()
def predict(model: SCViT, x: torch.Tensor, *, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] (softmax of the logits) in evaluation mode."""
    model.eval()
    probs = [torch.softmax(model(x[i:i + batch_size].to(device)).float(), dim=1).cpu()
             for i in range(0, len(x), batch_size)]
    return torch.cat(probs).numpy().astype(np.float64)
