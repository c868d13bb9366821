"""Experiment ``memory``: where the memory of one training step goes, layer by layer.

``tinyvgg summary`` estimates training memory the way the lecture does:
every layer's output counted once, doubled for the gradients. This
experiment runs one real training step of a VGG-11-BN and measures instead:

* per layer, the bytes its ops saved for backward (``ctx.saved_nbytes``,
  read right after each op's forward, through :mod:`tinyvgg.profiler`,
  before backward frees them), next to the layer's output bytes, its
  parameter bytes and its MACs from :func:`tinyvgg.summary`;
* the memory the step really allocated: on the CPU with :mod:`tracemalloc`
  (NumPy reports every array it allocates to it), on the GPU with CuPy's
  memory pool. "Held after forward" is what the graph keeps alive until
  backward; the peak adds what backward allocates on top.

What it teaches: the saved values are not the layer outputs. A 3x3
convolution on the CPU (its im2col rung) keeps its im2col rows, nine times
its input; batch norm keeps x_hat, a copy of its input; ReLU keeps its own
output; max-pool a one-byte argmax per output; dropout its mask. The graph
also keeps every layer's output alive, because each node holds its input
tensors. Backward then allocates a gradient per layer (and, for dx, a
second im2col of that gradient) while the saved values are freed one by one.
"""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from .. import backend
from .. import functional as F
from ..tools.graph import autograd_graph
from ..ops import conv_cpu, conv_cuda
from ..io.plotting import pyplot, save_png
from ..tools.profiler import profile
from ..tools.summary import summary
from ..tensor import Tensor, topological_order
from ..io.texttable import format_table
from . import seeded_vgg_batch

CONFIG, WIDTH, CLASSES, BATCH, SIZE = "vgg11_bn", 0.5, 10, 64, 32
MIB = 2 ** 20
CONV3X3_CPU = "im2col"   # the CPU rung the step runs, see run()


class TracemallocProbe:
    """CPU memory of the arrays allocated since the probe started (NumPy reports its
    array buffers to tracemalloc): bytes held now, and the peak so far."""

    def __enter__(self):
        self._started = not tracemalloc.is_tracing()
        if self._started:
            tracemalloc.start()
        self.base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        return self

    def sample(self) -> tuple[int, int]:
        held, peak = tracemalloc.get_traced_memory()
        return held - self.base, peak - self.base

    def __exit__(self, *exc):
        if self._started:
            tracemalloc.stop()
        return False


class CupyPoolProbe:
    """GPU memory from CuPy's memory pool. ``used_bytes()`` is what live arrays hold;
    the pool keeps freed blocks for reuse, so once emptied at the start its
    ``total_bytes()`` only grows, to about the peak (rounded up to the pool's blocks)."""

    def __enter__(self):
        self.cupy = backend.cupy_module()
        self.pool = self.cupy.get_default_memory_pool()
        self.cupy.cuda.Device().synchronize()
        self.pool.free_all_blocks()
        self.base = self.pool.used_bytes()
        return self

    def sample(self) -> tuple[int, int]:
        self.cupy.cuda.Device().synchronize()
        return self.pool.used_bytes() - self.base, self.pool.total_bytes() - self.base

    def __exit__(self, *exc):
        return False


def _memory_root(array):
    """The array that owns the memory a view looks into (itself if it owns it)."""
    while getattr(array, "base", None) is not None and hasattr(array.base, "nbytes"):
        array = array.base
    return array


def graph_memory(loss: Tensor, owned_before) -> dict:
    """Walk the graph from ``loss`` and count what it keeps alive, each buffer once:
    ``saved_bytes`` sums every op's ``ctx.saved_nbytes`` (the independent count of the
    per-layer total); ``weight_view_bytes`` is the part that are views of ``owned_before``
    arrays (the weights); ``distinct_bytes`` the memory behind every saved value and
    every tensor in the graph, each buffer once, ``owned_before`` excluded."""
    before = {id(_memory_root(a)) for a in owned_before}
    roots, saved, weight_views = {}, 0, 0
    for t in topological_order(loss):
        arrays = [t.data]
        if t.creator is not None:
            for value in t.creator.ctx.saved_arrays:
                saved += value.nbytes
                weight_views += value.nbytes if id(_memory_root(value)) in before else 0
            arrays += t.creator.ctx.saved_arrays
            arrays += [i.data for i in t.creator.inputs if isinstance(i, Tensor)]
        for array in arrays:
            root = _memory_root(array)
            if id(root) not in before:
                roots[id(root)] = root
    return dict(saved_bytes=saved, weight_view_bytes=weight_views,
                distinct_bytes=sum(int(r.nbytes) for r in roots.values()))


