"""Devices: clear errors when a GPU cannot be had, refusing mixed devices, moving back and forth."""
import sys
import types

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg import backend, nn


def test_cuda_without_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes ``import cupy`` fail
    with pytest.raises(backend.DeviceUnavailableError,
                       match=r"CuPy is not installed.*pip install -e \"\.\[gpu\]\""):
        tv.tensor([1.0]).to("cuda")
    with pytest.raises(backend.DeviceUnavailableError, match="CuPy is not installed"):
        nn.Linear(2, 3).to("cuda")


def test_cuda_without_a_gpu_says_no_gpu_was_found(monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 0)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(backend.DeviceUnavailableError, match="no NVIDIA GPU was found"):
        tv.tensor([1.0], device="cuda")

    def broken_driver():
        raise RuntimeError("cudaErrorInsufficientDriver")
    runtime.getDeviceCount = broken_driver
    with pytest.raises(backend.DeviceUnavailableError, match="InsufficientDriver"):
        tv.tensor([1.0]).to("cuda")


def test_only_the_current_gpu_is_addressed():
    with pytest.raises(ValueError, match="unknown device 'cuda:1'.*CUDA_VISIBLE_DEVICES"):
        tv.tensor([1.0]).to("cuda:1")


@pytest.mark.gpu
def test_tensor_and_module_move_to_the_gpu_and_back():
    x = tv.tensor(np.arange(6.0).reshape(2, 3))
    on_gpu = x.to("cuda")
    assert on_gpu.device == "cuda" and x.device == "cpu"
    np.testing.assert_array_equal(on_gpu.numpy(), x.numpy())
    assert isinstance(on_gpu.numpy(), np.ndarray) and on_gpu.to("cuda") is on_gpu
    model = nn.Sequential(nn.Conv3x3(3, 4), nn.BatchNorm2d(4)).to("cuda")
    assert all(isinstance(a, np.ndarray) for a in model.state_dict().values())  # copies
    assert all(backend.device_of(p.data) == "cuda" for p in model.parameters())
    assert backend.device_of(model[1].running_mean) == "cuda"
    state = model.to("cpu").state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())


@pytest.mark.gpu
def test_ops_refuse_mixed_devices():
    x = tv.tensor(np.ones((1, 3, 4, 4), np.float32), device="cuda")
    conv = nn.Conv3x3(3, 2)
    with pytest.raises(ValueError, match="conv3x3: all inputs must be on the same device, "
                                         "got cpu and cuda"):
        conv(x)


@pytest.mark.gpu
def test_state_dict_loads_into_a_model_on_the_gpu():
    source = nn.Sequential(nn.Conv3x3(3, 4), nn.BatchNorm2d(4))
    target = nn.Sequential(nn.Conv3x3(3, 4), nn.BatchNorm2d(4)).to("cuda")
    target.load_state_dict(source.state_dict())
    for (key, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)
