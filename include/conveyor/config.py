"""Pipeline configuration: one YAML file per model under ``include/pipelines/``.

The YAML is validated by pydantic models with ``extra="forbid"``: a misspelled key is
an error that names the file and the key instead of a setting silently ignored. This
module is imported when Airflow parses a DAG file, so it must stay light: pydantic and
PyYAML only, never pandas, scikit-learn, GX, DVC or MLflow.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conveyor.errors import ConfigError

#: Version of the YAML schema this release writes; older versions stay readable.
SCHEMA_VERSION = 1

#: Metrics per task type and whether a larger value is better.
METRICS: dict[str, dict[str, bool]] = {
    "classification": {"accuracy": True, "f1": True, "roc_auc": True},
    "regression": {"rmse": False, "mae": False, "r2": True},
}

#: Fairness metrics (fairlearn, the largest gap between groups: lower is better) that
#: ``metrics.fairness`` may bound; classification only.
FAIRNESS_METRICS = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "true_positive_rate_difference",
    "false_positive_rate_difference",
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Strict):
    """Where the training data lives: a file tracked by DVC in a data registry."""

    repo: str | None = Field(
        default=None,
        description="Git URL or path of the DVC data registry; default $CONVEYOR_DATA_REGISTRY.",
    )
    path: str = Field(description="Path of the DVC-tracked file inside the registry.")
    rev: str = Field(default="main", description="Tracked branch (or tag) to follow.")
    format: Literal["csv", "parquet"] = "csv"


class MessageTriggerSpec(BaseModel):
    """Start a training run on a message: Airflow's common-messaging ``MessageQueueTrigger``.

    ``scheme`` picks the queue provider (``redis+pubsub``; ``sqs``, ``kafka`` with their
    providers installed); every other key is that provider's own trigger argument (for
    Redis: ``channels``, ``redis_conn_id``, ``poll_interval``) and must be a plain value.
    The message body is JSON ``{"reason": "...", "rev": "<optional commit/branch/tag>",
    "force": <optional bool>}``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    scheme: str = Field(pattern=r"^[a-z][a-z0-9+.-]*$", description="e.g. 'redis+pubsub'.")

    @model_validator(mode="after")
    def _plain_arguments(self) -> MessageTriggerSpec:
        for key, value in (self.model_extra or {}).items():
            if key == "queue":
                raise ValueError(
                    "triggers.message.queue is deprecated by the common-messaging provider: "
                    "give scheme plus the provider's arguments (e.g. channels, redis_conn_id)"
                )
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str | int | float | bool) for v in items):
                raise ValueError(
                    f"triggers.message.{key} must be a plain value or a list of them "
                    f"(trigger arguments are stored as literals), got {value!r}"
                )
        return self


class TriggersSpec(_Strict):
    """What starts a training run besides the UI and ``schedule`` (see README, "Start a
    retraining"). Not part of the config hash: it does not shape the model."""

    data: bool = Field(
        default=True,
        description="Watch the DVC registry for new versions of the data (DvcUpdateTrigger).",
    )
    message: MessageTriggerSpec | None = Field(
        default=None, description="Retrain on a message (Redis pub/sub, SQS, Kafka)."
    )
    on_change: bool = Field(
        default=False,
        description="Retrain when this YAML's config hash or the Conveyor version differs "
        "from production's lineage (ConfigChangeTrigger).",
    )


class ColumnSpec(_Strict):
    """Expectations on one column."""

    type: Literal["float", "int", "str", "bool"] = "float"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None


class ExpectationSpec(_Strict):
    """Any other Great Expectations expectation, by its snake_case name."""

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ValidationSpec(_Strict):
    """What the data must look like before a model may be trained on it."""

    min_rows: int = Field(default=1, ge=0)
    max_rows: int | None = Field(default=None, ge=1)
    exact_columns: bool = Field(
        default=True, description="Fail on columns the config does not list."
    )
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    expectations: list[ExpectationSpec] = Field(default_factory=list)


class SearchSpec(_Strict):
    """A small cross-validated grid search run inside the training task."""

    param_grid: dict[str, list[Any]] = Field(min_length=1)
    cv: int = Field(default=3, ge=2)
    scoring: str | None = None


