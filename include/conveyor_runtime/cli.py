"""``conveyor`` command line: demo setup and runs, pipeline scaffolding, model listing.

The core never imports Airflow, so commands that need Airflow run it as a subprocess
(``airflow`` or ``python -m conveyor_runtime.local_run``) with :func:`airflow_env`.
Expected failures print one red line and exit 1; nothing here prints a traceback for
a user mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from conveyor.errors import ConveyorError
from conveyor.settings import Settings, setting
from conveyor_runtime.bootstrap import airflow_init

console = Console()
err_console = Console(stderr=True)

DAG_TEMPLATE = '''"""Training DAG of the {name} pipeline (include/pipelines/{name}.yaml)."""

from conveyor_airflow.factory import build_pipeline_dag

dag = build_pipeline_dag("{name}")
'''


def cmd_demo_init(args: argparse.Namespace, settings: Settings) -> int:
    """Create what is missing of the demo; keep what exists (data versions, models)."""
    from concurrent.futures import ThreadPoolExecutor

    from conveyor_runtime.demo import init_demo

    # Airflow's `db migrate` runs as a subprocess while the registry is built here
    with (
        console.status(
            "Preparing the demo data registry, MLflow store and embedded Airflow "
            "(SQLite + LocalExecutor)..."
        ),
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        airflow = pool.submit(airflow_init, settings)
        shas = init_demo(settings)
        airflow.result()
    console.print(f"[green]Demo ready[/] under {settings.home}", soft_wrap=True)
    console.print(f"Data registry {settings.data_registry}", soft_wrap=True, highlight=False)
    for name, sha in shas.items():
        # one short line per dataset: a long registry path never pushes the hash onto
        # a line of its own
        console.print(f"  {name:<14} at {sha[:10]}", highlight=False)
    return 0


def cmd_demo_new_data(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor_runtime.demo import new_data_version

    with console.status("Committing and pushing a new data version..."):
        sha, md5 = new_data_version(settings, args.pipeline, drift=args.drift)
    console.print(f"[green]New {args.pipeline} data[/] at commit {sha[:10]} (md5 {md5})")
    console.print(
        "A running Airflow notices it within the poll interval (CONVEYOR_WATCH_POLL_SECONDS) "
        f"and starts train_{args.pipeline}; or run it now: conveyor demo run --pipeline {args.pipeline}"
    )
    return 0


def cmd_demo_traffic(args: argparse.Namespace, settings: Settings) -> int:
    """Send demo requests to the model service; then run the monitoring DAG if Airflow is up."""
    from rich.progress import Progress

    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor_runtime.traffic import send_traffic

    config = load_pipeline_config(pipeline_path(args.pipeline, settings.pipelines_dir))
    from conveyor_runtime.services import demo_service_url

    url = (
        args.url
        or config.deploy.service_url
        or demo_service_url(settings)
        or f"http://127.0.0.1:{SERVICE_PORT}"
    )
    label = "drifted" if args.drift else "normal"
    with Progress(console=console) as progress:
        bar = progress.add_task(f"{label} requests to {url}", total=args.rows)
        counts = send_traffic(
            url,
            args.dataset or args.pipeline,
            args.rows,
            drift=args.drift,
            seed=args.seed,
            progress=lambda n: progress.advance(bar, n),
        )
    console.print(f"Sent {counts['sent']} {label} predictions ({counts['failed']} failed)")
    if args.no_monitor:
        return 0 if counts["failed"] == 0 else 1
    return _run_monitor(settings, args.pipeline, timeout=args.timeout)


def trigger_monitor(settings: Settings, pipeline: str, *, timeout: float) -> tuple[str, dict]:
    """Run conveyor_monitor_<pipeline> once on the running Airflow: (run state, outcome)."""
    import time

    from conveyor_runtime.supervisor import embedded_client

    dag_id = f"conveyor_monitor_{pipeline}"
    time.sleep(2)  # let the service's prediction log flush (it writes every second)
    with embedded_client(settings) as client:
        client.wait_for_dag(dag_id, timeout=120)
        client.unpause(dag_id)
        run_id = client.trigger(dag_id)
        console.print(f"Triggered {dag_id} run [bold]{run_id}[/]")
        result = client.wait_for_run(dag_id, run_id, timeout=timeout)
        outcome = client.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/check_drift/xcomEntries/return_value",
            ok=(200, 404),
        )
    value = outcome.json().get("value") if outcome.status_code == 200 else None
    if isinstance(value, str):
        value = json.loads(value)
    return str(result.state), value or {}


def _run_monitor(settings: Settings, pipeline: str, *, timeout: float) -> int:
    """Trigger the monitoring DAG if Airflow is up and print its outcome."""
    from conveyor_runtime.supervisor import AirflowSupervisor

    if AirflowSupervisor(settings).read_state() is None:
        console.print(
            "Airflow is not running (make demo starts it): the monitoring DAG runs on its "
            "schedule once it is up."
        )
        return 0
    state, outcome = trigger_monitor(settings, pipeline, timeout=timeout)
    console.print(f"conveyor_monitor_{pipeline}: [bold]{outcome.get('status', state)}[/]")
    console.print(outcome.get("message", ""))
    if outcome.get("status") == "retrain":
        console.print(f"A train_{pipeline} run starts on the requested data revision.")
    return 0 if state == "success" else 1


def print_summary(title: str, summary: dict, keys: tuple[str, ...]) -> None:
    """A run's summary: a rule with the title, set apart from the task table or log lines
    above it, then one ``key  value`` line each. Values are never wrapped inside (a commit
    hash or md5 stays on its line; the terminal soft-wraps a line that is too long)."""
    console.print()
    console.rule(f"[bold]{title}[/]", align="left")
    width = max(len(k) for k in keys)
    for key in keys:
        value = summary.get(key)
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        console.print(f"{key:<{width}}  {text}", markup=False, highlight=False, soft_wrap=True)


def _skipped_unchanged(tasks: dict[str, str | None] | None) -> bool:
    """The run stopped at resolve_inputs because its inputs equal production's: it marks
    the steps after it skipped (``pull_data`` is skipped for no other reason); runs from
    before that change skipped resolve_inputs itself."""
    tasks = tasks or {}
    return tasks.get("resolve_inputs") == "skipped" or (
        tasks.get("resolve_inputs") == "success" and tasks.get("pull_data") == "skipped"
    )


def _not_reached(tasks: dict[str, str | None] | None, production: str | None) -> str:
    """Why a run registered no version, from its tasks' states."""
    if not tasks:
        return "rejected or not reached"
    if _skipped_unchanged(tasks):
        return (
            "not reached: the run was skipped because its inputs (data md5, config, code) "
            f"equal production v{production}'s; --force retrains"
            if production
            else "not reached: the run was skipped (see resolve_inputs' log)"
        )
    for task, state in tasks.items():
        if state in ("failed", "upstream_failed"):
            return f"not reached: {task} {state.replace('_', ' ')}"
    if tasks.get("gate") in ("failed", "skipped") or tasks.get("register_model") == "skipped":
        return "rejected (the gate task's log lists the reasons)"
    return "rejected or not reached"


