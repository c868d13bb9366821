"""Training on several ranks: the pieces on their own (buckets, rank-to-GPU mapping, the
NCCL id's broadcast, synchronised batch norm), then runs of ``mpiexec -n 2 tinyvgg
train`` on a narrow VGG and a few 32x32 images, one BLAS thread per rank, each under a
timeout: the same result as one process, resuming, only rank 0 writing, and faults."""
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tinyvgg as tv
from helpers import leaf
from tinyvgg import functional as F
from tinyvgg.cli import main
from tinyvgg.data.datasets import write_idx
from tinyvgg.io.checkpoint import load_checkpoint
from tinyvgg.nn import Linear, Sequential
from tinyvgg.train import distributed
from tinyvgg.train.distributed import (GradientBuckets, RanksDisagree, check_same_run,
                                       gpu_for_rank, launched_ranks, nccl_communicator,
                                       plan_buckets)

ROOT = Path(tv.__file__).resolve().parent.parent


# --- the pieces, in one process ------------------------------------------------------

def test_buckets_are_consecutive_tensors_of_one_dtype_closed_at_the_size():
    f32, f64 = np.float32, np.float64
    assert plan_buckets([10, 10, 10, 30, 5], [f32] * 5, 80) == [[0, 1], [2, 3], [4]]
    assert plan_buckets([100, 1], [f32, f32], 80) == [[0], [1]]  # a big one alone
    assert plan_buckets([1, 1, 1], [f32, f64, f64], 80) == [[0], [1, 2]]
    assert plan_buckets([], [], 80) == []


class RecordingGroup:
    """Stands for 3 ranks holding the same gradients: a sum is 3 times the values. Notes
    when each sum starts, and how far backward had gone then."""

    def __init__(self):
        self.started, self.hooks_run = [], 0

    def start_sum(self, buffer):
        self.started.append((buffer.size, self.hooks_run))
        buffer *= 3
        return self

    def Wait(self):
        pass

    def progress(self, requests):
        pass


def test_buckets_start_during_backward_and_hold_the_sums_after_finish():
    """Three linear layers of 6x6 weights and biases, buckets of 200 bytes (float64): the
    last layer's weight and bias fill the first bucket, whose sum starts before backward
    reaches the first layer; after finish every .grad is 3 times its own value."""
    tv.manual_seed(0)
    model = Sequential(Linear(6, 6, dtype=np.float64), Linear(6, 6, dtype=np.float64),
                       Linear(6, 6, dtype=np.float64))
    x = tv.tensor(np.random.default_rng(1).standard_normal((4, 6)))
    model(x).sum().backward()
    expected = [3 * p.grad for p in model.parameters()]
    for overlap in (True, False):
        model.zero_grad()
        group = RecordingGroup()
        buckets = GradientBuckets(model.parameters(), group, bucket_mb=200 / 2**20,
                                  overlap=overlap)
        counting = [p.register_grad_hook(lambda p: setattr(
            group, "hooks_run", group.hooks_run + 1)) for p in model.parameters()]
        buckets.begin()
        model(x).sum().backward()
        buckets.finish()
        assert [size for size, _ in group.started] == [42, 42, 42]
        when = [hooks for _, hooks in group.started]
        assert when[0] < 6 if overlap else when == [6, 6, 6]
        for p, want in zip(model.parameters(), expected):
            np.testing.assert_array_equal(p.grad, want)
        buckets.remove()
        for handle in counting:
            handle.remove()


def test_a_parameter_backward_never_reaches_is_summed_as_zeros():
    used, unused = Linear(3, 2, dtype=np.float64), Linear(3, 2, dtype=np.float64)
    model = Sequential(used, unused)
    buckets = GradientBuckets(model.parameters(), RecordingGroup())
    buckets.begin()
    used(tv.tensor(np.ones((2, 3)))).sum().backward()
    buckets.finish()
    np.testing.assert_array_equal(unused.weight.grad, np.zeros((2, 3)))
    np.testing.assert_array_equal(used.bias.grad, np.full(2, 6.0))