class PreprocessSpec(_Strict):
    """Preprocessing of numeric features before the estimator.

    ``auto`` (the default) decides from the estimator: median imputation unless it
    accepts missing values itself (scikit-learn's ``allow_nan`` tag, e.g.
    HistGradientBoosting), standard scaling unless it is a tree model (their splits do
    not depend on the scale). Each step skipped is a full copy of the training features
    the fit does not make. ``true``/``false`` force a step on or off.
    """

    impute: Literal["auto"] | bool = "auto"
    scale: Literal["auto"] | bool = "auto"


class ModelSpec(_Strict):
    """The estimator, by dotted import path, with its parameters."""

    estimator: str = Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")
    params: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec | None = None
    preprocess: PreprocessSpec = Field(default_factory=PreprocessSpec)


class SplitSpec(_Strict):
    """The held-out split, identical for the candidate and the production model."""

    test_size: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42


class MetricsSpec(_Strict):
    """Thresholds the candidate must meet and the regression allowed vs production."""

    primary: str
    thresholds: dict[str, float] = Field(default_factory=dict)
    max_regression: float = Field(
        default=0.0,
        ge=0,
        description="How much worse than production any gated metric may be.",
    )
    fairness: dict[str, float] = Field(
        default_factory=dict,
        description="Upper bounds on fairness metrics over evaluation.sensitive_features "
        f"(lower is better; one of {sorted(FAIRNESS_METRICS)}), e.g. "
        "{demographic_parity_difference: 0.1}.",
    )


class DeploySpec(_Strict):
    """Model service settings (used by the deployment step)."""

    service_url: str | None = Field(
        default=None,
        description="Model service to verify deployments against. Default none: the "
        "deploy step uses its model-service connection (conveyor_model_service_default) "
        "when one exists, else moves production without a live check and says so.",
    )
    require_approval: bool = False
    verify: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Check the running service after moving production: 'auto' verifies "
        "when a service is configured (an unreachable one fails the deploy), 'always' also "
        "requires one to be configured, 'never' skips the check.",
    )
    verify_timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long the service may take to serve a new version."
    )
    smoke_test: bool = Field(
        default=True, description="Load and run the candidate in a separate process first."
    )
    smoke_rows: int = Field(default=50, ge=1, description="Sample rows for the smoke test.")
    latency_budget_ms: float = Field(
        default=250.0, gt=0, description="Smoke test: single-row predict p95 budget."
    )


class MonitorSpec(_Strict):
    """Monitoring of the served model (the ``conveyor_monitor_<name>`` DAG)."""

    schedule: str | None = Field(
        default=None, description="Cron or preset of the monitoring DAG; none: manual only."
    )
    window_hours: float = Field(
        default=24.0, gt=0, description="How far back each check reads the prediction log."
    )
    psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI at which a feature's change is large enough to act on."
    )
    distance_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="KS statistic (numeric) / total variation distance (categorical) at which "
        "a feature's change is large enough to act on.",
    )
    unseen_share: float = Field(
        default=0.01,
        gt=0,
        le=1,
        description="Share of the window with categorical values training never had at which "
        "a feature drifts.",
    )
    ks_pvalue: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="KS / chi-square p-value a large change must also fall below (guards small "
        "windows against noise; never flags a feature on its own).",
    )
    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Share of drifted features that means dataset drift."
    )
    min_rows: int = Field(
        default=200, ge=1, description="Fewer predictions in the window: no verdict."
    )
    labels: str | None = Field(
        default=None,
        description="Path or URL of delivered labels (csv/jsonl/parquet with id, label); "
        "enables the live-performance check.",
    )
    min_labels: int = Field(default=50, ge=1, description="Labelled predictions needed.")
    max_metric_drop: float = Field(
        default=0.05, ge=0, description="How much worse than registered the live metric may be."
    )


