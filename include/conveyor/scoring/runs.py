"""One batch-scoring run: production model pinned, input fetched and checked, output
published with lineage both ways.

:func:`score_with_production` is the whole step (the ``score_<name>`` DAG's one task):

1. an earlier complete record of this (dag_id, run_id) is returned as is (idempotent);
2. the ``production`` version is read once and pinned in a small file next to the record,
   so a retry scores with the same version even if production moved meanwhile;
3. the input is fetched from the DVC registry at a resolved commit (md5 checked);
4. every row is checked against the version's input schema (the service's rules) before
   anything is scored (:func:`conveyor.scoring.batch.check_file`);
5. chunked scoring into Parquet/CSV, then a new DVC version in the data registry (or a
   file in the run's artifact location);
6. the record — model version, input repo/path/sha/md5, output repo/path/sha/md5 — is
   written last to ``{artifact_root}/scoring/{model}/{dag_id}__{run_id}.json``.
   ``conveyor models lineage`` lists the records of a version, and
   :func:`find_records` answers "which model and input made this output md5?".
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsspec.core import url_to_fs

from conveyor.artifacts import RunArtifacts, join_url, safe_segment
from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.config import PipelineConfig
    from conveyor.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ScoringRecord:
    """Lineage of one scoring run (JSON-safe through :meth:`to_dict`)."""

    pipeline: str
    model_name: str
    model_version: str
    model_run_id: str | None
    dag_id: str
    run_id: str
    input: dict[str, Any]
    output: dict[str, Any]
    rows: int
    seconds: float
    rows_per_second: float
    peak_rss_mb: float
    input_source: str = "branch"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lineage_line(self) -> str:
        """One line for ``conveyor models lineage``: input -> output of this run."""
        out = self.output
        where = f"{out['path']}@{out['git_sha'][:12]}" if out.get("git_sha") else out.get("uri")
        return (
            f"scored: {self.input['path']}@{self.input['git_sha'][:12]} "
            f"(md5 {self.input['md5']}) -> {where} (md5 {out['md5']}), {self.rows} rows, "
            f"{self.dag_id}/{self.run_id}"
        )

    def summary(self) -> str:
        """Lines for the task log and the CLI."""
        out = self.output
        return "\n".join(
            [
                f"Scored {self.rows} rows of {self.input['path']} "
                f"@{self.input['git_sha'][:12]} (md5 {self.input['md5']}) "
                f"with {self.model_name} v{self.model_version}",
                f"  output: {out.get('path') or out.get('uri')} "
                f"{'@' + out['git_sha'][:12] if out.get('git_sha') else ''} (md5 {out['md5']})",
                f"  {self.rows_per_second:,.0f} rows/s, peak RSS {self.peak_rss_mb:.0f} MB, "
                f"run {self.dag_id}/{self.run_id}",
            ]
        )


def _records_dir(artifact_root: str, model_name: str) -> str:
    return join_url(artifact_root, "scoring", safe_segment(model_name))


def _record_url(artifact_root: str, model_name: str, dag_id: str, run_id: str) -> str:
    name = f"{safe_segment(dag_id)}__{safe_segment(run_id)}"
    return join_url(_records_dir(artifact_root, model_name), f"{name}.json")


def _read_json(url: str) -> dict[str, Any] | None:
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as fh:
        return json.load(fh)


def _write_json(url: str, data: dict[str, Any]) -> None:
    fs, path = url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    part = f"{path}.part"
    with fs.open(part, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    fs.mv(part, path)


def find_records(
    artifact_root: str,
    model_name: str,
    *,
    version: str | None = None,
    output_md5: str | None = None,
    input_md5: str | None = None,
) -> list[ScoringRecord]:
    """Complete scoring records of ``model_name``, oldest first, optionally filtered."""
    fs, path = url_to_fs(_records_dir(artifact_root, model_name))
    if not fs.exists(path):
        return []
    records = []
    for item in sorted(fs.glob(f"{path}/*.json")):
        if item.endswith(".pin.json"):
            continue
        with fs.open(item, "r") as fh:
            record = ScoringRecord(**json.load(fh))
        if version is not None and record.model_version != str(version):
            continue
        if output_md5 is not None and record.output.get("md5") != output_md5:
            continue
        if input_md5 is not None and record.input.get("md5") != input_md5:
            continue
        records.append(record)
    return sorted(records, key=lambda r: r.created_at)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's
    memory. Not ``ru_maxrss``: the kernel carries that across ``execve``, so a process
    started by a big parent would report the parent's size. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _pin_version(client: Any, config: PipelineConfig, pin_url: str) -> tuple[str, str | None]:
    from conveyor.registry.models import PRODUCTION, version_by_alias

    pinned = _read_json(pin_url)
    if pinned:
        log.info("Retry: scoring with the version pinned at run start, v%s", pinned["version"])
        return str(pinned["version"]), pinned.get("run_id")
    current = version_by_alias(client, config.model_name, PRODUCTION)
    if current is None:
        raise ConfigError(
            f"{config.model_name} has no production version to score with: train and deploy "
            f"one first (the train_{config.name} DAG)"
        )
    _write_json(pin_url, {"version": str(current.version), "run_id": current.run_id})
    log.info("Pinned %s v%s (production at run start)", config.model_name, current.version)
    return str(current.version), current.run_id


def score_with_production(
    config: PipelineConfig,
    settings: Settings,
    *,
    dag_id: str,
    run_id: str,
    input_rev: str | None = None,
    input_source: str = "branch",
    work_dir: str | Path | None = None,
) -> ScoringRecord:
    """Score the pipeline's ``scoring.input`` with its production model (see module doc).

    Parameters
    ----------
    config : PipelineConfig
        Needs a ``scoring`` section.
    input_rev : str, optional
        Commit, tag or branch of the input; default ``scoring.input.rev``.
    input_source : str
        How ``input_rev`` was chosen (``param``, ``asset_event``, ``branch``); recorded.

    Raises
    ------
    ConfigError
        No ``scoring`` section, or no production version.
    DataError
        The input cannot be fetched, or breaks the input schema (nothing is scored).
    RegistryError
        MLflow cannot be reached or the version cannot be loaded.
    """
    from conveyor.data.registry import is_registry, publish_file
    from conveyor.data.source import fetch, read_tracked_md5
    from conveyor.registry import tracking
    from conveyor.scoring.batch import check_file, file_format, score_file
    from conveyor.serving.model_holder import load_version

    spec = config.scoring
    if spec is None:
        raise ConfigError(f"Pipeline {config.name} has no 'scoring' section: add one to score")
    record_url = _record_url(settings.artifact_root, config.model_name, dag_id, run_id)
    earlier = _read_json(record_url)
    if earlier:
        record = ScoringRecord(**earlier)
        log.info("This run already scored (idempotent):\n%s", record.summary())
        return record

    client = tracking.configure(settings)
    version, model_run_id = _pin_version(
        client, config, record_url.removesuffix(".json") + ".pin.json"
    )
    repo = spec.input.repo or settings.data_registry
    rev = input_rev or spec.input.rev
    with tempfile.TemporaryDirectory(prefix="conveyor-score-", dir=work_dir) as tmp:
        tmp_dir = Path(tmp)
        loaded = load_version(
            client, config.model_name, version, alias="production", settings=settings
        )
        log.info("Model loaded (peak RSS %.0f MB)", peak_rss_mb())
        snapshot = fetch(repo, spec.input.path, rev, tmp_dir / "input")
        log.info("Input fetched (peak RSS %.0f MB)", peak_rss_mb())
        fmt = file_format(snapshot.local_path, spec.input.format)
        what = f"{config.model_name} v{version}"
        rows = check_file(
            snapshot.local_path,
            loaded.schema,
            chunk_rows=spec.chunk_rows,
            fmt=fmt,
            id_column=spec.id_column,
            what=what,
        )
        log.info(
            "All %d rows of %s match %s's input schema (peak RSS %.0f MB)",
            rows,
            spec.input.path,
            what,
            peak_rss_mb(),
        )
        out_name = spec.output_path or f"scores/{config.name}.{spec.output_format}"
        stats = score_file(
            snapshot.local_path,
            loaded.predictor,
            tmp_dir / "output" / Path(out_name).name,
            chunk_rows=spec.chunk_rows,
            fmt=fmt,
            output_format=spec.output_format,
            id_column=spec.id_column,
            probabilities=spec.probabilities,
        )
        log.info("Scored (peak RSS %.0f MB)", peak_rss_mb())
        output: dict[str, Any] = {
            "format": spec.output_format,
            "columns": stats.columns,
            "rows": stats.rows,
        }
        if spec.output == "registry":
            if not is_registry(repo):
                raise ConfigError(
                    f"scoring.output is 'registry' but {repo} is not a local DVC data registry "
                    "this task can commit to: use scoring.output: artifacts"
                )
            message = (
                f"Scores of {config.model_name} v{version} for {snapshot.path} "
                f"@{snapshot.git_sha[:12]} (md5 {snapshot.md5}) by {dag_id}/{run_id}"
            )
            sha = publish_file(repo, out_name, stats.output_path, message=message)
            output.update(
                repo=repo, path=out_name, git_sha=sha, md5=read_tracked_md5(repo, out_name, sha)
            )
        else:
            from conveyor.data.registry import _md5

            md5 = _md5(Path(stats.output_path))
            with RunArtifacts(settings.artifact_root, dag_id, run_id).step("scoring") as out:
                uri = out.put_file(stats.output_path, Path(out_name).name)
            output.update(uri=uri, md5=md5)
    snap = snapshot.to_dict()
    snap.pop("local_path", None)
    record = ScoringRecord(
        pipeline=config.name,
        model_name=config.model_name,
        model_version=version,
        model_run_id=model_run_id,
        dag_id=dag_id,
        run_id=run_id,
        input=snap | {"rows": rows},
        output=output,
        rows=stats.rows,
        seconds=stats.seconds,
        rows_per_second=stats.rows_per_second,
        peak_rss_mb=round(peak_rss_mb(), 1),
        input_source=input_source,
    )
    _write_json(record_url, record.to_dict())
    log.info("%s", record.summary())
    return record
