"""Hypothesis settings and the ``gpu`` marker for the tinyvgg tests: without a GPU,
the gpu tests run on the host emulator of tests/host_cuda when g++ is installed."""
import functools
import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# Small, reproducible runs by default; TINYVGG_HYPOTHESIS_PROFILE=thorough draws many more.
settings.register_profile(
    "tinyvgg", deadline=None, max_examples=20, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", settings.get_profile("tinyvgg"), max_examples=300)
settings.load_profile(os.environ.get("TINYVGG_HYPOTHESIS_PROFILE", "tinyvgg"))


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU"
        return False


EMULATE_GPU_ENV = "TINYVGG_EMULATE_GPU"


@functools.lru_cache(maxsize=None)
def emulate_gpu() -> bool:
    """Without a GPU, the gpu tests run on the host emulator of tests/host_cuda (the
    kernels compiled by g++, each CUDA thread a fiber), unless TINYVGG_EMULATE_GPU=0."""
    return (not gpu_available() and shutil.which("g++") is not None
            and os.environ.get(EMULATE_GPU_ENV, "1") != "0")


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not gpu_available() and not emulate_gpu():
        skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)


_emulated = []   # the gpu tests that ran on the host emulator


@pytest.fixture(autouse=True)
def _gpu_tests_on_the_host_emulator(request, monkeypatch):
    if "gpu" in request.keywords and emulate_gpu():
        real_gpu = request.node.get_closest_marker("real_gpu")
        if real_gpu is not None:
            pytest.skip("needs a real GPU: " + real_gpu.kwargs.get("reason", "it tests CuPy itself"))
        import host_cuda
        host_cuda.emulated_device(monkeypatch)
        _emulated.append(request.node.nodeid)
    yield


def pytest_terminal_summary(terminalreporter):
    if _emulated:
        terminalreporter.write_line(
            f"{len(_emulated)} gpu tests ran on the host emulator (tests/host_cuda), not on "
            f"a GPU; TINYVGG_EMULATE_GPU=0 skips them instead")
