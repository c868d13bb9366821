"""``tinyvgg experiment receptive-field``: fields measured by backprop, and VGG-16's recurrence."""
import numpy as np
import pytest

from tinyvgg.experiments import receptive_field as rf
from tinyvgg.ops.conv_cpu import conv3x3_cpu, using_conv3x3_cpu

#: VGG-16 at 224x224: (torchvision name, paper name, output side, receptive field, jump)
VGG16_FIELDS = [
    ("features.0", "conv1_1", 224, 3, 1), ("features.2", "conv1_2", 224, 5, 1),
    ("features.4", "pool1", 112, 6, 2),
    ("features.5", "conv2_1", 112, 10, 2), ("features.7", "conv2_2", 112, 14, 2),
    ("features.9", "pool2", 56, 16, 4),
    ("features.10", "conv3_1", 56, 24, 4), ("features.12", "conv3_2", 56, 32, 4),
    ("features.14", "conv3_3", 56, 40, 4), ("features.16", "pool3", 28, 44, 8),
    ("features.17", "conv4_1", 28, 60, 8), ("features.19", "conv4_2", 28, 76, 8),
    ("features.21", "conv4_3", 28, 92, 8), ("features.23", "pool4", 14, 100, 16),
    ("features.24", "conv5_1", 14, 132, 16), ("features.26", "conv5_2", 14, 164, 16),
    ("features.28", "conv5_3", 14, 196, 16), ("features.30", "pool5", 7, 212, 32),
]


@pytest.mark.parametrize("weights", ["positive", "signed"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_stacked_3x3_layers_see_2n_plus_1_pixels_around_the_centre(layers, weights):
    grad = rf.stacked_gradient(layers, size=15, seed=3, weights=weights)
    assert rf.nonzero_box(grad) == (7 - layers, 7 - layers, 2 * layers + 1, 2 * layers + 1)


def test_the_fields_are_measured_with_exact_zeros_whatever_rung_is_selected():
    """Winograd's transforms leave rounding residue where the gradient is zero: the
    experiment runs im2col for its measurements and leaves the selection as it was."""
    with using_conv3x3_cpu("winograd4x4"):
        grad = rf.stacked_gradient(2, size=15, channels=8, seed=3)
        assert conv3x3_cpu() == "winograd4x4"
        boxes = rf.measure_vgg16_fields(["features.7"], input_size=64, seed=1)
    assert rf.nonzero_box(grad) == (5, 5, 5, 5)
    assert boxes["features.7"][2:] == (14, 14)


def test_with_unit_weights_the_gradient_counts_paths():
    grad = rf.stacked_gradient(3, size=15, channels=1, weights="ones")
    trinomial = np.array([1, 3, 6, 7, 6, 3, 1])
    expected = np.zeros((15, 15))
    expected[4:11, 4:11] = np.outer(trinomial, trinomial)  # 3^3 paths per axis, 729 in all
    np.testing.assert_array_equal(grad, expected)


def test_the_recurrence_gives_the_known_vgg16_fields():
    rows = rf.vgg16_fields(224)
    assert [(r["layer"], r["name"], r["size"], r["rf"], r["jump"]) for r in rows] == VGG16_FIELDS
    # the zero padding of the 13 convolutions shifts the field: 2*1 + 2*2 + 3*4 + 3*8 + 3*16
    assert rows[-1]["start"] == -90


@pytest.fixture(scope="module")
def measured_224():
    return rf.measure_vgg16_fields(input_size=224, seed=1)


def test_backprop_measures_the_recurrence_on_every_vgg16_layer(measured_224):
    rows = rf.vgg16_fields(224)
    assert set(measured_224) == {r["layer"] for r in rows}
    for row in rows:  # a conv after each pool included: conv2_1, conv3_1, conv4_1, conv5_1
        box = measured_224[row["layer"]]
        assert box[2:] == (row["rf"], row["rf"]), row["name"]
        assert box == rf.expected_box(row, 224), row["name"]


def test_fields_wider_than_the_image_are_clipped_by_the_padding():
    rows = {r["layer"]: r for r in rf.vgg16_fields(96)}
    layers = ["features.5", "features.17", "features.24", "features.28"]
    measured = rf.measure_vgg16_fields(layers, input_size=96, seed=2)
    for layer in layers:
        assert measured[layer] == rf.expected_box(rows[layer], 96), layer
    assert measured["features.28"][2] < rows["features.28"]["rf"] == 196


def test_three_3x3_layers_have_45_percent_fewer_weights_than_one_7x7():
    rows = rf.parameter_rows((64, 512))
    assert [(r["channels"], r["stack3x3"], r["conv7x7"]) for r in rows] == [
        (64, 27 * 64 ** 2, 49 * 64 ** 2), (512, 7_077_888, 12_845_056)]
    assert rows[0]["fewer"] == pytest.approx(22 / 49)
    assert round(rows[1]["fewer"], 3) == 0.449


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stacked_gradient: weights"):
        rf.stacked_gradient(2, weights="random")
    with pytest.raises(ValueError, match="at least 7 pixels"):
        rf.stacked_gradient(3, size=5)
    with pytest.raises(ValueError, match="features.3 is not a convolution or pool"):
        rf.measure_vgg16_fields(["features.3"], input_size=64)
    with pytest.raises(ValueError, match="multiple of 32"):
        rf.measure_vgg16_fields(input_size=100)
    with pytest.raises(ValueError, match="zero everywhere"):
        rf.nonzero_box(np.zeros((3, 3)))


def test_the_experiment_prints_returns_and_draws(tmp_path):
    lines = []
    result = rf.run(tmp_path, seed=0, log=lines.append)
    assert result["stacked"] == {1: [3, 3], 2: [5, 5], 3: [7, 7]}
    assert result["paths"][3] == [7, 21, 42, 49, 42, 21, 7]
    assert [r["rf"] for r in result["vgg16"]] == [row[3] for row in VGG16_FIELDS]
    assert all(r["agrees"] for r in result["vgg16"])
    assert [p["channels"] for p in result["params"]] == [64, 128, 256, 512]
    text = "\n".join(lines)
    assert "features.28  conv5_3" in text and "196" in text and "212" in text
    assert "44.9%" in text and "3 nonlinearities instead of 1" in text
    assert result["figures"] == [str(tmp_path / "receptive-field.png")]
    assert (tmp_path / "receptive-field.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
