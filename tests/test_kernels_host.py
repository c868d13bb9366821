"""Our CUDA kernels run on the host (tests/host_cuda: g++, one fiber per CUDA thread), so
every machine checks what they compute, not only that they compile.

The ops' GPU host functions (conv3x3_cuda, gemm_gpu, ...) run unchanged on NumPy arrays,
with their grids, splits and launch sequences, and are held to the CPU path with the GPU
tests' tolerances (tests/test_gpu.py) on its shapes. Every launch runs twice, the
second time with blocks and threads in reverse order, and must give the same bits
(``host_cuda.check_races``): a missing barrier shows. This is not a GPU: it says nothing
of speed, of races that no order of whole barrier phases exposes, or of the GPU's own
rounding (fused multiply-adds), and the TF32 rung's tensor-core instructions cannot run
here. tests/test_gpu.py, on a GPU, remains the proof for those.
"""
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import host_cuda
from helpers import (FLOAT_DTYPES, LADDER_SHAPES, RTOL, SPLIT_PIXELS_SHAPE, TF32_RTOL,
                     assert_close, conv_inputs, kernel_rtol, strict_kernels)
from tinyvgg import cuda, random
from tinyvgg.ops import activation, conv_cpu, dropout, linear, pool, tensor_cores
from tinyvgg.ops import conv_cuda as conv
from tinyvgg.backend import DeviceUnavailableError

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

FP_FORWARD = strict_kernels(conv.CONV3X3_KERNELS)
STRICT_GEMM = strict_kernels(linear.GEMM_KERNELS)
PIPELINED = tensor_cores.PIPELINED_KERNELS
#: the convolution's rungs on the pipelined tile, each with linear's rung of its precision
PIPELINED_CONV = {**{k: k for k in PIPELINED}, "tf32-nhwc": "tf32-pipelined",
                  "3xtf32-nhwc": "3xtf32"}


def use_pipelined(kernel):
    """kernel for all three jobs of a convolution, and linear's rung of its precision."""
    conv.use_conv3x3_kernel(kernel)
    conv.use_conv3x3_wgrad_kernel(kernel)
    linear.use_gemm_kernel(PIPELINED_CONV[kernel])


@pytest.fixture
def host_gpu(monkeypatch):
    """The GPU host code on NumPy arrays; kernel choices are restored afterwards."""
    host_cuda.emulated_gpu(monkeypatch)
    monkeypatch.setattr(host_cuda, "check_races", True)
    chosen = (conv.conv3x3_kernel(), conv.conv3x3_wgrad_kernel(), linear.gemm_kernel())
    yield
    conv.use_conv3x3_kernel(chosen[0])
    conv.use_conv3x3_wgrad_kernel(chosen[1])
    linear.use_gemm_kernel(chosen[2])


def conv_reference(x, w, b, g):
    """y, dx, dw, db in float64 by the CPU ladder's im2col rung, cast to x's dtype."""
    x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, w, b, g))
    y = conv_cpu.conv3x3_forward(x64, w64, b64, "im2col")
    dx, dw, db = conv_cpu.conv3x3_backward(x64, w64, g64, "im2col")
    return [a.astype(x.dtype) for a in (y, dx, dw, db)]


# --- conv3x3: every rung of both ladders --------------------------------------------

