"""Deployment: contract check, smoke test, move ``production``, verify the service, roll back.

The steps, each usable on its own:

1. :func:`check_contract` — the candidate must accept what production accepts: a
   column production takes that the candidate lacks (removed or renamed), or one whose
   type changed in a way old callers' values no longer fit, blocks the promotion unless
   it is overridden with a reason.
2. :func:`smoke_test` — the candidate is loaded in a *separate process* (so a crash,
   a hang or a memory blow-up cannot take the task with it) and predicts a sample of
   rows; output shape, types and a latency budget are checked.
3. :func:`deploy` — moves ``production``, asks the running service to reload, waits
   until ``/version`` reports the new version and ``/predict`` answers, within a
   timeout. If it does not, the alias moves back, the service is seen serving the old
   version again, the rollback is audited and :class:`DeployError` says what happened.
   :func:`rollback` reuses the same switch for manual rollbacks.

Every move of the alias is written to the audit trail (:mod:`conveyor.registry.audit`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.children import run_child
from conveyor.errors import DeployError, RegistryError
from conveyor.registry import audit
from conveyor.registry.models import COMPLETE_TAG, PRODUCTION, promote, version_by_alias
from conveyor.registry.pin import pin_production

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

Verify = Literal["auto", "always", "never"]
#: Environment variable that overrides ``deploy.verify`` of every pipeline (an ops switch,
#: e.g. for a CI machine where some other service may listen on the configured URL).
VERIFY_ENV = "CONVEYOR_DEPLOY_VERIFY"
ADMIN_TOKEN_ENV = "CONVEYOR_ADMIN_TOKEN"

#: MLflow column types a candidate may take where production took the key type: the
#: values old callers send still fit (an int is a valid double, not the other way round).
_WIDENINGS: dict[str, set[str]] = {
    "boolean": {"boolean"},
    "integer": {"integer", "long", "float", "double"},
    "long": {"long", "double"},
    "float": {"float", "double"},
    "double": {"double"},
    "string": {"string"},
}


# --------------------------------------------------------------------------- contract


@dataclass(frozen=True)
class ContractReport:
    """Outcome of the input-contract check."""

    passed: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    overridden: bool = False
    override_reason: str | None = None
    production_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Columns = dict[str, tuple[str, bool]]


def signature_columns(model_uri: str) -> Columns | None:
    """``{column: (mlflow type, required)}`` of a model's input signature, or None."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        info = get_model_info(model_uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"Cannot read the signature of {model_uri}: {exc}") from exc
    sig = info.signature
    if sig is None or sig.inputs is None or sig.inputs.is_tensor_spec():
        return None
    return {
        spec.name: (getattr(spec.type, "name", str(spec.type)), bool(spec.required))
        for spec in sig.inputs.inputs
        if spec.name is not None
    }


def compare_columns(candidate: Columns, production: Columns) -> tuple[list[str], list[str]]:
    """(problems, notes) of serving ``candidate`` to callers of ``production``."""
    problems, notes = [], []
    removed = sorted(set(production) - set(candidate))
    added = sorted(set(candidate) - set(production))
    for name in removed:
        hint = f" (renamed to one of {added}?)" if added else ""
        problems.append(f"column {name!r} is no longer accepted{hint}")
    for name in sorted(set(production) & set(candidate)):
        old, new = production[name][0], candidate[name][0]
        if new != old and new not in _WIDENINGS.get(old, {old}):
            problems.append(f"column {name!r} changed type {old} -> {new}")
        elif new != old:
            notes.append(f"column {name!r} widened {old} -> {new}")
    for name in added:
        if candidate[name][1]:
            problems.append(f"new required column {name!r}: callers of production do not send it")
        else:
            notes.append(f"new optional column {name!r}")
    return problems, notes


