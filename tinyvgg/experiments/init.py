"""``tinyvgg experiment init`` and ``init-vgg``: why the scale of the first weights matters.

A layer computes h = a W^T, a sum of fan_in products. With weights of
variance s^2 and inputs of mean square m, Var(h) = fan_in * s^2 * m: each
layer multiplies the signal's variance by a factor, and ten layers multiply
it by the factor to the tenth power.

1. ``init``, the lecture's experiment: 1000 unit-Gaussian inputs of
   dimension 500 through 10 fully connected layers of 500 units (no biases,
   float64). The four cases share the same unit-Gaussian matrices and differ
   only in the scale they are multiplied by:

   * tanh, W = 0.01 * randn: the factor on the std is sqrt(500) * 0.01 = 0.224,
     and tanh is the identity near 0, so the stds fall geometrically:
     0.21, 0.047, 0.011, ... 3e-7 at layer 10. Every unit outputs ~0.
   * tanh, Xavier, W = randn / sqrt(fan_in): the factor is 1, but tanh
     flattens what it gets; for a small variance v, E[tanh(h)^2] ~ v - 2 v^2,
     so v_l ~ 1 / (2 l): the std shrinks like 1 / sqrt(2 l) (0.22 at layer 10),
     slowly instead of exponentially.
   * ReLU, He, W = randn / sqrt(fan_in / 2): ReLU keeps half of the second
     moment (E[relu(h)^2] = Var(h) / 2) and the 2 puts it back, so every
     pre-activation is N(0, 2) and every output has mean sqrt(2) * 0.399 = 0.564
     and std sqrt(2) * 0.584 = 0.826. That holds on average over draws; one
     draw of 500-wide weights changes the variance by a few percent at each
     layer, a random walk (the layer-10 std of 40 seeds spans 0.64 to 1.00).
   * ReLU, "He" as many slides print it, W = randn / sqrt(2 / fan_in): that
     multiplies by sqrt(fan_in / 2) where it should divide, s^2 = 250, and
     each layer multiplies the std by sqrt(500 * 250 / 2) = 250: 1e24 at
     layer 10. float64 keeps that finite (up to 1.8e308); in float32 (up to
     3.4e38) the variance alone, a mean of squares near 1e48, overflows.

   Backward. L = sum(a_10 * G) with a fixed unit-Gaussian G gives the top
   layer the upstream gradient G; with g_i = dL/da_i::

       dL/dh_i = g_i * f'(h_i)          f' = 1 - a_i^2 (tanh), [h_i > 0] (ReLU)
       dL/dW_i = (dL/dh_i)^T a_(i-1)
       g_(i-1) = (dL/dh_i) W_i

   so going down, g shrinks or grows by the same factor the activations did
   going up: 0.224 a layer with N(0, 0.01), 250 with the typo. And dL/dW_i
   multiplies a gradient that shrank from the top by an activation that
   shrank from the bottom: with N(0, 0.01) every layer's weight gradient is
   the same tiny ~4e-5 (against ~20 with He), and the network cannot learn.
   g_i is read with the engine's own backward by adding a zero tensor p_i
   to a_i: d(a_i + p_i)/dp_i = 1, so p_i.grad = dL/da_i.

2. ``init-vgg``, the same study on a VGG-11 (32x32 inputs, width 0.5, compact
   head, 10 classes, a batch of 32 unit-Gaussian images, float64, dropout
   off so that only the weights shape the signal):

   (a) torchvision's initialisation, He normal with fan_out, no batch norm:
       Var(w) = 2 / (9 C_out) keeps the gradients' variance; the forward
       variance moves by C_in / C_out at each conv, which does not compound,
       so the stds stay between 0.1 and 0.35;
   (b) every conv weight re-drawn as N(0, 0.01), no batch norm: each conv
       multiplies the std by about sqrt(9 C_in / 2) * 0.01 (0.12 to 0.34 for
       C_in = 32 to 256; a pool, keeping the largest of four, raises it a
       little): the activations collapse layer by layer, the logits are ~0,
       the loss is ln 10 = 2.303 and the conv weight gradients vanish;
   (c) the same N(0, 0.01) weights with batch norm, which divides every
       channel by its batch std: unit-scale activations whatever the weights'
       scale (the post-ReLU std of a unit Gaussian is 0.584). The layer no
       longer depends on the scale of W, so dL/dW grows as 1 / scale: the
       small weights get large gradients.

   Forward hooks record each conv layer's output std after its nonlinearity
   (after BN + ReLU where BN is present) and, with BN, the BN output's std;
   one backward pass of cross-entropy with fixed random labels gives each
   conv weight's gradient. float64 so that the tiny numbers of (b) are read
   without any rounding doubt; at these sizes the CPU pays little for it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..models.vgg import vgg
from ..io.plotting import pyplot, save_png
from ..random import check_seed
from ..tensor import tensor

MLP_NAME, VGG_NAME = "init", "init-vgg"

SAMPLES, WIDTH, DEPTH = 1000, 500, 10
HISTOGRAM_ROWS = 100  # samples per layer kept for the histograms (50,000 values)

#: (key, label, nonlinearity, std of the weights for a given fan_in)
MLP_CASES = (
    ("tanh-0.01", "tanh, W = 0.01 * randn", "tanh", lambda fan_in: 0.01),
    ("tanh-xavier", "tanh, Xavier: W = randn / sqrt(fan_in)", "tanh",
     lambda fan_in: 1 / math.sqrt(fan_in)),
    ("relu-he", "ReLU, He: W = randn / sqrt(fan_in / 2)", "relu",
     lambda fan_in: 1 / math.sqrt(fan_in / 2)),
    ("relu-he-typo", "ReLU, the slides' typo: W = randn / sqrt(2 / fan_in)", "relu",
     lambda fan_in: 1 / math.sqrt(2 / fan_in)),
)
NONLINEARITIES = {"tanh": F.tanh, "relu": F.relu}

VGG_BATCH, VGG_IMAGE, VGG_WIDTH, VGG_CLASSES = 32, 32, 0.5, 10
SMALL_STD = 0.01
#: (key, label, batch norm, conv weight std: None keeps torchvision's He normal)
VGG_VARIANTS = (
    ("he", "(a) He normal (fan_out), no BN", False, None),
    ("small", "(b) N(0, 0.01), no BN", False, SMALL_STD),
    ("small-bn", "(c) N(0, 0.01) + BN", True, SMALL_STD),
)


def _check_run_arguments(name: str, out, seed, device) -> tuple[Path, int, str]:
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"experiment {name}: out must be an existing folder, got {str(out)!r}")
    return out, check_seed(f"experiment {name}", seed), backend.check_device(device)


# --- 1. the lecture's fully connected net ----------------------------------------------------

def draw_mlp(seed: int = 0, samples: int = SAMPLES, width: int = WIDTH, depth: int = DEPTH):
    """(inputs, unit-Gaussian weights, upstream gradient) of the experiment, all float64.

    inputs (samples, width); weights a list of ``depth`` (width, width) matrices,
    (out, in) as torchvision stores them; upstream (samples, width). Every case
    scales the same weights, so the cases differ in nothing but the scale."""
    if min(samples, width, depth) < 1:
        raise ValueError(f"draw_mlp: samples, width and depth must be positive, got "
                         f"{samples}, {width}, {depth}")
    rng = np.random.default_rng(check_seed("draw_mlp", seed))
    inputs = rng.standard_normal((samples, width))
    weights = [rng.standard_normal((width, width)) for _ in range(depth)]
    upstream = rng.standard_normal((samples, width))
    return inputs, weights, upstream


def mlp_pass(inputs, weights, nonlinearity: str, upstream, device: str = "cpu") -> dict:
    """One forward and one backward pass of a bias-free fully connected net, by the engine.

    Layer i computes a_i = f(a_(i-1) W_i^T) with f = ``nonlinearity`` ("tanh" or
    "relu"); the backward pass starts from L = sum(a_last * upstream). Returns
    the arrays (on ``device``) ``activations`` [a_1 .. a_n], ``activation_grads``
    [dL/da_1 .. dL/da_n] and ``weight_grads`` [dL/dW_1 .. dL/dW_n]."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"mlp_pass: nonlinearity must be one of {', '.join(NONLINEARITIES)}, "
                         f"got {nonlinearity!r}")
    if np.ndim(inputs) != 2 or not weights:
        raise ValueError(f"mlp_pass: expected 2-D inputs (samples, features) and at least one "
                         f"weight, got inputs of shape {np.shape(inputs)} and "
                         f"{len(weights)} weights")
    f = NONLINEARITIES[nonlinearity]
    a = tensor(inputs, device=device)
    xp = backend.array_module(a.data)
    weight_tensors = [tensor(w, requires_grad=True, device=device) for w in weights]
    activations, probes = [], []
    for w in weight_tensors:
        a = f(F.linear(a, w))
        activations.append(a.data)
        # a zero leaf added to a_i: its gradient is dL/da_i, which a non-leaf does not keep
        probe = tensor(xp.zeros(a.shape, dtype=a.dtype), requires_grad=True, device=device)
        probes.append(probe)
        a = a + probe
    if tuple(np.shape(upstream)) != a.shape:
        raise ValueError(f"mlp_pass: upstream must have the output's shape {a.shape}, "
                         f"got {tuple(np.shape(upstream))}")
    (a * tensor(upstream, dtype=a.dtype, device=device)).sum().backward()
    return {"activations": activations, "activation_grads": [p.grad for p in probes],
            "weight_grads": [w.grad for w in weight_tensors]}