def summarise_run(
    settings: Settings,
    pipeline: str,
    dag_id: str,
    run_id: str,
    tasks: dict[str, str | None] | None = None,
) -> dict:
    """What a training run produced, read back from MLflow; ``tasks`` (task id -> state)
    says why nothing was registered when that is the case."""
    from conveyor.registry import tracking
    from conveyor.registry.models import PRODUCTION, find_run_version, version_by_alias

    client = tracking.configure(settings)
    summary: dict = {"pipeline": pipeline, "dag_id": dag_id, "run_id": run_id}
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments() if e.name == pipeline] or ["0"],
        filter_string=f"tags.`conveyor.run_id` = '{run_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        run = runs[0]
        summary["data_md5"] = run.data.tags.get("conveyor.data_md5")
        summary["data_git_sha"] = run.data.tags.get("conveyor.data_git_sha")
        summary["metrics"] = {
            k.removeprefix("test_"): round(v, 4)
            for k, v in run.data.metrics.items()
            if k.startswith("test_")
        }
        summary["mlflow_run_id"] = run.info.run_id
    version = find_run_version(client, pipeline, dag_id, run_id)
    summary["registered_version"] = str(version.version) if version else None
    if version is not None:
        gate = json.loads(version.tags.get("conveyor.gate", "{}"))
        summary["gate"] = "passed" + (" (overridden)" if gate.get("overridden") else "")
    prod = version_by_alias(client, pipeline, PRODUCTION)
    summary["production_version"] = str(prod.version) if prod else None
    if version is None:
        summary["gate"] = _not_reached(tasks, summary["production_version"])
        if prod is not None and not runs and _skipped_unchanged(tasks):
            # a skipped run trained nothing: show the data production was trained on
            summary["data_md5"] = prod.tags.get("conveyor.data_md5")
            summary["data_git_sha"] = prod.tags.get("conveyor.data_git_sha")
    return summary


