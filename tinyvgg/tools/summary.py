"""``summary(model, input_shape)``: where a network's memory, parameters and compute sit.

The table is the one the lecture slides draw for VGG-16, computed for any
model by running one forward pass and recording every layer's output
(:func:`summary`), or for a VGG from its layers' hyperparameters and the shapes
they pass on, with no forward pass and no weights (:func:`vgg_summary`, what
``tinyvgg summary`` prints: VGG-16's weights alone would take 528 MiB):

* activations: values each layer produces for one image (the slide's
  "memory"); ReLU, tanh and dropout are counted with the layer before them, since
  they can overwrite it in place (as torchvision's ``ReLU(inplace=True)``
  does), and a flatten is only a view;
* params: weights alone (the slide's "not counting biases") and with biases;
* MACs: multiply-accumulates of the forward pass (one MAC = 2 FLOPs).

A forward pass must hold the activations; training keeps them for the
backward pass and adds a gradient of each, hence roughly double.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backend, nn
from ..models import vgg
from ..nn.layers import shapes_only
from ..tensor import Tensor, no_grad
from ..io.texttable import format_table

#: layers the slide's accounting folds into the one before (in place, or a view)
FOLDED = (nn.ReLU, nn.Tanh, nn.Dropout, nn.Flatten)

SLIDE_CLAIM = "24M x 4 bytes ~ 96MB"


@dataclass
class Row:
    name: str            # dotted path in the model ("features.0")
    kind: str            # "conv3-64", "maxpool", "fc-4096", ...
    shape: tuple         # output shape of one image (C, H, W) or (features,)
    activations: int     # values in the output, for the whole batch
    weights: int         # parameters without biases
    params: int          # parameters with biases
    macs: int            # forward multiply-accumulates, for the whole batch


def _kind(module) -> str:
    if isinstance(module, nn.Conv3x3):
        return f"conv3-{module.out_channels}"
    if isinstance(module, nn.Conv1x1):
        return f"conv1-{module.out_channels}"
    if isinstance(module, nn.Linear):
        return f"fc-{module.out_features}"
    if isinstance(module, nn.MaxPool2x2):
        return "maxpool"
    if isinstance(module, nn.BatchNorm2d):
        return "batchnorm"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "avgpool"
    if isinstance(module, nn.LocalResponseNorm):
        return "lrn"
    return type(module).__name__.lower()


def _macs(module, output_shape) -> int:
    batch_and_pixels = int(np.prod(output_shape)) // output_shape[1] if len(output_shape) > 1 \
        else 1
    if isinstance(module, (nn.Conv3x3, nn.Conv1x1)):
        return batch_and_pixels * module.out_channels * module.in_channels * module.kernel ** 2
    if isinstance(module, nn.Linear):
        return int(np.prod(output_shape[:-1])) * module.in_features * module.out_features
    return 0


def _param_counts(module) -> tuple[int, int]:
    params = list(module.named_parameters(recurse=False))
    total = sum(p.data.size for _, p in params)
    biases = sum(p.data.size for name, p in params if name == "bias")
    return total - biases, total


def _leaf_names(model):
    return {id(m): name for name, m in model.named_modules() if m.is_leaf_module()}


class Summary:
    """Per-layer rows and totals for one input shape; ``str()`` gives the table."""

    def __init__(self, model, input_shape, dtype, rows):
        self.model_name = getattr(model, "name", type(model).__name__)
        self.input_shape, self.dtype, self.rows = tuple(input_shape), np.dtype(dtype), rows
        self.batch = input_shape[0]

    # --- totals (for the whole batch) ---------------------------------------------
    @property
    def activations(self) -> int:
        return sum(r.activations for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return self.activations * self.dtype.itemsize

    @property
    def training_bytes(self) -> int:
        """Activations kept for backward plus one gradient of each: about twice the forward."""
        return 2 * self.activation_bytes

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def weights(self) -> int:
        return sum(r.weights for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def share(self, attribute, kinds) -> float:
        total = sum(getattr(r, attribute) for r in self.rows)
        part = sum(getattr(r, attribute) for r in self.rows if r.kind.startswith(kinds))
        return part / total if total else 0.0

    def to_dict(self) -> dict:
        return {"model": self.model_name, "input_shape": list(self.input_shape),
                "dtype": self.dtype.name,
                "rows": [dict(r.__dict__, shape=list(r.shape)) for r in self.rows],
                "activations": self.activations, "activation_bytes": self.activation_bytes,
                "training_bytes": self.training_bytes, "params": self.params,
                "weights": self.weights, "macs": self.macs}

    # --- the table -------------------------------------------------------------------
    def __str__(self) -> str:
        header = ("layer", "type", "output", "activations", "memory", "weights",
                  "params (+bias)", "MACs")
        lines = []
        for r in self.rows:
            lines.append((r.name, r.kind, "x".join(map(str, r.shape)), f"{r.activations:,}",
                          _bytes(r.activations * self.dtype.itemsize),
                          f"{r.weights:,}" if r.params else "-",
                          f"{r.params:,}" if r.params else "-",
                          _count(r.macs) if r.macs else "-"))
        lines.append(("total", "", "", f"{self.activations:,}", _bytes(self.activation_bytes),
                      f"{self.weights:,}", f"{self.params:,}", _count(self.macs)))
        rows = format_table(header, lines[:-1], lines[-1], text_columns=3)
        per = "per image" if self.batch == 1 else f"for a batch of {self.batch}"
        shape = "x".join(map(str, self.input_shape[1:]))
        table = [f"{self.model_name}, input {shape}, {self.dtype.name}, {per}",
                 "-" * len(rows[0])] + rows
        conv_params = self.share("params", ("conv",))
        fc_params = self.share("params", ("fc",))
        half = _half_point(self.rows)
        notes = [
            "",
            f"Forward memory: {self.activations:,} activation values x {self.dtype.itemsize} "
            f"bytes = {_bytes(self.activation_bytes)} {per} (input and every layer output "
            "counted once).",
            f"Training: roughly double, about {_bytes(self.training_bytes)}: the activations "
            "stay for the backward pass and each gets a gradient.",
            f"Parameters: {self.params:,} ({self.weights:,} without biases) = "
            f"{_bytes(self.params * self.dtype.itemsize)}.",
            f"Compute: {_count(self.macs)} multiply-accumulates ({_count(2 * self.macs)} "
            f"FLOPs) forward {per}.",
            f"Memory sits early: half of the activations are in the first {half[0]} of "
            f"{len(self.rows)} rows (up to {half[1]}); convolutions produce "
            f"{self.share('activations', ('conv',)):.0%} of them.",
            f"Parameters sit late: the FC layers hold {fc_params:.1%} of them, the "
            f"convolutions {conv_params:.1%}.",
        ]
        if self.model_name.startswith("vgg16") and self.input_shape[1:] == (3, 224, 224):
            notes.append(
                f"The slide total \"{SLIDE_CLAIM}\" overcounts: its own rows add up to "
                f"{self.activations / 1e6:.1f}M values, {self.activation_bytes / 1e6:.0f} MB "
                f"({_bytes(self.activation_bytes)}).")
        return "\n".join(table + notes)

    __repr__ = __str__


def _half_point(rows):
    total, running = sum(r.activations for r in rows), 0
    for i, r in enumerate(rows, 1):
        running += r.activations
        if 2 * running >= total:
            return i, r.name
    return len(rows), rows[-1].name if rows else ""


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _batch_shape(input_shape) -> tuple:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"summary: input_shape must be (C, H, W) or (N, C, H, W) with "
                         f"positive sizes, got {tuple(input_shape)}")
    return shape


def _recorder(model, shape):
    """(rows, record): the table's rows, the input's first, and ``record(module,
    output_shape, passes_input_through)``, which adds a layer's output, called in the
    order the forward pass runs the layers."""
    names = _leaf_names(model)
    rows = [Row("input", "input", shape[1:], int(np.prod(shape)), 0, 0, 0)]
    seen = set()

    def record(module, output_shape, passes_input_through: bool):
        if id(module) not in names:
            return
        weights, params = (0, 0) if id(module) in seen else _param_counts(module)
        seen.add(id(module))
        if isinstance(module, FOLDED) or passes_input_through:
            rows[-1].kind += f", {_kind(module)}"
            return
        rows.append(Row(names[id(module)], _kind(module), tuple(output_shape[1:]),
                        int(np.prod(output_shape)), weights, params,
                        _macs(module, output_shape)))
    return rows, record


def summary(model, input_shape, dtype=None) -> Summary:
    """The per-layer table of ``model`` on inputs of ``input_shape``: (C, H, W) for one
    image, or (N, C, H, W). Runs one forward pass (no gradients, eval mode)."""
    shape = _batch_shape(input_shape)
    params = model.parameters()
    if dtype is None:
        dtype = params[0].dtype if params else np.float32
    device = params[0].device if params else "cpu"
    rows, record = _recorder(model, shape)

    def hook(module, inputs, output):
        if isinstance(output, Tensor):
            record(module, output.shape, output.data is getattr(inputs[0], "data", None))

    handles = [m.register_forward_hook(hook) for name, m in model.named_modules()
               if m.is_leaf_module()]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(backend.move(np.zeros(shape, dtype=dtype), device)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Summary(model, shape, dtype, rows)


def _passes_input_through(module, input_shape, output_shape) -> bool:
    """Whether the forward pass would hand the layer's input on as its output, which the
    table counts with the layer before: the adaptive pool does when every bin is one
    pixel (VGG's 7x7 pool of a 224x224 image's 7x7 map)."""
    return isinstance(module, nn.AdaptiveAvgPool2d) and output_shape == input_shape


def summary_from_shapes(model, input_shape, dtype=None) -> Summary:
    """:func:`summary`'s table with no forward pass: each layer's output shape comes from
    its hyperparameters (``model.layer_shapes``, which a VGG has), so no activation is
    computed and the weights may be shapes only (see :func:`vgg_summary`)."""
    if not hasattr(model, "layer_shapes"):
        raise TypeError(f"summary_from_shapes: {type(model).__name__} does not list its "
                        f"layers' shapes (layer_shapes); use summary(model, input_shape), "
                        f"which runs a forward pass")
    shape = _batch_shape(input_shape)
    params = model.parameters()
    if dtype is None:
        dtype = params[0].dtype if params else np.float32
    rows, record = _recorder(model, shape)
    for module, before, after in model.layer_shapes(shape):
        record(module, after, _passes_input_through(module, before, after))
    return Summary(model, shape, dtype, rows)


def vgg_summary(config, input_shape, dtype=np.float32, **options) -> Summary:
    """The table of ``tinyvgg.models.vgg(config, **options)`` on inputs of ``input_shape``,
    the one :func:`summary` gives, with the model built from shapes alone: no weights
    are allocated (VGG-16's take 528 MiB in float32) and no forward pass runs."""
    if "weights" in options:
        raise ValueError("vgg_summary: the table comes from the configuration alone; "
                         "no weights are loaded")
    with shapes_only():
        model = vgg(config, init_weights=False, dtype=dtype, **options)
    return summary_from_shapes(model, input_shape, dtype)
