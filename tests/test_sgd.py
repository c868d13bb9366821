"""sgd_step_: the in-place SGD step against numbers worked out by hand, an element-by-element
reference, torch.optim.SGD over several steps, its argument checks, and the GPU kernel
against the CPU step."""
import numpy as np
import pytest

import tinyvgg as tv
from helpers import in_layout, randn
from tinyvgg.ops.sgd import sgd_step_

#: (momentum, dampening, weight_decay, nesterov): every branch of the update rule
SETTINGS = [
    (0.0, 0.0, 0.0, False),
    (0.0, 0.0, 0.01, False),
    (0.9, 0.0, 0.0, False),
    (0.9, 0.0, 0.01, False),
    (0.9, 0.5, 0.0, False),
    (0.5, 0.3, 0.05, False),
    (0.9, 0.0, 0.0, True),
    (0.8, 0.0, 0.02, True),
]
SETTING_IDS = [f"m{m}-d{d}-wd{w}" + ("-nesterov" if n else "") for m, d, w, n in SETTINGS]
STEPS = 5
LR = 0.1


def reference_steps(param, grads, lr, momentum, dampening, weight_decay, nesterov):
    """PyTorch's SGD written out element by element in Python floats (IEEE doubles)."""
    p = [float(v) for v in param.ravel()]
    velocity = [None] * len(p)
    for grad in grads:
        for i, g in enumerate(grad.ravel()):
            d = float(g) + weight_decay * p[i]
            if momentum != 0:
                if velocity[i] is None:
                    velocity[i] = d
                else:
                    velocity[i] = momentum * velocity[i] + (1 - dampening) * d
                d = d + momentum * velocity[i] if nesterov else velocity[i]
            p[i] = p[i] - lr * d
    return np.array(p).reshape(param.shape)


def run_steps(param, grads, velocity=None, lr=LR, **settings):
    """param after len(grads) in-place steps (param itself is changed too)."""
    if velocity is None and settings.get("momentum", 0.0) != 0:
        velocity = np.zeros_like(param)
    for step, grad in enumerate(grads):
        sgd_step_(param, grad, velocity, lr, first_step=step == 0, **settings)
    return param


def gradient_sequence(shape, dtype, steps=STEPS, seed=1):
    return [randn(seed + step, shape, dtype) for step in range(steps)]


# --- the rule itself ------------------------------------------------------------

def test_plain_step_by_hand():
    p = np.array([1.0, -2.0])
    sgd_step_(p, np.array([0.5, 4.0]), None, 0.1)
    np.testing.assert_allclose(p, [0.95, -2.4], rtol=1e-15)


def test_momentum_steps_by_hand():
    p, v = np.array([1.0]), np.array([123.0])  # the first step ignores v's old contents
    g = np.array([0.5])
    sgd_step_(p, g, v, 0.1, momentum=0.9, first_step=True)
    np.testing.assert_allclose([p[0], v[0]], [0.95, 0.5], rtol=1e-15)
    sgd_step_(p, g, v, 0.1, momentum=0.9)  # v = 0.9 * 0.5 + 0.5, p = 0.95 - 0.1 * 0.95
    np.testing.assert_allclose([p[0], v[0]], [0.855, 0.95], rtol=1e-15)


def test_weight_decay_dampening_and_nesterov_by_hand():
    p, v, g = np.array([2.0]), np.array([1.0]), np.array([0.5])
    # d = 0.5 + 0.1 * 2 = 0.7; v = 0.5 * 1 + 0.75 * 0.7 = 1.025; p = 2 - 0.1 * 1.025
    sgd_step_(p, g, v, 0.1, momentum=0.5, weight_decay=0.1, dampening=0.25)
    np.testing.assert_allclose([p[0], v[0]], [1.8975, 1.025], rtol=1e-15)
    p, v = np.array([2.0]), np.array([1.0])
    # d = 0.7; v = 0.5 * 1 + 0.7 = 1.2; d = 0.7 + 0.5 * 1.2 = 1.3; p = 2 - 0.13
    sgd_step_(p, g, v, 0.1, momentum=0.5, weight_decay=0.1, nesterov=True)
    np.testing.assert_allclose([p[0], v[0]], [1.87, 1.2], rtol=1e-15)


@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov", SETTINGS,
                         ids=SETTING_IDS)
