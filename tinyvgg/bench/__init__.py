"""``tinyvgg bench``: the conv3x3 ladder and the VGG-16 training step, against PyTorch, in one run.

Speed is shown as a ladder: each conv3x3 implementation (``tinyvgg.ops.conv_cpu``) is
timed on every convolution of VGG-16 at 32x32 (batch 64, float32), forward and backward,
beside PyTorch's ``conv2d`` (oneDNN) on the same arrays in the same process. For each step
the report gives the median time, GFLOP/s, the fraction of the machine's peak, the
layer's arithmetic intensity (FLOPs per byte of minimal traffic) and the ratio to PyTorch
(PyTorch's time / ours: above 1 we are faster). The peaks are measured here, not quoted:
a large float32 matrix product for FLOP/s and a large array copy for bytes/s.

The end-to-end number is a VGG-16 training step (forward, loss, backward, SGD update) at
32x32, batch 64, with the ``auto`` choice (the CPU default) and with im2col everywhere,
against PyTorch, in images/s, with the step's peak resident memory.

Timing rule: median of ``repeats`` runs after ``warmup`` runs, wall clock
(``time.perf_counter``). On a shared machine absolute times are noise; the ratios, taken
seconds apart on the same data, are the numbers to read.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import workers
from ..io.fileio import atomic_write, writable_folder
from ..models import cfgs, vgg16
from ..ops.conv_cpu import CONV3X3_CPU_DEFAULT
from ..io.plotting import pyplot, save_png
from ..tensor import tensor

BATCH = 64
#: where a run's files go unless told: the user's folder, since a run on a machine of the
#: same name would replace the curated results under benchmarks/results, which are
#: written there on purpose (``--out benchmarks/results``) and committed
DEFAULT_OUT = Path("runs") / "bench"
#: VGG-16's convolutions at 32x32 input: (C_in, C_out, H = W), in network order
VGG16_CIFAR_CONVS = [(3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16),
                     (128, 256, 8), (256, 256, 8), (256, 256, 8),
                     (256, 512, 4), (512, 512, 4), (512, 512, 4),
                     (512, 512, 2), (512, 512, 2), (512, 512, 2)]
#: the naive loops are timed on one small layer only (a VGG-16 pass would take hours)
NAIVE_SHAPE = (1, 16, 16, 8)  # batch, C_in, C_out, H = W


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


# --- timing -------------------------------------------------------------------------------

def median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_forward_backward(make_inputs, fn, make_grad, warmup: int, repeats: int):
    """(forward seconds, backward seconds) of one op; backward replays one recorded graph."""
    inputs = make_inputs()
    forward = median_seconds(lambda: fn(*inputs), warmup, repeats)
    out = fn(*inputs)
    grad = make_grad(out)

    def backward():
        for t in inputs:
            if t.requires_grad:
                t.grad = None
        out.backward(grad, retain_graph=True)
    return forward, median_seconds(backward, warmup, repeats)


def ratio(ours, theirs):
    """PyTorch's time over ours: 1.0 is parity, above 1 we are faster."""
    return theirs / ours if ours and theirs else None


def gflops(flops, seconds):
    return flops / seconds / 1e9 if flops and seconds else None


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


# --- the machine --------------------------------------------------------------------------

def machine_info() -> dict:
    torch = _torch()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=here, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=here,
                               check=True).stdout.strip()
        commit += "+uncommitted" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        # a copy of the tree without its .git (e.g. shipped to a GPU machine) says which commit
        commit = os.environ.get("TINYVGG_COMMIT", "unknown")
    blas = "unknown"
    try:
        config = np.show_config(mode="dicts")
        blas = (f"{config['Build Dependencies']['blas']['name']} "
                f"{config['Build Dependencies']['blas']['version']}")
    except Exception:  # the layout of show_config differs between NumPy versions
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                numpy=np.__version__, numpy_blas=blas,
                torch=None if torch is None else torch.__version__,
                torch_threads=None if torch is None else torch.get_num_threads(),
                tinyvgg_cpu_threads=workers.cpu_threads(),
                commit=commit, date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def measure_peaks(repeats: int = 5) -> dict:
    """The roofs of the roofline, measured: float32 GEMM GFLOP/s and copy GB/s."""
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty_like(a)
    gemm = median_seconds(lambda: np.matmul(a, b, out=out), 1, repeats)
    source = np.ones(32 * 1024 * 1024, np.float32)  # 128 MiB, far beyond the caches
    target = np.empty_like(source)
    copy = median_seconds(lambda: np.copyto(target, source), 1, repeats)
    return {"gemm_gflops": 2 * n ** 3 / gemm / 1e9, "gemm_size": n,
            "copy_gbs": 2 * source.nbytes / copy / 1e9, "copy_bytes": 2 * source.nbytes}


