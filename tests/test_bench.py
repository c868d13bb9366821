"""``tinyvgg bench``'s pieces on small shapes: rows, totals, the report and its plots.

Speed itself is never asserted; these tests check that every number the report
prints comes from a measurement of the right thing."""
import json
import sys
from pathlib import Path

import pytest

from tinyvgg import bench
from tinyvgg.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def small_report(names):
    rows = bench.bench_ladder(names, warmup=0, repeats=1, shapes=[(3, 8, 8), (8, 8, 4)],
                              batch=2, log=lambda m: 0)
    return {"machine": bench.machine_info(), "warmup": 0, "repeats": 1,
            "implementations": names, "peaks": bench.measure_peaks(repeats=1),
            "naive": bench.bench_naive(0, 1), "layers": rows,
            "totals": bench.ladder_totals(rows, names)}


def test_conv_cost_counts_flops_and_bytes():
    cost = bench.conv_cost(2, 4, 8, 5)
    assert cost["fwd_flops"] == 2 * (2 * 5 * 5 * 8 * 4 * 9)
    assert cost["bwd_flops"] == 2 * cost["fwd_flops"]  # dx and dw
    assert bench.conv_cost(2, 3, 8, 5)["bwd_flops"] == bench.conv_cost(2, 3, 8, 5)["fwd_flops"]
    assert cost["fwd_bytes"] == 4 * (2 * 4 * 25 + 8 * 4 * 9 + 2 * 8 * 25)


def test_the_ladder_rows_and_totals(tmp_path):
    report = small_report(["im2col", "winograd", "auto"])
    assert [(r["layer"], r["implementation"]) for r in report["layers"]][:3] == [
        ("3->8 @8x8", "im2col"), ("3->8 @8x8", "winograd"), ("3->8 @8x8", "auto")]
    assert all(r["fwd_s"] > 0 and r["bwd_s"] > 0 for r in report["layers"])
    im2col = report["totals"]["im2col"]
    rows = [r for r in report["layers"] if r["implementation"] == "im2col"]
    assert im2col["fwd_s"] == pytest.approx(sum(r["count"] * r["fwd_s"] for r in rows))
    assert report["peaks"]["gemm_gflops"] > 0 and report["peaks"]["copy_gbs"] > 0
    text = bench.markdown(report)
    assert "| `winograd` |" in text and "naive (loops" in text
    written = bench.plot(report, tmp_path / "bench")
    if written:  # matplotlib installed
        assert sorted(p.name for p in written) == ["bench-ladder.png", "bench-roofline.png"]
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
    json.dumps(report)  # the report is plain data


@pytest.mark.torch
def test_pytorch_is_timed_on_the_same_layers():
    pytest.importorskip("torch")
    report = small_report(["im2col"])
    assert all(r["torch_fwd_s"] > 0 for r in report["layers"])
    assert "torch" in report["totals"] and "PyTorch conv2d" in bench.markdown(report)


def test_a_small_training_step_and_its_peak_memory():
    step = bench.bench_training_step(0, 1, batch=2, implementations=("im2col", "auto"),
                                     memory=True)
    assert set(step["tinyvgg"]) == {"im2col", "auto"}
    assert step["approx_flops"] > 0
    for r in step["tinyvgg"].values():
        assert r["seconds"] > 0
        if r["peak_bytes"] is not None:  # Linux
            # at least the activations kept for backward: VGG-16 at 32x32 keeps more
            # than 1 MB per image in float32
            assert r["peak_bytes"] > 2e6


def test_bench_refuses_unknown_implementations(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--implementations", "im2col,fft"])
    assert "unknown implementation fft" in capsys.readouterr().err


class _FakeCupy:
    """Just enough of CuPy for gpu_peak_bytes_in_use: a pool already holding 1000 bytes,
    and memory hooks that the pool's allocations and frees are reported to."""

    def __init__(self):
        self.hooks = []
        fake = self

        class MemoryHook:
            def __enter__(self):
                fake.hooks.append(self)
                return self

            def __exit__(self, *exc):
                fake.hooks.remove(self)

        pool = type("Pool", (), {"used_bytes": lambda self: 1000})()
        device = type("Device", (), {"synchronize": lambda self: None})
        self.cuda = type("cuda", (), {"MemoryHook": MemoryHook, "Device": device})
        self.get_default_memory_pool = lambda: pool

    def malloc(self, size):
        for hook in self.hooks:
            hook.malloc_postprocess(device_id=0, size=size, mem_size=size, mem_ptr=1,
                                    pmem_id=1)

    def free(self, size):
        for hook in self.hooks:
            hook.free_postprocess(device_id=0, mem_size=size, mem_ptr=1, pmem_id=1)


def test_gpu_peak_bytes_in_use_follows_every_allocation(monkeypatch):
    from tinyvgg import backend
    from tinyvgg.bench import step as step_module
    cupy = _FakeCupy()
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)

    def step():   # the peak is inside the step: what is in use at its end is less
        cupy.malloc(512)
        cupy.malloc(256)
        cupy.free(512)
        cupy.malloc(128)
        cupy.free(256)

    assert step_module.gpu_peak_bytes_in_use(step) == 1000 + 512 + 256
    assert cupy.hooks == []   # the hook is removed after the step


def test_gpu_memory_on_host_counts_the_step_as_the_gpu_would_allocate_it(capsys, tmp_path):
    """Held between steps: weights, velocities and gradients (3x the parameters) and the
    batch; in use during a step: that and every layer output backward still needs."""
    import gpu_memory_on_host
    from tinyvgg.tools.summary import vgg_summary

    table = vgg_summary("D", (2, 3, 32, 32), head="compact", num_classes=10)
    memory = gpu_memory_on_host.main(["--batch", "2", "--size", "32", "--head", "compact",
                                      "--classes", "10", "--out", str(tmp_path / "memory")])
    batch_bytes = 2 * 3 * 32 * 32 * 4
    assert memory["held"] == pytest.approx(3 * 4 * table.params + batch_bytes, rel=0.02)
    assert memory["peak"] > memory["held"] + table.activation_bytes / 2
    assert memory["pool"] >= memory["peak"]
    assert "held by the pool" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "memory.json").read_text())
    assert (recorded["held_bytes"], recorded["peak_bytes"], recorded["pool_bytes"]) == (
        memory["held"], memory["peak"], memory["pool"])
    assert "--batch 2 --size 32" in (tmp_path / "memory.md").read_text()
    with pytest.raises(SystemExit):
        gpu_memory_on_host.main(["conv3x3_kernel"])


def test_the_pool_model_splits_merges_and_grows_as_cupys_pool():
    from gpu_memory_on_host import PoolModel

    pool = PoolModel()
    a, b, c = pool.malloc(1000), pool.malloc(3000), pool.malloc(512)
    assert (pool.total, pool.in_use) == (1024 + 3072 + 512,) * 2   # rounded to 512
    pool.free(b)
    d = pool.malloc(1024)            # cut from b's block, 2048 left free
    assert pool.total == 4608 and d.after is not None and d.after.free
    pool.free(d)                     # merges back with the rest: one free 3072
    assert pool.free_sizes == [3072]
    e = pool.malloc(4096)            # nothing that large is free: a new cudaMalloc
    assert pool.total == 4608 + 4096
    assert pool.in_use == pool.peak_in_use == 1024 + 512 + 4096
    for chunk in (a, c, e):
        pool.free(chunk)
    assert pool.in_use == 0 and pool.total == 4608 + 4096   # the pool keeps its blocks
    assert sorted(pool.free_sizes) == [512, 1024, 3072, 4096]