def check_contract(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    override_reason: str | None = None,
) -> ContractReport:
    """Check ``name`` v``version`` against the current production version's inputs.

    Raises
    ------
    DeployError
        If the candidate breaks the contract and no ``override_reason`` is given.
    """
    current = version_by_alias(client, name, PRODUCTION)
    if current is None:
        return ContractReport(True, notes=["no production version: nothing to compare"])
    if str(current.version) == str(version):
        return ContractReport(
            True, notes=["candidate is production already"], production_version=str(version)
        )
    cand = signature_columns(f"models:/{name}/{version}")
    prod = signature_columns(f"models:/{name}/{current.version}")
    if cand is None or prod is None:
        which = "candidate" if cand is None else f"production v{current.version}"
        problems = [f"the {which} has no column signature; the contract cannot be checked"]
        notes: list[str] = []
    else:
        problems, notes = compare_columns(cand, prod)
    prod_version = str(current.version)
    if not problems:
        log.info("Contract check vs production v%s passed %s", prod_version, notes or "")
        return ContractReport(True, notes=notes, production_version=prod_version)
    listing = "\n  - ".join(problems)
    if override_reason:
        log.warning(
            "Contract check vs production v%s failed but is overridden (%s):\n  - %s",
            prod_version,
            override_reason,
            listing,
        )
        return ContractReport(
            True, problems, notes, True, override_reason, production_version=prod_version
        )
    raise DeployError(
        f"{name} v{version} breaks the input contract of production v{prod_version}:\n"
        f"  - {listing}\nCallers of the service would get errors. Keep the columns, or "
        "deploy anyway with a contract override and a reason."
    )


# --------------------------------------------------------------------------- smoke test


@dataclass(frozen=True)
class SmokeReport:
    """What the smoke-test process saw."""

    rows: int
    output_kind: str
    batch_ms: float
    p95_row_ms: float
    load_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _smoke_child(model_file: str, rows_file: str, latency_rows: int) -> dict[str, Any]:
    """Runs in the smoke-test process: load, predict, measure. Returns facts or raises."""
    import numpy as np
    import pandas as pd

    from conveyor.modeling.model_io import load_skops_file

    started = time.perf_counter()
    model = load_skops_file(model_file)
    load_seconds = time.perf_counter() - started
    frame = pd.read_json(rows_file, orient="records")
    t0 = time.perf_counter()
    out = np.asarray(model.predict(frame))
    batch_ms = (time.perf_counter() - t0) * 1000
    problems = []
    if out.ndim != 1 or len(out) != len(frame):
        problems.append(f"predict returned shape {out.shape} for {len(frame)} rows")
    kind = out.dtype.kind
    if kind not in "biufUSOb":
        problems.append(f"predict returned dtype {out.dtype}")
    if kind == "f" and not np.isfinite(out).all():
        problems.append("predict returned NaN or infinite values")
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(frame))
        if proba.shape[0] != len(frame) or proba.ndim != 2:
            problems.append(f"predict_proba returned shape {proba.shape}")
        elif not (np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-6)):
            problems.append("predict_proba rows are not probabilities (sum != 1 or NaN)")
        classes = getattr(model, "classes_", None)
        if classes is not None and not set(np.unique(out)) <= set(np.asarray(classes).tolist()):
            problems.append("predict returned labels outside the model's classes")
    timings = []
    for i in range(min(latency_rows, len(frame))):
        one = frame.iloc[[i]]
        t0 = time.perf_counter()
        model.predict(one)
        timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    p95 = timings[max(0, math.ceil(0.95 * len(timings)) - 1)] if timings else 0.0
    return {
        "rows": len(frame),
        "output_kind": str(out.dtype),
        "batch_ms": round(batch_ms, 3),
        "p95_row_ms": round(p95, 3),
        "load_seconds": round(load_seconds, 3),
        "problems": problems,
    }


