"""First start of the embedded Airflow: migrate its DB, write the demo login, create the pool,
and write the demo's settings into its ``airflow.cfg``.

Shared by ``conveyor airflow-init``, ``conveyor up`` (through the supervisor) and the tests.

Why ``airflow.cfg``: the embedded components get their settings as ``AIRFLOW__*``
variables, but a user who runs ``airflow dags list`` or ``airflow tasks test`` with the
demo's ``AIRFLOW_HOME`` has only that file. Airflow writes a default one on first use,
whose ``dags_folder`` is ``$AIRFLOW_HOME/dags`` (a folder that does not exist here), so
every ``airflow ...`` command saw no DAGs. Writing the same values into the file makes any
command run with that ``AIRFLOW_HOME`` see the DAGs, plugins, database (pools,
connections, variables) and ``[conveyor]`` locations the running demo uses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.settings import LOCATION_KEYS, Settings
from conveyor_runtime.airflow_env import airflow_env

_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")


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


def cfg_values(settings: Settings, env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``{section: {key: value}}`` the embedded Airflow runs with: every ``AIRFLOW__*``
    option :func:`airflow_env` sets (with the value ``env`` gives it, so a user's override
    is what is written) and the ``[conveyor]`` locations of ``settings``."""
    values: dict[str, dict[str, str]] = {}
    for name in airflow_env(settings, base={}):
        parts = name.split("__")
        if len(parts) == 3 and parts[0] == "AIRFLOW" and name in env:
            values.setdefault(parts[1].lower(), {})[parts[2].lower()] = env[name]
    conveyor = values.setdefault("conveyor", {})
    for key in LOCATION_KEYS:
        conveyor[key] = str(getattr(settings, key))
    return values


def write_airflow_cfg(path: Path, values: Mapping[str, Mapping[str, str]]) -> Path:
    """Set ``values`` in the ``airflow.cfg`` at ``path``, keeping everything else in it.

    An option already present (uncommented) in its section gets the new value in place; a
    missing one is added right under its section header; a missing section is appended.
    Comments and every other option stay as Airflow wrote them. ``%`` is doubled (Airflow
    reads the file with configparser's interpolation). The file is replaced atomically and
    readable only by its owner (it names the database).
    """
    lines = path.read_text().splitlines() if path.exists() else []
    pending = {section: dict(options) for section, options in values.items()}
    section: str | None = None
    header_at: dict[str, int] = {}
    out: list[str] = []
    for line in lines:
        match = _SECTION.match(line)
        if match:
            section = match.group(1).strip()
            header_at[section] = len(out)
            out.append(line)
            continue
        key = line.split("=", 1)[0].strip().lower() if "=" in line else None
        commented = line.lstrip().startswith(("#", ";"))
        if section in pending and key in pending[section] and not commented:
            value = pending[section].pop(key)
            out.append(f"{key} = {value.replace('%', '%%')}")
            continue
        out.append(line)
    # options not found: insert under their header (from the last section up, so the
    # recorded positions stay valid), or append the whole section
    for name in sorted(pending, key=lambda n: -header_at.get(n, -1)):
        options = pending[name]
        if not options:
            continue
        block = [f"{k} = {v.replace('%', '%%')}" for k, v in options.items()]
        if name in header_at:
            at = header_at[name] + 1
            out[at:at] = block
        else:
            out += ["", f"[{name}]", *block]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(out) + "\n")
    os.replace(tmp, path)
    return path


def sync_airflow_cfg(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    """Write the embedded Airflow's settings into ``$AIRFLOW_HOME/airflow.cfg``."""
    env = airflow_env(settings) if env is None else env
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return write_airflow_cfg(home / "airflow.cfg", cfg_values(settings, env))


def airflow_init(settings: Settings) -> dict[str, str]:
    """Migrate the embedded Airflow DB, set the demo password, create the training pool,
    and write the settings into ``airflow.cfg`` (idempotent: run it as often as you like)."""

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
    # after the first Airflow command, which writes Airflow's default airflow.cfg
    sync_airflow_cfg(settings, env)
    return env
