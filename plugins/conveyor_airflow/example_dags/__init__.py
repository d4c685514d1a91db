"""Example DAGs shipped with the provider, with their pipeline YAMLs as package data."""

from importlib.resources import files
from pathlib import Path


def example_pipelines_dir() -> Path:
    """The folder of the example pipeline YAMLs inside the installed package."""
    return Path(str(files(__name__) / "pipelines"))
