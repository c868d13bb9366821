"""The shape of the house: imports point down, the device is chosen in one place, and a
clone imports without being installed."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tinyvgg

PACKAGE = Path(tinyvgg.__file__).resolve().parent
ROOT = PACKAGE.parent

#: what each layer may never import (arrows point down: tensors -> ops -> functional -> nn
#: -> models -> applications; tools and io are used by applications, never by the engine)
APPLICATIONS = ("tinyvgg.cli", "tinyvgg.train", "tinyvgg.bench", "tinyvgg.experiments")
NEVER_IMPORTS = {
    "tinyvgg.tensor": ("tinyvgg.ops", "tinyvgg.functional", "tinyvgg.nn", "tinyvgg.models",
                       "tinyvgg.tools", "tinyvgg.io", *APPLICATIONS),
    "tinyvgg.ops": ("tinyvgg.functional", "tinyvgg.nn", "tinyvgg.models", "tinyvgg.tools",
                    "tinyvgg.io", "tinyvgg.data", "tinyvgg.optim", *APPLICATIONS),
    "tinyvgg.nn": ("tinyvgg.models", "tinyvgg.tools", *APPLICATIONS),
    "tinyvgg.models": APPLICATIONS,
    "tinyvgg.tools": APPLICATIONS,
    "tinyvgg.io": ("tinyvgg.ops", "tinyvgg.nn", "tinyvgg.models", "tinyvgg.tools",
                   *APPLICATIONS),
    "tinyvgg.data": ("tinyvgg.ops", "tinyvgg.nn", "tinyvgg.models", *APPLICATIONS),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set:
    """Every tinyvgg module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tinyvgg"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("tinyvgg"):
                target = node.module
            else:
                continue
            found.add(target)
            # ``from . import workers`` imports the module tinyvgg.workers
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def import_graph() -> dict:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name}
            for name, path in modules.items()}


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1
        stack.append(start); on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]; counter[0] += 1
                    stack.append(nxt); on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop(); on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other_directly_or_in_a_loop():
    # a package's __init__ re-exporting its modules is the package itself, not a loop
    graph = {name: {m for m in targets if not name.startswith(m + ".")}
             for name, targets in import_graph().items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("layer", sorted(NEVER_IMPORTS))
def test_imports_point_down(layer):
    wrong = [(name, target) for name, targets in import_graph().items()
             if name == layer or name.startswith(layer + ".")
             for target in targets
             for banned in NEVER_IMPORTS[layer]
             if target == banned or target.startswith(banned + ".")]
    assert wrong == []


def test_nothing_imports_the_command_line():
    assert [name for name, targets in import_graph().items()
            if "tinyvgg.cli" in targets and name != "tinyvgg.__main__"] == []


def test_no_op_asks_which_device_it_runs_on():
    """Function.implementation picks an op's CPU or CUDA path; op bodies never test the
    device themselves."""
    asking = re.compile(r"device\s*[!=]=|==\s*[\"']cuda[\"']|[\"']cuda[\"']\s*==")
    found = [f"{path.name}:{number}: {line.strip()}"
             for path in sorted((PACKAGE / "ops").glob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if asking.search(line)]
    assert found == []


def test_a_clone_imports_without_being_installed(tmp_path):
    """From a copy of the source tree, ``import tinyvgg, tinyvgg.cuda`` finds the package
    and the kernel sources beside it, not an installed copy."""
    shutil.copytree(PACKAGE, tmp_path / "tinyvgg",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", tmp_path / "kernels")
    code = ("import tinyvgg, tinyvgg.cuda; print(tinyvgg.__file__); "
            "print(tinyvgg.cuda.source_path('conv3x3'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package_file, kernel = done.stdout.split()
    assert Path(package_file).parent == tmp_path / "tinyvgg"
    assert Path(kernel) == tmp_path / "kernels" / "conv3x3.cu"


def test_public_modules_and_names_survive_each_other():
    """``tinyvgg.gradcheck`` is both a function (``tv.gradcheck(f, inputs)``) and a module
    (``from tinyvgg.gradcheck import kink_free``); importing the module must not replace the
    function, and what users import from the moved modules keeps working."""
    code = ("import tinyvgg as tv\n"
            "from tinyvgg.gradcheck import GradcheckError, gradcheck, kink_free, tie_free\n"
            "from tinyvgg.profiler import profile\n"
            "import tinyvgg.gradcheck, tinyvgg.profiler\n"
            "from tinyvgg import functional, nn, optim, models, data, load, save, summary\n"
            "from tinyvgg.train import TrainConfig, train\n"
            "assert tv.gradcheck is gradcheck and callable(tv.gradcheck)\n"
            "assert tv.profiler.profile is profile\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
