"""The core never imports Airflow; DAG-parse-time modules never import heavy libraries."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import conveyor


def core_modules() -> list[str]:
    return [f"conveyor.{m.name}" for m in pkgutil.iter_modules(conveyor.__path__)]


def test_core_never_imports_airflow():
    modules = core_modules()
    assert "conveyor.training" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'airflow' or k.startswith('airflow.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"conveyor imported Airflow modules: {out.stdout}"


def test_core_modules_import_light():
    """Importing any core module (as the DAG factory does) loads no heavy ML library."""
    code = (
        "import importlib, sys\n"
        f"for m in {core_modules()!r}: importlib.import_module(m)\n"
        "heavy = ['pandas', 'sklearn', 'great_expectations', 'dvc', 'mlflow', 'numpy', 'scipy']\n"
        "print(','.join(h for h in heavy if h in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"
