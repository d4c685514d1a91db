"""One poll of a data registry branch, shared by every watcher of that branch.

Each pipeline's :class:`~conveyor_airflow.triggers.dvc_update.DvcUpdateTrigger` watches
one DVC-tracked file, and hundreds of pipelines usually share one registry and branch.
Polled separately, 500 watchers with a 10 s interval ran git ~250 times a second in the
triggerer (resolve the branch, then read each ``.dvc`` file). Here the watchers of the
same (registry, branch, interval) in one event loop share a :class:`RegistryPoll`: one
background task resolves the branch once per interval and reads a ``.dvc`` file only when
the branch moved, and only for the files the move touched (``git diff`` between the two
commits of a local registry; every watched file otherwise). Each watcher still gets the
md5 of its own path and fires its own event.

The poller is created by the first watcher that subscribes and stops when the last one
leaves (a cancelled or finished trigger unsubscribes in a ``finally``), so a trigger that
the triggerer re-creates from its serialized arguments simply joins the existing poller,
and a trigger alone in its loop works as before. Pollers are kept per event loop: the
triggerer runs all triggers in one loop, tests run one loop per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

#: Key of a shared poller: (registry, branch, poll interval in seconds).
PollKey = tuple[str, str, float]

_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[PollKey, RegistryPoll]] = (
    weakref.WeakKeyDictionary()
)


def pollers() -> dict[PollKey, RegistryPoll]:
    """The shared pollers of the running event loop (for tests and diagnostics)."""
    return _POLLERS.setdefault(asyncio.get_running_loop(), {})


class RegistryPoll:
    """Polls branch ``rev`` of ``repo`` every ``interval`` seconds for its subscribers.

    After each poll, :attr:`generation` grows by one and :attr:`results` holds, for every
    subscribed path, ``(sha, md5)`` or the exception reading it raised. A failure to
    resolve the branch is every path's result, and the next poll waits twice as long
    (up to ten intervals), so a broken registry is not hammered.
    """

    def __init__(self, repo: str, rev: str, interval: float) -> None:
        self.repo = repo
        self.rev = rev
        self.interval = interval
        self.paths: Counter[str] = Counter()
        #: Polls done so far (one branch resolution each).
        self.polls = 0
        self.generation = 0
        self.results: dict[str, tuple[str, str] | Exception] = {}
        self._sha: str | None = None
        self._md5: dict[str, str | Exception] = {}  # md5 of each path at self._sha
        self._tick = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- subscribers ---------------------------------------------------------------------

    def _add(self, path: str) -> None:
        self.paths[path] += 1
        self._ensure_task()

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"conveyor registry poll {self.repo}@{self.rev}"
            )

    def _remove(self, path: str) -> bool:
        """Drop one subscriber of ``path``; True (and the task cancelled) if none is left."""
        self.paths[path] -= 1
        if self.paths[path] <= 0:
            del self.paths[path]
            self._md5.pop(path, None)
            self.results.pop(path, None)
        if self.paths:
            return False
        if self._task is not None:
            self._task.cancel()
        return True

    async def wait(self, path: str, seen: int) -> tuple[int, tuple[str, str] | Exception]:
        """The first result for ``path`` from a poll newer than generation ``seen``."""
        while True:
            if self.generation > seen and path in self.results:
                return self.generation, self.results[path]
            self._ensure_task()  # never leave a waiter hanging
            await self._tick.wait()

    # -- polling -------------------------------------------------------------------------

    async def _loop(self) -> None:
        delay = self.interval
        while self.paths:
            try:
                ok = await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not silence every watcher
                log.exception("Shared poll of %s@%s failed", self.repo, self.rev)
                self.results = dict.fromkeys(self.paths, exc)
                ok = False
            self.generation += 1
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()
            delay = self.interval if ok else min(delay * 2, self.interval * 10)
            await asyncio.sleep(delay)

    async def _poll(self) -> bool:
        from conveyor.data import source

        self.polls += 1
        try:
            sha = await asyncio.to_thread(source.resolve_rev, self.repo, self.rev)
        except Exception as exc:  # DataError and anything git throws
            self.results = dict.fromkeys(self.paths, exc)
            return False
        if sha != self._sha:
            changed = await asyncio.to_thread(changed_paths, self.repo, self._sha, sha)
            if changed is None:
                self._md5 = {}
            else:  # the rest kept their .dvc file, so their md5
                self._md5 = {
                    p: v
                    for p, v in self._md5.items()
                    if f"{_norm(p)}.dvc" not in changed and not isinstance(v, Exception)
                }
            self._sha = sha
        missing = [p for p in self.paths if p not in self._md5]
        if missing:
            self._md5.update(await asyncio.to_thread(read_md5s, self.repo, sha, missing))
        self.results = {
            p: (v if isinstance(v, Exception) else (sha, v))
            for p in self.paths
            if (v := self._md5.get(p)) is not None
        }
        return True


def _norm(path: str) -> str:
    """``path`` as git prints it (registry-relative POSIX, no ``./``)."""
    return "/".join(p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("", "."))


def read_md5s(repo: str, sha: str, paths: list[str]) -> dict[str, str | Exception]:
    """md5 of each path at commit ``sha``, or the exception reading it raised."""
    from conveyor.data import source

    out: dict[str, str | Exception] = {}
    for path in paths:
        try:
            out[path] = source.read_tracked_md5(repo, path, sha)
        except Exception as exc:
            out[path] = exc
    return out


def changed_paths(repo: str, old: str | None, new: str) -> set[str] | None:
    """Files that differ between commits ``old`` and ``new`` of a local registry; None
    when that cannot be told cheaply (first poll, a URL registry, any git error), which
    means "read every watched file again"."""
    gitdir = Path(repo).expanduser()
    if old is None or not gitdir.is_dir():
        return None
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(
            ["git", "-C", str(gitdir), "diff", "--name-only", "--no-renames", old, new],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return set(proc.stdout.splitlines())


@contextlib.asynccontextmanager
async def subscribe(repo: str, rev: str, path: str, interval: float) -> AsyncIterator[Subscription]:
    """Watch ``path`` through the shared poller of (``repo``, ``rev``, ``interval``)."""
    key = (repo, rev, float(interval))
    table = pollers()
    poll = table.get(key)
    if poll is None:
        poll = table[key] = RegistryPoll(repo, rev, float(interval))
    poll._add(path)
    try:
        yield Subscription(poll, path)
    finally:
        if poll._remove(path) and table.get(key) is poll:
            del table[key]


class Subscription:
    """One watcher's view of a shared poller: :meth:`next` waits for the next poll."""

    def __init__(self, poll: RegistryPoll, path: str) -> None:
        self.poll = poll
        self.path = path
        self._seen = 0

    async def next(self) -> tuple[str, str]:
        """``(sha, md5)`` of the path from the next poll; raises what reading it raised."""
        self._seen, result = await self.poll.wait(self.path, self._seen)
        if isinstance(result, Exception):  # shared by all: raised without its old traceback
            raise result.with_traceback(None)
        return result
