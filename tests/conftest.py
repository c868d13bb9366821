"""Hypothesis settings and the ``gpu`` marker for the tinyvgg tests."""
import os

import pytest
from hypothesis import HealthCheck, settings

# Small, reproducible runs by default; TINYVGG_HYPOTHESIS_PROFILE=thorough draws many more.
settings.register_profile(
    "tinyvgg", deadline=None, max_examples=20, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", settings.get_profile("tinyvgg"), max_examples=300)
settings.load_profile(os.environ.get("TINYVGG_HYPOTHESIS_PROFILE", "tinyvgg"))


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU"
        return False


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not gpu_available() and os.environ.get(EMULATE_GPU_ENV) != "1":
        skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)


EMULATE_GPU_ENV = "TINYVGG_EMULATE_GPU"


@pytest.fixture(autouse=True)
def _emulated_gpu_for_gpu_tests(request, monkeypatch):
    """With TINYVGG_EMULATE_GPU=1 and no GPU, the gpu tests run on the host emulator."""
    if (os.environ.get(EMULATE_GPU_ENV) == "1" and "gpu" in request.keywords
            and not gpu_available()):
        if "tf32" in request.node.name or "real_gpu" in request.keywords:
            pytest.skip("needs a real GPU: TF32 tensor cores, or CuPy itself")
        import host_cuda
        host_cuda.emulated_device(monkeypatch)
    yield