def test_rank_r_uses_gpu_r_mod_the_gpus_and_more_ranks_than_gpus_are_refused():
    assert [gpu_for_rank(r, 4, 4) for r in range(4)] == [0, 1, 2, 3]
    assert [gpu_for_rank(r, 2, 8) for r in range(2)] == [0, 1]
    assert gpu_for_rank(0, 1, 1) == 0
    with pytest.raises(ValueError, match="3 ranks on one machine with 2 GPUs: NCCL needs "
                                         "one GPU per rank"):
        gpu_for_rank(2, 3, 2)
    with pytest.raises(ValueError, match="needs a GPU on every machine; this one has none"):
        gpu_for_rank(0, 1, 0)


class FakeComm:
    """Rank ``rank`` of ``size``; ``bcast`` hands out what rank 0 gave it."""
    shared = {}

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def bcast(self, value, root=0):
        if self.rank == root:
            FakeComm.shared["value"] = value
        return FakeComm.shared["value"]


class FakeNccl:
    def __init__(self):
        self.ids_made, self.joined = 0, []

    def get_unique_id(self):
        self.ids_made += 1
        return ("id", self.ids_made)

    def NcclCommunicator(self, size, unique_id, rank):
        self.joined.append((size, unique_id, rank))
        return (size, unique_id, rank)


def test_rank_0_makes_the_nccl_id_and_every_rank_joins_with_it():
    nccl = FakeNccl()
    made = [nccl_communicator(FakeComm(rank, 3), nccl) for rank in range(3)]
    assert nccl.ids_made == 1
    assert made == [(3, ("id", 1), 0), (3, ("id", 1), 1), (3, ("id", 1), 2)]


@pytest.mark.gpu
@pytest.mark.real_gpu
def test_nccl_on_one_gpu_sums_the_buckets_and_the_batch_norm_statistics():
    """A single-rank NCCL communicator (valid, and all one GPU allows): the buckets' sums
    on the side stream and synchronised batch norm's on the same stream leave one rank's
    values as they are, so the gradients and outputs are those without any sum."""
    nccl = pytest.importorskip("cupy.cuda.nccl")
    comm = FakeComm(0, 1)
    group = distributed.Group(comm)
    group.device, group.gpu, group.nccl = "cuda", 0, nccl_communicator(comm, nccl)
    tv.manual_seed(0)
    model = Sequential(Linear(6, 6), Linear(6, 3)).to("cuda")
    x = tv.tensor(np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32),
                  device="cuda")
    model(x).sum().backward()
    expected = [p.grad.get() for p in model.parameters()]
    model.zero_grad()
    buckets = GradientBuckets(model.parameters(), group, bucket_mb=100 / 2**20)
    assert len(buckets.buckets) > 1
    buckets.begin()
    model(x).sum().backward()
    buckets.finish()
    for p, want in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad.get(), want, rtol=1e-6)
    images = np.random.default_rng(2).standard_normal((4, 3, 5, 5))
    gamma, beta = (tv.tensor(np.full(3, v), device="cuda") for v in (1.5, 0.5))
    outputs = []
    for reduce in (None, group.allreduce_sum):
        xs = tv.tensor(images, requires_grad=True, device="cuda")
        y = F.batch_norm2d(xs, weight=gamma, bias=beta, reduce=reduce)
        (y * y * y).sum().backward()
        outputs.append((y.numpy(), xs.grad.get()))
    np.testing.assert_allclose(outputs[1][0], outputs[0][0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outputs[1][1], outputs[0][1], rtol=1e-10, atol=1e-10)


def test_the_launcher_s_rank_count_is_read_without_mpi():
    assert launched_ranks({}) == 1
    assert launched_ranks({"PMI_SIZE": "4"}) == 4
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "2"}) == 2


