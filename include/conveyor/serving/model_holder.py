"""The served model: loaded from the registry alias, swapped atomically when the alias moves.

A :class:`ModelHolder` holds one reference to an immutable :class:`LoadedModel`. A
request reads that reference once and uses it to the end, so a swap never changes the
model under a request in flight: the new version is downloaded, loaded, given its
input schema and run once on a sample row *before* the single assignment that makes it
current. If any of that fails, the old model keeps serving and the error is reported
(``/health`` ``last_reload_error``; ``/admin/reload`` answers 503).

The input schema comes from the version itself, so the service needs nothing but
MLflow: column names from the MLflow signature logged with the model, declared types
and nullability from the pipeline config that :func:`conveyor.modeling.training.log_model`
stores with the run (``conveyor/pipeline.yaml``). If that artifact is missing or
unreadable, the pipeline YAML in ``CONVEYOR_PIPELINES_DIR`` is used; without either,
the signature's types alone.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError, RegistryError
from conveyor.registry.lineage import TAG_PREFIX
from conveyor.registry.models import version_by_alias
from conveyor.serving.predictor import Predictor
from conveyor.serving.schema import MLFLOW_KINDS, Column, InputSchema, RequestRejected

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from conveyor.config import PipelineConfig
    from conveyor.serving.settings import ServingSettings
    from conveyor.settings import Settings

log = logging.getLogger(__name__)

#: Run artifact holding the pipeline YAML a model was trained with.
CONFIG_ARTIFACT = "conveyor/pipeline.yaml"


@dataclass(frozen=True)
class LoadedModel:
    """One model version, ready to predict. Immutable: swapped whole, never changed."""

    name: str
    version: str
    alias: str
    predictor: Predictor
    schema: InputSchema
    run_id: str | None
    tags: Mapping[str, str]
    schema_source: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def tag(self, key: str) -> str | None:
        """The version's ``conveyor.<key>`` tag, if set."""
        return self.tags.get(f"{TAG_PREFIX}{key}")

    def info(self) -> dict[str, Any]:
        """What ``/version`` reports."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "data_md5": self.tag("data_md5"),
            "project_git_rev": self.tag("project_git_rev"),
            "config_hash": self.tag("config_hash"),
            "mlflow_run_id": self.run_id,
            "loaded_at": self.loaded_at.isoformat(),
            "task": "classification" if self.predictor.is_classifier else "regression",
            "classes": self.predictor.classes or None,
            "input_schema": self.schema.describe(),
            "schema_source": self.schema_source,
            "fast_path": self.predictor.fast_path,
        }


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one registry check: what is served now and what went wrong, if anything."""

    model: LoadedModel | None
    changed: bool = False
    error: str | None = None


def build_schema(
    signature: list[tuple[str, str, bool]] | None, config: PipelineConfig | None
) -> InputSchema:
    """The input schema from signature columns ``(name, mlflow_type, required)`` and a config.

    The signature decides which columns the model takes (it was inferred from the very
    frame the model was fitted on); the config, when it lists a column, decides its
    type and whether ``null`` is allowed.

    Raises
    ------
    RegistryError
        If neither gives the columns, or a signature type has no counterpart.
    """
    specs = config.validation.columns if config is not None else {}
    if signature:
        names = [name for name, _, _ in signature]
        if config is not None and set(names) != set(config.feature_columns):
            log.warning(
                "Model signature columns differ from the config's feature columns "
                "(only in signature: %s; only in config: %s); serving the signature's",
                sorted(set(names) - set(config.feature_columns)),
                sorted(set(config.feature_columns) - set(names)),
            )
        columns = []
        for name, mlflow_type, required in signature:
            spec = specs.get(name)
            if spec is not None:
                columns.append(Column(name, spec.type, spec.nullable))
            elif mlflow_type in MLFLOW_KINDS:
                columns.append(Column(name, MLFLOW_KINDS[mlflow_type], not required))
            else:
                raise RegistryError(
                    f"Input column {name!r} has signature type {mlflow_type!r}, which the "
                    f"service does not accept (supported: {sorted(MLFLOW_KINDS)})"
                )
        return InputSchema(tuple(columns))
    if config is not None:
        return InputSchema(
            tuple(Column(c, specs[c].type, specs[c].nullable) for c in config.feature_columns)
        )
    raise RegistryError(
        "The model has no MLflow signature and no pipeline config was found: the service "
        "cannot check inputs. Log models with conveyor.training.log_model."
    )


