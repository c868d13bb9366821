"""Same inputs and weights give the same outputs and gradients as PyTorch."""
import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from helpers import (assert_close, dtypes, in_layout, layouts_4d, leaf, nchw_shapes, randn, rng,
                     seeds, small_integers)
import tinyvgg as tv
from tinyvgg import functional as F
from tinyvgg import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional

pytestmark = pytest.mark.torch

#: relative tolerance against PyTorch (different summation orders and algorithms)
TORCH_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
MODEL_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def torch_leaf(array, requires_grad=True):
    return torch.tensor(np.ascontiguousarray(array), requires_grad=requires_grad)


def assert_matches_torch(ours, theirs, rtol=None):
    """``ours`` (tinyvgg tensor or array) equals ``theirs`` (torch tensor), dtype included."""
    expected = theirs.detach().numpy()
    assert_close(ours, expected, rtol=TORCH_RTOL[expected.dtype] if rtol is None else rtol)


def backward_both(ours, theirs, seed):
    """Backward through both results with the same random cotangent."""
    g = randn(seed, ours.shape, ours.dtype)
    ours.backward(g)
    theirs.backward(torch.from_numpy(g))


@pytest.mark.parametrize("conv, k", [(F.conv3x3, 3), (F.conv1x1, 1)], ids=["conv3x3", "conv1x1"])
@given(shape=nchw_shapes(), c_out=st.integers(1, 4), dtype=dtypes, layout=layouts_4d,
       seed=seeds)
def test_conv_matches_torch_conv2d(conv, k, shape, c_out, dtype, layout, seed):
    x, w, b = (randn(seed, shape, dtype), randn(seed + 1, (c_out, shape[1], k, k), dtype),
               randn(seed + 2, (c_out,), dtype))
    ours = [leaf(in_layout(x, layout)), leaf(w), leaf(b)]
    theirs = [torch_leaf(x), torch_leaf(w), torch_leaf(b)]
    y, y_torch = conv(*ours), TF.conv2d(*theirs, padding=k // 2)
    assert_matches_torch(y, y_torch)
    backward_both(y, y_torch, seed + 3)
    for mine, reference in zip(ours, theirs):
        assert_matches_torch(mine.grad, reference.grad)


@given(shape=nchw_shapes(min_hw=2), dtype=dtypes, layout=layouts_4d, seed=seeds)
@example(shape=(2, 3, 5, 7), dtype=np.float32, layout="channels_last", seed=0)
def test_maxpool2x2_matches_torch_including_ties_and_odd_sizes(shape, dtype, layout, seed):
    x = small_integers(seed, shape, dtype, low=-1, high=1)
    ours, theirs = leaf(in_layout(x, layout)), torch_leaf(x)
    y, y_torch = F.maxpool2x2(ours), TF.max_pool2d(theirs, 2, 2)
    np.testing.assert_array_equal(y.numpy(), y_torch.detach().numpy())
    backward_both(y, y_torch, seed)
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


@given(shape=nchw_shapes(), dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_relu_matches_torch_including_zero_inputs(shape, dtype, layout, seed):
    x = small_integers(seed, shape, dtype) * np.abs(randn(seed, shape, dtype))
    x.flat[0] = 0.0
    ours, theirs = leaf(in_layout(x, layout)), torch_leaf(x)
    y, y_torch = F.relu(ours), TF.relu(theirs)
    np.testing.assert_array_equal(y.numpy(), y_torch.detach().numpy())
    backward_both(y, y_torch, seed)
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


@given(shape=nchw_shapes(), dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_tanh_matches_torch_including_saturated_inputs(shape, dtype, layout, seed):
    x = 5 * randn(seed, shape, dtype)
    ours, theirs = leaf(in_layout(x, layout)), torch_leaf(x)
    y, y_torch = F.tanh(ours), torch.tanh(theirs)
    assert_matches_torch(y, y_torch)
    backward_both(y, y_torch, seed + 1)
    assert_matches_torch(ours.grad, theirs.grad)


@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple), k=st.integers(1, 6),
       out=st.integers(1, 5), dtype=dtypes, seed=seeds)
def test_linear_matches_torch_for_1d_2d_and_3d_input(lead, k, out, dtype, seed):
    x, w, b = (randn(seed, lead + (k,), dtype), randn(seed + 1, (out, k), dtype),
               randn(seed + 2, (out,), dtype))
    ours, theirs = [leaf(x), leaf(w), leaf(b)], [torch_leaf(x), torch_leaf(w), torch_leaf(b)]
    y, y_torch = F.linear(*ours), TF.linear(*theirs)
    assert_matches_torch(y, y_torch)
    backward_both(y, y_torch, seed + 3)
    for mine, reference in zip(ours, theirs):
        assert_matches_torch(mine.grad, reference.grad)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
       start_dim=st.integers(-2, 1), dtype=dtypes, seed=seeds)
