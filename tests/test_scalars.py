"""0-d tensors (shape ()) through the elementwise ops and the reductions.

NumPy returns scalars (np.float64, np.float32), not 0-d arrays, from arithmetic on 0-d
arrays (``a * b``, ``np.tanh(a)``); the engine keeps arrays in ``.data`` and ``.grad``
all the same (``backend.as_array``, where an op's result becomes a tensor and where a
gradient reaches one), so the next op and backward work.

Forward against NumPy in both dtypes and backward against finite differences
(tinyvgg.gradcheck, float64), on shapes that include () and odd sizes, broadcasting
against a 0-d operand, and non-contiguous inputs; a regularised loss written the
natural way, on the CPU and the GPU; ``.data`` and ``.grad`` are always arrays; and
the ops that need a layout reject 0-d input with an error that names the op."""
from __future__ import annotations

import operator
import re
from typing import Callable, NamedTuple

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinyvgg as tv
from helpers import FLOAT_DTYPES, RTOL, assert_close, dtypes, leaf, randn, seeds
from tinyvgg import backend
from tinyvgg import functional as F
from tinyvgg.tools.gradcheck import kink_free
from tinyvgg.ops.dropout import dropout_mask_naive
from tinyvgg.ops.loss import cross_entropy_naive

DROPOUT_P, DROPOUT_SEED = 0.5, 1   # this seed keeps the one element of a 0-d input


class Op(NamedTuple):
    fn: Callable                 # of tensors
    ref: Callable                # the same of NumPy arrays
    arity: int = 1
    values: Callable = randn     # (seed, shape, dtype) -> array
    tol: dict = {}               # gradcheck tolerances, where the defaults do not fit


def dropout_ref(x):
    mask = dropout_mask_naive(x.shape, DROPOUT_P, DROPOUT_SEED)
    return x * mask * x.dtype.type(1 / (1 - DROPOUT_P))


OPS = {
    # elementwise, one tensor (and a Python number)
    "neg": Op(operator.neg, operator.neg),
    "radd": Op(lambda x: 1.5 + x, lambda x: 1.5 + x),
    "rsub": Op(lambda x: 1.5 - x, lambda x: 1.5 - x),
    "rmul": Op(lambda x: 0.5 * x, lambda x: 0.5 * x),
    "relu": Op(F.relu, lambda x: np.maximum(x, 0),
               values=lambda seed, shape, dtype: kink_free(shape, dtype, seed=seed)),
    "tanh": Op(F.tanh, np.tanh),
    "dropout": Op(lambda x: F.dropout(x, p=DROPOUT_P, seed=DROPOUT_SEED), dropout_ref),
    # float32 on the way: finite differences need a step far above its rounding
    "cast": Op(lambda x: x.to(np.float32).to(np.float64),
               lambda x: x.astype(np.float32).astype(np.float64),
               tol=dict(eps=1e-3, atol=1e-4, rtol=1e-4)),
    # elementwise, two tensors (same shape, or one of them 0-d and broadcast)
    "add": Op(operator.add, operator.add, arity=2),
    "sub": Op(operator.sub, operator.sub, arity=2),
    "mul": Op(operator.mul, operator.mul, arity=2),
    "functional.add": Op(F.add, operator.add, arity=2),
    "functional.mul": Op(F.mul, operator.mul, arity=2),
    # reductions
    "sum": Op(lambda x: x.sum(), np.sum),
    "mean": Op(lambda x: x.mean(), np.mean),
}

#: shapes of up to 3 axes with odd sizes; () is the 0-d tensor
shapes = st.lists(st.integers(1, 5), max_size=3).map(tuple)
#: for two-tensor ops: which operand is 0-d (and broadcast against the other)
BROADCASTS = ("same", "0-d first", "0-d second")
broadcasts = st.sampled_from(BROADCASTS)
LAYOUTS = ("contiguous", "transposed", "strided", "negative")
layouts = st.sampled_from(LAYOUTS)


