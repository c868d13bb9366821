"""Experiment ``profile``: where one training step spends its time, per op and per layer.

One step of a VGG-11-BN at width 0.25 on 32x32 images, batch 32 (forward,
cross-entropy, backward; the weight update is left out), run under
:class:`tinyvgg.profiler.profile`. It prints the time per op (conv3x3,
batch_norm2d, ...) and per layer (features.0, features.1, ...), forward and
backward, and draws one stacked bar per layer.

What it teaches: the convolutions take most of the time, and their backward
more than their forward (two products, dx and dw, against one): on a few CPU
cores, most of the step and about twice the forward. Batch norm, ReLU and
pooling touch each value a few times, a convolution multiplies each value 9 x
C_out times; yet where the products run fast (sixteen cores, or a GPU, where
these small layers take a few microseconds each) the cheap ops' fixed costs
show, and the convolutions' share falls to about half. A step is timed after
one warm-up step, since the first call of each shape pays for allocating its
buffers. On a GPU the profiler waits for the device around every op, so the
total is slower than an unprofiled step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import functional as F
from ..io.plotting import pyplot, save_png
from ..tools.profiler import profile
from . import seeded_vgg_batch

CONFIG, WIDTH, CLASSES, BATCH, SIZE = "vgg11_bn", 0.25, 10, 32, 32


def training_step(model, x, labels):
    """Forward, cross-entropy and backward: the part of a step the profile times."""
    model.zero_grad()
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    return loss


def _figure(layers, path, title):
    plt = pyplot("experiment profile")
    names = [g["name"] for g in layers]
    forward = np.array([g["forward_ms"] for g in layers])
    backward = np.array([g["backward_ms"] for g in layers])
    positions = np.arange(len(layers))
    figure, axes = plt.subplots(figsize=(8.0, 0.22 * len(layers) + 1.5))
    axes.barh(positions, forward, color="#4f81bd", label="forward")
    axes.barh(positions, backward, left=forward, color="#c0504d", label="backward")
    axes.set_yticks(positions)
    axes.set_yticklabels(names, fontsize=7)
    axes.invert_yaxis()  # the first layer on top, as in the table
    axes.set_xlabel("ms")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right")
    figure.tight_layout()
    return save_png(figure, path)


def run(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    """Profile one training step of a VGG-11-BN (width 0.25, 32x32, batch 32)."""
    out = Path(out)
    model, x, labels = seeded_vgg_batch(CONFIG, WIDTH, CLASSES, BATCH, SIZE, seed, device)

    training_step(model, x, labels)  # warm-up: first-call allocations are not the lesson
    with profile(model) as prof:
        loss = training_step(model, x, labels)

    by_op, by_layer = prof.grouped("op"), prof.grouped("layer")
    title = f"{model.name} width {WIDTH}, {SIZE}x{SIZE}, batch {BATCH}, {device}"
    log(f"one training step (forward, cross-entropy, backward) of {title}")
    log("")
    log("per op:")
    for line in prof.table(by="op").splitlines():
        log(line)
    log("")
    log("per layer:")
    for line in prof.table(by="layer").splitlines():
        log(line)
    conv = next((g for g in by_op if g["name"] == "conv3x3"), None)
    if conv is not None:
        log("")
        log(f"conv3x3: {100 * conv['share']:.0f}% of the step; its backward takes "
            f"{conv['backward_ms'] / max(conv['forward_ms'], 1e-9):.1f}x its forward "
            "(dx and dw: two products against one).")
    if device == "cuda":
        log("(the profiler synchronises the GPU around every op: real times, slower step)")

    figure = _figure(by_layer, out / "profile.png", f"time per layer: {title}")
    return dict(model=model.name, width=WIDTH, batch=BATCH, size=SIZE, device=device,
                loss=float(loss.item()), forward_ms=prof.forward_ms,
                backward_ms=prof.backward_ms, by_op=by_op, by_layer=by_layer,
                figures=[str(figure)])
