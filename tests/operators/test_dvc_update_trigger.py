"""DvcUpdateTrigger and DvcUpdateSensor against a real DVC registry (git + local remote)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conveyor.data import source as data_source
from conveyor.data.registry import init_registry, publish_file
from conveyor.data.source import read_tracked_md5
from conveyor_airflow.triggers.dvc_update import LAST_MD5_KEY, DvcUpdateTrigger
from conveyor_airflow.triggers.registry_poll import pollers


class MemoryStateStore:
    """Stands in for the triggerer's asset state store (a DB table) across restarts."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    async def aget(self, key, default=None):
        return self.values.get(key, default)

    async def aset(self, key, value):
        self.values[key] = value


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    repo = init_registry(tmp_path / "registry", str(tmp_path / "remote"))
    publish(repo, tmp_path, "a,b\n1,2\n")
    return repo


def publish(repo: Path, tmp_path: Path, content: str) -> str:
    source = tmp_path / "source.csv"
    source.write_text(content)
    return publish_file(repo, "data/x.csv", source, message="data")


def make_trigger(repo: Path, store: MemoryStateStore | None, **kwargs) -> DvcUpdateTrigger:
    trigger = DvcUpdateTrigger(
        repo=str(repo), path="data/x.csv", rev="main", poll_interval=0.05, **kwargs
    )
    trigger.asset_state_store = store
    return trigger


async def next_event(trigger: DvcUpdateTrigger, timeout: float = 5.0):
    """The trigger's next event, or None if it stays quiet for ``timeout`` seconds."""
    agen = trigger.run()
    try:
        return await asyncio.wait_for(agen.__anext__(), timeout)
    except TimeoutError:
        return None
    finally:
        await agen.aclose()


