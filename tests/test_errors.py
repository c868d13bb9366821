"""Bad input is rejected with the right exception type and a message that names the op
(or layer) and the expected and actual values."""
import math
import re

import numpy as np
import pytest

import tinyvgg as tv
from helpers import leaf, randn
from tinyvgg import functional as F
from tinyvgg import nn
from tinyvgg.ops.conv_cpu import CONV3X3_CPU, conv3x3_backward, conv3x3_forward


def t(*shape, dtype=np.float32):
    return leaf(randn(0, shape, dtype), requires_grad=False)


def raises(exception, *fragments):
    """pytest.raises for ``exception`` whose message contains every fragment, in order."""
    return pytest.raises(exception, match="(?s)" + ".*".join(re.escape(f) for f in fragments))


def test_conv_rejects_wrong_input_rank():
    with raises(ValueError, "conv3x3", "input must be 4-D", "got 3-D shape (3, 5, 5)"):
        F.conv3x3(t(3, 5, 5), t(4, 3, 3, 3))


def test_conv_rejects_channel_mismatch():
    with raises(ValueError, "conv3x3", "input has 2 channels but the weight expects 3",
                "(4, 3, 3, 3)", "(1, 2, 5, 5)"):
        F.conv3x3(t(1, 2, 5, 5), t(4, 3, 3, 3))


@pytest.mark.parametrize("conv, weight_shape, expected", [
    (F.conv3x3, (4, 3, 1, 1), "(C_out, C_in, 3, 3)"),
    (F.conv1x1, (4, 3, 3, 3), "(C_out, C_in, 1, 1)")], ids=["conv3x3", "conv1x1"])
def test_conv_rejects_weight_of_the_wrong_kernel_size(conv, weight_shape, expected):
    with raises(ValueError, conv.__name__, expected, f"got {weight_shape}"):
        conv(t(1, 3, 5, 5), t(*weight_shape))


@pytest.mark.parametrize("conv, weight_shape", [(F.conv3x3, (4, 3, 3, 3)),
                                                 (F.conv1x1, (4, 3, 1, 1))],
                         ids=["conv3x3", "conv1x1"])
@pytest.mark.parametrize("shape", [(1, 3, 0, 5), (2, 3, 5, 0), (1, 3, 0, 0)])
def test_conv_rejects_an_image_without_pixels(conv, weight_shape, shape):
    """As PyTorch does: an empty image has no 3x3 neighbourhoods to convolve."""
    with raises(ValueError, conv.__name__, "expected H, W >= 1", f"got shape {shape}"):
        conv(t(*shape), t(*weight_shape))


@pytest.mark.parametrize("name", list(CONV3X3_CPU) + ["auto"])
def test_every_conv3x3_rung_shares_the_check_for_an_image_without_pixels(name):
    x, w = randn(0, (2, 3, 0, 6)), randn(1, (4, 3, 3, 3))
    with raises(ValueError, "conv3x3_forward", "expected H, W >= 1", "got shape (2, 3, 0, 6)"):
        conv3x3_forward(x, w, implementation=name)
    with raises(ValueError, "conv3x3_backward", "expected H, W >= 1"):
        conv3x3_backward(x, w, randn(2, (2, 4, 0, 6)), implementation=name)


@pytest.mark.parametrize("conv, k", [(F.conv3x3, 3), (F.conv1x1, 1)], ids=["conv3x3", "conv1x1"])
@pytest.mark.parametrize("c_out, c_in", [(0, 3), (4, 0)])
def test_conv_rejects_a_weight_without_channels(conv, k, c_out, c_in):
    with raises(ValueError, conv.__name__, "at least one output and one input channel",
                f"got shape ({c_out}, {c_in}, {k}, {k})"):
        conv(t(2, c_in, 5, 5), t(c_out, c_in, k, k))


@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (2, 3, 4, 0)])
def test_adaptive_pool_rejects_an_image_without_pixels(shape):
    """Its bins would average no pixels: no answer, where zeros came out."""
    with raises(ValueError, "adaptive_avg_pool2d", "expected H, W >= 1", f"got shape {shape}"):
        F.adaptive_avg_pool2d(t(*shape), 2)


