"""The opt-in scheduler preload (conveyor.airflow_preload) through Airflow's own
``airflow_local_settings`` import: real ``import airflow`` in fresh interpreters, with a
cheap module list so the test takes seconds, not the default list's ~15 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conveyor.settings import Settings
from conveyor_runtime.airflow_env import PRELOAD_SETTINGS_DIR, airflow_env
from conveyor_runtime.preload import DEFAULT_MODULES, is_scheduler, requested_modules

# Stdlib modules Airflow itself does not import.
MODULES = ["tabnanny", "this_module_does_not_exist"]

PROBE = """
import json, os, sys
sys.argv = [os.path.join(os.path.dirname(sys.executable), "airflow"), sys.argv[1]]
import airflow, airflow.settings
pid = os.fork()
if pid == 0:  # a forked child (as a LocalExecutor worker/task) already has the module
    os._exit(0 if "tabnanny" in sys.modules else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "loaded": "tabnanny" in sys.modules,
    "child_has_it": os.waitstatus_to_exitcode(status) == 0,
    "settings_polluted": hasattr(airflow.settings, "_install"),
}))
"""


def _probe(env: dict[str, str], command: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, command],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"stderr": done.stderr}


def test_preload_is_off_unless_asked(tmp_path):
    env = airflow_env(Settings.from_env(), base={"CONVEYOR_HOME": str(tmp_path)})
    assert str(PRELOAD_SETTINGS_DIR) not in env.get("PYTHONPATH", "")
    env = airflow_env(
        Settings.from_env(),
        base={"CONVEYOR_PRELOAD_MODULES": "0", "PYTHONPATH": "/x"},
    )
    assert env["PYTHONPATH"] == "/x"


def test_scheduler_preloads_and_other_components_do_not(tmp_path):
    base = {
        "PATH": "/usr/bin:/bin",
        "CONVEYOR_HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "CONVEYOR_PRELOAD_MODULES": ",".join(MODULES),
        "PYTHONPATH": "/somewhere/else",
    }
    env = airflow_env(Settings.from_env(), base=base)
    assert env["PYTHONPATH"].split(":")[:2] == [str(PRELOAD_SETTINGS_DIR), "/somewhere/else"]

    scheduler = _probe(env, "scheduler")
    assert scheduler["loaded"] and scheduler["child_has_it"]
    assert not scheduler["settings_polluted"]
    # A missing module is reported and skipped; the scheduler still starts.
    assert "skipped this_module_does_not_exist" in scheduler["stderr"]
    assert "1/2 modules imported in the scheduler" in scheduler["stderr"]

    other = _probe(env, "dag-processor")  # also what DAG parsing runs under
    assert not other["loaded"]
    assert "conveyor preload" not in other["stderr"]


def test_only_the_scheduler_command_counts():
    airflow = "/venv/bin/airflow"
    assert is_scheduler([airflow, "scheduler"])
    assert is_scheduler(["/venv/lib/python3.11/site-packages/airflow/__main__.py", "scheduler"])
    for argv in (
        [airflow, "triggerer"],
        [airflow, "api-server"],
        [airflow, "dag-processor"],
        [airflow, "standalone"],
        ["/venv/bin/python", "scheduler"],
        [airflow],
    ):
        assert not is_scheduler(argv), argv
    assert requested_modules({}) == []
    assert requested_modules({"CONVEYOR_PRELOAD_MODULES": "1"}) == list(DEFAULT_MODULES)
    assert requested_modules({"CONVEYOR_PRELOAD_MODULES": "default,x"})[-1] == "x"
