"""Facts recorded with every model version: where the code and the data came from."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

from conveyor import __version__

log = logging.getLogger(__name__)

#: Prefix of every tag Conveyor writes on MLflow runs and model versions.
TAG_PREFIX = "conveyor."


def filter_value(value: str) -> str:
    """``value`` as a quoted string literal of an MLflow search filter."""
    return "'" + value.replace("'", "''") + "'"


def airflow_run_filter(dag_id: str, run_id: str) -> str:
    """MLflow search filter for the runs/versions tagged with one Airflow run."""
    return (
        f"tags.`{TAG_PREFIX}dag_id` = {filter_value(dag_id)} "
        f"and tags.`{TAG_PREFIX}run_id` = {filter_value(run_id)}"
    )


@cache
def project_git_rev(project_dir: str) -> str:
    """Commit of the *project* checkout (DAGs + pipeline YAMLs), ``+dirty.<hash>`` if modified.

    The project is ``CONVEYOR_PROJECT_DIR`` (default ``$AIRFLOW_HOME``), never where the
    package is installed: a wheel in a virtualenv has no commit of its own. The hash is of
    ``git diff HEAD`` (tracked files), so two different uncommitted states never share an
    identity: a cache key built on it cannot let an edited checkout skip retraining on the
    strength of a model trained from other edits.

    Returns ``"unknown"`` when the project is not a git checkout.
    """
    git = ["git", "-C", project_dir]
    try:
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        if not dirty:
            return sha
        diff = subprocess.run(
            [*git, "diff", "HEAD", "--no-ext-diff", "--binary"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty.{hashlib.sha256(diff).hexdigest()[:12]}"


def library_versions() -> str:
    """Versions of the code that decides what a model is: Conveyor and scikit-learn.

    Read from the installed distributions' metadata (no import), so upgrading either one
    changes every cache key and the next run retrains.
    """
    parts = [f"conveyor-{__version__}"]
    try:
        parts.append(f"sklearn-{metadata.version('scikit-learn')}")
    except metadata.PackageNotFoundError:
        parts.append("sklearn-none")
    return "+".join(parts)


def files_digest(files: Iterable[str | Path]) -> str:
    """A short hash of the given files' bytes (a missing file counts as its name)."""
    digest = hashlib.sha256()
    for file in files:
        path = Path(file)
        digest.update(str(path.name).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_identity(
    project_dir: str | Path,
    *,
    bundle_version: str | None = None,
    files: Iterable[str | Path] = (),
) -> str:
    """The code part of a cache key: library versions + the project's version.

    The project's version is, in order: the DAG bundle version Airflow ran the DAG from
    (a versioned bundle, e.g. git), else the project checkout's commit
    (:func:`project_git_rev`), else a hash of ``files`` (the DAG file and the pipeline
    YAML), with one warning that code changes elsewhere in the project go unnoticed.
    """
    project = None
    if bundle_version:
        project = f"bundle.{bundle_version}"
    else:
        rev = project_git_rev(str(project_dir))
        if rev != "unknown":
            project = f"git.{rev}"
    if project is None:
        _warn_no_project_version(str(project_dir))
        project = f"files.{files_digest(files)}"
    return f"{library_versions()}+{project}"


def short_code_identity(identity: str) -> str:
    """A code identity for a table cell: Conveyor's version and the project's part, with a
    commit shortened to 12 characters (older versions recorded a bare git sha)."""
    parts = identity.split("+")
    conveyor = next((p for p in parts if p.startswith("conveyor-")), "")
    project = next((p for p in parts if p.startswith(("git.", "bundle.", "files."))), "")
    if project.startswith("git."):
        project = project[:16] + ("+dirty" if "dirty" in identity else "")
    if not (conveyor or project):
        return identity[:12]
    return " ".join(p for p in (conveyor, project) if p)


@cache
def _warn_no_project_version(project_dir: str) -> None:
    log.warning(
        "The project %s is neither a git checkout nor a versioned DAG bundle: its code "
        "identity is the package versions plus a hash of the DAG file and pipeline YAML, so "
        "other code edits there do not invalidate the unchanged-input skip (set "
        "CONVEYOR_PROJECT_DIR to the checkout, or trigger with force=true after such edits).",
        project_dir,
    )


def cache_key(data_md5: str, config_hash: str, code_rev: str) -> str:
    """Identity of a training run's inputs: same key → same model, nothing to retrain."""
    return f"{data_md5}:{config_hash}:{code_rev}"
