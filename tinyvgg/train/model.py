"""The network a run trains, and the check that its state (weights, batch-norm
statistics, SGD velocities) is finite, made before a checkpoint is written or used."""
from __future__ import annotations

import numpy as np

from ..io.checkpoint import CheckpointError
from ..models import vgg
from .config import TrainConfig


def build_model(config: TrainConfig, num_classes: int, in_channels: int):
    return vgg(config.model, num_classes=num_classes, batch_norm=config.batch_norm,
               dropout=config.dropout, width=config.width, head=config.head,
               in_channels=in_channels, dtype=np.dtype(config.dtype))


def non_finite_state(model_state, optimizer_state) -> str:
    """The names of the floating-point arrays of a model's and an optimiser's state that
    hold a NaN or an infinity ("features.5.running_var, ... and 4 more"), or ""."""
    def bad(arrays):
        return [key for key, value in arrays.items()
                if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all()]
    names = bad(model_state) + [f"optimizer/{key}" for key in bad(optimizer_state)]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def require_finite(path, checkpoint) -> None:
    """Refuse a checkpoint whose weights, batch-norm statistics or SGD velocities are not
    all finite (written by a run that diverged before they were checked)."""
    bad = non_finite_state(checkpoint.model, checkpoint.optimizer)
    if bad:
        raise CheckpointError(f"checkpoint {path}: {bad} hold NaN or infinite values (the "
                              f"run that wrote it had diverged); it cannot be used")
