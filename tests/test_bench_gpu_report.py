"""The GPU benchmark's report, drawn from a stored H100 run and from made-up numbers: no
GPU needed.

benchmarks/bench_gpu.py times kernels only on a GPU, but its tables and plots are
plain functions of the report it stores, so they are checked here on that report (an
older one, whose ladders had fewer rungs) and on a synthetic report of every rung, whose
library times in the two modes are far apart so that a ratio taken against the wrong
mode shows. Which rungs run, and what their errors are measured against, is checked on
the ladder's loop with stand-ins for the GPU's clock."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinyvgg import bench as bench_gpu  # the GPU report's tables and plots are the harness's
from tinyvgg import choices
from tinyvgg.bench import ladder
from tinyvgg.bench.report import PRECISION_NAMES
from tinyvgg.bench.timing import WALL_CLOCK
from tinyvgg.ops import conv_cuda, linear, tensor_cores

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
REPORT = BENCHMARKS / "results" / "gpu-nvidia-h100-80gb-hbm3.json"

sys.path.insert(0, str(BENCHMARKS))
script = pytest.importorskip("bench_gpu")  # its command line


@pytest.fixture(scope="module")
def report():
    return json.loads(REPORT.read_text())


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _totals_rows(text, job):
    """The conv totals table's rows of ``job``, as dicts of its columns."""
    lines = text.splitlines()
    start = lines.index("| job | precision | step | ms | TFLOP/s | of peak | GB/s | ratio | "
                        "against |")
    header = _cells(lines[start])
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        row = dict(zip(header, _cells(line)))
        if row["job"] == job:
            rows.append(row)
    return rows


def _totals_row(text, job, step):
    for row in _totals_rows(text, job):
        if row["step"] == step:
            return row
    raise AssertionError(f"no totals row for {job} {step}")


def test_totals_sum_the_layers_with_their_counts(report):
    totals = report["conv_totals"]["64"]
    rows = [r for r in report["convs"] if r["batch"] == 64]
    expected = sum(count * r["ms"]["fwd"]["implicit-gemm"]
                   for r, count in zip(rows, bench_gpu.VGG16_CONV_COUNTS))
    assert totals["fwd"]["ms"]["implicit-gemm"] == pytest.approx(expected)
    # the first layer's input needs no gradient: 12 layers for dx, 13 for the others
    assert sum(c for r, c in zip(rows, bench_gpu.VGG16_CONV_COUNTS) if "dx" in r["jobs"]) == 12


def test_markdown_ratios_shares_and_bandwidth(report):
    text = bench_gpu.markdown(report)
    t = report["conv_totals"]["64"]["fwd"]
    ours, theirs = t["ms"]["implicit-gemm"], t["torch_ms"]["strict"]
    cells = _totals_row(text, "fwd", "implicit-gemm")
    assert float(cells["ratio"]) == pytest.approx(theirs / ours, abs=0.005)  # their time / ours
    tflops = t["flops"] / ours / 1e9
    assert float(cells["TFLOP/s"]) == pytest.approx(tflops, abs=0.05)
    share = 100 * tflops / report["peaks"]["gemm_strict_tflops"]
    assert float(cells["of peak"].rstrip("%")) == pytest.approx(share, abs=0.5)
    rows = [r for r in report["convs"] if r["batch"] == 64]
    moved = sum(c * bench_gpu.conv_bytes(r) for r, c in zip(rows, bench_gpu.VGG16_CONV_COUNTS))
    assert float(cells["GB/s"]) == pytest.approx(moved / ours / 1e6, abs=0.5)
    # the TF32 rung is compared with TF32 cuDNN, never with strict FP32
    tf32 = _totals_row(text, "fwd", "tf32-mma")
    assert (tf32["precision"], tf32["against"]) == ("TF32", "cuDNN TF32")
    assert float(tf32["ratio"]) == pytest.approx(t["torch_ms"]["tf32"] / t["ms"]["tf32-mma"],
                                                 abs=0.005)
    # a report from before the reports named their slow rungs: naive alone had fewer runs
    assert "(naive kernels: a third of the runs)" in text
    assert "GPU memory" in text and "Ratio against PyTorch strict FP32" in text


def test_conv_bytes_counts_input_weights_and_output_once():
    row = dict(batch=2, c_in=3, c_out=4, size=5)
    assert bench_gpu.conv_bytes(row) == 4 * (2 * 25 * 3 + 9 * 3 * 4 + 2 * 25 * 4)


