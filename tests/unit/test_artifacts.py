"""Run-scoped artifact locations: per-attempt prefixes and a manifest written last."""

from __future__ import annotations

import pytest

from conveyor.artifacts import RunArtifacts, safe_segment


def test_run_id_becomes_safe_path():
    assert safe_segment("manual__2026-11-23T10:00:00+00:00") == "manual__2026-11-23T10_00_00_00_00"


def test_manifest_points_at_last_complete_attempt(tmp_path):
    art = RunArtifacts(str(tmp_path), "train_x", "manual__1")
    with art.step("data", attempt=1) as out:
        first = out.write_json("a.json", {"v": 1})
    with pytest.raises(RuntimeError), art.step("data", attempt=2) as out:
        out.write_json("a.json", {"v": 2})
        raise RuntimeError("killed mid-attempt")
    manifest = art.manifest("data")
    assert manifest["attempt"] == 1
    assert manifest["files"] == ["a.json"]
    assert first.endswith("data/try-1/a.json")
    with art.step("data", attempt=3) as out:
        out.write_json("a.json", {"v": 3})
    assert art.manifest("data")["attempt"] == 3


def test_put_dir_keeps_tree(tmp_path):
    src = tmp_path / "docs"
    (src / "sub").mkdir(parents=True)
    (src / "index.html").write_text("<html/>")
    (src / "sub" / "page.html").write_text("<p/>")
    art = RunArtifacts(str(tmp_path / "root"), "d", "r")
    with art.step("validation") as out:
        url = out.put_dir(src, "data_docs")
    assert sorted(art.manifest("validation")["files"]) == [
        "data_docs/index.html",
        "data_docs/sub/page.html",
    ]
    assert (
        tmp_path / "root" / "d" / "r" / "validation" / "try-1" / "data_docs" / "sub" / "page.html"
    ).read_text() == "<p/>"
    assert url.endswith("validation/try-1/data_docs")


def test_missing_manifest_is_none(tmp_path):
    assert RunArtifacts(str(tmp_path), "d", "r").manifest("nothing") is None


def test_open_write_writes_in_place_and_lists_the_file(tmp_path):
    """The validated snapshot is written straight into the store (no temp copy): the file
    lands under the attempt's prefix and the manifest lists it."""
    import pandas as pd

    from conveyor.modeling.runs import read_snapshot

    frame = pd.DataFrame({"a": [1.0, 2.0, None], "target": [0, 1, 0]})
    art = RunArtifacts(f"file://{tmp_path}", "train_x", "manual__1")
    with art.step("validation") as out:
        with out.open_write("snapshot.parquet") as fh:
            frame.to_parquet(fh, index=False)
        url = out.url("snapshot.parquet")
    assert art.manifest("validation")["files"] == ["snapshot.parquet"]
    pd.testing.assert_frame_equal(read_snapshot(url), frame)