# --- peak memory of a step ------------------------------------------------------------------

def _high_water_bytes():
    """This process's peak resident memory (VmHWM on Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def step_peak_memory(framework: str, implementation: str = CONV3X3_CPU_DEFAULT,
                     batch: int = BATCH, size: int = 32):
    """Peak resident memory added by two VGG-16 training steps, measured in a fresh
    process (so neither framework's cached or retained memory from earlier work counts):
    the high-water mark after the steps minus the one before them. None where the
    operating system does not report it."""
    code = ("import sys, json; from tinyvgg.bench import _step_peak_child; "
            f"print(json.dumps(_step_peak_child({framework!r}, {implementation!r}, "
            f"{batch}, {size})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"step_peak_memory: the measuring process failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _step_peak_child(framework, implementation, batch, size):
    step = _training_step(framework, implementation, batch=batch, size=size)
    before = _high_water_bytes()
    step()
    step()
    after = _high_water_bytes()
    return None if before is None or after is None else after - before


# --- the conv3x3 ladder ---------------------------------------------------------------------

def conv_cost(batch, c_in, c_out, size, itemsize=4) -> dict:
    """FLOPs and minimal bytes (each array read or written once) of one conv3x3 layer."""
    macs = batch * size * size * c_out * c_in * 9
    x, w, y = batch * c_in * size * size, c_out * c_in * 9, batch * c_out * size * size
    needs_dx = c_in != 3  # the image needs no gradient
    return {"fwd_flops": 2 * macs, "bwd_flops": 2 * macs * (2 if needs_dx else 1),
            "fwd_bytes": itemsize * (x + w + y),
            "bwd_bytes": itemsize * (y + x + w + w + (x if needs_dx else 0))}


def _layer_arrays(batch, c_in, c_out, size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    if c_in > 3:  # activations are channels-last in memory, as conv outputs are here
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    return x, w, b


def _time_ours(name, arrays, warmup, repeats):
    from ..ops.conv_cpu import using_conv3x3_cpu
    with using_conv3x3_cpu(name):
        x, w, b = arrays
        grad_rng = np.random.default_rng(1)

        def make_grad(out):
            grad = np.empty_like(out.data)
            grad[...] = grad_rng.standard_normal(out.shape)
            return grad
        return time_forward_backward(
            lambda: [tensor(x, requires_grad=x.shape[1] != 3), tensor(w, requires_grad=True),
                     tensor(b, requires_grad=True)], F.conv3x3, make_grad, warmup, repeats)


def _time_torch(torch, arrays, warmup, repeats):
    x, w, b = (np.ascontiguousarray(a) for a in arrays)
    return time_forward_backward(
        lambda: [torch.tensor(x, requires_grad=x.shape[1] != 3),
                 torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)],
        lambda x_, w_, b_: torch.nn.functional.conv2d(x_, w_, b_, padding=1),
        lambda out: torch.randn(out.shape), warmup, repeats)


def bench_ladder(names, warmup, repeats, shapes=None, batch=BATCH, log=print) -> list[dict]:
    """One row per (layer shape, implementation), with PyTorch's times on that shape."""
    torch = _torch()
    rows = []
    for c_in, c_out, size in (shapes or sorted(set(VGG16_CIFAR_CONVS),
                                               key=VGG16_CIFAR_CONVS.index)):
        arrays = _layer_arrays(batch, c_in, c_out, size)
        cost = conv_cost(batch, c_in, c_out, size)
        theirs = _time_torch(torch, arrays, warmup, repeats) if torch else (None, None)
        for name in names:
            fwd, bwd = _time_ours(name, arrays, warmup, repeats)
            row = {"layer": f"{c_in}->{c_out} @{size}x{size}", "c_in": c_in, "c_out": c_out,
                   "size": size, "batch": batch, "implementation": name,
                   # how often VGG-16 has this layer (1 for a shape of one's own)
                   "count": VGG16_CIFAR_CONVS.count((c_in, c_out, size)) or 1, **cost,
                   "fwd_s": fwd, "bwd_s": bwd, "torch_fwd_s": theirs[0],
                   "torch_bwd_s": theirs[1]}
            rows.append(row)
            log(f"  {row['layer']:<20} {name:<9} fwd {1e3 * fwd:8.2f} ms  bwd "
                f"{1e3 * bwd:8.2f} ms" + (f"   torch {1e3 * theirs[0]:7.2f} / "
                                           f"{1e3 * theirs[1]:7.2f} ms   ratio "
                                           f"{ratio(fwd + bwd, sum(theirs)):.2f}"
                                           if torch else ""))
    return rows


def bench_naive(warmup, repeats) -> dict:
    """The bottom rung: Python loops, on one small layer."""
    batch, c_in, c_out, size = NAIVE_SHAPE
    arrays = _layer_arrays(batch, c_in, c_out, size)
    fwd, bwd = _time_ours("naive", arrays, min(warmup, 1), max(1, min(repeats, 3)))
    cost = conv_cost(batch, c_in, c_out, size)
    return {"layer": f"{c_in}->{c_out} @{size}x{size}", "batch": batch, **cost,
            "fwd_s": fwd, "bwd_s": bwd}


def ladder_totals(rows, names) -> dict:
    """Seconds over all of VGG-16's convolutions (each shape times its count), per step."""
    totals = {}
    for name in names + ["torch"]:
        key_rows = [r for r in rows if r["implementation"] == (names[0] if name == "torch"
                                                               else name)]
        if name == "torch":
            if any(r["torch_fwd_s"] is None for r in key_rows):
                continue
            fwd = sum(r["count"] * r["torch_fwd_s"] for r in key_rows)
            bwd = sum(r["count"] * r["torch_bwd_s"] for r in key_rows)
        else:
            fwd = sum(r["count"] * r["fwd_s"] for r in key_rows)
            bwd = sum(r["count"] * r["bwd_s"] for r in key_rows)
        flops = sum(r["count"] * (r["fwd_flops"] + r["bwd_flops"]) for r in key_rows)
        totals[name] = {"fwd_s": fwd, "bwd_s": bwd, "gflops": gflops(flops, fwd + bwd)}
    return totals


# --- the training step ------------------------------------------------------------------------

def torch_vgg16(head: str, num_classes: int):
    """torchvision's VGG-16 layout (features / avgpool / classifier) in PyTorch, with the
    classifier of ``tinyvgg.models.vgg16(head=head)`` so that state_dicts carry over."""
    torch = _torch()
    tnn = torch.nn
    layers, c_in = [], 3
    for v in cfgs["D"]:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c_in, v, 3, padding=1), tnn.ReLU(inplace=True)]
            c_in = v
    pool, hidden = (7, 4096) if head == "imagenet" else (1, 512)
    model = tnn.Module()
    model.features = tnn.Sequential(*layers)
    model.avgpool = tnn.AdaptiveAvgPool2d(pool)
    model.classifier = tnn.Sequential(
        tnn.Linear(512 * pool * pool, hidden), tnn.ReLU(True), tnn.Dropout(0.5),
        tnn.Linear(hidden, hidden), tnn.ReLU(True), tnn.Dropout(0.5),
        tnn.Linear(hidden, num_classes))
    model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
    return model


