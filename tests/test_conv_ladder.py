"""The CPU ladder of conv3x3 (tinyvgg.ops.conv_cpu): every rung against the naive float64
loops over odd sizes, thin and odd channel counts and memory layouts; gradient checks of
Conv3x3 with each rung selected; the selection, its environment variable and "auto";
PyTorch's conv2d; and a small VGG, forward and backward, with every rung."""
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvgg as tv
from helpers import assert_close, in_layout, leaf, randn, seeds
from tinyvgg import functional as F
from tinyvgg.models import vgg
from tinyvgg.ops import rows as rows_module
from tinyvgg.ops.conv import Conv3x3
from tinyvgg.ops.conv_cpu import conv_backward_naive, conv_naive
from tinyvgg.ops.rows import (affine_rows, column_sums, from_pixel_rows, im2col3x3, kernel_matrix,
                              pixel_rows, turned_kernel_rows)
from tinyvgg.ops.conv_cpu import (CONV3X3_CPU, CONV3X3_CPU_CHOICES, CONV3X3_CPU_ENV,
                                     WINOGRAD4X4_ALL_ONES, WINOGRAD4X4_OUTPUT,
                                     WINOGRAD4X4_POINTS, auto_conv3x3_cpu, conv3x3_backward,
                                     conv3x3_cpu, conv3x3_forward, implementation_for,
                                     toom_cook_matrices, use_conv3x3_cpu,
                                     using_conv3x3_cpu)
from tinyvgg.workers import using_cpu_threads

#: the fast rungs (naive is the reference they are held to)
FAST = ["im2col", "shifted", "winograd", "winograd4x4"]

#: float32 against the float64 reference, relative to max(1, max |reference|). Measured
#: worst over 150 random draws of the shapes below: 6e-7 for every rung; at VGG-16's
#: shapes (C up to 512, sums of 4608 products) 5e-7 for the GEMM rungs and 7e-7 for
#: Winograd F(2x2, 3x3), up to 4.5e-6 for F(4x4, 3x3). The GEMM rungs get the suite's
#: usual 1e-5; F(2x2, 3x3) 5e-5, because its transforms add up to four inputs and nine
#: products before and after the multiplies, so its rounding error can be several times
#: the direct sum's on unlucky inputs; F(4x4, 3x3), whose transforms multiply by powers
#: of its points (up to 8), 1e-4.
FLOAT32_RTOL = {"naive": 1e-5, "im2col": 1e-5, "shifted": 1e-5, "winograd": 5e-5,
                "winograd4x4": 1e-4}
FLOAT64_RTOL = 1e-10

#: layouts of the same values: helpers.in_layout's (C order, an NCHW view of NHWC memory
#: as conv outputs are, every other element of a buffer, a transposed view), and a view
#: with negative strides on every axis
LAYOUTS = ["contiguous", "channels_last", "strided", "reversed", "negative"]


def in_test_layout(array, layout):
    if layout == "negative":
        return np.flip(np.flip(array).copy())
    return in_layout(array, layout)


@st.composite
def conv_cases(draw, sizes=(1, 2, 3, 5, 7, 4, 8), channels=(1, 3, 17)):
    """(shape, out_channels, layout, seed): odd and even sizes, thin and odd channel counts."""
    shape = (draw(st.integers(1, 3)), draw(st.sampled_from(channels)),
             draw(st.sampled_from(sizes)), draw(st.sampled_from(sizes)))
    return shape, draw(st.sampled_from(channels)), draw(st.sampled_from(LAYOUTS)), draw(seeds)


def case_arrays(shape, c_out, layout, seed, dtype):
    """x, weight, bias and an output gradient, x and g in the given layout; the weight
    stored as the layers store it ((Cout, 3, 3, Cin) memory), in C order, or reversed."""
    x = in_test_layout(randn(seed, shape, dtype), layout)
    weight_layout = ("channels_last", "contiguous", "negative")[seed % 3]
    w = in_test_layout(randn(seed + 1, (c_out, shape[1], 3, 3), dtype), weight_layout)
    b = randn(seed + 2, (c_out,), dtype)
    g = in_test_layout(randn(seed + 3, (shape[0], c_out) + shape[2:], dtype), layout)
    return x, w, b, g


