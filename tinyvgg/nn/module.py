"""Module, Parameter and Sequential: the containers layers are built from.

A module owns parameters (tensors the optimiser updates), buffers (arrays
that are state but not learned, like batch norm's running mean) and child
modules, registered simply by assigning attributes. Their dotted names
(``features.0.weight``) are the keys of ``state_dict``, as in PyTorch.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor, active_profiler


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module (requires grad by default)."""

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: subclasses set attributes and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # --- registration ------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before "
                               "assigning attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value
        else:
            for registry in (self._parameters, self._buffers, self._modules):
                registry.pop(name, None)
            if isinstance(value, Parameter):
                self._parameters[name] = value
            elif isinstance(value, Module):
                self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        """Keep ``array`` as state (saved in state_dict, moved by ``to``) but not trained."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    # --- traversal -------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and every module inside it."""
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            children = [(f"{name}.{child}" if name else child, m)
                        for child, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def children(self):
        return iter(m for m in self._modules.values() if m is not None)

    def is_leaf_module(self) -> bool:
        """Whether this module holds no other modules (a layer, not a container)."""
        return next(self.children(), None) is None

    def named_parameters(self, recurse: bool = True):
        """Each parameter once, under its first name, even if a layer is used twice;
        with ``recurse=False``, only this module's own parameters."""
        seen = set()
        for name, module in (self.named_modules() if recurse else [("", self)]):
            for pname, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{name}.{pname}" if name else pname), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for name, module in self.named_modules():
            for bname, b in module._buffers.items():
                if b is not None:
                    yield (f"{name}.{bname}" if name else bname), b

    # --- modes and gradients -------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # --- state ------------------------------------------------------------------------
    def _state_arrays(self):
        """(dotted name, array) of every parameter and buffer, module by module, in
        PyTorch's order; a layer used twice appears under both of its names."""
        for prefix, module in self.named_modules():
            own = [(k, p.data) for k, p in module._parameters.items() if p is not None]
            own += [(k, b) for k, b in module._buffers.items() if b is not None]
            for name, array in own:
                yield (f"{prefix}.{name}" if prefix else name), array

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer as NumPy arrays, by dotted name."""
        return OrderedDict((key, np.array(backend.to_numpy(array), copy=True))
                           for key, array in self._state_arrays())

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy values into this module's parameters and buffers.

        Any shape mismatch is an error. With ``strict`` (the default), keys
        this module lacks or does not provide are errors too; all problems
        are listed in one message and nothing is loaded unless all is well.
        """
        targets = OrderedDict(self._state_arrays())
        given = {k: (v.numpy() if isinstance(v, Tensor) else np.asarray(v))
                 for k, v in state_dict.items()}
        missing = [k for k in targets if k not in given]
        unexpected = [k for k in given if k not in targets]
        misshaped = [f"{k}: expected {tuple(targets[k].shape)}, got {tuple(given[k].shape)}"
                     for k in targets if k in given and given[k].shape != targets[k].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if misshaped:
            problems.append(f"wrong shapes: {'; '.join(misshaped)}")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + " | ".join(problems))
        for key, target in targets.items():
            if key in given:
                target[...] = backend.array_module(target).asarray(given[key])

    # --- devices and dtypes -------------------------------------------------------------
    def to(self, device_or_dtype) -> "Module":
        """Move every parameter and buffer to a device, or cast floating ones to a dtype."""
        if isinstance(device_or_dtype, str):
            backend.check_device(device_or_dtype)

            def convert(a):
                return backend.move(a, device_or_dtype)
        else:
            dtype = np.dtype(device_or_dtype)
            if dtype.kind != "f":
                raise TypeError(f"Module.to: expected a device name or a floating dtype, "
                                f"got {device_or_dtype!r}")

            def convert(a):
                return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a
        for _, module in self.named_modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data, p.grad = convert(p.data), None
            for name, b in list(module._buffers.items()):
                if b is not None:
                    module.register_buffer(name, convert(b))
        return self

    # --- calling --------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        # A recording profiler (tinyvgg.profiler) is told which layer runs, so that
        # each op call is charged to the innermost one; without one, one check.
        profiler = active_profiler()
        if profiler is not None:
            profiler.enter_layer(self)
        try:
            output = self.forward(*args, **kwargs)
        except (ValueError, TypeError) as error:
            _name_the_layer(error, self)
            raise
        finally:
            if profiler is not None:
                profiler.exit_layer(self)
        for hook in list(self._forward_hooks.values()):
            replaced = hook(self, args, output)
            if replaced is not None:
                output = replaced
        return output

    def fuses_with(self, following: "Module") -> bool:
        """Whether ``self(x, relu=True)`` may stand for ``following(self(x))`` in a
        Sequential; only layers that can take a ReLU into their own op say yes."""
        return False

    def has_forward_hooks(self) -> bool:
        return bool(self._forward_hooks)

    def register_forward_hook(self, hook) -> "HookHandle":
        """Call ``hook(module, inputs, output)`` after every forward of this module.

        A hook that returns something replaces the output with it. Returns a
        handle whose ``remove()`` takes the hook off again."""
        handle = HookHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        if not self._modules:
            return self._describe()
        lines = [f"{type(self).__name__}("]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return "\n".join(lines) + "\n)"


class HookHandle:
    _next_id = 0

    def __init__(self, hooks):
        self.hooks, self.id = hooks, HookHandle._next_id
        HookHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _name_the_layer(error, module) -> None:
    """Prefix the error with the innermost layer the bad input reached and its
    dotted path, as seen from the outermost module it passed through."""
    if getattr(error, "layer", None) is None:
        error.layer, error.layer_path = module, ""
        error.plain_message = str(error.args[0]) if error.args else ""
    else:
        error.layer_path = next((name for name, m in module.named_modules()
                                 if m is error.layer), error.layer_path)
    where = f" at {error.layer_path}" if error.layer_path else ""
    error.args = (f"{error.layer._describe()}{where}: {error.plain_message}",) + error.args[1:]


class Sequential(Module):
    """Modules applied one after another; children are named "0", "1", ..."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {i} must be a Module, "
                                f"got {type(module).__name__}")
            setattr(self, str(i), module)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __setitem__(self, index, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: item {index} must be a Module, "
                            f"got {type(module).__name__}")
        keys = list(self._modules)
        setattr(self, keys[index], module)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            module = modules[i]
            if i + 1 < len(modules) and module.fuses_with(modules[i + 1]):
                x = module(x, relu=True)   # this layer and the next as one op
                i += 2
            else:
                x = module(x)
                i += 1
        return x
