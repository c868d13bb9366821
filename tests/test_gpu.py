"""The GPU path: our CUDA kernels against the CPU path, gradient checks on the GPU in float64,
identical dropout masks on both devices, and a VGG-11 training step on both devices; then
every step of the kernel ladders (conv3x3 forward and input gradient, conv3x3 weight
gradient, the matrix products of linear) on shapes that fill no tile evenly.

Tolerances: float64 results agree to 1e-12 relative (the kernels sum in other orders than
NumPy/BLAS); float32 to 1e-5 relative, with an absolute floor scaled by the largest value,
since a convolution sums hundreds of products and cancellation makes small outputs noisy.
The TF32 kernels round their inputs to 10 mantissa bits (relative error up to 2^-11 each),
so they are held to 5e-3 of the output's scale, against the CPU path in float32; the 3xTF32
kernels promise float32-level errors and are held to float32's tolerance."""
import itertools

import numpy as np
import pytest

import tinyvgg as tv
from helpers import (LADDER_SHAPES, RTOL, SPLIT_PIXELS_SHAPE, assert_close, conv_inputs,
                     kernel_rtol, randn, strict_kernels)
from tinyvgg import functional as F
from tinyvgg.models import vgg
from tinyvgg.ops import conv_cpu, conv_cuda as conv, linear, tensor_cores
from tinyvgg.tools.selfcheck import op_cases

pytestmark = pytest.mark.gpu

CASE_NAMES = [name for name, _, _ in op_cases()]


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
    from tinyvgg.ops.conv_cuda import conv3x3_kernel, use_conv3x3_kernel
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


@pytest.mark.real_gpu
def test_gpu_peak_bytes_in_use_sees_an_array_freed_inside_the_step():
    import cupy
    from tinyvgg.bench.step import gpu_peak_bytes_in_use
    before = cupy.get_default_memory_pool().used_bytes()

    def step():
        big = cupy.ones(2 ** 24, dtype=cupy.float32)     # 64 MiB, freed before the next
        del big
        small = cupy.ones(2 ** 22, dtype=cupy.float32)   # 16 MiB
        del small

    assert gpu_peak_bytes_in_use(step) == before + 2 ** 26


@pytest.mark.real_gpu
def test_a_kernel_compile_error_names_the_file_and_line(tmp_path, monkeypatch):
    from tinyvgg import cuda
    (tmp_path / "broken.cu").write_text(
        "// each thread fails to compile\n\ntemplate <typename T>\n"
        "__global__ void broken(T* y, long long n) {\n    y[0] = undefined_name;\n}\n")
    monkeypatch.setattr(cuda, "source_dir", lambda: tmp_path)
    with pytest.raises(cuda.KernelCompileError, match=r"broken\.cu:5.*undefined_name"):
        cuda.function("broken", "broken", np.float32)


# --- the kernel ladders ---------------------------------------------------------------

FP_FORWARD = strict_kernels(conv.CONV3X3_KERNELS)


def steps(kernels):
    """(kernel, dtype) pairs: float32 and float64, tensor-core kernels float32 only."""
    return [pytest.param(k, d, id=f"{k}-{np.dtype(d).name}")
            for k in kernels for d in (np.float32, np.float64)
            if not (tensor_cores.uses_tensor_cores(k) and d == np.float64)]


@pytest.fixture
def select():
    """select(use, current, name) picks a kernel for this test only."""
    chosen = []

    def choose(use, current, name):
        chosen.append((use, current()))
        use(name)
    yield choose
    for use, name in reversed(chosen):
        use(name)


def conv3x3_on(device, x, w, b, g):
    """y, dL/dx, dL/dw, dL/db of conv3x3 on ``device``, as NumPy arrays."""
    tensors = [tv.tensor(a, requires_grad=True, device=device) for a in (x, w, b)]
    y = F.conv3x3(*tensors)
    y.backward(g)
    return [y.numpy()] + [tv.backend.to_numpy(t.grad) for t in tensors]


