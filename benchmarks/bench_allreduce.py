"""Data-parallel training, measured here and projected to many GPUs.

    python3 benchmarks/bench_allreduce.py [--quick] [--out benchmarks/results]

Measured on this machine (it starts ``mpiexec -n 2`` itself; the mpi extra installs it):

1. the bandwidth of a float32 allreduce (sum) between 2 local MPI ranks, over buffer
   sizes from 4 KB to 64 MB (median of repeats); on a machine with a GPU, NCCL's
   allreduce on one rank too (a single-rank communicator: its fixed cost per call);
2. the training step of ``tinyvgg train``'s default network (VGG-11 with batch norm,
   width 0.25, 32x32 inputs), global batch 64: on 1 process, and on 2 ranks with the
   gradient sums started during backward (overlap), after it (--no-overlap), and not at
   all (each rank's compute alone, the floor the other two approach).

Projected: the speed-up of VGG-16 (224x224) training on 4, 8 and 64 GPUs, from a
ring allreduce model, beside the 3.75x the VGG paper reports on 4 GPUs:

    step(N) = compute(N) + exposed communication,  ring: 2 (N - 1) / N * bytes / bandwidth

with the compute time of the VGG-16 step measured on an H100 (benchmarks/results/
gpu-nvidia-h100-80gb-hbm3.json, tinyvgg's kernels and PyTorch TF32), the gradient's
bytes counted from the model, and published link bandwidths (assumed, not measured
here). Writes ``allreduce-<machine>.{json,md,png}`` into --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # a clone runs it without installing

from tinyvgg.bench import machine_info, slug  # noqa: E402
from tinyvgg.io.fileio import atomic_write  # noqa: E402

RESULTS = HERE / "results"
H100_REPORT = RESULTS / "gpu-nvidia-h100-80gb-hbm3.json"
#: the VGG paper (Simonyan & Zisserman, ICLR 2015, section 3.3): 4 NVIDIA Titan Black
#: GPUs trained 3.75 times faster than one, the batch of 256 split over them
PAPER_SPEEDUP, PAPER_GPUS, PAPER_BATCH = 3.75, 4, 256
#: published per-GPU link bandwidths, one direction, in GB/s (assumed, not measured here):
#: NVLink 4 on an H100 SXM (900 GB/s both ways), and one NDR InfiniBand port per GPU
#: (400 Gb/s), as in a DGX H100, for rings that leave the machine
LINKS = {"NVLink 4 (H100 SXM)": 450.0, "InfiniBand NDR 400 Gb/s": 50.0}
#: how the GPUs of each projection are connected: 4 and 8 in one machine, 64 over 8
PROJECTED = [(4, "NVLink 4 (H100 SXM)"), (8, "NVLink 4 (H100 SXM)"),
             (64, "InfiniBand NDR 400 Gb/s")]
#: the share of a step that backward takes, during which gradient sums can run
#: (backward costs about twice the forward: assumed)
BACKWARD_SHARE = 2 / 3
SIZES = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
#: the step runs: (label, ranks, mode, bucket MB); the network's 2.4 MB gradient fits one
#: 25 MB bucket, which can only start once backward is done, so smaller buckets show
#: what overlap can hide
STEP_RUNS = [("1 process", 1, "overlap", 25.0), ("2 ranks, overlap", 2, "overlap", 25.0),
             ("2 ranks, overlap, 0.25 MB buckets", 2, "overlap", 0.25),
             ("2 ranks, no overlap", 2, "no-overlap", 25.0),
             ("2 ranks, compute only", 2, "compute", 25.0)]


# --- run under mpiexec: the measurements -------------------------------------------

def measure_bandwidth(repeats: int) -> list:
    from tinyvgg.train import distributed
    group = distributed.world()
    MPI = distributed.import_mpi()
    rows = []
    for size in SIZES:
        buffer = np.ones(size // 4, dtype=np.float32)
        times = []
        for _ in range(repeats + 2):
            group.comm.Barrier()
            began = time.perf_counter()
            group.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            times.append(time.perf_counter() - began)
        seconds = float(np.median(times[2:]))
        ranks = group.size
        rows.append({"bytes": size, "ms": 1e3 * seconds, "algorithm_gb_s": size / seconds / 1e9,
                     "bus_gb_s": 2 * (ranks - 1) / ranks * size / seconds / 1e9})
    return rows if group.rank == 0 else None


def measure_step(mode: str, steps: int, batch: int, bucket_mb: float) -> dict | None:
    """Seconds per training step (median) of the default network at global ``batch``;
    ``mode``: "overlap", "no-overlap" or "compute" (2 ranks, no sums)."""
    from tinyvgg import functional as F
    from tinyvgg import optim, random
    from tinyvgg.tensor import tensor
    from tinyvgg.train import TrainConfig, build_model, distributed
    group = distributed.world()
    if group is not None:
        group.use_device("cpu")
    config = TrainConfig(overlap=mode != "no-overlap", bucket_mb=bucket_mb)
    random.manual_seed(0)
    model = build_model(config, 10, 1)
    optimizer = optim.SGD(model.named_parameters(), lr=0.01, momentum=0.9)
    ranks, rank = (1, 0) if group is None else (group.size, group.rank)
    low, high = batch * rank // ranks, batch * (rank + 1) // ranks
    rng = np.random.default_rng(rank)
    images = rng.standard_normal((high - low, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, high - low)
    buckets = None
    if group is not None and mode != "compute":
        distributed.broadcast_state(group, model)
        buckets = distributed.GradientBuckets(model.parameters(), group, config.bucket_mb,
                                              config.overlap)
    steps_s, waits = [], []
    for step in range(steps + 2):
        if group is not None:
            group.comm.Barrier()
        began = time.perf_counter()
        random.set_first_sample(low)
        loss = F.cross_entropy(model(tensor(images)), labels)
        model.zero_grad()
        if buckets is None:
            loss.backward()
        else:
            buckets.begin()
            loss.backward(np.asarray((high - low) / batch, dtype=np.float32))
            waited = time.perf_counter()
            buckets.finish()
            waits.append(time.perf_counter() - waited)
            group.sum_numbers([float(loss.item())])
        optimizer.step()
        steps_s.append(time.perf_counter() - began)
    gradient_bytes = sum(p.data.nbytes for p in model.parameters())
    result = {"mode": mode, "ranks": ranks, "batch": batch, "ms": 1e3 * float(np.median(
        steps_s[2:])), "gradient_bytes": gradient_bytes}
    if buckets is not None:
        result["buckets"] = len(buckets.buckets)
    if waits:
        result["wait_ms"] = 1e3 * float(np.median(waits[2:]))
    return result if rank == 0 else None


def measure_nccl(repeats: int) -> list | None:
    """NCCL's allreduce on one GPU (a single-rank communicator): its cost per call."""
    try:
        import cupy
        from cupy.cuda import nccl
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy, no NCCL or no GPU: nothing to measure
        return None
    comm = nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)
    stream = cupy.cuda.get_current_stream()
    rows = []
    for size in SIZES:
        buffer = cupy.ones(size // 4, dtype=cupy.float32)
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(repeats + 2):
            start.record(stream)
            comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, nccl.NCCL_FLOAT32,
                           nccl.NCCL_SUM, stream.ptr)
            stop.record(stream)
            stop.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
        seconds = float(np.median(times[2:]))
        rows.append({"bytes": size, "ms": 1e3 * seconds, "algorithm_gb_s": size / seconds / 1e9})
    return rows


