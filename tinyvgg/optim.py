"""Optimisers and learning-rate schedules: SGD with momentum and PyTorch's epoch-based schedulers.

A training loop holds one :class:`SGD` and one scheduler::

    optimizer = SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scheduler = make_scheduler("plateau", optimizer, epochs=74)
    for epoch in range(74):
        for i, (x, y) in enumerate(batches):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if scheduler.per_batch:
                scheduler.step(epoch + i / len(batches))
        if scheduler.needs_metric:
            scheduler.step(validation_accuracy)
        elif not scheduler.per_batch:
            scheduler.step()

The paper trains with momentum 0.9, weight decay 5e-4 and a learning rate
divided by 10 whenever the validation accuracy stops improving: that is
``ReduceLROnPlateau(optimizer, mode="max", factor=0.1)``.

The optimiser holds a single learning rate, ``optimizer.lr``, a plain
attribute the schedulers set. Every scheduler follows the arithmetic of its
``torch.optim.lr_scheduler`` namesake, including what construction does:
the epoch counter starts at 0 and the learning rate at ``base_lr``.

:class:`WeightAverage` keeps the running mean of the parameters over the
steps it is told about (stochastic weight averaging), for a run that ends on
the average of its last epochs' weights.

Every state survives a restart exactly. ``SGD.state_dict`` (and
``WeightAverage.state_dict``) is a flat dict of NumPy arrays, so it can be
stored in an ``.npz`` file that is read without unpickling; a scheduler's
``state_dict`` holds only JSON values.
"""
from __future__ import annotations

import bisect
import copy
import inspect
import math
from collections.abc import Mapping

import numpy as np

from . import backend
from .ops.sgd import sgd_step_
from .tensor import Tensor

__all__ = ["SGD", "WeightAverage", "LRScheduler", "Constant", "StepLR", "MultiStepLR",
           "ReduceLROnPlateau", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
           "make_scheduler", "SCHEDULERS", "warmup_factor"]


def _real(owner: str, name: str, value, at_least: float | None = None) -> float:
    """``value`` as a finite float, refusing bools, strings and values below ``at_least``."""
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (at_least is not None and value < at_least):
        wanted = "a finite number" + ("" if at_least is None else f" >= {at_least:g}")
        raise ValueError(f"{owner}: {name} must be {wanted}, got {value}")
    return value


def _integer(owner: str, name: str, value, at_least: int = 0) -> int:
    """``value`` as an int >= ``at_least``; floats, even whole ones, are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__}")
    if value < at_least:
        raise ValueError(f"{owner}: {name} must be an integer >= {at_least}, got {value}")
    return int(value)


def _flag(owner: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


# --- SGD ------------------------------------------------------------------------------

def _sgd_settings(owner: str, lr, momentum, dampening, weight_decay, nesterov) -> dict:
    """SGD's hyperparameters as floats and a bool, checked as ``sgd_step_`` will need them."""
    settings = dict(lr=_real(owner, "lr", lr, at_least=0),
                    momentum=_real(owner, "momentum", momentum, at_least=0),
                    dampening=_real(owner, "dampening", dampening),
                    weight_decay=_real(owner, "weight_decay", weight_decay, at_least=0),
                    nesterov=_flag(owner, "nesterov", nesterov))
    if settings["nesterov"] and (settings["momentum"] <= 0 or settings["dampening"] != 0):
        raise ValueError(f"{owner}: nesterov momentum needs momentum > 0 and dampening 0, got "
                         f"momentum {settings['momentum']:g} and dampening "
                         f"{settings['dampening']:g}")
    return settings


