"""Skip unchanged inputs: same data md5 + config hash + code rev as production → no retraining.

Airflow has no step caching. This check runs first in every training run, reads the
data's md5 from the registry's ``.dvc`` file with git and production's lineage without
importing MLflow (:mod:`conveyor.registry.production`), so an unchanged-input run ends in a
small fraction of a full run's time. The cache can never serve a stale model: the key
covers the data content, the whole resolved config and the code revision, and a run
with ``force`` ignores it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from conveyor.config import PipelineConfig
from conveyor.data.source import read_tracked_md5, resolve_rev
from conveyor.registry.lineage import cache_key
from conveyor.registry.pin import pin_from_tags
from conveyor.registry.production import alias_tags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputsCheck:
    """The pinned inputs of a run and whether training can be skipped."""

    repo: str
    path: str
    rev: str
    git_sha: str
    md5: str
    rev_source: str
    code_rev: str
    cache_key: str
    production_version: str | None
    production_cache_key: str | None
    skip: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_inputs(
    config: PipelineConfig,
    *,
    repo: str,
    rev: str,
    rev_source: str,
    tracking_uri: str,
    code_rev: str,
    force: bool = False,
) -> InputsCheck:
    """Pin ``rev`` to a commit, compute the cache key and compare it with production's.

    ``code_rev`` is the run's code identity (:func:`conveyor.registry.lineage.code_identity`),
    computed once by the caller and pinned for the run's later tasks.
    """
    git_sha = resolve_rev(repo, rev)
    md5 = read_tracked_md5(repo, config.data.path, git_sha)
    key = cache_key(md5, config.config_hash(), code_rev)
    production = alias_tags(tracking_uri, config.model_name)
    prod_key = production.get("conveyor.cache_key") if production else None
    prod_version = production.get("version") if production else None
    pinned = pin_from_tags(production)
    twin = (
        _candidate_with_key(tracking_uri, config.model_name, key)
        if pinned and prod_key != key
        else None
    )
    if force:
        skip, reason = False, "force=true: retraining regardless of the cache"
    elif twin is not None:
        skip = True
        reason = (
            f"inputs equal candidate v{twin} (registered while production is pinned to "
            f"v{pinned['version']} by {pinned.get('by')}): nothing new to register. Trigger "
            "with force=true to retrain anyway, or release the pin."
        )
    elif production is None:
        skip, reason = False, "no production model yet: training"
    elif prod_key == key:
        skip = True
        reason = (
            f"inputs unchanged since production v{prod_version} (data md5 {md5}, config "
            f"{config.config_hash()}, code {code_rev}): nothing to retrain. "
            "Trigger with force=true to retrain anyway."
        )
    else:
        skip, reason = False, f"inputs differ from production v{prod_version}: training"
    if pinned and not skip:
        reason += (
            f"; production is pinned to v{pinned['version']}: the candidate will not be deployed"
        )
    return InputsCheck(
        repo=repo,
        path=config.data.path,
        rev=rev,
        git_sha=git_sha,
        md5=md5,
        rev_source=rev_source,
        code_rev=code_rev,
        cache_key=key,
        production_version=prod_version,
        production_cache_key=prod_key,
        skip=skip,
        reason=reason,
    )


def _candidate_with_key(tracking_uri: str, name: str, key: str) -> str | None:
    """A complete version of ``name`` with cache key ``key`` (only asked while production is
    pinned: runs then register candidates without deploying them, and an unchanged rerun
    must not register a copy)."""
    from mlflow import MlflowClient

    from conveyor.registry.lineage import TAG_PREFIX, filter_value
    from conveyor.registry.models import COMPLETE_TAG

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = client.search_model_versions(
        f"name = {filter_value(name)} and tags.`{TAG_PREFIX}cache_key` = {filter_value(key)}"
    )
    complete = [v for v in found if v.tags.get(COMPLETE_TAG) == "true"]
    return str(max(int(v.version) for v in complete)) if complete else None