_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* \[\w+\s*\] ")
# The logger name is the bracketed word after the message, followed by key=value pairs
# or the end of the record (a message may itself contain "[...]").
_LOG_RE = re.compile(
    r"^\S+T(\d\d:\d\d:\d\d)\S* \[(\w+)\s*\] (.*?)\s+\[([\w.]+)\](?=\s+\w+=|\s*\Z)", re.DOTALL
)
_MODULE_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=\w+: )")
_FRAME = re.compile(r"^(Traceback \(most recent call last\):|  File \"|    )")


def run_result(output: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``CONVEYOR_RESULT`` line of ``conveyor_runtime.local_run`` and the other lines.

    Looked for line by line, not per log record: the line has no timestamp, so grouped
    into records it became the tail of whatever Airflow logged last (a multi-line DagRun
    summary after an unchanged-input run), and the run was reported as not started."""
    result = None
    lines = []
    for line in output.splitlines():
        if line.startswith("CONVEYOR_RESULT "):
            result = json.loads(line.removeprefix("CONVEYOR_RESULT "))
        else:
            lines.append(line)
    return result, lines


def log_records(lines: list[str]) -> list[str]:
    """Group Airflow's console log lines into records: a record starts with a timestamped
    line; lines that follow without one (a multi-line message, a traceback) belong to it."""
    records: list[str] = []
    for line in lines:
        if _RECORD_START.match(line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return records


def _final_exception(lines: list[str]) -> list[str]:
    """The last exception's message in a traceback (what a user needs), else []."""
    for i in range(len(lines) - 1, -1, -1):
        if _FRAME.match(lines[i]):
            tail = [x for x in lines[i + 1 :] if x.strip()]
            return tail if tail and not tail[0].startswith(("The above", "During handling")) else []
    return []


def _progress_line(record: str, shown: set[str] | None = None) -> str | None:
    """A compact ``time level message`` for Conveyor's own log records and errors.

    Multi-line records keep every line (a validation failure lists each broken
    expectation on its own line); an error's traceback is reduced to its final exception
    message. ``shown`` collects message lines already printed, so the same failure told
    by the task and again by the notifier is printed once in full.
    """
    match = _LOG_RE.match(record)
    if match is None:
        return None
    clock, level, message, logger = match.groups()
    ours = logger.startswith(("conveyor", "airflow.task.operators.conveyor_airflow"))
    if not (ours or level in ("error", "critical") or message.startswith("Marking run")):
        return None
    first, *rest = message.rstrip().split("\n")
    # lines after the one naming the logger: a traceback logged with the record
    rest += [x for x in record[match.end() :].split("\n")[1:] if x.strip()]
    if any(_FRAME.match(x) for x in rest):
        rest = _final_exception(rest)
        if rest:  # "pkg.module.SomeError: message" -> "SomeError: message"
            first = f"{first}: {_MODULE_PATH.sub('', rest[0])}"
            rest = rest[1:]
    if shown is not None:
        if rest and all(x in shown for x in rest):
            rest = []
        shown.update(rest)
    return "\n".join([f"{clock} {level:<7} {first}", *rest])


def cmd_demo_run(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor_runtime.airflow_env import airflow_env

    env = airflow_env(settings)
    if not Path(env["AIRFLOW_HOME"], "airflow.db").exists():
        airflow_init(settings)
    # No servers here: deployments move production without a live check, and say so
    # (a model-service connection `demo up` left in the DB must not be verified against).
    env["AIRFLOW__CONVEYOR__MODEL_SERVICE_CONN_ID"] = "none"
    console.print("No model service in `demo run`: deploy_model moves production unverified.")
    conf: dict[str, Any] = {"force": args.force}
    if args.gate_override:
        if not (args.reason or "").strip():
            raise ConveyorError(
                "--gate-override needs --reason (recorded on the model version and audited)"
            )
        conf.update(gate_override=True, override_reason=args.reason)
    if args.data_rev:
        conf["data_rev"] = args.data_rev
    console.rule(f"Running train_{args.pipeline} with dag.test() (logs below)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor_runtime.local_run",
            args.pipeline,
            "--conf",
            json.dumps(conf),
        ],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    result, lines = run_result(proc.stdout)
    shown: set[str] = set()
    for record in log_records(lines):
        if args.verbose:
            print(record)
        elif (line := _progress_line(record, shown)) is not None:
            # soft_wrap: long paths and commit hashes are not broken onto new lines
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result is None:
        err_console.print(proc.stdout[-4000:], markup=False)
        err_console.print("[red]The training run did not start; see the output above.[/]")
        return 1
    summary = summarise_run(
        settings, args.pipeline, result["dag_id"], result["run_id"], result.get("tasks")
    )
    print_summary(
        f"{result['dag_id']} — {result['state']}",
        summary,
        (
            "run_id",
            "data_git_sha",
            "data_md5",
            "metrics",
            "gate",
            "registered_version",
            "production_version",
            "mlflow_run_id",
        ),
    )
    console.print(
        f"MLflow UI: [bold]MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri} uv run mlflow ui[/]"
    )
    return 0 if result["state"] == "success" else 1


def cmd_data_add(args: argparse.Namespace, settings: Settings) -> int:
    """Put a file into the data registry: dvc add, dvc push, git commit (in that order)."""
    from conveyor.data.registry import is_registry, publish_file
    from conveyor.data.source import read_tracked_md5

    source = Path(args.path).expanduser()
    if not source.is_file():
        raise ConveyorError(f"{source} is not a file: give the CSV or parquet file to add")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", args.name):
        raise ConveyorError(f"--name {args.name!r} must be lower_snake_case (e.g. 'churn')")
    registry = Path(settings.data_registry).expanduser()
    if "://" in settings.data_registry or not is_registry(registry):
        raise ConveyorError(
            f"No local DVC data registry at {settings.data_registry}: create one with "
            "`conveyor demo init`, or set CONVEYOR_DATA_REGISTRY to a clone of your team's "
            "registry (a git repository with `dvc init` and a default remote)"
        )
    rel = args.dest or f"data/{args.name}{source.suffix.lower() or '.csv'}"
    with console.status(f"Adding {source} to the data registry as {rel}..."):
        sha = publish_file(
            registry, rel, source, message=args.message or f"Add {args.name} data ({source.name})"
        )
    md5 = read_tracked_md5(str(registry), rel, sha)
    console.print(f"[green]Added[/] {rel} to {registry}", soft_wrap=True, highlight=False)
    console.print(f"  commit {sha[:10]}  md5 {md5}", highlight=False)
    console.print(
        f"Next: conveyor new-pipeline {args.name} --from {source} --target COLUMN",
        soft_wrap=True,
        highlight=False,
    )
    return 0


def cmd_new_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from conveyor.config import config_from_mapping, load_pipeline_config, pipeline_path

    name = args.name
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise ConveyorError(f"Pipeline name {name!r} must be lower_snake_case (e.g. 'churn_model')")
    target = pipeline_path(name, settings.pipelines_dir)
    dag_file = Path(args.dags_dir or settings.dags_dir) / f"{name}.py"
    for path in (target, dag_file):
        if path.exists():
            raise ConveyorError(f"{path} already exists; choose another name or edit it directly")
    if args.source:
        raw, header = _inferred_pipeline(args, settings)
    else:
        if args.target:
            raise ConveyorError("--target needs --from FILE (the data to infer the YAML from)")
        template = load_pipeline_config(pipeline_path(args.template, settings.pipelines_dir))
        raw = template.model_dump(mode="json", exclude_defaults=False)
        raw.update(name=name, description=f"TODO: describe {name}", tags=[])
        raw["data"]["path"] = f"data/{name}.csv"
        header = f"# Pipeline {name}: scaffolded from {args.template}.yaml — edit data, validation, model.\n"
    config_from_mapping(raw, source=target)  # what we write must load
    target.parent.mkdir(parents=True, exist_ok=True)
    dag_file.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(raw, sort_keys=False, width=100))
    dag_file.write_text(DAG_TEMPLATE.format(name=name))
    console.print(f"[green]Created[/] {target} and {dag_file}", soft_wrap=True)
    return 0


def _inferred_pipeline(args: argparse.Namespace, settings: Settings) -> tuple[dict, str]:
    """The YAML mapping and its header comment for `new-pipeline --from FILE --target COL`."""
    from conveyor.validation.expectations import read_dataset
    from conveyor.validation.inference import infer_pipeline

    source = Path(args.source).expanduser()
    if not args.target:
        raise ConveyorError("--from needs --target COLUMN: the column the model predicts")
    fmt = "parquet" if source.suffix.lower() in (".parquet", ".pq") else "csv"
    frame = read_dataset(source, fmt)
    data_path = args.data_path
    if data_path is None:
        registry = Path(settings.data_registry).expanduser().resolve()
        resolved = source.resolve()
        data_path = (
            resolved.relative_to(registry).as_posix()
            if resolved.is_relative_to(registry)
            else f"data/{args.name}{source.suffix.lower() or '.csv'}"  # as `data add` names it
        )
    try:
        raw = infer_pipeline(
            frame, name=args.name, target=args.target, data_path=data_path, data_format=fmt
        )
    except ValueError as exc:
        raise ConveyorError(f"Cannot infer a pipeline from {source}: {exc}") from None
    header = (
        f"# Pipeline {args.name}: inferred from {source.name} ({len(frame)} rows) by "
        "`conveyor new-pipeline --from`.\n"
        "# Column types, ranges (observed +/- 10 % of the span), allowed values and\n"
        "# nullability describe that file: review them, then edit model and metrics.\n"
    )
    return raw, header


def _metrics_text(tags: dict[str, str], first: str | None, limit: int = 2) -> str:
    """A version's metrics, short: the primary one first, three decimals, at most ``limit``."""
    try:
        metrics = json.loads(tags.get("conveyor.metrics") or "{}")
    except ValueError:
        return tags.get("conveyor.metrics", "")
    names = sorted(metrics, key=lambda k: k != first)  # stable: stored order otherwise
    shown = [
        f"{k} {metrics[k]:.3f}" if isinstance(metrics[k], int | float) else f"{k} {metrics[k]}"
        for k in names[:limit]
    ]
    return ", ".join(shown) + (f" +{len(names) - limit}" if len(names) > limit else "")


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    """One line per version, readable at 80 columns: `models lineage NAME V` has the rest."""
    from datetime import datetime

    from conveyor.registry import tracking

    client = tracking.configure(settings)
    versions = client.search_model_versions(f"name = '{args.pipeline}'")
    aliases: dict[str, list[str]] = {}
    for model in client.search_registered_models(f"name = '{args.pipeline}'"):
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
    primary = None
    try:
        from conveyor.config import load_pipeline_config, pipeline_path

        primary = load_pipeline_config(
            pipeline_path(args.pipeline, settings.pipelines_dir)
        ).metrics.primary
    except ConveyorError:
        pass
    table = Table(title=f"Model versions of {args.pipeline}", title_justify="left", box=None)
    # fixed columns keep their width; only the metrics column gives way (ellipsis)
    table.add_column("v", justify="right", no_wrap=True, min_width=2)
    table.add_column("aliases", no_wrap=True, min_width=20)
    table.add_column("created", no_wrap=True, min_width=11)
    table.add_column("data md5", no_wrap=True, min_width=8)
    table.add_column("metrics", no_wrap=True, overflow="ellipsis", ratio=1)
    for mv in sorted(versions, key=lambda v: int(v.version)):
        names = sorted(aliases.get(str(mv.version), []), key=lambda a: a != "production")
        if mv.tags.get("conveyor.complete") != "true":
            names.append("(incomplete)")
        if mv.tags.get("conveyor.pinned"):
            names.append("(pinned)")
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000).strftime("%m-%d %H:%M")
        table.add_row(
            str(mv.version),
            ",".join(names),
            created,
            mv.tags.get("conveyor.data_md5", "")[:8],
            _metrics_text(mv.tags, primary),
        )
    console.print(table)
    pinned = next((mv for mv in versions if mv.tags.get("conveyor.pinned")), None)
    if pinned is not None:
        pin = json.loads(pinned.tags["conveyor.pinned"])
        console.print(
            f"production pinned to v{pinned.version} by {pin.get('by')}: {pin.get('reason')} "
            f"(release: conveyor models release {args.pipeline} --reason ...)",
            soft_wrap=True,
        )
    console.print(
        f"Lineage of a version: conveyor models lineage {args.pipeline} VERSION",
        style="dim",
        highlight=False,
    )
    return 0