def _named_parameters(owner: str, params):
    """(names, parameters) of ``params``: parameters, or (name, parameter) pairs, or a
    mapping; unnamed ones are called ``p0``, ``p1``, ...; errors name ``owner``."""
    if isinstance(params, Tensor):
        raise TypeError(f"{owner}: params must be an iterable of parameters, got a single "
                        "Parameter; wrap it in a list")
    if isinstance(params, Mapping):
        params = params.items()
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"{owner}: params must be an iterable of parameters or of "
                        f"(name, parameter) pairs, got {type(params).__name__}") from None
    if not items:
        raise ValueError(f"{owner}: params is empty")
    pairs = [isinstance(item, tuple) for item in items]
    if any(pairs) and not all(pairs):
        raise TypeError(f"{owner}: params must be all parameters or all (name, parameter) "
                        "pairs, not a mixture")
    if not all(pairs):
        items = [(f"p{i}", p) for i, p in enumerate(items)]
    names, tensors = [], []
    for i, item in enumerate(items):
        if len(item) != 2 or not isinstance(item[0], str) or not item[0]:
            raise TypeError(f"{owner}: item {i} must be a (name, parameter) pair with a "
                            f"non-empty string name, got {item!r:.80}")
        name, p = item
        if not isinstance(p, Tensor):
            raise TypeError(f"{owner}: {name} must be a Parameter, got {type(p).__name__} "
                            "(pass model.parameters(), not model.state_dict())")
        names.append(name)
        tensors.append(p)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{owner}: parameter names must be unique, got {', '.join(repeated)} "
                         "more than once")
    seen = {}
    for name, p in zip(names, tensors):
        if id(p) in seen:
            raise ValueError(f"{owner}: the same parameter is listed twice, as "
                             f"{seen[id(p)]} and {name}; it would be updated twice a step")
        seen[id(p)] = name
    return names, tensors


