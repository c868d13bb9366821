"""Files given to the commands: a damaged, hostile or misnamed checkpoint, image or data
folder is refused, before any training, with one line that names the file and says what
is wrong with it; the files already there stay as they were."""
import io
import json
import re
import shutil
import struct
import zipfile
import zlib

import numpy as np
import pytest

from test_train import digits_dir, small_config  # noqa: F401 (digits_dir is a fixture)
from tinyvgg.io.checkpoint import CheckpointError
from tinyvgg.cli import main
from tinyvgg.train import TrainConfig, load_trained, train


@pytest.fixture(scope="module")
def finished(digits_dir, tmp_path_factory):  # noqa: F811
    """The checkpoint of a finished one-epoch run."""
    out = tmp_path_factory.mktemp("finished")
    train(small_config(digits_dir, out, epochs=1, dtype="float32"), progress=False,
          log=lambda m: 0)
    return out / "checkpoint.npz"


def stored(path):
    """(arrays, meta) of a checkpoint, read by NumPy directly: the tests' own files."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return arrays, json.loads(str(arrays.pop("meta")[()]))


def write_checkpoint(path, arrays, meta):
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def cli_error(argv, capsys) -> str:
    """The one line a command that must fail prints, after checking it exits with 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    return error


def resume(path):
    return ["train", "--resume", str(path), "--epochs", "2", "--no-progress"]


def evaluate(path):
    return ["eval", str(path)]


def without(key):
    return lambda meta: {k: v for k, v in meta.items() if k != key}


def setting(path, value):
    def change(meta):
        entry = meta
        for name in path[:-1]:
            entry = entry[name]
        entry[path[-1]] = value
        return meta
    return change


@pytest.mark.parametrize("change, commands, message", [
    (without("config"), (resume, evaluate),
     "its metadata has no 'config', which tinyvgg train writes into every checkpoint"),
    (without("scheduler"), (resume,), "its metadata has no 'scheduler'"),
    (without("data"), (evaluate,), "its metadata has no 'data'"),
    (setting(("config", "width"), "abc"), (resume, evaluate),
     "its run's settings are invalid: width must be a number, got 'abc'"),
    (setting(("config", "lr"), -1.0), (resume, evaluate),
     "its run's settings are invalid: learning rate must be a positive number, got -1.0"),
    (setting(("epoch",), "1"), (resume,), "meta entry 'epoch' must be a whole number >= 0, "
                                          "got '1'"),
    (setting(("epoch",), 99), (resume, evaluate),
     "it stands at epoch 99, batch 0, past the end of its run (epochs = 1)"),
    (setting(("sums",), []), (resume,), "meta entry 'sums' must be an object with loss, "
                                        "correct and count, got []"),
    (setting(("history",), [{"epoch": 1}]), (resume,), "meta entry 'history' must be a list"),
    (setting(("data", "in_channels"), "1"), (evaluate,), "meta entry 'data' must be an object"),
    (setting(("data", "std"), [0.0]), (evaluate,), "std > 0"),
    (lambda meta: [meta], (resume, evaluate), "its metadata must be a JSON object, got list"),
    (setting(("test",), {"accuracy": "high"}), (resume, evaluate),
     "meta entry 'test' must be null or an object with the test accuracy and loss"),
], ids=["no config", "no scheduler", "no data", "width abc", "lr -1", "epoch text",
        "epoch 99", "sums list", "history row", "in_channels text", "std 0", "meta list",
        "test text"])
def test_malformed_metadata_is_refused_naming_the_file(finished, tmp_path, capsys, change,
                                                       commands, message):
    arrays, meta = stored(finished)
    path = write_checkpoint(tmp_path / "checkpoint.npz", arrays, change(meta))
    before = path.read_bytes()
    for command in commands:
        argv = command(path)
        error = cli_error(argv, capsys)
        assert error.startswith(f"tinyvgg {argv[0]}: checkpoint {path}: "), error
        assert message in error, error
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    assert path.read_bytes() == before


