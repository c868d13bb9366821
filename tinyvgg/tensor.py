"""Tensor, the op base class, and backpropagation.

The whole of backprop fits in :meth:`Tensor.backward`:

1. list every tensor the result depends on, inputs before outputs (a
   topological order, found with an explicit stack so deep graphs never hit
   Python's recursion limit);
2. walk that list backwards; each tensor made by an op hands its gradient to
   the op's ``backward``, which returns one gradient per input;
3. gradients arriving at a tensor from several uses are summed (``+``).

An op is a :class:`Function` subclass with static methods::

    forward(ctx, *arrays, **params) -> array      # saves what backward needs
    backward(ctx, grad_output)      -> tuple of input gradients (or None)

They work on raw arrays of the tensors' device. An op whose CPU and GPU code
differ defines ``forward_cpu`` and ``forward_cuda`` (and ``backward_cpu``,
``backward_cuda``) side by side instead; :meth:`Function.implementation` picks
the one for the inputs' device (with :func:`device_method`, the only place in
the engine that asks which device the work runs on). Input checks shared by
both paths go in ``check``, run before either. ``ctx`` (a :class:`Context`)
holds exactly what forward chose to keep with ``ctx.save(...)``, and is
emptied once backward has used it. NumPy's arithmetic on 0-d arrays returns
scalars (``np.float64``), which ``Tensor()`` and ``backward`` turn back into
0-d arrays (``backend.as_array``), so ops need not. On the CPU both run inside
``workers.op_scope``: BLAS on one thread, the op splitting its work over the
cores itself (``tinyvgg.workers``).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from . import backend, workers

_state = threading.local()

#: the ops behind a tensor's ``+``, ``*``, ``.sum()``, ``.reshape()`` and ``.to(dtype)``,
#: by name ("add", "mul", "sum", "reshape", "cast"). ops/arith.py and ops/shape.py enter
#: them when they are imported (importing tinyvgg imports them), so arrows point from the
#: ops to this module and never back.
OPERATOR_OPS: dict[str, type] = {}


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


def active_profiler():
    """The ``tinyvgg.profiler.profile`` recording on this thread, or None (the usual case).

    Ops, backward and module calls check this once per call and, when it is
    None, run exactly as if no profiler existed."""
    return getattr(_state, "profiler", None)


def set_active_profiler(profiler) -> None:
    """Make ``profiler`` (or None) the one ops report to on this thread: the hook
    ``tinyvgg.profiler.profile`` uses to start and stop recording."""
    _state.profiler = profiler


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) that stops ops from recording the graph.

    Inside it, results have ``requires_grad=False`` and ops keep nothing for
    backward, which is what evaluation and weight updates want.
    """

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous
        return False


class Context:
    """What one op call keeps between its forward and its backward.

    ``ctx.save(name=value, ...)`` stores values; backward reads them back as
    attributes (``ctx.name``). ``needs_input_grad[i]`` says whether input ``i``
    wants a gradient, so backward can skip work nobody asked for.
    """

    def __init__(self, op_name: str, needs_input_grad: tuple[bool, ...], device: str):
        self.op_name = op_name
        self.needs_input_grad = needs_input_grad
        self.device = device
        self._saved: dict = {}
        self._freed = False

    def save(self, **values) -> None:
        self._saved.update(values)

    def needs(self, n: int) -> tuple[bool, ...]:
        """``needs_input_grad`` for an op with ``n`` inputs, optional ones included:
        an input that was not passed (a bias left out) needs no gradient."""
        return (self.needs_input_grad + (False,) * n)[:n]

    def __getattr__(self, name):
        # Only reached when normal attribute lookup fails: i.e. for saved values.
        saved = self.__dict__.get("_saved", {})
        if name in saved:
            return saved[name]
        self.check_not_freed()
        raise AttributeError(f"{self.op_name}: nothing named {name!r} was saved for backward")

    def check_not_freed(self) -> None:
        """Raise if an earlier backward() has run through this op and let go of it."""
        if self.__dict__.get("_freed"):
            raise RuntimeError(
                f"{self.op_name}: the values saved for backward were freed by an earlier "
                "backward(); pass retain_graph=True to the first backward() to run backward "
                "through this graph again")

    @property
    def saved_arrays(self) -> list:
        """The arrays kept for backward (empty once backward has freed them)."""
        return [v for v in self._saved.values() if hasattr(v, "nbytes")]

    @property
    def saved_nbytes(self) -> int:
        return sum(v.nbytes for v in self.saved_arrays)

    def free(self) -> None:
        self._saved = {}
        self._freed = True


