"""Every op's backward against float64 finite differences (tinyvgg.gradcheck), in both
gradcheck modes, and negative controls: wrong backwards must be caught and reported."""
import re

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import tinyvgg as tv
from helpers import (in_layout, layouts, layouts_4d, leaf, nchw_shapes, randn, rng, seeds,
                     small_nchw_shapes)
from tinyvgg import functional as F
from tinyvgg.tools.gradcheck import kink_free, tie_free
from tinyvgg.ops.activation import ReLU
from tinyvgg.ops.conv import Conv3x3
from tinyvgg.ops.linear import Linear
from tinyvgg.ops.lrn import LocalResponseNorm, channel_window_sums

MODES = ("full", "directional")
mode_param = pytest.mark.parametrize("mode", MODES)


def check(fn, inputs, mode):
    assert tv.gradcheck(fn, inputs, mode=mode) is True


@mode_param
@pytest.mark.parametrize("conv, k", [(F.conv3x3, 3), (F.conv1x1, 1)], ids=["conv3x3", "conv1x1"])
@given(shape=small_nchw_shapes, c_out=st.integers(1, 3), layout=layouts_4d, seed=seeds)
def test_conv_gradients(mode, conv, k, shape, c_out, layout, seed):
    inputs = {"x": leaf(in_layout(randn(seed, shape), layout)),
              "weight": leaf(randn(seed + 1, (c_out, shape[1], k, k))),
              "bias": leaf(randn(seed + 2, (c_out,)))}
    check(conv, inputs, mode)


@mode_param
@given(shape=small_nchw_shapes, c_out=st.integers(1, 3), layout=layouts_4d, seed=seeds)
def test_conv3x3_relu_gradients(mode, shape, c_out, layout, seed):
    """The fused op away from its kink: no output of the convolution within 1e-3 of 0."""
    x = in_layout(randn(seed, shape), layout)
    w, b = randn(seed + 1, (c_out, shape[1], 3, 3)), randn(seed + 2, (c_out,))
    before_relu = F.conv3x3(tv.tensor(x), tv.tensor(w), tv.tensor(b)).numpy()
    assume(before_relu.size == 0 or np.abs(before_relu).min() > 1e-3)
    check(F.conv3x3_relu, {"x": leaf(x), "weight": leaf(w), "bias": leaf(b)}, mode)


@mode_param
@given(shape=small_nchw_shapes.filter(lambda s: s[2] >= 2 and s[3] >= 2), layout=layouts_4d,
       seed=seeds)
def test_maxpool2x2_gradients(mode, shape, layout, seed):
    check(F.maxpool2x2, [leaf(in_layout(tie_free(shape, seed=seed), layout))], mode)


@mode_param
@given(shape=small_nchw_shapes, layout=layouts_4d, seed=seeds)
def test_relu_gradients(mode, shape, layout, seed):
    check(F.relu, [leaf(in_layout(kink_free(shape, seed=seed), layout))], mode)


@mode_param
@given(shape=small_nchw_shapes, layout=layouts_4d, seed=seeds)
def test_tanh_gradients_in_the_middle_and_the_flat_tails(mode, shape, layout, seed):
    check(F.tanh, [leaf(in_layout(3 * randn(seed, shape), layout))], mode)


@mode_param
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
       k=st.integers(1, 5), out=st.integers(1, 4), layout=layouts, seed=seeds)
def test_linear_gradients_for_2d_and_3d_input(mode, lead, k, out, layout, seed):
    inputs = {"x": leaf(in_layout(randn(seed, lead + (k,)), layout)),
              "weight": leaf(randn(seed + 1, (out, k))),
              "bias": leaf(randn(seed + 2, (out,)))}
    check(F.linear, inputs, mode)


@mode_param
@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple),
       start_dim=st.integers(-2, 1), layout=layouts, seed=seeds)
def test_flatten_gradients(mode, shape, start_dim, layout, seed):
    check(lambda x: F.flatten(x, start_dim), [leaf(in_layout(randn(seed, shape), layout))], mode)


@mode_param
@given(shape=small_nchw_shapes, out_size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       layout=layouts_4d, seed=seeds)
@example(shape=(2, 2, 5, 5), out_size=(3, 2), layout="channels_last", seed=0)  # smaller
@example(shape=(1, 2, 3, 4), out_size=(7, 5), layout="strided", seed=1)        # bigger
def test_adaptive_avg_pool2d_gradients_smaller_and_bigger_output(mode, shape, out_size, layout,
                                                                 seed):
    check(lambda x: F.adaptive_avg_pool2d(x, out_size),
          [leaf(in_layout(randn(seed, shape), layout))], mode)


