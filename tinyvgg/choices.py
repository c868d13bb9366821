"""One selector for every kernel choice: which rung of a ladder an op runs.

Each choice is a :class:`Choice` made where its rungs are defined (the op's module) and
registered here under its key:

    key                    what is chosen                              defined in
    conv3x3_cpu            conv3x3's CPU implementation, fwd + bwd     ops/conv_cpu.py
    conv3x3_kernel         conv3x3's GPU kernel, forward + input grad  ops/conv_cuda.py
    conv3x3_wgrad_kernel   conv3x3's GPU weight-gradient kernel        ops/conv_cuda.py
    gemm_kernel            the GPU matrix product behind ``linear``    ops/linear.py
    conv_relu              a Conv3x3 + ReLU as one op or as two        nn/layers.py

conv3x3_kernel and conv3x3_wgrad_kernel also take "auto": per layer and job, the rung
measured fastest on this GPU (ops/conv_auto.py).

The same three ways select any of them, and every refusal has one shape
(``<where>: unknown <what> <name>; choose one of <names>``):

* ``use(conv3x3_cpu="im2col", gemm_kernel="register")`` selects until changed;
* ``with using(conv3x3_kernel="winograd4x4"):`` selects for a block, and the selection
  before it comes back afterwards, even on an exception;
* the environment variable ``TINYVGG_<KEY>`` (``TINYVGG_CONV3X3_CPU=winograd``) selects at
  import, and a bad value stops the import with the variable's name in the message.

``selected("conv3x3_cpu")`` reads a choice. Each choice also has its own three functions,
named after its key (``use_conv3x3_cpu``, ``using_conv3x3_cpu``, ``conv3x3_cpu``), made by
:meth:`Choice.functions` and exported by the op's module.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

ENV_PREFIX = "TINYVGG_"


class NotANameError(ValueError, TypeError):
    """Something that is not a name at all (None, a number): a wrong value of the wrong type.
    (A name that is not one of the options is a plain ValueError.)"""


class Choice:
    """One selectable ladder: its key, what it selects (for messages), its options and
    its default; the environment variable ``TINYVGG_<KEY>`` overrides the default."""

    def __init__(self, key: str, what: str, options, default: str):
        self.key, self.what, self.options = key, what, tuple(options)
        self.env = ENV_PREFIX + key.upper()
        self._selected = self.checked(default, "default")
        from_env = os.environ.get(self.env)
        if from_env:
            self._selected = self.checked(from_env, f"environment variable {self.env}")
        register(self)

    def checked(self, name, where: str) -> str:
        """``name`` when it is one of the options; the error every refusal shares otherwise."""
        choices = ", ".join(repr(option) for option in self.options)
        if isinstance(name, str) and name in self.options:
            return name
        if not isinstance(name, str):
            raise NotANameError(f"{where}: unknown {self.what} {name!r}; choose one of "
                                f"{choices} (the {self.what} must be a name, "
                                f"got {type(name).__name__})")
        raise ValueError(f"{where}: unknown {self.what} {name!r}; "
                                 f"choose one of {choices}")

    def use(self, name: str, where: str | None = None) -> None:
        self._selected = self.checked(name, where or f"use_{self.key}")

    def selected(self) -> str:
        return self._selected

    @contextmanager
    def using(self, name: str, where: str | None = None):
        before = self._selected
        self.use(name, where or f"using_{self.key}")
        try:
            yield
        finally:
            self._selected = before

    def functions(self):
        """(use_<key>, using_<key>, <key>): this choice's selector functions, named after
        its key so that their errors and their ``__name__`` say which choice they set."""
        def use(name: str) -> None:
            self.use(name)

        def using(name: str):
            return self.using(name)

        def selected() -> str:
            return self._selected

        for function, name, doc in (
                (use, f"use_{self.key}", f"Select the {self.what}: one of {self.options} "
                                         f"(environment variable {self.env} at import)."),
                (using, f"using_{self.key}", f"``with {f'using_{self.key}'}(name):`` selects "
                                             f"the {self.what} for the block only."),
                (selected, self.key, f"The {self.what} selected now.")):
            function.__name__ = function.__qualname__ = name
            function.__doc__ = doc
        return use, using, selected


_CHOICES: dict[str, Choice] = {}


def register(choice: Choice) -> None:
    _CHOICES[choice.key] = choice


def choice(key: str) -> Choice:
    if key not in _CHOICES:
        raise ValueError(f"choices: unknown kernel choice {key!r}; "
                                 f"choose one of {', '.join(repr(k) for k in _CHOICES)}")
    return _CHOICES[key]


def keys() -> tuple[str, ...]:
    return tuple(_CHOICES)


def selected(key: str) -> str:
    return choice(key).selected()


def use(**selections: str) -> None:
    """Select rungs by key: ``use(conv3x3_cpu="im2col")``; all names are checked before
    any selection changes."""
    checked = {key: choice(key).checked(name, "use") for key, name in selections.items()}
    for key, name in checked.items():
        choice(key)._selected = name


@contextmanager
def using(**selections: str):
    """``with using(conv3x3_kernel="tiled", gemm_kernel="naive"):`` selects for the block
    only; every selection before it comes back afterwards, even on an exception."""
    before = {key: choice(key).selected() for key in selections}
    use(**selections)
    try:
        yield
    finally:
        for key, name in before.items():  # names that were selected: no second check
            choice(key)._selected = name
