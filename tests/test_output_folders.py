"""Where ``tinyvgg bench`` and ``tinyvgg experiment`` write, and what they say when they cannot.

Their files belong in the user's folders (under ``runs/``, as training's), never in the
repository's: curated benchmark results under benchmarks/results are only written there
with an explicit ``--out``. A folder that cannot take the files is found before the work,
and a disk that fills up during it ends the command with one line naming ``--out``."""
import errno
import importlib
import os
import sys
from pathlib import Path

import pytest

from tinyvgg import bench
from tinyvgg.cli import main
from tinyvgg.experiments import receptive_field

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def small_bench(monkeypatch):
    """``tinyvgg bench`` on tiny shapes: a whole run, files included, in seconds."""
    peaks, ladder, step = bench.measure_peaks, bench.bench_ladder, bench.bench_training_step
    monkeypatch.setattr(bench, "measure_peaks", lambda repeats=5: peaks(repeats=1))
    monkeypatch.setattr(bench, "bench_ladder", lambda names, warmup, repeats, log=print: ladder(
        names, 0, 1, shapes=[(3, 8, 8)], batch=2, log=log))
    monkeypatch.setattr(bench, "bench_training_step", lambda warmup, repeats, implementations,
                        memory: step(0, 1, batch=2, implementations=implementations))


def measuring_is_a_failure(monkeypatch):
    """The commands must check --out before any work; these stand-ins fail if they run."""
    def measured(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")
    monkeypatch.setattr(bench, "measure_peaks", measured)
    monkeypatch.setattr(receptive_field, "run", measured)


def disk_full_from_call(monkeypatch, first_failing_call):
    """os.fsync raises ENOSPC from its ``first_failing_call``-th call on (the probe's is the
    first; the results' come after the work)."""
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= first_failing_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def one_line_error(capsys, command, out):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tinyvgg {command}: cannot write to --out {out}: "), err
    return err


def unwritable_outs(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file where a folder should be")
    return [(a_file, "it is a file, not a folder"),
            (a_file / "results", f"{a_file} is a file, not a folder")]


# --- where the files go ---------------------------------------------------------------------

def test_bench_writes_under_runs_by_default(small_bench, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--implementations", "im2col"]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert written and all(p.startswith("runs/bench/bench-cpu-") for p in written), written
    assert not (tmp_path / "benchmarks").exists()


def test_bench_writes_to_an_explicit_out(small_bench, tmp_path):
    out = tmp_path / "curated"
    assert main(["bench", "--implementations", "im2col", "--out", str(out)]) == 0
    assert {p.suffix for p in out.iterdir()} >= {".json", ".md"}


def test_experiment_writes_under_runs_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "receptive-field"]) == 0
    figure = Path("runs") / "experiment-receptive-field" / "receptive-field.png"
    assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {figure}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def benchmark_script(name):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def test_the_cpu_benchmark_script_writes_under_runs_by_default(tmp_path, monkeypatch):
    bench_cpu = benchmark_script("bench_cpu")
    step = bench_cpu.bench_training_step
    monkeypatch.setattr(bench_cpu, "bench_training_step", lambda warmup, repeats: step(
        0, 1, batch=2, implementations=("im2col",)))
    monkeypatch.chdir(tmp_path)
    bench_cpu.main(["--no-ops", "--no-imagenet", "--quick"])
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert len(written) == 2 and all(p.startswith("runs/bench/cpu-") for p in written), written


# --- folders that cannot take the files ----------------------------------------------------

@pytest.mark.parametrize("case", [0, 1], ids=["out-is-a-file", "out-under-a-file"])
def test_bench_reports_an_unusable_out_before_measuring(case, tmp_path, monkeypatch, capsys):
    out, reason = unwritable_outs(tmp_path)[case]
    measuring_is_a_failure(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--out", str(out)])
    assert exit_.value.code == 2
    assert one_line_error(capsys, "bench", out).rstrip("\n").endswith(reason)


@pytest.mark.parametrize("case", [0, 1], ids=["out-is-a-file", "out-under-a-file"])
def test_experiment_reports_an_unusable_out_before_running(case, tmp_path, monkeypatch,
                                                             capsys):
    out, reason = unwritable_outs(tmp_path)[case]
    measuring_is_a_failure(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "receptive-field", "--out", str(out)])
    assert exit_.value.code == 2
    assert one_line_error(capsys, "experiment", out).rstrip("\n").endswith(reason)


@pytest.mark.parametrize("first_failing_call", [1, 2], ids=["at-the-probe", "after-the-work"])
def test_bench_on_a_full_disk(first_failing_call, small_bench, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    calls = disk_full_from_call(monkeypatch, first_failing_call)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--implementations", "im2col", "--out", str(out)])
    assert exit_.value.code == 2 and len(calls) == first_failing_call
    assert one_line_error(capsys, "bench", out).endswith(": No space left on device\n")
    assert not [p for p in out.iterdir() if p.suffix in (".json", ".md", ".tmp")]


@pytest.mark.parametrize("first_failing_call", [1, 2], ids=["at-the-probe", "after-the-work"])
def test_experiment_on_a_full_disk(first_failing_call, tmp_path, monkeypatch, capsys):
    out = tmp_path / "figures"
    calls = disk_full_from_call(monkeypatch, first_failing_call)
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "receptive-field", "--out", str(out)])
    assert exit_.value.code == 2 and len(calls) == first_failing_call
    assert one_line_error(capsys, "experiment", out).endswith(": No space left on device\n")
    assert list(out.iterdir()) == []


def test_the_gpu_benchmark_checks_its_out_before_looking_for_a_gpu(tmp_path, capsys):
    bench_gpu = benchmark_script("bench_gpu")
    out, reason = unwritable_outs(tmp_path)[1]
    with pytest.raises(SystemExit) as exit_:
        bench_gpu.main(["--out", str(out / "gpu")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"bench_gpu: --out: cannot write to {out}: {reason}\n"