@pytest.mark.parametrize("shape", LADDER_SHAPES.values(), ids=LADDER_SHAPES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kernel", FP_FORWARD)
def test_conv3x3_forward_ladder_and_input_gradient(kernel, dtype, shape, host_gpu):
    conv.use_conv3x3_kernel(kernel)
    x, w, b, g = conv_inputs(shape, dtype, seed=4)
    y_ref, dx_ref, _, _ = conv_reference(x, w, b, g)
    y = conv.conv3x3_cuda(x, w, b)
    dx = conv.conv3x3_input_grad_cuda(g, w)
    assert y.dtype == dx.dtype == dtype
    assert_close(y, y_ref, rtol=RTOL[np.dtype(dtype)])
    assert_close(dx, dx_ref, rtol=RTOL[np.dtype(dtype)])


#: every weight-gradient rung on every shape, but the reduce rung on the 64-channel one:
#: 4096 blocks of 256 threads and 9 barriers each take 8 s here, and the smaller shapes
#: run the same loops
WGRAD_CASES = [pytest.param(kernel, shape, id=f"{kernel}-{name}")
               for kernel in strict_kernels(conv.CONV3X3_WGRAD_KERNELS)
               for name, shape in [*LADDER_SHAPES.items(), ("split-pixels", SPLIT_PIXELS_SHAPE)]
               if not (kernel == "reduce" and name == "vgg-64to64-32x32")]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kernel, shape", WGRAD_CASES)
def test_conv3x3_weight_gradient_ladder_and_bias_gradient(kernel, shape, dtype, host_gpu):
    conv.use_conv3x3_wgrad_kernel(kernel)
    x, w, b, g = conv_inputs(shape, dtype, seed=4)
    _, _, dw_ref, db_ref = conv_reference(x, w, b, g)
    dw = conv.conv3x3_weight_grad_cuda(x, g)
    assert dw.dtype == dtype
    assert_close(dw, dw_ref, rtol=RTOL[np.dtype(dtype)])
    assert_close(conv.conv_bias_grad_cuda(g), db_ref, rtol=RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kernel", ["tile128", "winograd4x4", "implicit-gemm"])   # the last
# in passes of its own
def test_conv3x3_with_the_relu_after_it_fused(kernel, dtype, host_gpu):
    """ReLU where y is stored, and its mask where g is loaded, in all three gradients."""
    conv.use_conv3x3_kernel(kernel)
    conv.use_conv3x3_wgrad_kernel(kernel)
    for shape in (LADDER_SHAPES["3to5-7x9"], SPLIT_PIXELS_SHAPE):
        x, w, b, g = conv_inputs(shape, dtype, seed=5)
        y_ref, _, _, _ = conv_reference(x, w, b, g)
        y = np.maximum(y_ref, 0)
        assert 0.2 < (y > 0).mean() < 0.8   # the mask has both kinds of value
        _, dx_ref, dw_ref, db_ref = conv_reference(x, w, b, g * (y > 0))
        rtol = RTOL[np.dtype(dtype)]
        fused_y = conv.conv3x3_cuda(x, w, b, relu=True)
        assert_close(fused_y, y, rtol=rtol)
        assert_close(conv.conv3x3_input_grad_cuda(g, w, mask=fused_y), dx_ref, rtol=rtol)
        assert_close(conv.conv3x3_weight_grad_cuda(x, g, mask=fused_y), dw_ref, rtol=rtol)
        assert_close(conv.conv_bias_grad_cuda(g, mask=fused_y), db_ref, rtol=rtol)


def test_the_split_pixel_shape_does_split(host_gpu):
    """The weight gradient's extra shape exercises the partial sums it is there for."""
    N, C_in, C_out, H, W = SPLIT_PIXELS_SHAPE
    tiles = conv._blocks(9 * C_in, conv.IG_BN) * conv._blocks(C_out, conv.IG_BM)
    assert conv._pixel_splits(tiles, N * H * W) > 1


def test_the_tf32_rung_is_refused_without_tensor_cores(host_gpu, monkeypatch):
    monkeypatch.setattr(host_cuda.NumpyAsCupy, "compute_capability", "75")
    conv.use_conv3x3_kernel("tf32-mma")
    x, w, b, _ = conv_inputs(LADDER_SHAPES["3to5-7x9"], np.float32, seed=4)
    with pytest.raises(DeviceUnavailableError, match="TF32 tensor cores"):
        conv.conv3x3_cuda(x, w, b)


@pytest.mark.parametrize("shape", LADDER_SHAPES.values(), ids=LADDER_SHAPES)
def test_the_tf32_rung_with_its_tensor_core_product_emulated(shape, host_gpu):
    """The fragment layout of mma.m16n8k8 (host_mma_tf32 in prelude.h) and the staging."""
    conv.use_conv3x3_kernel("tf32-mma")
    x, w, b, g = conv_inputs(shape, np.float32, seed=4)
    y_ref, dx_ref, _, _ = conv_reference(x, w, b, g)
    assert_close(conv.conv3x3_cuda(x, w, b), y_ref, rtol=TF32_RTOL)
    assert_close(conv.conv3x3_input_grad_cuda(g, w), dx_ref, rtol=TF32_RTOL)


# --- the pipelined tensor-core rungs (kernels/mma.cuh) --------------------------------

@pytest.mark.parametrize("shape", [*LADDER_SHAPES.values(), SPLIT_PIXELS_SHAPE],
                         ids=[*LADDER_SHAPES, "split-pixels"])
@pytest.mark.parametrize("kernel", PIPELINED_CONV)
def test_the_pipelined_tensor_core_rungs_with_their_copies_and_products_emulated(
        kernel, shape, host_gpu):
    """cp.async's three stages (copies land at their wait), the swizzled layouts, the
    fragments of mma.m16n8k8 and the 3xTF32 split, in all three jobs of a convolution."""
    use_pipelined(kernel)
    x, w, b, g = conv_inputs(shape, np.float32, seed=4)
    y_ref, dx_ref, dw_ref, _ = conv_reference(x, w, b, g)
    rtol = kernel_rtol(kernel, np.float32)
    assert_close(conv.conv3x3_cuda(x, w, b), y_ref, rtol=rtol)
    assert_close(conv.conv3x3_input_grad_cuda(g, w), dx_ref, rtol=rtol)
    assert_close(conv.conv3x3_weight_grad_cuda(x, g), dw_ref, rtol=rtol)


@pytest.mark.parametrize("kernel", PIPELINED_CONV)
def test_the_pipelined_rungs_fuse_bias_and_relu_and_take_a_mask_in_a_pass(kernel, host_gpu):
    use_pipelined(kernel)
    x, w, b, g = conv_inputs(LADDER_SHAPES["8to70-14x14"], np.float32, seed=5)
    y = np.maximum(conv_reference(x, w, b, g)[0], 0)
    assert 0.2 < (y > 0).mean() < 0.8
    _, dx_ref, dw_ref, _ = conv_reference(x, w, b, g * (y > 0))
    rtol = kernel_rtol(kernel, np.float32)
    fused_y = conv.conv3x3_cuda(x, w, b, relu=True)
    assert_close(fused_y, y, rtol=rtol)
    assert not conv.masks_where_loaded(np.float32, (8, 70, 14, 14), True, True)
    assert_close(conv.conv3x3_input_grad_cuda(g, w, mask=fused_y), dx_ref, rtol=rtol)
    assert_close(conv.conv3x3_weight_grad_cuda(x, g, mask=fused_y), dw_ref, rtol=rtol)


@pytest.mark.parametrize("kernel", PIPELINED_CONV)
def test_the_pipelined_rungs_copy_arrays_that_are_not_16_byte_aligned_4_bytes_at_a_time(
        kernel, host_gpu, monkeypatch):
    """Every array the kernels get lies 4 bytes into its buffer (W, C_in and K multiples of
    4): a 16-byte cp.async from one would trap in the emulator, as it would fault on a GPU."""
    use_pipelined(kernel)
    x, w, b, g = conv_inputs((2, 8, 12, 8, 16), np.float32, seed=7)

    def shifted(a):
        view = np.empty(a.size + 1, a.dtype)[1:].reshape(a.shape)
        view[...] = a
        assert view.ctypes.data % 16 != 0
        return host_cuda.on_device(view)
    monkeypatch.setattr(cuda, "contiguous", shifted)
    y_ref, dx_ref, dw_ref, _ = conv_reference(x, w, b, g)
    rtol = kernel_rtol(kernel, np.float32)
    assert_close(conv.conv3x3_cuda(x, w, b), y_ref, rtol=rtol)
    assert_close(conv.conv3x3_input_grad_cuda(g, w), dx_ref, rtol=rtol)
    assert_close(conv.conv3x3_weight_grad_cuda(x, g), dw_ref, rtol=rtol)
    a, m = x.reshape(16, -1)[:, :64], w.reshape(12, -1)[:, :64]
    assert_close(linear.gemm_gpu(a, m, trans_b=True), a @ m.T,
                 rtol=gemm_rtol(PIPELINED_CONV[kernel], np.float32))


@pytest.mark.parametrize("kernel", PIPELINED_CONV)
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 13), st.integers(1, 140),
                       st.integers(1, 11), st.integers(1, 11)),
       seed=st.integers(0, 2**31 - 1))