def _std(array) -> float:
    return float(array.std())


def run_mlp(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    out, seed, device = _check_run_arguments(MLP_NAME, out, seed, device)
    inputs, unit_weights, upstream = draw_mlp(seed)
    log(f"{SAMPLES} unit-Gaussian inputs through {DEPTH} fully connected layers of {WIDTH} "
        f"units (no biases, float64, {device}); backward from L = sum(a_{DEPTH} * G), "
        "G unit-Gaussian")
    cases, samples = {}, {}
    for key, label, nonlinearity, weight_std in MLP_CASES:
        std = weight_std(WIDTH)
        result = mlp_pass(inputs, [std * w for w in unit_weights], nonlinearity, upstream,
                          device)
        stats = {"label": label, "nonlinearity": nonlinearity, "weight_std": std,
                 "mean": [float(a.mean()) for a in result["activations"]],
                 "std": [_std(a) for a in result["activations"]],
                 "grad_std": [_std(g) for g in result["activation_grads"]],
                 "weight_grad_std": [_std(g) for g in result["weight_grads"]]}
        cases[key] = stats
        samples[key] = [backend.to_numpy(a[:HISTOGRAM_ROWS]).ravel()
                        for a in result["activations"]]
        del result
        _log_mlp_case(stats, log)
    _log_mlp_summary(cases, log)
    figure = _mlp_figure(cases, samples, out)
    return {"samples": SAMPLES, "width": WIDTH, "depth": DEPTH, "cases": cases,
            "figures": [str(figure)]}


def _log_mlp_case(stats: dict, log) -> None:
    log("")
    if stats["nonlinearity"] == "relu":  # ReLU keeps half of E[h^2]
        factor = math.sqrt(WIDTH / 2) * stats["weight_std"]
        why = f"sqrt(fan_in / 2) * std(W) = {factor:.4g} a layer"
    else:  # tanh is the identity near 0
        factor = math.sqrt(WIDTH) * stats["weight_std"]
        why = f"sqrt(fan_in) * std(W) = {factor:.4g} a layer while |h| << 1"
    log(f"{stats['label']}   (std of W = {stats['weight_std']:.4g}; the std is multiplied "
        f"by {why})")
    log(f"{'layer':>5}  {'mean':>10}  {'std':>10}  {'std ratio':>9}  "
        f"{'std dL/da':>10}  {'std dL/dW':>10}")
    previous = None
    for i in range(DEPTH):
        std = stats["std"][i]
        ratio = "" if previous is None else f"{std / previous:.4g}"
        previous = std
        log(f"{i + 1:>5}  {stats['mean'][i]:>10.3g}  {std:>10.3g}  {ratio:>9}  "
            f"{stats['grad_std'][i]:>10.3g}  {stats['weight_grad_std'][i]:>10.3g}")


def _log_mlp_summary(cases: dict, log) -> None:
    log("")
    log("by case: the top activation, the bottom activation's gradient, the weight gradients")
    for stats in cases.values():
        log(f"  {stats['label']:<52} std a_10 {stats['std'][-1]:>9.3g}   "
            f"std dL/da_1 {stats['grad_std'][0]:>9.3g}   "
            f"mean std dL/dW {np.mean(stats['weight_grad_std']):>9.3g}")
    log("N(0, 0.01) shrinks the activations going up and the gradients going down by 0.224 "
        "a layer, and every dL/dW is tiny;")
    log("the typo grows both by 250 a layer (finite only because this runs in float64; "
        "in float32 the variance, ~1e48, overflows);")
    log("He keeps ReLU outputs at mean 0.564 and std 0.826 on average (one draw wanders a "
        "few percent a layer); Xavier's tanh shrinks slowly, like 1 / sqrt(2 * layer).")


def _mlp_figure(cases: dict, samples: dict, out: Path) -> Path:
    plt = pyplot(f"experiment {MLP_NAME}")
    figure = plt.figure(figsize=(20, 13))
    grid = figure.add_gridspec(len(cases) + 1, DEPTH, height_ratios=[1] * len(cases) + [2.2],
                               hspace=0.75, wspace=0.35)
    for row, (key, stats) in enumerate(cases.items()):
        for layer in range(DEPTH):
            ax = figure.add_subplot(grid[row, layer])
            values = samples[key][layer]
            if stats["nonlinearity"] == "tanh":
                value_range = (-1.0, 1.0)  # fixed, as the lecture drew it: the collapse shows
            else:
                values = values[values > 0]  # the half that ReLU zeroes would hide the rest
                value_range = (0.0, float(np.percentile(values, 99.5)) if values.size else 1.0)
            ax.hist(values, bins=50, range=value_range, color=f"C{row}")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            ax.set_title(f"layer {layer + 1}\nstd {stats['std'][layer]:.2g}", fontsize=7)
            if layer == 0:
                zeros = "" if stats["nonlinearity"] == "tanh" else "\n(values > 0)"
                ax.set_ylabel(stats["label"].split(":")[0] + zeros, fontsize=8)
    axes = [figure.add_subplot(grid[len(cases), :DEPTH // 2]),
            figure.add_subplot(grid[len(cases), DEPTH // 2:])]
    layers = np.arange(1, DEPTH + 1)
    for index, stats in enumerate(cases.values()):
        color = f"C{index}"
        axes[0].semilogy(layers, stats["std"], "o-", color=color, label=stats["label"])
        axes[1].semilogy(layers, stats["grad_std"], "o-", color=color)
        axes[1].semilogy(layers, stats["weight_grad_std"], "s--", color=color)
    axes[0].set_title("std of each layer's activations")
    axes[1].set_title("std of the gradients from one backward pass, colours as on the left\n"
                      "(solid: dL/d activation, dashed: dL/dW)")
    for ax in axes:
        ax.set_xlabel("hidden layer")
        ax.set_xticks(layers)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    figure.subplots_adjust(left=0.04, right=0.99, top=0.95, bottom=0.05)
    return save_png(figure, out / "init.png")


# --- 2. VGG-11 at initialisation ---------------------------------------------------------------

def draw_vgg_batch(seed: int = 0, batch: int = VGG_BATCH, image: int = VGG_IMAGE,
                   classes: int = VGG_CLASSES):
    """(unit-Gaussian images (batch, 3, image, image), random integer labels), float64."""
    rng = np.random.default_rng([check_seed("draw_vgg_batch", seed), 1])
    return rng.standard_normal((batch, 3, image, image)), rng.integers(0, classes, size=batch)


def vgg_statistics(images, labels, batch_norm: bool, conv_std: float | None = None,
                   seed: int = 0, width: float = VGG_WIDTH, device: str = "cpu") -> dict:
    """Per-conv statistics of a freshly initialised float64 VGG-11, in training mode.

    The model gets torchvision's initialisation from ``seed``; with ``conv_std``
    every conv weight is then re-drawn as N(0, conv_std^2), from a generator
    that does not depend on ``batch_norm`` (so (b) and (c) share their weights).
    Returns per conv layer (in order) ``act_std`` (after the ReLU), ``bn_std``
    (the BN output, before the ReLU; empty without BN) and ``weight_grad_std``,
    plus the ``layers`` (torchvision names), the ``loss`` and the ``logit_std``."""
    if conv_std is not None and not conv_std > 0:
        raise ValueError(f"vgg_statistics: conv_std must be positive or None, got {conv_std}")
    model = vgg("vgg11", num_classes=VGG_CLASSES, batch_norm=batch_norm, dropout=0.0,
                width=width, head="compact", dtype=np.float64,
                generator=np.random.default_rng(seed))
    convs = [(f"features.{index}", m) for index, m in enumerate(model.features)
             if isinstance(m, nn.Conv3x3)]
    if conv_std is not None:
        redraw = np.random.default_rng([seed, 2])
        for _, conv in convs:
            nn.init.normal_(conv.weight, 0.0, conv_std, generator=redraw)
    model.to(device).train()  # batch norm normalises with the batch's own statistics

    act_std, bn_std, handles = [], [], []

    def record(into):
        def hook(module, inputs, output):
            into.append(_std(output.data))
        return hook

    seen_conv = False
    for module in model.features:  # the ReLU (and BN) following each conv
        if isinstance(module, nn.Conv3x3):
            seen_conv = True
        elif seen_conv and isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_hook(record(bn_std)))
        elif seen_conv and isinstance(module, nn.ReLU):
            handles.append(module.register_forward_hook(record(act_std)))
    try:
        logits = model(tensor(images, dtype=np.float64, device=device))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return {"layers": [name for name, _ in convs],
            "channels": [conv.out_channels for _, conv in convs],
            "act_std": act_std, "bn_std": bn_std,
            "weight_grad_std": [_std(conv.weight.grad) for _, conv in convs],
            "loss": loss.item(), "logit_std": _std(logits.data)}


def run_vgg(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    out, seed, device = _check_run_arguments(VGG_NAME, out, seed, device)
    images, labels = draw_vgg_batch(seed)
    log(f"VGG-11 (width {VGG_WIDTH:g}, compact head, {VGG_CLASSES} classes) at initialisation: "
        f"{VGG_BATCH} unit-Gaussian {VGG_IMAGE}x{VGG_IMAGE} images, random labels, float64, "
        f"{device}, training mode")
    variants = {}
    for key, label, batch_norm, conv_std in VGG_VARIANTS:
        stats = vgg_statistics(images, labels, batch_norm, conv_std, seed=seed, device=device)
        variants[key] = {"label": label, "batch_norm": batch_norm, **stats}
    _log_vgg_table(variants, log)
    figure = _vgg_figure(variants, out)
    return {"variants": variants, "figures": [str(figure)]}


def _log_vgg_table(variants: dict, log) -> None:
    (a, b, c) = variants.values()
    log("")
    log("std of each conv layer's output after its ReLU (BN + ReLU in (c)); "
        "std of each conv weight's gradient")
    log(f"{'conv':>4}  {'layer':<11} {'ch':>4}  {'(a) act':>9} {'(b) act':>9} {'(c) act':>9} "
        f"{'(c) BN':>7}  {'(a) dL/dW':>9} {'(b) dL/dW':>9} {'(c) dL/dW':>9}")
    for i, layer in enumerate(a["layers"]):
        log(f"{i + 1:>4}  {layer:<11} {a['channels'][i]:>4}  {a['act_std'][i]:>9.3g} "
            f"{b['act_std'][i]:>9.3g} {c['act_std'][i]:>9.3g} {c['bn_std'][i]:>7.4f}  "
            f"{a['weight_grad_std'][i]:>9.3g} {b['weight_grad_std'][i]:>9.3g} "
            f"{c['weight_grad_std'][i]:>9.3g}")
    log(f"{'':>4}  {'logits':<11} {VGG_CLASSES:>4}  {a['logit_std']:>9.3g} "
        f"{b['logit_std']:>9.3g} {c['logit_std']:>9.3g}")
    log(f"loss: (a) {a['loss']:.4f}  (b) {b['loss']:.4f}  (c) {c['loss']:.4f}  "
        f"(ln {VGG_CLASSES} = {math.log(VGG_CLASSES):.4f}: the loss of all-zero logits)")
    log(f"(b) ends {a['act_std'][-1] / b['act_std'][-1]:.3g} times below (a) and its weight "
        "gradients vanish; batch norm (c) brings the same small weights back to unit scale.")


def _vgg_figure(variants: dict, out: Path) -> Path:
    plt = pyplot(f"experiment {VGG_NAME}")
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for index, stats in enumerate(variants.values()):
        layers = np.arange(1, len(stats["layers"]) + 1)
        axes[0].semilogy(layers, stats["act_std"], "o-", color=f"C{index}",
                         label=stats["label"])
        axes[1].semilogy(layers, stats["weight_grad_std"], "o-", color=f"C{index}",
                         label=stats["label"])
    axes[0].set_title("std of each conv layer's output after its ReLU (BN + ReLU in (c))")
    axes[1].set_title("std of each conv weight's gradient")
    for ax in axes:
        ax.set_xlabel("conv layer of VGG-11")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    figure.tight_layout()
    return save_png(figure, out / "init-vgg.png")
