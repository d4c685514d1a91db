"""Create and update a DVC *data registry*: the producer side of :mod:`conveyor.data.source`.

A data registry is a git repository initialised with DVC whose default DVC remote
holds the file contents; git holds only the ``.dvc`` pointers. Publishing a new version
of a file is ``dvc add`` + ``dvc push`` + ``git commit``, and the commit sha is the
version. The demo (``make demo``) and the tests build their registries with these two
functions; in production, data owners usually run the same steps with the DVC CLI.

DVC is driven through its Python API (``dvc.repo.Repo``) in-process: each ``dvc`` CLI
call pays about 1.5 s of interpreter start and imports, the API pays the import once.
Git is driven through the ``git`` CLI, which is what any user of the registry runs too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from conveyor.data.source import (
    _git,
    _git_error,
    _is_url,
    _normalise_path,
    _tmp_sibling,
    import_dvc,
)
from conveyor.errors import DataError

logger = logging.getLogger(__name__)

#: Identity for commits in registries that have none configured (demo and tests).
DEMO_USER_NAME = "Conveyor demo"
DEMO_USER_EMAIL = "demo@conveyor.invalid"


def _run_git(*args: str, cwd: Path) -> str:
    """Run git in the registry, turning a failure into a :class:`DataError`."""
    try:
        return _git(*args, cwd=cwd).stdout
    except subprocess.CalledProcessError as exc:
        raise DataError(
            f"`git {' '.join(args)}` failed in data registry {cwd}: {_git_error(exc)}"
        ) from None


def _is_git_top(path: Path) -> bool:
    proc = _git("rev-parse", "--show-prefix", cwd=path, check=False)
    return proc.returncode == 0 and not proc.stdout.strip() and (path / ".git").exists()


def _has_commits(path: Path) -> bool:
    return _git("rev-parse", "--verify", "--quiet", "HEAD", cwd=path, check=False).returncode == 0


def _default_remote(path: Path) -> tuple[str | None, str | None]:
    """``(name, url)`` of the registry's default DVC remote, read by DVC itself."""
    import_dvc()
    from dvc.repo import Repo

    with Repo(str(path)) as repo:
        name = repo.config["core"].get("remote")
        url = repo.config["remote"].get(name, {}).get("url") if name else None
    return name, url


def _is_registry(path: Path) -> bool:
    return (
        path.is_dir()
        and _is_git_top(path)
        and (path / ".dvc" / "config").is_file()
        and _has_commits(path)
        and _default_remote(path)[0] is not None
    )


def _normalise_remote(remote_url: str | Path) -> str:
    """Absolute path for a local remote; URLs (``s3://...``) unchanged.

    DVC resolves a relative remote path against ``.dvc/``, not the caller's working
    directory, which surprises everyone; an absolute path says what it means.
    """
    url = str(remote_url)
    if _is_url(url):
        return url
    return str(Path(url).expanduser().resolve())


def init_registry(
    path: str | Path, remote_url: str | Path, *, remote_name: str = "storage"
) -> Path:
    """Create a DVC data registry at ``path`` whose default remote is ``remote_url``.

    Steps: ``git init -b main``, ``dvc init``, ``dvc remote add -d <remote_name>
    <remote_url>``, a local commit identity (:data:`DEMO_USER_NAME`), and an initial
    commit. Idempotent: an existing registry is returned untouched (a different remote
    URL is only logged, never overwritten, since other users may rely on it), and a
    half-finished one (e.g. interrupted after ``git init``) is completed.

    Parameters
    ----------
    path
        Directory of the registry (created if missing).
    remote_url
        A local directory (made absolute) or a URL such as ``s3://bucket/prefix``
        (the matching DVC plugin, e.g. ``dvc-s3``, is needed to push there).
    remote_name
        Name of the DVC remote.

    Returns
    -------
    Path
        The absolute path of the registry.
    """
    import_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    path = Path(path).expanduser().resolve()
    url = _normalise_remote(remote_url)
    if _is_registry(path):
        _, current = _default_remote(path)
        if current != url:
            logger.warning(
                "Data registry %s already exists with remote %s; leaving it unchanged "
                "(asked for %s)",
                path,
                current,
                url,
            )
        return path

    logger.info("Creating DVC data registry %s with remote %s=%s", path, remote_name, url)
    path.mkdir(parents=True, exist_ok=True)
    if not _is_git_top(path):
        _run_git("init", "--quiet", "-b", "main", cwd=path)
    for key, value in (("user.name", DEMO_USER_NAME), ("user.email", DEMO_USER_EMAIL)):
        if _git("config", "--local", key, cwd=path, check=False).returncode != 0:
            _run_git("config", "--local", key, value, cwd=path)
    try:
        if not (path / ".dvc").is_dir():
            Repo.init(str(path)).close()
        with Repo(str(path)) as repo, repo.config.edit("repo") as conf:
            if not conf["core"].get("remote"):
                conf["remote"][remote_name] = {"url": url}
                conf["core"]["remote"] = remote_name
            # Whoever later runs the dvc CLI in this registry must not phone home either.
            conf["core"]["analytics"] = "false"
    except DvcException as exc:
        raise DataError(f"cannot initialise DVC in data registry {path}: {exc}") from None
    _run_git("add", "--all", cwd=path)
    if _git("diff", "--cached", "--quiet", cwd=path, check=False).returncode != 0:
        _run_git("commit", "--quiet", "-m", "Initialise DVC data registry", cwd=path)
    return path


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_atomic(source: Path, dest: Path) -> None:
    """Replace ``dest`` with a copy of ``source`` without ever exposing a partial file.

    ``os.replace`` also swaps out a DVC cache link (symlink/hardlink cache types)
    instead of writing through it into the cache.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(dest)
    try:
        with source.open("rb") as src, tmp.open("xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def is_registry(path: str | Path) -> bool:
    """Whether ``path`` is a local DVC data registry (git + DVC + a default remote)."""
    return _is_registry(Path(path).expanduser().resolve())


def is_tracked(registry: str | Path, rel_path: str) -> bool:
    """Whether ``rel_path`` has a committed ``.dvc`` pointer at the registry's ``HEAD``."""
    root = Path(registry).expanduser().resolve()
    rel = _normalise_path(str(root), rel_path)
    if not _is_git_top(root) or not _has_commits(root):
        return False
    return _git("cat-file", "-e", f"HEAD:{rel}.dvc", cwd=root, check=False).returncode == 0


