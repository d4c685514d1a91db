"""BatchScoreOperator: score a DVC-tracked file with the production model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conveyor_airflow.links import ModelVersionLink, model_version_url, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchScoreOperator(ConveyorOperator):
    """Score the pipeline's ``scoring.input`` with the version ``production`` points to.

    The version is pinned when the run starts (a retry uses the same one), every row is
    checked against its input schema before anything is scored, and the output (ids,
    predictions, class probabilities) becomes a new DVC version in the data registry or a
    file in the run's artifact location, with its lineage recorded
    (:func:`conveyor.scoring.runs.score_with_production`). Idempotent per (dag_id, run_id).

    The input revision: ``input_rev`` if given; else the newest triggering asset event's
    ``rev`` (the scoring input's watcher); else ``scoring.input.rev``'s head.

    :param input_rev: Git branch, tag or commit of the input file. (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "input_rev")
    ui_color = "#7b61ff"
    operator_extra_links = (ModelVersionLink(),)

    def __init__(self, *, input_rev: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("execution_timeout", timedelta(hours=2))
        super().__init__(**kwargs)
        self.input_rev = input_rev

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.scoring.runs import score_with_production
        from conveyor_airflow.operators.pull import event_payload

        rev, source = (str(self.input_rev).strip() or None) if self.input_rev else None, "param"
        if rev is None:
            payload = event_payload(context) or {}
            rev, source = (
                (payload.get("rev"), "asset_event") if payload.get("rev") else (None, "branch")
            )
        record = score_with_production(
            self.config,
            self.settings,
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            input_rev=rev,
            input_source=source,
        )
        for line in record.summary().splitlines():
            self.log.info("%s", line)
        push_link(
            context, ModelVersionLink, model_version_url(record.model_name, record.model_version)
        )
        return record.to_dict()
