"""A benchmark's report: the JSON of its measurements, its Markdown tables and its plots.

There are three kinds of report, told apart by what they hold (:func:`report_kind`):

* ``"ladder"``: ``tinyvgg bench``, the CPU conv3x3 ladder and the VGG-16 step (``layers``);
* ``"ops"``: ``benchmarks/bench_cpu.py``, every op and VGG-16 steps on the CPU (``ops``);
* ``"gpu"``: ``benchmarks/bench_gpu.py``, the GPU kernel ladders and step (``convs``).

:func:`markdown` and :func:`plot` draw any of them from the stored JSON alone, so a
report is redrawn on any machine (``bench_gpu.py --from-json``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..io.fileio import atomic_write
from ..io.plotting import pyplot, save_png
from ..ops import conv_cuda, linear, tensor_cores
from ..ops.conv_cpu import CONV3X3_CPU_DEFAULT
from .ladder import JOBS, VGG16_CONV_COUNTS, conv_bytes
from .reference import TORCH_MODE_OF_PRECISION, TORCH_MODES
from .timing import fmt, gflops, ratio

#: where a run's files go unless told: the user's folder, since a run on a machine of the
#: same name would replace the curated results under benchmarks/results, which are
#: written there on purpose (``--out benchmarks/results``) and committed
DEFAULT_OUT = Path("runs") / "bench"


def report_kind(report: dict) -> str:
    """"gpu", "ops" or "ladder": which benchmark wrote ``report``."""
    if "convs" in report:
        return "gpu"
    return "ops" if "ops" in report else "ladder"


def markdown(report: dict) -> str:
    """The report's tables, as Markdown."""
    return {"gpu": _gpu_markdown, "ops": _ops_markdown,
            "ladder": _ladder_markdown}[report_kind(report)](report)


def plot(report: dict, stem: Path) -> list[Path]:
    """The report's figures beside ``stem`` (``<stem>-ladder.png``, ``<stem>-roofline.png``):
    a bar chart of the ladder summed over VGG-16 and a roofline of its layers. None for
    the ops report; none without matplotlib."""
    kind = report_kind(report)
    plt = pyplot()
    if plt is None or kind == "ops" or (kind == "gpu" and not report["conv_totals"]):
        return []
    draw = _gpu_plots if kind == "gpu" else _ladder_plots
    return [save_png(fig, stem.with_name(f"{stem.name}-{name}.png"))
            for name, fig in draw(plt, report)]


def write_report(report: dict, stem: Path, data: bool = True, plots: bool = True) -> list[Path]:
    """``<stem>.json`` (with ``data``), ``<stem>.md`` and (with ``plots``) the figures,
    each written atomically; the paths written, in that order."""
    written = []
    if data:
        atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
        written.append(stem.with_suffix(".json"))
    atomic_write(stem.with_suffix(".md"), markdown(report))
    written.append(stem.with_suffix(".md"))
    return written + (plot(report, stem) if plots else [])


# --- shared pieces ----------------------------------------------------------------------------

def _cpu_machine(m) -> str:
    return (f"{m['cpu']}, {m['cores']} cores; NumPy {m['numpy']} ({m['numpy_blas']}); tinyvgg "
            f"threads {m.get('tinyvgg_cpu_threads', '?')}; PyTorch threads "
            f"{m['torch_threads']}; commit {m['commit']}; {m['date']}.")


def _mib(n):
    return "-" if n is None else f"{n / 2 ** 20:.0f} MiB"


def _gib(n):
    return "-" if n is None else f"{n / 2 ** 30:.1f} GiB"


def _intensity(r) -> float:
    """A CPU ladder row's FLOPs per byte of minimal traffic, forward + backward."""
    return (r["fwd_flops"] + r["bwd_flops"]) / (r["fwd_bytes"] + r["bwd_bytes"])


def _roofs(ax, x, flops_peak, copy_gbs, style, label, per_gb=1):
    """The roofline over intensities ``x``: min(the GEMM peak, x times the copy's GB/s,
    over ``per_gb`` for a peak in other units than GFLOP/s)."""
    ax.plot(x, np.minimum(flops_peak, x * copy_gbs / per_gb), style, label=label)


