"""The installed package: CUDA sources folder and the ``tinyvgg check`` command."""
from importlib import metadata

import tinyvgg
import tinyvgg.kernels
from tinyvgg.cli import main


def test_kernels_source_dir_exists_and_holds_the_readme():
    folder = tinyvgg.kernels.source_dir()
    assert folder.is_dir()
    assert (folder / "README.md").is_file()


def test_version_matches_the_installed_metadata():
    assert tinyvgg.__version__ == metadata.version("tinyvgg")


def test_check_command_passes(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out
    assert "negative control: wrong ReLU backward caught" in out
    assert "FAILED" not in out


def test_a_wheel_holds_every_subpackage():
    """setup.py lists packages by hand; a forgotten one would import fine from the
    source tree and be missing from a real install."""
    from pathlib import Path

    root = Path(tinyvgg.__file__).parent
    on_disk = {".".join(p.relative_to(root.parent).parts[:-1]) for p in root.rglob("__init__.py")}
    assert {"tinyvgg", "tinyvgg.models", "tinyvgg.data"} <= on_disk
    setup_text = (root.parent / "setup.py").read_text()
    for package in sorted(on_disk):
        assert f'"{package}"' in setup_text, f"setup.py does not list {package}"