def test_several_ranks_without_mpi4py_say_which_extra_to_install(monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    with pytest.raises(ImportError, match=r'needs mpi4py .* the mpi extra installs: '
                                          r'python3 -m pip install -e "\.\[mpi\]"'):
        distributed.world()
    with pytest.raises(SystemExit) as stop:
        main(["train", "--epochs", "1"])
    assert stop.value.code == 2
    assert 'tinyvgg train: training on several ranks (mpiexec -n N tinyvgg train) needs ' \
           'mpi4py' in capsys.readouterr().err


def test_ranks_started_differently_are_refused_with_the_difference_named():
    class Gathered:
        def __init__(self, everyone):
            self.everyone = everyone

        def allgather(self, value):
            return self.everyone
    same = {"--seed": 3, "--model": "vgg11"}
    check_same_run(Gathered([same, dict(same)]), same)
    with pytest.raises(RanksDisagree, match="rank 2 has --seed 4, rank 0 has --seed 3"):
        check_same_run(Gathered([same, same, {**same, "--seed": 4}]), same)


def test_a_global_batch_smaller_than_the_ranks_is_refused():
    distributed.check_batch_size(2, 2)
    with pytest.raises(ValueError, match=r"--batch-size is the global batch, split over the "
                                         r"ranks: 3 image\(s\) cannot be shared by 4 ranks"):
        distributed.check_batch_size(3, 4)


class ThreadSum:
    """Sums over ``parts`` threads standing for ranks (the ``reduce`` of batch norm); a
    thread left waiting more than 60 s breaks the barrier instead of hanging."""

    def __init__(self, parts):
        self.barrier, self.slots = threading.Barrier(parts, timeout=60), [None] * parts

    def of(self, part):
        def reduce(array):
            self.slots[part] = array.copy()
            self.barrier.wait()
            total = sum(self.slots[1:], self.slots[0].copy())
            self.barrier.wait()
            return total
        return reduce


@pytest.mark.parametrize("cuts", [(0, 2, 7), (0, 1, 3, 7)])
def test_synchronised_batch_norm_on_parts_is_batch_norm_on_the_whole_batch(cuts):
    """Each part's output and input gradient are its rows of the whole batch's, its
    running statistics are the whole batch's, and its parameter gradients sum to the
    whole batch's (float64, to 1e-12)."""
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((7, 3, 4, 5)), rng.standard_normal((7, 3, 4, 5))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)

    def run(rows, reduce=None):
        xs, gs, bs = leaf(x[rows]), leaf(gamma), leaf(beta)
        stats = (np.zeros(3), np.ones(3))
        y = F.batch_norm2d(xs, *stats, gs, bs, reduce=reduce)
        (y * tv.tensor(g[rows])).sum().backward()
        return y.numpy(), xs.grad, gs.grad, bs.grad, stats
    whole = run(slice(None))
    parts, summed = {}, ThreadSum(len(cuts) - 1)

    def part(k):
        parts[k] = run(slice(cuts[k], cuts[k + 1]), summed.of(k))
    threads = [threading.Thread(target=part, args=(k,)) for k in range(len(cuts) - 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(parts) == list(range(len(cuts) - 1))  # every part finished
    close = dict(rtol=1e-12, atol=1e-12)
    for index in (0, 1):  # output and input gradient: rows of the whole batch's
        np.testing.assert_allclose(np.concatenate([parts[k][index] for k in sorted(parts)]),
                                   whole[index], **close)
    for index in (2, 3):  # gamma's and beta's gradients: the parts' sum to the whole's
        np.testing.assert_allclose(sum(parts[k][index] for k in parts), whole[index], **close)
    for k in parts:
        np.testing.assert_allclose(parts[k][4], whole[4], **close)


# --- mpiexec -n 2 ----------------------------------------------------------------------

def mpiexec():
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip('mpi4py is missing: python3 -m pip install -e ".[mpi]"')
    found = Path(sys.executable).with_name("mpiexec")
    found = str(found) if found.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (the mpi extra's mpich wheel brings one)")
    return found


#: one thread per rank (BLAS and tinyvgg's own), the source tree first on the path
def rank_environment():
    path = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TINYVGG_CPU_THREADS": "1"}


def run_command(command, timeout=120):
    """(exit status, stdout, stderr, seconds) of ``command``, its whole process group
    killed, and the test failed, if it runs past ``timeout`` seconds."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=rank_environment(), start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{' '.join(command[:4])} ... hung for {timeout} s:\n{out}\n{err}")
    return process.returncode, out, err, time.perf_counter() - began


def on_ranks(ranks, *args, timeout=120):
    return run_command([mpiexec(), "-n", str(ranks), sys.executable, "-m", "tinyvgg",
                        "train", *args], timeout)


def alone(*args, timeout=120):
    return run_command([sys.executable, "-m", "tinyvgg", "train", *args], timeout)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """104 training and 24 test 28x28 digits (random noise and a bar whose length is
    the class)."""
    folder = tmp_path_factory.mktemp("digits")
    for split, n, seed in (("train", 104 + 16, 1), ("t10k", 24, 2)):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[12:16, 4:6 + 2 * int(label)] = 230
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def run_flags(digits, out, *more):
    """A narrow VGG-11 with batch norm and dropout 0.5, float64, crops; 104 training
    images in global batches of 16: 6 of 16 and one of 8 per epoch."""
    return ["--data-dir", str(digits), "--width", "0.0625", "--val-size", "16",
            "--batch-size", "16", "--lr", "0.05", "--schedule", "step", "--step-size", "1",
            "--dtype", "float64", "--prefetch", "0", "--seed", "5", "--no-progress",
            "--out", str(out), *more]


def assert_states_close(a, b, rtol, atol):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)


def checkpoint(folder):
    return load_checkpoint(Path(folder) / "checkpoint.npz")


def test_two_ranks_with_sync_bn_and_dropout_train_the_model_one_process_trains(digits,
                                                                             tmp_path):
    """2 ranks, 8 images each per step, with --sync-bn and dropout 0.5, against one process
    with batches of 16: after 2 epochs (14 steps, each epoch ending on a batch of 8) the
    weights, batch-norm statistics and SGD velocities agree to rtol 1e-9, atol 1e-12
    (float64; the differences are the rounding of sums taken in another order, about
    1e-13), and so do the losses. Gradients summed during backward in buckets of 4 KB and
    after it (--no-overlap) give the same bits. Only rank 0 prints and writes."""
    code, out, err, _ = alone(*run_flags(digits, tmp_path / "one", "--epochs", "2"))
    assert code == 0, err
    code, out, err, _ = on_ranks(2, *run_flags(digits, tmp_path / "two", "--epochs", "2",
                                               "--sync-bn", "--bucket-mb", "0.004"))
    assert code == 0, err
    assert out.count("training on 2 ranks (rank 0 on ") == 1
    assert "batch norm over the global batch (--sync-bn)" in out
    buckets = re.search(r"gradients summed in (\d+) buckets of up to 0.004 MB, during "
                        r"backward", out)
    assert buckets and int(buckets.group(1)) > 2
    assert out.count("test accuracy") == 1
    code, _, err, _ = on_ranks(2, *run_flags(digits, tmp_path / "later", "--epochs", "2",
                                             "--sync-bn", "--no-overlap"))
    assert code == 0, err
    one, two, later = (checkpoint(tmp_path / name) for name in ("one", "two", "later"))
    assert_states_close(one.model, two.model, rtol=1e-9, atol=1e-12)
    assert_states_close(one.optimizer, two.optimizer, rtol=1e-9, atol=1e-12)
    for row_one, row_two in zip(one.meta["history"], two.meta["history"]):
        assert row_two["train_loss"] == pytest.approx(row_one["train_loss"], rel=1e-9)
    assert two.meta["ranks"] == 2
    for key in two.model:
        np.testing.assert_array_equal(two.model[key], later.model[key], err_msg=key)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())


@pytest.mark.parametrize("flags", [("--epochs", "1", "--recalibrate-bn"),
                                   ("--epochs", "2", "--swa-epochs", "1", "--swa-lr", "0.01")])
def test_batch_norm_recalibrated_on_two_ranks_with_sync_bn_matches_one_process(digits,
                                                                               tmp_path, flags):
    """Each rank averages the statistics of its part of the unaugmented training images;
    with --sync-bn every batch's statistics are the global batch's, so the result is the
    one process's, and every rank holds rank 0's. Averaged weights (--swa-epochs) are the
    same on every rank, as every step is."""
    code, out, err, _ = alone(*run_flags(digits, tmp_path / "one", *flags))
    assert code == 0, err
    code, out, err, _ = on_ranks(2, *run_flags(digits, tmp_path / "two", *flags, "--sync-bn"))
    assert code == 0, err
    assert out.count("batch-norm statistics recalibrated: averaged over 1 batch of") == 1
    one, two = checkpoint(tmp_path / "one"), checkpoint(tmp_path / "two")
    assert_states_close(one.model, two.model, rtol=1e-9, atol=1e-12)
    assert one.meta["test"]["accuracy"] == two.meta["test"]["accuracy"]
    assert one.meta["test"]["loss"] == pytest.approx(two.meta["test"]["loss"], rel=1e-9)


def test_a_run_resumed_on_two_ranks_continues_the_one_process_run(digits, tmp_path):
    """One epoch on one process, the second on 2 ranks with --sync-bn: the weights after
    it are the 2-epoch run of one process's (rtol 1e-9, atol 1e-12, float64)."""
    flags = run_flags(digits, tmp_path / "whole", "--epochs", "2", "--sync-bn")
    code, _, err, _ = alone(*flags)
    assert code == 0, err
    code, _, err, _ = alone(*run_flags(digits, tmp_path / "split", "--epochs", "1",
                                       "--sync-bn"))
    assert code == 0, err
    code, out, err, _ = on_ranks(2, "--resume", str(tmp_path / "split" / "checkpoint.npz"),
                                 "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert "the run was trained on 1 rank(s) until now" in out
    whole, split = checkpoint(tmp_path / "whole"), checkpoint(tmp_path / "split")
    assert split.meta["epoch"] == 2 and split.meta["ranks"] == 2
    assert_states_close(whole.model, split.model, rtol=1e-9, atol=1e-12)


FAULTY = """
import os, sys
from tinyvgg import optim
from tinyvgg.cli import main

if os.environ["PMI_RANK"] == "1":
    steps, step = [0], optim.SGD.step

    def failing_step(self):
        steps[0] += 1
        if steps[0] == 3:
            raise RuntimeError("the disk of rank 1 caught fire")
        step(self)
    optim.SGD.step = failing_step
sys.exit(main(["train"] + sys.argv[1:]))
"""


def test_an_error_on_one_rank_ends_every_rank_naming_the_rank_and_the_error(digits,
                                                                           tmp_path):
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    code, out, err, seconds = run_command(
        [mpiexec(), "-n", "2", sys.executable, str(script),
         *run_flags(digits, tmp_path / "run", "--epochs", "3")], timeout=60)
    assert code != 0
    assert "tinyvgg train: rank 1 of 2: RuntimeError: the disk of rank 1 caught fire" in err
    assert seconds < 30  # the other rank would otherwise wait for ever in its next sum


def test_ranks_started_with_different_seeds_are_refused_naming_the_difference(digits,
                                                                              tmp_path):
    first = run_flags(digits, tmp_path / "run", "--epochs", "1")
    second = ["6" if flag == "--seed" else value
              for flag, value in zip([None] + first, first)]
    code, _, err, _ = run_command(
        [mpiexec(), "-n", "1", sys.executable, "-m", "tinyvgg", "train", *first, ":",
         "-n", "1", sys.executable, "-m", "tinyvgg", "train", *second], timeout=60)
    assert code == 2
    assert ("tinyvgg train: rank 0 of 2: the ranks were started with different settings: "
            "rank 1 has --seed 6, rank 0 has --seed 5") in err
    assert not (tmp_path / "run").exists()  # refused before any file is written
