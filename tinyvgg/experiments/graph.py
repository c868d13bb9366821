"""Experiment ``graph``: the autograd graph of a small VGG's training loss, drawn.

A VGG-11-BN at width 1/16 (4 to 32 channels) on two 32x32 images: small
enough that its graph fits a page, yet with every kind of node a VGG has.
The graph of ``cross_entropy(model(x), y)`` is written as Graphviz dot
text (``graph.dot``) before backward runs, and drawn as ``graph.png``: by
Graphviz's ``dot`` when it is installed, else by a plain matplotlib drawing
of the same nodes and edges, in rows by depth.

What it teaches: the graph is a chain of op calls from the input to the
loss, with the weights joining as leaves; backward visits it in reverse.
Each box says what the op kept for backward: the convolutions' im2col rows
(on the CPU) dominate, ReLU keeps its output, max-pool one byte per output.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .. import functional as F
from ..io.fileio import atomic_write
from ..tools.graph import GraphvizNotFoundError, autograd_graph, draw, render
from ..ops.conv_cpu import using_conv3x3_cpu
from ..io.texttable import format_table
from . import seeded_vgg_batch

CONFIG, WIDTH, CLASSES, BATCH, SIZE = "vgg11_bn", 1 / 16, 10, 2, 32


def run(out: Path, seed: int = 0, device: str = "cpu", log=print) -> dict:
    """Write the autograd graph of a tiny VGG-11-BN's loss as graph.dot and graph.png."""
    out = Path(out)
    model, x, labels = seeded_vgg_batch(CONFIG, WIDTH, CLASSES, BATCH, SIZE, seed, device)
    with using_conv3x3_cpu("im2col"):  # the CPU rung whose saved rows the boxes show
        loss = F.cross_entropy(model(x), labels)

    graph = autograd_graph(loss, model)  # before any backward, which frees the saved arrays
    dot_text = graph.to_dot()
    dot_path = atomic_write(out / "graph.dot", dot_text)
    png_path = out / "graph.png"
    title = f"autograd graph of {model.name} width 1/16, {SIZE}x{SIZE}, batch {BATCH}, {device}"
    try:
        render(dot_text, png_path, format="png")
        drawn_by = "Graphviz dot"
    except GraphvizNotFoundError:
        draw(graph, png_path, title)
        drawn_by = "matplotlib (Graphviz's dot is not installed)"

    ops = graph.ops()
    counts = Counter(n.title for n in ops)
    saved = Counter()
    for n in ops:
        saved[n.title] += n.saved_bytes
    kinds = Counter(n.kind for n in graph.nodes)
    log(title)
    log(f"{len(graph.nodes)} nodes ({kinds['op']} op calls, {kinds['parameter']} parameters, "
        f"{kinds['input']} input), {len(graph.edges)} edges")
    header = ("op", "calls", "saved bytes", "share")
    share = {op: saved[op] / max(graph.saved_bytes, 1) for op in counts}
    lines = [(op, str(count), f"{saved[op]:,}", f"{100 * share[op]:.1f}%")
             for op, count in counts.most_common()]
    total = ("total", str(len(ops)), f"{graph.saved_bytes:,}", "100.0%")
    for line in format_table(header, lines, total):
        log(line)
    log(f"wrote the dot text to {dot_path.name}; drew {png_path.name} with {drawn_by}")
    return dict(model=model.name, batch=BATCH, size=SIZE, device=device,
                nodes=len(graph.nodes), edges=len(graph.edges), node_kinds=dict(kinds),
                op_counts=dict(counts), saved_bytes_by_op=dict(saved),
                saved_bytes=graph.saved_bytes, drawn_by=drawn_by,
                figures=[str(png_path)], dot=str(dot_path))
