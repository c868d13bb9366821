"""Weights in and out: .npz without pickle, atomic writes, and clear errors."""
import io
import re
import zipfile

import numpy as np
import pytest

import tinyvgg as tv
from tinyvgg.models import vgg


def small(name="vgg11_bn", **options):
    return vgg(name, width=0.125, head="compact", num_classes=10, **options)


def images(seed=0):
    return tv.tensor(np.random.default_rng(seed).standard_normal((2, 3, 32, 32))
                     .astype(np.float32))


def test_npz_round_trip_keeps_names_order_dtypes_and_outputs(tmp_path):
    tv.manual_seed(0)
    model = small()
    model.train()
    model(images())  # moves the running statistics away from their initial values
    path = tv.save(model, tmp_path / "weights.npz")
    state = tv.load(path)
    original = model.state_dict()
    assert list(state) == list(original)
    for key in original:
        assert state[key].dtype == original[key].dtype and np.array_equal(state[key],
                                                                          original[key])
    assert state["features.1.num_batches_tracked"] == 1
    copy = small(init_weights=False)
    copy.load_state_dict(state)
    model.eval(), copy.eval()
    np.testing.assert_array_equal(copy(images(1)).numpy(), model(images(1)).numpy())


def test_constructor_loads_weights_from_a_file(tmp_path):
    model = small()
    tv.save(model.state_dict(), tmp_path / "w.npz")
    loaded = small(weights=tmp_path / "w.npz")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                     model.state_dict().values()))


def test_npz_with_python_objects_is_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"features.0.weight": np.array([{"payload": 1}], dtype=object)})
    with pytest.raises(ValueError, match="holds Python objects.*refusing to unpickle"):
        tv.load(path)


def test_unreadable_and_missing_files_give_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz: not a readable .npz file"):
        tv.load(garbage)
    with pytest.raises(FileNotFoundError, match="nowhere.npz: no such file"):
        tv.load(tmp_path / "nowhere.npz")
    with pytest.raises(ValueError, match="unknown weights format '.bin'"):
        tv.load(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="use .npz"):
        tv.save(small(), tmp_path / "weights")


def test_save_rejects_what_is_not_a_state_dict(tmp_path):
    with pytest.raises(TypeError, match="expected a Module or a state_dict"):
        tv.save([1, 2, 3], tmp_path / "w.npz")
    assert not list(tmp_path.iterdir())


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    tv.save(small(), path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tv.save(small(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_npz_file_is_a_plain_zip_of_npy_arrays(tmp_path):
    path = tv.save(small(), tmp_path / "w.npz")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[0] == "features.0.weight.npy"
        header = archive.read(names[0])[:10]
    assert header.startswith(b"\x93NUMPY")
    array = np.load(io.BytesIO(zipfile.ZipFile(path).read(names[0])), allow_pickle=False)
    assert array.shape == (8, 3, 3, 3)


def npy_header(shape, dtype="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("shape, data, fragments", [
    ((10**12,), 64, ("declares shape (1000000000000,) of float32 (4.0 TB)", "holds 64 bytes")),
    ((10,), 20, ("declares shape (10,) of float32 (40 bytes)", "holds 20 bytes")),
    ((10,), 44, ("declares shape (10,) of float32 (40 bytes)", "holds 44 bytes"))],
    ids=["terabytes", "cut short", "trailing bytes"])
def test_load_checks_each_array_header_against_its_member_before_allocating(tmp_path, shape,
                                                                           data, fragments):
    path = tmp_path / "w.npz"
    payload = np.random.default_rng(0).standard_normal(data // 4 + 1).astype("<f4")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("features.0.weight.npy", npy_header(shape) + payload.tobytes()[:data])
    with pytest.raises(ValueError, match="(?s)load .*w.npz: features.0.weight.npy: its header "
                       + ".*".join(map(re.escape, fragments))):
        tv.load(path)


def test_load_refuses_a_zip_bomb_before_inflating_it(tmp_path, monkeypatch):
    """32 MB of zeros deflate to 32 KB: a small file whose member claims a thousand times
    its size."""
    path = tmp_path / "bomb.npz"
    info = zipfile.ZipInfo("features.0.weight.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as archive, archive.open(info, "w") as member:
        member.write(npy_header((8 * 2**20,)))
        for _ in range(32):
            member.write(bytes(2**20))
    assert path.stat().st_size < 100_000

    def read_array(*args, **kwargs):
        raise AssertionError("an array was read")
    monkeypatch.setattr(np.lib.format, "read_array", read_array)
    with pytest.raises(ValueError, match=r"bomb.npz: its members would inflate to 33.6 MB, "
                                         r"\d+ times the file's .* \(a zip bomb\?\)"):
        tv.load(path)


def test_load_refuses_a_member_that_is_not_an_array(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.random.default_rng(0).standard_normal(3))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "not an array")
    with pytest.raises(ValueError, match="w.npz: member 'notes.txt' is not a .npy array"):
        tv.load(path)


def test_load_of_a_directory_says_it_is_one(tmp_path):
    (tmp_path / "w.npz").mkdir()
    with pytest.raises(ValueError, match=r"load .*w.npz: is a directory, expected a weights "
                                         r"file \(.npz\)"):
        tv.load(tmp_path / "w.npz")


def test_load_reads_what_savez_compressed_writes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
              "scalar": np.array(rng.standard_normal()), "mask": rng.random(5) > 0.5,
              "empty": np.zeros((0, 3), np.int64), "steps": rng.integers(0, 9, 4, np.uint8)}
    np.savez_compressed(tmp_path / "w.npz", **arrays)
    loaded = tv.load(tmp_path / "w.npz")
    assert list(loaded) == list(arrays)
    for key, array in arrays.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        np.testing.assert_array_equal(loaded[key], array)