def test_the_pipelined_rungs_on_any_shape(kernel, shape, seed, host_gpu):
    """Odd sizes, single rows and columns, one input channel (K = 9, within one slice)."""
    use_pipelined(kernel)
    x, w, b, g = conv_inputs(shape, np.float32, seed=seed)
    y_ref, dx_ref, dw_ref, _ = conv_reference(x, w, b, g)
    rtol = kernel_rtol(kernel, np.float32)
    assert_close(conv.conv3x3_cuda(x, w, b), y_ref, rtol=rtol)
    assert_close(conv.conv3x3_input_grad_cuda(g, w), dx_ref, rtol=rtol)
    assert_close(conv.conv3x3_weight_grad_cuda(x, g), dw_ref, rtol=rtol)


@pytest.mark.parametrize("kernel", PIPELINED)
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.tuples(st.integers(1, 140), st.integers(0, 300), st.integers(1, 140)),   # K = 0: -C
       trans=st.tuples(st.booleans(), st.booleans()), seed=st.integers(0, 2**31 - 1))
def test_the_pipelined_gemm_on_any_shape(kernel, sizes, trans, seed, host_gpu):
    linear.use_gemm_kernel(kernel)
    (M, K, N), (trans_a, trans_b) = sizes, trans
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    out = rng.standard_normal((M, N)).astype(np.float32)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b) - out
    result = linear.gemm_gpu(a, b, trans_a, trans_b, beta=-1.0, out=out.copy())
    assert_close(result, expected.astype(np.float32), rtol=gemm_rtol(kernel, np.float32))


@pytest.mark.parametrize("kernel", sorted(tensor_cores.PRECISION_OF_KERNEL))
def test_the_tensor_core_rungs_refuse_float64_and_gpus_without_tensor_cores(
        kernel, host_gpu, monkeypatch):
    x, w, b, g = conv_inputs(LADDER_SHAPES["3to5-7x9"], np.float64, seed=4)
    calls = []
    if kernel in conv.CONV3X3_KERNELS:
        calls.append((conv.use_conv3x3_kernel, lambda x, w, g: conv.conv3x3_cuda(x, w)))
    if kernel in conv.CONV3X3_WGRAD_KERNELS:
        calls.append((conv.use_conv3x3_wgrad_kernel,
                      lambda x, w, g: conv.conv3x3_weight_grad_cuda(x, g)))
    if kernel in linear.GEMM_KERNELS:
        calls.append((linear.use_gemm_kernel,
                      lambda x, w, g: linear.gemm_gpu(x.reshape(7, -1), w.reshape(5, -1).T)))
    assert calls
    for use, call in calls:
        use(kernel)
        with pytest.raises(TypeError, match=rf"the '{kernel}' kernel runs on TF32 tensor "
                                            r"cores and takes float32 only, got float64"):
            call(x, w, g)
    monkeypatch.setattr(host_cuda.NumpyAsCupy, "compute_capability", "75")
    for use, call in calls:
        with pytest.raises(DeviceUnavailableError, match="needs TF32 tensor cores .* has 7.5"):
            call(*(a.astype(np.float32) for a in (x, w, g)))


#: VGG-16's layers of distinct channel counts at 4 x 4 pixels (a product tile's pixels
#: run the same code at any image size), and its classifier's depths with 128 outputs
VGG16_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                  (256, 512), (512, 512)]
VGG16_CLASSIFIER_DEPTHS = [25088, 4096]


def relative_error(result, reference) -> float:
    return float(np.linalg.norm(result - reference) / np.linalg.norm(reference))


def test_3xtf32_errors_are_within_twice_the_strict_rungs_on_every_vgg16_layer(
        host_gpu, monkeypatch):
    """Against float64, on fresh random inputs: each job of each layer, 3xTF32 against the
    strict default rung (float32 arithmetic without fused multiply-adds, here)."""
    monkeypatch.setattr(host_cuda, "check_races", False)   # the other tests check that
    rng = np.random.default_rng()
    worst = []
    for c_in, c_out in VGG16_CHANNELS:
        shape = (1, c_in, c_out, 4, 4)
        x, w, b, g = conv_inputs(shape, np.float32, seed=int(rng.integers(2**31)))
        x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, w, b, g))
        y64 = conv_cpu.conv3x3_forward(x64, w64, b64, "im2col")
        dx64, dw64, _ = conv_cpu.conv3x3_backward(x64, w64, g64, "im2col")
        errors = {}
        for forward, weight_grad in ((conv.CONV3X3_DEFAULT_KERNEL,
                                      conv.CONV3X3_DEFAULT_WGRAD_KERNEL),
                                     ("3xtf32", "3xtf32"), ("3xtf32-nhwc", "3xtf32-nhwc")):
            conv.use_conv3x3_kernel(forward)
            errors[forward] = [relative_error(conv.conv3x3_cuda(x, w, b), y64),
                               relative_error(conv.conv3x3_input_grad_cuda(g, w), dx64)]
            if weight_grad:
                conv.use_conv3x3_wgrad_kernel(weight_grad)
                errors[forward].append(relative_error(conv.conv3x3_weight_grad_cuda(x, g), dw64))
        strict = errors.pop(conv.CONV3X3_DEFAULT_KERNEL)
        for kernel, split in errors.items():
            for job, strict_error, error in zip(("fwd", "dx", "dw"), strict, split):
                worst.append((error / strict_error, f"{c_in}->{c_out} {job}: {kernel} "
                                                    f"{error:.2e}, strict {strict_error:.2e}"))
    for depth in VGG16_CLASSIFIER_DEPTHS:
        a = rng.standard_normal((2, depth)).astype(np.float32)
        m = (rng.standard_normal((128, depth)) / np.sqrt(depth)).astype(np.float32)
        exact = a.astype(np.float64) @ m.astype(np.float64).T
        errors = []
        for kernel in (linear.GEMM_DEFAULT_KERNEL, "3xtf32"):
            linear.use_gemm_kernel(kernel)
            errors.append(relative_error(linear.gemm_gpu(a, m, trans_b=True), exact))
        worst.append((errors[1] / errors[0], f"classifier depth {depth}: 3xtf32 "
                                             f"{errors[1]:.2e}, strict {errors[0]:.2e}"))
    ratio, where = max(worst)
    assert ratio <= 2, where