def _kind(module, summary_rows, name, ops) -> str:
    """The summary's name for the layer ("conv3-64"), else its class, else its ops."""
    if name in summary_rows:
        return summary_rows[name].kind.split(",")[0]
    return type(module).__name__.lower() if module is not None else ops


def _layer_rows(prof, model, table) -> list[dict]:
    modules = dict(model.named_modules())
    summary_rows = {r.name: r for r in table.rows}
    itemsize = table.dtype.itemsize
    rows = []
    for group in prof.grouped("layer"):
        name = group["name"]
        module = modules.get(name)
        own = module is not None and module.is_leaf_module()
        params = sum(int(p.data.nbytes) for _, p in module.named_parameters(recurse=False)
                     ) if own else 0
        row = summary_rows.get(name)
        ops = "+".join(group["ops"])
        rows.append(dict(layer=name, kind=_kind(module if own else None, summary_rows, name, ops),
                         ops=ops, saved_bytes=group["saved_bytes"],
                         output_bytes=group["output_bytes"], param_bytes=params,
                         macs=row.macs if row else 0,
                         summary_activation_bytes=row.activations * itemsize if row else 0))
    return rows


def _format_table(rows) -> list[str]:
    header = ("layer", "type", "saved MiB", "output MiB", "params MiB", "MACs",
              "summary act. MiB")
    lines = [(r["layer"], r["kind"], f"{r['saved_bytes'] / MIB:.3f}",
              f"{r['output_bytes'] / MIB:.3f}", f"{r['param_bytes'] / MIB:.3f}",
              f"{r['macs'] / 1e6:.1f}M" if r["macs"] else "-",
              f"{r['summary_activation_bytes'] / MIB:.3f}" if r["summary_activation_bytes"]
              else "-") for r in rows]
    total = ("total", "", f"{sum(r['saved_bytes'] for r in rows) / MIB:.3f}",
             f"{sum(r['output_bytes'] for r in rows) / MIB:.3f}",
             f"{sum(r['param_bytes'] for r in rows) / MIB:.3f}",
             f"{sum(r['macs'] for r in rows) / 1e6:.1f}M",
             f"{sum(r['summary_activation_bytes'] for r in rows) / MIB:.3f}")
    return format_table(header, lines, total, text_columns=2)


def _figure(rows, path, title):
    plt = pyplot("experiment memory")
    names = [r["layer"] for r in rows]
    positions = np.arange(len(rows))
    figure, axes = plt.subplots(figsize=(max(8.0, 0.32 * len(rows) + 2), 4.8))
    axes.bar(positions - 0.2, [r["saved_bytes"] / MIB for r in rows], 0.4,
             label="saved for backward", color="#c0504d")
    axes.bar(positions + 0.2, [r["output_bytes"] / MIB for r in rows], 0.4,
             label="output (activation)", color="#4f81bd")
    axes.set_xticks(positions)
    axes.set_xticklabels(names, rotation=90, fontsize=7)
    axes.set_ylabel("MiB")
    axes.set_title(title, fontsize=10)
    axes.legend()
    figure.tight_layout()
    return save_png(figure, path)


