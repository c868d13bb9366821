"""``tinyvgg experiment receptive-field``: what one unit of a conv stack sees.

The receptive field of a unit is the set of input pixels its value depends
on, and backprop measures it directly: seed the backward pass with a
one-hot gradient at that unit and look where the input gradient is nonzero.

1. Stacked 3x3 convolutions (stride 1, padding 1): n layers see a
   (2n + 1) x (2n + 1) window, 3x3, 5x5, 7x7, which is the paper's argument
   for stacks of small filters. The gradient inside the window is not flat:
   with all weights 1 it counts the paths from the unit to each pixel
   (7 21 42 49 42 21 7 along the middle row for three layers: of the
   9^3 = 729 paths, 49 end at the centre pixel and one at each corner), so
   the centre dominates; this centre-weighted map is the *effective* receptive field.
2. Every VGG-16 layer, by the recurrence over layers of kernel k and stride s::

       r_out = r_in + (k - 1) * j_in      (field size, in input pixels)
       j_out = j_in * s                   (jump: input pixels between neighbouring units)

   (conv3: k 3, s 1; max-pool: k 2, s 2), from 3 at conv1_1 to 196 at conv5_3
   and 212 at pool5; then checked by backprop on a real VGG-16 at a small
   width. Two substitutions make that measurement see the wiring rather than
   one input: a max-pool's gradient reaches only the argmax of each window,
   so the gradient would be zero at three of every four positions and the
   nonzero set would be a sparse scatter, not the field; a 2x2 *average*
   pool of the same geometry passes gradient to all four and has the same
   field. And a ReLU zeroes the gradient wherever its input was negative,
   which would cut random holes (and possibly edges) out of the field; the
   ReLUs are replaced by the identity, which leaves the network linear, so
   the gradient no longer depends on the input at all and the nonzero set
   is exactly the set of connected pixels (barring an exact cancellation of
   random weights, a probability-zero event).
3. Parameters: three stacked 3x3 layers of C channels hold 3 * 9 C^2 = 27 C^2
   weights, one 7x7 layer with the same field 49 C^2 (45% more), and the
   stack puts three nonlinearities where the single layer has one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..models.vgg import cfgs, make_layers, vgg16
from ..ops.conv_cpu import using_conv3x3_cpu
from ..io.plotting import pyplot, save_png
from ..tensor import tensor
from ..io.texttable import format_table

NAME = "receptive-field"
STACK_DEPTHS = (1, 2, 3)
STACK_INPUT = 15          # large enough that a 7x7 field sits well inside
STACK_CHANNELS = 3
VGG_INPUT = 224           # conv5_3's 196-pixel field must fit inside the image
VGG_WIDTH = 1 / 16        # 4 to 32 channels: the field does not depend on the width
PARAM_CHANNELS = (64, 128, 256, 512)
#: the field is where the gradient is exactly nonzero; Winograd's transforms leave
#: rounding residue around each tile, so the CPU convolutions run im2col here
EXACT_ZEROS_RUNG = "im2col"


# --- 1. stacked 3x3 convolutions --------------------------------------------------

def stacked_gradient(layers: int, size: int = STACK_INPUT, channels: int = STACK_CHANNELS,
                     seed: int = 0, weights: str = "positive", device: str = "cpu") -> np.ndarray:
    """|d centre unit / d input| of ``layers`` stacked conv3x3, summed over input channels.

    weights: ``"positive"`` (|N(0, 1)|: every path adds, so the map shows the
    centre weighting), ``"signed"`` (N(0, 1)) or ``"ones"`` (the map then counts
    the paths from the centre unit to each pixel). No nonlinearity, no bias:
    the field is a property of the wiring. Returns a (size, size) float64 map.
    """
    if weights not in ("positive", "signed", "ones"):
        raise ValueError(f"stacked_gradient: weights must be 'positive', 'signed' or 'ones', "
                         f"got {weights!r}")
    if layers < 1 or channels < 1 or size < 2 * layers + 1:
        raise ValueError(f"stacked_gradient: need layers >= 1, channels >= 1 and an input of "
                         f"at least {2 * layers + 1} pixels for {layers} layers, got "
                         f"layers={layers}, channels={channels}, size={size}")
    rng = np.random.default_rng(seed)
    kernels = []
    for _ in range(layers):
        w = rng.standard_normal((channels, channels, 3, 3))
        w = {"positive": np.abs(w), "signed": w, "ones": np.ones_like(w)}[weights]
        kernels.append(tensor(w, device=device))
    x = tensor(rng.standard_normal((1, channels, size, size)), requires_grad=True,
               device=device)
    with using_conv3x3_cpu(EXACT_ZEROS_RUNG):
        y = x
        for w in kernels:
            y = F.conv3x3(y, w)
        one_hot = np.zeros(y.shape)
        one_hot[0, 0, size // 2, size // 2] = 1.0  # the centre unit of the first channel
        y.backward(backend.move(one_hot, device))
    return np.abs(backend.to_numpy(x.grad)).sum(axis=(0, 1))


def nonzero_box(gradient_map) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the smallest box holding every nonzero value."""
    rows, cols = np.nonzero(np.asarray(gradient_map))
    if rows.size == 0:
        raise ValueError("nonzero_box: the gradient is zero everywhere; the unit sees nothing")
    return (int(rows.min()), int(cols.min()), int(rows.max() - rows.min() + 1),
            int(cols.max() - cols.min() + 1))


