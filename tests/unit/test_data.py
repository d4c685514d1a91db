"""Reading data from a DVC data registry: real git, real DVC, local-directory remotes.

A module-scoped registry with two published versions serves the read-only tests; tests
that break a registry (delete its remote, corrupt an object) build their own, which
costs a fraction of a second once DVC is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.data.registry import init_registry, publish_file
from conveyor.data.source import DataSnapshot, fetch, read_tracked_md5, resolve_rev
from conveyor.errors import DataError

V1 = b"a,b\n1,2\n"
V2 = b"a,b\n1,2\n3,4\n"
DATA_PATH = "data/table.csv"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@dataclass(frozen=True)
class Registry:
    path: Path
    remote: Path
    sha1: str
    sha2: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


@pytest.fixture(scope="module", autouse=True)
def _conveyor_home(tmp_path_factory: pytest.TempPathFactory):
    """Keep git mirrors (CONVEYOR_HOME) and DVC's site cache out of shared places."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONVEYOR_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("DVC_SITE_CACHE_DIR", str(tmp_path_factory.mktemp("dvc-site-cache")))
        yield


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry with V1 (tagged v1, annotated tag v1-annotated) then V2 on main."""
    base = tmp_path_factory.mktemp("registry")
    path = init_registry(base / "registry", base / "remote")
    sha1 = publish_file(path, DATA_PATH, write(base / "v1.csv", V1), message="v1")
    git(path, "tag", "v1")
    git(path, "tag", "-a", "v1-annotated", "-m", "first version")
    sha2 = publish_file(path, DATA_PATH, write(base / "v2.csv", V2), message="v2")
    return Registry(path=path, remote=base / "remote", sha1=sha1, sha2=sha2)


def fresh_registry(tmp_path: Path) -> Registry:
    path = init_registry(tmp_path / "registry", tmp_path / "remote")
    sha = publish_file(path, DATA_PATH, write(tmp_path / "v1.csv", V1), message="v1")
    return Registry(path=path, remote=tmp_path / "remote", sha1=sha, sha2=sha)


# ------------------------------------------------------------------------- happy paths


def test_publish_then_fetch_round_trip(registry: Registry, tmp_path: Path) -> None:
    snap = fetch(str(registry.path), DATA_PATH, "main", tmp_path / "out")

    assert Path(snap.local_path) == tmp_path / "out" / "table.csv"
    assert Path(snap.local_path).read_bytes() == V2
    assert snap.git_sha == registry.sha2 == git(registry.path, "rev-parse", "main")
    dvc_file = git(registry.path, "show", f"{registry.sha2}:{DATA_PATH}.dvc")
    assert f"md5: {snap.md5}" in dvc_file  # the md5 DVC itself recorded
    assert snap.md5 == md5(V2)
    assert (snap.repo, snap.path, snap.rev) == (str(registry.path), DATA_PATH, "main")
    assert sorted(os.listdir(tmp_path / "out")) == ["table.csv"]  # no temp leftovers

    payload = json.loads(json.dumps(snap.to_dict()))
    assert DataSnapshot.from_dict(payload) == snap


def test_fetch_older_rev_returns_old_content(registry: Registry, tmp_path: Path) -> None:
    for rev in (registry.sha1, registry.sha1[:10], "v1", "v1-annotated"):
        snap = fetch(str(registry.path), DATA_PATH, rev, tmp_path / rev)
        assert Path(snap.local_path).read_bytes() == V1, rev
        assert (snap.git_sha, snap.md5, snap.rev) == (registry.sha1, md5(V1), rev)


def test_fetch_overwrites_previous_file(registry: Registry, tmp_path: Path) -> None:
    fetch(str(registry.path), DATA_PATH, "v1", tmp_path)
    snap = fetch(str(registry.path), DATA_PATH, "main", tmp_path)
    assert Path(snap.local_path).read_bytes() == V2


def test_resolve_rev_branch_tag_sha(registry: Registry) -> None:
    repo = str(registry.path)
    assert resolve_rev(repo, "main") == registry.sha2
    assert resolve_rev(repo, "v1") == registry.sha1
    assert resolve_rev(repo, "v1-annotated") == registry.sha1  # peeled to the commit
    assert resolve_rev(repo, registry.sha1) == registry.sha1
    assert resolve_rev(repo, registry.sha1[:8]) == registry.sha1


def test_url_registry_resolves_reads_and_fetches(registry: Registry, tmp_path: Path) -> None:
    url = registry.url  # file://, so the git-URL code path (ls-remote + mirror) runs
    assert resolve_rev(url, "main") == registry.sha2
    assert resolve_rev(url, "v1-annotated") == registry.sha1
    assert resolve_rev(url, registry.sha1[:8]) == registry.sha1
    assert read_tracked_md5(url, DATA_PATH, "v1") == md5(V1)

    snap = fetch(url, DATA_PATH, "main", tmp_path)
    assert (snap.repo, snap.git_sha, snap.md5) == (url, registry.sha2, md5(V2))
    assert Path(snap.local_path).read_bytes() == V2


def test_read_tracked_md5_matches_fetch(registry: Registry, tmp_path: Path) -> None:
    for rev in ("main", "v1"):
        snap = fetch(str(registry.path), DATA_PATH, rev, tmp_path / rev)
        assert read_tracked_md5(str(registry.path), DATA_PATH, rev) == snap.md5


@pytest.mark.parametrize("kind", ["path", "url"])
def test_read_tracked_md5_never_imports_dvc(registry: Registry, kind: str) -> None:
    """The poller's fast path: git only, no DVC import (which costs about a second)."""
    repo = str(registry.path) if kind == "path" else registry.url
    code = (
        "import sys, time\n"
        "from conveyor.data.source import read_tracked_md5, resolve_rev\n"
        "t = time.perf_counter()\n"
        f"md5 = read_tracked_md5({repo!r}, {DATA_PATH!r}, 'main')\n"
        f"sha = resolve_rev({repo!r}, 'main')\n"
        "elapsed = time.perf_counter() - t\n"
        "loaded = sorted(m for m in sys.modules if m == 'dvc' or m.startswith(('dvc.', 'dvc_')))\n"
        "print(md5, sha, elapsed, loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split(maxsplit=3)
    assert out[:2] == [md5(V2), registry.sha2]
    assert out[3].strip() == "[]", f"DVC was imported: {out[3]}"
    assert float(out[2]) < 1.0  # a few git calls; the URL case may fetch its mirror


def test_publish_unchanged_content_makes_no_commit(registry: Registry, tmp_path: Path) -> None:
    commits = git(registry.path, "rev-list", "--count", "HEAD")
    again = publish_file(
        registry.path, DATA_PATH, write(tmp_path / "same.csv", V2), message="again"
    )
    assert again == registry.sha2
    assert git(registry.path, "rev-list", "--count", "HEAD") == commits
    assert git(registry.path, "status", "--porcelain") == ""


def test_init_registry_is_idempotent(registry: Registry, tmp_path: Path) -> None:
    head = git(registry.path, "rev-parse", "HEAD")
    assert init_registry(registry.path, tmp_path / "other-remote") == registry.path
    assert git(registry.path, "rev-parse", "HEAD") == head
    assert str(registry.remote) in (registry.path / ".dvc" / "config").read_text()
    assert git(registry.path, "config", "user.email") == "demo@conveyor.invalid"
    assert git(registry.path, "branch", "--show-current") == "main"


# ------------------------------------------------------------------------- failures


def assert_names(exc: pytest.ExceptionInfo[DataError], *parts: str) -> None:
    message = str(exc.value)
    for part in parts:
        assert part in message, f"{part!r} missing from: {message}"


def test_missing_repo(tmp_path: Path) -> None:
    repo = str(tmp_path / "nowhere")
    for call in (
        lambda: fetch(repo, DATA_PATH, "main", tmp_path / "out"),
        lambda: resolve_rev(repo, "main"),
        lambda: read_tracked_md5(repo, DATA_PATH, "main"),
    ):
        with pytest.raises(DataError, match="does not exist") as exc:
            call()
        assert_names(exc, repo, "init_registry")
    assert not (tmp_path / "out").exists()


def test_not_a_git_repo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match="not a git repository") as exc:
        fetch(str(plain), DATA_PATH, "main", tmp_path / "out")
    assert_names(exc, str(plain), "dvc init")