def test_tf32_rounding_is_to_nearest_ties_away_from_zero(tmp_path, monkeypatch):
    """cvt.rna.tf32.f32 as the prelude does it: 13 low bits dropped, a half rounds away."""
    source = tmp_path / "round.cu"
    source.write_text('extern "C" __global__ void tf32(const float* x, unsigned* bits) {\n'
                      "    bits[threadIdx.x] = host_tf32_bits(x[threadIdx.x]);\n}\n")
    monkeypatch.setattr(cuda, "source_path", lambda file: source)
    ulp = 2.0 ** -10   # TF32's spacing at 1
    x = np.array([1 + ulp / 2, 1 + ulp / 2 - 2.0 ** -23, -(1 + ulp / 2), 1 + ulp / 4,
                  np.inf, -np.inf], np.float32)
    bits = np.zeros(x.size, np.uint32)
    host_cuda.launch("round", "tf32", None, 1, x.size, (x, bits))
    np.testing.assert_array_equal(bits.view(np.float32),
                                  [1 + ulp, 1, -(1 + ulp), 1, np.inf, -np.inf])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_conv1x1_forward_and_weight_gradient(dtype, host_gpu):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 7, 9)).astype(dtype)
    w = rng.standard_normal((6, 5)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    g = rng.standard_normal((3, 6, 7, 9)).astype(dtype)
    expected = np.einsum("oc,nchw->nohw", w, x) + b[:, None, None]
    assert_close(conv.conv1x1_cuda(x, w, b), expected)
    assert_close(conv.conv1x1_weight_grad_cuda(x, g), np.einsum("nohw,nchw->oc", g, x))


# --- the matrix products of linear ---------------------------------------------------

def gemm_rtol(kernel, dtype):
    """Products over K up to 1100: ten times a convolution's tolerance, TF32's as it is."""
    return kernel_rtol(kernel, dtype) * (1 if tensor_cores.precision(kernel) == "tf32" else 10)


@pytest.mark.parametrize("kernel, dtype", [(k, d) for k in linear.GEMM_KERNELS
                                           for d in FLOAT_DTYPES
                                           if k in STRICT_GEMM or d == np.float32])
def test_gemm_ladder_for_every_transpose(kernel, dtype, host_gpu):
    linear.use_gemm_kernel(kernel)
    rng = np.random.default_rng(5)
    M, K, N = 67, 130, 70   # no multiple of a tile, and K spans several slices
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
            b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
            out = rng.standard_normal((M, N)).astype(dtype)
            expected = 0.5 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) - 2.0 * out
            result = linear.gemm_gpu(a, b, trans_a, trans_b, alpha=0.5, beta=-2.0, out=out)
            assert_close(result, expected, rtol=gemm_rtol(kernel, dtype))


@pytest.mark.parametrize("kernel, dtype", [(k, d) for k in linear.GEMM_KERNELS
                                           for d in FLOAT_DTYPES
                                           if k in STRICT_GEMM or d == np.float32])
def test_gemm_bias_and_relu_epilogue(kernel, dtype, host_gpu):
    """The warptile rung applies them where it stores C (or where it adds the splits); the
    others in passes of their own: the same values either way."""
    linear.use_gemm_kernel(kernel)
    rng = np.random.default_rng(15)
    for M, K, N in [(67, 130, 70), (9, 1100, 21)]:   # the second is split along K
        a = rng.standard_normal((M, K)).astype(dtype)
        w = rng.standard_normal((N, K)).astype(dtype)
        bias = rng.standard_normal(N).astype(dtype)
        expected = np.maximum(a @ w.T + bias, 0)
        result = linear.gemm_gpu(a, w, trans_b=True, bias=bias, relu=True)
        assert_close(result, expected, rtol=gemm_rtol(kernel, dtype))


@pytest.mark.parametrize("kernel", STRICT_GEMM)
def test_a_bias_or_a_relu_mask_that_does_not_fit_is_refused(kernel, host_gpu):
    """Not read out of bounds: the kernels index bias and mask by the result's positions."""
    linear.use_gemm_kernel(kernel)
    rng = np.random.default_rng(17)
    a, w = rng.standard_normal((5, 7)), rng.standard_normal((6, 7))
    for bias in (rng.standard_normal(5), rng.standard_normal(6).astype(np.float32)):
        with pytest.raises(ValueError, match="gemm: bias must be 6 values of float64"):
            linear.gemm_gpu(a, w, trans_b=True, bias=bias)
    x, w3, b, g = conv_inputs(LADDER_SHAPES["3to5-7x9"], np.float64, seed=3)
    wrong = g[:, :, :-1]
    for call in (lambda: conv.conv3x3_input_grad_cuda(g, w3, mask=np.ascontiguousarray(wrong)),
                 lambda: conv.conv3x3_weight_grad_cuda(x, g, mask=g.astype(np.float32)),
                 lambda: conv.conv_bias_grad_cuda(g, mask=np.ascontiguousarray(wrong))):
        with pytest.raises(ValueError, match="conv3x3: the ReLU mask must have the shape"):
            call()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_batched_gemm_for_every_transpose_with_and_without_splits(dtype, host_gpu):
    rng = np.random.default_rng(16)
    for batch, M, K, N in [(3, 67, 40, 131), (2, 20, 1030, 12)]:
        assert (linear.k_splits(1, K)[0] > 1) == (K > 1000)
        for trans_a in (False, True):
            for trans_b in (False, True):
                a = rng.standard_normal((batch,) + ((K, M) if trans_a else (M, K))).astype(dtype)
                b = rng.standard_normal((batch,) + ((N, K) if trans_b else (K, N))).astype(dtype)
                expected = (a.transpose(0, 2, 1) if trans_a else a) @ \
                    (b.transpose(0, 2, 1) if trans_b else b)
                result = linear.gemm_batched_gpu(a, b, trans_a, trans_b)
                assert_close(result, expected, rtol=RTOL[np.dtype(dtype)] * 10)