def smoke_test(
    model_uri: str,
    rows: list[dict[str, Any]],
    *,
    latency_budget_ms: float = 250.0,
    latency_rows: int = 20,
    timeout: float = 300.0,
) -> SmokeReport:
    """Load ``model_uri`` in a separate process and predict ``rows``; check what comes out.

    Checks: the process finishes within ``timeout``; ``predict`` returns one finite
    value per row (labels among the classes; probabilities that sum to one); the 95th
    percentile of single-row ``predict`` latency is within ``latency_budget_ms``.

    Raises
    ------
    DeployError
        Naming what failed, with the end of the process's output.
    """
    if not rows:
        raise DeployError(f"Smoke test of {model_uri} needs sample rows; none were given")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.exceptions import MlflowException

    from conveyor.modeling.model_io import SKOPS_FILE

    with tempfile.TemporaryDirectory(prefix="conveyor-smoke-") as tmp:
        rows_file = Path(tmp) / "rows.json"
        rows_file.write_text(json.dumps(rows, default=str))
        # Downloaded here (MLflow is imported already); the child only loads the file
        # with the reviewed skops trusted types, as the service does.
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except (MlflowException, OSError) as exc:
            raise RegistryError(f"Cannot download {model_uri} for the smoke test: {exc}") from exc
        command = [
            sys.executable,
            "-m",
            "conveyor.deploy.rollout",
            "smoke",
            str(local / SKOPS_FILE),
            str(rows_file),
            str(latency_rows),
        ]
        started = time.monotonic()
        try:
            # tracked: a killed deploy task stops it (on_kill -> terminate_children)
            proc = run_child(command, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise DeployError(
                f"Smoke test of {model_uri} did not finish within {timeout:g} s "
                "(load + predict hung?); the model was not deployed"
            ) from exc
    tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
    result: dict[str, Any] | None = None
    for line in reversed((proc.stdout or "").strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    if proc.returncode is not None and proc.returncode < 0:
        raise DeployError(
            f"Smoke test of {model_uri} was stopped (signal {-proc.returncode}); the model was "
            "not deployed"
        )
    if proc.returncode != 0 or result is None or "error" in (result or {}):
        what = (result or {}).get("error") or f"exit code {proc.returncode}"
        raise DeployError(
            f"Smoke test of {model_uri} failed in its own process: {what}\n{tail}\n"
            "The model was not deployed."
        )
    if result["problems"]:
        raise DeployError(f"Smoke test of {model_uri} failed: " + "; ".join(result["problems"]))
    if result["p95_row_ms"] > latency_budget_ms:
        raise DeployError(
            f"Smoke test of {model_uri}: single-row predict p95 {result['p95_row_ms']:.1f} ms "
            f"exceeds the latency budget of {latency_budget_ms:g} ms"
        )
    report = SmokeReport(
        rows=result["rows"],
        output_kind=result["output_kind"],
        batch_ms=result["batch_ms"],
        p95_row_ms=result["p95_row_ms"],
        load_seconds=result["load_seconds"],
    )
    log.info(
        "Smoke test of %s passed in %.1f s: %d rows -> %s, batch %.1f ms, row p95 %.2f ms",
        model_uri,
        time.monotonic() - started,
        report.rows,
        report.output_kind,
        report.batch_ms,
        report.p95_row_ms,
    )
    return report


def sample_rows(frame: Any, columns: list[str], n: int = 50, seed: int = 0) -> list[dict]:
    """Up to ``n`` JSON-safe records of ``columns`` from a DataFrame (deterministic)."""
    part = frame[columns]
    if len(part) > n:
        part = part.sample(n=n, random_state=seed)
    return json.loads(part.to_json(orient="records"))


def sample_snapshot_rows(
    path: str | Path, columns: list[str], n: int = 50, seed: int = 0
) -> list[dict]:
    """The rows :func:`sample_rows` picks from the snapshot's frame, read from the Parquet
    file without building the frame: only ``columns``, and only the sampled rows reach
    pandas (the deploy step of a 1M-row run read and converted all of it for 50 rows).

    ``DataFrame.sample(n, random_state=seed)`` draws its positions with
    ``numpy.random.RandomState(seed).choice(len, n, replace=False)``; so does this, from the
    row count in the file's metadata (a test holds the two equal)."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns)
    if table.num_rows > n:
        positions = np.random.RandomState(seed).choice(table.num_rows, size=n, replace=False)
        table = table.take(positions)
    return json.loads(table.to_pandas()[columns].to_json(orient="records"))


def example_rows(name: str, version: str) -> list[dict]:
    """The version's logged input example as records (empty if it has none)."""
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="conveyor-example-") as tmp:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}", dst_path=tmp
                )
            )
            found = sorted(local.rglob("MLmodel"))
            example = Model.load(str(found[0])).load_input_example(str(found[0].parent))
        except Exception as exc:  # no example is not fatal: callers decide
            log.info("No input example for %s v%s: %s", name, version, exc)
            return []
    if example is None or not hasattr(example, "to_json"):
        return []
    return json.loads(example.to_json(orient="records"))


# --------------------------------------------------------------------------- the service


