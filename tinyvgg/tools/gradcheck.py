"""Gradient checking: backward against central finite differences.

For a function ``y = f(x1, x2, ...)`` and a fixed random cotangent ``r`` of
y's shape, let ``L = <r, y>`` (a scalar). Backward with ``grad=r`` gives
``dL/dx_k`` for every input; the central difference

    (L(x + eps d) - L(x - eps d)) / (2 eps) = <dL/dx, d> + O(eps^2)

estimates the same quantity along any direction ``d``. Two checks use this:

* **full** (small inputs): the whole Jacobian ``dy/dx``, one column per input
  element by finite differences and one row per output element by
  backward, compared entry by entry;
* **directional** (large inputs, Chainer's method): a few random unit
  directions per input, each costing two forward passes. When one fails,
  bisection on the direction's support finds an element where numeric and
  analytic gradients disagree, so the error still names an element.

Differences are taken in float64. A float32 function is evaluated in
float32, so its tolerances are looser (see ``TOLERANCES``).

Finite differences break where ``f`` is not smooth: keep inputs away from
ReLU's kink at 0 (:func:`kink_free`) and from ties in max-pool windows
(:func:`tie_free`), and give random ops a fixed seed.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Tensor, no_grad

__all__ = ["TOLERANCES", "FULL_JACOBIAN_LIMIT", "GradcheckError", "gradcheck", "kink_free",
           "tie_free"]

#: defaults by the dtype the function computes in: step, absolute and relative tolerance
TOLERANCES = {
    np.dtype(np.float64): dict(eps=1e-6, atol=1e-6, rtol=1e-5),
    np.dtype(np.float32): dict(eps=1e-2, atol=1e-2, rtol=5e-2),
}

#: the full Jacobian is used when inputs and outputs have at most this many elements
FULL_JACOBIAN_LIMIT = 400


class GradcheckError(AssertionError):
    """Backward disagrees with finite differences; the message says where."""


def gradcheck(fn, inputs, eps=None, atol=None, rtol=None, *, mode="auto",
              directions=3, seed=0) -> bool:
    """Check the gradients of ``fn`` with respect to every input that requires grad.

    ``inputs`` is a list of tensors (passed positionally, named ``inputs[i]``)
    or a dict (passed as keywords, named by key). ``fn`` returns a tensor.
    ``mode`` is ``"full"``, ``"directional"`` or ``"auto"`` (full for small
    inputs and outputs). Returns True, or raises :class:`GradcheckError`.
    """
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'directional', got {mode!r}")
    named = dict(inputs) if isinstance(inputs, dict) else {
        f"inputs[{i}]": t for i, t in enumerate(inputs)}
    checked = {name: t for name, t in named.items()
               if isinstance(t, Tensor) and t.requires_grad}
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    dtypes = {t.dtype for t in checked.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in TOLERANCES:
        raise TypeError(f"gradcheck: inputs to check must all be float32 or all float64, "
                        f"got {sorted(str(d) for d in dtypes)}")
    tol = dict(TOLERANCES[next(iter(dtypes))])
    tol.update({k: v for k, v in dict(eps=eps, atol=atol, rtol=rtol).items() if v is not None})

    def call():
        return fn(**named) if isinstance(inputs, dict) else fn(*named.values())

    def evaluate():
        with no_grad():
            # A copy: the output may be a view of an input that is about to be perturbed.
            return np.array(call().numpy(), dtype=np.float64, copy=True)

    y_shape = evaluate().shape
    rng = np.random.default_rng(seed)
    n_in = sum(t.size for t in checked.values())
    n_out = int(np.prod(y_shape, dtype=np.int64))
    if mode == "full" or (mode == "auto" and max(n_in, n_out) <= FULL_JACOBIAN_LIMIT):
        _check_full_jacobian(call, evaluate, checked, y_shape, tol)
    else:
        r = rng.standard_normal(y_shape)
        _check_directions(call, evaluate, checked, r, tol, directions, rng)
    return True


def _gradients(call, checked, cotangent):
    """Backward of ``<cotangent, fn(...)>``: {name: float64 gradient}."""
    for t in checked.values():
        t.grad = None
    y = call()
    if not y.requires_grad:
        raise GradcheckError("gradcheck: the output does not depend on any checked input "
                             "(it has requires_grad=False)")
    y.backward(np.asarray(cotangent, dtype=y.dtype))
    grads = {}
    for name, t in checked.items():
        g = np.zeros(t.shape) if t.grad is None else backend.to_numpy(t.grad)
        grads[name] = np.asarray(g, dtype=np.float64)
        t.grad = None
    return grads


def _central_difference(evaluate, tensor, direction, eps, weights):
    """(L(x + eps d) - L(x - eps d)) / 2 eps with L = <weights, f>; x is restored after."""
    original = tensor.data.copy()
    step = backend.array_module(tensor.data).asarray((eps * direction).astype(tensor.dtype))
    try:
        tensor.data[...] = original + step
        plus = evaluate()
        tensor.data[...] = original - step
        minus = evaluate()
    finally:
        tensor.data[...] = original
    return (plus - minus) / (2 * eps) if weights is None else \
        float(np.sum(weights * (plus - minus)) / (2 * eps))


def _mismatch(numeric, analytic, tol):
    return np.abs(numeric - analytic) - (tol["atol"] + tol["rtol"] * np.abs(numeric))


def _failure(name, where, numeric, analytic, tol, shape, how):
    rel = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-300)
    return GradcheckError(
        f"gradcheck failed for {name} (shape {shape}) {where} [{how}]: "
        f"numeric {numeric:.10g}, analytic {analytic:.10g}, "
        f"relative error {rel:.3g} (atol {tol['atol']:g}, rtol {tol['rtol']:g}, eps {tol['eps']:g})")


def _check_full_jacobian(call, evaluate, checked, y_shape, tol):
    n_out = int(np.prod(y_shape, dtype=np.int64))
    rows = []  # analytic Jacobian, one row (all inputs' grads) per output element
    for j in range(n_out):
        unit = np.zeros(n_out)
        unit[j] = 1.0
        grads = _gradients(call, checked, unit.reshape(y_shape))
        rows.append({name: g.reshape(-1) for name, g in grads.items()})
    for name, t in checked.items():
        analytic = np.stack([row[name] for row in rows])       # (n_out, n_in)
        numeric = np.empty_like(analytic)
        for i in range(t.size):
            unit = np.zeros(t.size)
            unit[i] = 1.0
            numeric[:, i] = _central_difference(evaluate, t, unit.reshape(t.shape),
                                                tol["eps"], None).reshape(-1)
        bad = _mismatch(numeric, analytic, tol)
        if (bad > 0).any() or not np.isfinite(analytic).all():
            j, i = np.unravel_index(np.argmax(np.where(np.isfinite(bad), bad, np.inf)), bad.shape)
            where = f"at element {_index(i, t.shape)}, output {_index(j, y_shape)}"
            raise _failure(name, where, numeric[j, i], analytic[j, i], tol, t.shape,
                           "full Jacobian")


def _check_directions(call, evaluate, checked, r, tol, directions, rng):
    grads = _gradients(call, checked, r)
    for name, t in checked.items():
        for k in range(directions):
            d = rng.standard_normal(t.shape)
            d /= np.linalg.norm(d)
            numeric = _central_difference(evaluate, t, d, tol["eps"], r)
            analytic = float(np.sum(grads[name] * d))
            if _mismatch(numeric, analytic, tol) > 0 or not np.isfinite(analytic):
                index = _bisect(evaluate, t, grads[name], d, r, tol)
                unit = np.zeros(t.shape)
                unit[index] = 1.0
                numeric_i = _central_difference(evaluate, t, unit, tol["eps"], r)
                raise _failure(
                    name, f"at element {index} (found by bisection after random direction "
                    f"{k} gave numeric {numeric:.10g} vs analytic {analytic:.10g})",
                    numeric_i, float(grads[name][index]), tol, t.shape, "directional")


def _bisect(evaluate, t, grad, d, r, tol):
    """Narrow direction d's support to one element, keeping the half that disagrees more."""
    support = np.flatnonzero(d)
    while support.size > 1:
        halves = np.array_split(support, 2)
        errors = []
        for half in halves:
            part = np.zeros(t.size)
            part[half] = d.reshape(-1)[half]
            part = part.reshape(t.shape)
            numeric = _central_difference(evaluate, t, part, tol["eps"], r)
            errors.append(abs(numeric - float(np.sum(grad * part))))
        support = halves[int(np.argmax(errors))]
    return _index(support[0], t.shape)


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(flat, shape))


# --- inputs on which finite differences are meaningful -------------------------------

def kink_free(shape, dtype=np.float64, margin=0.1, seed=0) -> np.ndarray:
    """Values in [-1, -margin] U [margin, 1]: nowhere near ReLU's kink at 0."""
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(margin, 1.0, size=shape)
    return np.asarray(magnitude * rng.choice([-1.0, 1.0], size=shape), dtype=dtype)


def tie_free(shape, dtype=np.float64, seed=0) -> np.ndarray:
    """Distinct values, in random order, at least 100 eps of ``dtype``'s gradcheck apart,
    so a perturbation of size eps never changes which value of a window is the max."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    spacing = max(2.0 / max(n, 1), 100 * TOLERANCES[np.dtype(dtype)]["eps"])
    values = (rng.permutation(n) - n / 2) * spacing
    return values.reshape(shape).astype(dtype)
