"""Files we write appear whole or not at all."""
import os

import pytest

from tinyvgg.fileio import atomic_write


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

    from tinyvgg.fileio import atomic_write
    atomic_write(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)


def test_stale_temporaries_of_ours_are_removed_and_nothing_else(tmp_path):
    import tempfile

    from tinyvgg.fileio import remove_stale_temporaries
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


def test_a_writable_folder_is_made_and_an_unwritable_one_says_why(tmp_path, monkeypatch):
    from tinyvgg.fileio import check_writable_folder
    assert check_writable_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe is gone
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "file" / "sub" / "run"):
        with pytest.raises(NotADirectoryError, match=f"{tmp_path / 'file'} is a file"):
            check_writable_folder(path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        check_writable_folder(tmp_path / "full")
    assert list((tmp_path / "full").iterdir()) == []
