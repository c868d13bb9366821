"""Writing files so that a crash or a full disk never leaves a half-written one."""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_writer(path):
    """Open a binary file that appears at ``path`` all at once, when the block ends.

    The bytes go to a temporary file in the same folder, are flushed to disk
    (fsync), and the file is then renamed over ``path``, which on POSIX and
    Windows replaces it in one step: readers see the old file or the new
    one, never a part. If the block raises, ``path`` is left untouched and
    the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        os.chmod(tmp, _default_file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, data) -> Path:
    """Write ``data`` (str or bytes) to ``path`` atomically (see :func:`atomic_writer`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_writer(path) as f:
        f.write(payload)
    return Path(path)


# mkstemp's random part: 8 characters from this alphabet (tempfile._RandomNameSequence)
_TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(folder, names=("*",)) -> list[Path]:
    """Delete the temporary files that :func:`atomic_writer` left in ``folder`` when a
    write was killed before its rename (``.<name>.<8 random characters>.tmp``), for the
    target names matching one of the ``names`` patterns (fnmatch). Nothing else is
    touched: not other files, not folders, not the targets themselves. Call it only where
    no other process is writing into the folder at the same time. Returns what was
    removed."""
    folder = Path(folder)
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _TEMPORARY_NAME.fullmatch(entry.name)
        if match is None or not any(fnmatch.fnmatchcase(match["name"], pattern)
                                    for pattern in names):
            continue
        if entry.is_file() and not entry.is_symlink():
            entry.unlink()
            removed.append(entry)
    return removed


class FolderNotWritableError(OSError):
    """``folder`` cannot hold the files a command writes; ``reason`` says why."""

    def __init__(self, folder, reason: str, code: int | None = None):
        super().__init__(code, reason, str(folder))
        self.folder, self.reason = Path(folder), reason

    def __str__(self):
        return f"cannot write to {self.folder}: {self.reason}"


def writable_folder(folder) -> Path:
    """Create ``folder`` (and its parents) if needed and write a probe file into it, so
    that a command finds out before its work, not after, that its results have nowhere
    to go. Raises :class:`FolderNotWritableError`: the folder is a file, sits under a
    file, is not ours to write, or its disk is full."""
    folder = Path(folder)
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                    None)
    if blocking is not None:
        where = "it is" if blocking == folder else f"{blocking} is"
        raise FolderNotWritableError(folder, f"{where} a file, not a folder", errno.ENOTDIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a file with content, flushed to disk: a full disk fails here, not at the end
        with tempfile.TemporaryFile(prefix=".write-probe.", dir=folder) as probe:
            probe.write(b"probe")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise FolderNotWritableError(folder, error.strerror or str(error),
                                     error.errno) from error
    return folder