def publish_file(
    registry: str | Path,
    rel_path: str,
    source: str | Path,
    *,
    message: str,
    if_absent: bool = False,
) -> str:
    """Publish ``source`` as ``rel_path`` in the data registry; return the commit sha.

    Order matters: ``dvc add``, then ``dvc push``, then ``git commit``. Pushing before
    committing means no commit ever points at data the remote lacks, so a reader can
    trust any sha it sees. If the content is unchanged (same md5 as the committed
    ``.dvc``), nothing is committed and the current ``HEAD`` is returned, so re-running a
    publish step is harmless; the push still runs, repairing an earlier failed push.

    Parameters
    ----------
    registry
        Path of a registry created by :func:`init_registry` (or any DVC repo with a
        default remote and a commit identity).
    rel_path
        Destination inside the registry, e.g. ``"data/breast_cancer.csv"``.
    source
        File to publish.
    message
        Git commit message.
    if_absent
        Publish only when the registry does not track ``rel_path`` yet; otherwise leave
        it as it is (whatever version is newest) and return ``HEAD``. Setup steps that
        may run again (``conveyor demo init``) use this, so they never put an old
        version back on top of newer data.

    Raises
    ------
    DataError
        If the registry or source is missing, or DVC/git refuse (the message says which
        step failed).
    """
    import_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(registry).expanduser().resolve()
    rel = _normalise_path(str(root), rel_path)
    source = Path(source).expanduser()
    if not (root / ".dvc").is_dir() or not _is_git_top(root):
        raise DataError(
            f"{root} is not a DVC data registry: create it with "
            f"conveyor.data.registry.init_registry({str(root)!r}, <remote>)"
        )
    if if_absent and is_tracked(root, rel):
        sha = _run_git("rev-parse", "HEAD", cwd=root).strip()
        logger.info(
            "Data registry %s already tracks %s (HEAD %s): left as it is", root, rel, sha[:12]
        )
        return sha
    if not source.is_file():
        raise DataError(f"cannot publish {source} to data registry {root}: no such file")

    dest = root / rel
    if not (dest.exists() and os.path.samefile(source, dest)):
        _copy_atomic(source, dest)
    dvc_file = f"{rel}.dvc"
    gitignore = str(Path(rel).parent / ".gitignore")
    try:
        with Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # no "run git add" hints: we commit ourselves
            repo.add([str(dest)])  # DVC resolves targets against the cwd
            pushed = repo.push(targets=[str(dest)])
    except (DvcException, ImportError, OSError) as exc:
        # ImportError: the remote's scheme needs a DVC plugin (dvc-s3 for s3://...).
        raise DataError(
            f"DVC could not add and push {rel} in data registry {root}: "
            f"{type(exc).__name__}: {exc}. Check the default remote (`dvc remote list` "
            f"in the registry; s3:// needs `pip install dvc-s3`) and retry; nothing was "
            f"committed"
        ) from None
    _run_git("add", "--", dvc_file, gitignore, cwd=root)
    changed = _git("diff", "--cached", "--quiet", "--", dvc_file, gitignore, cwd=root, check=False)
    if changed.returncode != 0:
        _run_git("commit", "--quiet", "-m", message, "--", dvc_file, gitignore, cwd=root)
    sha = _run_git("rev-parse", "HEAD", cwd=root).strip()
    logger.info(
        "Published %s (md5 %s) to data registry %s at %s (%s; %d object(s) pushed)",
        rel,
        _md5(dest),
        root,
        sha[:12],
        "new commit" if changed.returncode != 0 else "unchanged, no commit",
        pushed,
    )
    return sha
