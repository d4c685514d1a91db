"""Facts recorded with every model version: where the code and the data came from."""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache

from conveyor.settings import REPO_ROOT

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
def project_git_rev() -> str:
    """Commit of the project checkout the code runs from, ``+dirty.<hash>`` if modified.

    The hash is of ``git diff HEAD`` (tracked files), so two different uncommitted states
    never share an identity: a cache key built on it cannot let an edited checkout skip
    retraining on the strength of a model trained from other edits.

    Returns ``"unknown"`` when the code does not run from a git checkout (an installed
    wheel in a container image); the image tag is then the code's identity.
    """
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        if not dirty:
            return sha
        diff = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "diff", "HEAD", "--no-ext-diff", "--binary"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty.{hashlib.sha256(diff).hexdigest()[:12]}"


def cache_key(data_md5: str, config_hash: str, code_rev: str) -> str:
    """Identity of a training run's inputs: same key → same model, nothing to retrain."""
    return f"{data_md5}:{config_hash}:{code_rev}"