def test_k_splits_cover_k_in_whole_slices():
    for tiles, K in [(1, 0), (1, 7), (1, 25088), (32, 25088), (600, 4096), (2, 200704)]:
        splits, per_split = linear.k_splits(tiles, K)
        assert per_split % linear.TILE_BK == 0 and splits >= 1
        assert (splits - 1) * per_split < max(K, 1) <= splits * per_split
        assert splits == 1 or per_split >= linear.SPLIT_MIN_K
        assert tiles * splits <= max(tiles, linear.SPLIT_TARGET_BLOCKS)


@pytest.mark.parametrize("rows", [5, 3000])   # one chunk; several chunks and a second pass
def test_sum_rows_and_bias_rows(rows, host_gpu):
    g = np.random.default_rng(6).standard_normal((rows, 37))
    assert_close(linear.sum_rows_gpu(g), g.sum(axis=0))
    bias = np.arange(37.0)
    assert_close(linear.add_bias_rows_gpu(g.copy(), bias), g + bias)


# --- the other kernels ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_activations(dtype, host_gpu):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1000).astype(dtype)
    g = rng.standard_normal(1000).astype(dtype)
    y = activation._pointwise_cuda("relu_forward", x)
    assert_close(y, np.maximum(x, 0))
    assert_close(activation._pointwise_cuda("relu_backward", g, y), g * (y > 0))
    t = activation._pointwise_cuda("tanh_forward", x)
    assert_close(t, np.tanh(x))
    assert_close(activation._pointwise_cuda("tanh_backward", g, t), g * (1 - t * t))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_max_pool_and_adaptive_average_pool(dtype, host_gpu):
    x = np.random.default_rng(8).permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9).astype(dtype)
    y, argmax = pool.maxpool2x2_cuda(x)
    y_ref, argmax_ref = pool.maxpool2x2_naive(x)
    assert_close(y, y_ref)
    assert np.array_equal(argmax, argmax_ref)
    g = np.random.default_rng(9).standard_normal(y.shape).astype(dtype)
    assert_close(pool.maxpool2x2_backward_cuda(g, argmax, x.shape),
                 pool.maxpool2x2_backward_naive(x, g))
    avg = pool.adaptive_avg_pool2d_cuda(x, (3, 4))
    assert_close(avg, pool.adaptive_avg_pool2d_naive(x, (3, 4)))


def test_dropout_bits_and_masks_are_the_cpu_ones(host_gpu):
    assert np.array_equal(dropout.element_bits_cuda(11, 1000, first=3),
                          random.element_bits(11, 1003)[3:])
    assert np.array_equal(dropout.dropout_mask_cuda((7, 33), 0.3, 12),
                          dropout.dropout_mask((7, 33), 0.3, 12))
    assert np.array_equal(dropout.dropout_mask_cuda((7, 33), 0.3, 12, first=66),
                          dropout.dropout_mask((7, 33), 0.3, 12, first=66))


# --- cp.async: asynchronous copies to shared memory, landing at their wait ------------

def _kernel_source(tmp_path, monkeypatch, name: str, code: str) -> None:
    """kernels/<name>.cu is `code` for the rest of the test (names are cached: one each)."""
    source = tmp_path / f"{name}.cu"
    source.write_text(code)
    monkeypatch.setattr(cuda, "source_path", lambda file: source)


def _aligned(values) -> np.ndarray:
    """A float32 copy of values at a 16-byte aligned address, as cudaMalloc's are."""
    buffer = np.empty(np.size(values) + 4, np.float32)
    start = (-buffer.ctypes.data % 16) // 4
    array = buffer[start:start + np.size(values)]
    array[...] = np.ravel(values)
    return array


CP_ASYNC_COPY = """
extern "C" __global__ void copy(const float* x, const float* old, float* seen,
                                int bytes, int src_bytes) {
    __shared__ __align__(16) float staged[32];
    const int t = threadIdx.x;
    for (int i = 0; i < 4; ++i) staged[4 * t + i] = old[4 * t + i];
    host_cp_async(&staged[4 * t], x + 4 * t, bytes, src_bytes);
    host_cp_async_commit();
    for (int i = 0; i < 4; ++i) seen[4 * t + i] = staged[4 * t + i];
    host_cp_async_wait(0);
    for (int i = 0; i < 4; ++i) seen[32 + 4 * t + i] = staged[4 * t + i];
}
"""


def _copy_seen(bytes_, src_bytes, seed):
    """What each of 8 threads sees of its 4 shared floats before and after its wait."""
    rng = np.random.default_rng(seed)
    x, old = _aligned(rng.standard_normal(32)), rng.standard_normal(32).astype(np.float32)
    seen = np.zeros(64, np.float32)
    host_cuda.launch("cp_async_copy", "copy", None, 1, 8, (x, old, seen, bytes_, src_bytes))
    return x.reshape(8, 4), old.reshape(8, 4), seen[:32].reshape(8, 4), seen[32:].reshape(8, 4)


@pytest.mark.parametrize("bytes_", [4, 8, 16])
def test_a_cp_async_copy_lands_at_its_wait_not_before(bytes_, tmp_path, monkeypatch):
    _kernel_source(tmp_path, monkeypatch, "cp_async_copy", CP_ASYNC_COPY)
    monkeypatch.setattr(host_cuda, "check_races", True)
    x, old, before, after = _copy_seen(bytes_, bytes_, seed=20)
    copied = bytes_ // 4
    np.testing.assert_array_equal(before, old)   # issued and committed: not there yet
    np.testing.assert_array_equal(after[:, :copied], x[:, :copied])
    np.testing.assert_array_equal(after[:, copied:], old[:, copied:])   # beyond its bytes