class Node:
    """One recorded op call: which op, its context, and its input tensors."""

    __slots__ = ("function", "ctx", "inputs")

    def __init__(self, function: type, ctx: Context, inputs: tuple):
        self.function = function
        self.ctx = ctx
        self.inputs = inputs

    def __repr__(self):
        return f"<{self.function.__name__} node>"


def device_method(cls: type, step: str, device: str, stop: type = object):
    """``cls``'s method ``<step>_<device>``, or ``<step>`` when no class up to ``stop``
    (excluded) defines the per-device one first: the only place that asks which device a
    piece of work runs on (:meth:`Function.implementation`, ``ops.sgd.sgd_step_``).

    The most derived class that defines either name decides, the per-device name first."""
    for klass in cls.__mro__:
        if klass is stop:
            break
        for name in (f"{step}_{device}", step):
            if name in klass.__dict__:
                return getattr(cls, name)
    raise NotImplementedError(f"{getattr(cls, 'name', None) or cls.__name__}: no {step} "
                              f"for device {device!r}")


class Function:
    """Base class of every op. Subclasses define ``forward`` and ``backward``, or their
    per-device versions ``forward_cpu``/``forward_cuda`` and ``backward_cpu``/``backward_cuda``."""

    #: the name used in error messages; defaults to the class name
    name: str | None = None

    @staticmethod
    def check(*arrays, **params) -> None:
        """Validate the inputs, for both devices; raise with the op's name on bad input."""

    @classmethod
    def implementation(cls, step: str, device: str):
        """The method that runs ``step`` ("forward" or "backward") on ``device``.

        The most derived class that defines ``<step>_<device>`` or ``<step>`` decides, the
        per-device method first: so a subclass that overrides ``backward`` (to test that a
        wrong backward is caught) replaces both devices' versions."""
        return device_method(cls, step, device, stop=Function)

    @classmethod
    def forward(cls, ctx: Context, *arrays, **params):
        """The forward pass on ``ctx.device`` (the op's ``forward_<device>``)."""
        return cls.implementation("forward", ctx.device)(ctx, *arrays, **params)

    @classmethod
    def backward(cls, ctx: Context, grad_output):
        """The backward pass on ``ctx.device`` (the op's ``backward_<device>``)."""
        return cls.implementation("backward", ctx.device)(ctx, grad_output)

    @classmethod
    def apply(cls, *inputs, **params) -> "Tensor":
        """Run the op on tensors (or raw values for non-differentiable inputs)."""
        op_name = cls.name or cls.__name__
        tensors = [t for t in inputs if isinstance(t, Tensor)]
        device = backend.common_device(op_name, [t.device for t in tensors])
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        needs_input_grad = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        record = is_grad_enabled() and any(needs_input_grad)
        ctx = Context(op_name, needs_input_grad if record else (False,) * len(inputs), device)
        cls.check(*arrays, **params)
        forward = cls.implementation("forward", device)
        profiler = active_profiler()
        with workers.op_scope(device):  # on the CPU: the op splits its work over the cores
            if profiler is None:
                data = forward(ctx, *arrays, **params)
            else:  # a profiler is recording: it times the call and notes the running layer
                data = profiler.forward(forward, ctx, arrays, params)
        out = Tensor(data, requires_grad=record)
        if record:
            out.creator = Node(cls, ctx, inputs)
        return out