@mode_param
@given(shape=small_nchw_shapes, training=st.booleans(), layout=layouts_4d, seed=seeds)
def test_batch_norm2d_gradients_in_train_and_eval(mode, shape, training, layout, seed):
    n, c, h, w = shape
    assume(not training or n * h * w > 1)
    running_mean, running_var = randn(seed + 3, (c,)), rng(seed).uniform(0.5, 2.0, c)

    def batch_norm(x, weight, bias):
        return F.batch_norm2d(x, running_mean.copy(), running_var.copy(), weight, bias,
                              training=training)

    inputs = {"x": leaf(in_layout(randn(seed, shape), layout)),
              "weight": leaf(randn(seed + 1, (c,))), "bias": leaf(randn(seed + 2, (c,)))}
    check(batch_norm, inputs, mode)


@mode_param
@given(shape=small_nchw_shapes, p=st.sampled_from([0.2, 0.5, 0.8]), seed=seeds,
       layout=layouts_4d)
def test_dropout_gradients_with_a_fixed_seed(mode, shape, p, seed, layout):
    check(lambda x: F.dropout(x, p=p, seed=seed),
          [leaf(in_layout(randn(seed, shape), layout))], mode)


@mode_param
@given(n=st.integers(1, 4), classes=st.integers(1, 5), smoothing=st.sampled_from([0.0, 0.2, 1.0]),
       layout=layouts, seed=seeds)
def test_cross_entropy_gradients(mode, n, classes, smoothing, layout, seed):
    labels = rng(seed).integers(0, classes, size=n)
    check(lambda z: F.cross_entropy(z, labels, label_smoothing=smoothing),
          [leaf(in_layout(3 * randn(seed, (n, classes)), layout))], mode)


@mode_param
@given(shape=nchw_shapes(max_n=2, max_c=6, max_hw=3), size=st.integers(1, 6),
       alpha=st.sampled_from([0.5, 1.0, 2.0]), layout=layouts_4d, seed=seeds)
@example(shape=(2, 5, 2, 3), size=3, alpha=2.0, layout="channels_last", seed=0)
@example(shape=(2, 5, 2, 3), size=4, alpha=2.0, layout="channels_last", seed=0)
def test_local_response_norm_gradients_for_odd_and_even_sizes(mode, shape, size, alpha, layout,
                                                              seed):
    check(lambda x: F.local_response_norm(x, size, alpha=alpha, beta=0.75, k=1.0),
          [leaf(in_layout(randn(seed, shape), layout))], mode)


# --- negative controls: a wrong backward must be caught, named and quantified --------------

class ConvWithScaledInputGrad(Conv3x3):
    @staticmethod
    def backward(ctx, g):
        dx, dw, db = Conv3x3.backward(ctx, g)
        return 1.5 * dx, dw, db


class LinearWithOneWrongSign(Linear):
    @staticmethod
    def backward(ctx, g):
        dx, dw, db = Linear.backward(ctx, g)
        dw = dw.copy()
        dw[1, 2] *= -1
        return dx, dw, db


class LinearWithoutBiasGrad(Linear):
    @staticmethod
    def backward(ctx, g):
        dx, dw, _ = Linear.backward(ctx, g)
        return dx, dw, None


class ReLUPassingNegatives(ReLU):
    @staticmethod
    def backward(ctx, g):
        return (g * (ctx.y > 0) + 0.1 * g,)


class LocalResponseNormWithoutCrossChannelTerm(LocalResponseNorm):
    """Treats the divisor as a constant: drops the gradient that flows through it."""

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.d ** -ctx.beta,)


class LocalResponseNormWithForwardWindow(LocalResponseNorm):
    """Sums the cross-channel term over the forward window instead of the turned-around
    one: the same for odd sizes, wrong for even ones."""

    @staticmethod
    def backward(ctx, g):
        x, d, size, alpha, beta = ctx.x, ctx.d, ctx.size, ctx.alpha, ctx.beta
        direct = g * d ** -beta
        cross = channel_window_sums(direct * x / d, size // 2, (size - 1) // 2)
        return (direct - (2 * alpha * beta / size) * x * cross,)


def conv_inputs():
    return {"x": leaf(randn(0, (2, 2, 4, 3))), "weight": leaf(randn(1, (3, 2, 3, 3))),
            "bias": leaf(randn(2, (3,)))}


def linear_inputs():
    return {"x": leaf(randn(0, (4, 5))), "weight": leaf(randn(1, (3, 5))),
            "bias": leaf(randn(2, (3,)))}


def keyword_call(op):
    """``op`` called with gradcheck's dict inputs (``Function.apply`` takes tensors by position)."""
    return lambda **inputs: op.apply(*inputs.values())


NUMBER = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?|-?inf|nan)"
BROKEN_BACKWARDS = [
    pytest.param(ConvWithScaledInputGrad, conv_inputs, "x", None, id="conv dx off by 1.5x"),
    pytest.param(LinearWithOneWrongSign, linear_inputs, "weight", (1, 2),
                 id="linear dw one element wrong sign"),
    pytest.param(LinearWithoutBiasGrad, linear_inputs, "bias", None,
                 id="linear missing bias grad"),
    pytest.param(ReLUPassingNegatives, lambda: {"x": leaf(kink_free((2, 3, 3, 3)))}, "x",
                 None, id="relu gradient leaks through negatives"),
]


