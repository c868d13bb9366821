"""tinyvgg.workers: how work is cut into parts, the parts running at once, BLAS held to
one thread inside ops, and every CPU op giving the same results on one thread as on
several (and the same results on every run)."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from helpers import assert_close, in_layout, layouts_4d, leaf, randn, seeds, small_integers
from tinyvgg import functional as F
from tinyvgg import workers
from tinyvgg.ops import conv_cpu, rows
from tinyvgg.ops.conv_cpu import CONV3X3_CPU, using_conv3x3_cpu
from tinyvgg.tensor import Function


def tiny_parts():
    """Parts as small as one item, inside the block: the tests' small arrays are split too."""
    return mock.patch.multiple(workers, MIN_PART_VALUES=1, MIN_PART_FLOPS=1)


# --- parts --------------------------------------------------------------------------

@given(n=st.integers(0, 300), count=st.integers(1, 9), min_items=st.integers(1, 40))
def test_parts_are_consecutive_nearly_equal_and_cover_the_range(n, count, min_items):
    with workers.using_cpu_threads(count):
        slices = workers.parts(n, min_items)
    assert 1 <= len(slices) <= count
    assert slices[0].start == 0 and slices[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1
    if len(slices) > 1:
        assert min(sizes) >= min_items


def test_the_parts_run_at_the_same_time_on_different_threads():
    # a barrier that all three parts must reach before any goes on: one thread could not
    barrier = threading.Barrier(3, timeout=10)
    seen = {}

    def part(s):
        barrier.wait()
        seen[s.start] = threading.get_ident()

    with workers.using_cpu_threads(3):
        workers.run(part, 3)
    assert sorted(seen) == [0, 1, 2] and len(set(seen.values())) == 3
    assert seen[0] == threading.get_ident()   # the first part runs on the calling thread


def test_an_error_in_a_part_is_raised_once_every_part_has_ended():
    finished = []

    def part(s):
        if s.start == 1:
            raise ValueError("part 1 failed")
        time.sleep(0.05)
        finished.append(s.start)

    with workers.using_cpu_threads(3), pytest.raises(ValueError, match="part 1 failed"):
        workers.run(part, 3)
    assert sorted(finished) == [0, 2]


def test_run_inside_a_part_runs_its_parts_on_that_thread():
    inner_threads = []

    def inner(s):
        inner_threads.append((threading.get_ident(), s.start))

    def outer(s):
        workers.run(inner, 4)

    done = threading.Event()

    def main():
        with workers.using_cpu_threads(2):
            workers.run(outer, 2)
        done.set()

    threading.Thread(target=main, daemon=True).start()
    assert done.wait(20), "a run inside a part did not finish: the pool deadlocked"
    assert len(inner_threads) == 4   # two outer parts, each run of 4 items cut in two
    by_thread = {}
    for ident, start in inner_threads:
        by_thread.setdefault(ident, []).append(start)
    assert sorted(by_thread.values()) == [[0, 2], [0, 2]]   # each outer part did its own


def test_one_thread_runs_every_part_on_the_calling_thread():
    threads = set()
    with workers.using_cpu_threads(1):
        workers.run(lambda s: threads.add(threading.get_ident()), 10)
    assert threads == {threading.get_ident()}


# --- the number of threads ------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -2, 1.5, "two", [2]])
def test_set_cpu_threads_rejects_anything_but_a_positive_whole_number(bad):
    before = workers.cpu_threads()
    with pytest.raises(ValueError, match="set_cpu_threads: the number of CPU threads"):
        workers.set_cpu_threads(bad)
    assert workers.cpu_threads() == before


def test_using_cpu_threads_restores_the_count_even_after_an_error():
    before = workers.cpu_threads()
    with pytest.raises(RuntimeError), workers.using_cpu_threads(before + 3):
        assert workers.cpu_threads() == before + 3
        raise RuntimeError
    assert workers.cpu_threads() == before


@pytest.mark.parametrize("value, expected", [("3", "3"), ("0", "at least 1"),
                                             ("many", "a whole number")])
def test_the_environment_variable_sets_the_count_at_import(value, expected):
    result = subprocess.run(
        [sys.executable, "-c", "from tinyvgg import workers; print(workers.cpu_threads())"],
        env={**os.environ, workers.CPU_THREADS_ENV: value}, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert expected in output
    if expected != "3":
        assert result.returncode != 0 and workers.CPU_THREADS_ENV in output


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_threads_of_its_own():
    with workers.using_cpu_threads(2):
        workers.run(lambda s: None, 2)   # the parent's pool exists before the fork
        context = multiprocessing.get_context("fork")
        with context.Pool(1) as pool:
            threads = pool.apply(_thread_count_of_a_run, ())
    assert threads == 2


def _thread_count_of_a_run():
    seen = set()
    barrier = threading.Barrier(2, timeout=10)

    def part(s):
        barrier.wait()
        seen.add(threading.get_ident())

    workers.run(part, 2)
    return len(seen)


# --- BLAS held to one thread -------------------------------------------------------------

def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


class _RecordBlasThreads(Function):
    name = "record_blas_threads"
    seen: list = []

    @staticmethod
    def forward(ctx, x):
        _RecordBlasThreads.seen.append(("forward", _blas_threads()))
        return x * 2

    @staticmethod
    def backward(ctx, g):
        _RecordBlasThreads.seen.append(("backward", _blas_threads()))
        return (g * 2,)


def test_cpu_ops_run_with_blas_on_one_thread_and_leave_its_setting_as_it_was():
    before = _blas_threads()
    if not before:
        pytest.skip("threadpoolctl finds no BLAS library to control here")
    _RecordBlasThreads.seen = []
    x = leaf(np.ones(3))
    _RecordBlasThreads.apply(x).backward(np.ones(3))
    assert _RecordBlasThreads.seen == [("forward", [1] * len(before)),
                                       ("backward", [1] * len(before))]
    assert _blas_threads() == before
    workers.run(lambda s: None, 2)
    assert _blas_threads() == before


def test_ops_on_other_threads_leave_blas_as_the_main_thread_set_it():
    before = _blas_threads()
    if not before:
        pytest.skip("threadpoolctl finds no BLAS library to control here")
    seen = {}

    def op_on_a_thread():
        F.relu(leaf(np.ones(4))).backward(np.ones(4))
        seen["inside the main thread's block"] = _blas_threads()

    with workers.serial_blas():
        thread = threading.Thread(target=op_on_a_thread)
        thread.start()
        thread.join(20)
    assert seen["inside the main thread's block"] == [1] * len(before)
    assert _blas_threads() == before
    thread = threading.Thread(target=op_on_a_thread)   # an op on a thread, nothing around it
    thread.start()
    thread.join(20)
    assert _blas_threads() == before


# --- matmul ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape_a, shape_b", [((37, 13), (13, 5)),    # split by rows
                                              ((3, 13), (13, 41)),    # split by columns
                                              ((1, 1), (1, 1)), ((0, 4), (4, 3))])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_matmul_is_the_matrix_product(shape_a, shape_b, count):
    a, b = randn(0, shape_a), randn(1, shape_b).T.copy().T   # b in Fortran order
    with tiny_parts(), workers.using_cpu_threads(count):
        assert_close(workers.matmul(a, b), a @ b)
        out = np.full((shape_a[0], shape_b[1]), np.nan)
        assert workers.matmul(a, b, out=out) is out
    assert_close(out, a @ b)