class EvaluationSpec(_Strict):
    """What the model card reports beyond the held-out metrics (all optional)."""

    slices: list[str] = Field(
        default_factory=list, description="Columns to report metrics per value of."
    )
    sensitive_features: list[str] = Field(
        default_factory=list,
        description="Columns to compute fairness metrics over (fairlearn MetricFrame).",
    )
    importance_repeats: int = Field(
        default=5, ge=1, description="Permutation importance repeats on the held-out rows."
    )
    max_card_rows: int = Field(
        default=20000, ge=100, description="Held-out rows the card's analyses use at most."
    )


class ScoringSpec(_Strict):
    """Batch scoring with the production model (the ``score_<name>`` DAG)."""

    input: DataSource = Field(description="The DVC-tracked file to score.")
    id_column: str | None = Field(
        default=None, description="Column copied to the output; none: the row number."
    )
    output: Literal["registry", "artifacts"] = Field(
        default="registry",
        description="'registry': a new DVC version in the data registry; 'artifacts': a file "
        "in the run's artifact location.",
    )
    output_path: str | None = Field(
        default=None, description="Path in the registry; default scores/<name>.<format>."
    )
    output_format: Literal["parquet", "csv"] = "parquet"
    probabilities: bool = Field(default=True, description="Write proba_<class> columns.")
    chunk_rows: int = Field(default=100_000, ge=1, description="Rows held in memory at once.")
    schedule: str | None = Field(default=None, description="Cron or preset; none: manual.")
    watch: bool = Field(default=True, description="Score every new version of the input.")


class RetentionSpec(_Strict):
    """What housekeeping (``conveyor housekeeping``, the ``conveyor_housekeeping`` DAG) may
    delete. Never deleted: audit records, the production, candidate and pinned versions,
    every version the audit trail names, the runs those versions came from, and anything
    younger than ``min_age_hours`` (a run may still be going)."""

    keep_runs: int = Field(
        default=30, ge=1, description="Artifact folders kept per DAG (newest first)."
    )
    prediction_log_days: int = Field(
        default=30, ge=1, description="Days of prediction logs kept (by their date partition)."
    )
    candidate_days: int = Field(
        default=30,
        ge=1,
        description="Model versions that never reached production are deleted after this.",
    )
    min_age_hours: float = Field(
        default=24, ge=0, description="Nothing younger than this is touched."
    )