MLFLOW_UI_PORT = int(os.environ.get("CONVEYOR_MLFLOW_PORT", "5000"))
SERVICE_PORT = int(os.environ.get("CONVEYOR_SERVE_PORT", "8000"))


def _services(settings: Settings, pipeline: str):
    from conveyor_runtime.services import Service

    bin_dir = Path(sys.executable).parent
    mlflow_ui = Service(
        "mlflow-ui",
        [
            str(bin_dir / "mlflow"),
            "server",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(MLFLOW_UI_PORT),
            "--workers",
            "1",
        ],
        MLFLOW_UI_PORT,
        "/health",
    )
    model_service = Service(
        "model-service",
        [
            sys.executable,
            "-m",
            "conveyor.serving.server",
            "--pipeline",
            pipeline,
            "--host",
            "127.0.0.1",
            "--port",
            str(SERVICE_PORT),
        ],
        SERVICE_PORT,
        "/health",
        up_statuses=(200, 503),  # 503: running, no production model yet
    )
    return mlflow_ui, model_service


def _admin_token(settings: Settings) -> str:
    """The demo service's admin token: from the environment, else generated once (0600)."""
    import secrets

    if os.environ.get("CONVEYOR_ADMIN_TOKEN"):
        return os.environ["CONVEYOR_ADMIN_TOKEN"]
    path = settings.home / "run" / "admin-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor_runtime.supervisor import AirflowSupervisor

    supervisor = AirflowSupervisor(settings)
    with console.status("Starting Airflow (scheduler, dag-processor, triggerer, api-server)..."):
        state = supervisor.start(port=args.port, timeout=args.timeout)
    verb = "Already running" if state.get("reused") else "Started"
    console.print(
        f"[green]{verb}[/] Airflow at {state['url']} (login admin / admin); logs in {supervisor.logs_dir}"
    )
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor_runtime import services as background
    from conveyor_runtime.supervisor import AirflowSupervisor

    for name in ("model-service", "mlflow-ui"):
        if background.stop(settings, name):
            console.print(f"Stopped {name}")
    pids = AirflowSupervisor(settings).stop(timeout=args.timeout)
    console.print(f"Stopped {len(pids)} Airflow processes" if pids else "Airflow was not running")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor_runtime import services as background
    from conveyor_runtime.supervisor import AirflowSupervisor

    st = AirflowSupervisor(settings).status()
    table = Table(title=f"Airflow {st.get('url') or '(not running)'}")
    for column in ("component", "pid", "alive", "log"):
        table.add_column(column)
    for name, comp in (st.get("components") or {}).items():
        table.add_row(name, str(comp["pid"]), "yes" if comp["alive"] else "no", comp["log"])
    for name in ("mlflow-ui", "model-service"):
        svc = background.running(settings, name)
        table.add_row(
            name, str(svc["pid"]) if svc else "-", "yes" if svc else "no", svc["log"] if svc else ""
        )
    console.print(table)
    return 0 if st.get("healthy") else 1


