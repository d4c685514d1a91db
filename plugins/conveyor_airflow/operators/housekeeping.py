"""HousekeepingOperator: apply a pipeline's retention policy (one call into the library)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor_airflow.operators.base import ConveyorOperator, as_bool

if TYPE_CHECKING:
    from airflow.sdk import Context


class HousekeepingOperator(ConveyorOperator):
    """Delete what the pipeline's ``retention`` policy allows: old run artifacts, old
    prediction-log days, old candidates that never reached production. Audit records, the
    production/candidate/pinned versions and everything the audit trail names are kept.

    :param dry_run: Only list what would be deleted (in the log and the XCom). (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "dry_run")
    ui_color = "#b0bec5"

    def __init__(self, *, dry_run: Any = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dry_run = dry_run

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.registry.retention import housekeeping

        summary = housekeeping(self.settings, self.config, dry_run=as_bool(self.dry_run))
        for item in summary["planned"]:
            self.log.info("%s %s: %s", item["kind"], item["target"], item["reason"])
        return summary
