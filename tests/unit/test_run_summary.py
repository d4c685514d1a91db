"""How `conveyor demo run` explains a run that registered no version, from task states."""

from __future__ import annotations

import pytest

from conveyor_runtime.cli import _not_reached

STEPS = ["pull_data", "validate_data", "train_model", "evaluate_model", "gate"]


@pytest.mark.parametrize(
    "resolve_state, later_state",
    [
        ("success", "skipped"),  # short-circuit: resolve_inputs marks the rest skipped
        ("skipped", "skipped"),  # runs recorded before the short-circuit
    ],
)
def test_unchanged_inputs_are_named_as_the_reason(resolve_state, later_state):
    tasks = {"resolve_inputs": resolve_state, **dict.fromkeys(STEPS, later_state)}
    text = _not_reached(tasks, "3")
    assert "inputs (data md5, config, code) equal production v3's" in text
    assert "--force" in text


def test_a_gate_rejection_is_not_mistaken_for_unchanged_inputs():
    tasks = {"resolve_inputs": "success", **dict.fromkeys(STEPS, "success")}
    tasks.update(gate="failed", register_model="upstream_failed")
    assert _not_reached(tasks, "3") == "not reached: gate failed"
    tasks.update(gate="success", register_model="skipped")
    assert _not_reached(tasks, "3").startswith("rejected")


def test_the_run_result_is_found_after_a_multi_line_log_record():
    """`demo run` of unchanged inputs said "did not start": its result line came right
    after Airflow's multi-line DagRun summary and was read as part of that record."""
    import json

    from conveyor_runtime.cli import log_records, run_result

    tasks = {"resolve_inputs": "success", "pull_data": "skipped"}
    output = "\n".join(
        [
            "2026-11-30T11:53:51.000000Z [info     ] Marking run successful [DagRun]",
            "run_id=manual__1, run_duration=4.28, state=success,",
            "[airflow.models.dagrun.DagRun] loc=dagrun.py:1315",
            "CONVEYOR_RESULT "
            + json.dumps(
                {"dag_id": "train_x", "run_id": "manual__1", "state": "success", "tasks": tasks}
            ),
        ]
    )
    result, lines = run_result(output)
    assert result == {
        "dag_id": "train_x",
        "run_id": "manual__1",
        "state": "success",
        "tasks": tasks,
    }
    assert len(log_records(lines)) == 1 and "CONVEYOR_RESULT" not in "\n".join(lines)
