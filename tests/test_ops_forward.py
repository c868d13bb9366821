"""Every fast op against its naive loop reference, over drawn shapes, dtypes and memory layouts."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from helpers import (assert_close, dtypes, in_layout, layouts, layouts_4d, leaf, nchw_shapes,
                     randn, rng, seeds, small_integers)
from tinyvgg import functional as F
from tinyvgg.ops.activation import relu_naive, tanh_naive
from tinyvgg.ops.conv_cpu import conv_backward_naive, conv_naive
from tinyvgg.ops.dropout import dropout_mask_naive
from tinyvgg.ops.linear import linear_naive
from tinyvgg.ops.loss import cross_entropy_naive
from tinyvgg.ops.lrn import local_response_norm_backward_naive, local_response_norm_naive
from tinyvgg.ops.norm import batch_norm2d_naive
from tinyvgg.ops.pool import (adaptive_avg_pool2d_naive, maxpool2x2_backward_naive,
                              maxpool2x2_naive)
from tinyvgg.ops.shape import flatten_naive

CONVS = [pytest.param(F.conv3x3, 3, id="conv3x3"), pytest.param(F.conv1x1, 1, id="conv1x1")]


@pytest.mark.parametrize("conv, k", CONVS)
@given(shape=nchw_shapes(), c_out=st.integers(1, 4), with_bias=st.booleans(), dtype=dtypes,
       layout=layouts_4d, seed=seeds)
def test_conv_forward_matches_naive(conv, k, shape, c_out, with_bias, dtype, layout, seed):
    x = in_layout(randn(seed, shape, dtype), layout)
    w = randn(seed + 1, (c_out, shape[1], k, k), dtype)
    b = randn(seed + 2, (c_out,), dtype) if with_bias else None
    y = conv(leaf(x, False), leaf(w, False), None if b is None else leaf(b, False))
    assert y.shape == (shape[0], c_out) + shape[2:]
    assert_close(y, conv_naive(x, w, b))


@pytest.mark.parametrize("conv, k", CONVS)
@given(shape=nchw_shapes(), c_out=st.integers(1, 4), dtype=dtypes, layout=layouts_4d,
       seed=seeds)
def test_conv_backward_matches_naive(conv, k, shape, c_out, dtype, layout, seed):
    x = leaf(in_layout(randn(seed, shape, dtype), layout))
    w = leaf(randn(seed + 1, (c_out, shape[1], k, k), dtype))
    b = leaf(randn(seed + 2, (c_out,), dtype))
    g = in_layout(randn(seed + 3, (shape[0], c_out) + shape[2:], dtype), layout)
    conv(x, w, b).backward(g)
    dx, dw, db = conv_backward_naive(x.numpy(), w.numpy(), g)
    assert_close(x.grad, dx)
    assert_close(w.grad, dw)
    assert_close(b.grad, db)


@st.composite
def pool_inputs(draw):
    """(x, grad_out) for maxpool2x2: continuous values, or small integers full of ties."""
    shape = draw(nchw_shapes(min_hw=2))
    dtype, layout, seed = draw(dtypes), draw(layouts_4d), draw(seeds)
    make = draw(st.sampled_from([randn, small_integers]))
    x = in_layout(make(seed, shape, dtype), layout)
    g = randn(seed + 1, shape[:2] + (shape[2] // 2, shape[3] // 2), dtype)
    return x, g


@given(inputs=pool_inputs())
def test_maxpool2x2_forward_matches_naive(inputs):
    x, _ = inputs
    y_naive, _ = maxpool2x2_naive(x)
    y = F.maxpool2x2(leaf(x, False))
    np.testing.assert_array_equal(y.numpy(), y_naive)
    assert y.dtype == x.dtype


@given(inputs=pool_inputs())
def test_maxpool2x2_gradient_goes_to_the_naive_argmax(inputs):
    """With ties, only the first maximum of each window (row-major) receives the gradient."""
    x, g = inputs
    xt = leaf(x)
    F.maxpool2x2(xt).backward(g)
    np.testing.assert_array_equal(xt.grad, maxpool2x2_backward_naive(x, g))


def test_maxpool2x2_nan_wins_its_window_like_naive():
    x = small_integers(0, (1, 2, 4, 5))
    x[0, 0, 0, 1] = np.nan            # second position of window (0, 0)
    x[0, 1, 2, 2] = x[0, 1, 3, 3] = np.nan  # two NaNs in window (1, 1): the first wins
    g = randn(1, (1, 2, 2, 2))
    xt = leaf(x)
    y = F.maxpool2x2(xt)
    y_naive, _ = maxpool2x2_naive(x)
    np.testing.assert_array_equal(y.numpy(), y_naive)
    assert np.isnan(y.numpy()[0, 0, 0, 0]) and np.isnan(y.numpy()[0, 1, 1, 1])
    y.backward(g)
    np.testing.assert_array_equal(xt.grad, maxpool2x2_backward_naive(x, g))


@given(shape=nchw_shapes(), dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_relu_forward_matches_naive(shape, dtype, layout, seed):
    x = in_layout(small_integers(seed, shape, dtype) * randn(seed, shape, dtype), layout)
    np.testing.assert_array_equal(F.relu(leaf(x, False)).numpy(), relu_naive(x))


@given(shape=nchw_shapes(), dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_tanh_forward_matches_naive(shape, dtype, layout, seed):
    x = in_layout(4 * randn(seed, shape, dtype), layout)
    y = F.tanh(leaf(x, False))
    assert y.dtype == x.dtype
    assert_close(y, tanh_naive(x))


@given(n=st.integers(1, 5), k=st.integers(1, 6), out=st.integers(1, 5), with_bias=st.booleans(),
       dtype=dtypes, layout=layouts, seed=seeds)
def test_linear_forward_matches_naive(n, k, out, with_bias, dtype, layout, seed):
    x = in_layout(randn(seed, (n, k), dtype), layout)
    w = in_layout(randn(seed + 1, (out, k), dtype), layout)
    b = randn(seed + 2, (out,), dtype) if with_bias else None
    y = F.linear(leaf(x, False), leaf(w, False), None if b is None else leaf(b, False))
    assert_close(y, linear_naive(x, w, b))


@given(lead=st.tuples(st.integers(1, 3), st.integers(1, 3)), k=st.integers(1, 5),
       out=st.integers(1, 4), dtype=dtypes, layout=layouts, seed=seeds)
def test_linear_on_3d_input_maps_the_last_axis(lead, k, out, dtype, layout, seed):
    x = in_layout(randn(seed, lead + (k,), dtype), layout)
    w, b = randn(seed + 1, (out, k), dtype), randn(seed + 2, (out,), dtype)
    y = F.linear(leaf(x, False), leaf(w, False), leaf(b, False))
    expected = linear_naive(x.reshape(-1, k), w, b).reshape(lead + (out,))
    assert_close(y, expected)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple), dtype=dtypes,
       layout=layouts, seed=seeds)
def test_flatten_matches_naive_c_order(shape, dtype, layout, seed):
    x = in_layout(randn(seed, shape, dtype), layout)
    np.testing.assert_array_equal(F.flatten(leaf(x, False)).numpy(), flatten_naive(x))


@given(shape=nchw_shapes(), out_size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_adaptive_avg_pool2d_matches_naive(shape, out_size, dtype, layout, seed):
    x = in_layout(randn(seed, shape, dtype), layout)
    y = F.adaptive_avg_pool2d(leaf(x, False), out_size)
    assert_close(y, adaptive_avg_pool2d_naive(x, out_size))


@given(shape=nchw_shapes(), affine=st.booleans(), dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_batch_norm2d_train_matches_naive(shape, affine, dtype, layout, seed):
    n, c, h, w = shape
    assume(n * h * w > 1)
    x = in_layout(randn(seed, shape, dtype) * 3 + 1, layout)
    gamma = randn(seed + 1, (c,), dtype) if affine else None
    beta = randn(seed + 2, (c,), dtype) if affine else None
    y = F.batch_norm2d(leaf(x, False), weight=None if gamma is None else leaf(gamma, False),
                       bias=None if beta is None else leaf(beta, False), training=True)
    assert_close(y, batch_norm2d_naive(x, gamma, beta, 1e-5))


@given(shape=nchw_shapes(), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
       seed=st.integers(0, 2**64 - 1), dtype=dtypes, layout=layouts_4d, data_seed=seeds)
def test_dropout_mask_matches_naive(shape, p, seed, dtype, layout, data_seed):
    x = in_layout(randn(data_seed, shape, dtype), layout)
    y = F.dropout(leaf(x, False), p=p, seed=seed).numpy()
    mask = dropout_mask_naive(shape, p, seed)
    np.testing.assert_array_equal(y != 0, mask)
    if p < 1:
        assert_close(y[mask], x[mask] * dtype(1 / (1 - p)))


@given(n=st.integers(1, 5), classes=st.integers(1, 6), scale=st.sampled_from([1.0, 40.0]),
       smoothing=st.sampled_from([0.0, 0.1, 0.37, 1.0]), dtype=dtypes, layout=layouts,
       seed=seeds)
def test_cross_entropy_matches_naive(n, classes, scale, smoothing, dtype, layout, seed):
    logits = in_layout(scale * randn(seed, (n, classes), dtype), layout)
    labels = rng(seed).integers(0, classes, size=n)
    loss = F.cross_entropy(leaf(logits, False), labels, label_smoothing=smoothing)
    assert loss.shape == ()
    assert_close(loss, cross_entropy_naive(logits, labels, smoothing))


def test_label_smoothing_has_its_minimum_where_the_label_leads_by_the_stated_margin():
    """With e > 0 the loss stops falling once z[t] - z[other] = log(C (1 - e) / e + 1)."""
    classes, e = 10, 0.1
    margin = np.log(classes * (1 - e) / e + 1)
    labels = np.array([3])
    losses = []
    for lead in (margin - 0.5, margin, margin + 0.5):
        logits = np.zeros((1, classes))
        logits[0, 3] = lead
        losses.append(F.cross_entropy(leaf(logits, False), labels, label_smoothing=e).item())
    assert losses[1] < losses[0] and losses[1] < losses[2]


#: (alpha, beta, k): the default, and settings where the cross-channel term is large
lrn_params = st.sampled_from([(1e-4, 0.75, 1.0), (0.5, 0.75, 2.0), (2.0, 0.5, 1.0),
                              (1.0, 1.5, 0.5)])


@given(shape=nchw_shapes(max_c=7), size=st.integers(1, 6), params=lrn_params, dtype=dtypes,
       layout=layouts_4d, seed=seeds)
def test_local_response_norm_forward_matches_naive(shape, size, params, dtype, layout, seed):
    x = in_layout(2 * randn(seed, shape, dtype), layout)
    y = F.local_response_norm(leaf(x, False), size, *params)
    assert_close(y, local_response_norm_naive(x, size, *params))


@given(shape=nchw_shapes(max_c=7), size=st.integers(1, 6), params=lrn_params, dtype=dtypes,
       layout=layouts_4d, seed=seeds)
def test_local_response_norm_backward_matches_naive(shape, size, params, dtype, layout, seed):
    """The naive backward walks each output's window forwards; the fast one sums over the
    window turned around, which differs from the forward window for even sizes."""
    x = leaf(in_layout(2 * randn(seed, shape, dtype), layout))
    g = in_layout(randn(seed + 1, shape, dtype), layout)
    F.local_response_norm(x, size, *params).backward(g)
    assert_close(x.grad, local_response_norm_backward_naive(x.numpy(), g, size, *params))


def test_adaptive_avg_pool2d_to_its_own_size_passes_the_input_through():
    x = leaf(in_layout(randn(0, (2, 3, 7, 7)), "channels_last"))
    y = F.adaptive_avg_pool2d(x, 7)
    assert y.data is x.data
    g = randn(1, (2, 3, 7, 7))
    y.backward(g)
    np.testing.assert_array_equal(x.grad, g)