def test_plots_are_pngs(report, tmp_path):
    written = bench_gpu.plot(report, tmp_path / "gpu")
    assert [p.name for p in written] == ["gpu-ladder.png", "gpu-roofline.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_from_json_rewrites_markdown_and_plots(report, tmp_path, capsys):
    stored = tmp_path / "copy.json"
    stored.write_text(json.dumps(report))
    script.main(["--from-json", str(stored)])
    assert (tmp_path / "copy.md").read_text() == bench_gpu.markdown(report)
    assert (tmp_path / "copy-ladder.png").exists() and (tmp_path / "copy-roofline.png").exists()


# --- every rung, with made-up numbers -------------------------------------------------------

#: the libraries' ms in each mode, per job: TF32 far below strict FP32
TORCH_MS = {"strict": 10.0, "tf32": 2.5}
#: each precision's error against strict FP32, distinct so that each lands in its column
ERROR_OF_PRECISION = {"strict": 1e-6, "3xtf32": 2e-6, "tf32": 3e-4}
#: the library mode each precision's times are compared with: 3xTF32 promises float32's
#: accuracy, so it answers to strict FP32
MODE_OF_PRECISION = {"strict": "strict", "3xtf32": "strict", "tf32": "tf32"}


def _made_up_ms(kernels, job):
    """A time per rung, none equal: 4 ms, 5 ms, ... in ladder order, shifted per job."""
    return {k: 4.0 + i + 0.25 * ladder.JOBS.index(job) for i, k in enumerate(kernels)}


def _made_up_row(kernels_of_job, jobs, **shape):
    return dict(**shape, jobs=list(jobs),
                ms={job: _made_up_ms(kernels_of_job[job], job) for job in jobs},
                error={job: {k: ERROR_OF_PRECISION[tensor_cores.precision(k)]
                             for k in kernels_of_job[job]} for job in jobs},
                torch_ms={mode: {job: ms for job in jobs} for mode, ms in TORCH_MS.items()})


def _made_up_kernels_of_step(setting):
    """The kernels a training step with one of bench_gpu.py's STEP_KERNELS reports."""
    chosen = {"conv3x3_kernel": conv_cuda.CONV3X3_DEFAULT_KERNEL,
              "conv3x3_wgrad_kernel": conv_cuda.CONV3X3_DEFAULT_WGRAD_KERNEL,
              "gemm_kernel": linear.GEMM_DEFAULT_KERNEL, **setting}
    return dict(conv3x3=chosen["conv3x3_kernel"],
                conv3x3_weight_grad=chosen["conv3x3_wgrad_kernel"], gemm=chosen["gemm_kernel"])


def _made_up_step(setting, tinyvgg_ms):
    return dict(model="VGG-16 (torchvision)", batch=64, input="3x224x224", flops=6e12,
                kernels=_made_up_kernels_of_step(setting), tinyvgg_ms=tinyvgg_ms,
                tinyvgg_pool_bytes=9 * 2 ** 30, tinyvgg_peak_bytes=7 * 2 ** 30,
                torch_strict_ms=100.0, torch_strict_peak_bytes=6 * 2 ** 30,
                torch_strict_reserved_bytes=13 * 2 ** 29, torch_tf32_ms=40.0,
                torch_tf32_peak_bytes=5 * 2 ** 30, torch_tf32_reserved_bytes=11 * 2 ** 29)


def made_up_report():
    """A report of every rung of every ladder, as bench_gpu.py would write it."""
    convs = [_made_up_row(bench_gpu.GPU_CONV_KERNELS, ("fwd", "dw") if c_in == 3 else ladder.JOBS,
                          shape=f"{c_in}->{c_out} @{size}x{size}", c_in=c_in, c_out=c_out,
                          size=size, batch=64, flops=2e12)
             for c_in, c_out, size in bench_gpu.VGG16_CONV_SHAPES]
    linears = [_made_up_row(bench_gpu.GPU_GEMM_KERNELS, ladder.JOBS, shape=f"{i}->{o}",
                            batch=64, flops=2 * 64 * i * o)
               for i, o in bench_gpu.VGG16_FC_SHAPES]
    steps = [_made_up_step(setting, 200.0 + 10 * i)
             for i, setting in enumerate(script.STEP_KERNELS)]
    return dict(machine=dict(torch="2.x", commit="abc1234", date="today"),
                device="A GPU", cupy="14", cudnn=91900, repeats=5, warmup=2,
                slow_kernels=list(bench_gpu.SLOW_KERNELS), batches=[64], convs=convs,
                linears=linears, steps=steps,
                conv_totals={"64": bench_gpu.ladder_totals(convs, bench_gpu.GPU_CONV_KERNELS,
                                                           bench_gpu.VGG16_CONV_COUNTS)},
                peaks=dict(gemm_strict_tflops=50.0, gemm_tf32_tflops=400.0, copy_gbs=3000.0))


@pytest.fixture(scope="module")
def made_up():
    return made_up_report()


def test_the_ladders_hold_the_tensor_core_rungs_in_every_job():
    for kernels_of_job in (bench_gpu.GPU_CONV_KERNELS, bench_gpu.GPU_GEMM_KERNELS):
        for job in ladder.JOBS:
            assert {"tf32-pipelined", "3xtf32"} <= set(kernels_of_job[job]), job
    assert "tf32-mma" in bench_gpu.GPU_CONV_KERNELS["fwd"]


@pytest.mark.parametrize("kernels, choice_of_job", [
    (ladder.GPU_CONV_KERNELS, ladder.GPU_CONV_CHOICES),
    (ladder.GPU_GEMM_KERNELS, ladder.GPU_GEMM_CHOICES)], ids=["conv3x3", "gemm"])
def test_every_rung_runs_its_jobs_and_is_checked_against_strict_fp32(kernels, choice_of_job,
                                                                      monkeypatch):
    """The ladder's loop with the GPU's clock and error stood in for: each job runs every
    rung of its ladder, selected, the slow ones with a third of the repeats, and every
    rung's result, whatever its precision, is compared with the strict FP32 reference."""
    runs, compared = {}, []

    def median_seconds(fn, warmup, repeats, clock):
        job, kernel = fn()
        runs[job, kernel] = repeats
        return 1e-3

    def relative_error(ours, reference):
        compared.append((ours, reference))
        return 0.0
    monkeypatch.setattr(ladder, "clock", lambda *args: WALL_CLOCK)
    monkeypatch.setattr(ladder, "median_seconds", median_seconds)
    monkeypatch.setattr(ladder, "relative_error", relative_error)
    fns = {job: (lambda job=job: (job, choices.selected(choice_of_job[job])))
           for job in ladder.JOBS}
    reference = {job: ("strict FP32", job) for job in ladder.JOBS}
    row = dict(ms={}, error={})
    ladder._time_kernels(row, ladder.JOBS, kernels, choice_of_job, fns, reference, 2, 9)
    for job in ladder.JOBS:
        assert list(row["ms"][job]) == list(kernels[job])
        assert list(row["error"][job]) == list(kernels[job])
        for kernel in kernels[job]:
            assert runs[job, kernel] == (3 if kernel in ladder.SLOW_KERNELS else 9)
    assert sorted(compared) == sorted(((job, kernel), ("strict FP32", job))
                                      for job in ladder.JOBS for kernel in kernels[job])


def test_the_reference_for_errors_is_pytorch_in_strict_fp32(monkeypatch):
    """PyTorch's jobs are timed in both modes; the results every rung is checked against
    are the strict ones, whichever mode ran last."""
    monkeypatch.setattr(ladder, "clock", lambda *args: WALL_CLOCK)
    monkeypatch.setattr(ladder, "median_seconds", lambda fn, warmup, repeats, clock: 1e-3)
    torch = SimpleNamespace(
        backends=SimpleNamespace(cudnn=SimpleNamespace(), cuda=SimpleNamespace(
            matmul=SimpleNamespace())),
        cuda=SimpleNamespace(synchronize=lambda: None))

    def jobs():
        return {job: (lambda job=job: (job, "tf32" if torch.backends.cudnn.allow_tf32 or
                                       torch.backends.cuda.matmul.allow_tf32 else "strict"))
                for job in ladder.JOBS}
    row = dict(torch_ms={})
    reference = ladder._time_torch_jobs(torch, row, jobs, ladder.JOBS, 1, 1)
    assert reference == {job: (job, "strict") for job in ladder.JOBS}
    assert set(row["torch_ms"]) == set(bench_gpu.TORCH_MODES)


def test_torch_modes_of_the_precisions():
    for kernel in ("implicit-gemm", "tile128", "3xtf32", "tf32-pipelined", "tf32-mma"):
        assert bench_gpu.torch_mode_of(kernel) == \
            MODE_OF_PRECISION[tensor_cores.precision(kernel)], kernel
    assert bench_gpu.TORCH_MODE_OF_PRECISION == MODE_OF_PRECISION


def test_a_step_computes_in_its_least_accurate_kernels_precision():
    assert bench_gpu.step_precision(["implicit-gemm", "auto", "tiled"]) == "strict"
    assert bench_gpu.step_precision(["3xtf32", "implicit-gemm", "3xtf32"]) == "3xtf32"
    assert bench_gpu.step_precision(["3xtf32", "tf32-pipelined", "tiled"]) == "tf32"


def test_totals_group_every_rung_by_precision_against_its_mode(made_up):
    text = bench_gpu.markdown(made_up)
    order = {PRECISION_NAMES[p]: i for i, p in enumerate(tensor_cores.PRECISIONS)}
    for job, t in made_up["conv_totals"]["64"].items():
        rows = _totals_rows(text, job)
        ours = [r for r in rows if not r["step"].startswith("cuDNN")]
        assert [r["step"] for r in ours] == sorted(
            bench_gpu.GPU_CONV_KERNELS[job],
            key=lambda k: tensor_cores.PRECISIONS.index(tensor_cores.precision(k)))
        # three sections, in the order strict FP32, 3xTF32, TF32
        assert [order[r["precision"]] for r in rows] == sorted(order[r["precision"]]
                                                              for r in rows)
        assert {r["precision"] for r in ours} == set(order)
        for r in ours:
            precision = tensor_cores.precision(r["step"])
            mode = MODE_OF_PRECISION[precision]
            assert r["precision"] == PRECISION_NAMES[precision]
            assert r["against"] == f"cuDNN {PRECISION_NAMES[mode]}"
            assert float(r["ratio"]) == pytest.approx(
                t["torch_ms"][mode] / t["ms"][r["step"]], abs=0.005)
            tflops = t["flops"] / t["ms"][r["step"]] / 1e9
            share = 100 * tflops / made_up["peaks"][f"gemm_{mode}_tflops"]
            assert float(r["of peak"].rstrip("%")) == pytest.approx(share, abs=0.5)
        # cuDNN's own rows close the sections of its two precisions
        assert [(r["precision"], r["step"], r["ratio"]) for r in rows
                if r["step"].startswith("cuDNN")] == [
            ("strict FP32", "cuDNN strict FP32", "1.00"), ("TF32", "cuDNN TF32", "1.00")]


def test_3xtf32_is_compared_with_strict_fp32_never_with_tf32(made_up):
    text = bench_gpu.markdown(made_up)
    t = made_up["conv_totals"]["64"]["dw"]
    row = _totals_row(text, "dw", "3xtf32")
    strict, tf32 = (t["torch_ms"][m] / t["ms"]["3xtf32"] for m in ("strict", "tf32"))
    assert float(row["ratio"]) == pytest.approx(strict, abs=0.005)
    assert abs(float(row["ratio"]) - tf32) > 0.1
    assert (row["precision"], row["against"]) == ("3xTF32", "cuDNN strict FP32")
    pipelined = _totals_row(text, "dw", "tf32-pipelined")
    assert float(pipelined["ratio"]) == pytest.approx(
        t["torch_ms"]["tf32"] / t["ms"]["tf32-pipelined"], abs=0.005)


def _per_layer_table(text, title):
    """The per-layer table under ``title``: its header, and its rows by layer."""
    lines = text.splitlines()
    start = lines.index(title) + 2
    header = _cells(lines[start])
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        rows[cells[0]] = dict(zip(header, cells))
    return header, rows


@pytest.mark.parametrize("title, rows_key, kernels, library", [
    ("### conv3x3 per layer, batch 64: weight gradient", "convs",
     conv_cuda.CONV3X3_WGRAD_KERNELS, "cuDNN"),
    ("### conv3x3 per layer, batch 64: input gradient", "convs", conv_cuda.CONV3X3_KERNELS,
     "cuDNN"),
    ("### linear: forward", "linears", linear.GEMM_KERNELS, "cuBLAS")])
def test_per_layer_cells_and_errors_by_precision(made_up, title, rows_key, kernels, library):
    header, rows = _per_layer_table(bench_gpu.markdown(made_up), title)
    assert header == (["layer"] + list(kernels)
                      + [f"{library} strict FP32", f"{library} TF32"]
                      + [f"max error, {PRECISION_NAMES[p]} rungs"
                         for p in tensor_cores.PRECISIONS])
    job = {"weight gradient": "dw", "input gradient": "dx", "forward": "fwd"}[
        title.rsplit(": ", 1)[1]]
    for r in made_up[rows_key]:
        if job not in r["jobs"]:
            continue
        cells = rows[r["shape"]]
        for kernel in kernels:
            mode = MODE_OF_PRECISION[tensor_cores.precision(kernel)]
            expected = r["torch_ms"][mode][job] / r["ms"][job][kernel]
            assert cells[kernel].endswith(f", {expected:.2f}x)"), (kernel, cells[kernel])
        # every error is against strict FP32; each precision's worst in its own column
        assert cells["max error, 3xTF32 rungs"].startswith("2.0e-06 (3xtf32")
        assert cells["max error, TF32 rungs"].startswith("3.0e-04 (")
        assert cells["max error, strict FP32 rungs"].startswith("1.0e-06 (")


def test_step_settings_include_the_tensor_core_tile_in_both_precisions():
    settings = [_made_up_kernels_of_step(s) for s in script.STEP_KERNELS]
    assert dict(conv3x3="3xtf32", conv3x3_weight_grad="3xtf32", gemm="3xtf32") in settings
    assert dict(conv3x3="tf32-pipelined", conv3x3_weight_grad="tf32-pipelined",
                gemm="tf32-pipelined") in settings
    assert script.STEP_KERNELS[0] == {}  # the defaults first: bench_allreduce.py reads them


def test_each_step_is_compared_with_pytorch_in_its_precisions_mode(made_up):
    text = bench_gpu.markdown(made_up)
    lines = text.splitlines()
    start = lines.index("| precision | our kernels | batch | ms / step | against | "
                        "PyTorch ms / step | ratio |")
    header = _cells(lines[start])
    table = [dict(zip(header, _cells(line))) for line in lines[start + 2:]
             if line.startswith("|")][:len(made_up["steps"])]
    by_kernels = {row["our kernels"]: row for row in table}
    assert [row["precision"] for row in table] == (
        ["strict FP32"] * 3 + ["3xTF32", "TF32"])  # grouped as the totals are
    for step in made_up["steps"]:
        name = ", ".join(f"{k} {v}" for k, v in step["kernels"].items())
        row = by_kernels[name]
        precision = bench_gpu.step_precision(step["kernels"].values())
        mode = MODE_OF_PRECISION[precision]
        assert row["precision"] == PRECISION_NAMES[precision]
        assert row["against"] == f"PyTorch {PRECISION_NAMES[mode]}"
        assert float(row["ratio"]) == pytest.approx(
            step[f"torch_{mode}_ms"] / step["tinyvgg_ms"], abs=0.005)
    three = by_kernels["conv3x3 3xtf32, conv3x3_weight_grad 3xtf32, gemm 3xtf32"]
    assert float(three["ratio"]) == pytest.approx(100.0 / 230.0, abs=0.005)  # strict, not TF32
    tf32 = by_kernels["conv3x3 tf32-pipelined, conv3x3_weight_grad tf32-pipelined, "
                      "gemm tf32-pipelined"]
    assert float(tf32["ratio"]) == pytest.approx(40.0 / 240.0, abs=0.005)
    assert "Ratio against PyTorch TF32, the mode of these kernels' precision: 0.17." in text
    assert "(naive and reduce kernels: a third of the runs)" in text


def test_step_memory_is_compared_like_for_like(made_up):
    """Peak in use against max_memory_allocated, the allocator's hold against
    max_memory_reserved, each in its own column."""
    lines = bench_gpu.markdown(made_up).splitlines()
    start = lines.index("| | ms / step | images / s | TFLOP/s | GPU memory, peak in use | "
                        "GPU memory, held by the allocator |")
    header = _cells(lines[start])
    rows = {row[""]: row for row in (dict(zip(header, _cells(line)))
                                     for line in lines[start + 2:start + 5])}
    memory = {who: (row["GPU memory, peak in use"], row["GPU memory, held by the allocator"])
              for who, row in rows.items()}
    assert memory == {"tinyvgg": ("7.0 GiB", "9.0 GiB"),
                      "PyTorch strict FP32": ("6.0 GiB", "6.5 GiB"),
                      "PyTorch TF32": ("5.0 GiB", "5.5 GiB")}


def test_a_report_from_before_the_peak_in_use_shows_a_dash():
    step = _made_up_step({}, 200.0)
    del step["tinyvgg_peak_bytes"], step["torch_strict_reserved_bytes"]
    text = bench_gpu.markdown(dict(made_up_report(), steps=[step]))
    assert "| tinyvgg | 200.0 | 320.0 | 30.00 | - | 9.0 GiB |" in text
    assert "| PyTorch strict FP32 | 100.0 | 640.0 | 60.00 | 6.0 GiB | - |" in text


def test_plots_of_every_rung_are_pngs(made_up, tmp_path):
    written = bench_gpu.plot(made_up, tmp_path / "gpu")
    if written:  # matplotlib installed
        assert [p.name for p in written] == ["gpu-ladder.png", "gpu-roofline.png"]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
