"""The autograd graph of a tensor, as Graphviz ``dot`` text or a picture.

Backprop walks a graph the forward pass recorded: every op call made a
:class:`~tinyvgg.tensor.Node` (the op, its context, its inputs) and hung it on
its output as ``tensor.creator``. Drawing that graph shows what
``Tensor.backward`` will visit, in which order, and what each op keeps alive
until then::

    loss = F.cross_entropy(model(x), y)
    dot_text = to_dot(loss, model)           # before loss.backward()
    render(dot_text, "graph.png")            # needs Graphviz's ``dot`` program

One box per op call, labelled with the op, its output's shape, dtype and
device, and the bytes it saved for backward (``ctx.saved_nbytes``); one
ellipse per leaf: parameters under their name in ``model`` when it is given
(``features.0.weight``), other tensors as ``input``. Edges go from an input
to the op that used it; an op's box stands for its output too, so the next
edge leaves from it. Backward frees the saved arrays, so build the graph
before calling it: afterwards every op shows 0 bytes saved.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from ..io.fileio import atomic_write
from ..nn import Module, Parameter
from ..tensor import Tensor, topological_order

FORMATS = ("png", "svg")
GRAPHVIZ_INSTALL_HINT = ("install Graphviz (Debian/Ubuntu: apt install graphviz; macOS: "
                         "brew install graphviz; others: https://graphviz.org/download/)")


class GraphvizNotFoundError(FileNotFoundError):
    """Graphviz's ``dot`` program, which turns dot text into a picture, is not on PATH."""


@dataclass
class GraphNode:
    id: str                  # "t0", "t1", ...: the name in the dot text
    kind: str                # "op", "parameter" or "input"
    title: str               # op name, parameter name, or "input"
    shape: tuple
    dtype: str
    device: str
    saved_bytes: int = 0     # ops only: bytes kept for backward

    @property
    def label(self) -> str:
        lines = [self.title, f"{'x'.join(map(str, self.shape)) or 'scalar'}  {self.dtype}  "
                             f"{self.device}"]
        if self.kind == "op":
            lines.append(f"saved {self.saved_bytes:,} B")
        return "\n".join(lines)