@pytest.fixture(autouse=True)
def restore_selection():
    """Each test may select rungs; the selection before it comes back afterwards."""
    before = conv3x3_cpu()
    yield
    use_conv3x3_cpu(before)


# --- every rung against the loops ---------------------------------------------------------

@pytest.mark.parametrize("name", FAST)
@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_rung_matches_the_naive_float64_reference(name, case, dtype):
    x, w, b, g = case_arrays(*case, dtype)
    as64 = [a.astype(np.float64) for a in (x, w, b, g)]
    rtol = FLOAT64_RTOL if dtype == np.float64 else FLOAT32_RTOL[name]
    y = conv3x3_forward(x, w, b, name)
    assert y.dtype == dtype
    assert_close(y, conv_naive(*as64[:3]), rtol=rtol, check_dtype=False)
    dx, dw, db = conv3x3_backward(x, w, g, name)
    for ours, reference in zip((dx, dw, db), conv_backward_naive(as64[0], as64[1], as64[3])):
        assert ours.dtype == dtype
        assert_close(ours, reference, rtol=rtol, check_dtype=False)


@pytest.mark.parametrize("name", list(CONV3X3_CPU) + ["auto"])
@given(case=conv_cases(sizes=(1, 2, 3, 5), channels=(1, 3, 5)))
def test_conv3x3_op_with_each_rung_matches_the_loops(name, case):
    """The autograd op dispatches forward and backward to the selected rung."""
    use_conv3x3_cpu(name)
    x, w, b, g = case_arrays(*case, np.float64)
    inputs = [leaf(x), leaf(w), leaf(b)]
    y = F.conv3x3(*inputs)
    assert_close(y, conv_naive(x, w, b), rtol=FLOAT64_RTOL)
    y.backward(g)
    for tensor, reference in zip(inputs, conv_backward_naive(x, w, g)):
        assert_close(tensor.grad, reference, rtol=FLOAT64_RTOL)


@pytest.mark.parametrize("name", FAST)
def test_outputs_and_input_gradients_are_channels_last_in_memory(name):
    """So the next layer reads pixel rows without a transposing copy."""
    x, w, b, g = case_arrays((2, 5, 6, 7), 4, "channels_last", 0, np.float32)
    y = conv3x3_forward(x, w, b, name)
    dx, _, _ = conv3x3_backward(x, w, g, name)
    for array in (y, dx):
        assert array.strides[1] == array.itemsize


@pytest.mark.parametrize("name", list(CONV3X3_CPU) + ["auto"])
def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(name):
    x, w, b = np.zeros((0, 16, 8, 8)), randn(0, (4, 16, 3, 3)), randn(1, (4,))
    y = conv3x3_forward(x, w, b, name)
    dx, dw, db = conv3x3_backward(x, w, np.zeros((0, 4, 8, 8)), name)
    assert y.shape == (0, 4, 8, 8) and dx.shape == x.shape
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros(4))


def test_im2col_rung_is_bit_for_bit_the_im2col_formulas():
    """The refactor moved conv3x3's CPU code into the ladder without changing a bit
    (on one thread: split over images, the products' edge rows may round differently)."""
    use_conv3x3_cpu("im2col")
    x, w, b, g = case_arrays((2, 6, 5, 7), 4, "channels_last", 6, np.float32)
    inputs = [leaf(x), leaf(w), leaf(b)]
    with using_cpu_threads(1):
        y = F.conv3x3(*inputs)
        w_matrix, rows = kernel_matrix(w), im2col3x3(x)
        expected_y = from_pixel_rows(affine_rows(rows, w_matrix, b), 2, 5, 7)
        y.backward(g)
    np.testing.assert_array_equal(y.numpy(), expected_y)
    g_rows = pixel_rows(g)
    expected = [from_pixel_rows(im2col3x3(g) @ turned_kernel_rows(w_matrix), 2, 5, 7),
                (g_rows.T @ rows).reshape(4, 3, 3, 6).transpose(0, 3, 1, 2),
                column_sums(g_rows)]
    for tensor, reference in zip(inputs, expected):
        np.testing.assert_array_equal(tensor.grad, reference)


