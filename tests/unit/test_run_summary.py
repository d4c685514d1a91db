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
