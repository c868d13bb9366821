"""The network a run trains, its batch-norm recalibration, and the check that its state
(weights, batch-norm statistics, SGD velocities, weight average) is finite, made before
a checkpoint is written or used."""
from __future__ import annotations

import numpy as np

from .. import nn
from ..io.checkpoint import CheckpointError
from ..models import vgg
from ..tensor import no_grad, tensor
from .config import TrainConfig


def build_model(config: TrainConfig, num_classes: int, in_channels: int):
    return vgg(config.model, num_classes=num_classes, batch_norm=config.batch_norm,
               dropout=config.dropout, width=config.width, head=config.head,
               in_channels=in_channels, dtype=np.dtype(config.dtype))


def recalibrate_batch_norm(model, batches, device: str = "cpu") -> int:
    """Replace every batch-norm layer's running statistics by their plain average over
    ``batches`` ((images, labels) pairs), as PyTorch's ``swa_utils.update_bn`` does; the
    number of batches used is returned, and the model's mode and momenta are restored.

    During training the running statistics are an exponential average (momentum
    0.1) of the last few batches, each seen by weights that have moved since, and
    of augmented images. Averaged over a pass of the unaugmented training images
    with the final weights, they describe what the network sees at test time.
    Batch k (from 0) enters with momentum 1 / (k + 1): the running value is then
    the mean of the k + 1 batches' statistics, whatever it was before.
    """
    layers = [m for _, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if not layers:
        return 0
    momenta, was_training = [layer.momentum for layer in layers], model.training
    count = 0
    model.train()
    try:
        with no_grad():
            for images, _ in batches:
                if not len(images):
                    continue
                for layer in layers:
                    layer.momentum = 1.0 / (count + 1)
                model(tensor(images, device=device))
                count += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    return count


def non_finite_state(model_state, optimizer_state, average_state=None) -> str:
    """The names of the floating-point arrays of a model's, an optimiser's and a weight
    average's state that hold a NaN or an infinity ("features.5.running_var, ... and 4
    more"), or ""."""
    def bad(arrays):
        return [key for key, value in arrays.items()
                if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all()]
    names = bad(model_state) + [f"optimizer/{key}" for key in bad(optimizer_state)] + [
        f"average/{key}" for key in bad(average_state or {})]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def require_finite(path, checkpoint) -> None:
    """Refuse a checkpoint whose weights, batch-norm statistics, SGD velocities or weight
    average are not all finite (written by a run that diverged before they were checked)."""
    bad = non_finite_state(checkpoint.model, checkpoint.optimizer, checkpoint.average)
    if bad:
        raise CheckpointError(f"checkpoint {path}: {bad} hold NaN or infinite values (the "
                              f"run that wrote it had diverged); it cannot be used")
