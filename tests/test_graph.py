"""``tinyvgg.tools.graph``: the autograd graph as nodes, edges, dot text and pictures."""
import os
import re
import shutil
import stat

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import functional as F
from tinyvgg.tools import graph as graph_module
from tinyvgg import nn
from tinyvgg.tools.graph import GraphvizNotFoundError, autograd_graph, draw, render, to_dot
from tinyvgg.models import vgg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NODE = re.compile(r'^  (t\d+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
EDGE = re.compile(r"^  (t\d+) -> (t\d+);$")


def tiny_graph(model_given=True):
    """y = relu(linear(x, W, b)).sum() with x (2, 3), W (4, 3), b (4,)."""
    layer = nn.Linear(3, 4)
    x = tv.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = F.relu(layer(x)).sum()
    return y, layer, (layer if model_given else None)


def all_nodes(tensor):
    """Every op node behind ``tensor``, found by a plain search of its own."""
    found, todo = {}, [tensor]
    while todo:
        t = todo.pop()
        if t.creator is not None and id(t.creator) not in found:
            found[id(t.creator)] = t.creator
            todo.extend(i for i in t.creator.inputs if isinstance(i, tv.Tensor))
    return list(found.values())


def parse_dot(text):
    """Node labels by id and the edges, checking the structure line by line."""
    lines = text.splitlines()
    assert lines[0] == "digraph autograd {" and lines[-1] == "}"
    assert text.count("{") == text.count("}") == 1
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if line.strip() in ("rankdir=TB;", 'node [fontname="Helvetica", fontsize=10];'):
            continue
        node, edge = NODE.match(line), EDGE.match(line)
        assert node or edge, f"not a node or an edge: {line!r}"
        if node:
            assert node.group(1) not in nodes
            nodes[node.group(1)] = node.group(2).split("\\n")
        else:
            edges.append(edge.groups())
    for source, target in edges:
        assert source in nodes and target in nodes  # every endpoint is declared
    return nodes, edges


def test_tiny_graph_has_three_leaves_three_ops_and_five_edges():
    y, layer, model = tiny_graph()
    graph = autograd_graph(y, model)
    assert [(n.kind, n.title) for n in graph.nodes] == [
        ("input", "input"), ("parameter", "weight"), ("parameter", "bias"),
        ("op", "linear"), ("op", "relu"), ("op", "sum")]
    ids = {n.title: n.id for n in graph.nodes}
    assert graph.edges == [(ids["input"], ids["linear"]), (ids["weight"], ids["linear"]),
                           (ids["bias"], ids["linear"]), (ids["linear"], ids["relu"]),
                           (ids["relu"], ids["sum"])]
    assert graph.root == ids["sum"]
    nodes, edges = parse_dot(to_dot(y, model))
    assert len(nodes) == 6 and len(edges) == 5


def test_labels_give_shape_dtype_device_and_saved_bytes():
    y, layer, model = tiny_graph()
    nodes, _ = parse_dot(to_dot(y, model))
    labels = {lines[0]: lines[1:] for lines in nodes.values()}
    # linear keeps W (4x3) and x (2x3), relu its output (2x4): float32, 4 bytes each
    assert labels["linear"] == ["2x4  float32  cpu", f"saved {(12 + 6) * 4} B"]
    assert labels["relu"] == ["2x4  float32  cpu", f"saved {8 * 4} B"]
    assert labels["sum"] == ["scalar  float32  cpu", "saved 0 B"]
    assert labels["input"] == ["2x3  float32  cpu"]
    assert labels["weight"] == ["4x3  float32  cpu"]
    relu_ctx = y.creator.inputs[0].creator.ctx
    assert relu_ctx.saved_nbytes == 32


def test_without_a_model_parameters_are_unnamed_and_other_leaves_are_inputs():
    y, _, _ = tiny_graph(model_given=False)
    assert [n.title for n in autograd_graph(y).nodes][:3] == ["input", "parameter", "parameter"]
    w = tv.tensor(np.ones((2, 2), np.float64), requires_grad=True)
    z = F.linear(tv.tensor(np.ones((1, 2), np.float64)), w).sum()
    nodes, edges = parse_dot(to_dot(z))
    assert [lines[0] for lines in nodes.values()] == ["input", "input", "linear", "sum"]
    assert "float64" in nodes["t2"][1]


def test_a_tensor_used_twice_gets_two_edges():
    x = tv.tensor(np.ones(3, np.float32), requires_grad=True)
    graph = autograd_graph((x * x).sum())
    assert [(n.kind, n.title) for n in graph.nodes] == [("input", "input"), ("op", "mul"),
                                                      ("op", "sum")]
    assert graph.edges == [("t0", "t1"), ("t0", "t1"), ("t1", "t2")]


def test_a_leaf_alone_is_one_node():
    x = tv.tensor(np.ones(3, np.float32))
    nodes, edges = parse_dot(to_dot(x))
    assert list(nodes) == ["t0"] and edges == []


def test_vgg_graph_names_every_parameter_and_counts_its_saved_bytes():
    model = vgg("vgg11_bn", num_classes=10, width=1 / 16, head="compact",
                generator=np.random.default_rng(0))
    x = tv.tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    loss = F.cross_entropy(model(x), np.array([1, 2]))
    graph = autograd_graph(loss, model)
    nodes, edges = parse_dot(graph.to_dot())
    names = {lines[0] for lines in nodes.values()}
    assert {name for name, _ in model.named_parameters()} <= names
    assert len(graph.ops()) == 39 and len(nodes) == 39 + 38 + 1
    # each op has an edge from each tensor input, the one input image included
    assert len(edges) == 77
    assert graph.saved_bytes == sum(node.ctx.saved_nbytes for node in all_nodes(loss))
    loss.backward()  # frees what the ops saved: build the graph before backward
    assert autograd_graph(loss, model).saved_bytes == 0


def test_autograd_graph_rejects_what_is_not_a_tensor():
    with pytest.raises(TypeError, match="autograd_graph: expected a tinyvgg Tensor, got ndarray"):
        to_dot(np.ones(3))
    y, _, _ = tiny_graph()
    with pytest.raises(TypeError, match="model must be a tinyvgg Module or None, got dict"):
        to_dot(y, model={})


def test_render_names_the_missing_program_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    y, _, model = tiny_graph()
    with pytest.raises(GraphvizNotFoundError, match=r"'dot' program was not found on PATH.*"
                                                    r"apt install graphviz"):
        render(to_dot(y, model), tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_render_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="format must be one of png, svg, got 'pdf'"):
        render("digraph {}", tmp_path / "g.pdf", format="pdf")
    with pytest.raises(TypeError, match="dot_text must be a string, got bytes"):
        render(b"digraph {}", tmp_path / "g.png")


def _fake_dot(folder, script):
    program = folder / "dot"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program


def test_render_runs_dot_with_the_format_and_writes_its_output(monkeypatch, tmp_path):
    # a stand-in for Graphviz that echoes its arguments and its input
    _fake_dot(tmp_path, 'echo "args: $@"; cat\n')
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    path = render("digraph autograd {}\n", tmp_path / "out" / "g.svg", format="svg")
    assert path.read_text() == "args: -Tsvg\ndigraph autograd {}\n"


def test_render_reports_a_failing_dot(monkeypatch, tmp_path):
    _fake_dot(tmp_path, 'echo "syntax error in line 1" >&2; exit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    with pytest.raises(RuntimeError, match="dot failed with exit status 1: syntax error"):
        render("digraph {", tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_render_with_graphviz_writes_a_png(tmp_path):
    y, _, model = tiny_graph()
    path = render(to_dot(y, model), tmp_path / "g.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_draw_writes_a_png_without_graphviz(tmp_path):
    y, _, model = tiny_graph()
    graph = autograd_graph(y, model)
    assert graph.depths() == {"t0": 0, "t1": 0, "t2": 0, "t3": 1, "t4": 2, "t5": 3}
    path = draw(graph, tmp_path / "g.png", title="tiny")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_experiment_graph_writes_dot_and_png(monkeypatch, tmp_path):
    from tinyvgg.experiments import run
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    lines = []
    result = run("graph", tmp_path, log=lines.append)
    assert (result["nodes"], result["edges"]) == (78, 77)
    assert result["node_kinds"] == {"input": 1, "parameter": 38, "op": 39}
    assert result["op_counts"] == {"conv3x3": 8, "batch_norm2d": 8, "relu": 10,
                                   "maxpool2x2": 5, "adaptive_avg_pool2d": 1, "reshape": 1,
                                   "linear": 3, "dropout": 2, "cross_entropy": 1}
    # the convolutions' im2col rows are most of what a VGG keeps for backward (on the CPU)
    assert result["saved_bytes_by_op"]["conv3x3"] > 0.7 * result["saved_bytes"]
    assert sum(result["saved_bytes_by_op"].values()) == result["saved_bytes"]
    assert result["drawn_by"].startswith("matplotlib")
    nodes, edges = parse_dot((tmp_path / "graph.dot").read_text())
    assert (len(nodes), len(edges)) == (78, 77)
    assert "features.0.weight" in {lines[0] for lines in nodes.values()}
    assert (tmp_path / "graph.png").read_bytes()[:8] == PNG_SIGNATURE
    assert lines[-1].endswith("graph.png with matplotlib (Graphviz's dot is not installed)")
    assert any(line.startswith("total") and f"{result['saved_bytes']:,}" in line
               for line in lines)