@dataclass
class Graph:
    """The nodes (leaves and op calls, inputs before outputs) and edges (source id,
    target id) of a tensor's autograd graph; ``root`` is the id of the tensor itself."""
    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)
    root: str = ""

    def ops(self) -> list:
        return [n for n in self.nodes if n.kind == "op"]

    @property
    def saved_bytes(self) -> int:
        return sum(n.saved_bytes for n in self.ops())

    def depths(self) -> dict:
        """Layer of each node for drawing top to bottom: an op one below the deepest of
        its inputs, a leaf just above the first op that uses it."""
        inputs = {n.id: [] for n in self.nodes}
        users = {n.id: [] for n in self.nodes}
        for source, target in self.edges:
            inputs[target].append(source)
            users[source].append(target)
        depth = {}
        for node in self.nodes:  # inputs come before outputs, so theirs are known
            if node.kind == "op":
                depth[node.id] = 1 + max((depth.get(i, 0) for i in inputs[node.id]
                                          if i in depth), default=0)
        for node in self.nodes:
            if node.kind != "op":
                depth[node.id] = min((depth[u] for u in users[node.id]), default=1) - 1
        return depth

    def to_dot(self) -> str:
        """The graph in Graphviz's dot language."""
        style = {"op": 'shape=box, style="rounded,filled", fillcolor="#f2f2f2"',
                 "parameter": 'shape=ellipse, style=filled, fillcolor="#cfe2f3"',
                 "input": 'shape=ellipse, style=filled, fillcolor="#d9ead3"'}
        lines = ["digraph autograd {", "  rankdir=TB;",
                 '  node [fontname="Helvetica", fontsize=10];']
        for node in self.nodes:
            extra = ", peripheries=2" if node.id == self.root else ""
            lines.append(f'  {node.id} [label="{_escape(node.label)}", '
                         f'{style[node.kind]}{extra}];')
        for source, target in self.edges:
            lines.append(f"  {source} -> {target};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """A label as a dot string: quotes and backslashes escaped, lines joined by \\n."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def autograd_graph(tensor: Tensor, model=None) -> Graph:
    """The :class:`Graph` that ``tensor.backward()`` would walk (see the module doc)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"autograd_graph: expected a tinyvgg Tensor, got "
                        f"{type(tensor).__name__}")
    if model is not None and not isinstance(model, Module):
        raise TypeError(f"autograd_graph: model must be a tinyvgg Module or None, got "
                        f"{type(model).__name__}")
    parameter_names = {} if model is None else {id(p): name
                                                 for name, p in model.named_parameters()}
    graph, ids = Graph(), {}

    def add(t: Tensor) -> str:
        if id(t) not in ids:
            ids[id(t)] = f"t{len(ids)}"
            if t.creator is not None:
                kind, title, saved = "op", t.creator.ctx.op_name, t.creator.ctx.saved_nbytes
            elif id(t) in parameter_names:
                kind, title, saved = "parameter", parameter_names[id(t)], 0
            else:
                kind, saved = ("parameter" if isinstance(t, Parameter) else "input"), 0
                title = kind
            graph.nodes.append(GraphNode(ids[id(t)], kind, title, t.shape, t.dtype.name,
                                         t.device, int(saved)))
        return ids[id(t)]

    # The order backward reverses, ops only: each op's inputs are added as they are
    # met, in argument order, which also takes in the inputs that need no gradient
    # (the images), since the walk does not list those.
    for t in topological_order(tensor):
        if t.creator is None:
            continue
        sources = [add(i) for i in t.creator.inputs if isinstance(i, Tensor)]
        target = add(t)
        graph.edges.extend((source, target) for source in sources)
    graph.root = add(tensor)  # already there, unless the tensor is a leaf itself
    return graph


def to_dot(tensor: Tensor, model=None) -> str:
    """The autograd graph of ``tensor`` as Graphviz dot text (see the module doc)."""
    return autograd_graph(tensor, model).to_dot()


def render(dot_text: str, path, format: str = "png"):
    """Draw ``dot_text`` into ``path`` with Graphviz's ``dot`` program (png or svg).

    Raises :class:`GraphvizNotFoundError` when ``dot`` is not on PATH."""
    if not isinstance(dot_text, str):
        raise TypeError(f"render: dot_text must be a string, got {type(dot_text).__name__}")
    if format not in FORMATS:
        raise ValueError(f"render: format must be one of {', '.join(FORMATS)}, got {format!r}")
    program = shutil.which("dot")
    if program is None:
        raise GraphvizNotFoundError(f"render: Graphviz's 'dot' program was not found on PATH; "
                                    f"{GRAPHVIZ_INSTALL_HINT}")
    result = subprocess.run([program, f"-T{format}"], input=dot_text.encode("utf-8"),
                            capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"render: dot failed with exit status {result.returncode}: "
                           f"{result.stderr.decode('utf-8', 'replace').strip()}")
    return atomic_write(path, result.stdout)


def draw(graph: Graph, path, title: str | None = None):
    """A plain matplotlib picture of ``graph`` for when Graphviz is missing: nodes in
    rows by :meth:`Graph.depths`, top to bottom, edges as arrows."""
    from ..io.plotting import pyplot, save_png
    plt = pyplot("graph drawing")
    depth = graph.depths()
    rows: dict[int, list] = {}
    for node in graph.nodes:
        rows.setdefault(depth[node.id], []).append(node)
    levels = sorted(rows)
    widest = max(len(r) for r in rows.values())
    position = {}
    order = {"op": 0, "input": 1, "parameter": 2}
    for row_index, level in enumerate(levels):
        # ops first, so a chain of ops runs straight down the left column and the
        # weights it meets come in from the right
        row = sorted(rows[level], key=lambda n: order[n.kind])
        for column, node in enumerate(row):
            position[node.id] = (column, -row_index)
    figure, axes = plt.subplots(figsize=(2.0 * widest + 1, 0.62 * len(levels) + 1))
    colours = {"op": "#f2f2f2", "parameter": "#cfe2f3", "input": "#d9ead3"}
    boxes = {}
    for node in graph.nodes:
        x, y = position[node.id]
        root = node.id == graph.root
        text = axes.text(x, y, node.label, ha="center", va="center", fontsize=6,
                         bbox=dict(boxstyle="round,pad=0.3" if node.kind == "op" else
                                   "round4,pad=0.3", facecolor=colours[node.kind],
                                   edgecolor="black" if root else "#666666",
                                   linewidth=1.6 if root else 0.6))
        boxes[node.id] = text.get_bbox_patch()
    for source, target in graph.edges:
        # clipped to the two boxes, so the arrow runs from edge to edge of them
        axes.annotate("", xy=position[target], xytext=position[source],
                      arrowprops=dict(arrowstyle="-|>", color="#777777", lw=0.7,
                                      patchA=boxes[source], patchB=boxes[target],
                                      shrinkA=1, shrinkB=1))
    axes.set_xlim(-0.6, widest - 0.4)
    axes.set_ylim(-len(levels) + 0.4, 0.6)
    axes.axis("off")
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return save_png(figure, path)
