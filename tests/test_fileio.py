"""Files we write appear whole or not at all."""
import os

import pytest

from tinyvgg.io.fileio import atomic_write


def test_atomic_write_creates_and_replaces(tmp_path):
    target = tmp_path / "sub" / "results.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.md"
    atomic_write(target, "good")

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, "half-written")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_atomic_files_get_the_mode_a_plain_open_gives(tmp_path):
    import os
    import stat

    from tinyvgg.io.fileio import atomic_write
    atomic_write(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)


def test_stale_temporaries_of_ours_are_removed_and_nothing_else(tmp_path):
    import tempfile

    from tinyvgg.io.fileio import remove_stale_temporaries
    # what a write killed between mkstemp and the rename leaves: the names atomic_writer makes
    _, killed = tempfile.mkstemp(prefix=".checkpoint.npz.", suffix=".tmp", dir=tmp_path)
    ours = {os.path.basename(killed), ".metrics.json.a_9zq0xx.tmp",
            ".snapshot-epoch003.npz.abcdefgh.tmp"}
    others = {"checkpoint.npz", "notes.tmp", ".checkpoint.npz.tmp",  # no random part
              ".checkpoint.npz.abc.tmp", ".checkpoint.npz.ABCDEFGH.tmp",  # not mkstemp's
              ".checkpoint.npz.abcdefgh.tmp.bak", ".notes.txt.abcdefgh.tmp"}
    for name in (ours | others) - {os.path.basename(killed)}:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".model.npz.abcdefgh.tmp").mkdir()  # a folder is never ours
    removed = remove_stale_temporaries(tmp_path, ("checkpoint.npz", "snapshot-epoch*.npz",
                                                  "metrics.json", "model.npz"))
    assert {p.name for p in removed} == ours
    assert {p.name for p in tmp_path.iterdir()} == others | {".model.npz.abcdefgh.tmp"}
    assert remove_stale_temporaries(tmp_path, ("*",)) == [tmp_path / ".notes.txt.abcdefgh.tmp"]



def test_writable_folder_creates_the_folder_and_leaves_no_probe(tmp_path):
    from tinyvgg.io.fileio import writable_folder
    folder = tmp_path / "runs" / "bench"
    assert writable_folder(folder) == folder
    assert folder.is_dir() and list(folder.iterdir()) == []
    (folder / "kept.json").write_text("{}")
    writable_folder(folder)  # an existing folder, with files, is fine and left as it was
    assert [p.name for p in folder.iterdir()] == ["kept.json"]


def test_writable_folder_names_what_is_in_the_way(tmp_path, monkeypatch):
    import errno

    from tinyvgg.io.fileio import FolderNotWritableError, writable_folder
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(FolderNotWritableError) as error:
        writable_folder(a_file)
    assert str(error.value) == f"cannot write to {a_file}: it is a file, not a folder"
    with pytest.raises(FolderNotWritableError) as error:
        writable_folder(a_file / "a" / "b")
    assert error.value.reason == f"{a_file} is a file, not a folder"
    assert error.value.errno == errno.ENOTDIR and a_file.read_text() == "x"

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(FolderNotWritableError) as error:
        writable_folder(tmp_path / "full")
    assert error.value.reason == os.strerror(errno.ENOSPC)
    assert error.value.errno == errno.ENOSPC and list((tmp_path / "full").iterdir()) == []