def _training_step(framework, implementation=CONV3X3_CPU_DEFAULT, head="compact", batch=BATCH,
                   size=32, num_classes=10, lr=0.01, seed=0):
    """A function running one VGG-16 training step (forward, loss, backward, SGD update;
    ``lr=None``: no update) in ``framework`` ("tinyvgg" or "torch"), on fixed images.
    Both frameworks start from the same weights (PyTorch's initialisation)."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, num_classes, batch)
    if torch is not None:
        torch.manual_seed(seed)
        reference = torch_vgg16(head, num_classes)
    if framework == "torch":
        x, y = torch.from_numpy(images), torch.from_numpy(labels)

        def theirs():
            loss = torch.nn.functional.cross_entropy(reference(x), y)
            reference.zero_grad()
            loss.backward()
            if lr is not None:
                with torch.no_grad():
                    for p in reference.parameters():
                        p -= lr * p.grad
        return theirs
    from ..ops.conv_cpu import use_conv3x3_cpu
    model = vgg16(head=head, num_classes=num_classes)
    if torch is not None:
        model.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})

    def ours():
        use_conv3x3_cpu(implementation)
        loss = F.cross_entropy(model(tensor(images)), labels)
        model.zero_grad()
        loss.backward()
        if lr is not None:
            for p in model.parameters():
                p.data -= lr * p.grad
    return ours


def step_flops(head="compact", batch=BATCH, size=32, num_classes=10) -> int:
    """FLOPs of a training step: forward, and twice that for backward, except that the
    first convolution computes no input gradient."""
    from ..tools.summary import summary
    table = summary(vgg16(head=head, num_classes=num_classes, init_weights=False),
                    (batch, 3, size, size))
    convs = sum(r.macs for r in table.rows if r.kind.startswith("conv"))
    first = table.rows[1].macs
    return 2 * (3 * convs - first + 3 * (table.macs - convs))


def bench_training_step(warmup, repeats, head="compact", batch=BATCH, size=32, num_classes=10,
                        lr=0.01, implementations=(CONV3X3_CPU_DEFAULT,), memory=False) -> dict:
    """The step's median time with each conv3x3 implementation, and PyTorch's, on the same
    weights and images; with ``memory``, each one's peak memory from a fresh process."""
    from ..ops.conv_cpu import using_conv3x3_cpu
    head_name = "torchvision head 25088-4096-4096" if head == "imagenet" else "head 512-512"
    result = dict(model=f"VGG-16 ({head_name}-{num_classes})", batch=batch,
                  input=f"3x{size}x{size}", dtype="float32", sgd_update=lr is not None,
                  approx_flops=step_flops(head, batch, size, num_classes), tinyvgg={})
    options = dict(head=head, batch=batch, size=size, num_classes=num_classes, lr=lr)
    for name in implementations:
        with using_conv3x3_cpu(name):  # the step selects it too; this restores the choice
            seconds = median_seconds(_training_step("tinyvgg", name, **options), warmup,
                                     repeats)
        result["tinyvgg"][name] = {
            "seconds": seconds, "images_per_s": batch / seconds,
            "peak_bytes": step_peak_memory("tinyvgg", name, batch, size) if memory
            else None}
    if _torch() is not None:
        seconds = median_seconds(_training_step("torch", **options), warmup, repeats)
        result["torch"] = {"seconds": seconds, "images_per_s": batch / seconds,
                           "peak_bytes": step_peak_memory("torch", batch=batch, size=size)
                           if memory else None}
    return result


