"""The autograd core: graph walks, accumulation, freeing, no_grad and Tensor basics."""
import gc
import weakref

import numpy as np
import pytest

import tinyvgg as tv
from helpers import leaf, randn
from tinyvgg import functional as F
from tinyvgg.tools.gradcheck import kink_free
from tinyvgg.ops.conv import Conv1x1, Conv3x3
from tinyvgg.ops.linear import Linear
from tinyvgg.tensor import Function


class RecordingConv(Conv3x3):
    """conv3x3 that keeps every call's context, to see what forward saved."""
    contexts = []

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        RecordingConv.contexts.append(ctx)
        return Conv3x3.forward(ctx, x, weight, bias)


def test_tensor_used_twice_in_one_op_accumulates():
    x = leaf(np.array([1.5, -2.0, 3.0]))
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.numpy())


def test_tensor_used_by_two_ops_accumulates():
    x = leaf(kink_free((2, 3, 4, 4)))
    (F.relu(x) + F.relu(x)).sum().backward()
    np.testing.assert_array_equal(x.grad, 2.0 * (x.numpy() > 0))


def test_diamond_graph_sums_both_paths():
    """x -> a = 3x, b = x*x -> c = a * b = 3x^3, so dc/dx = 9x^2."""
    x = leaf(np.array([0.5, -1.0, 2.0]))
    a, b = 3.0 * x, x * x
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 9 * x.numpy() ** 2, rtol=1e-15)


def test_shared_subgraph_is_walked_once():
    """h is used by two consumers; its own inputs must receive the sum, not twice the sum."""
    x = leaf(randn(0, (2, 3)))
    w = leaf(randn(1, (4, 3)))
    h = F.linear(x, w)
    (h + 2.0 * h).sum().backward()
    np.testing.assert_allclose(w.grad, 3.0 * np.ones((2, 4)).T @ x.numpy(), rtol=1e-14)


def test_leaf_grad_accumulates_across_backward_calls():
    x = leaf(np.array([1.0, 2.0]))
    (3.0 * x).sum().backward()
    first = x.grad.copy()
    (3.0 * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * first)


def test_grad_hook_sees_each_leaf_s_whole_gradient_while_backward_runs():
    """w is used by two ops; its hook runs once, after both have added to it; x's runs
    once too, each during the same backward."""
    x = leaf(randn(0, (2, 3)))
    w = leaf(randn(1, (3, 3)))
    seen = []

    def record(t):
        seen.append(("w" if t is w else "x", t.grad.copy()))
    handles = [w.register_grad_hook(record), x.register_grad_hook(record)]
    h = F.linear(x, w)
    F.linear(F.relu(h), w).sum().backward()
    assert sorted(name for name, _ in seen) == ["w", "x"]
    for name, grad in seen:
        np.testing.assert_array_equal(grad, w.grad if name == "w" else x.grad)
    handles[0].remove()
    seen.clear()
    F.linear(x, w).sum().backward()
    assert [name for name, _ in seen] == ["x"]


def test_grad_hooks_go_on_leaves_only():
    y = leaf(randn(0, (2,))) * 2.0
    with pytest.raises(ValueError, match="register_grad_hook: only a leaf tensor"):
        y.register_grad_hook(print)


def test_leaf_grad_is_its_own_array():
    x = leaf(np.array([1.0, 2.0]))
    y = x + 0.0
    g = np.array([1.0, 1.0])
    y.backward(g)
    g[0] = 99.0
    assert x.grad[0] == 1.0


def test_deep_chain_backward_needs_no_recursion():
    x = leaf(np.array([1.0]))
    y = x
    for _ in range(20_000):
        y = y + 1.0
    y = y * 2.0
    y.backward()
    assert y.item() == 2 * 20_001.0
    np.testing.assert_array_equal(x.grad, [2.0])