def test_matches_the_element_by_element_reference(momentum, dampening, weight_decay, nesterov):
    param = randn(0, (3, 4))
    grads = gradient_sequence(param.shape, np.float64)
    expected = reference_steps(param, grads, LR, momentum, dampening, weight_decay, nesterov)
    ours = run_steps(param.copy(), grads, momentum=momentum, dampening=dampening,
                     weight_decay=weight_decay, nesterov=nesterov)
    np.testing.assert_array_equal(ours, expected)  # the same operations in the same order


def test_updates_in_place_and_keeps_dtype_and_layout():
    for layout in ("strided", "reversed"):
        param = in_layout(randn(0, (3, 5), np.float32), layout)
        velocity = in_layout(np.zeros((3, 5), np.float32), layout)
        before = param.copy()
        grads = gradient_sequence(param.shape, np.float32, steps=2)
        run_steps(param, grads, velocity=velocity, momentum=0.9)
        assert param.dtype == velocity.dtype == np.float32
        expected = run_steps(np.ascontiguousarray(before), grads, momentum=0.9)
        np.testing.assert_array_equal(param, expected)
        assert not np.array_equal(velocity, 0)


def test_without_momentum_the_velocity_is_left_alone():
    velocity = np.full((2, 2), 7.0)
    param = np.ones((2, 2))
    sgd_step_(param, np.ones((2, 2)), velocity, 0.5, weight_decay=0.1, first_step=True)
    np.testing.assert_array_equal(velocity, 7.0)
    np.testing.assert_allclose(param, 1 - 0.5 * 1.1, rtol=1e-15)


def test_zero_learning_rate_still_tracks_the_velocity():
    param, velocity = np.ones(3), np.zeros(3)
    sgd_step_(param, np.full(3, 2.0), velocity, 0.0, momentum=0.9, first_step=True)
    np.testing.assert_array_equal(param, 1.0)
    np.testing.assert_array_equal(velocity, 2.0)


# --- against PyTorch --------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov", SETTINGS,
                         ids=SETTING_IDS)
def test_matches_torch_optim_sgd(momentum, dampening, weight_decay, nesterov, dtype, rtol):
    torch = pytest.importorskip("torch")
    param = randn(0, (4, 3), dtype)
    grads = gradient_sequence(param.shape, dtype)
    theirs = torch.nn.Parameter(torch.from_numpy(param.copy()))
    optimizer = torch.optim.SGD([theirs], lr=LR, momentum=momentum, dampening=dampening,
                                weight_decay=weight_decay, nesterov=nesterov)
    ours, velocity = param.copy(), np.zeros_like(param)
    for step, grad in enumerate(grads):
        theirs.grad = torch.from_numpy(grad.copy())
        optimizer.step()
        sgd_step_(ours, grad, velocity, LR, momentum=momentum, dampening=dampening,
                  weight_decay=weight_decay, nesterov=nesterov, first_step=step == 0)
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=rtol)
        if momentum != 0:
            buffer = optimizer.state[theirs]["momentum_buffer"].numpy()
            np.testing.assert_allclose(velocity, buffer, rtol=rtol, atol=rtol)


# --- argument checks --------------------------------------------------------------

def arrays(shape=(2, 3), dtype=np.float64):
    return np.zeros(shape, dtype), np.ones(shape, dtype), np.zeros(shape, dtype)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(lr=-0.1), ValueError, ["lr", ">= 0", "-0.1"]),
    (dict(lr=float("nan")), ValueError, ["lr", "finite"]),
    (dict(lr=True), TypeError, ["lr", "number", "bool"]),
    (dict(lr="0.1"), TypeError, ["lr", "number", "str"]),
    (dict(momentum=-0.9), ValueError, ["momentum", ">= 0"]),
    (dict(weight_decay=-1e-4), ValueError, ["weight_decay", ">= 0"]),
    (dict(dampening=float("inf")), ValueError, ["dampening", "finite"]),
    (dict(nesterov=True), ValueError, ["nesterov", "momentum > 0", "momentum 0"]),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
     ["nesterov", "dampening 0", "dampening 0.1"]),
    (dict(nesterov="yes", momentum=0.9), TypeError, ["nesterov", "True or False"]),
])
def test_rejects_bad_hyperparameters(kwargs, error, words):
    param, grad, velocity = arrays()
    kwargs = {"lr": 0.1, **kwargs}
    with pytest.raises(error) as info:
        sgd_step_(param, grad, velocity, **kwargs)
    message = str(info.value)
    assert message.startswith("sgd_step_:")
    for word in words:
        assert word in message, (word, message)
    np.testing.assert_array_equal(param, 0.0)  # nothing was changed


