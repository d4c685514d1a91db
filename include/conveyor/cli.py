"""``conveyor`` command line: demo setup and runs, pipeline scaffolding, model listing.

The core never imports Airflow, so commands that need Airflow run it as a subprocess
(``airflow`` or ``python -m conveyor_airflow.local_run``) with :func:`airflow_env`.
Expected failures print one red line and exit 1; nothing here prints a traceback for
a user mistake.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from conveyor.errors import ConveyorError
from conveyor.settings import REPO_ROOT, Settings

console = Console()
err_console = Console(stderr=True)

DAG_TEMPLATE = '''"""Training DAG of the {name} pipeline (include/pipelines/{name}.yaml)."""

from conveyor_airflow.factory import build_pipeline_dag

dag = build_pipeline_dag("{name}")
'''


def _run(
    cmd: list[str], env: dict[str, str], *, quiet: bool = False
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        env=env,
        check=False,
        text=True,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )


def airflow_init(settings: Settings) -> dict[str, str]:
    """Migrate the embedded Airflow DB, set the demo password, create the training pool."""
    from conveyor.airflow_env import airflow_env

    env = airflow_env(settings)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": "admin"}))
    airflow = str(Path(sys.executable).with_name("airflow"))
    for cmd in (
        [airflow, "db", "migrate"],
        [
            airflow,
            "pools",
            "set",
            "conveyor_training",
            "1",
            "Conveyor training tasks (bounds CPU use)",
        ],
    ):
        done = _run(cmd, env, quiet=True)
        if done.returncode != 0:
            raise ConveyorError(f"`{' '.join(cmd[1:])}` failed:\n{done.stdout[-3000:]}")
    return env


def cmd_demo_init(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.demo import init_demo

    with console.status("Creating the demo data registry and MLflow store..."):
        shas = init_demo(settings)
    with console.status("Preparing the embedded Airflow (SQLite + LocalExecutor)..."):
        airflow_init(settings)
    console.print(f"[green]Demo ready[/] under {settings.home}")
    for name, sha in shas.items():
        console.print(f"  data registry {settings.data_registry}: {name} at {sha[:10]}")
    return 0


def cmd_demo_new_data(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.demo import new_data_version

    with console.status("Committing and pushing a new data version..."):
        sha, md5 = new_data_version(settings, args.pipeline, drift=args.drift)
    console.print(f"[green]New {args.pipeline} data[/] at commit {sha[:10]} (md5 {md5})")
    console.print(
        "A running Airflow notices it within the poll interval (CONVEYOR_WATCH_POLL_SECONDS) "
        f"and starts train_{args.pipeline}; or run it now: conveyor demo run --pipeline {args.pipeline}"
    )
    return 0


def summarise_run(settings: Settings, pipeline: str, dag_id: str, run_id: str) -> dict:
    """What a training run produced, read back from MLflow."""
    from conveyor import tracking
    from conveyor.registry import PRODUCTION, find_run_version, version_by_alias

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
    else:
        summary["gate"] = "rejected or not reached"
    prod = version_by_alias(client, pipeline, PRODUCTION)
    summary["production_version"] = str(prod.version) if prod else None
    return summary


_LOG_RE = re.compile(r"^\S+T(\d\d:\d\d:\d\d)\S* \[(\w+)\s*\] (.*?)\s+\[([\w.]+)\]")


def _progress_line(line: str) -> str | None:
    """A compact ``time level message`` for Conveyor's own log records and errors."""
    match = _LOG_RE.match(line)
    if match is None:
        return None
    clock, level, message, logger = match.groups()
    ours = logger.startswith(("conveyor", "airflow.task.operators.conveyor_airflow"))
    if ours or level in ("error", "critical") or message.startswith("Marking run"):
        return f"{clock} {level:<7} {message}"
    return None