@pytest.mark.parametrize("shape", LADDER_SHAPES.values(), ids=LADDER_SHAPES)
@pytest.mark.parametrize("kernel, dtype", steps(conv.CONV3X3_KERNELS))
def test_conv3x3_forward_ladder_equals_the_cpu_path(kernel, dtype, shape, select):
    """Each step's forward pass, and its input gradient (the same kernel, turned weights)."""
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, kernel)
    arrays = conv_inputs(shape, dtype, seed=4)
    ours, expected = conv3x3_on("cuda", *arrays), conv3x3_on("cpu", *arrays)
    rtol = kernel_rtol(kernel, dtype)
    for name, a, e in zip(("y", "dx", "dw", "db"), ours, expected):
        assert a.dtype == dtype, name
        assert_close(a, e, rtol=rtol if name in ("y", "dx") else RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("shape", list(LADDER_SHAPES.values()) + [SPLIT_PIXELS_SHAPE],
                         ids=list(LADDER_SHAPES) + ["split-3to8-40x40"])
@pytest.mark.parametrize("kernel, dtype", steps(conv.CONV3X3_WGRAD_KERNELS))
def test_conv3x3_weight_grad_ladder_equals_the_cpu_path_on_every_run(kernel, dtype, shape,
                                                                     select):
    """The implicit GEMM splits the 6400 pixels of the last shape among 25 blocks."""
    select(conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel, kernel)
    x, w, b, g = conv_inputs(shape, dtype, seed=5)
    _, _, expected, _ = conv3x3_on("cpu", x, w, b, g)
    x_gpu, g_gpu = tv.backend.move(x, "cuda"), tv.backend.move(g, "cuda")
    first = tv.backend.to_numpy(conv.conv3x3_weight_grad_cuda(x_gpu, g_gpu))
    again = tv.backend.to_numpy(conv.conv3x3_weight_grad_cuda(x_gpu, g_gpu))
    assert first.dtype == dtype
    assert_close(first, expected, rtol=kernel_rtol(kernel, dtype))
    np.testing.assert_array_equal(again, first)  # no atomics: the same bits every time


@pytest.mark.parametrize("weight_grad", strict_kernels(conv.CONV3X3_WGRAD_KERNELS))
@pytest.mark.parametrize("forward", FP_FORWARD)
def test_gradcheck_every_fp64_ladder_step(forward, weight_grad, select):
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, forward)
    select(conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel, weight_grad)
    rng = np.random.default_rng(6)
    inputs = [tv.tensor(rng.standard_normal(shape), requires_grad=True, device="cuda")
              for shape in ((2, 3, 5, 6), (4, 3, 3, 3), (4,))]
    assert tv.gradcheck(F.conv3x3, inputs) is True


@pytest.mark.parametrize("kernel", conv.CONV3X3_KERNELS)
def test_conv3x3_kernels_take_arrays_that_are_not_16_byte_aligned(kernel, select):
    """Views starting 4 bytes into their buffer: the vector loads must fall back to scalar
    ones (W and C_in are multiples of 4, so aligned arrays would take the vector path)."""
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, kernel)
    cupy = tv.backend.cupy_module()
    x, w, b, _ = conv_inputs((2, 8, 12, 8, 16), np.float32, seed=7)

    def shifted(a):
        view = cupy.empty(a.size + 1, a.dtype)[1:].reshape(a.shape)
        view[...] = cupy.asarray(a)
        return view
    ours = cupy.asnumpy(conv.conv3x3_cuda(shifted(x), shifted(w), shifted(b)))
    expected = F.conv3x3(tv.tensor(x), tv.tensor(w), tv.tensor(b)).numpy()
    assert_close(ours, expected, rtol=kernel_rtol(kernel, np.float32))


@pytest.mark.parametrize("kernel", [k for k in conv.CONV3X3_KERNELS
                                    if tensor_cores.uses_tensor_cores(k)])
def test_the_tensor_core_kernels_refuse_float64_on_the_gpu(kernel, select):
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, kernel)
    x = tv.tensor(np.ones((1, 2, 4, 4)), device="cuda")
    w = tv.tensor(np.ones((3, 2, 3, 3)), device="cuda")
    with pytest.raises(TypeError, match=r"tensor cores and takes float32 only, got float64"):
        F.conv3x3(x, w)


#: VGG-16's layers of distinct channel counts, at the size of its 28 x 28 stage
VGG16_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                  (256, 512), (512, 512)]


@pytest.mark.real_gpu(reason="it measures the tensor cores' rounding (tests/test_kernels_host.py "
                             "checks the same bound with the emulator's model of it)")
