"""Every CUDA source compiles, for float and double, without a GPU (nvcc --ptx).

NVRTC compiles the sources at run time on a GPU machine; here nvcc checks the
same code ahead of time, instantiating every kernel template as the loader
does, so a syntax or type error is caught in CI on a machine without a GPU."""
import re
import shutil
import subprocess

import pytest

from tinyvgg.cuda import CTYPES, _located, instantiations, kernel_names
from tinyvgg.kernels import source_dir

NVCC = shutil.which("nvcc")
SOURCES = sorted(source_dir().glob("*.cu"))


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
    result = subprocess.run([NVCC, "--ptx", "-arch=sm_90", "-std=c++17", "-Werror",
                             "all-warnings", str(wrapper), "-o", str(tmp_path / "out.ptx")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{path.name} does not compile:\n{result.stderr}"
    ptx = (tmp_path / "out.ptx").read_text()
    entries = re.findall(r"\.entry\s+(\w+)", ptx)
    assert len(entries) == len(instantiations(code)), (entries, instantiations(code))


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_kernel_source_suits_nvrtc_and_says_what_each_thread_computes(path):
    code = path.read_text()
    assert "#include" not in code, f"{path.name}: NVRTC compiles without system headers"
    header = code.split("\n\n", 1)[0]
    assert header.startswith("//") and "thread" in header.lower(), \
        f"{path.name} must open with a comment on what each thread computes"


def test_compile_errors_point_at_our_file():
    log = "/tmp/tmpab12/kern.cu(17): error: identifier \"oops\" is undefined"
    assert _located(log, "/pkg/kernels/relu.cu") == \
        "/pkg/kernels/relu.cu:17: error: identifier \"oops\" is undefined"


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
    """What CuPy's RawModule does on a GPU machine: NVRTC, no headers, each template named."""
    import ctypes
    code = path.read_text()
    program = ctypes.c_void_p()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), code.encode(), path.name.encode(),
                                    0, None, None) == 0
    try:
        for expression in instantiations(code):
            assert NVRTC.nvrtcAddNameExpression(program, expression.encode()) == 0
        options = [b"-std=c++17", b"--gpu-architecture=compute_90"]
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
