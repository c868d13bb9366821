"""sgd_step_: one in-place step of stochastic gradient descent with momentum.

PyTorch's ``torch.optim.SGD`` rule, for a parameter p with gradient g and
velocity (momentum buffer) v::

    d = g + weight_decay * p
    v = momentum * v + (1 - dampening) * d      on the first step: v = d
    d = d + momentum * v    (nesterov)          else  d = v
    p = p - lr * d

Without momentum the velocity is neither read nor written (it may be None).
On the first step the velocity's old contents are ignored, so it can start
uninitialised. Nesterov momentum needs momentum > 0 and no dampening.

``param`` and ``velocity`` are updated in place: NumPy arrays on the CPU,
CuPy arrays on the GPU (kernels/sgd.cu, one thread per element). Both
devices round every product and sum on its own, in the same order, so they
give the same values.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, cuda
from ..tensor import device_method
from . import checks


def _hyperparameter(name: str, value, non_negative: bool = True) -> float:
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"sgd_step_: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (non_negative and value < 0):
        wanted = "a finite number >= 0" if non_negative else "a finite number"
        raise ValueError(f"sgd_step_: {name} must be {wanted}, got {value}")
    return value


def _array_device(name: str, array) -> str:
    try:
        return backend.device_of(array)
    except TypeError:
        raise TypeError(f"sgd_step_: {name} must be a NumPy (cpu) or CuPy (cuda) array, "
                        f"got {type(array).__name__} (for a tensor, pass tensor.data)") from None


def check_sgd_step(param, grad, velocity, lr, momentum, weight_decay, dampening, nesterov):
    """The device and the hyperparameters as floats; errors name what is wrong."""
    arrays = {"param": param, "grad": grad}
    if velocity is not None:
        arrays["velocity"] = velocity
    devices = {name: _array_device(name, a) for name, a in arrays.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"sgd_step_: all arrays must be on the same device, got {listed}")
    checks.floating("sgd_step_", **arrays)
    for name, a in arrays.items():
        if name != "param":
            checks.shape("sgd_step_", name, a, tuple(param.shape))
    lr = _hyperparameter("lr", lr)
    momentum = _hyperparameter("momentum", momentum)
    weight_decay = _hyperparameter("weight_decay", weight_decay)
    dampening = _hyperparameter("dampening", dampening, non_negative=False)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"sgd_step_: nesterov must be True or False, got {nesterov!r}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"sgd_step_: nesterov momentum needs momentum > 0 and dampening 0, "
                         f"got momentum {momentum:g} and dampening {dampening:g}")
    if momentum != 0 and velocity is None:
        raise ValueError(f"sgd_step_: momentum {momentum:g} needs a velocity array "
                         "of the parameter's shape")
    return devices["param"], lr, momentum, weight_decay, dampening


def sgd_step_(param, grad, velocity, lr, momentum=0.0, weight_decay=0.0, dampening=0.0,
              nesterov=False, first_step=False) -> None:
    """Update ``param`` (and ``velocity`` when momentum > 0) in place by one SGD step.

    ``first_step`` says the velocity holds no history yet (PyTorch's missing
    momentum buffer): it is set to the step direction instead of blended.
    GPU: kernels/sgd.cu."""
    device, lr, momentum, weight_decay, dampening = check_sgd_step(
        param, grad, velocity, lr, momentum, weight_decay, dampening, nesterov)
    device_method(SGDStep, "step", device)(param, grad, velocity, lr, momentum, weight_decay,
                                           dampening, bool(nesterov), bool(first_step))


class SGDStep:
    """The update of :func:`sgd_step_` on each device, picked like an op's forward
    (``tensor.device_method``), on arrays and hyperparameters already checked."""
    name = "sgd_step_"

    @staticmethod
    def step_cpu(param, grad, velocity, lr, momentum, weight_decay, dampening, nesterov,
                 first_step):
        d = grad if weight_decay == 0 else grad + weight_decay * param
        if momentum != 0:
            if first_step:
                velocity[...] = d
            else:
                velocity *= momentum
                velocity += (1 - dampening) * d
            d = d + momentum * velocity if nesterov else velocity
        param -= lr * d

    @staticmethod
    def step_cuda(param, grad, velocity, lr, momentum, weight_decay, dampening, nesterov,
                  first_step):
        # The kernel needs contiguous memory; a strided param or velocity is
        # updated through a contiguous copy that is written back.
        param_work = cuda.contiguous(param)
        use_momentum = momentum != 0
        velocity_work = cuda.contiguous(velocity) if use_momentum else param_work
        cuda.launch_elementwise("sgd", "sgd_step", param.dtype, param_work.size,
                                param_work, cuda.contiguous(grad), velocity_work,
                                lr, momentum, weight_decay, 1.0 - dampening,
                                int(weight_decay != 0), int(use_momentum), int(first_step),
                                int(nesterov))
        if param_work is not param:
            param[...] = param_work
        if use_momentum and velocity_work is not velocity:
            velocity[...] = velocity_work
