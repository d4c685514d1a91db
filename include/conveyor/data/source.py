"""Read a DVC-tracked file from a data registry at a pinned git revision.

A *data registry* is a git repository whose data files are tracked by DVC: git holds a
small ``<file>.dvc`` pointer with the file's md5, the DVC remote (a directory, S3,
MinIO...) holds the bytes. A revision of the data is therefore a git commit, and this
module turns "branch ``main`` of that registry" into an immutable :class:`DataSnapshot`
(repo, path, commit sha, md5, local copy) that later tasks and the model lineage can
refer to.

Two speeds on purpose:

* :func:`resolve_rev` and :func:`read_tracked_md5` use **git only**. They run in the
  data-change poller every few seconds and in the Airflow triggerer, so they must not pay
  DVC's import cost (about a second) nor touch the remote.
* :func:`fetch` imports DVC and reads the bytes **from the DVC remote**, never from the
  registry's own cache: a worker on another machine has no such cache, so the laptop demo
  must fail the same way when ``dvc push`` was forgotten.

A registry is either a local path (a working repo or a bare repo) or a git URL
(``https://``, ``ssh://``, ``file://``, ``git@host:org/repo``). For URLs, a bare git
mirror under ``$CONVEYOR_HOME/cache/git`` lets the git-only functions read ``.dvc``
files without a full clone per call.

Nothing here imports DVC (or anything outside the standard library) at module import
time: DAG files and the triggerer import this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conveyor.errors import DataError
from conveyor.settings import Settings, disable_telemetry

logger = logging.getLogger(__name__)

#: Attempts for reading from the DVC remote; only transient I/O errors are retried.
FETCH_ATTEMPTS = 3
#: Seconds to wait before the 2nd, 3rd... attempt (doubles each time).
FETCH_BACKOFF = 0.5
#: Seconds a git command may take (network commands included) before we give up.
GIT_TIMEOUT = 120

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_ABBREV_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,39}$")
_SCP_URL_RE = re.compile(r"^[\w.-]+@[\w.-]+:")
#: DVC adds this remote itself when a local registry has no default remote; it points at
#: the registry's own cache, which other machines cannot see, so we treat it as "none".
_DVC_AUTO_REMOTE = "auto-generated-upstream"
#: OSErrors that describe a permanent state: retrying cannot make them succeed.
_PERMANENT_OS_ERRORS = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
#: Words in the class names of network client errors that a retry can cure. The S3,
#: GCS and HTTP clients DVC uses (botocore, aiohttp, requests) do not all derive their
#: connection errors from OSError (botocore's EndpointConnectionError does not), and we
#: do not import them here just to name their classes.
_TRANSIENT_ERROR_WORDS = ("Connect", "Timeout", "Throttl", "ServiceUnavailable")


def _is_transient(exc: BaseException) -> bool:
    """True when retrying the same read could succeed (network trouble, not config)."""
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    return any(word in cls.__name__ for cls in type(exc).__mro__ for word in _TRANSIENT_ERROR_WORDS)


@dataclass(frozen=True)
class DataSnapshot:
    """One tracked file of a data registry, pinned to a commit and copied locally.

    Everything but ``local_path`` is lineage: it identifies the data exactly, so it goes
    to XCom, into the model's tags and into asset event payloads.

    Attributes
    ----------
    repo
        Registry URL or path, as given by the caller (not normalised, so it matches
        the pipeline config it came from).
    path
        Path of the tracked file inside the registry.
    rev
        The revision asked for (branch, tag or sha).
    git_sha
        Full sha of the commit ``rev`` resolved to.
    md5
        md5 recorded in ``<path>.dvc`` at that commit (DVC's hash of the file).
    local_path
        Where the file was written on local disk.
    """

    repo: str
    path: str
    rev: str
    git_sha: str
    md5: str
    local_path: str

    def to_dict(self) -> dict[str, str]:
        """JSON-safe dict (all values are strings), e.g. for XCom or MLflow tags."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSnapshot:
        """Rebuild a snapshot from :meth:`to_dict` output (extra keys are ignored)."""
        return cls(**{name: str(data[name]) for name in cls.__dataclass_fields__})


# --------------------------------------------------------------------------- git helpers


def _git(
    *args: str,
    cwd: str | Path | None = None,
    check: bool = True,
    timeout: float = GIT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run git without prompts and in the C locale.

    ``GIT_TERMINAL_PROMPT=0`` makes a URL that needs credentials fail at once instead
    of hanging a task forever on a password prompt nobody can answer.
    """
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    cmd = ["git", *args] if cwd is None else ["git", "-C", str(cwd), *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise DataError(
            "git is not installed or not on PATH: install git, it is needed to read "
            "the data registry"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise DataError(
            f"`{' '.join(cmd)}` did not finish within {timeout:.0f}s: check that the "
            f"registry is reachable from this machine"
        ) from exc
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def _git_error(exc: subprocess.CalledProcessError) -> str:
    """The line of git's stderr that says what went wrong, for error messages."""
    lines = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[0] if lines else f"git exited with {exc.returncode}"


def _is_url(repo: str) -> bool:
    return "://" in repo or bool(_SCP_URL_RE.match(repo))


def _check_rev(repo: str, rev: str) -> None:
    if not rev or rev.startswith("-") or any(c.isspace() for c in rev):
        raise DataError(
            f"invalid revision {rev!r} for data registry {repo}: give a branch, tag or "
            f"commit sha (e.g. 'main')"
        )


def _normalise_path(repo: str, path: str) -> str:
    """Registry-relative POSIX path; refuses paths that would escape the registry."""
    posix = PurePosixPath(str(path).replace("\\", "/"))
    parts = [p for p in posix.parts if p not in ("", ".")]
    if posix.is_absolute() or not parts or ".." in parts:
        raise DataError(
            f"data path {path!r} must be relative to the data registry {repo} "
            f"(e.g. 'data/train.csv'), without '..'"
        )
    return "/".join(parts)


def _local_repo(repo: str) -> Path | None:
    """The registry as a local git directory, ``None`` if it is a URL.

    Raises
    ------
    DataError
        If it is neither an existing git repository (at its top level) nor a URL.
    """
    candidate = Path(repo).expanduser()
    if not candidate.exists():
        if _is_url(repo):
            return None
        raise DataError(
            f"data registry {repo} does not exist: fix data.repo in the pipeline config "
            f"or CONVEYOR_DATA_REGISTRY, or create the registry "
            f"(conveyor.data_registry.init_registry / `make demo`)"
        )
    candidate = candidate.resolve()
    try:
        out = _git("rev-parse", "--is-bare-repository", "--show-prefix", cwd=candidate)
    except subprocess.CalledProcessError as exc:
        raise DataError(
            f"data registry {repo} is not a git repository ({_git_error(exc)}): point "
            f"data.repo at a DVC data registry (a git repo with `dvc init` and a remote)"
        ) from None
    bare, _, prefix = out.stdout.partition("\n")
    if bare.strip() == "false" and prefix.strip():
        top = _git("rev-parse", "--show-toplevel", cwd=candidate).stdout.strip()
        raise DataError(
            f"data registry {repo} is a subdirectory of the git repository {top}, not a "
            f"registry of its own: point data.repo at the repository's top level"
        )
    return candidate


def _mirror_dir(url: str) -> Path:
    """Bare git mirror of a remote registry, shared by all processes on this machine."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Settings.from_env().home / "cache" / "git" / f"{key}.git"


def _update_mirror(url: str) -> Path:
    """Create or refresh the bare mirror of ``url`` (all branches and tags).

    A registry's git history holds only small ``.dvc`` pointers, so mirroring every
    branch and tag is cheap and lets any sha be read with plain ``git show`` later.
    """
    mirror = _mirror_dir(url)
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", str(mirror))
    last_exc: subprocess.CalledProcessError | None = None
    for attempt in range(2):  # a concurrent fetch into the same mirror can lock a ref
        try:
            _git(
                "fetch",
                "--quiet",
                "--prune",
                "--force",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                cwd=mirror,
            )
            return mirror
        except subprocess.CalledProcessError as exc:
            last_exc = exc
            if attempt == 0 and "lock" in (exc.stderr or ""):
                time.sleep(FETCH_BACKOFF)
                continue
            break
    assert last_exc is not None
    raise DataError(
        f"cannot fetch data registry {url} ({_git_error(last_exc)}): check the URL and "
        f"that this machine can reach it with git (`git ls-remote {url}`)"
    )


def _has_commit(gitdir: Path, sha: str) -> bool:
    return _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=gitdir, check=False).returncode == 0


def _unknown_rev(repo: str, rev: str) -> DataError:
    if Path(repo).expanduser().exists():
        hint = f"`git -C {repo} branch -a` and `git -C {repo} tag`"
    else:
        hint = f"`git ls-remote --heads --tags {repo}`"
    return DataError(
        f"no branch, tag or commit {rev!r} in data registry {repo}; list them with "
        f"{hint}, then fix the rev (data.rev in the pipeline config or the data_rev "
        f"param)"
    )


def _resolve_local(gitdir: Path, repo: str, rev: str) -> str:
    proc = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=gitdir, check=False)
    if proc.returncode != 0:
        raise _unknown_rev(repo, rev)
    return proc.stdout.strip()


def _resolve_url(url: str, rev: str) -> tuple[str, Path | None]:
    """Resolve ``rev`` at ``url``: ``(sha, mirror or None if not needed yet)``."""
    if not _SHA_RE.match(rev):
        try:
            out = _git("ls-remote", url).stdout
        except subprocess.CalledProcessError as exc:
            raise DataError(
                f"cannot reach data registry {url} ({_git_error(exc)}): check the URL, "
                f"the network and git credentials (`git ls-remote {url}`)"
            ) from None
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            refs[ref.strip()] = sha.strip()
        # Same precedence as `git rev-parse` on a local repo: exact ref, tag, branch.
        candidates = (rev, f"refs/{rev}", f"refs/tags/{rev}^{{}}", f"refs/tags/{rev}")
        for ref in (*candidates, f"refs/heads/{rev}"):
            if ref in refs:
                return refs[ref], None
        if not _ABBREV_SHA_RE.match(rev):
            raise _unknown_rev(url, rev)
    # A sha: only a local copy of the history can confirm (or expand) it.
    mirror = _mirror_dir(url)
    if not (_SHA_RE.match(rev) and (mirror / "HEAD").exists() and _has_commit(mirror, rev)):
        mirror = _update_mirror(url)
    return _resolve_local(mirror, url, rev.lower()), mirror


def _locate(repo: str, rev: str) -> tuple[Path, str]:
    """``(git directory to read objects from, full sha)`` for ``repo`` at ``rev``."""
    _check_rev(repo, rev)
    local = _local_repo(repo)
    if local is not None:
        return local, _resolve_local(local, repo, rev)
    sha, mirror = _resolve_url(repo, rev)
    mirror = mirror or _mirror_dir(repo)
    if not ((mirror / "HEAD").exists() and _has_commit(mirror, sha)):
        mirror = _update_mirror(repo)
        if not _has_commit(mirror, sha):  # the ref moved between ls-remote and fetch
            raise DataError(
                f"rev {rev!r} of data registry {repo} pointed at {sha[:12]}, which is no "
                f"longer reachable there (force-push or deleted ref?): retry, or pin a "
                f"tag or a commit that still exists"
            )
    return mirror, sha


# --------------------------------------------------------------------------- public API


def resolve_rev(repo: str, rev: str) -> str:
    """Full commit sha of ``rev`` (branch, tag or sha) in the registry ``repo``.

    Uses git only (``git rev-parse`` for a local registry, ``git ls-remote`` for a URL)
    so that polling a branch head costs a few milliseconds and no DVC import. The
    resolved sha is what a run pins: a branch may move while the run is going.

    Raises
    ------
    DataError
        If the registry does not exist, is not a git repository, or has no such rev.
    """
    _check_rev(repo, rev)
    local = _local_repo(repo)
    if local is not None:
        return _resolve_local(local, repo, rev)
    return _resolve_url(repo, rev)[0]


def _tracked_dvc_files(gitdir: Path, sha: str, limit: int = 20) -> list[str]:
    proc = _git("ls-tree", "-r", "--name-only", sha, cwd=gitdir, check=False)
    names = [n for n in proc.stdout.splitlines() if n.endswith(".dvc")]
    return names[:limit] + (["..."] if len(names) > limit else [])


def _read_dvc_file(repo: str, gitdir: Path, sha: str, rev: str, path: str) -> tuple[str, str]:
    """``(md5, hash name)`` from ``<path>.dvc`` at ``sha``.

    DVC 3 writes ``hash: md5`` (plain md5 of the bytes); files written by DVC 2 lack the
    field and hold the legacy ``md5-dos2unix`` hash, which differs for text files with
    CRLF line endings.
    """
    import yaml  # PyYAML is light; imported here to keep module import stdlib-only

    proc = _git("show", f"{sha}:{path}.dvc", cwd=gitdir, check=False)
    if proc.returncode != 0:
        kind = _git("cat-file", "-t", f"{sha}:{path}", cwd=gitdir, check=False).stdout.strip()
        if kind == "blob":
            raise DataError(
                f"{path} is committed to git directly in data registry {repo} at rev "
                f"{rev!r} ({sha[:12]}), not tracked by DVC: in the registry run "
                f"`git rm --cached {path} && dvc add {path} && dvc push` and commit"
            )
        tracked = [t.removesuffix(".dvc") for t in _tracked_dvc_files(gitdir, sha)]
        parent = next((t for t in tracked if path.startswith(f"{t}/")), None)
        if parent is not None:
            raise DataError(
                f"{path} lies inside the DVC-tracked directory {parent} in data registry "
                f"{repo} at rev {rev!r} ({sha[:12]}); Conveyor reads single tracked "
                f"files: in the registry track the file itself with `dvc add {path}`"
            )
        listing = ", ".join(tracked) or "none"
        raise DataError(
            f"{path} is not tracked by DVC in data registry {repo} at rev {rev!r} "
            f"({sha[:12]}): there is no {path}.dvc. Files tracked there: {listing}. "
            f"Fix data.path, or add it in the registry with `dvc add {path}`, commit "
            f"and `dvc push`"
        )
    try:
        meta = yaml.safe_load(proc.stdout)
        outs = meta["outs"]
        out = outs[0]
        md5 = str(out["md5"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        raise DataError(
            f"{path}.dvc in data registry {repo} at rev {rev!r} ({sha[:12]}) is not a "
            f"valid DVC file ({type(exc).__name__}: {exc}): re-create it with "
            f"`dvc add {path}` and commit"
        ) from None
    if md5.endswith(".dir") or len(outs) != 1:
        raise DataError(
            f"{path} in data registry {repo} at rev {rev!r} is a DVC-tracked directory; "
            f"Conveyor reads single files: track the file itself with `dvc add <file>`"
        )
    return md5, str(out.get("hash") or "md5-dos2unix")


def read_tracked_md5(repo: str, path: str, rev: str) -> str:
    """md5 that DVC recorded for ``path`` at ``rev``, read from ``<path>.dvc`` with git.

    This is how new data is noticed: a changed md5 on the tracked branch means a new
    version was published. It reads one small blob with ``git show`` (from a bare
    mirror for URL registries) and never imports DVC or contacts the DVC remote.

    Raises
    ------
    DataError
        If the registry or rev cannot be found or ``path`` is not tracked by DVC there.
    """
    path = _normalise_path(repo, path)
    gitdir, sha = _locate(repo, rev)
    return _read_dvc_file(repo, gitdir, sha, rev, path)[0]


def _file_md5(path: Path, hash_name: str) -> str:
    if hash_name == "md5-dos2unix":  # legacy DVC 2 hash; only DVC knows its text rules
        from dvc_data.hashfile.hash import file_md5

        return file_md5(str(path), name="md5-dos2unix")
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _RemoteReadError(Exception):
    """An I/O error while reading the DVC remote, with the remote it happened on."""

    def __init__(self, name: str, url: str, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.remote = f"'{name}' ({url})"
        self.cause = cause


def import_dvc() -> None:
    """Import DVC for in-process use and undo its CLI-style logging setup.

    ``import dvc`` attaches its own stdout/stderr handlers to the ``dvc``, ``dvc_data``
    and ``dvc_objects`` loggers (what its CLI wants). Inside an Airflow task every DVC
    message would then be printed twice, once by DVC and once by the task's log handler.
    Removing DVC's handlers leaves normal propagation to the host's logging only.
    """
    disable_telemetry()
    import dvc.logger

    for name in ("dvc", "dvc_data", "dvc_objects"):
        dvc_logger = logging.getLogger(name)
        for handler in list(dvc_logger.handlers):
            if isinstance(handler, dvc.logger.LoggerHandler):
                dvc_logger.removeHandler(handler)


def _remote_url(dvc_repo: Any) -> tuple[str | None, str | None]:
    """``(default remote name, its URL)`` of an open DVC repo, ``(None, None)`` if unset."""
    name = dvc_repo.config["core"].get("remote")
    if not name or name == _DVC_AUTO_REMOTE:
        return None, None
    return name, dvc_repo.config["remote"].get(name, {}).get("url")


def _download(repo: str, dvc_target: str, sha: str, path: str, tmp: Path, scratch: str) -> str:
    """Copy ``path`` at ``sha`` from the default DVC remote into ``tmp``; return remote URL.

    The DVC cache is pointed at an empty scratch directory so the bytes come from the
    remote and nothing is written into the registry (which may be read-only, shared, or
    on another machine); the scratch directory is deleted afterwards.
    """
    import_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    config = {
        "cache": {"dir": os.path.join(scratch, "cache")},
        # DVC keeps per-repo index databases in /var/tmp/dvc by default; a one-shot
        # read has no use for them and they would pile up, one set per registry.
        "core": {"site_cache_dir": os.path.join(scratch, "site")},
    }
    try:
        dvc_repo = Repo.open(dvc_target, rev=sha, uninitialized=True, config=config)
    except DvcException as exc:
        raise DataError(
            f"cannot open data registry {repo} at {sha[:12]} with DVC ({exc}): check that "
            f"it is a DVC repository (`dvc init` was committed)"
        ) from None
    with dvc_repo:
        name, url = _remote_url(dvc_repo)
        if name is None:
            raise DataError(
                f"data registry {repo} has no default DVC remote at {sha[:12]}, so {path} "
                f"cannot be downloaded: in the registry run `dvc remote add -d storage "
                f"<url>`, commit .dvc/config and `dvc push`"
            )
        try:
            with dvc_repo.dvcfs.open(path, mode="rb") as src, tmp.open("wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
        except Exception as exc:  # DVC and fsspec clients raise many kinds; none is ours
            if isinstance(exc, OSError) or _is_transient(exc):
                raise _RemoteReadError(name, str(url), exc) from exc
            raise DataError(
                f"DVC cannot read {path} from remote '{name}' ({url}) of data registry "
                f"{repo} at {sha[:12]}: {type(exc).__name__}: {exc}. "
                f"{_remote_hint(str(url), exc)}"
            ) from exc
    return str(url)


def _remote_hint(url: str, exc: Exception) -> str:
    """What to check for a remote read that failed for a reason a retry cannot cure."""
    text = str(exc).lower()
    if "missing dependencies" in text or isinstance(exc, ImportError):
        scheme = url.split("://", 1)[0] if "://" in url else "the remote's scheme"
        return (
            f"DVC's client for {scheme}:// is not installed in this environment: add "
            f"`dvc[{scheme}]` to the project's dependencies"
        )
    return (
        "Check the remote's URL, bucket and credentials in the registry's .dvc/config "
        "(and the environment this task runs in)"
    )


def _tmp_sibling(dest: Path) -> Path:
    """Unique hidden name next to ``dest``, so ``os.replace`` is an atomic rename.

    (``tempfile.mkstemp`` would create the file with mode 0600, which the final file
    would keep; opening with ``"xb"`` honours the umask like any normal file.)
    """
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")


def _download_with_retries(
    repo: str, gitdir: Path, sha: str, path: str, tmp: Path, where: str, expected: str
) -> str:
    """:func:`_download` with retries for transient I/O errors only; return remote URL."""
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        with tempfile.TemporaryDirectory(prefix="conveyor-dvc-") as scratch:
            try:
                return _download(repo, str(gitdir), sha, path, tmp, scratch)
            except _RemoteReadError as exc:
                if not _is_transient(exc.cause):
                    raise DataError(
                        f"cannot download {where}: object md5 {expected} is missing from "
                        f"or unreadable in DVC remote {exc.remote} ({exc}). Run `dvc push` "
                        f"in the registry, and check that the remote exists and is "
                        f"readable from this machine"
                    ) from None
                if attempt == FETCH_ATTEMPTS:
                    raise DataError(
                        f"cannot download {where} from DVC remote {exc.remote} after "
                        f"{attempt} attempts ({exc}): check that the remote is reachable "
                        f"from this machine, then retry"
                    ) from None
                delay = FETCH_BACKOFF * 2 ** (attempt - 1)
                logger.warning(
                    "Reading %s from DVC remote %s failed (attempt %d/%d: %s); retrying in %.1fs",
                    where,
                    exc.remote,
                    attempt,
                    FETCH_ATTEMPTS,
                    exc,
                    delay,
                )
        time.sleep(delay)
    raise AssertionError("unreachable")


def fetch(repo: str, path: str, rev: str, dest_dir: str | Path) -> DataSnapshot:
    """Download ``path`` from the registry ``repo`` at ``rev`` into ``dest_dir``.

    ``rev`` is resolved to a commit sha first, so the md5, the bytes and the recorded
    lineage all refer to the same commit even if the branch moves meanwhile. The file is
    written to a temporary name and renamed into place only after its md5 matches the
    ``.dvc`` file: a reader never sees a partial or wrong file at
    ``dest_dir/<basename of path>``, and a failed fetch leaves nothing behind.

    Transient I/O errors on the remote are retried (:data:`FETCH_ATTEMPTS` times with
    exponential backoff); a wrong rev, an untracked path or an object missing from the
    remote fail at once.

    Parameters
    ----------
    repo
        Registry path (local git repo) or git URL.
    path
        Path of the DVC-tracked file inside the registry.
    rev
        Branch, tag or commit sha.
    dest_dir
        Local directory to write into (created if missing).

    Raises
    ------
    DataError
        With repo, rev, path and a suggested fix, for any reason the file cannot be
        delivered intact.
    """
    disable_telemetry()
    norm_path = _normalise_path(repo, path)
    gitdir, sha = _locate(repo, rev)
    expected, hash_name = _read_dvc_file(repo, gitdir, sha, rev, norm_path)
    where = f"{norm_path} from data registry {repo} at rev {rev!r} ({sha[:12]})"

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / PurePosixPath(norm_path).name
    tmp = _tmp_sibling(dest)
    started = time.monotonic()
    try:
        remote_url = _download_with_retries(repo, gitdir, sha, norm_path, tmp, where, expected)
        actual = _file_md5(tmp, hash_name)
        if actual != expected:
            raise DataError(
                f"md5 mismatch for {where}: {norm_path}.dvc says {expected} but the "
                f"remote ({remote_url}) returned {actual}. The remote object is corrupt "
                f"or was overwritten: re-publish the file (`dvc add` + `dvc push`)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info(
        "Fetched %s (md5 %s, %d bytes) from remote %s in %.2fs into %s",
        where,
        expected,
        dest.stat().st_size,
        remote_url,
        time.monotonic() - started,
        dest,
    )
    return DataSnapshot(
        repo=repo,
        path=norm_path,
        rev=rev,
        git_sha=sha,
        md5=expected,
        local_path=str(dest),
    )
