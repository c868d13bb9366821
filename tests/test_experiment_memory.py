"""Experiment ``memory``: saved bytes per layer against what the ops save, and the measured step."""
import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg.experiments import memory
from tinyvgg.models import vgg
from tinyvgg.ops import conv_cpu

FLOAT32 = 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    # the experiment runs its step with im2col whatever is selected (which comes back)
    selected = conv_cpu.conv3x3_cpu()
    conv_cpu.use_conv3x3_cpu("winograd4x4")
    lines = []
    try:
        out = tmp_path_factory.mktemp("memory")
        numbers = memory.run(out, seed=0, log=lines.append)
        assert conv_cpu.conv3x3_cpu() == "winograd4x4"
    finally:
        conv_cpu.use_conv3x3_cpu(selected)
    assert numbers["conv3x3_cpu"] == "im2col"
    return numbers, lines


def layer(result, name):
    return next(r for r in result[0]["layers"] if r["layer"] == name)


def test_saved_total_equals_the_count_from_the_graph(result):
    numbers, _ = result
    assert numbers["saved_bytes"] == sum(r["saved_bytes"] for r in numbers["layers"])
    assert numbers["saved_bytes"] == numbers["graph_saved_bytes"]
    assert numbers["saved_bytes"] > 50 * 2**20  # a real step's worth, not an empty graph


def test_a_conv_layer_saves_its_im2col_rows_and_its_kernel_matrix(result):
    n, size = memory.BATCH, memory.SIZE
    # The first convolution's input is the image, which needs no gradient: no dx, so
    # only the im2col rows (one per output pixel, 9 x 3 wide) are kept, for dw.
    assert layer(result, "features.0")["saved_bytes"] == n * size * size * 9 * 3 * FLOAT32
    # the second, 32 -> 64 channels at 16x16 after a pool, also keeps its kernel matrix
    # (a view of the weight) for dx
    half = size // 2
    assert layer(result, "features.4")["saved_bytes"] == \
        n * half * half * 9 * 32 * FLOAT32 + 64 * 9 * 32 * FLOAT32
    assert layer(result, "features.4")["output_bytes"] == n * 64 * half * half * FLOAT32


def test_other_layers_save_what_their_ops_keep(result):
    out = layer(result, "features.1")["output_bytes"]
    # batch norm: x_hat (as large as its input) plus 1/std and gamma, one per channel
    assert layer(result, "features.1")["saved_bytes"] == out + 2 * 32 * FLOAT32
    assert layer(result, "features.2")["saved_bytes"] == out  # ReLU keeps its output
    # max-pool keeps a one-byte argmax per output value
    assert layer(result, "features.3")["saved_bytes"] == out // FLOAT32 // 4
    # the views of the weights are exactly the conv kernels, BN gammas and linear
    # weights, except the first conv's kernel (only needed for the image's dx)
    model = vgg(memory.CONFIG, num_classes=memory.CLASSES, width=memory.WIDTH, head="compact")
    weights = sum(p.data.nbytes for name, p in model.named_parameters()
                  if name.endswith(".weight") and name != "features.0.weight")
    assert result[0]["weight_view_bytes"] == weights


def test_params_and_macs_per_layer(result):
    conv = layer(result, "features.0")
    assert conv["kind"] == "conv3-32"
    assert conv["param_bytes"] == (32 * 3 * 9 + 32) * FLOAT32
    assert conv["macs"] == memory.BATCH * 32 * 32 * 32 * 3 * 9
    assert layer(result, "classifier.6")["kind"] == "fc-10"
    assert layer(result, "(no layer)")["kind"] == "cross_entropy"


def test_measured_peak_covers_the_saved_values_within_a_sane_factor(result):
    numbers, _ = result
    new_saved = numbers["saved_bytes"] - numbers["weight_view_bytes"]
    assert new_saved <= numbers["held_after_forward"] <= numbers["peak_forward"]
    assert numbers["peak_forward"] <= numbers["peak_step"] <= 3 * numbers["saved_bytes"]
    # what tracemalloc sees held after forward is the graph: its distinct arrays
    assert numbers["held_after_forward"] == pytest.approx(numbers["graph_distinct_bytes"],
                                                          rel=0.02)
    # after backward: the weight gradients alone, though loss is still held, since
    # backward lets go of each layer's output once past it
    assert numbers["held_after_backward"] == pytest.approx(numbers["param_bytes"], rel=0.05)


def test_summary_estimate_is_reported(result):
    numbers, lines = result
    model = vgg(memory.CONFIG, num_classes=memory.CLASSES, width=memory.WIDTH, head="compact")
    table = tv.summary(model, (memory.BATCH, 3, memory.SIZE, memory.SIZE))
    assert numbers["summary_activation_bytes"] == table.activation_bytes
    assert numbers["summary_training_bytes"] == 2 * table.activation_bytes
    # the engine keeps more than the slide-style estimate: im2col rows, x_hat, ReLU outputs
    assert numbers["saved_bytes"] > table.activation_bytes
    text = "\n".join(lines)
    assert "summary's estimate" in text and "peak during forward + backward" in text
    assert f"{numbers['saved_bytes'] / 2**20:.2f} MiB" in text


def test_figure_is_written(result):
    figure = result[0]["figures"][0]
    assert figure.endswith("memory.png")
    with open(figure, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_graph_memory_counts_a_buffer_once():
    x = tv.tensor(np.ones((4, 5), np.float32), requires_grad=True)
    y = tv.functional.relu(x)
    z = (y * y).sum()  # mul saves y twice (a and b): the same buffer
    counted = memory.graph_memory(z, owned_before=[x.data])
    assert counted["saved_bytes"] == 3 * 80  # relu's y, mul's a and b
    assert counted["weight_view_bytes"] == 0
    # distinct: y, y * y and the sum's scalar; x was there before
    assert counted["distinct_bytes"] == 80 + 80 + 4


@pytest.mark.gpu
@pytest.mark.real_gpu
def test_memory_on_the_gpu_reads_cupys_pool(tmp_path):
    numbers = memory.run(tmp_path, device="cuda", log=lambda line: None)
    assert numbers["measured_by"] == "CuPy's memory pool"
    assert numbers["saved_bytes"] == numbers["graph_saved_bytes"]
    assert numbers["held_after_forward"] <= numbers["peak_step"]
    assert numbers["peak_step"] >= numbers["saved_bytes"] - numbers["weight_view_bytes"]