@mode_param
@pytest.mark.parametrize("op, make_inputs, bad_input, bad_element", BROKEN_BACKWARDS)
def test_wrong_backward_is_caught_and_reported(mode, op, make_inputs, bad_input, bad_element):
    with pytest.raises(tv.GradcheckError) as caught:
        tv.gradcheck(keyword_call(op), make_inputs(), mode=mode)
    message = str(caught.value)
    assert f"gradcheck failed for {bad_input} " in message
    found = re.search(rf"numeric {NUMBER}, analytic {NUMBER}", message)
    assert found, message
    numeric, analytic = (float(v) for v in found.groups())
    assert not np.isclose(numeric, analytic, rtol=1e-3, atol=1e-6), message
    if bad_element is not None:
        assert f"at element {bad_element}" in message


def test_wrong_backward_message_names_the_dict_key_shape_and_mode():
    inputs = {"x": leaf(randn(0, (4, 5))), "weight": leaf(randn(1, (3, 5))),
              "my_bias": leaf(randn(2, (3,)))}
    with pytest.raises(tv.GradcheckError, match=r"my_bias \(shape \(3,\)\).*\[full Jacobian\]"):
        tv.gradcheck(keyword_call(LinearWithoutBiasGrad), inputs, mode="full")


@pytest.mark.parametrize("n, how", [(20, "[full Jacobian]"), (1000, "[directional]")])
def test_auto_mode_uses_the_full_jacobian_only_for_small_inputs(n, how):
    x = leaf(kink_free((n,)))
    with pytest.raises(tv.GradcheckError, match=re.escape(how)):
        tv.gradcheck(keyword_call(ReLUPassingNegatives), {"x": x})


def test_inputs_are_restored_after_a_check():
    inputs = conv_inputs()
    before = {k: t.numpy().copy() for k, t in inputs.items()}
    tv.gradcheck(F.conv3x3, inputs, mode="full")
    for name, t in inputs.items():
        np.testing.assert_array_equal(t.numpy(), before[name])


def test_gradcheck_rejects_unknown_mode_and_nothing_to_check():
    x = leaf(randn(0, (2, 3)))
    with pytest.raises(ValueError, match="mode"):
        tv.gradcheck(F.relu, [x], mode="fast")
    with pytest.raises(ValueError, match="requires_grad"):
        tv.gradcheck(F.relu, [leaf(randn(0, (2, 3)), requires_grad=False)])


@mode_param
@pytest.mark.parametrize("op, size", [
    pytest.param(LocalResponseNormWithoutCrossChannelTerm, 3, id="lrn without cross term, size 3"),
    pytest.param(LocalResponseNormWithoutCrossChannelTerm, 4, id="lrn without cross term, size 4"),
    pytest.param(LocalResponseNormWithForwardWindow, 4, id="lrn forward window, even size 4")])
def test_wrong_local_response_norm_backward_is_caught(mode, op, size):
    x = leaf(randn(0, (2, 4, 2, 3)))
    with pytest.raises(tv.GradcheckError) as caught:
        tv.gradcheck(lambda x: op.apply(x, size=size, alpha=1.0, beta=0.75, k=1.0), {"x": x},
                     mode=mode)
    message = str(caught.value)
    assert "gradcheck failed for x " in message
    found = re.search(rf"numeric {NUMBER}, analytic {NUMBER}", message)
    assert found, message
    assert not np.isclose(*(float(v) for v in found.groups()), rtol=1e-3, atol=1e-6), message


@mode_param
def test_forward_window_backward_is_right_for_odd_sizes(mode):
    """The even-size control above fails only because of the window's asymmetry."""
    x = leaf(randn(0, (2, 4, 2, 3)))
    check(lambda x: LocalResponseNormWithForwardWindow.apply(x, size=3, alpha=1.0, beta=0.75,
                                                             k=1.0), {"x": x}, mode)