def test_3xtf32_errors_are_within_twice_the_strict_rungs_on_every_vgg16_layer(select):
    """Against float64 on fresh random inputs, each job of each layer and linear's
    products at the classifier's depths: 3xTF32 against the strict default rungs."""
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, conv.CONV3X3_DEFAULT_KERNEL)
    select(conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel,
           conv.CONV3X3_DEFAULT_WGRAD_KERNEL)
    select(linear.use_gemm_kernel, linear.gemm_kernel, linear.GEMM_DEFAULT_KERNEL)
    cupy = tv.backend.cupy_module()
    rng = np.random.default_rng()

    def error(result, exact):
        result = cupy.asnumpy(result).astype(np.float64)
        return float(np.linalg.norm(result - exact) / np.linalg.norm(exact))
    worst = []
    for c_in, c_out in VGG16_CHANNELS:
        x, w, b, g = conv_inputs((2, c_in, c_out, 28, 28), np.float32,
                                 seed=int(rng.integers(2**31)))
        exact = conv3x3_on("cpu", *(a.astype(np.float64) for a in (x, w, b, g)))
        x, w, b, g = (cupy.asarray(a) for a in (x, w, b, g))
        errors = {}
        for forward, weight_grad in ((conv.CONV3X3_DEFAULT_KERNEL,
                                      conv.CONV3X3_DEFAULT_WGRAD_KERNEL),
                                     ("3xtf32", "3xtf32"), ("3xtf32-nhwc", "3xtf32-nhwc")):
            conv.use_conv3x3_kernel(forward)
            errors[forward] = [error(conv.conv3x3_cuda(x, w, b), exact[0]),
                               error(conv.conv3x3_input_grad_cuda(g, w), exact[1])]
            if weight_grad:
                conv.use_conv3x3_wgrad_kernel(weight_grad)
                errors[forward].append(error(conv.conv3x3_weight_grad_cuda(x, g), exact[2]))
        conv.use_conv3x3_kernel(conv.CONV3X3_DEFAULT_KERNEL)
        conv.use_conv3x3_wgrad_kernel(conv.CONV3X3_DEFAULT_WGRAD_KERNEL)
        strict = errors.pop(conv.CONV3X3_DEFAULT_KERNEL)
        for kernel, split in errors.items():
            for job, strict_error, split_error in zip(("fwd", "dx", "dw"), strict, split):
                worst.append((split_error / strict_error,
                              f"{c_in}->{c_out} {job}: {kernel} {split_error:.2e}, "
                              f"strict {strict_error:.2e}"))
    for M, N, K in [(64, 4096, 25088), (64, 4096, 4096), (64, 1000, 4096)]:
        a = rng.standard_normal((M, K)).astype(np.float32)
        m = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
        exact = a.astype(np.float64) @ m.astype(np.float64).T
        errors = []
        for kernel in (linear.GEMM_DEFAULT_KERNEL, "3xtf32"):
            linear.use_gemm_kernel(kernel)
            errors.append(error(linear.gemm_gpu(cupy.asarray(a), cupy.asarray(m),
                                                trans_b=True), exact))
        worst.append((errors[1] / errors[0], f"fc {K}->{N}: 3xtf32 {errors[1]:.2e}, "
                                             f"strict {errors[0]:.2e}"))
    ratio, where = max(worst)
    assert ratio <= 2, where


@pytest.mark.parametrize("kernel", tensor_cores.PIPELINED_KERNELS)
def test_the_pipelined_rungs_fuse_relu_and_take_its_mask_in_a_pass_on_the_gpu(kernel, select):
    """F.conv3x3_relu's three gradients against float64 ones through the GPU's own ReLU
    mask (TF32's errors flip the sign of outputs near zero)."""
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, kernel)
    select(conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel, kernel)
    x, w, b, g = conv_inputs(LADDER_SHAPES["8to70-14x14"], np.float32, seed=9)
    tensors = [tv.tensor(a, requires_grad=True, device="cuda") for a in (x, w, b)]
    y = F.conv3x3_relu(*tensors)
    y.backward(g)
    ours = [y.numpy()] + [tv.backend.to_numpy(t.grad) for t in tensors]
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    y64 = conv_cpu.conv3x3_forward(x64, w64, b64, "im2col")
    masked = g.astype(np.float64) * (ours[0] > 0)
    dx, dw, db = conv_cpu.conv3x3_backward(x64, w64, masked, "im2col")
    for result, expected in zip(ours, (np.maximum(y64, 0), dx, dw, db)):
        assert_close(result, expected.astype(np.float32), rtol=kernel_rtol(kernel, np.float32))


