"""``tinyvgg.summary`` (tools/summary.py) and ``tinyvgg summary``: the lecture's VGG-16 table, figure by figure."""
import json
import subprocess
import sys

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import nn
from tinyvgg.models import vgg

#: the slide's rows for VGG-16 at 224x224: (type, output shape, weights without biases)
VGG16_ROWS = [
    ("input", (3, 224, 224), 0),
    ("conv3-64", (64, 224, 224), 1_728), ("conv3-64", (64, 224, 224), 36_864),
    ("maxpool", (64, 112, 112), 0),
    ("conv3-128", (128, 112, 112), 73_728), ("conv3-128", (128, 112, 112), 147_456),
    ("maxpool", (128, 56, 56), 0),
    ("conv3-256", (256, 56, 56), 294_912), ("conv3-256", (256, 56, 56), 589_824),
    ("conv3-256", (256, 56, 56), 589_824),
    ("maxpool", (256, 28, 28), 0),
    ("conv3-512", (512, 28, 28), 1_179_648), ("conv3-512", (512, 28, 28), 2_359_296),
    ("conv3-512", (512, 28, 28), 2_359_296),
    ("maxpool", (512, 14, 14), 0),
    ("conv3-512", (512, 14, 14), 2_359_296), ("conv3-512", (512, 14, 14), 2_359_296),
    ("conv3-512", (512, 14, 14), 2_359_296),
    ("maxpool", (512, 7, 7), 0),
    ("fc-4096", (4096,), 102_760_448), ("fc-4096", (4096,), 16_777_216),
    ("fc-1000", (1000,), 4_096_000),
]


@pytest.fixture(scope="module")
def vgg16_summary():
    return tv.summary(vgg("vgg16", init_weights=False), (3, 224, 224))


def test_vgg16_rows_are_the_slide_s(vgg16_summary):
    rows = vgg16_summary.rows
    assert [(r.kind.split(",")[0], r.shape, r.weights) for r in rows] == VGG16_ROWS
    assert all(r.activations == np.prod(r.shape) for r in rows)
    assert [r.name for r in rows][:4] == ["input", "features.0", "features.2", "features.4"]
    assert rows[1].kind == "conv3-64, relu" and rows[-3].kind == "fc-4096, relu, dropout"
    assert rows[-4].kind == "maxpool, avgpool"  # the 7x7 average pool of a 7x7 map is a no-op


def test_vgg16_totals(vgg16_summary):
    s = vgg16_summary
    assert s.activations == 15_237_608
    assert s.activation_bytes == 15_237_608 * 4
    assert s.activation_bytes / 2**20 == pytest.approx(58.13, abs=0.01)
    assert s.training_bytes == 2 * s.activation_bytes
    assert s.params == 138_357_544 and s.weights == 138_344_128
    assert s.macs == 15_470_264_320
    assert s.macs / 1e9 == pytest.approx(15.5, abs=0.05)
    assert s.share("params", ("fc",)) == pytest.approx(0.894, abs=0.001)


def test_vgg16_conv_macs_are_output_pixels_times_kernel_volume(vgg16_summary):
    conv = vgg16_summary.rows[2]
    assert conv.macs == 224 * 224 * 64 * (3 * 3 * 64)
    assert vgg16_summary.rows[-1].macs == 4096 * 1000


def test_vgg16_table_text(vgg16_summary):
    text = str(vgg16_summary)
    for fragment in ["features.0", "conv3-64, relu", "64x224x224", "3,211,264", "12.2 MiB",
                     "102,760,448", "102,764,544", "15,237,608", "58.1 MiB", "138,357,544",
                     "138,344,128", "15.47G multiply-accumulates", "116.3 MiB",
                     "FC layers hold 89.4%", "\"24M x 4 bytes ~ 96MB\" overcounts",
                     "15.2M values"]:
        assert fragment in text, fragment


