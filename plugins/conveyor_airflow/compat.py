"""Names whose home moved between Airflow 3.1 and 3.3, imported from wherever this Airflow has
them. The floor is Airflow 3.1.8 (tests/compat installs the wheel beside it).

* ``AirflowFailException``, ``AirflowSkipException``, ``AirflowNotFoundException``,
  ``DownstreamTasksSkipped``: in
  ``airflow.sdk.exceptions`` from 3.2 (Task SDK 1.2); ``airflow.exceptions`` on 3.1.
* ``AssetOrTimeSchedule``, ``CronTriggerTimetable``: exported by ``airflow.sdk`` from 3.2;
  ``airflow.timetables`` on 3.1.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException

try:
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
        DownstreamTasksSkipped,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
        DownstreamTasksSkipped,
    )


def schedule_classes() -> tuple[type, type]:
    """``(AssetOrTimeSchedule, CronTriggerTimetable)`` (imported only when a schedule is set)."""
    try:
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable
    except ImportError:  # Airflow 3.1
        from airflow.timetables.assets import AssetOrTimeSchedule
        from airflow.timetables.trigger import CronTriggerTimetable
    return AssetOrTimeSchedule, CronTriggerTimetable


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "DownstreamTasksSkipped",
    "schedule_classes",
]
