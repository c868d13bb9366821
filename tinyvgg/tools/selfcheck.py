"""``tinyvgg check``: prove on this machine that every op's backward is right.

Runs :func:`tinyvgg.gradcheck` (float64) on every op at small odd and even
sizes, shows that a deliberately wrong backward is caught, then trains a
small VGG-style network for a few steps and gradient-checks it end to end.
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from .. import functional as F
from .. import nn
from .gradcheck import GradcheckError, gradcheck, kink_free, tie_free
from ..ops.activation import ReLU
from ..random import manual_seed
from ..tensor import tensor


def op_cases(seed: int = 0, device: str = "cpu"):
    """(name, fn, inputs) for a float64 gradient check of each op, with inputs on ``device``.

    The values do not depend on the device, so the same cases compare devices."""
    rng = np.random.default_rng(seed)

    def randn(*shape):
        return rng.standard_normal(shape)

    def _t(array):
        return tensor(array, requires_grad=True, device=device)

    def on_device(*arrays):
        return tuple(backend.move(a, device) for a in arrays)

    labels, = on_device(np.array([0, 2, 1, 2]))
    bn_stats = on_device(np.zeros(3), np.ones(3))
    eval_stats = on_device(randn(3), rng.uniform(0.5, 2.0, 3))
    return [
        ("conv3x3", F.conv3x3, [_t(randn(2, 3, 5, 4)), _t(randn(4, 3, 3, 3)), _t(randn(4))]),
        ("conv3x3_relu", F.conv3x3_relu,
         [_t(randn(2, 3, 5, 4)), _t(randn(4, 3, 3, 3)), _t(randn(4))]),
        ("conv1x1", F.conv1x1, [_t(randn(2, 3, 5, 4)), _t(randn(4, 3, 1, 1)), _t(randn(4))]),
        ("maxpool2x2", F.maxpool2x2, [_t(tie_free((2, 3, 5, 6), seed=seed))]),
        ("relu", F.relu, [_t(kink_free((2, 3, 5, 4), seed=seed))]),
        # its own generator, so the cases after it keep their values; [-3, 3] reaches
        # well into the flat tails where the slope 1 - y^2 is small
        ("tanh", F.tanh, [_t(np.random.default_rng(seed).uniform(-3, 3, (2, 3, 5, 4)))]),
        ("linear", F.linear, [_t(randn(4, 7)), _t(randn(5, 7)), _t(randn(5))]),
        ("flatten", F.flatten, [_t(randn(2, 3, 2, 3))]),
        ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
         [_t(randn(2, 2, 7, 5))]),
        ("batch_norm2d (train)",
         lambda x, w, b: F.batch_norm2d(x, *bn_stats, w, b, training=True),
         [_t(randn(3, 3, 4, 3)), _t(randn(3)), _t(randn(3))]),
        ("batch_norm2d (eval)",
         lambda x, w, b: F.batch_norm2d(x, *eval_stats, w, b, training=False),
         [_t(randn(3, 3, 4, 3)), _t(randn(3)), _t(randn(3))]),
        ("local_response_norm",
         lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=2.0),
         [_t(randn(2, 5, 3, 4))]),
        ("local_response_norm(4)",
         lambda x: F.local_response_norm(x, 4, alpha=0.5, beta=0.75, k=2.0),
         [_t(randn(2, 5, 3, 4))]),
        ("dropout", lambda x: F.dropout(x, p=0.5, seed=1234), [_t(randn(4, 25))]),
        ("cross_entropy", lambda z: F.cross_entropy(z, labels), [_t(3 * randn(4, 3))]),
        ("cross_entropy_smoothed", lambda z: F.cross_entropy(z, labels, label_smoothing=0.2),
         [_t(3 * randn(4, 3))]),
    ]


class _WrongReLU(ReLU):
    """A deliberately wrong backward (lets negative inputs through) for the negative control."""

    @staticmethod
    def backward(ctx, g):
        return (g * (ctx.y >= 0) + 0.1 * g,)


def small_vgg(num_classes=10, width=8, batch_norm=False, dtype=np.float64):
    """A VGG-style stack for 16x16 inputs: [w, w, M, 2w, M] convs, then a 2-layer head."""
    layers, c_in = [], 3
    for v in (width, width, "M", 2 * width, "M"):
        if v == "M":
            layers.append(nn.MaxPool2x2())
            continue
        layers.append(nn.Conv3x3(c_in, v, dtype=dtype))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v, dtype=dtype))
        layers.append(nn.ReLU())
        c_in = v
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(c_in * 4, 32, dtype=dtype),
               nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, num_classes, dtype=dtype)]
    model = nn.Sequential(*layers)
    for layer in model:  # VGG's scheme: He (fan_out) for convs, zero biases
        if isinstance(layer, nn.Conv3x3):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")
            nn.init.zeros_(layer.bias)
    return model


def run(out=print, device: str = "cpu") -> bool:
    backend.check_device(device)
    ok = True
    out(f"Gradient checks on {device}, float64 (central differences vs backward):")
    for name, fn, inputs in op_cases(device=device):
        start = time.perf_counter()
        try:
            gradcheck(fn, inputs)
            verdict = "ok"
        except GradcheckError as error:
            verdict, ok = f"FAILED: {error}", False
        out(f"  {name:<22} {sum(t.size for t in inputs):>5} inputs  "
            f"{1e3 * (time.perf_counter() - start):7.1f} ms  {verdict}")

    x = tensor(kink_free((2, 3, 4, 4), seed=3), requires_grad=True, device=device)
    try:
        gradcheck(_WrongReLU.apply, [x])
        out("  negative control: a wrong ReLU backward was NOT caught")
        ok = False
    except GradcheckError as error:
        out(f"  negative control: wrong ReLU backward caught as expected\n    ({error})")

    out(f"\nA small VGG-style network on 16x16 inputs (float64, {device}):")
    manual_seed(0)
    rng = np.random.default_rng(0)
    images = tensor(rng.standard_normal((8, 3, 16, 16)), device=device)
    labels = rng.integers(0, 10, size=8)
    for batch_norm in (False, True):
        model = small_vgg(batch_norm=batch_norm).to(device)
        params = dict(model.named_parameters())
        model.eval()  # no dropout noise for the check; batch norm uses running stats
        gradcheck(lambda **_: F.cross_entropy(model(images), labels), params,
                  mode="directional")
        model.train()
        losses = []
        for _ in range(40):
            loss = F.cross_entropy(model(images), labels)
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data -= 0.1 * p.grad
            losses.append(loss.item())
        n_params = sum(p.size for p in model.parameters())
        out(f"  {'with' if batch_norm else 'without'} batch norm: {n_params} parameters, "
            f"gradcheck ok; 40 SGD steps (lr 0.1) fitting one batch of 8, loss at steps "
            f"1/10/20/30/40: " + " -> ".join(f"{losses[i]:.3f}" for i in (0, 9, 19, 29, 39)))
        if not np.mean(losses[-5:]) < 0.9 * losses[0]:
            out("  the loss did not decrease")
            ok = False
    out("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return ok