# --- 2. VGG-16: the recurrence ---------------------------------------------------------

def _geometry(module) -> tuple[int, int, int] | None:
    """(kernel, stride, padding) of a layer that moves the field; None for per-pixel ones."""
    if isinstance(module, nn.Conv3x3):
        return 3, 1, 1
    if isinstance(module, nn.Conv1x1):
        return 1, 1, 0
    if isinstance(module, nn.MaxPool2x2):
        return 2, 2, 0
    return None  # ReLU, batch norm, LRN: pixel by pixel, the field stays as it is


def layer_fields(features, input_size: int = VGG_INPUT) -> list[dict]:
    """One row per convolution and pool of ``features`` (a VGG's feature Sequential).

    Each row: ``layer`` (torchvision's ``features.N``), ``name`` (the paper's
    conv3_2 / pool3), ``size`` (output side for an ``input_size`` image),
    ``rf`` (field side), ``jump`` and ``start`` (input column where unit 0's
    field begins; negative when it hangs over the zero padding). Unit i sees
    input pixels ``start + i * jump`` to ``start + i * jump + rf - 1``.
    """
    rows, rf, jump, start, size = [], 1, 1, 0, int(input_size)
    block, conv_in_block = 1, 0
    for index, module in enumerate(features):
        geometry = _geometry(module)
        if geometry is None:
            continue
        kernel, stride, padding = geometry
        rf += (kernel - 1) * jump
        start -= padding * jump
        jump *= stride
        size = (size + 2 * padding - kernel) // stride + 1
        if stride == 1:
            conv_in_block += 1
            name = f"conv{block}_{conv_in_block}"
        else:
            name = f"pool{block}"
            block, conv_in_block = block + 1, 0
        rows.append({"layer": f"features.{index}", "name": name,
                     "kind": type(module).__name__, "size": size, "rf": rf, "jump": jump,
                     "start": start})
    return rows


def vgg16_fields(input_size: int = VGG_INPUT) -> list[dict]:
    """:func:`layer_fields` for VGG-16 (configuration D)."""
    return layer_fields(make_layers(cfgs["D"], width=1 / 64), input_size)


# --- 2. VGG-16: the measurement ------------------------------------------------------------

class Identity(nn.Module):
    """Stands in for a ReLU: gradient 1 everywhere, so no path is cut."""

    def forward(self, x):
        return x