def _log_axes(ax, ylabel, title, fontsize):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of minimal traffic)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=fontsize)


# --- tinyvgg bench: the CPU conv3x3 ladder -------------------------------------------------

def _ladder_markdown(report: dict) -> str:
    m, peaks = report["machine"], report["peaks"]
    names = report["implementations"]
    lines = [f"# tinyvgg bench (CPU): the conv3x3 ladder and VGG-16, against PyTorch "
             f"{m['torch'] or '(not installed)'}", "", _cpu_machine(m), "",
             f"Measured peaks: float32 GEMM ({peaks['gemm_size']}^3) "
             f"**{peaks['gemm_gflops']:.1f} GFLOP/s**; array copy **{peaks['copy_gbs']:.1f} GB/s**."
             f" Median of {report['repeats']} runs after {report['warmup']} warm-up runs. "
             "Ratio = PyTorch's time / ours (above 1: faster than PyTorch).", ""]
    step = report.get("training_step")
    if step:
        lines += [f"## VGG-16 training step ({step['input']}, batch {step['batch']}, float32, "
                  f"forward + backward + SGD)", "",
                  "| | ms / step | images / s | peak memory | ratio |", "|---|---|---|---|---|"]
        theirs = step.get("torch", {}).get("seconds")
        for name, r in step["tinyvgg"].items():
            default = " (the default)" if name == CONV3X3_CPU_DEFAULT else ""
            lines.append(f"| tinyvgg, conv3x3 `{name}`{default} | {1e3 * r['seconds']:.0f} | "
                         f"{r['images_per_s']:.0f} | {_mib(r['peak_bytes'])} | "
                         f"**{fmt(ratio(r['seconds'], theirs), '.2f')}x** |")
        if "torch" in step:
            r = step["torch"]
            lines.append(f"| PyTorch (oneDNN) | {1e3 * r['seconds']:.0f} | "
                         f"{r['images_per_s']:.0f} | {_mib(r['peak_bytes'])} | 1 |")
        lines.append("")
    totals = report["totals"]
    lines += ["## The ladder, summed over VGG-16's 13 convolutions (forward + backward)", "",
              "| step | forward ms | backward ms | GFLOP/s | fraction of GEMM peak | ratio |",
              "|---|---|---|---|---|---|"]
    torch_total = totals.get("torch")
    naive = report.get("naive")
    if naive:
        g = gflops(naive["fwd_flops"] + naive["bwd_flops"], naive["fwd_s"] + naive["bwd_s"])
        lines.append(f"| naive (loops; one {naive['layer']} layer, batch {naive['batch']}) | "
                     f"{1e3 * naive['fwd_s']:.0f} | {1e3 * naive['bwd_s']:.0f} | {g:.3f} | "
                     f"{g / peaks['gemm_gflops']:.4f} | - |")
    for name in names + (["torch"] if torch_total else []):
        t = totals[name]
        label = "PyTorch conv2d" if name == "torch" else f"`{name}`"
        r = ratio(t["fwd_s"] + t["bwd_s"], torch_total["fwd_s"] + torch_total["bwd_s"]) \
            if torch_total else None
        lines.append(f"| {label} | {1e3 * t['fwd_s']:.0f} | {1e3 * t['bwd_s']:.0f} | "
                     f"{t['gflops']:.1f} | {t['gflops'] / peaks['gemm_gflops']:.2f} | "
                     f"{fmt(r, '.2f')} |")
    lines += ["", "## Per layer (batch 64)", "",
              "| layer | x VGG-16 | FLOP/byte | step | fwd ms | bwd ms | GFLOP/s | PyTorch fwd / "
              "bwd ms | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["layers"]:
        ours = r["fwd_s"] + r["bwd_s"]
        theirs = None if r["torch_fwd_s"] is None else r["torch_fwd_s"] + r["torch_bwd_s"]
        lines.append(
            f"| {r['layer']} | {r['count']} | {_intensity(r):.0f} | `{r['implementation']}` | "
            f"{1e3 * r['fwd_s']:.2f} | {1e3 * r['bwd_s']:.2f} | "
            f"{gflops(r['fwd_flops'] + r['bwd_flops'], ours):.1f} | "
            f"{fmt(None if theirs is None else 1e3 * r['torch_fwd_s'], '.2f')} / "
            f"{fmt(None if theirs is None else 1e3 * r['torch_bwd_s'], '.2f')} | "
            f"{fmt(ratio(ours, theirs), '.2f')} |")
    return "\n".join(lines) + "\n"


def _ladder_plots(plt, report):
    totals, names = report["totals"], report["implementations"]
    labels = names + (["PyTorch"] if "torch" in totals else [])
    keys = names + (["torch"] if "torch" in totals else [])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    fwd = [1e3 * totals[k]["fwd_s"] for k in keys]
    bwd = [1e3 * totals[k]["bwd_s"] for k in keys]
    ax.barh(labels, fwd, label="forward")
    ax.barh(labels, bwd, left=fwd, label="backward")
    ax.invert_yaxis()
    ax.set_xlabel("ms for all 13 conv layers of VGG-16 (32x32, batch 64)")
    ax.set_title("conv3x3 ladder (CPU)")
    ax.legend()
    fig.tight_layout()
    yield "ladder", fig

    peaks = report["peaks"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.logspace(-1, 3, 200)
    _roofs(ax, x, peaks["gemm_gflops"], peaks["copy_gbs"], "k-", "measured roofs")
    for name in names:
        rows = [r for r in report["layers"] if r["implementation"] == name]
        achieved = [gflops(r["fwd_flops"] + r["bwd_flops"], r["fwd_s"] + r["bwd_s"])
                    for r in rows]
        ax.scatter([_intensity(r) for r in rows], achieved, label=name)
    rows = [r for r in report["layers"] if r["implementation"] == names[0]
            and r["torch_fwd_s"] is not None]
    if rows:
        ax.scatter([_intensity(r) for r in rows],
                   [gflops(r["fwd_flops"] + r["bwd_flops"], r["torch_fwd_s"] + r["torch_bwd_s"])
                    for r in rows], marker="x", color="k", label="PyTorch")
    _log_axes(ax, "GFLOP/s (forward + backward)", "VGG-16 conv layers on the roofline (CPU)", 8)
    fig.tight_layout()
    yield "roofline", fig


# --- benchmarks/bench_cpu.py: every op, and VGG-16 steps, on the CPU ------------------------

def step_ms(step):
    """(tinyvgg ms, PyTorch ms or None) of a CPU training step's result (its first
    implementation)."""
    ours = 1e3 * next(iter(step["tinyvgg"].values()))["seconds"]
    return ours, (1e3 * step["torch"]["seconds"] if "torch" in step else None)


def _step_table(s):
    ips = lambda ms: s["batch"] / ms * 1e3  # noqa: E731
    ours, theirs = step_ms(s)
    lines = [f"{s['model']}.", "",
             "| | ms / step | images / s | GFLOP/s (forward + backward FLOPs) |",
             "|---|---|---|---|",
             f"| tinyvgg | {ours:.1f} | {ips(ours):.1f} | "
             f"{fmt(gflops(s['approx_flops'], ours / 1e3), '.1f')} |"]
    if theirs is not None:
        lines += [f"| PyTorch | {theirs:.1f} | {ips(theirs):.1f} | "
                  f"{fmt(gflops(s['approx_flops'], theirs / 1e3), '.1f')} |", "",
                  f"**Ratio: {ratio(ours, theirs):.2f}x PyTorch's throughput.**"]
    return lines


def _ops_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# CPU benchmark: tinyvgg vs PyTorch {m['torch'] or '(not installed)'}", "",
             _cpu_machine(m), "",
             f"Median of {report['repeats']} runs after {report['warmup']} warm-up runs. "
             "Ratio = tinyvgg throughput / PyTorch throughput (higher is better, 1.0 = parity)."]
    for key, title in (("training_step", "VGG-16 training step (32x32, batch 64, float32, "
                                         "forward + backward + SGD update)"),
                       ("imagenet_step", "Full VGG-16 at ImageNet size (224x224, batch 2, "
                                         "float32, forward + backward)")):
        if key in report:
            lines += ["", f"## {title}", ""] + _step_table(report[key])
    lines += ["", "## Ops (batch 64)", "",
              "| op | tinyvgg fwd ms | bwd ms | GFLOP/s fwd / bwd | PyTorch fwd ms | bwd ms "
              "| ratio fwd | ratio bwd |", "|---|---|---|---|---|---|---|---|"]
    for r in report["ops"]:
        gf = (f"{fmt(gflops(r['fwd_flops'], r['tinyvgg_fwd_ms'] / 1e3), '.0f')} / "
              f"{fmt(gflops(r['bwd_flops'], r['tinyvgg_bwd_ms'] / 1e3), '.0f')}")
        lines.append(
            f"| {r['op']} | {r['tinyvgg_fwd_ms']:.2f} | {r['tinyvgg_bwd_ms']:.2f} | {gf} | "
            f"{fmt(r.get('torch_fwd_ms'), '.2f')} | {fmt(r.get('torch_bwd_ms'), '.2f')} | "
            f"{fmt(ratio(r['tinyvgg_fwd_ms'], r.get('torch_fwd_ms')), '.2f')} | "
            f"{fmt(ratio(r['tinyvgg_bwd_ms'], r.get('torch_bwd_ms')), '.2f')} |")
    return "\n".join(lines) + "\n"


# --- benchmarks/bench_gpu.py: the GPU kernel ladders ------------------------------------------

#: the precisions (tensor_cores.PRECISIONS) and PyTorch's modes (TORCH_MODES), as the
#: tables name them
PRECISION_NAMES = {"strict": "strict FP32", "3xtf32": "3xTF32", "tf32": "TF32"}
#: the bars of the ladder plot: each rung in its precision's colour, cuDNN in its mode's
PRECISION_COLOURS = {"strict": "tab:blue", "3xtf32": "tab:green", "tf32": "tab:orange"}
CUDNN_COLOURS = {"strict": "tab:gray", "tf32": "tab:orange"}
#: the rungs on the roofline plot: the default strict one and the tensor-core ones
ROOFLINE_KERNELS = (conv_cuda.CONV3X3_DEFAULT_KERNEL,) + tuple(
    k for k in conv_cuda.CONV3X3_KERNELS if tensor_cores.uses_tensor_cores(k))
#: the slow rungs of reports written before reports named theirs ("slow_kernels")
OLD_SLOW_KERNELS = ["naive"]


def torch_mode_of(kernel: str) -> str:
    """The PyTorch mode (cuDNN's, cuBLAS's) whose time a rung is compared with: strict FP32
    for the strict and the 3xTF32 rungs, TF32 for the TF32 ones."""
    return TORCH_MODE_OF_PRECISION[tensor_cores.precision(kernel)]


def step_precision(kernels) -> str:
    """What a training step with ``kernels`` (its kernel choices) computes in: the least
    accurate of their precisions (tensor_cores.PRECISIONS runs from the most accurate)."""
    return max((tensor_cores.precision(k) for k in kernels),
               key=tensor_cores.PRECISIONS.index, default="strict")


def measured_kernels(kernels, rows, job):
    """Those of ``kernels`` that every row of the report timed for ``job``: a report
    written before a kernel joined its ladder is redrawn without it."""
    return [k for k in kernels
            if all(k in r["ms"].get(job, {}) for r in rows if job in r.get("jobs", [job]))]


def _cell(ms, flops, theirs_ms):
    return (f"{ms:.2f} ({flops / ms / 1e6:.0f}, "
            f"{fmt(ratio(ms, theirs_ms), '.2f')}x)")


def _worst_error(errors, precision):
    """'2.1e-07 (tiled)': the largest error (against strict FP32) among the rungs that
    compute in ``precision``."""
    worst = max(((e, k) for k, e in errors.items() if tensor_cores.precision(k) == precision),
                default=None)
    return "-" if worst is None else f"{worst[0]:.1e} ({worst[1]})"


def _ladder_table(title, rows, kernels_of_job, library):
    names = dict(fwd="forward", dx="input gradient", dw="weight gradient")
    lines = []
    for job, kernels in kernels_of_job.items():
        header = (["layer"] + list(kernels)
                  + [f"{library} {PRECISION_NAMES[m]}" for m in TORCH_MODES]
                  + [f"max error, {PRECISION_NAMES[p]} rungs" for p in tensor_cores.PRECISIONS])
        lines += ["", f"### {title}: {names[job]}", "", _table_row(header),
                  "|---" * len(header) + "|"]
        for r in rows:
            if job not in r["jobs"]:
                continue
            theirs = r["torch_ms"]
            errors = r["error"].get(job, {})
            lines.append(_table_row(
                [r["shape"]]
                + [_cell(r["ms"][job][k], r["flops"], theirs.get(torch_mode_of(k), {}).get(job))
                   for k in kernels]
                + [fmt(theirs.get(m, {}).get(job), ".2f") for m in TORCH_MODES]
                + [_worst_error(errors, p) for p in tensor_cores.PRECISIONS]))
    return lines


class TotalsEntry(NamedTuple):
    precision: str   # what the rung (or cuDNN) computes in
    name: str
    ms: float
    mode: str        # the cuDNN mode it is compared with
    library: bool    # cuDNN's own time


def _totals_by_precision(t):
    """A job's totals ``t`` as :class:`TotalsEntry`, by precision (tensor_cores.PRECISIONS'
    order): each precision's rungs in ladder order, then cuDNN's time in that precision
    where cuDNN has one."""
    for precision in tensor_cores.PRECISIONS:
        mode = TORCH_MODE_OF_PRECISION[precision]
        for kernel, ms in t["ms"].items():
            if tensor_cores.precision(kernel) == precision:
                yield TotalsEntry(precision, kernel, ms, mode, False)
        if mode == precision and mode in t["torch_ms"]:
            yield TotalsEntry(precision, f"cuDNN {PRECISION_NAMES[mode]}", t["torch_ms"][mode],
                              mode, True)


def _table_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _cudnn_version(number):
    """torch.backends.cudnn.version()'s 91900 as "9.19.0" (cuDNN 9 numbers it so)."""
    if not number:
        return "-"
    return f"{number // 10000}.{number % 10000 // 100}.{number % 100}"


def _gpu_markdown(report: dict) -> str:
    m = report["machine"]
    conv_jobs = {job: measured_kernels(kernels, report["convs"], job)
                 for job, kernels in (("fwd", conv_cuda.CONV3X3_KERNELS),
                                      ("dx", conv_cuda.CONV3X3_KERNELS),
                                      ("dw", conv_cuda.CONV3X3_WGRAD_KERNELS))}
    gemm_jobs = {job: measured_kernels(linear.GEMM_KERNELS, report["linears"], job)
                 for job in JOBS}
    slow = " and ".join(report.get("slow_kernels", OLD_SLOW_KERNELS))
    lines = [f"# GPU benchmark: tinyvgg's kernel ladders vs PyTorch {m['torch']} + cuDNN", "",
             f"{report['device']}; CuPy {report['cupy']}; cuDNN {_cudnn_version(report['cudnn'])}; "
             f"commit {m['commit']}; {m['date']}.", "",
             f"CUDA-event medians of {report['repeats']} runs after {report['warmup']} warm-up "
             f"({slow} kernels: a third of the runs). Cells: ms (GFLOP/s, ratio). Ratio = our "
             "throughput / the library's (1.0 = parity, higher is faster) in the mode of the "
             "rung's precision: strict FP32 rungs against strict FP32, 3xTF32 rungs against "
             "strict FP32 too (they promise its accuracy), TF32 rungs against TF32. Max error, "
             "per precision: the largest difference from the strict FP32 library result over "
             "its largest value, worst rung of that precision."]
    peaks = report.get("peaks", {})
    if peaks:
        lines += ["", "Peaks measured in this run: " + "; ".join(
            [f"{size} float32 matrix product {peaks[f'gemm_{mode}_tflops']:.1f} TFLOP/s "
             f"({mode})" for mode, size in (("strict", "8192^3"), ("tf32", "8192^3"))
             if f"gemm_{mode}_tflops" in peaks] +
            [f"device-to-device copy {peaks['copy_gbs']:.0f} GB/s (read + written)"]) + ". "
            "A rung's share of peak divides its TFLOP/s by the matrix product's in the mode "
            "it is compared with (for 3xTF32 rungs strict FP32, which they can pass)."]

    def of_peak(tflops, mode):
        peak = peaks.get(f"gemm_{mode}_tflops")
        return "-" if not peak else f"{100 * tflops / peak:.0f}%"
    for batch, totals in report["conv_totals"].items():
        rows = [r for r in report["convs"] if r["batch"] == int(batch)]
        lines += ["", f"## The conv3x3 ladder over VGG-16's 13 conv layers, batch {batch}", "",
                  "GB/s: the fewest bytes the job must move (its two inputs and its output, "
                  "each once) over its time. Per job, the rungs by precision, each group "
                  "against the cuDNN mode named in the last column: strict FP32 rungs, then "
                  "3xTF32 rungs (against strict FP32, the accuracy they promise), then TF32 "
                  "rungs.", "",
                  "| job | precision | step | ms | TFLOP/s | of peak | GB/s | ratio | against |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for job, t in totals.items():
            moved = sum(count * conv_bytes(r) for r, count in zip(rows, VGG16_CONV_COUNTS)
                        if job in r["jobs"])
            for e in _totals_by_precision(t):
                tflops = t["flops"] / e.ms / 1e9
                lines.append(f"| {job} | {PRECISION_NAMES[e.precision]} | {e.name} | "
                             f"{e.ms:.1f} | {tflops:.1f} | {of_peak(tflops, e.mode)} | "
                             f"{moved / e.ms / 1e6:.0f} | "
                             f"{fmt(ratio(e.ms, t['torch_ms'].get(e.mode)), '.2f')} | "
                             f"cuDNN {PRECISION_NAMES[e.mode]} |")
    for batch in report["batches"]:
        rows = [r for r in report["convs"] if r["batch"] == batch]
        lines += _ladder_table(f"conv3x3 per layer, batch {batch}", rows, conv_jobs, "cuDNN")
    if report["linears"]:
        lines += ["", "## The gemm ladder on VGG-16's fully connected layers",
                  "", "Against torch.matmul (cuBLAS), each rung in the mode of its precision "
                      "as for the convolutions."]
        lines += _ladder_table("linear", report["linears"], gemm_jobs, "cuBLAS")
    return "\n".join(lines + _steps_markdown(report["steps"])) + "\n"


def _step_kernels(step) -> str:
    return ", ".join(f"{k} {v}" for k, v in step["kernels"].items())


def _steps_markdown(steps) -> list[str]:
    """The training steps, one per setting of our kernels, grouped by precision: a table of
    each against PyTorch in its precision's mode, then each step's own times and memory."""
    if not steps:
        return []
    steps = sorted(((step_precision(step["kernels"].values()), step) for step in steps),
                   key=lambda pair: tensor_cores.PRECISIONS.index(pair[0]))
    lines = ["", "## VGG-16 training step, 224x224: each setting of our kernels", "",
             "A setting computes in its least accurate kernel's precision and is compared with "
             "PyTorch in that precision's mode: strict FP32 and 3xTF32 settings with strict "
             "FP32, TF32 settings with TF32. Ratio = PyTorch's time / ours.", "",
             "| precision | our kernels | batch | ms / step | against | PyTorch ms / step | "
             "ratio |", "|---|---|---|---|---|---|---|"]
    for precision, step in steps:
        mode = TORCH_MODE_OF_PRECISION[precision]
        theirs = step.get(f"torch_{mode}_ms")
        lines.append(f"| {PRECISION_NAMES[precision]} | {_step_kernels(step)} | {step['batch']} "
                     f"| {step['tinyvgg_ms']:.1f} | PyTorch {PRECISION_NAMES[mode]} | "
                     f"{fmt(theirs, '.1f')} | {fmt(ratio(step['tinyvgg_ms'], theirs), '.2f')} |")
    for precision, step in steps:
        mode = TORCH_MODE_OF_PRECISION[precision]
        lines += ["", f"### VGG-16 training step, 224x224, batch {step['batch']}, "
                      f"{PRECISION_NAMES[precision]}", "",
                  f"Our kernels: {_step_kernels(step)}.",
                  "", "| | ms / step | images / s | TFLOP/s | GPU memory, peak in use | "
                      "GPU memory, held by the allocator |",
                  "|---|---|---|---|---|---|"]
        held = {"tinyvgg": step.get("tinyvgg_pool_bytes"),
                "torch_strict": step.get("torch_strict_reserved_bytes"),
                "torch_tf32": step.get("torch_tf32_reserved_bytes")}
        for who, key in (("tinyvgg", "tinyvgg"), ("PyTorch strict FP32", "torch_strict"),
                         ("PyTorch TF32", "torch_tf32")):
            ms = step.get(f"{key}_ms")
            if ms:
                lines.append(f"| {who} | {ms:.1f} | {step['batch'] / ms * 1e3:.1f} | "
                             f"{step['flops'] / ms / 1e9:.2f} | "
                             f"{_gib(step.get(f'{key}_peak_bytes'))} | {_gib(held[key])} |")
        lines += ["", "GPU memory, peak in use: the most that live arrays held at once (ours "
                      "followed with a CuPy memory hook over one more step; PyTorch's "
                      "torch.cuda.max_memory_allocated()). Held by the allocator: the peak "
                      "of what each caching allocator kept from the GPU, freed blocks "
                      "included (CuPy's pool total_bytes() after the timed steps; "
                      "torch.cuda.max_memory_reserved()). Reports from before both were "
                      "measured show one of them.",
                  "", f"Ratio against PyTorch {PRECISION_NAMES[mode]}, the mode of these "
                      f"kernels' precision: "
                      f"{fmt(ratio(step['tinyvgg_ms'], step.get(f'torch_{mode}_ms')), '.2f')}."]
    return lines


def _gpu_plots(plt, report):
    batch, totals = next(iter(report["conv_totals"].items()))
    names = {"fwd": "forward", "dx": "input gradient", "dw": "weight gradient"}
    fig, axes = plt.subplots(1, len(totals), figsize=(4.2 * len(totals), 3.6), sharey=False)
    for ax, (job, t) in zip(np.atleast_1d(axes), totals.items()):
        entries = list(_totals_by_precision(t))
        labels = [e.name for e in entries]
        times = [e.ms for e in entries]
        colors = [CUDNN_COLOURS[e.mode] if e.library else PRECISION_COLOURS[e.precision]
                  for e in entries]
        ax.barh(labels, times, color=colors)
        for y, ms in enumerate(times):
            ax.text(ms, y, f" {ms:.0f}", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(min(times) / 1.5, max(times) * 3)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("ms, 13 conv layers (log scale)")
        ax.set_title(names[job])
    legend = ", ".join(f"{colour.removeprefix('tab:')}: {PRECISION_NAMES[precision]}"
                       for precision, colour in PRECISION_COLOURS.items())
    fig.suptitle(f"conv3x3 ladder on {report['device']}, VGG-16 224x224, batch {batch} "
                 f"({legend}; {CUDNN_COLOURS['strict'].removeprefix('tab:')}: cuDNN strict FP32)")
    fig.tight_layout()
    yield "ladder", fig

    peaks = report.get("peaks", {})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in report["convs"] if r["batch"] == int(batch)]
    intensity = [r["flops"] / conv_bytes(r) for r in rows]
    x = np.logspace(np.log10(min(intensity) / 2), np.log10(max(intensity) * 2), 100)
    for mode, style in (("strict", "k-"), ("tf32", "k--")):
        peak = peaks.get(f"gemm_{mode}_tflops")
        if peak and peaks.get("copy_gbs"):
            _roofs(ax, x, peak, peaks["copy_gbs"], style,
                   f"roofline: {peak:.0f} TFLOP/s ({mode}), {peaks['copy_gbs']:.0f} GB/s", 1e3)
    for kernel in measured_kernels(ROOFLINE_KERNELS, rows, "fwd"):
        ax.scatter(intensity, [r["flops"] / r["ms"]["fwd"][kernel] / 1e9 for r in rows],
                   label=f"tinyvgg {kernel}, forward")
    for mode in TORCH_MODES:
        if all(mode in r["torch_ms"] for r in rows):
            ax.scatter(intensity, [r["flops"] / r["torch_ms"][mode]["fwd"] / 1e9 for r in rows],
                       marker="x", label=f"cuDNN {mode}, forward")
    _log_axes(ax, "TFLOP/s (direct-convolution FLOPs)",
              f"VGG-16 conv layers on the roofline ({report['device']})", 7)
    fig.tight_layout()
    yield "roofline", fig