class PipelineConfig(_Strict):
    """One model's pipeline: data, expectations, estimator, metrics and deployment."""

    schema_version: int = SCHEMA_VERSION
    name: str
    description: str = ""
    task: Literal["classification", "regression"]
    data: DataSource
    target: str
    validation: ValidationSpec
    model: ModelSpec
    split: SplitSpec = SplitSpec()
    metrics: MetricsSpec
    deploy: DeploySpec = DeploySpec()
    monitor: MonitorSpec = MonitorSpec()
    owner: str = Field(default="", description="Who answers for the model (model card).")
    intended_use: str = Field(default="", description="What the model is for (model card).")
    evaluation: EvaluationSpec = EvaluationSpec()
    scoring: ScoringSpec | None = None
    schedule: str | None = Field(default=None, description="Cron or preset, e.g. '@daily'.")
    tags: list[str] = Field(default_factory=list)
    # exclude: not in model_dump, so not in config_hash (when a run starts shapes no model)
    triggers: TriggersSpec = Field(default_factory=TriggersSpec, exclude=True)
    # exclude: housekeeping does not shape a model either
    retention: RetentionSpec = Field(default_factory=RetentionSpec, exclude=True)

    @model_validator(mode="after")
    def _check_consistency(self) -> PipelineConfig:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"name must be lower_snake_case (letters, digits, '_'), got {self.name!r}"
            )
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is newer than this Conveyor "
                f"understands ({SCHEMA_VERSION}); upgrade conveyor-mlops"
            )
        known = METRICS[self.task]
        for metric in [self.metrics.primary, *self.metrics.thresholds]:
            if metric not in known:
                raise ValueError(
                    f"metric {metric!r} is not defined for task {self.task!r}; "
                    f"use one of {sorted(known)}"
                )
        _check_card_keys(self)
        if self.target not in self.validation.columns:
            raise ValueError(
                f"target column {self.target!r} must be listed under validation.columns"
            )
        return self

    @property
    def model_name(self) -> str:
        """Registered model name in MLflow."""
        return self.name

    @property
    def feature_columns(self) -> list[str]:
        """Columns fed to the model, in config order."""
        return [c for c in self.validation.columns if c != self.target]

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of ``metric`` is better."""
        return METRICS[self.task][metric]

    def config_hash(self) -> str:
        """Stable hash of everything that shapes the model (sha256 of canonical JSON)."""
        data = self.model_dump(mode="json")
        for key in ("owner", "intended_use", "evaluation", "scoring"):  # shape no model
            data.pop(key, None)
        if not data["metrics"]["fairness"]:
            del data["metrics"]["fairness"]  # unchanged hash for configs without it
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_card_keys(config: PipelineConfig) -> None:
    """Slices, sensitive features and fairness bounds name real columns and metrics."""
    for key in ("slices", "sensitive_features"):
        for column in getattr(config.evaluation, key):
            if column not in config.validation.columns or column == config.target:
                raise ValueError(
                    f"evaluation.{key} names {column!r}, which is not a feature column "
                    f"under validation.columns"
                )
    if config.metrics.fairness:
        if config.task != "classification":
            raise ValueError("metrics.fairness applies to classification pipelines only")
        unknown = sorted(set(config.metrics.fairness) - set(FAIRNESS_METRICS))
        if unknown:
            raise ValueError(
                f"metrics.fairness: unknown metric(s) {unknown}; use {list(FAIRNESS_METRICS)}"
            )
        if not config.evaluation.sensitive_features:
            raise ValueError(
                "metrics.fairness needs evaluation.sensitive_features: the columns whose "
                "groups the fairness metrics compare"
            )


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"Invalid pipeline config {path}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<top level>"
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}': remove it or check its spelling")
        elif err["type"] == "missing":
            lines.append(f"  - missing required key '{key}'")
        else:
            given = err.get("input")
            shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
            lines.append(f"  - '{key}': {err['msg']}{shown}")
    return "\n".join(lines)


#: libyaml's safe loader when PyYAML was built with it (about 10x faster than the pure
#: Python one): the dag-processor loads every pipeline YAML on every parse.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: Validated configs of this process by path: (the file's text, its config). A file is
#: parsed again only when its text differs from the cached one (so no stale entry, even
#: for a relative path read from another working directory: same text, same config).
_LOADED: dict[Path, tuple[str, PipelineConfig]] = {}


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Load and validate one pipeline YAML.

    The result is cached per process and file content: DAG files that build one DAG per
    pipeline, and builders that read the same YAML twice, parse and validate each file
    once; an edited file (any byte) is parsed again. The config is frozen and shared
    between callers: treat its dicts and lists as read-only.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or breaks the schema. The message names
        the file and every offending key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ConfigError(
            f"Pipeline config {path} does not exist: create it with "
            f"`conveyor new-pipeline {path.stem}` or fix CONVEYOR_PIPELINES_DIR"
        ) from None
    cached = _LOADED.get(path)
    if cached is not None and cached[0] == text:
        return cached[1]
    try:
        raw = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Pipeline config {path} is not valid YAML: {exc}") from exc
    config = config_from_mapping(raw, source=path)
    if config.name != path.stem:
        raise ConfigError(
            f"Pipeline config {path}: 'name' is {config.name!r} but the file is "
            f"{path.name}; the name and the file stem must match"
        )
    _LOADED[path] = (text, config)
    return config


def config_from_mapping(raw: Any, *, source: str | Path) -> PipelineConfig:
    """Validate a pipeline config given as a mapping (a parsed YAML, or a dict written in a
    DAG file for an operator used without a YAML). ``source`` names it in errors."""
    if isinstance(raw, PipelineConfig):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Pipeline config {source} must be a mapping of keys, got {type(raw).__name__}"
        )
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(Path(str(source)), exc)) from None


def pipeline_path(name: str, pipelines_dir: str | Path) -> Path:
    """Path of the YAML for pipeline ``name``."""
    return Path(pipelines_dir) / f"{name}.yaml"


def list_pipelines(pipelines_dir: str | Path) -> list[str]:
    """Names of all pipeline YAMLs in ``pipelines_dir``."""
    return sorted(p.stem for p in Path(pipelines_dir).glob("*.yaml"))