# --- the ops give the same results on any number of threads ------------------------------

def _run_op(count, op, inputs, g):
    """Forward and every input gradient of ``op`` on ``count`` threads, in parts as small
    as one item."""
    with tiny_parts(), workers.using_cpu_threads(count):
        tensors = [leaf(a) for a in inputs]
        y = op(*tensors)
        y.backward(g(y.shape) if callable(g) else g)
    return [y.numpy()] + [t.grad for t in tensors]


def _same_on_any_thread_count(op, inputs, g, exact: bool):
    one = _run_op(1, op, inputs, g)
    for count in (2, 3):
        many = _run_op(count, op, inputs, g)
        again = _run_op(count, op, inputs, g)
        for a, b, c in zip(one, many, again):
            np.testing.assert_array_equal(b, c)       # the same on every run
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                assert_close(b, a)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7),
       layout=layouts_4d, seed=seeds)
def test_relu_is_the_same_on_any_number_of_threads(n, c, h, w, layout, seed):
    x = in_layout(small_integers(seed, (n, c, h, w), np.float32) + 0.5, layout)
    g = randn(seed + 1, (n, c, h, w), np.float32)
    _same_on_any_thread_count(F.relu, [x], g, exact=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 4), h=st.integers(2, 7), w=st.integers(2, 7),
       layout=layouts_4d, seed=seeds)
