"""Run-scoped artifact locations: ``{artifact_root}/{dag_id}/{run_id}/{step}/``.

Tasks run in separate processes, maybe on separate machines, so they hand each other
*data* through this location and only small references through XCom. The root is an
fsspec URL: a local directory by default, ``s3://`` in the distributed setup.

Each attempt of a step writes under its own prefix (``{step}/try-{n}/``) and, once
every file is in place, a ``{step}/manifest.json`` naming that prefix. Readers go
through the manifest, so a crashed or retried attempt can never leave a mixture of two
attempts behind — and no rename is needed, which matters because a rename is not
atomic on object stores.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_segment(value: str) -> str:
    """Make ``value`` (e.g. an Airflow run_id with ``:`` and ``+``) a path segment."""
    cleaned = _UNSAFE.sub("_", value).strip("._")
    if not cleaned:
        raise ValueError(f"cannot build an artifact path segment from {value!r}")
    return cleaned


def join_url(base: str, *parts: str) -> str:
    """Join URL/path segments with ``/`` (fsspec URLs always use forward slashes)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


@dataclass
class StepWriter:
    """Collects the files one attempt of a step writes; see :meth:`RunArtifacts.step`."""

    fs: fsspec.AbstractFileSystem
    prefix: str
    url_prefix: str
    files: list[str] = field(default_factory=list)

    def path(self, rel: str) -> str:
        """fsspec path (no protocol) of ``rel`` inside this attempt."""
        return join_url(self.prefix, rel)

    def url(self, rel: str) -> str:
        """Full URL of ``rel`` inside this attempt."""
        return join_url(self.url_prefix, rel)

    def put_file(self, local: str | Path, rel: str) -> str:
        """Upload one local file; returns its URL."""
        with _clear_write_errors(self.url(rel)):
            self.fs.makedirs(self.path(rel).rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(local), self.path(rel))
        self.files.append(rel)
        return self.url(rel)

    def put_dir(self, local_dir: str | Path, rel: str) -> str:
        """Upload a directory tree (e.g. GX Data Docs); returns its URL."""
        local_dir = Path(local_dir)
        for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.put_file(file, join_url(rel, file.relative_to(local_dir).as_posix()))
        return self.url(rel)

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write ``data`` to ``rel``; returns its URL."""
        with self.open_write(rel) as fh:
            fh.write(data)
        return self.url(rel)

    @contextmanager
    def open_write(self, rel: str) -> Iterator[Any]:
        """A binary file handle on ``rel`` in the store: large outputs (the validated
        snapshot) are written once, in place, not to a temp file and then copied."""
        with _clear_write_errors(self.url(rel)):
            self.fs.makedirs(self.path(rel).rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(self.path(rel), "wb") as fh:
                yield fh
        self.files.append(rel)

    def write_json(self, rel: str, obj: Any) -> str:
        """Write ``obj`` as pretty JSON; returns its URL."""
        return self.write_bytes(rel, json.dumps(obj, indent=2, default=str).encode())


class RunArtifacts:
    """The artifact location of one pipeline run.

    Parameters
    ----------
    root : str
        fsspec URL of the artifact root (``CONVEYOR_ARTIFACT_ROOT``).
    dag_id, run_id : str
        Airflow identifiers of the run; the run id is made path-safe.
    """

    def __init__(self, root: str, dag_id: str, run_id: str) -> None:
        self.base_url = join_url(root, safe_segment(dag_id), safe_segment(run_id))
        self.fs, self.base = url_to_fs(self.base_url)

    def url(self, *parts: str) -> str:
        """URL of a path below the run's location."""
        return join_url(self.base_url, *parts)

    @contextmanager
    def step(self, step: str, attempt: int = 1) -> Iterator[StepWriter]:
        """Write one attempt of ``step``; the manifest is written only if the block succeeds."""
        rel_prefix = f"{safe_segment(step)}/try-{attempt}"
        writer = StepWriter(
            fs=self.fs, prefix=join_url(self.base, rel_prefix), url_prefix=self.url(rel_prefix)
        )
        if self.fs.exists(writer.prefix):
            # A previous run of the same attempt number (e.g. dag.test() re-run) left files
            # behind; they are not referenced by any manifest yet, so clearing them is safe.
            self.fs.rm(writer.prefix, recursive=True)
        self.fs.makedirs(writer.prefix, exist_ok=True)
        yield writer
        manifest = {
            "step": step,
            "attempt": attempt,
            "prefix": writer.url_prefix,
            "files": writer.files,
            "written_at": datetime.now(UTC).isoformat(),
        }
        # Never written in place: a full disk would truncate the previous attempt's
        # manifest and lose both attempts. A new object, then a rename (atomic on a local
        # disk; on an object store the copy is one PUT, complete or absent).
        final = join_url(self.base, safe_segment(step), "manifest.json")
        part = f"{final}.{uuid.uuid4().hex[:12]}.part"
        try:
            with _clear_write_errors(self.url(safe_segment(step), "manifest.json")):
                with self.fs.open(part, "wb") as fh:
                    fh.write(json.dumps(manifest, indent=2).encode())
                self.fs.mv(part, final)
        finally:
            if self.fs.exists(part):
                self.fs.rm(part)
        log.info(
            "Wrote %d artifact(s) for step %s to %s", len(writer.files), step, writer.url_prefix
        )

    def manifest(self, step: str) -> dict[str, Any] | None:
        """The manifest of the last complete attempt of ``step``, or None."""
        path = join_url(self.base, safe_segment(step), "manifest.json")
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r") as fh:
            return json.load(fh)


@contextmanager
def _clear_write_errors(url: str) -> Iterator[None]:
    """Re-raise an ``OSError`` of a write with the artifact's URL and what to do.

    Still an ``OSError`` (not a ``ConveyorError``): a full disk or a lost connection may
    be gone by the next attempt, so the task stays retryable.
    """
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OSError(
            exc.errno,
            f"Cannot write artifact {url}: {reason}. The artifact store is full or refuses "
            "the write: free space (or raise the quota/file size limit) and retry the task; "
            "earlier complete attempts are untouched",
        ) from exc


def open_url(url: str, mode: str = "rb"):
    """Open any fsspec URL (a thin alias so callers need not import fsspec)."""
    return fsspec.open(url, mode)


@contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """Yield a local path for ``url``: the file itself when local, else a temp download."""
    fs, path = url_to_fs(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        yield Path(path)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
        target = Path(tmp) / Path(path).name
        fs.get_file(path, str(target))
        yield target
