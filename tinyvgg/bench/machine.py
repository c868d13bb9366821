"""What a report says it was measured on: the machine, the GPU, the commit."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from .. import backend, workers
from .reference import torch_for


def machine_info() -> dict:
    """The CPU, its cores, the software versions and thread counts, the commit and the date."""
    torch = torch_for()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=here, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=here,
                               check=True).stdout.strip()
        commit += "+uncommitted" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        # a copy of the tree without its .git (e.g. shipped to a GPU machine) says which commit
        commit = os.environ.get("TINYVGG_COMMIT", "unknown")
    blas = "unknown"
    try:
        config = np.show_config(mode="dicts")
        blas = (f"{config['Build Dependencies']['blas']['name']} "
                f"{config['Build Dependencies']['blas']['version']}")
    except Exception:  # the layout of show_config differs between NumPy versions
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                numpy=np.__version__, numpy_blas=blas,
                torch=None if torch is None else torch.__version__,
                torch_threads=None if torch is None else torch.get_num_threads(),
                tinyvgg_cpu_threads=workers.cpu_threads(),
                commit=commit, date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))


def gpu_info(torch=None) -> dict:
    """The current GPU's name, CuPy's version and (with PyTorch) cuDNN's version number."""
    cupy = backend.cupy_module()
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return dict(device=name, cupy=cupy.__version__,
                cudnn=None if torch is None else torch.backends.cudnn.version())


def slug(name: str) -> str:
    """A machine's or device's name as part of a file name: "Intel(R) Xeon(R)" ->
    "intel-r-xeon-r"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