def cmd_demo_up(args: argparse.Namespace, settings: Settings) -> int:
    """The product on one laptop: Airflow, MLflow UI, a training run, the model service."""
    from conveyor_runtime import services as background
    from conveyor_runtime.airflow_env import airflow_env
    from conveyor_runtime.progress import ProgressDisplay
    from conveyor_runtime.supervisor import AirflowSupervisor

    # The scheduler imports the heavy task modules once and LocalExecutor tasks inherit
    # them (conveyor.airflow_preload); CONVEYOR_PRELOAD_MODULES= (empty) turns it off.
    env = airflow_env(settings, base={"CONVEYOR_PRELOAD_MODULES": "1", **os.environ})
    env["CONVEYOR_MLFLOW_UI_URL"] = f"http://127.0.0.1:{MLFLOW_UI_PORT}"
    env["CONVEYOR_ADMIN_TOKEN"] = _admin_token(settings)
    supervisor = AirflowSupervisor(settings, base_env=env)
    with console.status(
        "Starting Airflow (scheduler, dag-processor, triggerer, api-server); ~1 min..."
    ):
        state = supervisor.start(port=args.port, timeout=args.timeout)
    mlflow_ui, model_service = _services(settings, args.pipeline)
    with console.status("Starting the MLflow UI..."):
        background.start(settings, mlflow_ui, env, timeout=120)
    # The service runs before the first training run (503 until a model exists), so every
    # deployment is verified against it; Airflow finds it through a connection.
    with console.status("Starting the model service..."):
        background.start(settings, model_service, env, timeout=120)
    dag_id = f"train_{args.pipeline}"
    with supervisor.client() as client:
        demo_connections(client, settings, token=env["CONVEYOR_ADMIN_TOKEN"])
        with console.status(f"Waiting for Airflow to parse {dag_id}..."):
            client.wait_for_dag(dag_id, timeout=180)
        client.unpause(dag_id)
        run_id = client.trigger(dag_id, conf={"force": args.force})
        console.print(f"Triggered {dag_id} run [bold]{run_id}[/]")
        with ProgressDisplay(console) as display:
            result = client.wait_for_run(
                dag_id, run_id, timeout=args.run_timeout, on_progress=display.update
            )
    run_state = str(result.state)
    summary = summarise_run(settings, args.pipeline, dag_id, run_id, result.states)
    print_summary(
        f"{dag_id} — {run_state}",
        summary,
        ("data_md5", "metrics", "gate", "registered_version", "production_version"),
    )
    console.rule("Conveyor is running")
    console.print(f"Airflow UI      {state['url']}   login [bold]admin[/] / [bold]admin[/]")
    console.print(f"Pipelines view  {state['url']}/conveyor/")
    console.print(f"MLflow UI       {mlflow_ui.url}")
    if background.running(settings, "model-service"):
        example = json.dumps({"records": [_example_record(settings, args.pipeline)]})
        console.print(f"Model service   {model_service.url}  (GET /health, /version)")
        # plain print: rich would wrap the line and break copy-paste
        print(
            f"  curl -s -X POST {model_service.url}/predict -H 'Content-Type: application/json' -d '{example}'"
        )
    console.print("New data:  make new-data   (the asset watcher starts a retraining run)")
    console.print("Stop all:  make stop")
    return 0 if run_state == "success" else 1


