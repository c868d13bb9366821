"""Writing files so that a crash or a full disk never leaves a half-written one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, data) -> Path:
    """Write ``data`` (str or bytes) to ``path`` all at once.

    The bytes go to a temporary file in the same folder, are flushed to disk
    (fsync), and the file is then renamed over ``path``, which on POSIX and
    Windows replaces it in one step: readers see the old file or the new
    one, never a part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