@pytest.mark.parametrize("block_bytes", [1, 3 * 5 * 7 * 9 * 6 * 4])
def test_im2col_in_blocks_of_images_gives_the_same_rows_and_results(monkeypatch, block_bytes):
    """The im2col rung makes and multiplies its rows per block of images (one image, or
    three of the five here); rows kept for dw, y, dx and dw match the one-block formulas."""
    monkeypatch.setattr(rows_module, "IM2COL_BLOCK_BYTES", block_bytes)
    x, w, b, g = case_arrays((5, 6, 5, 7), 4, "channels_last", 7, np.float64)
    w_matrix, rows = kernel_matrix(w), im2col3x3(x)
    rung = CONV3X3_CPU["im2col"]
    y, saved = rung.forward(x, w, b, True, True)
    np.testing.assert_array_equal(saved["rows"], rows)
    assert_close(y, from_pixel_rows(affine_rows(rows, w_matrix, b), 5, 5, 7), rtol=1e-13)
    dx, dw, db = rung.backward(SimpleNamespace(**saved), g, True, True, True)
    assert_close(dx, from_pixel_rows(im2col3x3(g) @ turned_kernel_rows(w_matrix), 5, 5, 7),
                 rtol=1e-13)
    reference = conv_backward_naive(x, w, g)
    assert_close(dx, reference[0], rtol=1e-12)
    assert_close(dw, reference[1], rtol=1e-12)


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False),
                                   (False, False, True), (False, True, True)],
                         ids=["x", "weight", "bias", "weight+bias"])
def test_only_the_gradients_asked_for_are_computed_and_right(name, needs):
    use_conv3x3_cpu(name)
    x, w, b, g = case_arrays((2, 3, 5, 4), 2, "contiguous", 3, np.float64)
    inputs = [leaf(a, requires_grad=need) for a, need in zip((x, w, b), needs)]
    F.conv3x3(*inputs).backward(g)
    for tensor, need, reference in zip(inputs, needs, conv_backward_naive(x, w, g)):
        if need:
            assert_close(tensor.grad, reference, rtol=FLOAT64_RTOL)
        else:
            assert tensor.grad is None


# --- Winograd's matrices --------------------------------------------------------------------