def demo_connections(
    client: Any, settings: Settings, *, token: str, service_port: int | None = None
) -> list[str]:
    """Create (or replace) the demo's connections in Airflow's metadata DB from the ports it
    runs on, so `CONVEYOR_SERVE_PORT` and friends move every client (and `airflow
    connections list` shows them)."""
    wanted = [
        {
            "connection_id": "conveyor_model_service_default",
            "conn_type": "conveyor_model_service",
            "host": "127.0.0.1",
            "port": service_port or SERVICE_PORT,
            "schema": "http",
            "password": token,
            "description": "Conveyor demo model service (created by `conveyor demo up`)",
        },
        {
            "connection_id": "conveyor_mlflow_default",
            "conn_type": "conveyor_mlflow",
            "extra": json.dumps({"tracking_uri": settings.mlflow_tracking_uri}),
            "description": "Conveyor demo MLflow store (created by `conveyor demo up`)",
        },
    ]
    for body in wanted:
        conn_id = body["connection_id"]
        client.request("DELETE", f"/api/v2/connections/{conn_id}", ok=(204, 404))
        client.request("POST", "/api/v2/connections", json=body, ok=(201,))
    return [c["connection_id"] for c in wanted]


def _example_record(settings: Settings, pipeline: str) -> dict:
    """One real row of the pipeline's data for the printed curl example."""
    import csv

    from conveyor_runtime.datasets import DATASETS

    path = Path(settings.data_registry) / DATASETS.get(pipeline, "")
    if path.is_file():
        with open(path) as fh:
            row = next(csv.DictReader(fh))
        row.pop("target", None)
        return {k: float(v) for k, v in row.items()}
    return {}


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.serving.server import main as serve_main

    argv = [arg for name in args.pipeline for arg in ("--pipeline", name)]
    if args.host:
        argv += ["--host", args.host]
    if args.port:
        argv += ["--port", str(args.port)]
    return serve_main(argv)