def test_serialize_round_trip():
    trigger = DvcUpdateTrigger(
        repo="/r",
        path="d/x.csv",
        rev="dev",
        model_name="m",
        tracking_uri="sqlite:///x.db",
        poll_interval=7.5,
        baseline_md5="abc",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "conveyor_airflow.triggers.dvc_update.DvcUpdateTrigger"
    assert kwargs == {
        "repo": "/r",
        "path": "d/x.csv",
        "rev": "dev",
        "model_name": "m",
        "tracking_uri": "sqlite:///x.db",
        "poll_interval": 7.5,
        "baseline_md5": "abc",
    }
    assert DvcUpdateTrigger(**kwargs).serialize() == (classpath, kwargs)


async def test_without_a_model_the_current_data_is_remembered_not_fired(registry):
    """No production model and no memory: the data as it is now is the baseline. A fire
    here queued a second (skipped) run behind the first run of every new pipeline."""
    store = MemoryStateStore()
    assert await next_event(make_trigger(registry, store), timeout=1.0) is None
    md5 = read_tracked_md5(str(registry), "data/x.csv", "main")
    assert store.values[LAST_MD5_KEY] == md5
    # unchanged data: a new trigger (same store) stays quiet too
    assert await next_event(make_trigger(registry, store), timeout=0.5) is None


async def test_fires_on_change_and_not_again(registry, tmp_path):
    store = MemoryStateStore()
    assert await next_event(make_trigger(registry, store), timeout=1.0) is None
    sha = publish(registry, tmp_path, "a,b\n1,2\n3,4\n")
    event = await next_event(make_trigger(registry, store))
    assert event.payload["rev"] == sha
    assert await next_event(make_trigger(registry, store), timeout=0.5) is None


async def test_change_while_stopped_is_noticed_after_restart(registry, tmp_path):
    store = MemoryStateStore()
    await next_event(make_trigger(registry, store), timeout=1.0)  # "triggerer" stops after this
    sha = publish(registry, tmp_path, "a,b\n9,9\n")  # data changes while it is down
    event = await next_event(make_trigger(registry, store))  # restarted: same persisted store
    assert event is not None and event.payload["rev"] == sha


async def test_baseline_md5_suppresses_first_fire(registry):
    md5 = read_tracked_md5(str(registry), "data/x.csv", "main")
    assert await next_event(make_trigger(registry, None, baseline_md5=md5), timeout=0.5) is None


async def test_missing_repo_reports_one_error_event_and_backs_off(tmp_path):
    store = MemoryStateStore()
    trigger = make_trigger(tmp_path / "nope", store)
    event = await next_event(trigger)
    assert event.payload["status"] == "error"
    assert str(tmp_path / "nope") in event.payload["message"]
    # same error again: no second event, no spinning
    assert await next_event(make_trigger(tmp_path / "nope", store), timeout=0.5) is None


async def test_untracked_file_reports_error(registry):
    trigger = DvcUpdateTrigger(repo=str(registry), path="data/missing.csv", poll_interval=0.05)
    event = await next_event(trigger)
    assert event.payload["status"] == "error"
    assert "data/missing.csv" in event.payload["message"]


async def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"never happened within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.02)


async def test_watchers_of_one_branch_share_one_poll_and_fire_for_their_own_path(
    tmp_path, monkeypatch
):
    """Three watchers of one registry branch: one branch resolution per poll between
    them, a .dvc file read once per commit that touched it, one event per changed path
    to the watcher of that path only, and no poller left once they are all cancelled."""
    repo = init_registry(tmp_path / "registry", str(tmp_path / "remote"))
    names = ("a", "b", "c")
    for name in names:
        source = tmp_path / f"{name}.csv"
        source.write_text(f"x,y\n{name},1\n")
        publish_file(repo, f"data/{name}.csv", source, message=f"add {name}")

    # Spies that count and call the real git readers (the poller looks them up on the module).
    resolves: list[str] = []
    reads: list[tuple[str, str]] = []
    real_resolve, real_read = data_source.resolve_rev, data_source.read_tracked_md5

    def counting_resolve(repo_: str, rev: str) -> str:
        sha = real_resolve(repo_, rev)
        resolves.append(sha)
        return sha

    def counting_read(repo_: str, path: str, rev: str) -> str:
        reads.append((path, rev))
        return real_read(repo_, path, rev)

    monkeypatch.setattr(data_source, "resolve_rev", counting_resolve)
    monkeypatch.setattr(data_source, "read_tracked_md5", counting_read)

    stores = {n: MemoryStateStore() for n in names}
    events: dict[str, list[dict]] = {n: [] for n in names}

    async def watch(name: str) -> None:
        trigger = DvcUpdateTrigger(
            repo=str(repo), path=f"data/{name}.csv", rev="main", poll_interval=0.05
        )
        trigger.asset_state_store = stores[name]
        async for event in trigger.run():
            events[name].append(event.payload)

    tasks = [asyncio.create_task(watch(n)) for n in names]
    try:
        await wait_until(
            lambda: all(LAST_MD5_KEY in s.values for s in stores.values()),
            "every watcher remembered its current data",
        )
        (poll,) = pollers().values()  # one poller for the three watchers
        assert dict(poll.paths) == {f"data/{n}.csv": 1 for n in names}
        await wait_until(lambda: poll.polls >= 5, "five shared polls")

        changed = {}
        for name in ("b", "c"):
            source = tmp_path / f"{name}.csv"
            source.write_text(f"x,y\n{name},2\n")
            changed[name] = publish_file(repo, f"data/{name}.csv", source, message=f"new {name}")
            await wait_until(lambda n=name: events[n], f"the watcher of {name} fired")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    assert events["a"] == []
    for name in ("b", "c"):
        assert [(e["status"], e["path"], e["rev"]) for e in events[name]] == [
            ("changed", f"data/{name}.csv", changed[name])
        ]
    # One branch resolution per poll for all three (alone, each would resolve per poll).
    assert len(resolves) == poll.polls
    # Each file read at most once per commit, and only when its own .dvc file changed.
    assert len(reads) == len(set(reads))
    assert {sha for path, sha in reads if path == "data/a.csv"} == {resolves[0]}
    assert ("data/b.csv", changed["b"]) in reads and ("data/b.csv", changed["c"]) not in reads
    assert ("data/c.csv", changed["c"]) in reads and ("data/c.csv", changed["b"]) not in reads
    assert pollers() == {}  # the last watcher leaving stopped the shared poll


async def test_a_watcher_keeps_working_when_another_of_its_branch_is_cancelled(registry, tmp_path):
    """The triggerer cancels and re-creates triggers at will: cancelling one watcher of a
    shared poll leaves the other polling, and a re-created one joins the same poll."""
    events: list[dict] = []

    async def watch(store: MemoryStateStore, sink: list[dict] | None) -> None:
        async for event in make_trigger(registry, store).run():
            if sink is not None:
                sink.append(event.payload)

    kept_store, other_store = MemoryStateStore(), MemoryStateStore()
    kept = asyncio.create_task(watch(kept_store, events))
    other = asyncio.create_task(watch(other_store, None))
    try:
        await wait_until(
            lambda: LAST_MD5_KEY in kept_store.values and LAST_MD5_KEY in other_store.values,
            "both watchers remembered the current data",
        )
        (poll,) = pollers().values()
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        assert dict(poll.paths) == {"data/x.csv": 1}
        again = asyncio.create_task(watch(other_store, None))  # re-created by the triggerer
        await wait_until(lambda: poll.paths["data/x.csv"] == 2, "the re-created one joined")
        assert list(pollers().values()) == [poll]
        again.cancel()
        await asyncio.gather(again, return_exceptions=True)

        sha = publish(registry, tmp_path, "a,b\n5,6\n")
        await wait_until(lambda: events, "the remaining watcher fired")
    finally:
        kept.cancel()
        await asyncio.gather(kept, return_exceptions=True)
    assert [e["rev"] for e in events] == [sha]
    assert pollers() == {}


async def test_other_branches_and_intervals_poll_separately(registry):
    """Sharing is per (registry, branch, interval): each watcher still polls at its own pace."""
    agens = [
        DvcUpdateTrigger(repo=str(registry), path="data/x.csv", rev=rev, poll_interval=interval)
        .run()
        .__anext__()
        for rev, interval in (("main", 0.05), ("main", 0.1), ("HEAD", 0.05))
    ]
    tasks = [asyncio.ensure_future(a) for a in agens]
    try:
        await wait_until(lambda: len(pollers()) == 3, "three pollers")
        assert set(pollers()) == {
            (str(registry), "main", 0.05),
            (str(registry), "main", 0.1),
            (str(registry), "HEAD", 0.05),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
