"""Every CUDA source compiles, for float and double, without a GPU (nvcc --ptx).

NVRTC compiles the sources at run time on a GPU machine; here nvcc checks the
same code ahead of time, instantiating every kernel template as the loader
does, so a syntax or type error is caught in CI on a machine without a GPU.
Inline PTX is only checked when PTX is assembled, so sources holding some are
also assembled with ptxas. The host's tables of selectable kernels and launch
shapes (tinyvgg.ops.conv_cuda, tinyvgg.ops.linear) are checked against the sources."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinyvgg.cuda import (CTYPES, _located, compile_options, instantiations, kernel_names,
                          source_dir)
from tinyvgg.ops import conv_cuda as conv, linear, tensor_cores

NVCC = shutil.which("nvcc")
PTXAS = shutil.which("ptxas")
SOURCES = sorted(source_dir().glob("*.cu"))
HEADERS = sorted(source_dir().glob("*.cuh"))
INCLUDE = re.compile(r"^\s*#\s*include\s*(\S+)", re.M)


def included(path) -> set:
    """The quoted #include names of a source and, through them, of our headers."""
    names, todo = set(), [path]
    while todo:
        for name in INCLUDE.findall(todo.pop().read_text()):
            if name not in names:
                names.add(name)
                header = source_dir() / name.strip('"')
                if name.startswith('"') and header.is_file():
                    todo.append(header)
    return names


def holds_inline_ptx(path) -> bool:
    """Whether a source, or a header it includes, has inline PTX (asm statements)."""
    texts = [path.read_text()] + [(source_dir() / name.strip('"')).read_text()
                                  for name in included(path)
                                  if (source_dir() / name.strip('"')).is_file()]
    return any(re.search(r"\basm\b", text) for text in texts)


INLINE_PTX = [p for p in SOURCES if holds_inline_ptx(p)]


