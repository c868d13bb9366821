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
