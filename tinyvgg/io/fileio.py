"""Files in and out: writes that a crash or a full disk never leave half-written, and
``.npz`` archives read without running code or allocating more than the file holds."""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import math
import os
import re
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np


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


# --- reading ------------------------------------------------------------------------------

def require_file(path, owner: str, what: str, error=ValueError) -> Path:
    """``path`` as a Path when it is a regular file; else ``error`` (FileNotFoundError when
    nothing is there) saying what it is instead of ``what`` it should be."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        raise error(f"{owner} {path}: is a directory, expected {what}")
    if path.exists():
        raise error(f"{owner} {path}: is not a regular file, expected {what}")
    raise FileNotFoundError(f"{owner} {path}: no such file")


#: how many times its size on disk an .npz may inflate to. Deflate shrinks arrays of
#: weights by a few percent; only long runs of equal bytes shrink a hundredfold, so more
#: is a zip bomb: a small file whose members claim gigabytes.
NPZ_MAX_INFLATION = 100
#: what any .npz may inflate to, whatever its size on disk
NPZ_MIN_INFLATED_BYTES = 16 * 2**20
#: the dtype kinds an .npz member may hold: booleans, numbers and text, never objects
NPY_KINDS = "biufcSU"
#: what can go wrong inside a zip member: damaged, truncated, encrypted or compressed by
#: a method Python lacks
_MEMBER_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error,
                  RuntimeError, NotImplementedError)
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


def byte_size(n: int) -> str:
    """``n`` bytes in words: 64 bytes, 2.5 KB, 400.0 MB, 4.0 TB."""
    if n < 1000:
        return f"{n} bytes"
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"


class NpzReader:
    """The arrays of an ``.npz`` archive (what ``np.savez`` writes), checked before any
    is read, so that a damaged or hostile file is refused instead of running code or
    exhausting memory:

    * the members together may inflate to at most :data:`NPZ_MAX_INFLATION` times the
      file's size (or :data:`NPZ_MIN_INFLATED_BYTES`), as the zip directory declares;
    * every member is a ``.npy`` array of booleans, numbers or text (never pickled
      objects), whose header's shape and item size account for exactly the bytes the
      directory says the member inflates to; a header that declares terabytes is
      refused without allocating them.

    ``headers`` maps each key (the member's name without ``.npy``) to its (shape,
    dtype), which :meth:`check_shapes` compares with what a model expects before a
    byte of data is read; :meth:`read` returns one array, :meth:`read_all` all of them
    in order. Problems raise ``error`` (FileNotFoundError for a missing file) with a
    message that starts with ``"{owner} {path}: "``; ``what`` names what the file
    should be, for the message when ``path`` is a directory.
    """

    def __init__(self, path, owner: str = "read_npz", error=ValueError,
                 what: str = "an .npz file"):
        self.path = require_file(path, owner, what, error)
        self.owner, self.error = owner, error
        if not zipfile.is_zipfile(self.path):
            # np.load would take a file that is not a zip for a pickle
            self._fail("not a readable .npz file (not a zip archive; a partial or foreign "
                       "file?)")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except _MEMBER_ERRORS as problem:
            self._fail(f"not a readable .npz file ({problem})")
        try:
            self._members = self._check_directory()
            self.headers = OrderedDict((key, header[:2])
                                       for key, (_, header) in self._members.items())
        except BaseException:
            self._zip.close()
            raise

    def _fail(self, message):
        raise self.error(f"{self.owner} {self.path}: {message}") from None

    def _check_directory(self):
        infos = self._zip.infolist()
        inflated = sum(info.file_size for info in infos)
        on_disk = self.path.stat().st_size
        if inflated > max(NPZ_MAX_INFLATION * on_disk, NPZ_MIN_INFLATED_BYTES):
            self._fail(f"its members would inflate to {byte_size(inflated)}, "
                       f"{inflated / max(on_disk, 1):.0f} times the file's "
                       f"{byte_size(on_disk)}; more than {NPZ_MAX_INFLATION} times is refused "
                       f"(a zip bomb?)")
        members = OrderedDict()
        for info in infos:
            if not info.filename.endswith(".npy"):
                self._fail(f"member {info.filename!r} is not a .npy array")
            key = info.filename[:-len(".npy")]
            if key in members:
                self._fail(f"holds {key!r} twice")
            members[key] = (info, self._check_header(info))
        return members

    def _check_header(self, info):
        name = info.filename
        version = None
        try:
            with self._zip.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                if version in _NPY_HEADER_READERS:
                    shape, fortran_order, dtype = _NPY_HEADER_READERS[version](stream)
                    data_start = stream.tell()
        except _MEMBER_ERRORS as problem:
            self._fail(f"{name}: not a readable .npy array ({problem})")
        if version not in _NPY_HEADER_READERS:
            self._fail(f"{name}: .npy format version {version[0]}.{version[1]} is not "
                       f"supported (1.0 and 2.0 are)")
        if dtype.hasobject:
            self._fail(f"{name} holds Python objects, not plain arrays; refusing to unpickle "
                       f"them (it could run code)")
        if dtype.kind not in NPY_KINDS or dtype.itemsize == 0:
            self._fail(f"{name}: dtype {dtype} is not one of booleans, numbers or text")
        declared = math.prod(shape) * dtype.itemsize
        held = info.file_size - data_start
        if min(shape, default=0) < 0 or declared != held:
            self._fail(f"{name}: its header declares shape {shape} of {dtype} "
                       f"({byte_size(declared)}), but the member holds {byte_size(held)} "
                       f"of data")
        return shape, dtype, fortran_order

    def check_shapes(self, expected: dict) -> None:
        """Refuse, before reading, members whose shape differs from ``expected[key]``."""
        wrong = [f"{key}: expected {tuple(shape)}, found {self.headers[key][0]}"
                 for key, shape in expected.items()
                 if key in self.headers and tuple(shape) != self.headers[key][0]]
        if wrong:
            self._fail("wrong shapes: " + "; ".join(wrong))

    def read(self, key) -> np.ndarray:
        info, _ = self._members[key]
        try:
            with self._zip.open(info) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
        except _MEMBER_ERRORS as problem:
            self._fail(f"{info.filename}: not a readable .npy array ({problem})")

    def read_all(self) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict((key, self.read(key)) for key in self._members)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_npz(path, owner: str = "read_npz", error=ValueError,
             what: str = "an .npz file") -> "OrderedDict[str, np.ndarray]":
    """Every array of an ``.npz`` file, read safely (see :class:`NpzReader`)."""
    with NpzReader(path, owner, error, what) as archive:
        return archive.read_all()
