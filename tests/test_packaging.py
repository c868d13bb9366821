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