def test_no_grad_results_do_not_require_grad_and_save_nothing():
    saved = RecordingConv.contexts = []
    x, w = leaf(randn(0, (1, 2, 4, 4))), leaf(randn(1, (3, 2, 3, 3)))
    with tv.no_grad():
        assert not tv.is_grad_enabled()
        y = RecordingConv.apply(x, w)
        z = F.relu(F.maxpool2x2(y))
    assert tv.is_grad_enabled()
    assert not y.requires_grad and not z.requires_grad
    assert y.creator is None and z.creator is None
    assert saved[0].saved_nbytes == 0

    RecordingConv.apply(x, w)
    assert saved[1].saved_nbytes > 0  # the same op with grad enabled does save


def test_no_grad_works_as_a_decorator_and_restores_on_error():
    @tv.no_grad()
    def evaluate(x):
        return F.relu(x)

    x = leaf(randn(0, (3,)))
    assert not evaluate(x).requires_grad
    assert tv.is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with tv.no_grad():
            1 / 0
    assert tv.is_grad_enabled()


def test_nested_no_grad_restores_the_outer_state():
    with tv.no_grad():
        with tv.no_grad():
            pass
        assert not tv.is_grad_enabled()
        assert not F.relu(leaf(randn(0, (3,)))).requires_grad
    assert tv.is_grad_enabled()


def test_second_backward_after_freeing_raises_a_clear_error():
    x = leaf(randn(0, (1, 2, 4, 4)))
    w = leaf(randn(1, (3, 2, 3, 3)))
    loss = F.conv3x3(x, w).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"(?s)freed.*retain_graph=True"):
        loss.backward()


class Watch(Function):
    """The identity, whose backward notes which watched objects are still alive."""
    watched, alive = [], []

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        gc.collect()
        Watch.alive.append([ref() is not None for ref in Watch.watched])
        return (g,)


def test_activations_are_freed_once_backward_is_past_them():
    """An intermediate tensor and its array live until backward has run through the op
    that used them, not until the whole pass ends, even though loss (and so its graph)
    is still held: as in PyTorch, the graph does not keep activations alive."""
    x = leaf(randn(0, (2, 3, 4, 4)))
    w = leaf(randn(1, (3, 3, 3, 3)))
    a = Watch.apply(x)
    b = F.relu(F.conv3x3(a, w))      # b's array is also what relu saved
    loss = (b * 3.0).sum()
    Watch.watched, Watch.alive = [weakref.ref(b), weakref.ref(b.data)], []
    del b
    loss.backward()
    assert Watch.alive == [[False, False]]
    assert a.grad is None and x.grad is not None
    gc.collect()
    assert loss.creator.inputs == ()   # what backward let go of, with loss still held


def test_a_second_backward_raises_before_any_gradient_is_added():
    """The freed graph is found before the walk starts, so no leaf's .grad is left
    half-accumulated by the ops reached before a freed one."""
    class Pair(Function):           # a + b, whose backward reads nothing saved
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g, g

    w, v = leaf(randn(0, ())), leaf(randn(1, (3,)))
    loss = Pair.apply(w, (v * v).sum())   # the walk reaches w before the sum
    loss.backward()
    first_w, first_v = w.grad.copy(), v.grad.copy()
    with pytest.raises(RuntimeError, match=r"(?s)freed.*retain_graph=True"):
        loss.backward()
    np.testing.assert_array_equal(w.grad, first_w)
    np.testing.assert_array_equal(v.grad, first_v)


def test_saved_arrays_are_released_after_backward():
    saved = RecordingConv.contexts = []
    x, w = leaf(randn(0, (1, 2, 4, 4))), leaf(randn(1, (3, 2, 3, 3)))
    loss = RecordingConv.apply(x, w, None).sum()
    assert saved[0].saved_nbytes > 0
    loss.backward()
    assert saved[0].saved_nbytes == 0


@pytest.mark.parametrize("op, x_shape, weight_shape", [
    (Conv3x3, (1, 2, 4, 4), (3, 2, 3, 3)), (Conv1x1, (1, 2, 4, 4), (3, 2, 1, 1)),
    (Linear, (2, 3), (4, 3))], ids=["Conv3x3", "Conv1x1", "Linear"])