def run(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    """One training step of a VGG-11-BN (width 0.5, 32x32, batch 64): saved bytes per
    layer, the summary's estimate, and the measured memory of the step."""
    out = Path(out)
    model, x, labels = seeded_vgg_batch(CONFIG, WIDTH, CLASSES, BATCH, SIZE, seed, device)
    table = summary(model, x.shape)
    owned_before = [p.data for p in model.parameters()] + [x.data]

    probe = TracemallocProbe() if device == "cpu" else CupyPoolProbe()
    # on the CPU the rung decides what a convolution keeps: im2col's rows are what
    # this experiment explains
    with conv_cpu.using_conv3x3_cpu(CONV3X3_CPU), probe, profile(model) as prof:
        loss = F.cross_entropy(model(x), labels)
        held_forward, peak_forward = probe.sample()
        graph = graph_memory(loss, owned_before)
        graph_saved = autograd_graph(loss).saved_bytes
        model.zero_grad()
        loss.backward()
        held_after, peak_step = probe.sample()

    rows = _layer_rows(prof, model, table)
    saved = sum(r["saved_bytes"] for r in rows)
    outputs = sum(r["output_bytes"] for r in rows)
    params = sum(int(p.data.nbytes) for p in model.parameters())
    rung = CONV3X3_CPU if device == "cpu" else f"{conv_cuda.conv3x3_kernel()} kernel"
    measured_by = "tracemalloc" if device == "cpu" else "CuPy's memory pool"

    title = (f"{model.name} width {WIDTH}, {SIZE}x{SIZE}, batch {BATCH}, {device} "
             f"(conv3x3: {rung})")
    log(f"memory of one training step: {title}")
    for line in _format_table(rows):
        log(line)
    log("")
    log(f"saved for backward, all ops:      {saved / MIB:8.2f} MiB  "
        f"(the graph walked from the loss counts {graph_saved / MIB:.2f} MiB)")
    log(f"  of which views of the weights:  {graph['weight_view_bytes'] / MIB:8.2f} MiB  "
        "(BN's gamma, linear's W, on the CPU conv's kernel matrix: no new memory)")
    log(f"layer outputs, all ops:           {outputs / MIB:8.2f} MiB")
    log(f"summary's estimate: activations   {table.activation_bytes / MIB:8.2f} MiB "
        "(the input included), "
        f"training (x2) {table.training_bytes / MIB:.2f} MiB")
    log(f"parameters:                       {params / MIB:8.2f} MiB  (and as much again for "
        "their gradients)")
    log(f"measured ({measured_by}, above the step's start):")
    log(f"  held after forward:             {held_forward / MIB:8.2f} MiB  (the graph; "
        f"its distinct arrays add up to {graph['distinct_bytes'] / MIB:.2f} MiB)")
    log(f"  peak during forward:            {peak_forward / MIB:8.2f} MiB")
    log(f"  peak during forward + backward: {peak_step / MIB:8.2f} MiB  "
        f"= {peak_step / max(saved, 1):.2f}x the saved total, "
        f"{peak_step / max(table.training_bytes, 1):.2f}x the summary's training estimate")
    log(f"  held after backward:            {held_after / MIB:8.2f} MiB  (the weight "
        "gradients: backward let go of every layer output as it went past)")
    log("")
    log("Why the measured memory is larger than the summary's estimate:")
    if device == "cpu":
        log("  - conv3x3 keeps its im2col rows (9x its input), not its input; batch norm "
            "keeps x_hat (a copy of its input), ReLU its output, max-pool a uint8 argmax;")
    else:
        log("  - conv3x3 keeps its input and a contiguous copy of its weight (the GPU "
            "kernels build no im2col); batch norm keeps x_hat, ReLU its output;")
    log("  - every node also holds its input tensors, so all layer outputs stay alive "
        "until the graph is dropped, saved or not;")
    log("  - backward adds a gradient of each layer's output (and on the CPU, for a "
        "conv's dx, an im2col of it), while the saved values are freed one by one.")

    figure = _figure(rows, out / "memory.png", f"bytes per layer: {title}")
    return dict(model=model.name, width=WIDTH, batch=BATCH, size=SIZE, device=device,
                conv3x3_cpu=rung, layers=rows, saved_bytes=saved, graph_saved_bytes=graph_saved,
                weight_view_bytes=graph["weight_view_bytes"],
                graph_distinct_bytes=graph["distinct_bytes"], output_bytes=outputs,
                param_bytes=params, summary_activation_bytes=table.activation_bytes,
                summary_training_bytes=table.training_bytes, measured_by=measured_by,
                held_after_forward=held_forward, peak_forward=peak_forward,
                peak_step=peak_step, held_after_backward=held_after,
                loss=float(loss.item()), figures=[str(figure)])