def test_there_are_kernels_to_check():
    assert len(SOURCES) >= 1


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")
@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_kernel_source_compiles_for_float_and_double(path, tmp_path):
    code = path.read_text()
    templated, plain = kernel_names(code)
    assert templated or plain, f"{path.name} declares no kernels the loader can find"
    uses = [f"    (void)&{name}<{ctype}>;" for name in templated for ctype in CTYPES.values()]
    uses += [f"    (void)&{name};" for name in plain]
    wrapper = tmp_path / f"instantiate_{path.stem}.cu"
    wrapper.write_text(f'#include "{path}"\nvoid instantiate_every_kernel() {{\n'
                       + "\n".join(uses) + "\n}\n")
    # the wrapper lives in tmp_path: the kernels folder is the include path of common.cuh
    result = subprocess.run([NVCC, "--ptx", "-arch=sm_90", "-std=c++17", "-Werror",
                             "all-warnings", f"-I{path.parent}", str(wrapper),
                             "-o", str(tmp_path / "out.ptx")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{path.name} does not compile:\n{result.stderr}"
    ptx = (tmp_path / "out.ptx").read_text()
    entries = re.findall(r"\.entry\s+(\w+)", ptx)
    assert len(entries) == len(instantiations(code)), (entries, instantiations(code))
    if path in INLINE_PTX and PTXAS is not None:
        assert_assembles(tmp_path / "out.ptx", "sm_90", path)


def assert_assembles(ptx, arch: str, path):
    """ptxas turns PTX into machine code: the only step that reads inline PTX."""
    result = subprocess.run([PTXAS, f"-arch={arch}", str(ptx),
                             "-o", str(ptx.with_suffix(".cubin"))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{path.name} does not assemble for {arch}:\n{result.stderr}"


@pytest.mark.skipif(NVCC is None or PTXAS is None, reason="the CUDA toolkit is not installed")
@pytest.mark.parametrize("path", INLINE_PTX, ids=[p.stem for p in INLINE_PTX])
def test_inline_ptx_is_left_out_below_compute_capability_8(path, tmp_path):
    """TF32 tensor-core instructions need sm_80: on older GPUs (a T4 is sm_75) the rest of
    the file must still load, so the instructions sit behind a __CUDA_ARCH__ test."""
    code = path.read_text()
    templated, plain = kernel_names(code)
    uses = [f"    (void)&{name}<{ctype}>;" for name in templated for ctype in CTYPES.values()]
    uses += [f"    (void)&{name};" for name in plain]
    wrapper = tmp_path / f"instantiate_{path.stem}.cu"
    wrapper.write_text(f'#include "{path}"\nvoid instantiate_every_kernel() {{\n'
                       + "\n".join(uses) + "\n}\n")
    result = subprocess.run([NVCC, "--ptx", "-arch=sm_75", "-std=c++17", f"-I{path.parent}",
                             str(wrapper), "-o", str(tmp_path / "out.ptx")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{path.name} does not compile for sm_75:\n{result.stderr}"
    assert_assembles(tmp_path / "out.ptx", "sm_75", path)


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_kernel_source_suits_nvrtc_and_says_what_each_thread_computes(path):
    code = path.read_text()
    for included in INCLUDE.findall(code):
        # only our own headers beside the source (common.cuh), never a system header
        assert re.fullmatch(r'"\w+\.cuh"', included) and \
            (path.parent / included.strip('"')).is_file(), \
            f"{path.name}: NVRTC compiles without system headers (#include {included})"
    header = code.split("\n\n", 1)[0]
    assert header.startswith("//") and "thread" in header.lower(), \
        f"{path.name} must open with a comment on what each thread computes"


@pytest.mark.parametrize("header", HEADERS, ids=[p.name for p in HEADERS])
def test_shared_headers_include_nothing_and_are_not_copied_into_the_sources(header):
    """common.cuh and tiles.cuh hold the device code several files share: the sources
    include them (directly or through the other header) rather than keep their own copies,
    and they include no header but ours."""
    text = header.read_text()
    ours = {f'"{h.name}"' for h in HEADERS}
    assert set(INCLUDE.findall(text)) <= ours, \
        f"{header.name}: NVRTC compiles without system headers"
    helpers = set(re.findall(r"__device__\s+(?:__forceinline__\s+|inline\s+)*[\w:<>]+\s+(\w+)\s*\(",
                             text))
    assert helpers, f"{header.name} defines no device functions"
    users = [p for p in SOURCES if f'"{header.name}"' in included(p)]
    assert users, f"no source includes {header.name}"
    for path in SOURCES:
        copies = (helpers - {"operator"}) & set(re.findall(r"__device__[^;{(]*?\b(\w+)\s*\(", path.read_text()))
        assert not copies, f"{path.name} defines {sorted(copies)} again: include {header.name}"


def test_compile_errors_point_at_our_file():
    log = "/tmp/tmpab12/kern.cu(17): error: identifier \"oops\" is undefined"
    assert _located(log, "/pkg/kernels/activation.cu") == \
        "/pkg/kernels/activation.cu:17: error: identifier \"oops\" is undefined"


def _nvrtc_library():
    """libnvrtc from the CUDA toolkit or the nvidia-cuda-nvrtc-cu12 wheel, or None."""
    import ctypes
    import ctypes.util
    from pathlib import Path
    candidates = []
    try:
        import nvidia.cuda_nvrtc
        candidates += sorted(Path(list(nvidia.cuda_nvrtc.__path__)[0], "lib").glob("libnvrtc.so*"))
    except ImportError:
        pass
    found = ctypes.util.find_library("nvrtc")
    candidates += [found] if found else []
    for candidate in candidates:
        try:
            return ctypes.CDLL(str(candidate))
        except OSError:
            continue
    return None


NVRTC = _nvrtc_library()


@pytest.mark.skipif(NVRTC is None, reason="NVRTC (libnvrtc) is not installed")
@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_kernel_source_compiles_with_nvrtc_as_the_loader_asks(path):
    """What CuPy's RawModule does on a GPU machine: NVRTC, no system headers, the loader's
    options (the kernels folder as include path), each template named."""
    import ctypes
    code = path.read_text()
    program = ctypes.c_void_p()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), code.encode(), path.name.encode(),
                                    0, None, None) == 0
    try:
        for expression in instantiations(code):
            assert NVRTC.nvrtcAddNameExpression(program, expression.encode()) == 0
        options = [o.encode() for o in compile_options(path)] + [
            b"--gpu-architecture=compute_90"]
        status = NVRTC.nvrtcCompileProgram(program, len(options),
                                           (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        NVRTC.nvrtcGetProgramLog(program, log)
        assert status == 0, f"{path.name} fails under NVRTC:\n{_located(log.value.decode(), path)}"
        for expression in instantiations(code):
            lowered = ctypes.c_char_p()
            assert NVRTC.nvrtcGetLoweredName(program, expression.encode(),
                                             ctypes.byref(lowered)) == 0, expression
    finally:
        NVRTC.nvrtcDestroyProgram(ctypes.byref(program))


# --- the host's kernel tables agree with the sources ------------------------------------

KERNEL_TABLES = {
    "conv3x3 forward": ("conv3x3", conv.CONV3X3_KERNEL_FUNCTIONS),
    "conv3x3 weight gradient": ("conv3x3", conv.CONV3X3_WGRAD_KERNEL_FUNCTIONS),
    "gemm": ("linear", linear.GEMM_KERNEL_FUNCTIONS),
}


@pytest.mark.parametrize("table", KERNEL_TABLES)
def test_every_selectable_kernel_is_a_kernel_of_its_source(table):
    """A misspelt name in the host's table fails here, not only on a GPU."""
    file, functions = KERNEL_TABLES[table]
    templated, plain = kernel_names((source_dir() / f"{file}.cu").read_text())
    for name, function in functions.items():
        # float-only (tensor-core) kernels are plain extern "C" ones; the others exist for
        # both types
        declared = plain if tensor_cores.uses_tensor_cores(name) else templated
        assert function in declared, f"{table} kernel {name!r}: {function} is not in {file}.cu"
    assert "conv1x1_sum_splits" in kernel_names((source_dir() / "conv1x1.cu").read_text())[0]


def defines(file: str) -> dict:
    """The integer #defines of kernels/<file> (.cu unless the name has a suffix)."""
    text = (source_dir() / (file if "." in file else f"{file}.cu")).read_text()
    pairs = re.findall(r"^#define\s+(\w+)\s+(\d+)\b", text, re.M)
    return {name: int(value) for name, value in pairs}


def test_launch_shapes_match_the_constants_of_the_sources():
    c3, c1, gm = defines("conv3x3"), defines("conv1x1"), defines("linear")
    host = {
        "conv3x3": {"CONV_TILE": conv.CONV_TILE, "CONV_OUT_GROUP": conv.CONV_OUT_GROUP,
                    "REDUCE_THREADS": conv.REDUCE_THREADS, "REG_ROWS": conv.REG_ROWS,
                    "REG_COLS": conv.REG_COLS, "REG_THREADS_X": conv.REG_THREADS_X,
                    "REG_LAYERS": conv.REG_LAYERS, "REG_OUT_GROUP": conv.REG_OUT_GROUP,
                    "IG_BM": conv.IG_BM, "IG_BN": conv.IG_BN, "IG_THREADS": conv.IG_THREADS},
        "conv1x1": {"GEMM_TILE": conv.GEMM_TILE, "GEMM_SIDE": conv.GEMM_SIDE},
        "linear": {"GEMM_TILE": linear.GEMM_TILE, "GEMM_THREADS_SIDE": linear.GEMM_BLOCK[0],
                   "REG_BM": linear.REG_BM, "REG_BN": linear.REG_BN,
                   "REG_THREADS": linear.REG_THREADS, "SUM_COLUMNS": linear.SUM_COLUMNS,
                   "SUM_ROW_THREADS": linear.SUM_ROW_THREADS},
    }
    for file, source in (("conv3x3", c3), ("conv1x1", c1), ("linear", gm)):
        assert {name: source.get(name) for name in host[file]} == host[file], file
    mma = defines("mma.cuh")   # the pipelined tensor-core tile of linear.cu and conv3x3.cu
    assert (mma["MMA_BM"], mma["MMA_BN"], mma["MMA_THREADS"], mma["MMA_BK"]) == \
        (tensor_cores.MMA_TILE, tensor_cores.MMA_TILE, tensor_cores.MMA_THREADS,
         tensor_cores.MMA_BK)
    # 8 warps of 64 x 32 results cover the tile; per slice and operand each thread copies
    # two runs of 4 values; three stages of both operands fill the 48 KB a block may declare
    assert 8 * 64 * 32 == mma["MMA_BM"] * mma["MMA_BN"] and mma["MMA_THREADS"] == 8 * 32
    assert mma["MMA_BM"] * mma["MMA_BK"] == 2 * 4 * mma["MMA_THREADS"]
    assert mma["MMA_STAGES"] * 2 * mma["MMA_BM"] * mma["MMA_BK"] * 4 <= 48 * 1024
    tiles = defines("tiles.cuh")   # the 128 x 128 tile machinery of linear.cu and conv3x3.cu
    assert (tiles["TILE_BM"], tiles["TILE_BN"], tiles["TILE_BK"], tiles["TILE_THREADS"]) == \
        (linear.TILE_BM, linear.TILE_BN, linear.TILE_BK, linear.TILE_THREADS) == \
        (conv.TILE, conv.TILE, conv.TILE_BK, conv.TILE_THREADS)
    # 8 warps of 4 x 8 lanes, 8 x 8 results each, cover the tile; one run of 4 per operand
    assert (tiles["TILE_BM"] // 8) * (tiles["TILE_BN"] // 8) == tiles["TILE_THREADS"]
    assert tiles["TILE_BM"] * tiles["TILE_BK"] == 4 * tiles["TILE_THREADS"]
    # the sources' literal constants agree with each other
    assert c3["REG_COLS"] == c3["REG_THREADS_X"] * c3["REG_PIXELS"]
    assert c3["REG_OUT_GROUP"] == c3["REG_LAYERS"] * c3["REG_CHANNELS"]
    assert linear.GEMM_BLOCK[0] == linear.GEMM_BLOCK[1]
    # 8 x 8 results per thread cover the tile; thread t stages 4 weights and 2 x 4 pixels
    for tile_rows, tile_cols, threads in ((c3["IG_BM"], c3["IG_BN"], c3["IG_THREADS"]),
                                          (gm["REG_BM"], gm["REG_BN"], gm["REG_THREADS"])):
        assert (tile_rows // 8) * (tile_cols // 8) == threads
        assert threads == 2 * tile_rows == tile_cols


SELECTORS = [
    (conv.use_conv3x3_kernel, conv.conv3x3_kernel, conv.CONV3X3_KERNELS),
    (conv.use_conv3x3_wgrad_kernel, conv.conv3x3_wgrad_kernel,
     conv.CONV3X3_WGRAD_KERNELS),
    (linear.use_gemm_kernel, linear.gemm_kernel, linear.GEMM_KERNELS),
]


@pytest.fixture
def restore_kernels():
    """Every kernel selection a test makes is undone afterwards."""
    before = [current() for _, current, _ in SELECTORS]
    yield
    for (use, _, _), name in zip(SELECTORS, before):
        use(name)


@pytest.mark.parametrize("use, current, names", SELECTORS, ids=[s[0].__name__ for s in SELECTORS])
def test_kernel_selection_takes_every_listed_name_and_refuses_others(use, current, names,
                                                                    restore_kernels):
    for name in names:
        use(name)
        assert current() == name
    for wrong in ("fastest", "Tiled", "", None):
        with pytest.raises(ValueError, match=rf"{use.__name__}: unknown .*kernel {wrong!r}; "
                                             rf"choose one of '{names[0]}'"):
            use(wrong)
    assert current() == names[-1]


def test_tensor_cores_are_never_the_default_and_refuse_float64(restore_kernels):
    assert conv.CONV3X3_DEFAULT_KERNEL not in conv.CONV3X3_TF32_KERNELS
    assert set(conv.CONV3X3_TF32_KERNELS) <= set(conv.CONV3X3_KERNELS)
    for default in (conv.CONV3X3_DEFAULT_KERNEL, conv.CONV3X3_DEFAULT_WGRAD_KERNEL,
                    linear.GEMM_DEFAULT_KERNEL):
        assert tensor_cores.precision(default) == "strict"
    for name in conv.CONV3X3_KERNELS:
        conv.use_conv3x3_kernel(name)
        assert conv.conv3x3_kernel_for(np.float32) == name
        if tensor_cores.uses_tensor_cores(name):
            with pytest.raises(TypeError, match=rf"conv3x3: the '{name}' kernel runs on TF32 "
                                                r"tensor cores and takes float32 only, got "
                                                r"float64; for float64 select one of "
                                                r"'naive'"):
                conv.conv3x3_kernel_for(np.float64)
        else:
            assert conv.conv3x3_kernel_for(np.float64) == name


def test_environment_variables_choose_the_kernels_at_import():
    code = ("from tinyvgg.ops import conv_cuda as conv, linear; print(conv.conv3x3_kernel(), "
            "conv.conv3x3_wgrad_kernel(), linear.gemm_kernel())")
    env = dict(os.environ, TINYVGG_CONV3X3_KERNEL="implicit-gemm",
               TINYVGG_CONV3X3_WGRAD_KERNEL="implicit-gemm", TINYVGG_GEMM_KERNEL="register")
    chosen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert chosen.stdout.split() == ["implicit-gemm", "implicit-gemm", "register"], chosen.stderr
    env["TINYVGG_CONV3X3_WGRAD_KERNEL"] = "atomic"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0
    assert ("ValueError: environment variable TINYVGG_CONV3X3_WGRAD_KERNEL: unknown conv3x3 "
            "weight-gradient kernel 'atomic'") in refused.stderr
