"""DataValidationOperator: Great Expectations checks; bad data stops the run with a report."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor_airflow.links import DataDocsLink, artifact_href, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class DataValidationOperator(ConveyorOperator):
    """Validate the pulled file against the pipeline's expectations.

    On success writes a typed Parquet snapshot for the training and evaluation tasks; in
    every case writes the GX Data Docs report and a JSON summary to the run's artifacts.

    :param data: XCom of :class:`DvcPullOperator` (needs ``data_uri``). (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "data")
    ui_color = "#ff6f4f"
    operator_extra_links = (DataDocsLink(),)

    def __init__(self, *, data: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = data

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.artifacts import local_copy
        from conveyor.data.frames import write_parquet_snapshot
        from conveyor.errors import ValidationFailed
        from conveyor.validation.expectations import read_dataset, validate_frame

        cfg = self.config
        with local_copy(self.data["data_uri"]) as path:
            frame = read_dataset(path, cfg.data.format)
        self.log.info(
            "Validating %d rows x %d columns of %s", len(frame), frame.shape[1], cfg.data.path
        )
        failure: ValidationFailed | None = None
        with (
            tempfile.TemporaryDirectory(prefix="conveyor-gx-") as tmp,
            self.run_artifacts(context).step(
                "validation", attempt=context["ti"].try_number or 1
            ) as out,
        ):
            try:
                summary = validate_frame(
                    frame, cfg.validation, suite_name=cfg.name, docs_dir=Path(tmp) / "docs"
                )
            except ValidationFailed as exc:
                failure, summary = exc, exc.summary
            docs_uri = None
            if summary.get("docs_index"):
                docs_root = out.put_dir(Path(tmp) / "docs", "data_docs")
                rel = Path(summary["docs_index"]).relative_to(Path(tmp) / "docs").as_posix()
                docs_uri = f"{docs_root}/{rel}"
            summary = {**summary, "docs_index": docs_uri}
            self.validation_summary = summary  # OpenLineage's assertions facet (lineage.py)
            out.write_json("summary.json", summary)
            snapshot_uri = None
            if failure is None:
                with out.open_write("snapshot.parquet") as fh:
                    write_parquet_snapshot(frame, fh)
                snapshot_uri = out.url("snapshot.parquet")
        if docs_uri:
            self.log.info("Data Docs report: %s", docs_uri)
            push_link(context, DataDocsLink, artifact_href(docs_uri, self.settings.artifact_root))
        if failure is not None:
            raise failure
        self.log.info("All %s expectations passed", summary.get("evaluated"))
        return {
            "success": True,
            "rows": summary.get("rows"),
            "evaluated": summary.get("evaluated"),
            "failed": summary.get("failed", 0),
            "docs_uri": docs_uri,
            "snapshot_uri": snapshot_uri,
        }
