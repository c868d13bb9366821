"""The tutorial notebooks in notebooks/ run from top to bottom, as a student runs them, and
are stored without outputs."""
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: seconds any one cell may take; each notebook runs in seconds on a laptop CPU
CELL_TIMEOUT = 120


def test_the_tutorials_are_there():
    names = [path.stem for path in NOTEBOOKS]
    assert names == ["01-backprop-by-hand", "02-gradient-checking", "03-initialisation",
                     "04-kernel-ladder"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_are_stored_without_outputs(path):
    document = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in document["cells"] if cell["cell_type"] == "code"]
    assert code
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code), (
        f"{path.name} holds outputs; clear them before committing")


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch):
    """A kernel spec that starts this interpreter, so the notebooks import the tinyvgg of
    this environment rather than whatever a "python3" kernel on the machine would find."""
    spec = tmp_path / "kernels" / "tinyvgg-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinyvgg tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    # the kernel inherits this environment: a clone that is not installed imports from here
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # figures are drawn, never shown
    return "tinyvgg-tests"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_from_top_to_bottom(path, this_python_kernel):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name=this_python_kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # a failing cell raises CellExecutionError with its traceback
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert errors == []
