"""Security hygiene of the repository and of stored models.

- No credentials in any tracked file (cloud keys, private keys, tokens): secrets come from
  the environment or Airflow Connections.
- Models are stored with skops, never pickle, and every place that serialises or loads
  one uses the single reviewed list ``conveyor.modeling.model_io.SKOPS_TRUSTED_TYPES``.

(A dependency audit of ``uv.lock`` needs a vulnerability database this machine cannot
reach; it is not a test here, see the README's Failure modes.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: What leaked credentials look like (the patterns secret scanners use for these kinds).
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        r"aws_secret_access_key\s*[=:]\s*['\"]?(?!testing\b)[A-Za-z0-9/+=]{40}"
    ),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "hard-coded bearer token": re.compile(r"Bearer [A-Za-z0-9_\-.]{20,}"),
}


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_credentials_in_tracked_files():
    files = tracked_files()
    assert len(files) > 50, "git ls-files found almost nothing: wrong folder?"
    found = []
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary (plots) or deleted in the working tree
        for kind, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(REPO)}:{line}: {kind}")
    assert not found, "credentials in tracked files:\n" + "\n".join(found)


def test_the_scan_recognises_what_it_looks_for():
    """The patterns above are not dead: each matches a sample of its kind."""
    samples = {
        "AWS access key id": "key = AKIA" + "ABCDEFGHIJKLMNOP",
        "AWS secret access key": "aws_secret_access_key = " + "a" * 40,
        "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
        "GitHub token": "ghp_" + "a1" * 18,
        "Slack token": "xoxb-" + "123456789012",
        "hard-coded bearer token": "Authorization: Bearer " + "abcdef0123456789abcdef",
    }
    for kind, sample in samples.items():
        assert SECRET_PATTERNS[kind].search(sample), kind


@pytest.mark.parametrize("folder", ["include", "plugins", "dags"])
def test_models_are_loaded_only_through_the_reviewed_skops_list(folder):
    """No pickle, joblib or cloudpickle load anywhere in the product code; the only skops
    calls that take trusted types pass SKOPS_TRUSTED_TYPES."""
    unsafe = re.compile(r"\b(pickle|cloudpickle|joblib|dill)\.loads?\(")
    trusted = re.compile(r"(trusted|skops_trusted_types)=(?!list\(SKOPS_TRUSTED_TYPES\))")
    problems = []
    for path in sorted((REPO / folder).rglob("*.py")):
        text = path.read_text()
        for pattern in (unsafe, trusted):
            problems += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not problems, problems


def test_a_logged_model_is_stored_with_skops_not_pickle(settings, tmp_path):
    import mlflow
    import yaml
    from serving_helpers import breast_cancer_config, log_trained, train_breast_cancer

    config = breast_cancer_config("hygiene_skops")
    result, train, _ = train_breast_cancer(config)
    _, _, uri = log_trained(settings, config, result, train)
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["sklearn"]
    assert flavor["serialization_format"] == "skops"
    names = {p.name for p in local.rglob("*") if p.is_file()}
    assert not {n for n in names if n.endswith((".pkl", ".pickle", ".joblib"))}, names
