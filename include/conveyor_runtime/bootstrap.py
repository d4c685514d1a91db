"""First start of the embedded Airflow: migrate its DB, write the demo login, create the pool.

Shared by ``conveyor airflow-init``, ``conveyor up`` (through the supervisor) and the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.settings import Settings
from conveyor_runtime.airflow_env import airflow_env


def run_command(
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
        done = run_command(cmd, env, quiet=True)
        if done.returncode != 0:
            raise ConveyorError(f"`{' '.join(cmd[1:])}` failed:\n{done.stdout[-3000:]}")
    return env