def test_an_empty_batch_gives_empty_results_and_zero_gradients():
    """N = 0 is the one zero-size axis the image ops take, as in PyTorch."""
    x = leaf(randn(0, (0, 3, 6, 6)))
    w3, w1 = leaf(randn(1, (4, 3, 3, 3))), leaf(randn(2, (5, 4, 1, 1)))
    y = F.maxpool2x2(F.conv1x1(F.conv3x3(x, w3), w1))
    assert y.shape == (0, 5, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_array_equal(w3.grad, np.zeros_like(w3.data))
    np.testing.assert_array_equal(w1.grad, np.zeros_like(w1.data))


@pytest.mark.parametrize("x_shape, w_shape", [((0, 5), (2, 5)), ((0, 4, 5), (2, 5)),
                                              ((3, 0), (2, 0)), ((3, 5), (0, 5))],
                         ids=["no rows", "no rows 3-D", "no in_features", "no out_features"])
def test_linear_with_a_zero_size_axis_follows_its_definition(x_shape, w_shape):
    """y = x W^T + b holds for empty sums too: no in_features leaves the bias."""
    x, w, b = leaf(randn(0, x_shape)), leaf(randn(1, w_shape)), leaf(randn(2, w_shape[:1]))
    y = F.linear(x, w, b)
    np.testing.assert_allclose(y.data, x.data @ w.data.T + b.data)
    g = randn(3, y.shape)
    y.backward(g)
    np.testing.assert_allclose(x.grad, g @ w.data)
    n = math.prod(x_shape[:-1])
    rows, g_rows = x.data.reshape(n, w_shape[1]), g.reshape(n, w_shape[0])
    np.testing.assert_allclose(w.grad, g_rows.T @ rows)
    np.testing.assert_allclose(b.grad, g_rows.sum(axis=0))


def test_conv_rejects_bias_of_wrong_shape():
    with raises(ValueError, "conv3x3", "bias must have shape (4,)", "got (3,)"):
        F.conv3x3(t(1, 3, 5, 5), t(4, 3, 3, 3), t(3))


def test_dtype_mix_is_a_type_error():
    with raises(TypeError, "conv3x3", "share one dtype", "float32", "weight float64"):
        F.conv3x3(t(1, 3, 5, 5), t(4, 3, 3, 3, dtype=np.float64))


@pytest.mark.parametrize("op, name", [(F.relu, "relu"), (F.tanh, "tanh"),
                                      (F.maxpool2x2, "maxpool2x2"),
                                      (lambda x: F.dropout(x, 0.5, seed=0), "dropout"),
                                      (lambda x: F.local_response_norm(x, 3),
                                       "local_response_norm")],
                         ids=["relu", "tanh", "maxpool2x2", "dropout", "local_response_norm"])
def test_integer_input_is_a_type_error(op, name):
    with raises(TypeError, name, "float32 or float64", "int64"):
        op(tv.tensor(np.ones((1, 1, 2, 2), dtype=np.int64)))


def test_array_instead_of_tensor_is_a_type_error():
    with raises(TypeError, "relu", "Tensor", "ndarray"):
        F.relu(np.ones(3))


def test_linear_rejects_in_features_mismatch():
    with raises(ValueError, "linear", "in_features = 5", "(2, 5)", "got input shape (4, 6)"):
        F.linear(t(4, 6), t(2, 5))


def test_cross_entropy_rejects_labels_out_of_range():
    with raises(ValueError, "cross_entropy", "[0, 3)", "[3, -1]"):
        F.cross_entropy(t(4, 3), np.array([0, 3, 1, -1]))


@pytest.mark.parametrize("smoothing, error, words", [
    (-0.1, ValueError, "in [0, 1], got -0.1"), (1.5, ValueError, "in [0, 1], got 1.5"),
    (float("nan"), ValueError, "in [0, 1], got nan"), ("0.1", TypeError, "got str"),
    (True, TypeError, "got bool")])
def test_cross_entropy_rejects_label_smoothing_outside_0_to_1(smoothing, error, words):
    with raises(error, "cross_entropy", "label_smoothing must be", words):
        F.cross_entropy(t(4, 3), np.array([0, 2, 1, 1]), label_smoothing=smoothing)


def test_cross_entropy_rejects_float_labels():
    with raises(TypeError, "cross_entropy", "integers", "float64"):
        F.cross_entropy(t(2, 3), np.array([0.0, 1.0]))


def test_cross_entropy_rejects_wrong_label_shape():
    with raises(ValueError, "cross_entropy", "shape (4,)", "(4, 3)", "got (4, 1)"):
        F.cross_entropy(t(4, 3), np.zeros((4, 1), dtype=np.int64))


def test_maxpool_rejects_a_1x1_input():
    with raises(ValueError, "maxpool2x2", "at least 2x2", "(1, 2, 1, 1)"):
        F.maxpool2x2(t(1, 2, 1, 1))


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", None])
def test_dropout_rejects_p_outside_0_1(p):
    with raises(ValueError, "dropout", "[0, 1]", repr(p)):
        F.dropout(t(2, 3), p, seed=0)
    with raises(ValueError, "dropout", "[0, 1]", repr(p)):
        nn.Dropout(p)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "7", True])
def test_dropout_rejects_bad_seed(seed):
    with raises(ValueError, "dropout", "seed", "[0, 2**64)", repr(seed)):
        F.dropout(t(2, 3), 0.5, seed=seed)