@pytest.mark.parametrize("src_bytes", [0, 4, 12])
def test_a_cp_async_copy_zero_fills_past_its_source_bytes(src_bytes, tmp_path, monkeypatch):
    _kernel_source(tmp_path, monkeypatch, "cp_async_copy", CP_ASYNC_COPY)
    monkeypatch.setattr(host_cuda, "check_races", True)
    x, old, before, after = _copy_seen(16, src_bytes, seed=21)
    read = src_bytes // 4
    np.testing.assert_array_equal(before, old)
    np.testing.assert_array_equal(after[:, :read], x[:, :read])
    np.testing.assert_array_equal(after[:, read:], 0)


def test_cp_async_wait_group_keeps_the_newest_groups_and_uncommitted_copies_pending(
        tmp_path, monkeypatch):
    """Groups of two 8-byte, one 16-byte and four 4-byte copies, then one uncommitted copy:
    wait_group 3, 2, 1 and 0 land a group each, oldest first, and never that last copy."""
    _kernel_source(tmp_path, monkeypatch, "cp_async_groups", """
extern "C" __global__ void groups(const float* x, const float* old, float* seen) {
    __shared__ __align__(16) float staged[16];
    for (int i = 0; i < 16; ++i) staged[i] = old[i];
    host_cp_async(staged, x, 8, 8);
    host_cp_async(staged + 2, x + 2, 8, 8);
    host_cp_async_commit();
    host_cp_async(staged + 4, x + 4, 16, 16);
    host_cp_async_commit();
    for (int i = 8; i < 12; ++i) host_cp_async(staged + i, x + i, 4, 4);
    host_cp_async_commit();
    host_cp_async(staged + 12, x + 12, 16, 16);
    int step = 0;
    for (int n = 3; n >= 0; --n, ++step) {
        host_cp_async_wait(n);
        for (int i = 0; i < 16; ++i) seen[16 * step + i] = staged[i];
    }
    host_cp_async_commit();
    host_cp_async_wait(0);
    for (int i = 0; i < 16; ++i) seen[16 * step + i] = staged[i];
}
""")
    rng = np.random.default_rng(22)
    x, old = _aligned(rng.standard_normal(16)), rng.standard_normal(16).astype(np.float32)
    seen = np.zeros((5, 16), np.float32)
    host_cuda.launch("cp_async_groups", "groups", None, 1, 1, (x, old, seen))
    for step, landed in enumerate([0, 1, 2, 3, 4]):   # after wait_group 3, 2, 1, 0; commit, 0
        expected = np.concatenate([x[:4 * landed], old[4 * landed:]])
        np.testing.assert_array_equal(seen[step], expected, err_msg=f"step {step}")


CP_ASYNC_PIPELINE = """
extern "C" __global__ void pipeline(const float* x, float* y, int tiles, int barrier) {
    __shared__ __align__(16) float stage[2][128];
    const int t = threadIdx.x;
    const float* block_x = x + blockIdx.x * tiles * 128;
    float* block_y = y + blockIdx.x * tiles * 128;
    host_cp_async(&stage[0][4 * t], block_x + 4 * t, 16, 16);
    host_cp_async_commit();
    for (int k = 0; k < tiles; ++k) {
        if (k + 1 < tiles)   // the next tile on its way while this one is read
            host_cp_async(&stage[(k + 1) % 2][4 * t], block_x + (k + 1) * 128 + 4 * t, 16, 16);
        host_cp_async_commit();
        host_cp_async_wait(1);         // this thread's part of tile k is in
        if (barrier) __syncthreads();  // ... and every other thread's
        for (int j = 0; j < 4; ++j)    // the next thread's part
            block_y[k * 128 + 4 * t + j] = stage[k % 2][(4 * t + 4 + j) % 128];
        __syncthreads();               // read before the stage is refilled
    }
}
"""


def test_a_pipelined_cp_async_kernel_needs_the_barrier_after_its_wait(tmp_path, monkeypatch):
    """Two stages, 32 threads copying 16 bytes each per tile and reading another thread's:
    right with wait_group + __syncthreads(); without that barrier the other thread's copy
    has not landed yet, which the result, and the race check's reversed order, show."""
    _kernel_source(tmp_path, monkeypatch, "cp_async_pipeline", CP_ASYNC_PIPELINE)
    blocks, tiles = 2, 5
    x = _aligned(np.random.default_rng(23).standard_normal(blocks * tiles * 128))
    expected = np.roll(x.reshape(blocks, tiles, 128), -4, axis=2).ravel()
    y = np.zeros_like(x)
    monkeypatch.setattr(host_cuda, "check_races", True)
    host_cuda.launch("cp_async_pipeline", "pipeline", None, blocks, 32, (x, y, tiles, 1))
    np.testing.assert_array_equal(y, expected)
    with pytest.raises(host_cuda.HostLaunchError, match="reverse order: a race"):
        host_cuda.launch("cp_async_pipeline", "pipeline", None, blocks, 32, (x, y, tiles, 0))
    monkeypatch.setattr(host_cuda, "check_races", False)
    host_cuda.launch("cp_async_pipeline", "pipeline", None, blocks, 32, (x, y, tiles, 0))
    wrong = (y != expected).reshape(blocks, tiles, 32, 4).all(axis=3)
    assert wrong[:, :, :31].all()   # every tile, in every thread that reads a later one's


def test_cp_async_copies_never_waited_for_are_dropped_with_their_block(tmp_path, monkeypatch):
    """Block 0 returns with a committed and an uncommitted copy; neither lands in block 1."""
    _kernel_source(tmp_path, monkeypatch, "cp_async_drop", """
extern "C" __global__ void drop(const float* x, const float* old, float* seen) {
    __shared__ __align__(16) float staged[8];
    if (blockIdx.x == 0) {
        for (int i = 0; i < 8; ++i) staged[i] = old[i];
        host_cp_async(staged, x, 16, 16);
        host_cp_async_commit();
        host_cp_async(staged + 4, x + 4, 16, 16);
        return;
    }
    host_cp_async_commit();
    host_cp_async_wait(0);
    for (int i = 0; i < 8; ++i) seen[i] = staged[i];
}
""")
    rng = np.random.default_rng(24)
    x, old = _aligned(rng.standard_normal(8)), rng.standard_normal(8).astype(np.float32)
    seen = np.zeros(8, np.float32)
    host_cuda.launch("cp_async_drop", "drop", None, 2, 1, (x, old, seen))
    np.testing.assert_array_equal(seen, old)