GEMM_SHAPES = [(1, 1, 1), (5, 7, 3), (70, 130, 33), (64, 128, 64), (3, 260, 17)]  # (M, N, K)


@pytest.mark.parametrize("kernel, dtype", steps(linear.GEMM_KERNELS))
def test_gemm_ladder_equals_numpy_for_every_transpose(kernel, dtype, select):
    select(linear.use_gemm_kernel, linear.gemm_kernel, kernel)
    cupy = tv.backend.cupy_module()
    rng = np.random.default_rng(8)
    rtol = kernel_rtol(kernel, dtype)
    for (M, N, K), trans_a, trans_b in itertools.product(GEMM_SHAPES, (False, True), (False, True)):
        a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
        b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
        expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
        ours = linear.gemm_gpu(cupy.asarray(a), cupy.asarray(b), trans_a, trans_b)
        assert_close(cupy.asnumpy(ours), expected, rtol=rtol)
        c = rng.standard_normal((M, N)).astype(dtype)
        out = cupy.asarray(c)
        linear.gemm_gpu(cupy.asarray(a), cupy.asarray(b), trans_a, trans_b, 0.5, 2.0, out)
        assert_close(cupy.asnumpy(out), 0.5 * expected + 2.0 * c, rtol=rtol)
        # operands 4 bytes into their buffers: scalar loads instead of vector ones
        a_view = cupy.empty(a.size + 1, dtype)[1:].reshape(a.shape)
        a_view[...] = cupy.asarray(a)
        b_view = cupy.empty(b.size + 1, dtype)[1:].reshape(b.shape)
        b_view[...] = cupy.asarray(b)
        shifted = linear.gemm_gpu(a_view, b_view, trans_a, trans_b)
        assert_close(cupy.asnumpy(shifted), expected, rtol=rtol)


def linear_on_both_devices(arrays, g):
    """{device: [y, dx, dw, db]} of F.linear on (x, weight, bias) = ``arrays``, backward of g."""
    results = {}
    for device in ("cpu", "cuda"):
        tensors = [tv.tensor(a, requires_grad=True, device=device) for a in arrays]
        y = F.linear(*tensors)
        y.backward(g)
        results[device] = [y.numpy()] + [tv.backend.to_numpy(t.grad) for t in tensors]
    return results


@pytest.mark.parametrize("kernel, dtype", steps(linear.GEMM_KERNELS))
def test_linear_on_every_gemm_kernel_equals_the_cpu_path(kernel, dtype, select):
    select(linear.use_gemm_kernel, linear.gemm_kernel, kernel)
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in ((6, 37), (19, 37), (19,))]
    g = rng.standard_normal((6, 19)).astype(dtype)
    results = linear_on_both_devices(arrays, g)
    for ours, expected in zip(results["cuda"], results["cpu"]):
        assert_close(ours, expected, rtol=kernel_rtol(kernel, dtype))


@pytest.mark.parametrize("conv, weight_shape", [(F.conv3x3, (4, 3, 3, 3)),
                                                 (F.conv1x1, (4, 3, 1, 1))],
                         ids=["conv3x3", "conv1x1"])
def test_an_image_without_pixels_is_refused_on_the_gpu_as_on_the_cpu(conv, weight_shape):
    x, w = randn(0, (2, 3, 0, 5), np.float32), randn(1, weight_shape, np.float32)
    messages = []
    for device in ("cpu", "cuda"):
        with pytest.raises(ValueError, match=r"expected H, W >= 1") as caught:
            conv(tv.tensor(x, device=device), tv.tensor(w, device=device))
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("x_shape, w_shape", [((0, 5), (2, 5)), ((3, 0), (2, 0)),
                                              ((3, 5), (0, 5))],
                         ids=["no rows", "no in_features", "no out_features"])
def test_linear_with_a_zero_size_axis_equals_the_cpu_path(x_shape, w_shape):
    arrays = [randn(0, x_shape), randn(1, w_shape), randn(2, w_shape[:1])]
    g = randn(3, (x_shape[0], w_shape[0]))
    results = linear_on_both_devices(arrays, g)
    for ours, expected in zip(results["cuda"], results["cpu"]):
        assert ours.shape == expected.shape
        assert_close(ours, expected, rtol=RTOL[np.dtype(np.float64)])