def test_flatten_matches_torch(shape, start_dim, dtype, seed):
    x = randn(seed, shape, dtype)
    ours, theirs = leaf(np.asfortranarray(x)), torch_leaf(x)
    y, y_torch = F.flatten(ours, start_dim), torch.flatten(theirs, start_dim)
    assert y.shape == tuple(y_torch.shape)
    np.testing.assert_array_equal(y.numpy(), y_torch.detach().numpy())
    backward_both(y, y_torch, seed)
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


@given(shape=nchw_shapes(), out_size=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_adaptive_avg_pool2d_matches_torch(shape, out_size, dtype, layout, seed):
    x = randn(seed, shape, dtype)
    ours, theirs = leaf(in_layout(x, layout)), torch_leaf(x)
    y, y_torch = F.adaptive_avg_pool2d(ours, out_size), TF.adaptive_avg_pool2d(theirs, out_size)
    assert_matches_torch(y, y_torch)
    backward_both(y, y_torch, seed + 1)
    assert_matches_torch(ours.grad, theirs.grad)


@given(shape=nchw_shapes(), training=st.booleans(), dtype=dtypes, layout=layouts_4d, seed=seeds)
def test_batch_norm2d_matches_torch_with_running_statistics(shape, training, dtype, layout, seed):
    n, c, h, w = shape
    assume(not training or n * h * w > 1)
    x = 2 * randn(seed, shape, dtype) + 0.5
    gamma, beta = randn(seed + 1, (c,), dtype), randn(seed + 2, (c,), dtype)
    mean, var = randn(seed + 3, (c,), dtype), rng(seed).uniform(0.5, 2.0, c).astype(dtype)
    ours = [leaf(in_layout(x, layout)), leaf(gamma), leaf(beta)]
    theirs = [torch_leaf(x), torch_leaf(gamma), torch_leaf(beta)]
    our_mean, our_var = mean.copy(), var.copy()
    torch_mean, torch_var = torch.tensor(mean), torch.tensor(var)
    y = F.batch_norm2d(ours[0], our_mean, our_var, ours[1], ours[2], training=training,
                       momentum=0.1, eps=1e-5)
    y_torch = TF.batch_norm(theirs[0], torch_mean, torch_var, theirs[1], theirs[2],
                            training=training, momentum=0.1, eps=1e-5)
    assert_matches_torch(y, y_torch)
    assert_matches_torch(our_mean, torch_mean)
    assert_matches_torch(our_var, torch_var)
    backward_both(y, y_torch, seed + 4)
    for mine, reference in zip(ours, theirs):
        assert_matches_torch(mine.grad, reference.grad)


def test_batch_norm2d_running_var_uses_the_unbiased_batch_variance():
    x = randn(0, (2, 3, 2, 3))  # m = 12 values per channel
    mean, var = np.zeros(3), np.ones(3)
    F.batch_norm2d(leaf(x, False), mean, var, training=True, momentum=0.1)
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)


@given(shape=nchw_shapes(max_c=7), size=st.integers(1, 6),
       params=st.sampled_from([(1e-4, 0.75, 1.0), (0.5, 0.75, 2.0), (2.0, 0.5, 1.0)]),
       dtype=dtypes, layout=layouts_4d, seed=seeds)
@example(shape=(2, 6, 3, 2), size=4, params=(2.0, 0.5, 1.0), dtype=np.float32,
         layout="channels_last", seed=0)
def test_local_response_norm_matches_torch(shape, size, params, dtype, layout, seed):
    x = 2 * randn(seed, shape, dtype)
    ours, theirs = leaf(in_layout(x, layout)), torch_leaf(x)
    y = F.local_response_norm(ours, size, *params)
    y_torch = TF.local_response_norm(theirs, size, *params)
    assert_matches_torch(y, y_torch)
    backward_both(y, y_torch, seed + 1)
    assert_matches_torch(ours.grad, theirs.grad)