def test_op_backward_without_the_optional_bias_argument(op, x_shape, weight_shape):
    """forward(ctx, x, weight, bias=None) makes bias optional, so apply(x, weight) must
    differentiate like apply(x, weight, None)."""
    x, w = leaf(randn(0, x_shape)), leaf(randn(1, weight_shape))
    op.apply(x, w).sum().backward()
    x2, w2 = leaf(x.numpy().copy()), leaf(w.numpy().copy())
    op.apply(x2, w2, None).sum().backward()
    np.testing.assert_array_equal(x.grad, x2.grad)
    np.testing.assert_array_equal(w.grad, w2.grad)


def test_retain_graph_allows_a_second_backward_that_doubles_grads():
    x = leaf(randn(0, (1, 2, 4, 4)))
    w = leaf(randn(1, (3, 2, 3, 3)))
    loss = F.relu(F.conv3x3(x, w)).sum()
    loss.backward(retain_graph=True)
    first_x, first_w = x.grad.copy(), w.grad.copy()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * first_x, rtol=1e-15)
    np.testing.assert_allclose(w.grad, 2 * first_w, rtol=1e-15)


def test_backward_on_non_scalar_without_grad_raises_value_error():
    y = 2.0 * leaf(randn(0, (2, 3)))
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        y.backward()


def test_backward_with_wrong_grad_shape_raises_value_error():
    y = 2.0 * leaf(randn(0, (2, 3)))
    with pytest.raises(ValueError, match=r"grad has shape \(3, 2\).*shape \(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_backward_without_requires_grad_raises_runtime_error():
    y = F.relu(tv.tensor(randn(0, (3,))))
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        tv.tensor([1, 2, 3], requires_grad=True)


def test_inputs_without_requires_grad_get_no_grad():
    x, w = leaf(randn(0, (2, 3))), leaf(randn(1, (4, 3)), requires_grad=False)
    F.linear(x, w).sum().backward()
    assert x.grad is not None and w.grad is None


def test_tensor_dtype_defaults():
    assert tv.tensor(1.5).dtype == np.float32
    assert tv.tensor([[1.0, 2.0]]).dtype == np.float32
    assert tv.tensor(np.zeros(3)).dtype == np.float64
    assert tv.tensor(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert np.issubdtype(tv.tensor([1, 2]).dtype, np.integer)
    assert np.issubdtype(tv.tensor(np.arange(3, dtype=np.int32)).dtype, np.int32)
    assert tv.tensor([1, 2], dtype=np.float64).dtype == np.float64


def test_tensor_copies_its_input():
    a = np.zeros(3)
    t = tv.tensor(a)
    a[0] = 5.0
    assert t.numpy()[0] == 0.0


def test_dtype_cast_is_differentiable_and_casts_the_gradient_back():
    x = leaf(np.array([1.0, -2.0, 3.0], dtype=np.float32))
    y = x.to(np.float64)
    assert y.dtype == np.float64 and y.requires_grad
    (y * np.float64(1 / 3)).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, np.full(3, 1 / 3, dtype=np.float32), rtol=1e-7)


def test_to_the_same_dtype_or_device_returns_the_tensor_itself():
    x = leaf(randn(0, (2,)))
    assert x.to(np.float64) is x and x.to("cpu") is x


def test_numpy_item_and_detach():
    x = leaf(np.array([[1.0, 2.0], [3.0, 4.0]]))
    y = 2.0 * x
    assert isinstance(y.numpy(), np.ndarray)
    np.testing.assert_array_equal(y.numpy(), [[2.0, 4.0], [6.0, 8.0]])
    assert y.sum().item() == 20.0 and isinstance(y.sum().item(), float)
    with pytest.raises(ValueError, match="one element"):
        y.item()
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), y.numpy())
    (d * 3.0 + y).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 2.0))