def cmd_housekeeping(args: argparse.Namespace, settings: Settings) -> int:
    """Each pipeline's retention policy: a dry run unless --apply."""
    from conveyor.config import list_pipelines, load_pipeline_config, pipeline_path
    from conveyor.registry.retention import housekeeping

    names = [args.pipeline] if args.pipeline else list_pipelines(settings.pipelines_dir)
    for name in names:
        config = load_pipeline_config(pipeline_path(name, settings.pipelines_dir))
        summary = housekeeping(settings, config, dry_run=not args.apply)
        verb = "deleted" if args.apply else "would delete"
        console.print(f"[bold]{name}[/]: {verb} {len(summary['planned'])} item(s)")
        for item in summary["planned"]:
            console.print(
                f"  {item['kind']:<15} {item['target']}  ({item['reason']})", soft_wrap=True
            )
    if not args.apply:
        console.print("Dry run: nothing was deleted (add --apply to delete).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show full logs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the embedded demo").add_subparsers(
        dest="demo_command", required=True
    )
    demo.add_parser(
        "init", help="create data registry, MLflow store and AIRFLOW_HOME"
    ).set_defaults(func=cmd_demo_init)
    run = demo.add_parser("run", help="run a training DAG to completion with dag.test()")
    run.add_argument("--pipeline", default="breast_cancer")
    run.add_argument("--data-rev", default="")
    run.add_argument("--force", action="store_true")
    run.add_argument(
        "--gate-override", action="store_true", help="register even if the gate rejects"
    )
    run.add_argument("--reason", default="", help="why the gate is overridden (required with it)")
    run.set_defaults(func=cmd_demo_run)

    new_data = demo.add_parser("new-data", help="commit and push a new version of a demo dataset")
    new_data.add_argument(
        "--pipeline", default="breast_cancer", choices=["breast_cancer", "diabetes"]
    )
    new_data.add_argument("--drift", action="store_true", help="shift feature distributions")
    new_data.set_defaults(func=cmd_demo_new_data)

    traffic = demo.add_parser(
        "traffic", help="send requests to the model service, then run the monitoring DAG"
    )
    traffic.add_argument("--pipeline", default="breast_cancer")
    traffic.add_argument("--dataset", default=None, help="demo dataset (default: the pipeline)")
    traffic.add_argument("--rows", type=int, default=500)
    traffic.add_argument("--drift", action="store_true", help="shift ten features by +60 %%")
    traffic.add_argument(
        "--url",
        default=None,
        help="service URL (default: deploy.service_url, else the demo's service, CONVEYOR_SERVE_PORT)",
    )
    traffic.add_argument("--seed", type=int, default=0)
    traffic.add_argument("--no-monitor", action="store_true", help="only send the requests")
    traffic.add_argument("--timeout", type=float, default=600)
    traffic.set_defaults(func=cmd_demo_traffic)

    up_demo = demo.add_parser(
        "up", help="start Airflow + MLflow UI, train through the scheduler, start the model service"
    )
    up_demo.add_argument("--pipeline", default="breast_cancer")
    up_demo.add_argument(
        "--port", type=int, default=None, help="Airflow port (CONVEYOR_AIRFLOW_PORT, 8080)"
    )
    up_demo.add_argument(
        "--force", action="store_true", help="retrain even if inputs are unchanged"
    )
    up_demo.add_argument("--timeout", type=float, default=240)
    up_demo.add_argument("--run-timeout", type=float, default=1800)
    up_demo.set_defaults(func=cmd_demo_up)

    serve = sub.add_parser("serve", help="run the model service for pipelines' production models")
    serve.add_argument(
        "--pipeline",
        action="append",
        required=True,
        help="pipeline to serve; repeat it (or give a,b) for several models in one process",
    )
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    up = sub.add_parser("up", help="start Airflow's components in the background")
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--timeout", type=float, default=240)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop everything `conveyor up` / `demo up` started")
    down.add_argument("--timeout", type=float, default=20)
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="Airflow processes, MLflow UI and model service").set_defaults(
        func=cmd_status
    )

    data = sub.add_parser("data", help="the DVC data registry").add_subparsers(
        dest="data_command", required=True
    )
    add = data.add_parser(
        "add", help="put a file into the data registry (dvc add, dvc push, git commit)"
    )
    add.add_argument("path", help="CSV or parquet file")
    add.add_argument("--name", required=True, help="dataset name; stored as data/NAME.<ext>")
    add.add_argument("--dest", default=None, help="path inside the registry instead")
    add.add_argument("--message", default=None, help="git commit message")
    add.set_defaults(func=cmd_data_add)

    house = sub.add_parser(
        "housekeeping",
        help="list (default) or delete what the retention policy allows: old run artifacts, "
        "prediction logs, candidates",
    )
    house.add_argument("--pipeline", default=None, help="one pipeline (default: all)")
    house.add_argument("--apply", action="store_true", help="delete (default: dry run)")
    house.set_defaults(func=cmd_housekeeping)

    new = sub.add_parser("new-pipeline", help="scaffold a pipeline YAML and its DAG file")
    new.add_argument("name")
    new.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="FILE",
        help="infer validation, task, metrics and search scoring from this data file",
    )
    new.add_argument("--target", default=None, help="with --from: the column to predict")
    new.add_argument(
        "--data-path",
        default=None,
        help="with --from: the file's path in the registry (default data/NAME.<ext>)",
    )
    new.add_argument("--template", default="breast_cancer", help="without --from: YAML to copy")
    new.add_argument("--dags-dir", default=None, help="default: $CONVEYOR_PROJECT_DIR/dags")
    new.set_defaults(func=cmd_new_pipeline)

    models = sub.add_parser("models", help="model registry").add_subparsers(
        dest="models_command", required=True
    )
    listing = models.add_parser("list", help="versions, aliases and lineage of a pipeline's model")
    listing.add_argument("pipeline")
    listing.set_defaults(func=cmd_models_list)
    from conveyor_runtime.models_cli import register_commands

    register_commands(models)

    init = sub.add_parser(
        "airflow-init", help="migrate the embedded Airflow DB and create the pool"
    )
    init.set_defaults(func=lambda a, s: (airflow_init(s), 0)[1])
    return parser


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding ``include/pipelines/`` and ``dags/``
    (how git finds its repository): the project the CLI works on when
    ``CONVEYOR_PROJECT_DIR`` is not set."""
    for folder in (start, *start.parents):
        if (folder / "include" / "pipelines").is_dir() and (folder / "dags").is_dir():
            return folder
    return None


def cli_settings(env: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings for a CLI command: the environment, plus the project found from the working
    directory when none is configured."""
    own_process = env is None
    env = dict(os.environ if env is None else env)
    if setting(env, "project_dir") is None:
        project = find_project((cwd or Path.cwd()).resolve())
        if project is not None:
            env["CONVEYOR_PROJECT_DIR"] = str(project)
            if own_process:  # the processes the command starts see the same project
                os.environ["CONVEYOR_PROJECT_DIR"] = str(project)
    return Settings.from_env(env)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return args.func(args, cli_settings())
    except ConveyorError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