class ServiceProbe:
    """The model service at ``url``: reload, version, predict (admin token from the env).

    With ``model`` given and ``url`` the root of a service serving several models by name
    (its ``GET /models`` lists more than one), every call goes to ``url/models/{model}``
    instead; a one-model service (or a ``url`` already ending in ``/models/{model}``) is
    used as given.
    """

    def __init__(
        self, url: str, *, token: str | None = None, timeout: float = 10.0, model: str | None = None
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self.has_token = bool(token)
        if model is not None:
            self._route_to(model)

    def _route_to(self, model: str) -> None:
        import httpx

        try:
            response = self._http.get("/models", timeout=3)
            served = [m.get("name") for m in response.json().get("models", [])]
        except (httpx.HTTPError, ValueError, AttributeError, TypeError):
            return  # not reachable yet, or a service without /models: the root it is
        if response.status_code == 200 and len(served) > 1 and model in served:
            self.url = f"{self.url}/models/{model}"
            self._http.base_url = self.url

    def close(self) -> None:
        self._http.close()

    def reachable(self) -> bool:
        import httpx

        try:
            self._http.get("/health", timeout=3)
        except httpx.HTTPError:
            return False
        return True

    def served_version(self) -> str | None:
        import httpx

        try:
            response = self._http.get("/version")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return str(response.json().get("version"))

    def reload(self) -> str:
        """Ask for a reload; the answer's detail (empty when fine)."""
        import httpx

        if not self.has_token:
            return f"no {ADMIN_TOKEN_ENV}: waiting for the service's own alias poll"
        try:
            response = self._http.post("/admin/reload")
        except httpx.HTTPError as exc:
            return f"reload request failed: {exc}"
        if response.status_code == 200:
            return ""
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        return f"reload answered {response.status_code}: {detail}"

    def predict(self, rows: list[dict[str, Any]]) -> str:
        """Problems of a /predict call with ``rows`` ('' when it answered correctly)."""
        import httpx

        try:
            response = self._http.post("/predict", json={"records": rows})
        except httpx.HTTPError as exc:
            return f"/predict request failed: {exc}"
        if response.status_code != 200:
            return f"/predict answered {response.status_code}: {response.text[:300]}"
        predictions = response.json().get("predictions", [])
        if len(predictions) != len(rows):
            return f"/predict returned {len(predictions)} predictions for {len(rows)} rows"
        return ""

    def wait_for(
        self, version: str, *, rows: list[dict[str, Any]], timeout: float, interval: float = 1.0
    ) -> tuple[bool, str]:
        """Reload until ``/version`` reports ``version`` and ``/predict`` answers."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            note = self.reload()
            served = self.served_version()
            if served == str(version):
                problem = self.predict(rows) if rows else ""
                if not problem:
                    return True, f"service at {self.url} serves v{version} and /predict answers"
                last = problem
            else:
                last = f"service reports v{served}" + (f" ({note})" if note else "")
            if time.monotonic() >= deadline:
                return False, last
            time.sleep(interval)


# --------------------------------------------------------------------------- deploy


@dataclass
class DeployResult:
    """Outcome of a deployment or rollback that went through."""

    model: str
    version: str
    previous_version: str | None
    moved: bool
    verified: bool
    verification: str
    event_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_verify(configured: str) -> str:
    """The effective verify mode: ``$CONVEYOR_DEPLOY_VERIFY`` wins over the config."""
    mode = (os.environ.get(VERIFY_ENV) or configured or "auto").strip().lower()
    if mode not in ("auto", "always", "never"):
        raise DeployError(f"deploy verify mode must be auto, always or never, got {mode!r}")
    return mode


def _move_alias(client: MlflowClient, name: str, version: str | None, **kwargs: Any) -> None:
    if version is None:
        client.delete_registered_model_alias(name, PRODUCTION)
    else:
        promote(client, name, version, **kwargs)


def switch_production(
    client: MlflowClient,
    *,
    name: str,
    version: str,
    action: Literal["promote", "rollback"],
    reason: str,
    user: str,
    artifact_root: str,
    service_url: str | None,
    verify: str = "auto",
    rows: list[dict[str, Any]] | None = None,
    timeout: float = 60.0,
    dag_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
    admin_token: str | None = None,
) -> DeployResult:
    """Point ``production`` at ``version`` and verify the running service serves it.

    ``verify``: ``auto`` — when a service is configured (``service_url``), it must answer
    (checked before anything moves) and serve the new version; with none configured the
    alias moves without a live check, and the log and the audit record say so;
    ``always`` — like ``auto``, but a service must be configured; ``never`` — no live
    check. On a failed check the alias moves back (or is removed when there was
    no earlier production version), the service is seen serving the old version again,
    the rollback is audited and :class:`DeployError` is raised.
    """
    mode = resolve_verify(verify)
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
    current = version_by_alias(client, name, PRODUCTION)
    previous = str(current.version) if current is not None else None
    events = audit.list_events(artifact_root, name)
    probe = ServiceProbe(service_url, token=token, model=name) if service_url else None
    stays = f"{name} production stays {'v' + previous if previous else 'unset'}"
    try:
        live = False
        if mode == "never":
            verification = "not verified: deploy.verify is 'never'"
        elif probe is None:
            if mode == "always":
                raise DeployError(
                    f"deploy.verify is 'always' but no model service is configured; nothing "
                    f"was changed ({stays}). Create the conveyor_model_service_default "
                    "connection (or pass the deploy step's model_service_conn_id / "
                    "service_url), or set deploy.verify to auto."
                )
            verification = (
                "not verified: no model service configured (no model-service connection or "
                "deploy.service_url); production moved without a live check"
            )
            log.warning("%s", verification)
        elif not probe.reachable():
            message = (
                f"No model service answers at {service_url} (deploy.verify is '{mode}'); "
                f"nothing was changed ({stays})"
            )
            audit.record_event(
                artifact_root,
                model=name,
                action="rejected",
                from_version=previous,
                to_version=str(version),
                reason=f"{action} not done: {message}",
                user=user,
                dag_id=dag_id,
                run_id=run_id,
                details=dict(details or {}, verify=mode, service_url=service_url),
                client=client,
            )
            raise DeployError(
                f"{message}. Start the service (`conveyor serve --pipeline {name}`), fix the "
                "model-service connection, or set deploy.verify to never to deploy without a "
                "live check."
            )
        else:
            live = True
            verification = "pending"
        reuse = (
            audit.find_event(
                events, action=action, dag_id=dag_id, run_id=run_id, to_version=version
            )
            if dag_id and run_id
            else None
        )
        if reuse is not None and previous == str(version):
            previous = reuse.from_version  # a retry: an earlier try moved the alias already
        moved = False
        if str(current.version if current else None) != str(version):
            moved = promote(client, name, version, reason=reason, actor=user)
        record = dict(details or {}, verify=mode, live_check=live, verification=verification)
        event = reuse
        if event is None:
            event = audit.record_event(
                artifact_root,
                model=name,
                action=action,
                from_version=previous,
                to_version=version,
                reason=reason,
                user=user,
                dag_id=dag_id,
                run_id=run_id,
                details=record,
                client=client,
            )
        if not live or probe is None:
            return DeployResult(name, str(version), previous, moved, False, verification, event.id)
        ok, note = probe.wait_for(version, rows=rows or [], timeout=timeout)
        if ok:
            log.info("Verified: %s", note)
            return DeployResult(name, str(version), previous, moved, True, note, event.id)
        # ---- the service does not serve the new version correctly: undo
        log.error("Service check of %s v%s failed within %g s: %s", name, version, timeout, note)
        # Undone by Airflow on its own (in a run), not by whoever asked for the deployment.
        automatic = audit.airflow_actor(dag_id) if dag_id else user
        _move_alias(
            client,
            name,
            previous,
            reason=f"automatic rollback: v{version} failed verification ({note})",
            actor=automatic,
        )
        back_ok, back_note = (
            probe.wait_for(previous, rows=rows or [], timeout=timeout)
            if previous is not None
            else (True, "no earlier production version: alias removed")
        )
        audit.record_event(
            artifact_root,
            model=name,
            action="rollback",
            from_version=version,
            to_version=previous,
            reason=f"automatic: v{version} failed verification: {note}",
            user=automatic,
            dag_id=dag_id,
            run_id=run_id,
            details={"automatic": True, "service_restored": back_ok, "service": back_note},
            client=client,
        )
        restored = (
            f"production is back on v{previous} and the service serves it"
            if previous and back_ok
            else f"production is back on v{previous} but the service does not confirm it "
            f"({back_note}); check {service_url}/health"
            if previous
            else "there was no earlier production version: the alias was removed"
        )
        raise DeployError(
            f"Deployment of {name} v{version} was rolled back: the service at {service_url} "
            f"did not serve it correctly within {timeout:g} s ({note}). {restored}. "
            f"See the service log and /health for the load error."
        )
    finally:
        if probe is not None:
            probe.close()


def deploy(client: MlflowClient, **kwargs: Any) -> DeployResult:
    """Promote a candidate (see :func:`switch_production`, ``action='promote'``)."""
    return switch_production(client, action="promote", **kwargs)


def check_rollback_target(
    client: MlflowClient, artifact_root: str, name: str, version: str | None
) -> tuple[str, str | None]:
    """(target, current production) of a manual rollback, validated.

    Default target: the version that served before the current one per the audit trail.

    Raises
    ------
    DeployError
        If there is no such version, it does not exist, is not complete, or never
        served as production.
    """
    from mlflow.exceptions import MlflowException

    current = version_by_alias(client, name, PRODUCTION)
    current_v = str(current.version) if current is not None else None
    events = audit.list_events(artifact_root, name)
    history = audit.production_history(events)
    target = (version or "").strip().lstrip("v") or audit.previous_production(events, current_v)
    if not target:
        raise DeployError(
            f"{name} has no earlier production version in the audit trail "
            f"({audit.audit_url(artifact_root, name)}); give the target version explicitly"
        )
    try:
        mv = client.get_model_version(name, target)
    except MlflowException as exc:
        raise DeployError(f"{name} v{target} does not exist in the registry: {exc}") from exc
    if mv.tags.get(COMPLETE_TAG) != "true":
        raise DeployError(f"{name} v{target} is not complete (no {COMPLETE_TAG} tag); refusing")
    if target not in history:
        served = ", ".join(f"v{v}" for v in dict.fromkeys(history)) or "none"
        raise DeployError(
            f"{name} v{target} was never in production according to the audit trail "
            f"(versions that served: {served}); a rollback only returns to a known-good version"
        )
    return target, current_v


def rollback(
    client: MlflowClient,
    *,
    name: str,
    version: str | None,
    reason: str,
    user: str,
    artifact_root: str,
    service_url: str | None,
    verify: str = "auto",
    timeout: float = 60.0,
    dag_id: str | None = None,
    run_id: str | None = None,
    admin_token: str | None = None,
    pin: bool = True,
) -> DeployResult:
    """Manually move ``production`` back to ``version`` (default: the previous one) and pin
    it there (``pin``): later runs register candidates but leave production alone until
    the pin is released."""
    if not (reason or "").strip():
        raise DeployError("A rollback needs a reason; it is recorded in the audit trail")
    target, current = check_rollback_target(client, artifact_root, name, version)
    if target == current:
        log.info("%s production is v%s already; verifying only", name, target)
    rows = example_rows(name, target)
    result = switch_production(
        client,
        name=name,
        version=target,
        action="rollback",
        reason=reason,
        user=user,
        artifact_root=artifact_root,
        service_url=service_url,
        verify=verify,
        rows=rows[:5],
        timeout=timeout,
        dag_id=dag_id,
        run_id=run_id,
        details={"manual": True},
        admin_token=admin_token,
    )
    if pin:
        # later runs must not quietly undo the rollback (conveyor.registry.pin)
        pin_production(
            client,
            artifact_root,
            name,
            result.version,
            reason=f"rollback: {reason}",
            user=user,
            dag_id=dag_id,
            run_id=run_id,
        )
    return result


def record_approval(
    client: MlflowClient,
    *,
    artifact_root: str,
    name: str,
    version: str,
    approved: bool,
    user: str,
    comment: str,
    dag_id: str,
    run_id: str,
) -> dict[str, Any]:
    """Record a person's approve/reject of deploying ``name`` v``version``.

    The decision goes on the version (tag ``conveyor.approval``); a rejection is also an
    audit event (an approval is audited with the promotion that follows it).
    """
    from datetime import UTC, datetime

    from conveyor.registry.lineage import TAG_PREFIX
    from conveyor.registry.models import tag_value

    decision = {
        "decision": "approved" if approved else "rejected",
        "by": user,
        "comment": comment,
        "at": datetime.now(UTC).isoformat(),
        "dag_id": dag_id,
        "run_id": run_id,
    }
    client.set_model_version_tag(name, version, f"{TAG_PREFIX}approval", tag_value(decision))
    if not approved:
        current = version_by_alias(client, name, PRODUCTION)
        audit.record_event(
            artifact_root,
            model=name,
            action="rejected",
            from_version=str(current.version) if current is not None else None,
            to_version=version,
            reason=comment or "rejected without a comment",
            user=user,
            dag_id=dag_id,
            run_id=run_id,
            details={"approval": decision},
            client=client,
        )
    log.info("%s v%s %s by %s: %s", name, version, decision["decision"], user, comment or "-")
    return decision


def _main(argv: list[str]) -> int:
    """``python -m conveyor.deploy.rollout smoke MODEL_SKOPS ROWS_JSON LATENCY_ROWS`` (the child)."""
    if len(argv) != 4 or argv[0] != "smoke":
        print("usage: python -m conveyor.deploy.rollout smoke MODEL_SKOPS ROWS_JSON LATENCY_ROWS")
        return 2
    from conveyor.settings import disable_telemetry

    disable_telemetry()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = _smoke_child(argv[1], argv[2], int(argv[3]))
    except Exception as exc:  # reported to the parent, which raises DeployError
        import traceback

        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