def test_manual_seed_rejects_bad_seed():
    with raises(ValueError, "manual_seed", "seed", "-3"):
        tv.manual_seed(-3)


@pytest.mark.parametrize("output_size, fragment", [
    (0, "must be positive, got (0, 0)"), ((2, -1), "must be positive, got (2, -1)"),
    ("big", "int or a pair of ints, got 'big'"), ((1, 2, 3), "int or a pair of ints")])
def test_adaptive_pool_rejects_bad_output_size(output_size, fragment):
    with raises(ValueError, "adaptive_avg_pool2d", fragment):
        F.adaptive_avg_pool2d(t(1, 2, 4, 4), output_size)
    with raises(ValueError, "AdaptiveAvgPool2d", fragment):
        nn.AdaptiveAvgPool2d(output_size)


def test_batch_norm_training_needs_more_than_one_value_per_channel():
    with raises(ValueError, "batch_norm2d", "more than one value per channel", "(1, 3, 1, 1)"):
        F.batch_norm2d(t(1, 3, 1, 1), training=True)


def test_batch_norm_rejects_statistics_of_wrong_shape():
    with raises(ValueError, "batch_norm2d", "running_mean must have shape (3,)", "got (4,)"):
        F.batch_norm2d(t(2, 3, 2, 2), np.zeros(4, np.float32), np.ones(3, np.float32))


def test_batch_norm_eval_needs_running_statistics():
    with raises(ValueError, "batch_norm2d", "evaluation mode", "running_mean"):
        F.batch_norm2d(t(2, 3, 2, 2), training=False)


@pytest.mark.parametrize("start_dim", [4, -5])
def test_flatten_rejects_bad_start_dim(start_dim):
    with raises(ValueError, "flatten", "start_dim", "4 axes", f"got {start_dim}"):
        F.flatten(t(1, 2, 3, 4), start_dim)


def test_module_error_names_the_layer():
    model = nn.Sequential(nn.Conv3x3(3, 8), nn.ReLU(), nn.Linear(8, 2))
    with raises(ValueError, "Conv3x3(3, 8) at 0: conv3x3: input has 4 channels but the weight "
                "expects 3"):
        model(t(1, 4, 5, 5))


def test_module_error_names_the_innermost_layer_once():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ValueError) as caught:
        model(t(2, 3, 5))
    message = str(caught.value)
    assert message.startswith("Linear(in_features=12, out_features=2) at 1: linear: ")
    assert "got input shape (2, 15)" in message
    assert message.count("Linear(") == 1 and "Sequential" not in message


def test_layer_constructors_reject_bad_arguments():
    with raises(ValueError, "Conv3x3", "in_channels=0"):
        nn.Conv3x3(0, 4)
    with raises(TypeError, "Linear", "float32 or float64", "int32"):
        nn.Linear(2, 3, dtype=np.int32)
    with raises(ValueError, "BatchNorm2d", "num_features", "0"):
        nn.BatchNorm2d(0)


def test_unknown_device_is_rejected():
    with raises(ValueError, "unknown device 'tpu'", "cpu"):
        tv.tensor([1.0], device="tpu")


def test_local_response_norm_rejects_wrong_input_rank():
    with raises(ValueError, "local_response_norm", "input must be 4-D",
                "got 3-D shape (3, 5, 5)"):
        F.local_response_norm(t(3, 5, 5), 3)


@pytest.mark.parametrize("arguments, fragments", [
    (dict(size=0), ("size", "positive integer", "got 0")),
    (dict(size=-2), ("size", "positive integer", "got -2")),
    (dict(size=2.5), ("size", "positive integer", "got 2.5")),
    (dict(size=True), ("size", "positive integer", "got True")),
    (dict(size=3, k=0.0), ("k must be positive", "got 0.0")),
    (dict(size=3, k=-1), ("k must be positive", "got -1.0")),
    (dict(size=3, alpha=-0.1), ("alpha must be >= 0", "got -0.1")),
    (dict(size=3, beta=float("nan")), ("beta must be a finite real number", "got nan")),
    (dict(size=3, alpha="big"), ("alpha must be a finite real number", "got 'big'"))],
    ids=["size 0", "size -2", "size 2.5", "size True", "k 0", "k -1", "alpha < 0", "beta nan",
         "alpha str"])
def test_local_response_norm_rejects_bad_arguments(arguments, fragments):
    with raises(ValueError, "local_response_norm", *fragments):
        F.local_response_norm(t(1, 4, 2, 2), **arguments)
    with raises(ValueError, "LocalResponseNorm", *fragments):
        nn.LocalResponseNorm(**arguments)


def test_local_response_norm_layer_error_names_the_layer():
    with raises(ValueError, "LocalResponseNorm(3, alpha=0.0001, beta=0.75, k=1.0): "
                "local_response_norm: input must be 4-D"):
        nn.LocalResponseNorm(3)(t(3, 5, 5))
