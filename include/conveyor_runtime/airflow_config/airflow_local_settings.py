"""Conveyor's ``airflow_local_settings``: on ``PYTHONPATH`` only when preloading is enabled.

Airflow imports this module in every component (``airflow.settings.import_local_settings``).
:func:`conveyor_runtime.preload.install` imports the heavy task modules in ``airflow
scheduler`` only, so the LocalExecutor's forked workers and tasks inherit them; anywhere
else it returns at once. Nothing is exported: Airflow takes every public name of this
module as a setting or cluster policy.
"""

from conveyor_runtime.preload import install as _install

__all__: list[str] = []

_install()