@pytest.mark.parametrize("args", [(5,), (2, 0.5, 1.0, 2.0)])
def test_local_response_norm_layer_matches_torch_repr_and_output(args):
    x = randn(0, (2, 6, 3, 4))
    layer, reference = nn.LocalResponseNorm(*args), torch.nn.LocalResponseNorm(*args)
    assert repr(layer) == repr(reference)
    assert_matches_torch(layer(tv.tensor(x)), reference(torch.from_numpy(x)))


@given(n=st.integers(1, 6), classes=st.integers(1, 7), scale=st.sampled_from([1.0, 40.0]),
       smoothing=st.sampled_from([0.0, 0.1, 0.5, 1.0]), dtype=dtypes, seed=seeds)
def test_cross_entropy_matches_torch(n, classes, scale, smoothing, dtype, seed):
    logits = scale * randn(seed, (n, classes), dtype)
    labels = rng(seed).integers(0, classes, size=n)
    ours, theirs = leaf(logits), torch_leaf(logits)
    loss = F.cross_entropy(ours, labels, label_smoothing=smoothing)
    loss_torch = TF.cross_entropy(theirs, torch.from_numpy(labels), label_smoothing=smoothing)
    assert_matches_torch(loss, loss_torch)
    loss.backward()
    loss_torch.backward()
    assert_matches_torch(ours.grad, theirs.grad)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_follows_torch_scaling_and_p_convention(p):
    """Masks cannot match (different generators); the semantics must: p is the drop
    probability and kept values are x / (1 - p) in both."""
    torch.manual_seed(0)
    x = 1.0 + np.abs(randn(0, (200, 500)))
    y = F.dropout(leaf(x, False), p=p, seed=7).numpy()
    y_torch = TF.dropout(torch.from_numpy(x), p=p, training=True).numpy()
    tolerance = 5 * np.sqrt(p * (1 - p) / x.size)
    for out in (y, y_torch):
        kept = out != 0
        np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
        assert abs((~kept).mean() - p) < tolerance
    assert abs((y == 0).mean() - (y_torch == 0).mean()) < 2 * tolerance


# --- whole models -------------------------------------------------------------------------------

def tinyvgg_model(dtype):
    return nn.Sequential(nn.Conv3x3(3, 8, dtype=dtype), nn.BatchNorm2d(8, dtype=dtype), nn.ReLU(),
                         nn.MaxPool2x2(), nn.Conv1x1(8, 4, dtype=dtype), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 5, dtype=dtype))


def torch_model(dtype):
    tnn = torch.nn
    model = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(),
                           tnn.MaxPool2d(2, 2), tnn.Conv2d(8, 4, 1), tnn.AdaptiveAvgPool2d(2),
                           tnn.Flatten(), tnn.Linear(16, 5))
    return model.to({np.float32: torch.float32, np.float64: torch.float64}[dtype])


def test_torch_state_dict_loads_directly():
    reference, model = torch_model(np.float32), tinyvgg_model(np.float32)
    model.load_state_dict(reference.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, reference.state_dict()[key].numpy())


def test_state_dict_keys_and_shapes_equal_torch():
    ours, theirs = tinyvgg_model(np.float32).state_dict(), torch_model(np.float32).state_dict()
    assert list(ours) == list(theirs)
    assert "1.num_batches_tracked" in ours and "0.weight" in ours
    for key in ours:
        assert ours[key].shape == tuple(theirs[key].shape), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_model_matches_torch_logits_and_parameter_gradients(dtype):
    torch.manual_seed(0)
    reference = torch_model(dtype)
    model = tinyvgg_model(dtype)
    model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
    x = randn(0, (4, 3, 7, 6), dtype)
    labels = rng(0).integers(0, 5, size=4)
    rtol = MODEL_RTOL[np.dtype(dtype)]

    for step in range(2):  # two training steps: batch statistics and running averages
        logits, logits_torch = model(tv.tensor(x)), reference(torch.from_numpy(x))
        assert_matches_torch(logits, logits_torch, rtol)
        loss = F.cross_entropy(logits, labels)
        loss_torch = TF.cross_entropy(logits_torch, torch.from_numpy(labels))
        model.zero_grad()
        reference.zero_grad()
        loss.backward()
        loss_torch.backward()
        for (name, p), (torch_name, p_torch) in zip(model.named_parameters(),
                                                    reference.named_parameters()):
            assert name == torch_name
            assert_matches_torch(p.grad, p_torch.grad, rtol)
    state, torch_state = model.state_dict(), reference.state_dict()
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert_matches_torch(state[key], torch_state[key], rtol)

    model.eval()
    reference.eval()
    assert_matches_torch(model(tv.tensor(x)), reference(torch.from_numpy(x)), rtol)
