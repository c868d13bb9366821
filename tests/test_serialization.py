"""Weights in and out: .npz without pickle, atomic writes, and clear errors."""
import io
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