# --- the projection ----------------------------------------------------------------

def vgg16_gradient_bytes() -> int:
    from tinyvgg.models import vgg
    from tinyvgg.nn.layers import shapes_only
    with shapes_only():
        model = vgg("vgg16", init_weights=False)
    return sum(p.data.size for p in model.parameters()) * 4


def measured_vgg16_steps() -> dict:
    """ms per VGG-16 224x224 training step at batch 64 on one H100, as measured."""
    report = json.loads(H100_REPORT.read_text())
    step = report["steps"][0]
    return {"source": f"{H100_REPORT.relative_to(ROOT)} (commit {report['machine']['commit']})",
            "batch": step["batch"], "tinyvgg_ms": step["tinyvgg_ms"],
            "torch_tf32_ms": step["torch_tf32_ms"]}


def ring_seconds(gpus: int, nbytes: float, gb_s: float) -> float:
    return 2 * (gpus - 1) / gpus * nbytes / (gb_s * 1e9)


def project(compute_ms_at: float, measured_batch: int, gradient_bytes: int) -> list:
    """Speed-ups on N GPUs as in the paper: a global batch of 256 split over the GPUs, the
    compute time proportional to the images per GPU; with overlap, the sums hide behind
    backward (BACKWARD_SHARE of the compute) and only what is left shows."""
    one_gpu_ms = compute_ms_at * PAPER_BATCH / measured_batch
    rows = []
    for gpus, link in PROJECTED:
        compute = one_gpu_ms / gpus
        communication = 1e3 * ring_seconds(gpus, gradient_bytes, LINKS[link])
        exposed = max(0.0, communication - BACKWARD_SHARE * compute)
        rows.append({"gpus": gpus, "link": link, "link_gb_s": LINKS[link],
                     "compute_ms": compute, "allreduce_ms": communication,
                     "speedup_no_overlap": one_gpu_ms / (compute + communication),
                     "speedup_overlap": one_gpu_ms / (compute + exposed)})
    return rows