def test_toom_cook_matrices_with_lavin_and_grays_points_are_theirs():
    """F(4x4, 3x3) with the points 0, 1, -1, 2, -2: the matrices printed in Lavin & Gray."""
    AT, G, BT = toom_cook_matrices((0, 1, -1, 2, -2), 4, 3)
    np.testing.assert_allclose(BT, [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0],
                                    [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                                    [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(G, [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6],
                                   [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                                   [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(AT, [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0],
                                    [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], atol=1e-15)


@given(m=st.integers(1, 4), r=st.integers(1, 3), seed=seeds,
       points=st.lists(st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0]),
                       min_size=6, max_size=6, unique=True))
def test_toom_cook_matrices_compute_the_correlation(m, r, seed, points):
    """A^T [(G g) * (B^T d)] is y[i] = sum_k g[k] d[i + k] for any distinct points."""
    n = m + r - 1
    if n < 2:
        return
    AT, G, BT = toom_cook_matrices(points[:n - 1], m, r)
    d, g = randn(seed, (n,)), randn(seed + 1, (r,))
    expected = [d[i:i + r] @ g for i in range(m)]
    assert_close(AT @ ((G @ g) * (BT @ d)), np.array(expected), rtol=1e-12)


def test_toom_cook_matrices_refuse_repeated_or_missing_points():
    with pytest.raises(ValueError, match=r"toom_cook_matrices: F\(4, 3\) needs 5 distinct "
                                         r"points, got \(0, 1, 1, 2, -2\)"):
        toom_cook_matrices((0, 1, 1, 2, -2), 4, 3)
    with pytest.raises(ValueError, match="needs 5 distinct points"):
        toom_cook_matrices((0, 1, -1), 4, 3)


def test_winograd4x4_adds_the_bias_where_every_output_sees_it():
    assert WINOGRAD4X4_POINTS[WINOGRAD4X4_ALL_ONES // 7] == 1.0
    np.testing.assert_array_equal(WINOGRAD4X4_OUTPUT[:, WINOGRAD4X4_ALL_ONES], np.ones(16))


def test_winograd4x4_float32_error_at_a_vgg_layer_shape():
    """256 channels on 8x8 maps (2304 products per output): forward, dx and dw stay within
    2e-5 of the largest float64 value (measured: about 4e-6)."""
    x, w, g = randn(0, (2, 256, 8, 8)), randn(1, (32, 256, 3, 3)) / 48, randn(2, (2, 32, 8, 8))
    f32 = [a.astype(np.float32) for a in (x, w, g)]
    y = conv3x3_forward(f32[0], f32[1], None, "winograd4x4")
    assert_close(y, conv3x3_forward(x, w, None, "im2col"), rtol=2e-5, check_dtype=False)
    for ours, reference in zip(conv3x3_backward(*f32, "winograd4x4")[:2],
                               conv3x3_backward(x, w, g, "im2col")[:2]):
        scale = np.abs(reference).max()
        assert np.abs(ours - reference).max() <= 2e-5 * scale


# --- gradient checks --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONV3X3_CPU) + ["auto"])
@pytest.mark.parametrize("shape, c_out", [((2, 2, 3, 5), 3), ((1, 3, 1, 4), 2),
                                          ((1, 1, 2, 2), 1)])
def test_gradcheck_with_each_rung_selected(name, shape, c_out):
    use_conv3x3_cpu(name)
    inputs = {"x": leaf(randn(0, shape)), "weight": leaf(randn(1, (c_out, shape[1], 3, 3))),
              "bias": leaf(randn(2, (c_out,)))}
    assert tv.gradcheck(F.conv3x3, inputs, mode="full") is True


# --- selection, environment variable, auto ------------------------------------------------

def test_selection_round_trip():
    # auto by default; the whole suite can be run with another rung through the variable
    assert conv3x3_cpu() == (os.environ.get(CONV3X3_CPU_ENV) or "auto")
    for name in CONV3X3_CPU_CHOICES:
        use_conv3x3_cpu(name)
        assert conv3x3_cpu() == name
    assert set(CONV3X3_CPU_CHOICES) == {"naive", "im2col", "shifted", "winograd",
                                        "winograd4x4", "auto"}


def test_using_conv3x3_cpu_selects_for_a_block_and_restores_after_errors():
    use_conv3x3_cpu("shifted")
    with using_conv3x3_cpu("im2col"):
        assert conv3x3_cpu() == "im2col"
    assert conv3x3_cpu() == "shifted"
    with pytest.raises(RuntimeError, match="inside"):
        with using_conv3x3_cpu("winograd4x4"):
            raise RuntimeError("inside")
    assert conv3x3_cpu() == "shifted"
    with pytest.raises(ValueError, match="unknown conv3x3 CPU implementation 'fft'"):
        with using_conv3x3_cpu("fft"):
            pass
    assert conv3x3_cpu() == "shifted"


def test_unknown_names_are_refused_with_the_choices():
    use_conv3x3_cpu("shifted")
    with pytest.raises(ValueError, match=r"use_conv3x3_cpu: unknown conv3x3 CPU implementation "
                                         r"'fft'; choose one of 'naive', 'im2col', 'shifted', "
                                         r"'winograd', 'winograd4x4', 'auto'"):
        use_conv3x3_cpu("fft")
    with pytest.raises(TypeError, match=r"use_conv3x3_cpu: .* must be a name.*got NoneType"):
        use_conv3x3_cpu(None)
    assert conv3x3_cpu() == "shifted"  # a refused name changes nothing


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_environment_variable_selects_at_import_and_a_bad_value_names_it():
    code = "from tinyvgg.ops.conv_cpu import conv3x3_cpu; print(conv3x3_cpu())"
    chosen = run_python(code, TINYVGG_CONV3X3_CPU="winograd")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip() == "winograd"
    bad = run_python(code, TINYVGG_CONV3X3_CPU="fastest")
    assert bad.returncode != 0
    assert ("environment variable TINYVGG_CONV3X3_CPU: unknown conv3x3 CPU implementation "
            "'fastest'; choose one of 'naive', 'im2col', 'shifted', 'winograd', 'winograd4x4', "
            "'auto'"
            in bad.stderr)


@pytest.mark.parametrize("c_in, size, expected", [
    (3, 32, "im2col"), (1, 32, "im2col"),          # the image
    (512, 2, "im2col"), (64, 3, "im2col"),         # maps below 4x4
    (8, 32, "winograd4x4"), (16, 32, "winograd4x4"), (64, 32, "winograd4x4"),
    (128, 16, "winograd4x4"), (512, 4, "winograd4x4")])
def test_auto_rule(c_in, size, expected):
    assert auto_conv3x3_cpu(c_in, size, size) == expected
    assert implementation_for((2, c_in, size, size), "auto") is CONV3X3_CPU[expected]


def test_auto_runs_the_rung_of_each_layer_shape(monkeypatch):
    """With "auto" selected, each call runs (and backward reuses) the rung its shape picks."""
    calls = []
    for name, rung in CONV3X3_CPU.items():
        def forward(*args, _name=name, _forward=rung.forward):
            calls.append(_name)
            return _forward(*args)
        monkeypatch.setitem(CONV3X3_CPU, name, rung._replace(forward=forward))
    use_conv3x3_cpu("auto")
    x_image, x_thin = leaf(randn(0, (1, 3, 16, 16))), leaf(randn(1, (1, 8, 16, 16)))
    x_wide, x_tiny = leaf(randn(2, (1, 64, 4, 4))), leaf(randn(3, (1, 64, 2, 2)))
    x_odd = leaf(randn(4, (1, 16, 5, 7)))
    for x in (x_image, x_thin, x_wide, x_tiny, x_odd):
        w = leaf(randn(4, (2, x.shape[1], 3, 3)))
        F.conv3x3(x, w).sum().backward()
        _, dw, _ = conv_backward_naive(x.numpy(), w.numpy(), np.ones((1, 2) + x.shape[2:]))
        assert_close(w.grad, dw, rtol=FLOAT64_RTOL)
    assert calls == ["im2col", "winograd4x4", "winograd4x4", "im2col", "winograd4x4"]


def test_backward_uses_the_rung_of_its_forward_even_after_a_switch():
    x, w, b, g = case_arrays((2, 3, 4, 6), 2, "contiguous", 5, np.float64)
    for first, second in [("winograd", "im2col"), ("shifted", "winograd"), ("im2col", "naive"),
                          ("winograd4x4", "shifted")]:
        use_conv3x3_cpu(first)
        inputs = [leaf(x), leaf(w), leaf(b)]
        y = F.conv3x3(*inputs)
        use_conv3x3_cpu(second)
        y.backward(g)
        for tensor, reference in zip(inputs, conv_backward_naive(x, w, g)):
            assert_close(tensor.grad, reference, rtol=FLOAT64_RTOL)


def saved_bytes(name, x, w, grad=True):
    """Bytes conv3x3's forward keeps for backward with a rung selected."""
    use_conv3x3_cpu(name)
    contexts = []

    class Recording(Conv3x3):
        @staticmethod
        def forward(ctx, *arrays):
            contexts.append(ctx)
            return Conv3x3.forward(ctx, *arrays)
    if grad:
        Recording.apply(x, w)
    else:
        with tv.no_grad():
            Recording.apply(x, w)
    return contexts[0].saved_nbytes


def test_shifted_and_winograd_keep_far_less_than_the_im2col_rows():
    x = leaf(randn(0, (2, 16, 16, 16), np.float32))
    w = leaf(randn(1, (16, 16, 3, 3), np.float32))
    rows = 9 * x.numpy().nbytes
    assert saved_bytes("im2col", x, w) >= rows
    # the padded input or the transformed input (2.25x for F(4x4, 3x3)), and the
    # transformed weight (16 or 36 values per 3x3 kernel; here the weight is 1.1x x)
    for name, most in (("shifted", 3), ("winograd", 3), ("winograd4x4", 4)):
        kept = saved_bytes(name, x, w)
        assert 0 < kept < most * x.numpy().nbytes < rows / 2
        assert saved_bytes(name, x, w, grad=False) == 0


# --- the array functions' checks ----------------------------------------------------------

def test_array_functions_refuse_bad_input_clearly():
    x, w, b, g = case_arrays((1, 2, 3, 3), 4, "contiguous", 0, np.float64)
    with pytest.raises(TypeError, match="conv3x3_forward: input must be a NumPy array, got Tensor"):
        conv3x3_forward(leaf(x), w)
    with pytest.raises(ValueError, match=r"conv3x3_forward: input has 2 channels but the weight "
                                         r"expects 3"):
        conv3x3_forward(x, randn(0, (4, 3, 3, 3)))
    with pytest.raises(TypeError, match="conv3x3_forward: inputs must share one dtype"):
        conv3x3_forward(x, w.astype(np.float32))
    with pytest.raises(ValueError, match=r"conv3x3_backward: grad_out must have shape "
                                         r"\(1, 4, 3, 3\), got \(1, 4, 3, 2\)"):
        conv3x3_backward(x, w, g[..., :2])
    with pytest.raises(ValueError, match="conv3x3_backward: unknown conv3x3 CPU implementation "
                                         "'direct'; choose one of"):
        conv3x3_backward(x, w, g, "direct")
    with pytest.raises(ValueError, match="implementation_for: unknown conv3x3 CPU implementation"):
        implementation_for(x.shape, "direct")


# --- PyTorch ----------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("name", list(CONV3X3_CPU))
@given(case=conv_cases(sizes=(1, 2, 3, 5, 6), channels=(1, 3, 17)),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_rung_matches_torch_conv2d(name, case, dtype):
    torch = pytest.importorskip("torch")
    shape, c_out, layout, seed = case
    if name == "naive":  # the loops are slow: keep their cases small
        shape, c_out = shape[:2] + (min(shape[2], 3), min(shape[3], 3)), min(c_out, 3)
    use_conv3x3_cpu(name)
    x, w, b, g = case_arrays(shape, c_out, layout, seed, dtype)
    ours = [leaf(x), leaf(w), leaf(b)]
    # fresh copies: a size-1 view with negative strides counts as contiguous in NumPy,
    # but torch refuses negative strides
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
    y, y_torch = F.conv3x3(*ours), torch.nn.functional.conv2d(*theirs, padding=1)
    rtol = FLOAT64_RTOL if dtype == np.float64 else FLOAT32_RTOL[name]
    assert_close(y, y_torch.detach().numpy(), rtol=rtol)
    y.backward(g)
    y_torch.backward(torch.from_numpy(g.copy()))
    for mine, reference in zip(ours, theirs):
        assert_close(mine.grad, reference.grad.numpy(), rtol=rtol)


# --- a whole network --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["shifted", "winograd", "winograd4x4", "auto"])
def test_small_vgg_forward_and_backward_agree_with_im2col(name):
    """VGG-11 with batch norm at width 0.25 on 32x32 (maps from 32x32 down to 2x2, 3 to 128
    channels; "auto" runs im2col and F(4x4, 3x3) in it), float64."""
    model = vgg("A", num_classes=5, batch_norm=True, dropout=0.0, width=0.25, head="compact",
                dtype=np.float64)
    images = randn(0, (2, 3, 32, 32))
    labels = np.array([1, 4])

    def logits_and_gradients(rung):
        use_conv3x3_cpu(rung)
        model.zero_grad()
        logits = model(tv.tensor(images))
        F.cross_entropy(logits, labels).backward()
        return logits.numpy(), [p.grad for p in model.parameters()]
    reference_logits, reference_grads = logits_and_gradients("im2col")
    logits, grads = logits_and_gradients(name)
    assert_close(logits, reference_logits, rtol=FLOAT64_RTOL)
    for grad, reference in zip(grads, reference_grads):
        assert_close(grad, reference, rtol=FLOAT64_RTOL)