@pytest.mark.parametrize("dst_offset, src_offset, bytes_, src_bytes, wait, message", [
    (0, 0, 16, 16, 0, None),
    (4, 4, 4, 4, 0, None),
    (0, 4, 16, 0, 0, None),   # nothing read: src's alignment does not matter
    (0, 0, 12, 12, 0, "the size must be 4, 8 or 16"),
    (0, 0, 8, 9, 0, "src_bytes must be 0 to the size"),
    (0, 0, 4, -1, 0, "src_bytes must be 0 to the size"),
    (8, 0, 16, 16, 0, "dst is not aligned"),
    (0, 4, 8, 4, 0, "src is not aligned"),
    (0, 0, 16, 16, -1, "wait_group -1"),
])
def test_cp_async_with_a_bad_size_or_alignment_traps(dst_offset, src_offset, bytes_, src_bytes,
                                                     wait, message, tmp_path, monkeypatch):
    _kernel_source(tmp_path, monkeypatch, "cp_async_checks", """
extern "C" __global__ void check(const float* x, int dst_offset, int src_offset,
                                 int bytes, int src_bytes, int wait) {
    __shared__ __align__(16) float staged[8];
    host_cp_async(reinterpret_cast<char*>(staged) + dst_offset,
                  reinterpret_cast<const char*>(x) + src_offset, bytes, src_bytes);
    host_cp_async_commit();
    host_cp_async_wait(wait);
}
""")
    x = _aligned(np.random.default_rng(25).standard_normal(8))
    args = (x, dst_offset, src_offset, bytes_, src_bytes, wait)
    if message is None:
        host_cuda.launch("cp_async_checks", "check", None, 1, 1, args)
        return
    with pytest.raises(host_cuda.HostLaunchError, match=rf"trap: cp\.async.*{message}"):
        host_cuda.launch("cp_async_checks", "check", None, 1, 1, args)


# --- what the host launcher itself refuses -------------------------------------------

def test_a_barrier_that_part_of_a_block_skips_is_an_error(tmp_path, monkeypatch):
    source = tmp_path / "diverge.cu"
    source.write_text("template <typename T>\n"
                      "__global__ void early_exit(T* out, long long n) {\n"
                      "    if (threadIdx.x >= n) return;\n"
                      "    __syncthreads();\n"
                      "    out[threadIdx.x] = T(1);\n"
                      "}\n")
    monkeypatch.setattr(cuda, "source_path", lambda file: source)
    out = np.zeros(8)
    host_cuda.launch("diverge", "early_exit", np.float64, 1, 8, (out, 8))
    assert out.sum() == 8   # every thread reaches the barrier: fine
    with pytest.raises(host_cuda.HostLaunchError, match="wait at __syncthreads"):
        host_cuda.launch("diverge", "early_exit", np.float64, 1, 8, (out, 5))


def test_arguments_that_do_not_fit_the_kernel_are_refused():
    x = np.zeros((4, 4), np.float32)
    y = np.zeros((4, 4), np.float32)
    with pytest.raises(host_cuda.HostLaunchError, match="not C-contiguous"):
        host_cuda.launch("activation", "relu_forward", np.float32, 1, 16, (x.T, y, 16))
    with pytest.raises(host_cuda.HostLaunchError, match="dtype float64"):
        host_cuda.launch("activation", "relu_forward", np.float32, 1, 16, (x.astype(float), y, 16))
    with pytest.raises(host_cuda.HostLaunchError, match="2 arguments for 3"):
        host_cuda.launch("activation", "relu_forward", np.float32, 1, 16, (x, y))


def test_a_missing_barrier_is_found_by_the_reversed_order(tmp_path, monkeypatch):
    source = tmp_path / "race.cu"
    source.write_text("template <typename T>\n"
                      "__global__ void shift(const T* x, T* y, long long sync) {\n"
                      "    __shared__ T staged[4];\n"
                      "    staged[threadIdx.x] = x[threadIdx.x];\n"
                      "    if (sync) __syncthreads();\n"
                      "    y[threadIdx.x] = staged[(threadIdx.x + 1) % 4];\n"
                      "}\n")
    monkeypatch.setattr(cuda, "source_path", lambda file: source)
    monkeypatch.setattr(host_cuda, "check_races", True)
    x, y = np.arange(4.0), np.zeros(4)
    host_cuda.launch("race", "shift", np.float64, 1, 4, (x, y, 1))
    assert np.array_equal(y, [1, 2, 3, 0])
    with pytest.raises(host_cuda.HostLaunchError, match="reverse order: a race"):
        host_cuda.launch("race", "shift", np.float64, 1, 4, (x + 10, y, 0))


def test_the_portable_fiber_switch_gives_the_same_results(monkeypatch):
    """Hosts other than x86-64 switch fibers with ucontext: the same kernels, same bits."""
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((70, 130)), rng.standard_normal((130, 33))

    def product():
        out = np.empty((70, 33))
        host_cuda.launch("linear", "gemm_register", np.float64, (2, 1), 128,
                         (a, b, out, 70, 33, 130, 0, 0, 1.0, 0.0))
        return out
    fast = product()
    monkeypatch.setattr(host_cuda, "portable_switch", True)
    monkeypatch.setattr(host_cuda, "check_races", True)
    np.testing.assert_array_equal(product(), fast)
    assert_close(fast, a @ b)


# --- conv3x3's GPU "auto": the benchmark's table, read back --------------------------------

@pytest.fixture
def auto_table(tmp_path, monkeypatch):
    """An auto table in tmp_path for a GPU named "Test GPU", which the emulator then is."""
    from tinyvgg.ops import conv_auto
    path = tmp_path / "auto.json"
    monkeypatch.setattr(conv_auto, "table_path", lambda: path)
    monkeypatch.setattr(conv_auto, "device_name", lambda: "Test GPU")
    conv_auto.reset()
    yield path
    conv_auto.reset()