def laid_out(array, layout: str):
    """The values of ``array`` (NumPy or CuPy, 0-d too) in another memory layout:
    transposed: all axes reversed (Fortran order); strided: every other value of a
    larger buffer along the last axis (a 0-d array: one value of a larger buffer);
    negative: negative strides along every axis."""
    xp = backend.array_module(array)
    if layout == "contiguous":
        return array.copy(order="C")
    if layout == "transposed":
        return array.T.copy(order="C").T
    if layout == "strided":
        if array.ndim == 0:
            buffer = xp.full((2,), np.nan, dtype=array.dtype)
            view = buffer[1, ...]
        else:
            buffer = xp.full(array.shape[:-1] + (2 * array.shape[-1],), np.nan,
                             dtype=array.dtype)
            view = buffer[..., 1::2]
        view[...] = array
        return view
    if layout == "negative":
        flip = (slice(None, None, -1),) * array.ndim
        return array[flip].copy()[flip] if array.ndim else array.copy()
    raise ValueError(f"unknown layout {layout!r}")


def op_inputs(op: Op, shape, broadcast: str, layout: str, dtype, seed: int) -> list:
    """The op's input arrays: ``shape``, one of them () for a two-tensor op's broadcasts."""
    shapes_ = [shape] if op.arity == 1 else {
        "same": [shape, shape], "0-d first": [(), shape], "0-d second": [shape, ()]}[broadcast]
    return [laid_out(op.values(seed + i, s, dtype), layout) for i, s in enumerate(shapes_)]


def is_array(value) -> bool:
    """An array of the engine's (never a NumPy scalar, np.generic)."""
    return type(value) is np.ndarray or backend.device_of_or_none(value) == "cuda"


@pytest.mark.parametrize("name", OPS)
@given(shape=shapes, broadcast=broadcasts, layout=layouts, dtype=dtypes, seed=seeds)
@example(shape=(), broadcast="same", layout="contiguous", dtype=np.float32, seed=0)
@example(shape=(), broadcast="same", layout="strided", dtype=np.float64, seed=0)
def test_forward_matches_numpy(name, shape, broadcast, layout, dtype, seed):
    op = OPS[name]
    arrays = op_inputs(op, shape, broadcast, layout, dtype, seed)
    y = op.fn(*[leaf(a) for a in arrays])
    assert is_array(y.data)
    assert_close(y, op.ref(*arrays))


@pytest.mark.parametrize("name", OPS)
@given(shape=shapes, broadcast=broadcasts, layout=layouts, seed=seeds)
@example(shape=(), broadcast="same", layout="contiguous", seed=0)
@example(shape=(), broadcast="same", layout="strided", seed=0)
@example(shape=(3,), broadcast="0-d first", layout="negative", seed=0)
@example(shape=(2, 3), broadcast="0-d second", layout="transposed", seed=0)
def test_gradients_match_finite_differences(name, shape, broadcast, layout, seed):
    op = OPS[name]
    inputs = [leaf(a) for a in op_inputs(op, shape, broadcast, layout, np.float64, seed)]
    assert tv.gradcheck(op.fn, inputs, **op.tol) is True


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", OPS)
def test_data_and_grad_of_0d_tensors_are_arrays(name, dtype):
    op = OPS[name]
    leaves = [leaf(a) for a in op_inputs(op, (), "same", "contiguous", dtype, 0)]
    y = op.fn(*leaves)
    z = y * y + 0.5 * y - 1.0   # the next ops take y (twice, so its gradients add up)
    loss = (-z).mean()
    loss.backward(retain_graph=True)
    loss.backward()             # the second backward adds to .grad
    for t in (y, z, loss):
        assert is_array(t.data) and t.shape == ()
    for x in leaves:
        assert is_array(x.grad) and x.grad.shape == () and x.grad.dtype == x.dtype


def test_the_reported_penalty_runs_backward():
    W1 = leaf(randn(0, (3, 4)))
    loss = (W1 * W1).sum()
    (loss + 0.5 * loss).backward()
    assert is_array(W1.grad)
    np.testing.assert_allclose(W1.grad, 3 * W1.numpy(), rtol=1e-15)


def test_0d_tensors_from_numbers_and_numpy_scalars():
    t = tv.tensor(3.0)
    assert is_array(t.data) and t.shape == () and t.dtype == np.float32
    assert t.item() == 3.0 and type(t.item()) is float
    t = tv.Tensor(np.float64(2.5), requires_grad=True)   # a NumPy scalar becomes 0-d
    assert is_array(t.data) and t.dtype == np.float64
    (t * t).backward()
    assert is_array(t.grad) and t.grad == 5.0


# --- a regularised loss, as it is written in a training loop ----------------------------

