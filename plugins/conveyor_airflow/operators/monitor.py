"""DriftCheckOperator and RequestRetrainingOperator: the monitoring DAG's two steps."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor_airflow.compat import AirflowFailException, AirflowSkipException
from conveyor_airflow.links import DriftReportLink, artifact_href, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class DriftCheckOperator(ConveyorOperator):
    """Check drift (and live performance) of the pipeline's production model.

    Reads the last ``monitor.window_hours`` of the prediction log, writes the drift report
    into the run's artifact location (the task's "Drift report" link) and returns the
    outcome: ``not_enough_data``, ``stable``, ``retrain`` or ``no_new_data`` (see
    :mod:`conveyor.monitoring.checks`). On drift it sends a notification (log, and the
    ``conveyor_webhook`` connection when defined). The task succeeds in every case: drift
    is a finding, not a failure; the next task acts on it.

    :param log_dir: Prediction log directory; default: the service's. (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "log_dir")
    ui_color = "#f4a261"
    operator_extra_links = (DriftReportLink(),)

    def __init__(self, *, log_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_dir = log_dir

    def run(self, context: Context) -> dict[str, Any]:
        from conveyor.monitoring.checks import check

        with (
            tempfile.TemporaryDirectory(prefix="conveyor-drift-") as tmp,
            self.run_artifacts(context).step("drift", attempt=context["ti"].try_number or 1) as out,
        ):
            outcome = check(
                self.config, self.settings, report_dir=tmp, log_dir=self.log_dir or None
            )
            result = outcome.to_dict()
            if outcome.report_files:
                root = out.put_dir(Path(tmp), "report")
                result["report_uri"] = f"{root}/index.html"
                result["report_files"] = {name: f"{root}/{name}" for name in outcome.report_files}
            out.write_json("summary.json", result)  # read by the /conveyor overview
        self.log.info("Monitoring outcome for %s: %s", self.config.name, outcome.status)
        self.log.info("%s", outcome.message)
        if outcome.drift:
            for feature in outcome.drift["features"]:
                if feature["drifted"]:
                    self.log.info(
                        "  drifted %-30s PSI %.3f  %s",
                        feature["name"],
                        feature["psi"],
                        feature["reason"],
                    )
        if result.get("report_uri"):
            self.log.info("Drift report: %s", result["report_uri"])
            push_link(
                context,
                DriftReportLink,
                artifact_href(result["report_uri"], self.settings.artifact_root),
            )
        if outcome.alarm:
            from conveyor_airflow.notifiers import ConveyorNotifier

            ConveyorNotifier(
                event="drift",
                message=outcome.message,
                details={
                    "pipeline": self.config.name,
                    "outcome": outcome.status,
                    "production_version": outcome.production_version,
                    "drifted_features": (outcome.drift or {}).get("drifted", []),
                    "report": result.get("report_uri"),
                },
            )(context)
        return result


class RequestRetrainingOperator(ConveyorOperator):
    """Start retraining by recording an event on the pipeline's data asset.

    Declared with the data asset as its outlet (by the factory): when the drift check's
    outcome is ``retrain``, the event carries the data revision to train on and the reason
    (``extra = {"payload": {repo, path, rev, md5, reason}}``), so the training run pins
    that revision and its lineage says why it ran. Any other outcome skips this task, and
    a skipped task records no asset event.

    :param outcome: XCom of :class:`DriftCheckOperator`. (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "outcome")
    ui_color = "#e76f51"

    def __init__(self, *, outcome: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outcome = outcome
        if not self.outlets:  # a wiring mistake: say so when the DAG is parsed
            raise ValueError(
                f"RequestRetrainingOperator {self.task_id!r} has no outlets: declare the "
                "pipeline's data asset, e.g. outlets=[data_asset(config, settings)] "
                "(conveyor_airflow.factory.data_asset), so a retrain outcome can start a run"
            )

    def run(self, context: Context) -> dict[str, Any]:
        if not self.outlets:
            raise AirflowFailException("No outlet asset declared: cannot request retraining")
        status = self.outcome.get("status")
        payload = self.outcome.get("retrain_payload")
        if status != "retrain" or not payload:
            raise AirflowSkipException(f"No retraining: {self.outcome.get('message')}")
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {"payload": payload}
        self.log.info(
            "Requested retraining of %s on revision %s: %s",
            self.config.name,
            payload["rev"],
            payload["reason"],
        )
        return payload
