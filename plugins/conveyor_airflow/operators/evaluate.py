"""EvaluateModelOperator: candidate and production scored on the same held-out split."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.modeling.runs import read_snapshot_part
from conveyor_airflow.links import MlflowRunLink, mlflow_run_url, push_link
from conveyor_airflow.operators.base import ConveyorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class EvaluateModelOperator(ConveyorOperator):
    """Compute metrics and plots for the candidate, and metrics for the production model.

    :param validation: XCom of :class:`DataValidationOperator`. (templated)
    :param training: XCom of :class:`TrainModelOperator`. (templated)
    """

    template_fields: Sequence[str] = (*ConveyorOperator.template_fields, "validation", "training")
    ui_color = "#2ca02c"
    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, validation: Any, training: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validation = validation
        self.training = training

    def run(self, context: Context) -> dict[str, Any]:
        import mlflow

        from conveyor.cards.analysis import analyze
        from conveyor.errors import TrainingError
        from conveyor.modeling.evaluation import compute_metrics, write_plots
        from conveyor.modeling.model_io import load_model
        from conveyor.registry import tracking
        from conveyor.registry.models import PRODUCTION, version_by_alias

        cfg = self.config
        test = read_snapshot_part(self.validation["snapshot_uri"], cfg, "test")
        client = tracking.configure(self.settings)
        candidate_model = load_model(self.training["model_uri"])
        candidate = compute_metrics(candidate_model, test, cfg)
        self.log.info("Candidate on %d held-out rows: %s", len(test), candidate)

        production: dict[str, Any] | None = None
        current = version_by_alias(client, cfg.model_name, PRODUCTION)
        if current is None:
            self.log.info("No production version of %s yet", cfg.model_name)
        else:
            try:
                prod_metrics = compute_metrics(
                    load_model(f"models:/{cfg.model_name}/{current.version}"), test, cfg
                )
                production = {"version": str(current.version), "metrics": prod_metrics}
                self.log.info("Production v%s on the same rows: %s", current.version, prod_metrics)
            except TrainingError as exc:
                self.log.warning(
                    "Production v%s cannot score this data (%s): not comparable",
                    current.version,
                    exc,
                )
                production = {"version": str(current.version), "metrics": None, "error": str(exc)}

        with tempfile.TemporaryDirectory(prefix="conveyor-eval-") as tmp:
            plots = write_plots(candidate_model, test, cfg, Path(tmp))
            card = analyze(candidate_model, test, cfg, Path(tmp) / "card")  # model card
            with mlflow.start_run(run_id=self.training["mlflow_run_id"]):
                mlflow.log_metrics({f"test_{k}": v for k, v in candidate.items()})
                for plot in plots:
                    mlflow.log_artifact(str(plot), artifact_path="evaluation")
            with self.run_artifacts(context).step(
                "evaluation", attempt=context["ti"].try_number or 1
            ) as out:
                plot_uris = [out.put_file(p, p.name) for p in plots]
                card_prefix = out.put_dir(Path(tmp) / "card", "card")
                out.write_json("metrics.json", {"candidate": candidate, "production": production})
        push_link(
            context,
            MlflowRunLink,
            mlflow_run_url(self.training["experiment_id"], self.training["mlflow_run_id"]),
        )
        return {
            "candidate": candidate,
            "production": production,
            "test_rows": len(test),
            "plots": plot_uris,
            "card": card.to_dict() | {"prefix": card_prefix},
            "fairness": card.worst_fairness(),
        }