def cmd_demo_run(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.airflow_env import airflow_env

    env = airflow_env(settings)
    if not Path(env["AIRFLOW_HOME"], "airflow.db").exists():
        airflow_init(settings)
    conf = {"force": args.force}
    if args.data_rev:
        conf["data_rev"] = args.data_rev
    console.rule(f"Running train_{args.pipeline} with dag.test() (logs below)")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor_airflow.local_run",
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
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("CONVEYOR_RESULT "):
            result = json.loads(line.removeprefix("CONVEYOR_RESULT "))
        elif args.verbose:
            print(line)
        elif (shown := _progress_line(line)) is not None:
            console.print(shown, markup=False, highlight=False)
    if result is None:
        err_console.print(proc.stdout[-4000:], markup=False)
        err_console.print("[red]The training run did not start; see the output above.[/]")
        return 1
    summary = summarise_run(settings, args.pipeline, result["dag_id"], result["run_id"])
    table = Table(title=f"{result['dag_id']} — {result['state']}", show_header=False)
    for key in (
        "run_id",
        "data_git_sha",
        "data_md5",
        "metrics",
        "gate",
        "registered_version",
        "production_version",
        "mlflow_run_id",
    ):
        value = summary.get(key)
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)
    console.print(
        f"MLflow UI: [bold]MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri} uv run mlflow ui[/]"
    )
    return 0 if result["state"] == "success" else 1


def cmd_new_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    import re

    import yaml

    from conveyor.config import load_pipeline_config, pipeline_path

    name = args.name
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
        raise ConveyorError(f"Pipeline name {name!r} must be lower_snake_case (e.g. 'churn_model')")
    target = pipeline_path(name, settings.pipelines_dir)
    dag_file = Path(args.dags_dir) / f"{name}.py"
    for path in (target, dag_file):
        if path.exists():
            raise ConveyorError(f"{path} already exists; choose another name or edit it directly")
    template = load_pipeline_config(pipeline_path(args.template, settings.pipelines_dir))
    raw = template.model_dump(mode="json", exclude_defaults=False)
    raw.update(name=name, description=f"TODO: describe {name}", tags=[])
    raw["data"]["path"] = f"data/{name}.csv"
    target.write_text(
        f"# Pipeline {name}: scaffolded from {args.template}.yaml — edit data, validation, model.\n"
        + yaml.safe_dump(raw, sort_keys=False, width=100)
    )
    dag_file.write_text(DAG_TEMPLATE.format(name=name))
    console.print(f"[green]Created[/] {target} and {dag_file}")
    return 0


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor import tracking

    client = tracking.configure(settings)
    versions = client.search_model_versions(f"name = '{args.pipeline}'")
    aliases: dict[str, list[str]] = {}
    for model in client.search_registered_models(f"name = '{args.pipeline}'"):
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
    table = Table(title=f"Model versions of {args.pipeline}")
    for column in ("version", "aliases", "complete", "data md5", "metrics", "dag run"):
        table.add_column(column)
    for mv in sorted(versions, key=lambda v: int(v.version)):
        table.add_row(
            str(mv.version),
            ",".join(aliases.get(str(mv.version), [])),
            mv.tags.get("conveyor.complete", "no"),
            mv.tags.get("conveyor.data_md5", "")[:12],
            mv.tags.get("conveyor.metrics", ""),
            mv.tags.get("conveyor.run_id", ""),
        )
    console.print(table)
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
    run.set_defaults(func=cmd_demo_run)

    new_data = demo.add_parser("new-data", help="commit and push a new version of a demo dataset")
    new_data.add_argument(
        "--pipeline", default="breast_cancer", choices=["breast_cancer", "diabetes"]
    )
    new_data.add_argument("--drift", action="store_true", help="shift feature distributions")
    new_data.set_defaults(func=cmd_demo_new_data)

    new = sub.add_parser("new-pipeline", help="scaffold a pipeline YAML and its DAG file")
    new.add_argument("name")
    new.add_argument("--template", default="breast_cancer")
    new.add_argument("--dags-dir", default=str(REPO_ROOT / "dags"))
    new.set_defaults(func=cmd_new_pipeline)

    models = sub.add_parser("models", help="model registry").add_subparsers(
        dest="models_command", required=True
    )
    listing = models.add_parser("list", help="versions, aliases and lineage of a pipeline's model")
    listing.add_argument("pipeline")
    listing.set_defaults(func=cmd_models_list)

    init = sub.add_parser(
        "airflow-init", help="migrate the embedded Airflow DB and create the pool"
    )
    init.set_defaults(func=lambda a, s: (airflow_init(s), 0)[1])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return args.func(args, Settings.from_env())
    except ConveyorError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
