"""Conveyor's Airflow plugin, registered through the ``airflow.plugins`` entry point.

Registered through the entry point, not by living under ``plugins/``: Airflow executes
every ``.py`` under its plugins folder as a top-level module named after the file, which
would load this package twice and shadow libraries (see DESIGN: the plugins folder trap).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class ConveyorPlugin(AirflowPlugin):
    """Placeholder for Conveyor's UI integration (extra links, pipeline overview)."""

    name = "conveyor"
