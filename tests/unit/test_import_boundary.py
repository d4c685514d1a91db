"""The three layers stay apart: the library (``conveyor``) never imports Airflow or the
runtime, the provider (``conveyor_airflow``) never imports the runtime, and the modules
DAG parsing touches import no heavy ML library."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import conveyor
import conveyor_airflow
import conveyor_runtime


def all_modules(package) -> list[str]:
    return sorted(
        m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
    )


def top_modules(package) -> list[str]:
    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def imported_names(package) -> dict[str, set[str]]:
    """Module file -> every module name it imports (top level or inside functions)."""
    found: dict[str, set[str]] = {}
    for root in package.__path__:
        for path in Path(root).rglob("*.py"):
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
            found[str(path)] = names
    return found


def test_core_never_imports_airflow():
    modules = all_modules(conveyor)
    assert "conveyor.modeling.training" in modules and "conveyor.serving.app" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'airflow' or k.startswith('airflow.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"conveyor imported Airflow modules: {out.stdout}"


def test_library_and_provider_never_import_the_runtime():
    offenders = [
        f"{path}: {name}"
        for package in (conveyor, conveyor_airflow)
        for path, names in imported_names(package).items()
        for name in names
        if name.split(".")[0] == "conveyor_runtime"
    ]
    assert offenders == [], offenders
    # and the check would see one: the runtime itself imports the library and provider
    runtime_imports = set().union(*imported_names(conveyor_runtime).values())
    assert {"conveyor_airflow.factory", "conveyor.settings"} <= runtime_imports


def test_core_modules_import_light():
    """Importing the core's top-level modules and subpackages (as the DAG factory does)
    loads no heavy ML library."""
    modules = top_modules(conveyor)
    assert "conveyor.modeling" in modules and "conveyor.config" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = ['pandas', 'sklearn', 'great_expectations', 'dvc', 'mlflow', 'numpy', 'scipy']\n"
        "print(','.join(h for h in heavy if h in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"