# --- the report --------------------------------------------------------------------

def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Data-parallel training: allreduce, 1 vs 2 ranks, projected speed-ups",
             "", f"Measured on {m['cpu']} ({m['cores']} cores), commit {m['commit']}, "
             f"{m['date']}; mpi4py {report['mpi4py']}, {report['mpi']}. Load average "
             f"{report['load_average_before']:.1f} before, {report['load_average_after']:.1f} "
             f"after (the machine was shared with other work): each figure is the fastest of "
             f"{report['rounds']} rounds, each a median.",
             f"Command: `{report['command']}`.", "",
             "## Allreduce (sum) of float32 buffers between 2 local MPI ranks (measured)", "",
             "| bytes | ms | algorithm GB/s | bus GB/s |", "|---|---|---|---|"]
    for r in report["allreduce_mpi"]:
        lines.append(f"| {r['bytes']:,} | {r['ms']:.3f} | {r['algorithm_gb_s']:.2f} | "
                     f"{r['bus_gb_s']:.2f} |")
    lines += ["", "Algorithm GB/s: bytes / time; bus GB/s: 2(N-1)/N x bytes / time, what "
              "each rank sends and receives in a ring (equal to the algorithm's for N = 2).",
              ""]
    if report["allreduce_nccl"]:
        lines += ["NCCL on one GPU (single-rank communicator):", "",
                  "| bytes | ms | GB/s |", "|---|---|---|"]
        lines += [f"| {r['bytes']:,} | {r['ms']:.4f} | {r['algorithm_gb_s']:.1f} |"
                  for r in report["allreduce_nccl"]]
    else:
        lines.append("NCCL: not measured (no GPU on this machine).")
    steps = {s["mode"]: s for s in report["steps"]}
    one = steps["1 process"]
    lines += ["", f"## Training step, VGG-11 + BN, width 0.25, 32x32, global batch "
              f"{one['batch']} (measured)", "",
              f"Gradient: {one['gradient_bytes']:,} bytes. 1 process uses "
              f"{report['threads_one']} thread(s); each of 2 ranks uses 1.", "",
              "| run | buckets | ms / step | wait for the sums, ms | vs 1 process | "
              "ms / step in each round |", "|---|---|---|---|---|---|"]
    for mode, *_ in STEP_RUNS:
        s = steps[mode]
        wait = f"{s['wait_ms']:.2f}" if "wait_ms" in s else "-"
        lines.append(f"| {mode} | {s.get('buckets', '-')} | {s['ms']:.1f} | {wait} | "
                     f"{one['ms'] / s['ms']:.2f}x | "
                     f"{', '.join(f'{ms:.0f}' for ms in s['ms_rounds'])} |")
    lines += ["", "Wait: the time from the end of backward to the sums' arrival (finish()). "
              "Compute only: each rank steps with its own gradient, without any sum (not a "
              "training run: the floor the others approach). Both ranks share the 2 cores "
              "of this machine, so a rank's sums compete with the other's compute.", ""]
    p = report["projection"]
    lines += ["## VGG-16 (224x224) on 4, 8 and 64 GPUs (projected)", "",
              f"Model: step = compute + exposed communication; ring allreduce time "
              f"2(N-1)/N x {p['gradient_bytes']:,} bytes (VGG-16's float32 gradient, "
              f"counted) / link bandwidth. As in the paper, a global batch of "
              f"{PAPER_BATCH} is split over the GPUs and the compute time scales with the "
              f"images per GPU; with overlap the sums run during backward, "
              f"{BACKWARD_SHARE:.0%} of the compute, and only the rest is exposed.", "",
              "Measured inputs: the VGG-16 step at batch "
              f"{p['vgg16']['batch']} on one H100 ({p['vgg16']['source']}): tinyvgg "
              f"{p['vgg16']['tinyvgg_ms']:.1f} ms, PyTorch TF32 "
              f"{p['vgg16']['torch_tf32_ms']:.1f} ms. Assumed: the link bandwidths "
              f"(published: " + ", ".join(f"{k} {v:g} GB/s per GPU per direction"
                                         for k, v in LINKS.items())
              + "), the GPUs per machine (4 and 8 GPUs in one machine over NVLink, 64 as "
              "8 machines whose rings cross InfiniBand), the backward share, and that "
              "the ring reaches the link's bandwidth and no latency.", ""]
    for name, rows in (("tinyvgg's kernels", p["tinyvgg"]), ("PyTorch TF32", p["torch_tf32"])):
        lines += [f"Compute: {name}.", "",
                  "| GPUs | link | compute ms | allreduce ms | speed-up, no overlap | "
                  "speed-up, overlap |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['gpus']} | {r['link']} | {r['compute_ms']:.1f} | "
                  f"{r['allreduce_ms']:.1f} | {r['speedup_no_overlap']:.2f}x | "
                  f"{r['speedup_overlap']:.2f}x |" for r in rows]
        lines.append("")
    lines.append(f"The paper: {PAPER_SPEEDUP}x on {PAPER_GPUS} GPUs.")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path | None:
    from tinyvgg.io.plotting import pyplot, save_png
    plt = pyplot()
    if plt is None:
        return None
    figure, axis = plt.subplots(figsize=(7, 4.2))
    p = report["projection"]
    gpus = [r["gpus"] for r in p["tinyvgg"]]
    axis.plot(gpus, gpus, color="grey", linestyle=":", label="linear")
    for name, rows, colour in (("tinyvgg", p["tinyvgg"], "tab:blue"),
                               ("PyTorch TF32", p["torch_tf32"], "tab:orange")):
        axis.plot(gpus, [r["speedup_overlap"] for r in rows], marker="o", color=colour,
                  label=f"{name} compute, overlap")
        axis.plot(gpus, [r["speedup_no_overlap"] for r in rows], marker="x", color=colour,
                  linestyle="--", label=f"{name} compute, no overlap")
    axis.scatter([PAPER_GPUS], [PAPER_SPEEDUP], marker="*", s=160, color="black", zorder=5,
                 label=f"the paper: {PAPER_SPEEDUP}x on {PAPER_GPUS} GPUs (measured)")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log", base=2)
    axis.set_xticks(gpus, [str(g) for g in gpus])
    axis.set_xlabel("GPUs (4, 8: NVLink in one machine; 64: InfiniBand)")
    axis.set_ylabel("speed-up over 1 GPU")
    axis.set_title("VGG-16 224x224, global batch 256: ring-allreduce model (projected)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    return save_png(figure, path)


def run_ranks(ranks: int, *args: str) -> object:
    """This script's ``--role`` run on ``ranks`` MPI ranks (1: without mpiexec); rank 0's
    JSON answer."""
    command = [sys.executable, __file__, *args]
    if ranks > 1:
        mpiexec = Path(sys.executable).with_name("mpiexec")
        command = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks)] + command
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True,
                          timeout=1800)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--role", choices=("bandwidth", "step"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="overlap", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--bucket-mb", type=float, default=25.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bandwidth":
        rows = measure_bandwidth(args.repeats)
        if rows is not None:
            print(json.dumps(rows))
        return 0
    if args.role == "step":
        row = measure_step(args.mode, args.repeats, batch=64, bucket_mb=args.bucket_mb)
        if row is not None:
            print(json.dumps(row))
        return 0
    repeats = 5 if args.quick else 20
    steps = 4 if args.quick else 20
    rounds = 1 if args.quick else 5
    import mpi4py
    from mpi4py import MPI
    from tinyvgg import workers
    report = {"machine": machine_info(), "mpi4py": mpi4py.__version__,
              "mpi": " ".join(MPI.Get_library_version().splitlines()[0].split()),
              "command": "python3 benchmarks/bench_allreduce.py"
                         + (" --quick" if args.quick else ""),
              "threads_one": workers.cpu_threads(), "rounds": rounds,
              "load_average_before": os.getloadavg()[0]}
    # other work on the machine slows some runs: each measurement is made in several
    # rounds, the runs of a round one after the other, and the fastest round is kept
    bandwidth = [run_ranks(2, "--role", "bandwidth", "--repeats", str(repeats))
                 for _ in range(rounds)]
    report["allreduce_mpi"] = [min(rows, key=lambda r: r["ms"]) for rows in zip(*bandwidth)]
    report["allreduce_nccl"] = measure_nccl(repeats)
    runs = {label: [] for label, *_ in STEP_RUNS}
    for _ in range(rounds):
        for label, ranks, mode, mb in STEP_RUNS:
            row = run_ranks(ranks, "--role", "step", "--mode", mode, "--repeats", str(steps),
                            "--bucket-mb", str(mb))
            row["mode"] = label
            runs[label].append(row)
    report["steps"] = [{**min(rows, key=lambda r: r["ms"]),
                        "ms_rounds": [r["ms"] for r in rows]} for rows in runs.values()]
    report["load_average_after"] = os.getloadavg()[0]
    vgg16 = measured_vgg16_steps()
    gradient_bytes = vgg16_gradient_bytes()
    report["projection"] = {
        "vgg16": vgg16, "gradient_bytes": gradient_bytes, "links_gb_s": LINKS,
        "backward_share": BACKWARD_SHARE, "global_batch": PAPER_BATCH,
        "paper": {"gpus": PAPER_GPUS, "speedup": PAPER_SPEEDUP},
        "tinyvgg": project(vgg16["tinyvgg_ms"], vgg16["batch"], gradient_bytes),
        "torch_tf32": project(vgg16["torch_tf32_ms"], vgg16["batch"], gradient_bytes)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"allreduce-{slug(report['machine']['cpu'])}-{report['machine']['cores']}cores"
    atomic_write(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    atomic_write(stem.with_suffix(".md"), text)
    plot(report, stem.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
