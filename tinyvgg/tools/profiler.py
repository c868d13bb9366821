"""An opt-in profiler: where one training step spends its time, per op and per layer.

Usage::

    from .profiler import profile

    with profile(model) as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    print(prof.table(by="op"))      # conv3x3, batch_norm2d, relu, ...
    print(prof.table(by="layer"))   # features.0, features.1, ...

While the block runs, every op call (``Function.apply``) is timed and
charged to the innermost layer that was running, and every node's backward
(in ``Tensor.backward``) is timed and added to the record of the call that
made the node. Each record (an :class:`OpCall` in ``prof.rows``) also keeps
the output's shape and bytes and the bytes the op saved for backward,
measured right after its forward, before backward frees them.

How it hooks in: the engine asks ``tinyvgg.tensor.active_profiler()`` once
per op call, per backward node and per module call; outside a ``profile``
block that is None and nothing else happens, so profiling off costs one
check and leaves no trace.

Layer names are the dotted paths of ``model.named_modules()``
(``features.0``): ``profile(model)`` learns them when it starts. Ops a
model's own ``forward`` runs (VGG's flatten) are charged to ``(model)``,
ops outside any module (the loss) to ``(no layer)``; without a model, a
layer is named by its class.

Timing on a GPU: kernels run asynchronously, so a timer around a launch
measures only the launch. The profiler therefore waits for the device
before and after every timed region (``Device().synchronize()``). The times
are then real, but the step is slower than unprofiled, since the CPU can no
longer queue work ahead of the GPU.

Rules, so that results are never silently mixed up:

* profiles do not nest: starting one while another records on the same
  thread raises RuntimeError (the outer one keeps recording);
* a backward run after the block has ended is not recorded (its records
  keep ``backward_calls == 0``); a backward inside the block through ops
  recorded before it began gets records of its own, with the layer
  ``(forward not profiled)`` and ``forward_ms`` None;
* only the thread that entered the block is recorded.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

from .. import backend
from ..nn import Module
from ..tensor import active_profiler, set_active_profiler
from ..io.texttable import format_table

__all__ = ["MODEL", "NO_LAYER", "NOT_PROFILED", "GROUPINGS", "OpCall", "profile"]

MODEL = "(model)"                    # ops of the top model's own forward
NO_LAYER = "(no layer)"              # ops outside any module, e.g. the loss
NOT_PROFILED = "(forward not profiled)"
GROUPINGS = ("op", "layer")


@dataclass
class OpCall:
    """One op call: its forward, and its backward when that ran inside the profile."""
    op: str                      # the op's name ("conv3x3")
    layer: str                   # innermost running layer ("features.0"), see the module doc
    device: str
    forward_ms: float | None     # None when the forward ran before the profile began
    output_shape: tuple | None
    output_bytes: int
    saved_bytes: int             # ctx.saved_nbytes just after forward
    backward_ms: float = 0.0
    backward_calls: int = 0      # 2 when backward ran twice (retain_graph=True)


def _synchronize(device: str) -> None:
    """Wait for the GPU to finish queued work, so a timer sees the real duration."""
    if device == "cuda":
        backend.cupy_module().cuda.Device().synchronize()


class profile:
    """Record every op call made inside ``with profile(model) as prof:`` (see the module doc).

    ``model`` (optional) is the module whose dotted layer names label the records.
    """

    def __init__(self, model=None):
        if model is not None and not isinstance(model, Module):
            raise TypeError(f"profile: model must be a tinyvgg Module or None, "
                            f"got {type(model).__name__}")
        self.model = model
        self.rows: list[OpCall] = []
        self._names = {}
        if model is not None:
            self._names = {id(m): (name or MODEL) for name, m in model.named_modules()}
        self._layers: list[str] = []   # the modules running now, outermost first
        # the record of each recorded op call, found again by its backward; weak, so
        # a graph that is dropped unused does not stay alive in the profiler
        self._row_of_ctx = weakref.WeakKeyDictionary()
        self._recording = False

    # --- the block -------------------------------------------------------------------
    def __enter__(self) -> "profile":
        if active_profiler() is not None:
            raise RuntimeError("profile: another profile is already recording on this thread; "
                               "profiles do not nest (end the outer one first, or read the "
                               "records of the outer one)")
        set_active_profiler(self)
        self._layers = []
        self._recording = True
        return self

    def __exit__(self, *exc) -> bool:
        set_active_profiler(None)
        self._layers = []
        self._recording = False
        return False

    # --- called by the engine while recording ----------------------------------------
    def enter_layer(self, module) -> None:
        self._layers.append(self._names.get(id(module), type(module).__name__))

    def exit_layer(self, module) -> None:
        if self._layers:
            self._layers.pop()

    def forward(self, forward, ctx, arrays, params):
        """Run an op's ``forward`` (the one for its device) timed, and keep its record."""
        _synchronize(ctx.device)
        start = time.perf_counter()
        data = forward(ctx, *arrays, **params)
        _synchronize(ctx.device)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        row = OpCall(op=ctx.op_name, layer=self._layers[-1] if self._layers else NO_LAYER,
                     device=ctx.device, forward_ms=elapsed_ms,
                     output_shape=tuple(int(s) for s in data.shape),
                     output_bytes=int(data.nbytes), saved_bytes=int(ctx.saved_nbytes))
        self.rows.append(row)
        self._row_of_ctx[ctx] = row
        return data

    def backward(self, backward, node, grad_output):
        """Run ``node``'s backward timed, and add the time to its op call's record."""
        ctx = node.ctx
        row = self._row_of_ctx.get(ctx)
        if row is None:  # the graph was built before this profile began
            row = OpCall(op=ctx.op_name, layer=NOT_PROFILED, device=ctx.device,
                         forward_ms=None, output_shape=None, output_bytes=0, saved_bytes=0)
            self.rows.append(row)
            self._row_of_ctx[ctx] = row
        _synchronize(ctx.device)
        start = time.perf_counter()
        input_grads = backward(ctx, grad_output)
        _synchronize(ctx.device)
        row.backward_ms += (time.perf_counter() - start) * 1e3
        row.backward_calls += 1
        return input_grads

    # --- results ---------------------------------------------------------------------
    @property
    def forward_ms(self) -> float:
        return sum(r.forward_ms or 0.0 for r in self.rows)

    @property
    def backward_ms(self) -> float:
        return sum(r.backward_ms for r in self.rows)

    def grouped(self, by: str = "op") -> list[dict]:
        """The records summed per op name or per layer: dicts with ``name``, ``ops`` (the
        op names seen), ``calls`` (forward), ``backward_calls``, ``forward_ms``,
        ``backward_ms``, ``saved_bytes``, ``output_bytes`` and ``share`` (of all
        recorded time, 0..1).

        By op: slowest first. By layer: in the order the layers first ran."""
        if by not in GROUPINGS:
            raise ValueError(f"profile: by must be one of {', '.join(map(repr, GROUPINGS))}, "
                             f"got {by!r}")
        groups: dict[str, dict] = {}
        for r in self.rows:
            key = r.op if by == "op" else r.layer
            group = groups.setdefault(key, dict(name=key, ops=[], calls=0, backward_calls=0,
                                                forward_ms=0.0, backward_ms=0.0,
                                                saved_bytes=0, output_bytes=0))
            if r.op not in group["ops"]:
                group["ops"].append(r.op)
            group["calls"] += r.forward_ms is not None
            group["backward_calls"] += r.backward_calls
            group["forward_ms"] += r.forward_ms or 0.0
            group["backward_ms"] += r.backward_ms
            group["saved_bytes"] += r.saved_bytes
            group["output_bytes"] += r.output_bytes
        total = self.forward_ms + self.backward_ms
        result = list(groups.values())
        for group in result:
            spent = group["forward_ms"] + group["backward_ms"]
            group["share"] = spent / total if total > 0 else 0.0
        if by == "op":
            result.sort(key=lambda g: -(g["forward_ms"] + g["backward_ms"]))
        return result

    def table(self, by: str = "op") -> str:
        """A printable table of :meth:`grouped`: calls, forward ms, backward ms, share %."""
        groups = self.grouped(by)
        with_ops = by == "layer"  # a layer's row also names the ops it ran

        def cells(name, ops, calls, backward_calls, forward_ms, backward_ms, share):
            return [name] + ([ops] if with_ops else []) + [
                str(calls), str(backward_calls), f"{forward_ms:.2f}", f"{backward_ms:.2f}",
                share]
        header = [by] + (["ops"] if with_ops else []) + [
            "calls", "bwd calls", "forward ms", "backward ms", "share"]
        lines = [cells(g["name"], "+".join(g["ops"]), g["calls"], g["backward_calls"],
                       g["forward_ms"], g["backward_ms"], f"{100 * g['share']:.1f}%")
                 for g in groups]
        total = cells("total", "", sum(g["calls"] for g in groups),
                      sum(g["backward_calls"] for g in groups), self.forward_ms,
                      self.backward_ms, "100.0%" if groups else "-")
        return "\n".join(format_table(header, lines, total, text_columns=2 if with_ops else 1))

    def __repr__(self):
        state = "recording" if self._recording else "stopped"
        return f"<profile: {len(self.rows)} op calls, {state}>"
