"""The training loop shared by the pretrain and finetune stages.

CUDA with bf16 autocast when present, CPU otherwise; Adam (betas 0.5, 0.999) with MultiStepLR; one
resumable checkpoint per run folder ``<checkpoint_root>/<params hash>/last.pt`` (networks, optimizer,
scheduler, epoch, the python / numpy / torch RNG states and the weight average, loadable with
``weights_only=True``); optionally an exponential moving average of the weights (``ema_decay``,
:mod:`selfme.motion.averaging`), which validation, samples and the saved model then use;
DistributedDataParallel under torchrun (only when WORLD_SIZE > 1); dvclive curves and sample PNGs.
"""

from __future__ import annotations

import logging
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from selfme.config import Section, check_rules
from selfme.device import resolve_device
from selfme.motion.averaging import WeightAverage
from selfme.motion.checkpoint import params_hash, read_checkpoint, rng_state, set_rng_state, write_checkpoint
from selfme.motion.evaluate import evaluate_reconstruction, sample_image
from selfme.motion.live import log_epoch, open_live
from selfme.motion.model import MotionLearner, save_motion_model

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """Optimisation settings of one stage (the stage section's keys besides :class:`StageData`'s).

    threads: torch's intra-op threads for the stage (fixed, since results depend on it; 0: torch's
    default). pairs_per_epoch: None until the stage sets it from ``repeats``. ema_decay: 0 keeps the
    last weights (the paper's); in (0, 1) the stage's model is the EMA of its weights (a departure).
    """

    epochs: int
    lr: float
    batch_size: int
    pairs_per_epoch: int | None = None
    betas: tuple[float, float] = (0.5, 0.999)
    milestones: tuple[int, ...] = ()
    lr_decay: float = 0.1
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 1
    image_every: int = 1
    amp: bool = True  # bf16 autocast, CUDA only
    threads: int = 1
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        check_rules([(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
                     (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
                     (self.pairs_per_epoch is None or self.pairs_per_epoch >= self.batch_size,
                      f"pairs_per_epoch must be >= batch_size {self.batch_size}, got {self.pairs_per_epoch}"),
                     (self.threads >= 0, f"threads must be >= 0, got {self.threads}"),
                     (0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")])


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _fixed_sample(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    epoch = getattr(dataset, "epoch", None)
    if epoch is not None:
        dataset.set_epoch(0)
    source, target = dataset[0]
    if epoch is not None:
        dataset.set_epoch(epoch)
    return source, target


TIMING_KEYS = ("seconds", "images_per_second")


def without_timing(record: dict) -> dict:
    """An epoch record without its run times (they differ between identical runs: the model file must not)."""
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive numpy / random seeds from the worker's torch seed."""
    import random

    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


@dataclass(kw_only=True)
class _Run:
    """What one training run carries from epoch to epoch (and into its checkpoints)."""

    model: MotionLearner
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    loss_rng: torch.Generator
    device: torch.device
    rank: int
    world: int
    run_hash: str
    checkpoint_dir: Path
    hash_payload: Mapping[str, Any] | None
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    average: WeightAverage | None = None

    def averaged(self) -> ContextManager[MotionLearner]:
        """The learner as the stage reports and saves it: with the weight average applied, if any."""
        return self.average.applied(self.model) if self.average is not None else nullcontext(self.model)


def _place(device: str | torch.device | None, local_rank: int) -> torch.device:
    """The run's device (``None``: auto; one GPU per process under torchrun), made current on CUDA."""
    device = resolve_device("auto" if device is None else device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)  # one GPU per process
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def resume(run: _Run, config: TrainConfig) -> None:
    """Load ``last.pt`` of the run folder when its stored hash is the run's: networks, optimizer,
    scheduler, RNG states, epoch and history."""
    state = read_checkpoint(run.checkpoint_dir, run.run_hash, map_location=run.device)
    if state is None:
        return
    run.model.load_networks_state_dict(state["networks"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    if run.average is not None:
        run.average.load_state_dict(state["ema"])
    if run.rank < len(state["loss_rng"]):
        run.loss_rng.set_state(state["loss_rng"][run.rank].cpu())
    run.start_epoch, run.history = int(state["epoch"]), list(state["history"])
    log.info("resuming %s at epoch %d of %d", run.checkpoint_dir, run.start_epoch, config.epochs)


def save_checkpoint(run: _Run, epoch: int) -> None:
    """Every rank's loss RNG state gathered; rank 0 writes the checkpoint of ``epoch`` finished epochs."""
    rngs = [run.loss_rng.get_state()]
    if run.world > 1:
        rngs = [torch.empty_like(rngs[0]) for _ in range(run.world)]
        dist.all_gather_object(rngs, run.loss_rng.get_state())
    if run.rank != 0:
        return
    write_checkpoint(run.checkpoint_dir, {
        "params_hash": run.run_hash, "epoch": epoch, "networks": run.model.networks_state_dict(),
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(), "rng": rng_state(),
        "loss_rng": rngs, "history": run.history,
        **({"ema": run.average.state_dict()} if run.average is not None else {})}, hash_payload=run.hash_payload)


def train_one_epoch(net: torch.nn.Module, loader: DataLoader, run: _Run, *, use_amp: bool,
                    desc: str, progress: bool) -> torch.Tensor:
    """One pass over ``loader``: Adam steps on the learner's loss. Returns the batch-size-weighted sums
    (float64, on the device: no host sync per step) of loss, perceptual, equivariance, reconstruction L1,
    identity L1, pixel and warp terms, and the image count."""
    from tqdm import tqdm

    device = run.device
    run.model.train()
    sums = torch.zeros(8, dtype=torch.float64, device=device)
    bar = tqdm(loader, desc=desc, disable=not progress or run.rank != 0, leave=False)
    for step, (source, target) in enumerate(bar):
        source = source.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = net(source, target, rng=run.loss_rng)
        run.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        run.optimizer.step()
        if run.average is not None:
            run.average.update(run.model)
        with torch.no_grad():
            b = source.shape[0]
            sums += torch.stack([out["loss"].float(), out["loss_perceptual"].float(),
                                 out["loss_equivariance"].float(),
                                 (out["prediction"].float() - target).abs().mean(),
                                 (source - target).abs().mean(), out["loss_pixel"].float(),
                                 out["loss_warp"].float(), torch.ones((), device=device)]).double() * b
        if step % 10 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{out['loss'].item():.4f}")
    return sums


def epoch_record(sums: torch.Tensor, *, epoch: int, lr: float, seconds: float) -> dict[str, float]:
    """The history row of an epoch: means of the summed terms, lr, images and run times."""
    s = (sums[:7] / sums[7].clamp_min(1)).tolist()
    return {"epoch": epoch + 1, "loss": s[0], "perceptual": s[1], "equivariance": s[2],
            "l1_reconstruction": s[3], "l1_identity": s[4], "pixel": s[5], "warp": s[6], "lr": lr,
            "images": float(sums[7]), "seconds": seconds, "images_per_second": float(sums[7]) / max(seconds, 1e-9)}


def _start_run(model: MotionLearner, config: TrainConfig, *, device: torch.device, rank: int, world: int,
               checkpoint_dir: str | os.PathLike, hash_payload: Mapping[str, Any] | None) -> _Run:
    """Seeds, the learner on its device, Adam and MultiStepLR, then the checkpoint of the run resumed."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    loss_rng = torch.Generator().manual_seed(config.seed * 1000 + 17 + rank)
    model.to(device)
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # shares the Parameter objects
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.lr, betas=config.betas)
    run = _Run(model=model, optimizer=optimizer, loss_rng=loss_rng, device=device, rank=rank, world=world,
               scheduler=torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones),
                                                              gamma=config.lr_decay),
               run_hash=params_hash(hash_payload or {}), checkpoint_dir=Path(checkpoint_dir),
               hash_payload=hash_payload,
               average=WeightAverage(model, decay=config.ema_decay) if config.ema_decay else None)
    resume(run, config)
    return run


def _epoch_loader(dataset: Dataset, config: TrainConfig, run: _Run, epoch: int) -> DataLoader:
    """This rank's share of the epoch: indices rank, rank + world, ... in order, the tail dropped so every
    rank gets as many (the dataset itself permutes per epoch; one process: 0, 1, 2, ...)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = DistributedSampler(dataset, num_replicas=run.world, rank=run.rank, shuffle=False, drop_last=True)
    return DataLoader(dataset, batch_size=config.batch_size // run.world, sampler=sampler,
                      num_workers=config.num_workers, worker_init_fn=seed_worker, drop_last=True,
                      generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
                      pin_memory=run.device.type == "cuda")


def train_motion(model: MotionLearner, dataset: Dataset, *, config: TrainConfig, out_path: str | os.PathLike,
                 checkpoint_dir: str | os.PathLike, live_dir: str | os.PathLike | None = None,
                 val_dataset: Dataset | None = None, hash_payload: Mapping[str, Any] | None = None,
                 meta: Mapping[str, Any] | None = None, device: str | torch.device | None = None,
                 progress: bool = True) -> list[dict[str, float]]:
    """Train for ``config.epochs`` epochs (resuming ``checkpoint_dir/last.pt`` if it exists), write the
    final model atomically to ``out_path`` and return the per-epoch history (rank 0's view).

    ``checkpoint_dir`` must already be specific to the run's parameters (see :func:`params_hash`); its
    checkpoint is resumed only when its stored hash equals the folder's hash payload's.
    """
    rank, world, local_rank = _distributed()
    device = _place(device, local_rank)
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world} processes")
    run = _start_run(model, config, device=device, rank=rank, world=world, checkpoint_dir=checkpoint_dir,
                     hash_payload=hash_payload)
    model = run.model
    net = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    live = open_live(live_dir, rank=rank, start_epoch=run.start_epoch,
                     params={"params_hash": run.run_hash, "world_size": world, "device": str(device)})
    sample = _fixed_sample(val_dataset if val_dataset is not None else dataset)
    for epoch in range(run.start_epoch, config.epochs):
        loader = _epoch_loader(dataset, config, run, epoch)
        tic = time.perf_counter()
        sums = train_one_epoch(net, loader, run, use_amp=config.amp and device.type == "cuda",
                               desc=f"epoch {epoch + 1}/{config.epochs}", progress=progress)
        if world > 1:
            dist.all_reduce(sums)
        record = epoch_record(sums, epoch=epoch, lr=run.optimizer.param_groups[0]["lr"],
                              seconds=time.perf_counter() - tic)
        run.scheduler.step()
        with run.averaged() as reported:
            if val_dataset is not None and rank == 0:
                val = evaluate_reconstruction(reported, val_dataset, device=device, batch_size=loader.batch_size)
                record.update({f"val_{k}": v for k, v in val.items() if k != "n"})
            run.history.append(record)
            log.info("epoch %d/%d: %s", epoch + 1, config.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
            log_epoch(live, record, epochs=config.epochs, image_every=config.image_every,
                      sample=lambda: sample_image(reported, *sample, device=device))
        if epoch + 1 == config.epochs or (config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0):
            save_checkpoint(run, epoch + 1)
    if live is not None:
        live.end()
    if rank == 0:
        with run.averaged() as reported:
            save_motion_model(out_path, reported, meta={**dict(meta or {}), "params_hash": run.run_hash,
                                                        "epochs": config.epochs,
                                                        "history": [without_timing(r) for r in run.history]})
    if world > 1:
        dist.barrier()
    return run.history