def npy_header(shape, dtype="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def with_member_replaced(source, target, name, write):
    """A copy of the checkpoint ``source`` whose member ``name`` ``write(archive, info)``
    writes instead."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename == name:
                write(new, zipfile.ZipInfo(name))
            else:
                new.writestr(info, old.read(info))
    return target


def test_an_array_header_declaring_terabytes_is_refused_before_allocating(finished, tmp_path,
                                                                          capsys):
    def terabytes(archive, info):
        archive.writestr(info, npy_header((10**12,)) + bytes(range(64)))
    path = with_member_replaced(finished, tmp_path / "huge.npz", "model/features.0.weight.npy",
                                terabytes)
    error = cli_error(evaluate(path), capsys)
    assert error == (f"tinyvgg eval: checkpoint {path}: model/features.0.weight.npy: its header "
                     f"declares shape (1000000000000,) of float32 (4.0 TB), but the member "
                     f"holds 64 bytes of data\n")


def test_a_zip_bomb_is_refused_before_inflating(finished, tmp_path, capsys):
    """64 MB of zeros deflate to 64 KB, in a file of some 400 KB."""
    def bomb(archive, info):
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            member.write(npy_header((16 * 2**20,)))
            for _ in range(64):
                member.write(bytes(2**20))
    path = with_member_replaced(finished, tmp_path / "bomb.npz", "model/features.0.weight.npy",
                                bomb)
    error = cli_error(evaluate(path), capsys)
    assert re.fullmatch(rf"tinyvgg eval: checkpoint {re.escape(str(path))}: its members would "
                        rf"inflate to 6\d\.\d MB, \d+ times the file's \d+\.\d KB; more than "
                        rf"100 times is refused \(a zip bomb\?\)\n", error), error


def test_weights_of_the_wrong_shape_are_refused_before_they_are_read(finished, tmp_path,
                                                                     capsys, monkeypatch):
    arrays, meta = stored(finished)
    expected = arrays["model/features.0.weight"].shape
    wrong = (2 * expected[0],) + expected[1:]
    arrays["model/features.0.weight"] = np.random.default_rng(0).standard_normal(wrong)
    path = write_checkpoint(tmp_path / "checkpoint.npz", arrays, meta)
    shapes_read = []
    read_array = np.lib.format.read_array

    def recording_read_array(*args, **kwargs):
        array = read_array(*args, **kwargs)
        shapes_read.append(array.shape)
        return array
    monkeypatch.setattr(np.lib.format, "read_array", recording_read_array)
    error = cli_error(evaluate(path), capsys)
    assert error == (f"tinyvgg eval: checkpoint {path}: wrong shapes: model/features.0.weight: "
                     f"expected {expected}, found {wrong}\n")
    assert wrong not in shapes_read


def test_weights_missing_from_a_checkpoint_are_named_with_the_file(finished, tmp_path):
    arrays, meta = stored(finished)
    del arrays["model/features.0.bias"]
    path = write_checkpoint(tmp_path / "checkpoint.npz", arrays, meta)
    with pytest.raises(CheckpointError, match=rf"checkpoint {re.escape(str(path))}: "
                                              rf"load_state_dict into VGG: missing keys: "
                                              rf"features.0.bias$"):
        load_trained(path)


@pytest.mark.parametrize("changes, message", [
    ({"width": "abc"}, "width must be a number, got 'abc'"),
    ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
    ({"epochs": True}, "epochs must be an integer, got True"),
    ({"batch_norm": "yes"}, "batch_norm must be True or False, got 'yes'"),
    ({"data_dir": 3}, "data_dir must be a string or None, got 3")])
def test_settings_of_the_wrong_type_are_refused(changes, message):
    with pytest.raises(TypeError, match=f"^train: {re.escape(message)}$"):
        TrainConfig(**changes)


def test_paths_as_settings_are_kept_as_text_for_the_json_files(tmp_path):
    config = TrainConfig(data_dir=tmp_path / "data", out=tmp_path / "run")
    assert config.data_dir == str(tmp_path / "data") and config.out == str(tmp_path / "run")
    assert json.loads(json.dumps(config.to_dict()))["out"] == str(tmp_path / "run")


# --- misnamed files: the CLI's messages --------------------------------------------------

def test_a_data_dir_that_is_a_file_says_so(tmp_path, capsys):
    path = tmp_path / "digits.csv"
    path.write_text("0,1,2\n")
    for dataset, message in (("mnist", f"no train data in {path} (it is a file, not a folder)"),
                             ("folder", f"{path} is a file, not a folder")):
        error = cli_error(["train", "--dataset", dataset, "--data-dir", str(path),
                           "--out", str(tmp_path / "run"), "--no-progress"], capsys)
        assert message in error and "does not exist" not in error, error
        assert not (tmp_path / "run").exists()


def test_a_directory_given_as_a_checkpoint_says_so(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    expected = f"checkpoint {folder}: is a directory, expected a checkpoint file (.npz)\n"
    for argv in (["eval", str(folder)], ["eval", str(folder), str(folder), "--ensemble"],
                 ["predict", str(folder), str(tmp_path / "x.png")],
                 ["train", "--resume", str(folder), "--no-progress"]):
        assert cli_error(argv, capsys) == f"tinyvgg {argv[0]}: {expected}"


def test_predict_names_an_image_it_cannot_read_once(finished, tmp_path, capsys):
    missing, folder = tmp_path / "missing.png", tmp_path / "images"
    folder.mkdir()
    assert cli_error(["predict", str(finished), str(missing)], capsys) == \
        f"tinyvgg predict: cannot read image {missing}: no such file\n"
    assert cli_error(["predict", str(finished), str(folder)], capsys) == \
        f"tinyvgg predict: cannot read image {folder}: is a directory, expected an image file\n"


def test_predict_refuses_an_image_that_claims_too_many_pixels(finished, tmp_path, capsys):
    pytest.importorskip("PIL.Image")

    def chunk(kind, data):
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum
    # a PNG of 30000 x 30000 grey pixels, as far as its header goes
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    error = cli_error(["predict", str(finished), str(path)], capsys)
    assert error.startswith(f"tinyvgg predict: cannot read image {path}: Image size "
                            f"(900000000 pixels) exceeds limit"), error


def test_eval_of_a_pattern_that_matched_nothing_says_so(finished, tmp_path, capsys):
    pattern = tmp_path / "snapshot-epoch*.npz"
    assert cli_error(["eval", str(pattern), "--ensemble"], capsys) == (
        f"tinyvgg eval: no file matches {pattern} (a shell passes on a pattern that matches "
        f"nothing as it is)\n")
    missing = tmp_path / "snapshot-epoch001.npz"
    assert cli_error(["eval", str(missing), "--ensemble"], capsys) == \
        f"tinyvgg eval: checkpoint {missing}: no such file\n"
    assert cli_error(["predict", str(finished), str(tmp_path / "digit?.png")], capsys) == (
        f"tinyvgg predict: no file matches {tmp_path / 'digit?.png'} (a shell passes on a "
        f"pattern that matches nothing as it is)\n")
    assert "give at least two" in cli_error(["eval", str(finished), "--ensemble"], capsys)
