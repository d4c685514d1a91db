"""The provider's ``[conveyor]`` config section, resolved into the core's settings.

The core (:mod:`conveyor.settings`) reads ``CONVEYOR_*`` / ``AIRFLOW__CONVEYOR__*``
environment variables only, because it never imports Airflow. A team that writes the
section in ``airflow.cfg`` (or sets it through any of Airflow's config sources) gets the
same values here: options Airflow's ``conf`` knows fill in what the environment leaves
unset.
"""

from __future__ import annotations

import os
from typing import Any

from conveyor.settings import LOCATION_KEYS, Settings, setting

SECTION = "conveyor"


def airflow_conf() -> Any:
    """Airflow's configuration as task code should read it (the Task SDK's parser where the
    SDK has one, Airflow 3.2+; the core parser on 3.1)."""
    try:
        from airflow.sdk import conf
    except ImportError:
        from airflow.configuration import conf
    return conf


def conf_value(key: str, fallback: str | None = None) -> str | None:
    """``[conveyor] key`` from Airflow's configuration (``fallback`` when empty or unknown)."""
    value = airflow_conf().get(SECTION, key, fallback=None)
    return value or fallback


def conveyor_settings() -> Settings:
    """Core settings with ``[conveyor]`` options filled in from Airflow's configuration."""
    env = dict(os.environ)
    for key in LOCATION_KEYS:
        if setting(env, key) is None:
            value = conf_value(key)
            if value:
                env[f"CONVEYOR_{key.upper()}"] = value
    return Settings.from_env(env)
