"""The installed package: CUDA sources folder and the ``tinyvgg check`` command."""
from importlib import metadata

import tinyvgg
from tinyvgg.cuda import source_dir
from tinyvgg.cli import main


def test_kernels_source_dir_exists_and_holds_the_readme():
    folder = source_dir()
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


# --- every import has an install step -------------------------------------------------

#: third-party modules that are optional by design: the tests compare with PyTorch when it
#: is installed and skip otherwise; CuPy comes with the GPU extra on GPU machines only
OPTIONAL_MODULES = {"torch": "PyTorch cross-checks", "cupy": 'the GPU extra (".[gpu]")',
                    "nvidia": "CUDA's NVRTC wheel, which the test extra installs on Linux only"}


def _imported_modules(folder):
    """Top-level names of every module imported by the .py files and the notebooks' code
    cells under ``folder``, including lazy imports inside functions,
    ``pytest.importorskip("name")`` and ``importlib.util.find_spec("name")`` (how the
    MNIST wheel is found)."""
    import ast
    from pathlib import Path

    import json

    sources = [path.read_text(encoding="utf-8") for path in Path(folder).rglob("*.py")]
    for path in Path(folder).rglob("*.ipynb"):  # the code cells of a notebook, as one file
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources.append("\n".join("".join(cell["source"]) for cell in cells
                                 if cell["cell_type"] == "code"))
    names = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call)
                  and getattr(node.func, "attr", "") in ("importorskip", "find_spec")
                  and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(node.args[0].value.split(".")[0])
    return names


def _required_distributions(extra=None):
    """Lower-case names of the distributions tinyvgg requires (with ``extra``: those the
    extra adds too), read from the installed metadata that pip resolved."""
    import re

    names = set()
    for requirement in metadata.requires("tinyvgg") or []:
        name, _, marker = requirement.partition(";")
        if not marker or (extra and f'extra == "{extra}"' in marker.replace("'", '"')):
            names.add(re.split(r"[ <>=!~\[(]", name.strip(), maxsplit=1)[0].lower())
    return names


def test_the_test_extra_installs_every_module_the_code_and_the_tests_import():
    """A fresh virtual environment gets only what ``pip install -e ".[test]"`` installs:
    every third-party module imported by tinyvgg (lazily or not), by the tests or by the
    tutorial notebooks must come
    from a requirement of the package or of its test extra, else the README's test command
    fails on a fresh machine while passing on one where the module happens to be."""
    import sys
    from pathlib import Path

    root = Path(tinyvgg.__file__).parent
    local = {p.stem for folder in ("tests", "benchmarks")
             for p in (root.parent / folder).glob("*.py")} | {"tinyvgg", "host_cuda"}
    imported = (_imported_modules(root) | _imported_modules(root.parent / "tests")
                | _imported_modules(root.parent / "notebooks")) - local
    third_party = {m for m in imported if m not in sys.stdlib_module_names} - set(OPTIONAL_MODULES)
    providers = metadata.packages_distributions()
    required = _required_distributions("test")
    missing = {}
    for module in sorted(third_party):
        distributions = {d.lower() for d in providers.get(module, [])}
        if not distributions & required:
            missing[module] = sorted(distributions) or "no installed distribution provides it"
    assert not missing, (f"imported but not installed by the test extra: {missing}; add them "
                         f"to setup.py's extras (required: {sorted(required)})")
