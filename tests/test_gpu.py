"""The GPU path: our CUDA kernels against the CPU path, gradient checks on the GPU in float64,
identical dropout masks on both devices, and a VGG-11 training step on both devices.

Tolerances: float64 results agree to 1e-12 relative (the kernels sum in other orders than
NumPy/BLAS); float32 to 1e-5 relative, with an absolute floor scaled by the largest value,
since a convolution sums hundreds of products and cancellation makes small outputs noisy."""
import numpy as np
import pytest

import tinyvgg as tv
from helpers import assert_close, randn
from tinyvgg import functional as F
from tinyvgg.models import vgg
from tinyvgg.selfcheck import op_cases

pytestmark = pytest.mark.gpu

CASE_NAMES = [name for name, _, _ in op_cases()]
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def cases_on_both(index, dtype=np.float64):
    """The same op case with inputs on the CPU and on the GPU, in ``dtype``."""
    name, fn, cpu = op_cases(device="cpu")[index]
    _, _, gpu = op_cases(device="cuda")[index]
    if dtype != np.float64:
        cpu = [tv.tensor(t.numpy().astype(dtype), requires_grad=True) for t in cpu]
        gpu = [tv.tensor(t.numpy().astype(dtype), requires_grad=True, device="cuda") for t in cpu]
    return name, fn, cpu, gpu


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", range(len(CASE_NAMES)), ids=CASE_NAMES)
def test_gpu_forward_and_backward_equal_the_cpu_path(index, dtype):
    name, fn, cpu, gpu = cases_on_both(index, dtype)
    y_cpu, y_gpu = fn(*cpu), fn(*gpu)
    assert y_gpu.device == "cuda" and y_gpu.dtype == y_cpu.dtype == dtype
    assert_close(y_gpu.numpy(), y_cpu.numpy(), rtol=RTOL[np.dtype(dtype)])
    g = randn(7, y_cpu.shape, dtype)
    y_cpu.backward(g)
    y_gpu.backward(g)
    for i, (a, b) in enumerate(zip(cpu, gpu)):
        assert (a.grad is None) == (b.grad is None), f"{name} input {i}"
        if a.grad is not None:
            assert b.device == "cuda" and tv.backend.device_of(b.grad) == "cuda"
            assert_close(tv.backend.to_numpy(b.grad), a.grad, rtol=RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("index", range(len(CASE_NAMES)), ids=CASE_NAMES)
def test_gradcheck_on_the_gpu_in_float64(index):
    name, fn, inputs = op_cases(device="cuda")[index]
    assert all(t.device == "cuda" for t in inputs)
    assert tv.gradcheck(fn, inputs) is True


def test_dropout_masks_are_identical_on_both_devices():
    x = np.random.default_rng(0).standard_normal((3, 7, 33, 41)).astype(np.float32)
    for p, seed in [(0.5, 1234), (0.1, 2**40 + 7), (0.9, 0)]:
        y_cpu = F.dropout(tv.tensor(x), p=p, seed=seed).numpy()
        y_gpu = F.dropout(tv.tensor(x, device="cuda"), p=p, seed=seed).numpy()
        np.testing.assert_array_equal(y_gpu == 0, y_cpu == 0)
        np.testing.assert_array_equal(y_gpu, y_cpu)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_vgg11_training_step_gives_the_same_loss_and_gradients_on_both_devices(dtype, rtol):
    tv.manual_seed(0)
    cpu_model = vgg("vgg11_bn", width=0.25, head="compact", num_classes=10, dtype=dtype)
    gpu_model = vgg("vgg11_bn", width=0.25, head="compact", num_classes=10, dtype=dtype)
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to("cuda")
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 3, 32, 32)).astype(dtype)
    labels = rng.integers(0, 10, 4)
    losses = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        tv.manual_seed(5)  # the same dropout seeds, hence the same masks
        loss = F.cross_entropy(model(tv.tensor(images, device=device)), labels)
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=rtol)
    gpu_params = dict(gpu_model.named_parameters())
    for key, p in cpu_model.named_parameters():
        ours = tv.backend.to_numpy(gpu_params[key].grad)
        error = np.linalg.norm(ours - p.grad) / max(np.linalg.norm(p.grad), 1e-30)
        assert error < rtol or np.linalg.norm(p.grad) < 1e3 * np.finfo(dtype).eps, key
    gpu_state = gpu_model.state_dict()
    for key, value in cpu_model.state_dict().items():  # running statistics moved alike
        assert_close(gpu_state[key], value, rtol=rtol)


def test_naive_and_tiled_conv3x3_kernels_agree():
    from tinyvgg.ops.conv import conv3x3_kernel, use_conv3x3_kernel
    rng = np.random.default_rng(2)
    x = tv.tensor(rng.standard_normal((2, 5, 19, 23)), device="cuda")
    w = tv.tensor(rng.standard_normal((7, 5, 3, 3)), device="cuda")
    b = tv.tensor(rng.standard_normal(7), device="cuda")
    before = conv3x3_kernel()
    try:
        results = {}
        for name in ("naive", "tiled"):
            use_conv3x3_kernel(name)
            results[name] = F.conv3x3(x, w, b).numpy()
    finally:
        use_conv3x3_kernel(before)
    assert_close(results["tiled"], results["naive"], rtol=1e-12)
    expected = F.conv3x3(tv.tensor(x.numpy()), tv.tensor(w.numpy()), tv.tensor(b.numpy()))
    assert_close(results["tiled"], expected.numpy(), rtol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 64, 33, 17), (2, 130, 7, 9)])
def test_odd_and_large_channel_shapes(shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((70, shape[1], 3, 3)).astype(np.float32)
    ours = F.conv3x3(tv.tensor(x, device="cuda"), tv.tensor(w, device="cuda")).numpy()
    assert_close(ours, F.conv3x3(tv.tensor(x), tv.tensor(w)).numpy(), rtol=1e-5)


def test_a_kernel_compile_error_names_the_file_and_line(tmp_path, monkeypatch):
    from tinyvgg import cuda
    (tmp_path / "broken.cu").write_text(
        "// each thread fails to compile\n\ntemplate <typename T>\n"
        "__global__ void broken(T* y, long long n) {\n    y[0] = undefined_name;\n}\n")
    monkeypatch.setattr(cuda, "source_dir", lambda: tmp_path)
    with pytest.raises(cuda.KernelCompileError, match=r"broken\.cu:5.*undefined_name"):
        cuda.function("broken", "broken", np.float32)
