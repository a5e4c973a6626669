"""Fast LOSO settings of one fold's training (params.yaml ``loso``; all off by default).

Execution only (the same numbers, bit for bit; they do not key a fold's results):

* ``resident``: the fold's training inputs are moved to the device once, and every epoch's batch order
  once per epoch, so a step indexes device memory instead of copying a batch from the host.

Numerics (equal up to float rounding; a non-default value keys the results, a default one is left out
of the key so that finished folds stay valid):

* ``sync: epoch``: no host synchronisation inside an epoch. The per-epoch sums of the loss, CE, SC and
  correct predictions stay on the device (float64, the same sums in the same order as the per-step
  ``float()`` reads, so the history is unchanged) and are read once per epoch; the SC loss takes its mean
  over Eq. 14's terms by masks instead of selecting them (the selection is a host synchronisation on CUDA).
* ``amp: bf16``: forward and loss under ``torch.autocast`` in bfloat16 (weights, gradients and Adam stay
  float32; no loss scaling needed for bfloat16).
* ``channels_last``: model and batches in channels-last memory format (the patch projection E and CNN
  peers' convolutions; cuDNN's fast layout for bf16).
* ``compile``: the training forward through ``torch.compile`` (prediction stays eager).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

SYNC_MODES = ("step", "epoch")
#: Fast settings that change numerics: in a fold's key when they differ from these defaults.
NUMERIC_DEFAULTS: dict[str, Any] = {"amp": "none", "channels_last": False, "compile": False, "sync": "step"}


def training_forward(model: torch.nn.Module, *, channels_last: bool, compile: bool) -> Callable[..., Any]:
    """The callable a training step runs (the model itself, in the memory format asked for)."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model


class EpochSums:
    """Sample-weighted sums of one epoch's loss, CE and SC, and the count of correct predictions.

    ``lazy``: kept on the device in float64 and read once (``read``); otherwise read every step as
    Python floats (the plain path). Both add the same float64 values in the same order."""

    NAMES = ("loss", "ce", "sc", "correct")

    def __init__(self, device: torch.device, *, lazy: bool) -> None:
        self.lazy = lazy
        self.sums: Any = torch.zeros(4, dtype=torch.float64, device=device) if lazy else dict.fromkeys(self.NAMES, 0.0)

    def add(self, loss: torch.Tensor, ce: torch.Tensor, sc: torch.Tensor, logits: torch.Tensor,
            labels: torch.Tensor) -> None:
        n = int(labels.shape[0])
        correct = (logits.argmax(1) == labels).sum()
        if self.lazy:
            self.sums += torch.stack([loss.detach().double() * n, ce.detach().double() * n,
                                      sc.detach().double() * n, correct.double()])
            return
        for name, value in zip(self.NAMES, (loss, ce, sc)):
            self.sums[name] += float(value.detach()) * n
        self.sums["correct"] += float(correct)

    def read(self, n_samples: int) -> dict[str, float]:
        """loss, ce, sc per sample and train_acc (the history's fields, in its order)."""
        values = dict(zip(self.NAMES, self.sums.tolist())) if self.lazy else self.sums
        return {"loss": values["loss"] / n_samples, "ce": values["ce"] / n_samples, "sc": values["sc"] / n_samples,
                "train_acc": values["correct"] / n_samples}
