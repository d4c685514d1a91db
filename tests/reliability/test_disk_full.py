"""Disk full while a step writes its artifacts, simulated with ``RLIMIT_FSIZE``.

A mount of a small filesystem needs privileges; a file size limit set in the writing
process (as a task's process would hit it) makes every write past the limit fail with
``EFBIG``, exactly where ``ENOSPC`` would. A first attempt of the step completes
normally; a second attempt runs in a subprocess with the limit and must fail with a
clear error while the first attempt's files and manifest stay intact and readable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor.artifacts import RunArtifacts

DAG_ID, RUN_ID = "train_disk_full", "manual__2026-01-01T00:00:00+00:00"

# Attempt 2 of the step in a process that may not write files larger than LIMIT bytes.
WRITER = textwrap.dedent(
    """
    import resource, sys
    from conveyor.artifacts import RunArtifacts

    root, dag_id, run_id, limit, shape = sys.argv[1:]
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    artifacts = RunArtifacts(root, dag_id, run_id)
    with artifacts.step("train", attempt=2) as out:
        if shape == "big-artifact":
            out.write_bytes("model.bin", b"m" * 1_000_000)
        else:  # many small files: each fits, the manifest listing them does not
            for i in range(40):
                out.write_bytes(f"plots/a-rather-long-plot-name-{i:03d}.png", b"p" * 64)
    print("attempt 2 complete")
    """
)


@pytest.fixture
def first_attempt(tmp_path):
    root = str(tmp_path / "artifacts")
    artifacts = RunArtifacts(root, DAG_ID, RUN_ID)
    with artifacts.step("train", attempt=1) as out:
        out.write_bytes("model.bin", b"first model")
        out.write_json("metrics.json", {"roc_auc": 0.99})
    manifest = artifacts.manifest("train")
    assert manifest["attempt"] == 1
    return root, artifacts, manifest


@pytest.mark.parametrize(
    ("shape", "where"),
    [("big-artifact", "model.bin"), ("manifest-too-big", "manifest.json")],
    ids=["artifact-write-fails", "manifest-write-fails"],
)
def test_disk_full_fails_clearly_and_keeps_previous_artifacts(first_attempt, shape, where):
    root, artifacts, manifest = first_attempt
    done = subprocess.run(
        [sys.executable, "-c", WRITER, root, DAG_ID, RUN_ID, "512", shape],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "attempt 2 complete" not in done.stdout
    [error] = [
        line for line in done.stderr.splitlines() if line.startswith("OSError: [Errno 27] Cannot")
    ]
    # One line saying what could not be written, where, why, and what to do.
    assert where in error and "File too large" in error, done.stderr
    assert "free space" in error, error

    assert artifacts.manifest("train") == manifest  # still the complete first attempt
    prefix = Path(manifest["prefix"])
    assert (prefix / "model.bin").read_bytes() == b"first model"
    assert json.loads((prefix / "metrics.json").read_text()) == {"roc_auc": 0.99}
    step_dir = prefix.parent
    assert not [p.name for p in step_dir.iterdir() if p.name.startswith("manifest.json.")]

    # With space again, the next attempt completes and the manifest moves to it.
    with artifacts.step("train", attempt=3) as out:
        out.write_bytes("model.bin", b"third model")
    assert artifacts.manifest("train")["attempt"] == 3
    assert Path(artifacts.manifest("train")["prefix"], "model.bin").read_bytes() == b"third model"