def test_batch_and_dtype_scale_the_memory():
    model = vgg("vgg11", width=0.25, head="compact", num_classes=10, dtype=np.float64)
    one, four = tv.summary(model, (3, 32, 32)), tv.summary(model, (4, 3, 32, 32))
    assert four.activations == 4 * one.activations and four.macs == 4 * one.macs
    assert four.params == one.params == sum(p.data.size for p in model.parameters())
    assert one.activation_bytes == 8 * one.activations
    assert "for a batch of 4" in str(four)


def test_summary_counts_batch_norm_and_lrn_as_layers_of_their_own():
    rows = tv.summary(vgg("vgg11_bn", width=0.25, head="compact"), (3, 32, 32)).rows
    assert [r.kind for r in rows[1:3]] == ["conv3-16", "batchnorm, relu"]
    assert rows[2].weights == 16 and rows[2].params == 32
    rows = tv.summary(vgg("vgg11_lrn", width=0.25, head="compact"), (3, 32, 32)).rows
    assert [r.kind for r in rows[1:4]] == ["conv3-16, relu", "lrn", "maxpool"]


def test_summary_leaves_the_model_as_it_was():
    model = vgg("vgg11", width=0.125, head="compact").train()
    before = model.state_dict()
    tv.summary(model, (3, 32, 32))
    assert model.training and all(m.training for _, m in model.named_modules())
    assert all(not m._forward_hooks for _, m in model.named_modules())
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_summary_rejects_a_bad_shape_and_reports_a_too_small_input():
    model = vgg("vgg11", width=0.125, head="compact")
    with pytest.raises(ValueError, match="summary: input_shape must be"):
        tv.summary(model, (32, 32))
    with pytest.raises(ValueError, match="16x16 is too small"):
        tv.summary(model, (3, 16, 16))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyvgg", "summary", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_prints_the_vgg16_table():
    result = run_cli("vgg16")
    assert result.returncode == 0, result.stderr
    for fragment in ["vgg16, input 3x224x224, float32, per image", "15,237,608", "58.1 MiB",
                     "138,357,544", "15.47G", "overcounts"]:
        assert fragment in result.stdout