class AvgPool2x2(nn.Module):
    """2x2 average pooling, stride 2: a max-pool's geometry with gradient to all four inputs.

    On even sizes PyTorch's adaptive bins to half the size are exactly the 2x2
    windows, so the engine's adaptive average pool computes it."""

    def forward(self, x):
        height, width = x.shape[2:]
        if height % 2 or width % 2:
            raise ValueError(f"AvgPool2x2: needs even sizes to match a 2x2 stride-2 pool, "
                             f"got {height}x{width}")
        return F.adaptive_avg_pool2d(x, (height // 2, width // 2))


def linearized(features) -> nn.Sequential:
    """The same layers (sharing their weights) with max-pools averaged and ReLUs removed."""
    def swap(module):
        if isinstance(module, nn.MaxPool2x2):
            return AvgPool2x2()
        if isinstance(module, nn.ReLU):
            return Identity()
        return module
    return nn.Sequential(*[swap(m) for m in features])


def measure_vgg16_fields(layers=None, input_size: int = VGG_INPUT, width: float = VGG_WIDTH,
                         seed: int = 0, device: str = "cpu") -> dict:
    """Backprop from the centre unit (channel 0) of each layer in ``layers`` (torchvision
    names, default: every conv and pool) of a linearized float64 VGG-16 to the input.

    Returns {layer name: (top, left, height, width)} of the nonzero input gradient."""
    if input_size % 32:
        raise ValueError(f"measure_vgg16_fields: input_size must be a multiple of 32 so every "
                         f"pool sees an even size, got {input_size}")
    model = vgg16(width=width, dtype=np.float64, generator=np.random.default_rng(seed))
    model.to(device)
    for parameter in model.parameters():
        parameter.requires_grad = False  # only the input's gradient is wanted
    features = linearized(model.features)
    known = {row["layer"] for row in layer_fields(model.features, input_size)}
    wanted = list(known) if layers is None else list(layers)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(f"measure_vgg16_fields: {', '.join(unknown)} is not a convolution "
                         f"or pool of VGG-16; choose from {', '.join(sorted(known))}")
    x = tensor(np.random.default_rng(seed).standard_normal((1, 3, input_size, input_size)),
               requires_grad=True, device=device)
    outputs, h, boxes = {}, x, {}
    with using_conv3x3_cpu(EXACT_ZEROS_RUNG):
        for index, module in enumerate(features):
            h = module(h)
            if f"features.{index}" in wanted:
                outputs[f"features.{index}"] = h
        for name in wanted:
            out = outputs[name]
            one_hot = np.zeros(out.shape)
            one_hot[0, 0, out.shape[2] // 2, out.shape[3] // 2] = 1.0
            out.backward(backend.move(one_hot, device), retain_graph=True)
            boxes[name] = nonzero_box(np.abs(backend.to_numpy(x.grad)).sum(axis=(0, 1)))
            x.grad = None
    return boxes


def expected_box(row: dict, input_size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) the recurrence predicts for the centre unit of ``row``,
    clipped to the image (pixels beyond it are the zero padding, which has no gradient)."""
    centre = row["size"] // 2
    first = row["start"] + centre * row["jump"]
    last = first + row["rf"] - 1
    first, last = max(first, 0), min(last, input_size - 1)
    return first, first, last - first + 1, last - first + 1


# --- 3. parameters ---------------------------------------------------------------------------

def parameter_rows(channels=PARAM_CHANNELS) -> list[dict]:
    """Weights (no biases, as the paper counts) of three stacked 3x3 layers, counted from
    the layers themselves, against one 7x7 layer (49 C^2) with the same 7x7 field."""
    rows = []
    for c in channels:
        stack = [nn.Conv3x3(c, c, bias=False) for _ in range(3)]
        stacked = sum(layer.weight.size for layer in stack)
        single = 7 * 7 * c * c
        rows.append({"channels": c, "stack3x3": stacked, "conv7x7": single,
                     "fewer": 1 - stacked / single})
    return rows


# --- the experiment ------------------------------------------------------------------------

def _figure(maps, rows, out: Path) -> Path:
    plt = pyplot(f"experiment {NAME}")
    figure, axes = plt.subplots(1, 4, figsize=(16, 4),
                                gridspec_kw={"width_ratios": [1, 1, 1, 2.2]})
    for ax, (n, grad) in zip(axes, maps.items()):
        image = ax.imshow(grad / grad.max(), cmap="magma", vmin=0, vmax=1)
        top, left, height, width = nonzero_box(grad)
        ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), width, height, fill=False,
                                   edgecolor="cyan", linewidth=1.2))
        ax.set_title(f"{n} x conv3x3: |d centre / d input|\nnonzero {height}x{width}",
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=axes[2], fraction=0.046, pad=0.04)
    ax = axes[3]
    positions = np.arange(len(rows))
    ax.plot(positions, [r["rf"] for r in rows], "o-", label="receptive field (pixels)")
    ax.plot(positions, [r["jump"] for r in rows], "s--", label="jump (pixels)")
    measured = [(i, r["measured"][2]) for i, r in enumerate(rows) if r.get("measured")]
    if measured:
        ax.plot(*zip(*measured), "x", color="black", markersize=9,
                label="measured by backprop")
    ax.set_xticks(positions)
    ax.set_xticklabels([r["name"] for r in rows], rotation=70, fontsize=8)
    ax.set_ylabel("input pixels")
    ax.set_title("VGG-16: receptive field of each layer (224x224 input)")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return save_png(figure, out / "receptive-field.png")


def run(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    out = Path(out)
    log("1. Stacked 3x3 convolutions (stride 1, padding 1): backprop from the centre unit "
        f"of a {STACK_INPUT}x{STACK_INPUT} map")
    maps, stacked, paths = {}, {}, {}
    lines = []
    for n in STACK_DEPTHS:
        maps[n] = stacked_gradient(n, seed=seed, device=device)
        stacked[n] = list(nonzero_box(maps[n])[2:])
        signed = list(nonzero_box(stacked_gradient(n, seed=seed, weights="signed",
                                                   device=device))[2:])
        ones = stacked_gradient(n, channels=1, weights="ones", device=device)
        paths[n] = [int(v) for v in ones[STACK_INPUT // 2][ones[STACK_INPUT // 2] > 0]]
        centre = maps[n][STACK_INPUT // 2, STACK_INPUT // 2] / maps[n].max()
        lines.append((n, "x".join(map(str, stacked[n])), "x".join(map(str, signed)),
                      f"{centre:.2f}", " ".join(map(str, paths[n]))))
    for line in format_table(("layers", "nonzero (|w|)", "nonzero (signed w)", "centre/max",
                        "paths to the middle row (w = 1)"), lines):
        log(line)
    log("Each layer adds one pixel on every side; inside the field, pixels reached by more "
        "paths weigh more: the effective field is centre-weighted.")

    log("")
    log(f"2. VGG-16 receptive fields at {VGG_INPUT}x{VGG_INPUT} by r += (k - 1) * j, j *= stride; "
        f"measured by backprop at width {VGG_WIDTH:g}, float64, max-pools averaged, "
        "ReLUs removed (see the module docstring)")
    rows = vgg16_fields(VGG_INPUT)
    boxes = measure_vgg16_fields(input_size=VGG_INPUT, seed=seed, device=device)
    lines = []
    for row in rows:
        box = boxes[row["layer"]]
        row["measured"] = list(box)
        row["agrees"] = tuple(box) == expected_box(row, VGG_INPUT)
        lines.append((row["layer"], row["name"], f"{row['size']}x{row['size']}", row["rf"],
                      row["jump"], f"{box[2]}x{box[3]} at ({box[0]}, {box[1]})",
                      "yes" if row["agrees"] else "NO"))
    for line in format_table(("layer", "name", "output", "RF", "jump", "measured (centre unit)",
                        "agrees"), lines):
        log(line)
    log(f"The last conv sees {rows[-2]['rf']}x{rows[-2]['rf']} of the 224x224 image, "
        f"the last pool {rows[-1]['rf']}x{rows[-1]['rf']}; each pool doubles the jump, "
        "so every later conv grows the field twice as fast.")

    log("")
    log("3. Weights for a 7x7 field, C channels in and out (no biases)")
    params = parameter_rows()
    for line in format_table(("C", "3 x conv3 (27 C^2)", "1 x conv7 (49 C^2)", "fewer"),
                       [(p["channels"], f"{p['stack3x3']:,}", f"{p['conv7x7']:,}",
                         f"{p['fewer']:.1%}") for p in params]):
        log(line)
    log("And the stack has 3 nonlinearities instead of 1: a more discriminative function "
        "with fewer weights.")

    figure = _figure(maps, rows, out)
    return {"stacked": stacked, "paths": paths, "vgg16": rows, "params": params,
            "figures": [str(figure)]}