def test_rejects_a_gradient_of_another_shape():
    param, _, velocity = arrays((2, 3))
    with pytest.raises(ValueError, match=r"sgd_step_: grad must have shape \(2, 3\), "
                                         r"got \(3, 2\)"):
        sgd_step_(param, np.ones((3, 2)), velocity, 0.1)


def test_rejects_a_velocity_of_another_shape():
    param, grad, _ = arrays((2, 3))
    with pytest.raises(ValueError, match=r"sgd_step_: velocity must have shape \(2, 3\), "
                                         r"got \(6,\)"):
        sgd_step_(param, grad, np.zeros(6), 0.1, momentum=0.9)


def test_momentum_needs_a_velocity():
    param, grad, _ = arrays()
    with pytest.raises(ValueError, match="sgd_step_: momentum 0.9 needs a velocity array"):
        sgd_step_(param, grad, None, 0.1, momentum=0.9)


def test_rejects_mixed_and_integer_dtypes():
    param, grad, velocity = arrays()
    with pytest.raises(TypeError, match="sgd_step_: .*share one dtype.*param float64, "
                                        "grad float32"):
        sgd_step_(param, grad.astype(np.float32), velocity, 0.1)
    with pytest.raises(TypeError, match="sgd_step_: param must be float32 or float64, got int64"):
        sgd_step_(np.zeros(3, np.int64), np.zeros(3, np.int64), None, 0.1)


def test_rejects_what_is_not_an_array():
    param, grad, velocity = arrays()
    with pytest.raises(TypeError, match="sgd_step_: grad must be a NumPy .* array, got list"):
        sgd_step_(param, [[1.0] * 3] * 2, velocity, 0.1)
    with pytest.raises(TypeError, match="tensor.data"):
        sgd_step_(tv.tensor(param), grad, velocity, 0.1)


# --- the GPU kernel -----------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, dampening, weight_decay, nesterov", SETTINGS,
                         ids=SETTING_IDS)
def test_gpu_step_equals_the_cpu_step(momentum, dampening, weight_decay, nesterov, dtype):
    cupy = tv.backend.cupy_module()
    shape = (37, 129)  # not a multiple of the block size
    param = randn(0, shape, dtype)
    grads = gradient_sequence(shape, dtype)
    settings = dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                    nesterov=nesterov)
    cpu_param, cpu_velocity = param.copy(), np.zeros_like(param)
    gpu_param, gpu_velocity = cupy.asarray(param), cupy.zeros(shape, dtype)
    for step, grad in enumerate(grads):
        sgd_step_(cpu_param, grad, cpu_velocity, LR, first_step=step == 0, **settings)
        sgd_step_(gpu_param, cupy.asarray(grad), gpu_velocity, LR, first_step=step == 0,
                  **settings)
        # The kernel rounds each product and sum on its own, in NumPy's order: same bits.
        np.testing.assert_array_equal(gpu_param.get(), cpu_param)
        np.testing.assert_array_equal(gpu_velocity.get(), cpu_velocity)


@pytest.mark.gpu
def test_gpu_step_updates_strided_arrays_in_place():
    cupy = tv.backend.cupy_module()
    param = randn(0, (6, 8), np.float32)
    grad = randn(1, (6, 8), np.float32)
    cpu_param, cpu_velocity = param.copy(), np.zeros_like(param)
    sgd_step_(cpu_param, grad, cpu_velocity, LR, momentum=0.9, first_step=True)
    gpu_buffer = cupy.asarray(np.concatenate([param, param], axis=1))
    gpu_param = gpu_buffer[:, ::2]
    gpu_param[...] = cupy.asarray(param)
    gpu_velocity = cupy.zeros((8, 6), np.float32).T
    sgd_step_(gpu_param, cupy.asarray(grad).T.copy().T, gpu_velocity, LR, momentum=0.9,
              first_step=True)
    np.testing.assert_array_equal(gpu_param.get(), cpu_param)
    np.testing.assert_array_equal(gpu_velocity.get(), cpu_velocity)
    np.testing.assert_array_equal(gpu_buffer[:, ::2].get(), cpu_param)


@pytest.mark.gpu
def test_gpu_step_rejects_arrays_on_two_devices():
    cupy = tv.backend.cupy_module()
    with pytest.raises(ValueError, match="sgd_step_: all arrays must be on the same device, "
                                         "got param on cuda, grad on cpu"):
        sgd_step_(cupy.zeros(3), np.zeros(3), None, 0.1)