def test_cli_json_and_options():
    result = run_cli("vgg11_bn", "--width", "0.25", "--head", "compact", "--input-size", "32",
                     "--in-channels", "1", "--num-classes", "10", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    model = vgg("vgg11_bn", width=0.25, head="compact", in_channels=1, num_classes=10)
    assert figures["params"] == sum(p.data.size for p in model.parameters())
    assert figures["model"] == "vgg11_bn" and figures["input_shape"] == [1, 1, 32, 32]


def test_cli_reports_bad_input_without_a_traceback():
    result = run_cli("vgg16", "--input-size", "16")
    assert result.returncode == 2
    assert "too small" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("vgg17")
    assert result.returncode == 2 and "unknown configuration 'vgg17'" in result.stderr


# --- the table from shapes alone (what ``tinyvgg summary`` prints) ---------------------------

@pytest.mark.parametrize("config, options, input_shape", [
    ("vgg11", dict(width=0.25, head="compact", num_classes=10), (3, 32, 32)),
    ("vgg11_lrn", dict(width=0.125), (2, 3, 64, 64)),  # the 2x2 map pooled up to 7x7
    ("vgg13_bn", dict(width=0.25, head="compact", hidden=48, in_channels=1), (1, 40, 40)),
    ("vgg16c", dict(width=0.125, num_classes=7, dtype=np.float64), (3, 3, 48, 56)),
    ("D", dict(width=0.0625, batch_norm=True), (3, 224, 224)),  # the pool that passes through
    ("vgg19", dict(width=0.25, head="compact", dropout=0.2), (2, 3, 32, 32)),
])
def test_the_table_from_shapes_is_the_forward_pass_s(config, options, input_shape):
    from tinyvgg.tools.summary import summary_from_shapes, vgg_summary
    options = dict(options)
    dtype = options.pop("dtype", np.float32)
    tv.manual_seed(7)
    model = vgg(config, dtype=dtype, **options)
    ran = tv.summary(model, input_shape)
    from_shapes = vgg_summary(config, input_shape, dtype=dtype, **options)
    assert from_shapes.to_dict() == ran.to_dict()
    assert str(from_shapes) == str(ran)
    assert summary_from_shapes(model, input_shape).to_dict() == ran.to_dict()


def test_vgg16_s_table_from_shapes_is_the_forward_pass_s(vgg16_summary):
    from tinyvgg.tools.summary import vgg_summary
    from_shapes = vgg_summary("vgg16", (3, 224, 224))
    assert from_shapes.to_dict() == vgg16_summary.to_dict()
    assert str(from_shapes) == str(vgg16_summary)


def test_the_summary_command_allocates_no_weights(capsys):
    """VGG-16's weights are 528 MiB in float32, its activations 58 MiB: the command needs
    neither."""
    import tracemalloc

    from tinyvgg.cli import main
    tracemalloc.start()
    try:
        assert main(["summary", "vgg16", "--batch", "2"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "vgg16, input 3x224x224, float32, for a batch of 2" in capsys.readouterr().out
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("layer, input_shape", [
    (lambda: nn.Conv3x3(3, 5), (2, 3, 7, 9)), (lambda: nn.Conv1x1(3, 5), (2, 3, 7, 9)),
    (lambda: nn.MaxPool2x2(), (2, 3, 7, 9)), (lambda: nn.ReLU(), (2, 3, 7, 9)),
    (lambda: nn.Tanh(), (2, 3, 7, 9)), (lambda: nn.Dropout(0.3), (2, 3, 7, 9)),
    (lambda: nn.BatchNorm2d(3), (2, 3, 7, 9)),
    (lambda: nn.LocalResponseNorm(3, 1e-3, 0.75, 2.0), (2, 3, 7, 9)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 9)), (lambda: nn.Flatten(), (2, 3, 7, 9)),
    (lambda: nn.Flatten(2), (2, 3, 7, 9)), (lambda: nn.Linear(9, 4), (2, 3, 7, 9)),
])
def test_each_layer_s_output_shape_is_the_one_forward_gives(layer, input_shape):
    module = layer()
    x = tv.tensor(np.random.default_rng(3).standard_normal(input_shape).astype(np.float32))
    assert module.output_shape(input_shape) == module(x).shape


def test_shape_errors_name_the_layer_and_the_table_from_shapes_needs_a_vgg():
    from tinyvgg.tools.summary import summary_from_shapes, vgg_summary
    model = vgg("vgg11", width=0.125, head="compact")
    with pytest.raises(ValueError, match=r"Conv3x3\(3, 8\): input has 1 channels but the "
                                         r"layer expects 3"):
        summary_from_shapes(model, (1, 32, 32))
    with pytest.raises(ValueError, match="16x16 is too small"):
        vgg_summary("vgg11", (3, 16, 16))
    with pytest.raises(ValueError, match="no weights are loaded"):
        vgg_summary("vgg11", (3, 32, 32), weights="vgg11.npz")
    with pytest.raises(TypeError, match="use summary"):
        summary_from_shapes(nn.Sequential(nn.Conv3x3(3, 4)), (3, 8, 8))


def test_layers_built_from_shapes_only_hold_no_writable_weights():
    from tinyvgg.nn.layers import shapes_only
    with shapes_only():
        conv, linear = nn.Conv3x3(512, 512), nn.Linear(25088, 4096)
        small = nn.Linear(6, 4)
    assert conv.weight.shape == (512, 512, 3, 3) and linear.weight.size == 25088 * 4096
    for p in (conv.weight, conv.bias, linear.weight, linear.bias):
        assert not p.data.flags.writeable and not any(p.data.strides)  # one value, seen often
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="read-only"):
        small.load_state_dict({"weight": rng.standard_normal((4, 6)).astype(np.float32),
                               "bias": rng.standard_normal(4).astype(np.float32)})
    assert nn.Linear(3, 2).weight.data.flags.writeable  # outside, layers are as ever
