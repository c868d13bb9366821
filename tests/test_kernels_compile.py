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