class Tensor:
    """An n-dimensional array that remembers how it was made.

    ``data`` is the array (NumPy on the CPU); ``grad`` is filled in by
    :meth:`backward` for tensors created by the user with ``requires_grad``.
    """

    __array_ufunc__ = None  # so ``ndarray * Tensor`` defers to Tensor.__rmul__
    _grad_hooks: tuple = ()  # register_grad_hook's functions (few tensors have any)

    def __init__(self, data, requires_grad: bool = False):
        self.data = backend.as_array(data)  # an op's 0-d result may be a NumPy scalar
        self.grad = None
        self.creator: Node | None = None
        if requires_grad and not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"tensor: only floating-point tensors can require gradients, "
                            f"got dtype {data.dtype}")
        self.requires_grad = bool(requires_grad)

    # --- what the array is -------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def __len__(self):
        return self.shape[0]

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (on the CPU this shares memory)."""
        return backend.to_numpy(self.data)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item: expected a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self) -> "Tensor":
        """The same values, cut off from the graph."""
        return Tensor(self.data)

    def to(self, device_or_dtype) -> "Tensor":
        """This tensor on another device or in another dtype (``self`` if nothing changes).

        A dtype change is an op like any other: gradients flow back through it.
        """
        if isinstance(device_or_dtype, str):
            data = backend.move(self.data, device_or_dtype)
            return self if data is self.data else Tensor(data, requires_grad=self.requires_grad)
        dtype = np.dtype(device_or_dtype)
        if dtype == self.dtype:
            return self
        return OPERATOR_OPS["cast"].apply(self, dtype=dtype)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.numpy(), precision=4, threshold=20, prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{grad})"

    # --- backprop ------------------------------------------------------------
    def register_grad_hook(self, hook) -> "GradHookHandle":
        """Call ``hook(self)`` during each :meth:`backward` as soon as this leaf's ``.grad``
        holds everything that backward adds to it, before backward goes on with the
        tensors left: what lets gradients be sent elsewhere while backward still runs
        (``tinyvgg.train.distributed``). ``handle.remove()`` takes the hook off."""
        if not self.is_leaf:
            raise ValueError("register_grad_hook: only a leaf tensor (one made by the user, "
                             "such as a parameter) keeps a .grad")
        self._grad_hooks = self._grad_hooks + (hook,)
        return GradHookHandle(self, hook)

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) * grad into ``leaf.grad`` for every leaf.

        ``grad`` defaults to 1 for a one-element tensor; any other tensor must
        be given the gradient of some scalar with respect to it. Unless
        ``retain_graph`` is set, the arrays ops saved for backward are freed
        as soon as they have been used, and each op lets go of its input tensors,
        so an activation nothing else holds is freed once backward is past it.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad: no input of "
                               "the ops that made it had requires_grad=True "
                               "(or it was made under no_grad())")
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward: called without a gradient on a tensor of shape {self.shape}; "
                    "only a one-element tensor (a loss) gets the implicit gradient 1, "
                    "so pass grad= with the same shape")
            grad = backend.array_module(self.data).ones_like(self.data)
        else:
            grad = backend.array_module(self.data).asarray(
                grad.data if isinstance(grad, Tensor) else grad)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(grad.shape)}, "
                                 f"but the tensor has shape {self.shape}")
            grad = grad.astype(self.dtype, copy=False)

        order = topological_order(self)
        for tensor in order:  # before any gradient is added up: no .grad half-accumulated
            if tensor.creator is not None:
                tensor.creator.ctx.check_not_freed()
        grads = {id(self): grad}
        profiler = active_profiler()
        while order:
            # popped, and each node's inputs dropped once its backward has run, so that
            # an activation is freed as soon as the backward pass is past it (unless
            # something else holds its tensor), not when the whole pass ends
            tensor = order.pop()
            g = grads.pop(id(tensor), None)
            if g is None:
                continue
            g = backend.as_array(g)  # 0-d gradients may come back as NumPy scalars
            if tensor.creator is None:
                # Always a fresh array: an op may return a view, or hand the
                # same array to two inputs, and .grad must be the leaf's own.
                tensor.grad = (g.copy(order="K") if tensor.grad is None
                               else backend.as_array(tensor.grad + g))
                for hook in tensor._grad_hooks:  # a leaf's gradient is whole once reached
                    hook(tensor)
                continue
            node = tensor.creator
            backward = node.function.implementation("backward", node.ctx.device)
            with workers.op_scope(node.ctx.device):
                if profiler is None:
                    input_grads = backward(node.ctx, g)
                else:  # a profiler is recording: it times this node's backward
                    input_grads = profiler.backward(backward, node, g)
            for inp, ig in zip(node.inputs, input_grads):
                if ig is None or not isinstance(inp, Tensor) or not inp.requires_grad:
                    continue
                grads[id(inp)] = ig if id(inp) not in grads else grads[id(inp)] + ig
            if not retain_graph:
                node.ctx.free()
                node.inputs = ()
            del input_grads  # the gradients now live in grads alone

    # --- a little arithmetic, so losses and penalties can be written naturally
    def __add__(self, other):
        return OPERATOR_OPS["add"].apply(self, as_tensor(other, self))

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        return self + (-1.0) * as_tensor(other, self)

    def __rsub__(self, other):
        return as_tensor(other, self) + (-1.0) * self

    def __neg__(self):
        return (-1.0) * self

    def __mul__(self, other):
        return OPERATOR_OPS["mul"].apply(self, as_tensor(other, self))

    def __rmul__(self, other):
        return self.__mul__(other)

    def sum(self):
        return OPERATOR_OPS["sum"].apply(self)

    def mean(self):
        return self.sum() * (1.0 / self.size)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return OPERATOR_OPS["reshape"].apply(self, shape=shape)


class GradHookHandle:
    """What :meth:`Tensor.register_grad_hook` returns: ``remove()`` takes the hook off."""

    def __init__(self, tensor: Tensor, hook):
        self.tensor, self.hook = tensor, hook

    def remove(self) -> None:
        self.tensor._grad_hooks = tuple(h for h in self.tensor._grad_hooks
                                        if h is not self.hook)


def as_tensor(value, like: Tensor) -> Tensor:
    """``value`` itself when it is a tensor, else a constant tensor of ``like``'s dtype and
    device (how ``x * 2.0`` and ``F.add(x, 1)`` take plain numbers)."""
    if isinstance(value, Tensor):
        return value
    xp = backend.array_module(like.data)
    return Tensor(xp.asarray(value, dtype=like.dtype))


def topological_order(root: Tensor) -> list:
    """Every tensor ``root`` depends on, each listed after all of its inputs.

    Depth-first search with an explicit stack: a tensor is emitted once all
    of its inputs have been emitted (post-order), so the list is a valid
    order for the forward pass and its reverse for the backward pass.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, inputs_done = stack.pop()
        if inputs_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor.creator is not None:
            for inp in tensor.creator.inputs:
                if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


_DEFAULT_FLOAT = np.float32


def tensor(data, requires_grad: bool = False, dtype=None, device: str = "cpu") -> Tensor:
    """Make a tensor from an array, a nested list or a number (always copies).

    Python floats and lists of them become float32 (the engine's default);
    NumPy arrays keep their dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    if not isinstance(data, np.ndarray) and backend.device_of_or_none(data) == "cuda":
        array = data.astype(data.dtype if dtype is None else dtype, copy=True)
        return Tensor(backend.move(array, device), requires_grad=requires_grad)
    if dtype is None and not isinstance(data, np.ndarray):
        probe = np.asarray(data)
        dtype = _DEFAULT_FLOAT if np.issubdtype(probe.dtype, np.floating) else None
    array = np.array(data, dtype=dtype, copy=True)
    return Tensor(backend.move(array, device), requires_grad=requires_grad)
