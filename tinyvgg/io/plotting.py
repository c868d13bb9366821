"""PNG figures: matplotlib on its file-only backend, written atomically.

matplotlib is an optional dependency (the ``data`` extra), imported only when a
figure is made.
"""
from __future__ import annotations

import io
from pathlib import Path

from .fileio import atomic_write

INSTALL_HINT = 'pip install matplotlib  (or  pip install -e ".[data]" )'


def pyplot(needed_by: str | None = None):
    """``matplotlib.pyplot`` on the Agg backend (no display needed).

    Without matplotlib: None, or, when ``needed_by`` names a caller that cannot
    do without its figure, an ImportError saying how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if needed_by is None:
            return None
        raise ImportError(f"{needed_by}: drawing its figure needs matplotlib; {INSTALL_HINT}")
    return plt


def save_png(figure, path, dpi: int = 110) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically, and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    return atomic_write(path, buffer.getvalue())