@pytest.mark.parametrize("images_per_chunk", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd4x4_in_chunks_of_images_equals_the_cpu_path(images_per_chunk, dtype, select,
                                                             monkeypatch):
    """A workspace bound of one or two images' transformed tiles splits a batch of 3
    into chunks (the last one short): forward, the masked gradients and the weight
    gradient summed over the chunks are still the CPU's."""
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, "winograd4x4")
    select(conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel, "winograd4x4")
    x, w, b, g = conv_inputs(LADDER_SHAPES["5to7-12x16"], dtype, seed=11)
    per_image = 36 * 3 * 4 * (x.shape[1] + w.shape[0]) * np.dtype(dtype).itemsize
    monkeypatch.setattr(conv, "WINOGRAD_WORKSPACE_BYTES", images_per_chunk * per_image + 7)
    chunks = conv.winograd4x4_image_chunks(x.shape, x.shape[1] + w.shape[0],
                                           np.dtype(dtype).itemsize)
    assert [c.stop - c.start for c in chunks] == [images_per_chunk] * (3 // images_per_chunk) \
        + [1] * (images_per_chunk == 2)

    def on(device):
        tensors = [tv.tensor(a, requires_grad=True, device=device) for a in (x, w, b)]
        y = F.conv3x3_relu(*tensors)
        y.backward(tv.tensor(g, device=device))
        return [y.numpy()] + [tv.backend.to_numpy(t.grad) for t in tensors]
    for ours, theirs in zip(on("cuda"), on("cpu")):   # y, dx, dw, db
        assert_close(ours, theirs, rtol=RTOL[np.dtype(dtype)])


def test_winograd4x4_chunks_cover_the_batch_within_the_bound():
    itemsize, channels = 4, 64 + 64
    per_image = 36 * 56 * 56 * channels * itemsize    # a 224x224 layer of 64 channels
    most = conv.WINOGRAD_WORKSPACE_BYTES // per_image
    chunks = conv.winograd4x4_image_chunks((64, 64, 224, 224), channels, itemsize)
    assert 1 < most < 64
    assert chunks == [slice(n, min(n + most, 64)) for n in range(0, 64, most)]
    # an image larger than the bound is a chunk of its own; an empty batch has no chunks
    assert conv.winograd4x4_image_chunks((2, 1, 4096, 4096), 2, 4) == [slice(0, 1),
                                                                        slice(1, 2)]
    assert conv.winograd4x4_image_chunks((0, 3, 8, 8), 7, 4) == []


@pytest.mark.parametrize("forward, weight_grad", [("tile128", "tile128"),
                                                  ("winograd4x4", "winograd4x4"),
                                                  ("tile128", "implicit-gemm"),
                                                  ("implicit-gemm", "reduce")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv3x3_relu_equals_the_cpu_path_with_the_mask_where_loaded_or_in_a_pass(
        forward, weight_grad, dtype, select):
    """Where both gradient rungs load g through the ReLU's mask, g is not masked in a pass;
    otherwise it is, once; the results are the CPU's either way."""
    select(conv.use_conv3x3_kernel, conv.conv3x3_kernel, forward)
    select(conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel, weight_grad)
    x, w, b, g = conv_inputs(LADDER_SHAPES["3to5-7x9"], dtype, seed=9)
    layer = (x.shape[1], w.shape[0]) + x.shape[2:]
    assert conv.masks_where_loaded(dtype, layer, True, True) == \
        (forward in conv.MASK_LOADING_KERNELS and weight_grad in conv.MASK_LOADING_KERNELS)

    def on(device):
        tensors = [tv.tensor(a, requires_grad=True, device=device) for a in (x, w, b)]
        y = F.conv3x3_relu(*tensors)
        y.backward(tv.tensor(g, device=device))
        return [y.numpy()] + [tv.backend.to_numpy(t.grad) for t in tensors]
    expected = on("cpu")
    assert 0.2 < (expected[0] > 0).mean() < 0.8
    for ours, theirs in zip(on("cuda"), expected):   # y, dx, dw, db
        assert_close(ours, theirs, rtol=RTOL[np.dtype(dtype)])