class SGD:
    """Stochastic gradient descent with momentum, weight decay, dampening and Nesterov momentum.

    ``params`` is an iterable of parameters (``model.parameters()``) or of
    (name, parameter) pairs (``model.named_parameters()``); unnamed ones are
    called ``p0``, ``p1``, ... in the state dict. Each step applies
    :func:`tinyvgg.ops.sgd.sgd_step_` (PyTorch's update rule) to every
    parameter that has a gradient, on the parameter's own device.

    A parameter's velocity (momentum buffer) is created at its first update
    and starts as that step's direction, as in PyTorch; parameters without a
    gradient are skipped and keep no velocity until they get one.
    """

    HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, dampening=0.0,
                 nesterov=False):
        self.names, self.params = _named_parameters("SGD", params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.dampening, self.nesterov = dampening, nesterov
        self._check_hyperparameters("SGD")
        self.velocities: dict = {}  # name -> array on the parameter's device
        self.step_counts = {name: 0 for name in self.names}

    def _check_hyperparameters(self, owner: str) -> None:
        """Normalise the hyperparameters to floats and a bool; errors name ``owner``."""
        current = {key: getattr(self, key) for key in self.HYPERPARAMETERS}
        self.__dict__.update(_sgd_settings(owner, **current))

    def step(self) -> None:
        """Update every parameter that has a gradient by one SGD step, in place."""
        # lr and the others are plain attributes a scheduler or a user may have changed.
        self._check_hyperparameters("SGD.step")
        for name, p in zip(self.names, self.params):
            if p.grad is None:
                continue
            velocity = self.velocities.get(name)
            first_step = velocity is None
            if self.momentum != 0 and first_step:
                velocity = backend.array_module(p.data).zeros_like(p.data)
            try:
                sgd_step_(p.data, p.grad, velocity if self.momentum != 0 else None, self.lr,
                          momentum=self.momentum, weight_decay=self.weight_decay,
                          dampening=self.dampening, nesterov=self.nesterov,
                          first_step=first_step)
            except (TypeError, ValueError) as error:
                raise type(error)(f"SGD.step: parameter {name}: {error}") from None
            if self.momentum != 0:
                self.velocities[name] = velocity
            self.step_counts[name] += 1

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (set it to None, as ``Module.zero_grad`` does),
        so the next backward starts from nothing and gradient-less parameters are skipped."""
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as a flat dict of NumPy arrays.

        ``lr``, ``momentum``, ``dampening``, ``weight_decay``, ``nesterov``:
        0-d arrays; ``steps/<name>``: how many updates each parameter has had
        (int64); ``velocity/<name>``: a host copy of each velocity that exists.
        A parameter without a velocity entry starts its momentum afresh.
        """
        state = {"lr": np.array(self.lr, np.float64),
                 "momentum": np.array(self.momentum, np.float64),
                 "dampening": np.array(self.dampening, np.float64),
                 "weight_decay": np.array(self.weight_decay, np.float64),
                 "nesterov": np.array(self.nesterov, np.bool_)}
        for name in self.names:
            state[f"steps/{name}"] = np.array(self.step_counts[name], np.int64)
        for name in self.names:
            if name in self.velocities:
                state[f"velocity/{name}"] = np.array(backend.to_numpy(self.velocities[name]),
                                                     copy=True)
        return state

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` saved (a dict, or an ``np.load``-ed ``.npz``).

        Velocities are copied onto each parameter's device in its dtype. All
        problems (missing, unknown or misshaped entries) are listed in one
        error and nothing is changed unless all is well.
        """
        owner = "SGD.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{owner}: expected a dict of arrays, got {type(state).__name__}")
        given = {key: np.asarray(state[key]) for key in state if isinstance(key, str)}
        not_named = [repr(key) for key in state if not isinstance(key, str)]
        shapes = {name: tuple(p.shape) for name, p in zip(self.names, self.params)}
        expected = set(self.HYPERPARAMETERS) | {f"steps/{name}" for name in self.names}
        missing = [key for key in (*self.HYPERPARAMETERS, *(f"steps/{n}" for n in self.names))
                   if key not in given]
        unknown = [key for key in given if key not in expected and not (
            key.startswith("velocity/") and key[len("velocity/"):] in shapes)]
        problems = [f"keys must be strings, got {', '.join(not_named)}"] if not_named else []
        if missing:
            problems.append(f"missing entries: {', '.join(missing)}")
        if unknown:
            problems.append(f"entries for no parameter of this optimiser: {', '.join(unknown)}")
        for key, value in given.items():
            if key in self.HYPERPARAMETERS or key.startswith("steps/"):
                if value.shape != ():
                    problems.append(f"{key} must be a single value, got shape {value.shape}")
                elif key.startswith("steps/") and (value.dtype.kind not in "iu" or value < 0):
                    problems.append(f"{key} must be a count >= 0, got {value!r}")
            elif key.startswith("velocity/") and key not in unknown:
                name = key[len("velocity/"):]
                if value.dtype.kind != "f":
                    problems.append(f"{key} must be floating point, got {value.dtype}")
                elif value.shape != shapes[name]:
                    problems.append(f"{key}: expected shape {shapes[name]}, got {value.shape}")
        if problems:
            raise ValueError(f"{owner}: " + " | ".join(problems))

        settings = {key: given[key].item() for key in self.HYPERPARAMETERS}
        if not isinstance(settings["nesterov"], bool):
            raise TypeError(f"{owner}: nesterov must be a boolean array, "
                            f"got {given['nesterov'].dtype}")
        self.__dict__.update(_sgd_settings(owner, **settings))
        self.step_counts = {name: int(given[f"steps/{name}"]) for name in self.names}
        self.velocities = {}
        for name, p in zip(self.names, self.params):
            key = f"velocity/{name}"
            if key in given:
                xp = backend.array_module(p.data)
                self.velocities[name] = xp.array(given[key], dtype=p.data.dtype)

    def __repr__(self):
        settings = ", ".join(f"{key}={getattr(self, key)!r}" for key in self.HYPERPARAMETERS)
        return f"SGD({len(self.params)} parameters, {settings})"


class WeightAverage:
    """The running mean of parameters over the moments :meth:`update` is called: stochastic
    weight averaging (Izmailov et al., 2018; PyTorch's ``swa_utils.AveragedModel``).

    Late in training, SGD wanders around a wide minimum rather than settling in
    it; the mean of the points it visits lies nearer the minimum's centre than
    any one of them, and a point there is less disturbed by the small shift
    between training and test images. Update ``k`` (from 1) moves the mean
    towards the parameters by ``1 / k``, PyTorch's arithmetic, so after ``k``
    updates it is their plain mean. Batch-norm statistics are not averaged:
    the averaged weights need their own, computed afterwards from data
    (:func:`tinyvgg.train.model.recalibrate_batch_norm`).

    The mean lives on each parameter's device, in its dtype. ``state_dict`` is
    a flat dict of NumPy arrays (``count`` and ``mean/<name>``), like SGD's.
    """

    def __init__(self, params):
        self.names, self.params = _named_parameters("WeightAverage", params)
        self.count = 0
        self.means: dict = {}  # name -> array on the parameter's device

    def update(self) -> None:
        """Add the parameters as they are now to the mean."""
        self.count += 1
        for name, p in zip(self.names, self.params):
            mean = self.means.get(name)
            if mean is None:
                self.means[name] = p.data.copy()
            else:
                mean += (p.data - mean) / self.count

    def copy_to_parameters(self) -> None:
        """Replace the parameters' values by their mean (in place: the model keeps its
        tensors)."""
        if not self.count:
            raise ValueError("WeightAverage.copy_to_parameters: nothing has been averaged "
                             "yet; call update() first")
        for name, p in zip(self.names, self.params):
            p.data[...] = self.means[name]

    def state_dict(self) -> dict:
        state = {"count": np.array(self.count, np.int64)}
        for name in self.names:
            if name in self.means:
                state[f"mean/{name}"] = np.array(backend.to_numpy(self.means[name]), copy=True)
        return state

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` saved. The means must be all there (count > 0)
        or all absent (count 0), each of its parameter's shape; all problems are listed
        in one error and nothing is changed unless all is well."""
        owner = "WeightAverage.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{owner}: expected a dict of arrays, got {type(state).__name__}")
        given = {str(key): np.asarray(state[key]) for key in state}
        shapes = {name: tuple(p.shape) for name, p in zip(self.names, self.params)}
        problems = []
        count = given.get("count")
        if count is None:
            problems.append("missing entry: count")
        elif count.shape != () or count.dtype.kind not in "iu" or count < 0:
            problems.append(f"count must be a single integer >= 0, got {count!r}")
        unknown = [key for key in given if key != "count" and not (
            key.startswith("mean/") and key[len("mean/"):] in shapes)]
        if unknown:
            problems.append(f"entries for no parameter: {', '.join(unknown)}")
        means = {key[len("mean/"):]: value for key, value in given.items()
                 if key.startswith("mean/") and key not in unknown}
        for name, value in means.items():
            if value.dtype.kind != "f":
                problems.append(f"mean/{name} must be floating point, got {value.dtype}")
            elif value.shape != shapes[name]:
                problems.append(f"mean/{name}: expected shape {shapes[name]}, got {value.shape}")
        if count is not None and not problems:
            missing = [f"mean/{name}" for name in self.names if name not in means]
            if count > 0 and missing:
                problems.append(f"missing entries: {', '.join(missing)}")
            if count == 0 and means:
                problems.append("count is 0, yet means are given")
        if problems:
            raise ValueError(f"{owner}: " + " | ".join(problems))
        self.count = int(count)
        self.means = {}
        for name, p in zip(self.names, self.params):
            if name in means:
                xp = backend.array_module(p.data)
                self.means[name] = xp.array(means[name], dtype=p.data.dtype)

    def __repr__(self):
        return f"WeightAverage({len(self.params)} parameters, {self.count} updates)"


# --- schedulers ------------------------------------------------------------------------

class LRScheduler:
    """What every scheduler shares: the optimiser, ``base_lr``, ``last_epoch`` and state.

    ``base_lr`` is the optimiser's learning rate when the scheduler is made.
    Subclasses list their constructor arguments in ``_hyperparameters`` (set
    by ``_configure``, which validates them) and any further counters in
    ``_counters``; ``state_dict`` and ``load_state_dict`` are built from both.
    """

    kind = ""
    #: step(epoch + i / batches) after every batch instead of step() after every epoch
    per_batch = False
    #: step(metric) with the validation metric after every epoch
    needs_metric = False
    _hyperparameters: tuple = ()
    _counters: tuple = ()

    def __init__(self, optimizer):
        name = type(self).__name__
        lr = getattr(optimizer, "lr", None)
        if isinstance(lr, (bool, np.bool_)) or \
                not isinstance(lr, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: optimizer must have a numeric lr attribute (an SGD), "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = _real(name, "the optimizer's lr", lr, at_least=0)
        self.last_epoch = 0
        self._set_lr(self.base_lr)

    def _set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr
        self._last_lr = lr

    def get_last_lr(self) -> float:
        """The learning rate the scheduler set last (the optimiser has a single one)."""
        return self._last_lr

    def state_dict(self) -> dict:
        """The scheduler's settings and counters as JSON values, with ``kind`` naming it."""
        state = {"kind": self.kind}
        for key in self._hyperparameters:
            value = getattr(self, key)
            state[key] = list(value) if isinstance(value, list) else value
        state.update(base_lr=self.base_lr, last_epoch=self.last_epoch, last_lr=self._last_lr)
        for key in self._counters:
            state[key] = getattr(self, key)
        return state

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` saved, and set the optimiser's lr to ``last_lr``."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{owner}: expected a dict, got {type(state).__name__}")
        if state.get("kind") != self.kind:
            raise ValueError(f"{owner}: expected the state of a {self.kind!r} scheduler, "
                             f"got kind {state.get('kind')!r}")
        expected = set(self.state_dict())
        missing = sorted(expected - set(state))
        unknown = sorted(set(state) - expected, key=str)
        if missing or unknown:
            listed = [f"missing keys: {', '.join(missing)}"] if missing else []
            listed += [f"unknown keys: {', '.join(map(str, unknown))}"] if unknown else []
            raise ValueError(f"{owner}: " + " | ".join(listed))
        # Everything is checked on a copy first, so a bad state changes nothing.
        loaded = copy.copy(self)
        loaded._configure(**{key: state[key] for key in self._hyperparameters})
        loaded.base_lr = _real(owner, "base_lr", state["base_lr"], at_least=0)
        loaded.last_epoch = _integer(owner, "last_epoch", state["last_epoch"])
        loaded._load_counters(owner, state)
        last_lr = _real(owner, "last_lr", state["last_lr"], at_least=0)
        self.__dict__.update(loaded.__dict__)
        self._set_lr(last_lr)

    def _configure(self, **hyperparameters) -> None:
        """Validate and set the constructor's arguments (none here)."""

    def _load_counters(self, owner: str, state) -> None:
        """Restore the counters named in ``_counters`` (none here)."""

    def __repr__(self):
        settings = ", ".join(f"{key}={getattr(self, key)!r}" for key in self._hyperparameters)
        return f"{type(self).__name__}({settings}{', ' if settings else ''}" \
               f"last_epoch={self.last_epoch}, lr={self._last_lr!r})"


class _EpochScheduler(LRScheduler):
    """A schedule that is a function of the epoch alone, ``_lr_at(epoch)`` in each
    subclass: ``step()`` once per epoch."""

    def step(self) -> None:
        """Count one more finished epoch and set the learning rate for the next."""
        self.last_epoch += 1
        self._set_lr(self._lr_at(self.last_epoch))


class Constant(_EpochScheduler):
    """No schedule: the learning rate stays at ``base_lr``; ``step()`` only counts epochs."""

    kind = "constant"

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr


class StepLR(_EpochScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs:
    ``lr = base_lr * gamma ** (epoch // step_size)``."""

    kind = "step"
    _hyperparameters = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self._configure(step_size=step_size, gamma=gamma)
        super().__init__(optimizer)

    def _configure(self, step_size, gamma) -> None:
        self.step_size = _integer("StepLR", "step_size", step_size, at_least=1)
        self.gamma = _real("StepLR", "gamma", gamma, at_least=0)

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(_EpochScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone epoch:
    ``lr = base_lr * gamma ** (number of milestones <= epoch)``. A milestone
    listed twice counts twice, as in PyTorch."""

    kind = "multistep"
    _hyperparameters = ("milestones", "gamma")

    def __init__(self, optimizer, milestones, gamma=0.1):
        self._configure(milestones=milestones, gamma=gamma)
        super().__init__(optimizer)

    def _configure(self, milestones, gamma) -> None:
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"MultiStepLR: milestones must be a list of epochs, "
                            f"got {type(milestones).__name__}")
        self.milestones = sorted(_integer("MultiStepLR", "each milestone", m, at_least=1)
                                 for m in milestones)
        self.gamma = _real("MultiStepLR", "gamma", gamma, at_least=0)

    def _lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineAnnealingLR(_EpochScheduler):
    """Half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs:
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    This is the closed form of PyTorch's scheduler (its step() multiplies
    ratios instead, which agrees to rounding). Past ``T_max`` the cosine
    rises again, as PyTorch's does."""

    kind = "cosine"
    _hyperparameters = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self._configure(T_max=T_max, eta_min=eta_min)
        super().__init__(optimizer)

    def _configure(self, T_max, eta_min) -> None:
        self.T_max = _integer("CosineAnnealingLR", "T_max", T_max, at_least=1)
        self.eta_min = _real("CosineAnnealingLR", "eta_min", eta_min, at_least=0)

    def _lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * \
            (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR (Loshchilov & Hutter): cosine annealing that restarts at ``base_lr``.

    The first cycle lasts ``T_0`` epochs and each next one ``T_mult`` times
    longer. Within a cycle ``lr = eta_min + (base_lr - eta_min) * (1 +
    cos(pi * T_cur / T_i)) / 2``, where ``T_cur`` is the (possibly
    fractional) number of epochs since the restart and ``T_i`` the cycle's
    length. ``step(epoch + i / batches)`` after every batch anneals within
    the epoch; ``step()`` advances by one epoch. Both follow PyTorch.
    """

    kind = "warm-restarts"
    per_batch = True
    _hyperparameters = ("T_0", "T_mult", "eta_min")
    _counters = ("T_cur", "T_i")

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0):
        self._configure(T_0=T_0, T_mult=T_mult, eta_min=eta_min)
        self.T_cur, self.T_i = 0, self.T_0
        super().__init__(optimizer)

    def _configure(self, T_0, T_mult, eta_min) -> None:
        owner = "CosineAnnealingWarmRestarts"
        self.T_0 = _integer(owner, "T_0", T_0, at_least=1)
        self.T_mult = _integer(owner, "T_mult", T_mult, at_least=1)
        self.eta_min = _real(owner, "eta_min", eta_min, at_least=0)

    def step(self, epoch=None) -> None:
        """Move to ``epoch`` (a float, e.g. ``epoch + i / batches``), or one epoch on."""
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            epoch = _real("CosineAnnealingWarmRestarts.step", "epoch", epoch, at_least=0)
            self.T_cur, self.T_i = self._position(epoch)
        self.last_epoch = math.floor(epoch)
        self._set_lr(self._lr_now())

    def _position(self, epoch: float):
        """(T_cur, T_i): the time since the restart before ``epoch``, and that cycle's length."""
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        # PyTorch finds the cycle with a logarithm, which can land one cycle
        # short exactly at a restart (log(8, 2) rounds below 3 for some
        # lengths); adding up whole cycles is exact.
        start, length = 0, self.T_0
        while epoch >= start + length:
            start, length = start + length, length * self.T_mult
        return epoch - start, length

    def _lr_now(self) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * \
            (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2

    def restart_epochs(self, total_epochs) -> list[int]:
        """The epochs (counted from 1) at whose end a cycle finishes within ``total_epochs``:
        where a snapshot ensemble takes its checkpoints. T_0=2, T_mult=2, 14 epochs:
        [2, 6, 14]."""
        total_epochs = _integer("CosineAnnealingWarmRestarts.restart_epochs", "total_epochs",
                                total_epochs, at_least=0)
        ends, end, length = [], self.T_0, self.T_0
        while end <= total_epochs:
            ends.append(end)
            length *= self.T_mult
            end += length
        return ends

    def _load_counters(self, owner: str, state) -> None:
        self.T_i = _integer(owner, "T_i", state["T_i"], at_least=1)
        self.T_cur = state["T_cur"] if isinstance(state["T_cur"], int) and \
            not isinstance(state["T_cur"], bool) else _real(owner, "T_cur", state["T_cur"])
        if not 0 <= self.T_cur < self.T_i:
            raise ValueError(f"{owner}: T_cur must lie in [0, T_i={self.T_i}), "
                             f"got {self.T_cur}")


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` when a metric stops improving.

    ``step(metric)`` after every epoch. With mode "max" (accuracy) a metric
    improves on the best so far when it exceeds ``best * (1 + threshold)``
    (threshold_mode "rel") or ``best + threshold`` ("abs"); mode "min" (a
    loss) mirrors that. After more than ``patience`` epochs in a row
    without improvement the rate becomes ``max(lr * factor, min_lr)``, then
    ``cooldown`` epochs pass in which bad epochs are not counted. A
    reduction smaller than ``eps`` is skipped. All as in PyTorch; the
    default mode is the paper's: divide by 10 when validation accuracy
    stops improving.
    """

    kind = "plateau"
    needs_metric = True
    _hyperparameters = ("mode", "factor", "patience", "threshold", "threshold_mode",
                        "cooldown", "min_lr", "eps")
    _counters = ("best", "num_bad_epochs", "cooldown_counter")

    def __init__(self, optimizer, mode="max", factor=0.1, patience=2, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self._configure(mode=mode, factor=factor, patience=patience, threshold=threshold,
                        threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr,
                        eps=eps)
        self.best, self.num_bad_epochs, self.cooldown_counter = self._worst(), 0, 0
        super().__init__(optimizer)

    def _configure(self, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr,
                   eps) -> None:
        owner = "ReduceLROnPlateau"
        for name, value, choices in (("mode", mode, ("min", "max")),
                                     ("threshold_mode", threshold_mode, ("rel", "abs"))):
            if value not in choices:
                raise ValueError(f"{owner}: {name} must be {choices[0]!r} or {choices[1]!r}, "
                                 f"got {value!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _real(owner, "factor", factor, at_least=0)
        if self.factor >= 1:
            raise ValueError(f"{owner}: factor must be < 1 (it multiplies the learning "
                             f"rate), got {self.factor}")
        self.patience = _integer(owner, "patience", patience)
        self.threshold = _real(owner, "threshold", threshold, at_least=0)
        self.cooldown = _integer(owner, "cooldown", cooldown)
        self.min_lr = _real(owner, "min_lr", min_lr, at_least=0)
        self.eps = _real(owner, "eps", eps, at_least=0)

    def _worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def _is_better(self, metric: float) -> bool:
        if self.mode == "max":
            bar = self.best * (1 + self.threshold) if self.threshold_mode == "rel" \
                else self.best + self.threshold
            return metric > bar
        bar = self.best * (1 - self.threshold) if self.threshold_mode == "rel" \
            else self.best - self.threshold
        return metric < bar

    def step(self, metric) -> None:
        """Record one epoch's metric (a number, e.g. validation accuracy) and maybe reduce."""
        if isinstance(metric, Tensor):
            metric = metric.item()
        if isinstance(metric, (bool, np.bool_)) or \
                not isinstance(metric, (int, float, np.integer, np.floating)):
            raise TypeError(f"ReduceLROnPlateau.step: metric must be a number, "
                            f"got {type(metric).__name__}")
        metric = float(metric)  # a NaN is never better, so it counts as a bad epoch
        self.last_epoch += 1
        if self._is_better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs right after a reduction do not count
        if self.num_bad_epochs > self.patience:
            old_lr = float(self.optimizer.lr)
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self.optimizer.lr

    def state_dict(self) -> dict:
        """As for every scheduler; ``best`` is None until a metric has improved on nothing,
        since JSON has no infinity."""
        state = super().state_dict()
        if math.isinf(state["best"]):
            state["best"] = None
        return state

    def _load_counters(self, owner: str, state) -> None:
        self.best = self._worst() if state["best"] is None else _real(owner, "best",
                                                                       state["best"])
        self.num_bad_epochs = _integer(owner, "num_bad_epochs", state["num_bad_epochs"])
        self.cooldown_counter = _integer(owner, "cooldown_counter", state["cooldown_counter"])


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The factor on the scheduled learning rate at optimiser step ``step`` (counted
    from 0) of a linear warm-up over ``warmup_steps`` steps: ``(step + 1) /
    warmup_steps`` until it reaches 1, then 1 (Goyal et al., 2017, "gradual
    warmup"). With no warm-up steps the factor is always 1.

    Early steps are where a freshly initialised network is most fragile: its
    logits and gradients are at their largest, and a full-size step can push
    ReLUs into a state they never leave. A warm-up is a function of the step
    alone, so it needs no state of its own and a resumed run repeats it exactly.
    """
    step = _integer("warmup_factor", "step", step)
    warmup_steps = _integer("warmup_factor", "warmup_steps", warmup_steps)
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps


SCHEDULERS = {cls.kind: cls for cls in (Constant, StepLR, MultiStepLR, ReduceLROnPlateau,
                                        CosineAnnealingLR, CosineAnnealingWarmRestarts)}


def make_scheduler(name: str, optimizer, epochs: int, **options) -> LRScheduler:
    """The scheduler called ``name`` for a run of ``epochs`` epochs, with defaults from it.

    "constant"; "step" (step_size = epochs // 3); "multistep" (milestones at
    1/2 and 3/4 of the run); "plateau"; "cosine" (T_max = epochs);
    "warm-restarts" (T_0 = epochs // 3). Each at least 1.

    ``options`` override the defaults. So that a training loop can pass all
    its settings whatever the schedule, an option the named scheduler does
    not take is ignored, and so is one set to None; a name that no
    scheduler takes (a typo) is an error.
    """
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise ValueError(f"make_scheduler: unknown scheduler {name!r}; "
                         f"choose one of {', '.join(SCHEDULERS)}")
    epochs = _integer("make_scheduler", "epochs", epochs, at_least=1)
    takes = {kind: [p for p in inspect.signature(cls).parameters if p != "optimizer"]
             for kind, cls in SCHEDULERS.items()}
    known = sorted({option for names in takes.values() for option in names})
    unknown = [key for key in options if key not in known]
    if unknown:
        raise TypeError(f"make_scheduler: no scheduler has the option {', '.join(unknown)}; "
                        f"the options are {', '.join(known)}")
    defaults = {
        "step": {"step_size": max(1, epochs // 3)},
        "multistep": {"milestones": sorted({m for m in (epochs // 2, 3 * epochs // 4)
                                            if m >= 1})},
        "cosine": {"T_max": epochs},
        "warm-restarts": {"T_0": max(1, epochs // 3)},
    }.get(name, {})
    chosen = {key: value for key, value in options.items()
              if key in takes[name] and value is not None}
    return SCHEDULERS[name](optimizer, **{**defaults, **chosen})