# --- the report ----------------------------------------------------------------------------

def markdown(report: dict) -> str:
    m, peaks = report["machine"], report["peaks"]
    names = report["implementations"]
    lines = [f"# tinyvgg bench (CPU): the conv3x3 ladder and VGG-16, against PyTorch "
             f"{m['torch'] or '(not installed)'}", "",
             f"{m['cpu']}, {m['cores']} cores; NumPy {m['numpy']} ({m['numpy_blas']}); tinyvgg "
             f"threads {m.get('tinyvgg_cpu_threads', '?')}; PyTorch threads "
             f"{m['torch_threads']}; commit {m['commit']}; {m['date']}.", "",
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
        intensity = (r["fwd_flops"] + r["bwd_flops"]) / (r["fwd_bytes"] + r["bwd_bytes"])
        ours = r["fwd_s"] + r["bwd_s"]
        theirs = None if r["torch_fwd_s"] is None else r["torch_fwd_s"] + r["torch_bwd_s"]
        lines.append(
            f"| {r['layer']} | {r['count']} | {intensity:.0f} | `{r['implementation']}` | "
            f"{1e3 * r['fwd_s']:.2f} | {1e3 * r['bwd_s']:.2f} | "
            f"{gflops(r['fwd_flops'] + r['bwd_flops'], ours):.1f} | "
            f"{fmt(None if theirs is None else 1e3 * r['torch_fwd_s'], '.2f')} / "
            f"{fmt(None if theirs is None else 1e3 * r['torch_bwd_s'], '.2f')} | "
            f"{fmt(ratio(ours, theirs), '.2f')} |")
    return "\n".join(lines) + "\n"


def _mib(n):
    return "-" if n is None else f"{n / 2 ** 20:.0f} MiB"


def plot(report: dict, stem: Path) -> list[Path]:
    """A bar chart of the ladder and a roofline of the VGG-16 layers (needs matplotlib)."""
    plt = pyplot()
    if plt is None:
        return []
    written = []
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
    written.append(save_png(fig, stem.with_name(stem.name + "-ladder.png")))

    peaks = report["peaks"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.logspace(-1, 3, 200)
    ax.plot(x, np.minimum(peaks["gemm_gflops"], x * peaks["copy_gbs"]), "k-",
            label="measured roofs")
    for name in names:
        rows = [r for r in report["layers"] if r["implementation"] == name]
        intensity = [(r["fwd_flops"] + r["bwd_flops"]) / (r["fwd_bytes"] + r["bwd_bytes"])
                     for r in rows]
        achieved = [gflops(r["fwd_flops"] + r["bwd_flops"], r["fwd_s"] + r["bwd_s"])
                    for r in rows]
        ax.scatter(intensity, achieved, label=name)
    rows = [r for r in report["layers"] if r["implementation"] == names[0]
            and r["torch_fwd_s"] is not None]
    if rows:
        ax.scatter([(r["fwd_flops"] + r["bwd_flops"]) / (r["fwd_bytes"] + r["bwd_bytes"])
                    for r in rows],
                   [gflops(r["fwd_flops"] + r["bwd_flops"], r["torch_fwd_s"] + r["torch_bwd_s"])
                    for r in rows], marker="x", color="k", label="PyTorch")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of minimal traffic)")
    ax.set_ylabel("GFLOP/s (forward + backward)")
    ax.set_title("VGG-16 conv layers on the roofline (CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(save_png(fig, stem.with_name(stem.name + "-roofline.png")))
    return written


def run(out_dir=DEFAULT_OUT, implementations=None, warmup=2, repeats=5,
        quick=False, log=print) -> dict:
    """Everything ``tinyvgg bench`` measures on the CPU; writes JSON, Markdown and PNGs into
    ``out_dir``, which is checked first (:class:`tinyvgg.fileio.FolderNotWritableError`)
    so that minutes of measurements never end with nowhere to go."""
    from ..ops.conv_cpu import CONV3X3_CPU_CHOICES
    out_dir = writable_folder(out_dir)
    names = list(implementations or [n for n in CONV3X3_CPU_CHOICES if n != "naive"])
    if quick:
        warmup, repeats = 1, 3
    report = {"machine": machine_info(), "warmup": warmup, "repeats": repeats,
              "implementations": names}
    log("measuring the machine's peaks ...")
    report["peaks"] = measure_peaks()
    log(f"  GEMM {report['peaks']['gemm_gflops']:.1f} GFLOP/s, copy "
        f"{report['peaks']['copy_gbs']:.1f} GB/s")
    log("naive loops on one small layer ...")
    report["naive"] = bench_naive(warmup, repeats)
    log("the conv3x3 ladder on VGG-16's layers ...")
    report["layers"] = bench_ladder(names, warmup, repeats, log=log)
    report["totals"] = ladder_totals(report["layers"], names)
    log("the VGG-16 training step ...")
    report["training_step"] = bench_training_step(
        warmup, repeats, implementations=[n for n in ("auto", "im2col") if n in names] or
        names[:1], memory=True)
    machine = re.sub(r"[^a-z0-9]+", "-", report["machine"]["cpu"].lower()).strip("-")
    stem = Path(out_dir) / f"bench-cpu-{machine}-{report['machine']['cores']}cores"
    atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write(stem.with_suffix(".md"), markdown(report))
    written = plot(report, stem)
    log(markdown(report))
    log("wrote " + ", ".join(str(p) for p in [stem.with_suffix(".json"),
                                              stem.with_suffix(".md"), *written]))
    return report