def _read_signature(model_dir: Path) -> tuple[list[tuple[str, str, bool]] | None, Any]:
    from mlflow.models import Model

    found = sorted(model_dir.rglob("MLmodel"))
    if not found:
        return None, None
    meta = Model.load(str(found[0]))
    example = None
    try:
        example = meta.load_input_example(str(found[0].parent))
    except Exception as exc:  # an example is a nicety; never fail a load over it
        log.debug("No usable input example: %s", exc)
    sig = meta.signature
    if sig is None or sig.inputs is None or sig.inputs.is_tensor_spec():
        return None, example
    columns = [
        (spec.name, getattr(spec.type, "name", str(spec.type)), bool(spec.required))
        for spec in sig.inputs.inputs
        if spec.name is not None
    ]
    return columns or None, example


def _pipeline_config(
    run_id: str | None, name: str, settings: Settings, tmp: Path
) -> tuple[PipelineConfig | None, str]:
    """The config the version was trained with, and where it came from."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException
    from pydantic import ValidationError

    from conveyor.config import PipelineConfig, load_pipeline_config, pipeline_path

    if run_id:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=str(tmp / "config")
            )
            config = PipelineConfig.model_validate(yaml.safe_load(Path(local).read_text()))
            if config.name != name:
                log.warning("Run %s logged the config of %r, not %r", run_id, config.name, name)
            return config, f"run artifact {CONFIG_ARTIFACT}"
        except (MlflowException, OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
            log.warning(
                "Run %s has no readable %s (%s); trying the pipelines dir",
                run_id,
                CONFIG_ARTIFACT,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
    path = pipeline_path(name, settings.pipelines_dir)
    try:
        return load_pipeline_config(path), f"pipeline file {path}"
    except ConfigError as exc:
        log.warning("No pipeline config for %s: %s", name, exc)
        return None, "model signature only"


def _sample_rows(schema: InputSchema, example: Any) -> list[list[Any]]:
    """Rows to run the model on once before it goes live: its input example, else zeros."""
    if example is not None and hasattr(example, "to_dict"):
        try:
            records = example.head(5).to_dict(orient="records")
            return schema.check_records(records, max_abs=float("inf"))
        except (RequestRejected, TypeError, ValueError):
            pass
    zero = {"float": 0.0, "int": 0.0, "str": "", "bool": False}
    return [[zero[c.kind] for c in schema.columns]]


def load_version(
    client: MlflowClient, name: str, version: str, *, alias: str, settings: Settings
) -> LoadedModel:
    """Download, load, describe and try out ``models:/{name}/{version}``.

    Raises
    ------
    RegistryError
        If the version cannot be downloaded or loaded, has no usable input schema, or
        fails on a sample row.
    """
    from conveyor.modeling.model_io import load_model

    mv = client.get_model_version(name, version)
    with tempfile.TemporaryDirectory(prefix="conveyor-serve-") as tmp_name:
        tmp = Path(tmp_name)
        model = load_model(f"models:/{name}/{version}", dst=tmp / "model")
        signature, example = _read_signature(tmp / "model")
        config, source = _pipeline_config(mv.run_id, name, settings, tmp)
    schema = build_schema(signature, config)
    if signature is not None:
        source = f"signature + {source}" if config is not None else "model signature only"
    try:
        predictor = Predictor(model, schema)
        predictor.predict(_sample_rows(schema, example))
    except Exception as exc:  # any failure here means the version must not go live
        raise RegistryError(
            f"{name} v{version} loaded but failed on a sample row: {type(exc).__name__}: {exc}"
        ) from exc
    return LoadedModel(
        name=name,
        version=str(version),
        alias=alias,
        predictor=predictor,
        schema=schema,
        run_id=mv.run_id,
        tags=dict(mv.tags),
        schema_source=source,
    )


Loader = Callable[..., LoadedModel]


class _PollingThread:
    """``start``/``stop`` of one daemon thread that runs the subclass's ``_poll`` loop,
    which returns once ``self._stop`` is set."""

    _thread_name = "conveyor-model-poll"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling in a daemon thread (no-op if it runs already)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling (waits for a load in progress, up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _poll(self) -> None:
        raise NotImplementedError


class ModelHolder(_PollingThread):
    """Keeps the version the alias points to loaded; polls the alias in a thread.

    Parameters
    ----------
    serving : ServingSettings
        Model name, alias and poll interval.
    settings : Settings
        MLflow location and the pipelines dir (config fallback).
    client : MlflowClient, optional
        Default: one from :func:`conveyor.registry.tracking.configure`, created on first check.
    """

    def __init__(
        self,
        serving: ServingSettings,
        settings: Settings,
        *,
        client: MlflowClient | None = None,
        loader: Loader = load_version,
    ) -> None:
        super().__init__()
        self.serving = serving
        self.settings = settings
        self._client = client
        self._loader = loader
        self._current: LoadedModel | None = None
        self._check_lock = threading.Lock()
        self._failed_version: str | None = None
        self.registry_version: str | None = None
        self.last_check_at: datetime | None = None
        self.last_reload_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now. Read it once per request and keep the reference."""
        return self._current

    def _get_client(self) -> MlflowClient:
        if self._client is None:
            from conveyor.registry import tracking

            self._client = tracking.configure(self.settings)
        return self._client

    def check_now(self, *, force: bool = True) -> CheckResult:
        """Compare the alias with the served version and swap if it moved.

        A version that failed to load is retried on ``force`` (``/admin/reload``) only,
        not on every poll. Never raises: problems are returned and kept in
        :attr:`last_reload_error`.
        """
        name, alias = self.serving.model_name, self.serving.alias
        with self._check_lock:
            self.last_check_at = datetime.now(UTC)
            current = self._current
            try:
                mv = version_by_alias(self._get_client(), name, alias)
            except Exception as exc:  # registry down: keep serving what we have
                return self._failed(current, f"Cannot read {name}@{alias} from the registry: {exc}")
            if mv is None:
                if current is not None and self.registry_version is not None:
                    log.warning(
                        "%s@%s no longer points to a complete version; still serving v%s",
                        name,
                        alias,
                        current.version,
                    )
                self.registry_version = None
                self.last_reload_error = None
                return CheckResult(current)
            version = str(mv.version)
            self.registry_version = version
            if current is not None and current.version == version:
                self.last_reload_error = None
                self._failed_version = None
                return CheckResult(current)
            if version == self._failed_version and not force:
                return CheckResult(current, error=self.last_reload_error)
            log.info("Loading %s v%s (%s@%s)", name, version, name, alias)
            try:
                loaded = self._loader(
                    self._get_client(), name, version, alias=alias, settings=self.settings
                )
            except Exception as exc:  # keep serving the old version, whatever went wrong
                self._failed_version = version
                return self._failed(current, f"Cannot load {name} v{version}: {exc}")
            self._current = loaded  # the swap: one reference assignment
            self.last_reload_error = None
            self._failed_version = None
            log.info(
                "Now serving %s v%s (was %s; schema from %s)",
                name,
                version,
                f"v{current.version}" if current else "none",
                loaded.schema_source,
            )
            return CheckResult(loaded, changed=True)

    def _failed(self, current: LoadedModel | None, error: str) -> CheckResult:
        # Logged once per distinct error, not at every poll.
        if error != self.last_reload_error:
            serving = f"v{current.version}" if current is not None else "nothing"
            log.error("%s; still serving %s", error, serving)
        self.last_reload_error = error
        return CheckResult(current, error=error)

    def _poll(self) -> None:
        """Check the alias every ``poll_seconds``."""
        while not self._stop.wait(self.serving.poll_seconds):
            self.check_now(force=False)

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports about the model."""
        current = self._current
        return {
            "model_loaded": current is not None,
            "model": None
            if current is None
            else {"name": current.name, "version": current.version},
            "registry_version": self.registry_version,
            "last_check_at": self.last_check_at.isoformat() if self.last_check_at else None,
            "last_reload_error": self.last_reload_error,
        }


class HolderGroup(_PollingThread):
    """One thread polling the aliases of several holders (a service of many models).

    A holder of its own polls in its own thread; fifty of them would be fifty threads
    waking apart. Here one thread checks the holders in turn, one every
    ``poll_seconds / len(holders)`` (the smallest ``poll_seconds`` of theirs), so each
    alias is still read every ``poll_seconds`` and the registry reads are spread out: 50
    checked back to back every 5 s cost 2.8 % of a core in bursts that held the GIL
    against requests (p99 of one-row requests 4.6 ms vs 1.0 ms for a one-model process).
    A slow registry delays the round, never a request.
    """

    _thread_name = "conveyor-model-poll-all"

    def __init__(self, holders: list[ModelHolder]) -> None:
        super().__init__()
        self.holders = holders
        self.poll_seconds = min(h.serving.poll_seconds for h in holders)

    def _poll(self) -> None:
        pause = self.poll_seconds / len(self.holders)
        while True:
            for holder in self.holders:
                if self._stop.wait(pause):
                    return
                holder.check_now(force=False)
