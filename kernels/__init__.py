"""The CUDA C sources, shipped inside the installed package as ``tinyvgg.kernels``."""
from pathlib import Path


def source_dir() -> Path:
    """The folder holding the ``.cu`` files, wherever the package is installed."""
    return Path(__file__).resolve().parent