def regularised_loss_case(device: str, reg_as_tensor: bool):
    """(loss function, inputs to check, numpy reference of the loss) for a small two-layer
    net: cross-entropy plus an L2 penalty on both weight matrices, in float64."""
    rng = np.random.default_rng(0)
    x = tv.tensor(rng.standard_normal((5, 4)), device=device)
    labels = np.array([0, 2, 1, 2, 0])
    inputs = {"W1": rng.standard_normal((3, 4)), "W2": rng.standard_normal((3, 3))}
    reg = 0.3
    if reg_as_tensor:
        inputs["reg"] = np.asarray(reg)
    ref_inputs = dict(inputs)
    inputs = {k: tv.tensor(v, requires_grad=True, device=device) for k, v in inputs.items()}

    def loss(W1, W2, reg=reg):
        data_loss = F.cross_entropy(F.linear(F.tanh(F.linear(x, W1)), W2), labels)
        return data_loss + 0.5 * reg * ((W1 * W1).sum() + (W2 * W2).sum())

    def ref(W1, W2, reg=reg):
        scores = np.tanh(x.numpy() @ W1.T) @ W2.T
        return cross_entropy_naive(scores, labels) + 0.5 * reg * ((W1**2).sum() + (W2**2).sum())
    return loss, inputs, ref(**ref_inputs)


def check_regularised_loss(device: str, reg_as_tensor: bool):
    loss_fn, inputs, expected = regularised_loss_case(device, reg_as_tensor)
    loss = loss_fn(**inputs)
    assert loss.shape == () and loss.device == device and is_array(loss.data)
    assert_close(loss.numpy(), expected, rtol=RTOL[np.dtype(np.float64)])
    loss.backward()
    for t in inputs.values():
        assert t.grad.shape == t.shape and backend.device_of(t.grad) == device
        assert is_array(t.grad)
    assert tv.gradcheck(loss_fn, inputs) is True


@pytest.mark.parametrize("reg_as_tensor", [False, True], ids=["reg-number", "reg-tensor"])
def test_regularised_loss_backward_and_gradcheck(reg_as_tensor):
    check_regularised_loss("cpu", reg_as_tensor)


@pytest.mark.gpu
@pytest.mark.parametrize("reg_as_tensor", [False, True], ids=["reg-number", "reg-tensor"])
def test_regularised_loss_backward_and_gradcheck_on_the_gpu(reg_as_tensor):
    check_regularised_loss("cuda", reg_as_tensor)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)], ids=["0-d", "3", "2x3"])
@pytest.mark.parametrize("name", OPS)
def test_gpu_matches_the_cpu_and_keeps_the_shape(name, shape, layout):
    op = OPS[name]
    arrays = op_inputs(op, shape, "same", "contiguous", np.float64, 0)
    cpu = [leaf(laid_out(a, layout)) for a in arrays]
    gpu = [leaf(laid_out(backend.move(a, "cuda"), layout)) for a in arrays]
    y_cpu, y_gpu = op.fn(*cpu), op.fn(*gpu)
    assert y_gpu.device == "cuda" and y_gpu.shape == y_cpu.shape
    assert_close(y_gpu.numpy(), y_cpu.numpy())
    g = randn(1, y_cpu.shape)
    y_cpu.backward(g)
    y_gpu.backward(g)
    for a, b in zip(cpu, gpu):
        assert backend.device_of(b.grad) == "cuda" and b.grad.shape == a.shape
        assert_close(backend.to_numpy(b.grad), a.grad)
    assert tv.gradcheck(op.fn, gpu, **op.tol) is True


# --- ops that need a layout say so ---------------------------------------------------------

LAYOUT_OPS = {
    "conv3x3": lambda x: F.conv3x3(x, leaf(randn(0, (2, 1, 3, 3)))),
    "conv1x1": lambda x: F.conv1x1(x, leaf(randn(0, (2, 1, 1, 1)))),
    "maxpool2x2": F.maxpool2x2,
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, 1),
    "batch_norm2d": F.batch_norm2d,
    "local_response_norm": lambda x: F.local_response_norm(x, 3),
    "linear": lambda x: F.linear(x, leaf(randn(0, (2, 3)))),
    "flatten": F.flatten,
    "cross_entropy": lambda x: F.cross_entropy(x, np.zeros(1, dtype=np.int64)),
}


@pytest.mark.parametrize("name", LAYOUT_OPS)
def test_ops_that_need_a_layout_reject_0d_input_naming_the_op(name):
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: .*(0-D|shape \(\)|0 axes)"):
        LAYOUT_OPS[name](leaf(np.asarray(0.5)))