def _ladder_row(c_in, c_out, size, ms, error=None):
    """A conv row as bench_conv makes it: ms per job and kernel."""
    return dict(c_in=c_in, c_out=c_out, size=size, batch=2, jobs=list(ms), ms=ms,
                error=error or {})


def test_auto_runs_the_measured_winner_of_the_nearest_layer_and_job(auto_table, host_gpu):
    from tinyvgg.bench import write_auto_table
    rows = [_ladder_row(3, 8, 40, {"fwd": {"tile128": 2.0, "implicit-gemm": 3.0},
                                   "dw": {"reduce": 1.0, "tile128": 2.0}}),
            _ladder_row(64, 64, 8, {"fwd": {"winograd4x4": 1.0, "tf32-mma": 0.1,
                                            "tf32-pipelined": 0.1},
                                    "dx": {"register": 1.0, "winograd4x4": 2.0,
                                           "tile128": 0.5},
                                    "dw": {"winograd4x4": 1.0, "3xtf32": 0.5}},
                        error={"dx": {"tile128": 1e-2}})]   # too inexact to be picked
    write_auto_table(rows, "abc1234", auto_table, device="Test GPU")
    assert json.loads(auto_table.read_text())["devices"]["Test GPU"]["commit"] == "abc1234"
    pick = conv.auto_kernel
    assert pick("fwd", np.float32, 3, 5, 7, 9) == "tile128"
    assert pick("fwd", np.float32, 48, 64, 8, 8) == "winograd4x4"   # TF32 never
    assert pick("dx", np.float32, 64, 60, 8, 8) == "register"
    assert pick("dx", np.float32, 3, 8, 40, 40) == "register"       # the only dx entries
    assert pick("dw", np.float32, 4, 8, 30, 30) == "reduce"
    assert pick("dw", np.float32, 64, 64, 8, 8) == "3xtf32"        # float32-level errors
    assert pick("fwd", np.float64, 3, 8, 40, 40) == conv.CONV3X3_DEFAULT_KERNEL
    conv.use_conv3x3_kernel("auto")
    conv.use_conv3x3_wgrad_kernel("auto")
    x, w, b, g = conv_inputs(SPLIT_PIXELS_SHAPE, np.float32, seed=8)
    y_ref, dx_ref, dw_ref, _ = conv_reference(x, w, b, g)
    assert_close(conv.conv3x3_cuda(x, w, b), y_ref, rtol=RTOL[np.dtype(np.float32)])
    assert_close(conv.conv3x3_input_grad_cuda(g, w), dx_ref, rtol=RTOL[np.dtype(np.float32)])
    assert_close(conv.conv3x3_weight_grad_cuda(x, g), dw_ref, rtol=RTOL[np.dtype(np.float32)])


def test_auto_without_a_table_for_this_gpu_runs_the_defaults(auto_table, host_gpu):
    from tinyvgg.bench import write_auto_table
    write_auto_table([_ladder_row(3, 8, 40, {"fwd": {"tile128": 1.0}})], "abc", auto_table,
                     device="Another GPU")
    assert conv.auto_kernel("fwd", np.float32, 3, 8, 40, 40) == conv.CONV3X3_DEFAULT_KERNEL
    assert conv.auto_kernel("dw", np.float32, 3, 8, 40, 40) == conv.CONV3X3_DEFAULT_WGRAD_KERNEL


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"format": 2, "devices": {}}', "expected a table of format 1"),
    ('{"format": 1, "devices": {"G": {"entries": [{"job": "fwd", "c_in": 3, "c_out": 8, '
     '"size": 40, "kernel": "tf32-mma"}]}}}', "float32-accurate kernel"),
    ('{"format": 1, "devices": {"G": {"entries": [{"job": "up", "c_in": 3, "c_out": 8, '
     '"size": 40, "kernel": "tiled"}]}}}', "float32-accurate kernel"),
    ('{"format": 1, "devices": {"G": {}}}', "no list of entries"),
])
def test_a_bad_auto_table_is_refused_naming_the_file(content, message, auto_table):
    from tinyvgg.ops import conv_auto
    auto_table.write_text(content)
    with pytest.raises(conv_auto.AutoTableError, match=message) as caught:
        conv_auto.entries_for("G", conv.AUTO_KERNELS_OF_JOB)
    assert str(auto_table) in str(caught.value)


def test_an_oversized_auto_table_is_refused_before_it_is_read(auto_table, monkeypatch):
    from tinyvgg.ops import conv_auto
    auto_table.write_text(" " * 100)
    monkeypatch.setattr(conv_auto, "MAX_TABLE_BYTES", 99)
    with pytest.raises(conv_auto.AutoTableError, match="100 bytes"):
        conv_auto.entries_for("G", conv.AUTO_KERNELS_OF_JOB)


def test_the_benchmark_writes_the_table_that_auto_reads(auto_table, host_gpu, monkeypatch):
    """bench_gpu.py's path, on the emulator and the wall clock: the conv ladder's rows on a
    small layer, their winners written, and auto running each job's winner."""
    from tinyvgg.bench import bench_conv, ladder, write_auto_table
    from tinyvgg.bench.timing import WALL_CLOCK
    monkeypatch.setattr(ladder, "clock", lambda *args: WALL_CLOCK)
    kernels = {"fwd": ("implicit-gemm", "tile128"), "dx": ("register", "tile128"),
               "dw": ("implicit-gemm", "tile128")}
    row = bench_conv(None, 2, 4, 8, 6, 0, 1, kernels)
    write_auto_table([row], "abc1234")   # this GPU's name, the default table
    entries = json.loads(auto_table.read_text())["devices"]["Test GPU"]["entries"]
    assert {e["job"] for e in entries} == {"fwd", "dx", "dw"}
    for entry in entries:
        fastest = min(row["ms"][entry["job"]], key=row["ms"][entry["job"]].get)
        assert entry["kernel"] == fastest
        assert conv.auto_kernel(entry["job"], np.float32, 4, 8, 6, 6) == fastest