def test_maxpool_is_the_same_on_any_number_of_threads(n, c, h, w, layout, seed):
    x = in_layout(small_integers(seed, (n, c, h, w), np.float32), layout)   # many ties
    g = randn(seed + 1, (n, c, h // 2, w // 2), np.float32)
    _same_on_any_thread_count(F.maxpool2x2, [x], g, exact=True)


def test_maxpool_with_nans_in_some_parts_only():
    x = randn(0, (4, 2, 4, 4), np.float32)
    x[2, 1, 0, 1] = np.nan   # only the third image's part sees a NaN
    with workers.using_cpu_threads(4):
        y = F.maxpool2x2(leaf(x)).numpy()
    with workers.using_cpu_threads(1):
        expected = F.maxpool2x2(leaf(x)).numpy()
    np.testing.assert_array_equal(y, expected)
    assert np.isnan(y[2, 1, 0, 0]) and np.isnan(y).sum() == 1


@pytest.mark.parametrize("n", [1, 3, 5])
def test_linear_is_the_same_on_any_number_of_threads(n):
    x, w, b = randn(0, (n, 7), np.float32), randn(1, (5, 7), np.float32), randn(2, (5,),
                                                                               np.float32)
    _same_on_any_thread_count(F.linear, [x, w, b], randn(3, (n, 5), np.float32), exact=False)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])   # tiled rows, or not
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (4, 16, 4, 4), (3, 2, 6, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_is_the_same_on_any_number_of_threads(training, layout, shape, affine):
    C = shape[1]
    x = in_layout(randn(0, shape, np.float32), layout)
    running_mean, running_var = randn(4, (C,), np.float32), 1 + randn(5, (C,), np.float32) ** 2

    def op(x_, *affine_params):
        return F.batch_norm2d(x_, running_mean.copy(), running_var.copy(), *affine_params,
                              training=training)

    params = [randn(1, (C,), np.float32), randn(2, (C,), np.float32)] if affine else []
    _same_on_any_thread_count(op, [x] + params, randn(3, shape, np.float32), exact=True)


@pytest.mark.parametrize("name", [n for n in CONV3X3_CPU if n != "naive"])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (3, 4, 6, 6), (5, 2, 9, 4)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_conv3x3_rungs_are_the_same_on_any_number_of_threads(monkeypatch, name, shape,
                                                              layout):
    # small blocks, so that the block loops inside each part run more than once
    monkeypatch.setattr(rows, "IM2COL_BLOCK_BYTES", 1)
    monkeypatch.setattr(conv_cpu, "CACHE_BLOCK_BYTES", 1)
    monkeypatch.setattr(conv_cpu, "MIN_BLOCK_ROWS", 8)
    N, C, H, W = shape
    x = in_layout(randn(0, shape, np.float32), layout)
    w, b = randn(1, (4, C, 3, 3), np.float32), randn(2, (4,), np.float32)
    with using_conv3x3_cpu(name):
        _same_on_any_thread_count(F.conv3x3, [x, w, b], randn(3, (N, 4, H, W), np.float32),
                                  exact=False)
