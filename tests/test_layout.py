"""The package's layout is a contract (docs/ARCHITECTURE.md, "Layers"): the import
contract that `make lint` runs (import-linter, pyproject.toml), rooms of a readable
size, no re-export lists, no private name imported across modules, and every
function-local import saying why it is deferred."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tlbench"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _lint_imports(src: Path, config: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under ``src`` with the contract of ``config``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=src.parent,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(src)},
        timeout=300,
    )


@pytest.fixture(scope="module")
def lint_imports():
    if not LINT_IMPORTS.exists():
        pytest.skip(f"{LINT_IMPORTS} is not installed (requirements.txt pins import-linter)")
    return _lint_imports


def test_the_layers_contract_is_kept(lint_imports):
    proc = lint_imports(ROOT / "src", ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 1 kept, 0 broken." in proc.stdout


def test_an_import_from_a_lower_layer_to_a_higher_one_breaks_it(lint_imports, tmp_path):
    """core importing the report (the lowest layer reaching for a high one) fails the
    contract, naming the import; the same copy without it passes."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "tlbench", ignore=shutil.ignore_patterns("__pycache__"))
    config = ROOT / "pyproject.toml"
    assert lint_imports(src, config).returncode == 0
    errors = src / "tlbench" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom tlbench.report import render  # noqa\n")
    proc = lint_imports(src, config)
    assert proc.returncode != 0
    assert "tlbench.core is not allowed to import tlbench.report" in proc.stdout, proc.stdout
    assert "tlbench.core.errors -> tlbench.report.render" in proc.stdout, proc.stdout


def test_no_module_over_400_lines():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_reexport_lists():
    """A name is imported from the module that defines it: no ``__all__`` lists."""
    listed = [str(p.relative_to(PACKAGE)) for p in _modules() if "__all__" in p.read_text()]
    assert not listed, listed


def _top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_private_name_imported_across_modules():
    """``from tlbench.x import _name`` is a private name crossing a module boundary; so is
    ``x._name`` on a tlbench module bound by ``from tlbench import x`` (in the package and
    its scripts; tests may reach into a module they test)."""
    crossing = []
    for path in [*_modules(), *(ROOT / "scripts").glob("*.py"), *(ROOT / "tests").glob("*.py")]:
        tree = ast.parse(path.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tlbench"):
                crossing += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
                modules |= {
                    alias.asname or alias.name
                    for alias in node.names
                    if (PACKAGE.parent / node.module.replace(".", "/") / alias.name)
                    .with_suffix(".py")
                    .is_file()
                }
        if path.parent.name == "tests":
            continue
        crossing += [
            f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
    assert not crossing, crossing


def test_every_function_local_import_says_why_it_is_deferred():
    """An import inside a function defers a heavy import on purpose, with a comment on its
    line or on the line above (its group's first line)."""
    silent = []
    for path in _modules():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                row = node.lineno - 1
                while row > 0 and lines[row - 1].lstrip().startswith(("import ", "from ")):
                    row -= 1  # the group's first line
                said = "#" in lines[node.lineno - 1] or lines[row - 1].lstrip().startswith("#")
                if not said:
                    silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not silent, silent


def test_registries_are_complete_from_their_defining_module():
    """Importing a registry's defining module registers every unit (no facade needed):
    the same names as after importing every unit module by hand."""
    code = (
        "import importlib, pkgutil\n"
        "from tlbench.strategies.base import STRATEGIES\n"
        "from tlbench.datasets.base import DATASETS\n"
        "before = sorted(STRATEGIES), sorted(DATASETS)\n"
        "import tlbench.strategies, tlbench.datasets\n"
        "for pkg in (tlbench.strategies, tlbench.datasets):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "assert before == (sorted(STRATEGIES), sorted(DATASETS)), before\n"
        "print(len(before[0]), len(before[1]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["16", "7"], proc.stdout


def test_module_names_of_the_layers():
    """Every module lives in a layer's folder (cli.py at the top aside)."""
    layers = {
        "core",
        "datasets",
        "models",
        "strategies",
        "training",
        "tuning",
        "analysis",
        "study",
        "report",
        "workflow",
    }
    loose = [
        _module_name(p)
        for p in _modules()
        if p.parent == PACKAGE and p.name not in ("__init__.py", "cli.py")
    ]
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert not loose, loose
    assert folders == layers, folders ^ layers