def test_unknown_rev(registry: Registry, tmp_path: Path) -> None:
    for repo, hint in ((str(registry.path), "branch -a"), (registry.url, "git ls-remote")):
        with pytest.raises(DataError) as exc:
            fetch(repo, DATA_PATH, "no-such-branch", tmp_path / "out")
        assert_names(exc, repo, "no branch, tag or commit 'no-such-branch'", hint)
    with pytest.raises(DataError, match="no branch, tag or commit 'deadbeef'"):
        resolve_rev(str(registry.path), "deadbeef")
    with pytest.raises(DataError, match="invalid revision"):
        resolve_rev(str(registry.path), "--all")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_untracked_path(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not tracked by DVC") as exc:
        fetch(str(registry.path), "data/missing.csv", "v1", tmp_path / "out")
    assert_names(exc, str(registry.path), "'v1'", "data/missing.csv", f"tracked there: {DATA_PATH}")
    with pytest.raises(DataError, match="committed to git directly"):
        read_tracked_md5(str(registry.path), ".dvc/config", "main")
    with pytest.raises(DataError, match=r"without '\.\.'"):
        read_tracked_md5(str(registry.path), "../outside.csv", "main")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_remote_deleted(tmp_path: Path) -> None:
    reg = fresh_registry(tmp_path)
    out = tmp_path / "out"
    write(out / "table.csv", b"previous good copy")
    shutil.rmtree(reg.remote)

    started = time.monotonic()
    with pytest.raises(DataError) as exc:
        fetch(str(reg.path), DATA_PATH, "main", out)
    assert time.monotonic() - started < 5  # a missing object is not retried
    assert_names(exc, str(reg.path), "'main'", DATA_PATH, str(reg.remote), "dvc push", md5(V1))
    # The earlier file is intact and no temporary file is left behind.
    assert os.listdir(out) == ["table.csv"]
    assert (out / "table.csv").read_bytes() == b"previous good copy"


def test_push_never_run_is_reported_not_served_from_registry_cache(tmp_path: Path) -> None:
    """The registry's own DVC cache has the bytes, but fetch must use the remote only."""
    reg = fresh_registry(tmp_path)
    write(reg.path / "extra.csv", V2)
    from dvc.repo import Repo

    with Repo(str(reg.path)) as repo:
        repo.add([str(reg.path / "extra.csv")])  # added and committed, never pushed
    git(reg.path, "add", "extra.csv.dvc", ".gitignore")
    git(reg.path, "commit", "-qm", "extra without push")

    with pytest.raises(DataError, match="dvc push") as exc:
        fetch(str(reg.path), "extra.csv", "main", tmp_path / "out")
    assert_names(exc, "extra.csv", str(reg.remote))
    assert os.listdir(tmp_path / "out") == []


def test_md5_mismatch(tmp_path: Path) -> None:
    reg = fresh_registry(tmp_path)
    digest = md5(V1)
    obj = reg.remote / "files" / "md5" / digest[:2] / digest[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"tampered\n")

    with pytest.raises(DataError, match="md5 mismatch") as exc:
        fetch(str(reg.path), DATA_PATH, "main", tmp_path / "out")
    assert_names(exc, str(reg.path), DATA_PATH, digest, md5(b"tampered\n"))
    assert os.listdir(tmp_path / "out") == []


def test_registry_without_default_remote(tmp_path: Path) -> None:
    reg = fresh_registry(tmp_path)
    config = reg.path / ".dvc" / "config"
    config.write_text(config.read_text().replace("remote = storage\n", ""))
    git(reg.path, "commit", "-qam", "drop default remote")

    with pytest.raises(DataError, match="no default DVC remote") as exc:
        fetch(str(reg.path), DATA_PATH, "main", tmp_path / "out")
    assert_names(exc, str(reg.path), DATA_PATH, "dvc remote add -d")
    # The md5 still comes from git alone.
    assert read_tracked_md5(str(reg.path), DATA_PATH, "main") == md5(V1)


def test_publish_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a DVC data registry"):
        publish_file(tmp_path, "x.csv", write(tmp_path / "x.csv", V1), message="x")


def test_snapshot_round_trips_and_dictionary_encodes_only_non_floats(tmp_path):
    """The validated snapshot reads back as the same frame; floats are written without a
    dictionary (Arrow's default tries one on every column and gives up on floats)."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from conveyor.data.frames import read_parquet_columns, write_parquet_snapshot

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=500),
            "k": rng.integers(0, 3, size=500),
            "city": rng.choice(["a", "b", None], size=500),
            "target": rng.integers(0, 2, size=500),
        }
    )
    frame.loc[::9, "x"] = np.nan
    path = tmp_path / "snapshot.parquet"
    write_parquet_snapshot(frame, path)
    pd.testing.assert_frame_equal(read_parquet_columns(path), frame)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema: set(meta.column(i).encodings)
        for i in range(meta.num_columns)
    }
    assert not any("DICTIONARY" in e for e in encodings["x"]), encodings["x"]
    for column in ("k", "city", "target"):
        assert any("DICTIONARY" in e for e in encodings[column]), (column, encodings[column])


@pytest.mark.parametrize("part", ["train", "test"])
def test_a_snapshot_part_is_the_split_of_the_whole_snapshot(tmp_path, part):
    """The evaluation task reads only the test rows of the snapshot: the same rows, order,
    index and dtypes as splitting the whole frame."""
    import numpy as np
    import pandas as pd
    from serving_helpers import breast_cancer_config

    from conveyor.data.frames import write_parquet_snapshot
    from conveyor.data.splits import split_part
    from conveyor.modeling.runs import read_snapshot, read_snapshot_part

    config = breast_cancer_config("parts")  # stratified classification split, seed 42
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=400),
            "b": rng.integers(0, 9, size=400),
            "city": rng.choice(["x", "y", None], size=400),
            config.target: rng.choice([0, 1], size=400, p=[0.8, 0.2]),
        }
    )
    frame.loc[::11, "a"] = np.nan
    uri = str(tmp_path / "snapshot.parquet")
    write_parquet_snapshot(frame, uri)
    expected = split_part(read_snapshot(uri), config, part)
    got = read_snapshot_part(uri, config, part)
    pd.testing.assert_frame_equal(got, expected)
    test_rows = round(400 * config.split.test_size)
    assert len(got) == (test_rows if part == "test" else 400 - test_rows)
