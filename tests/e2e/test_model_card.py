"""Model cards end to end: a registered version carries an HTML + JSON card whose fairness
numbers equal a fairlearn ``MetricFrame`` recomputed from the stored held-out predictions;
a fairness bound the model misses rejects it at the gate, naming the metric.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

from conveyor.artifacts import open_url
from conveyor.cards.card import CARD_TAG
from conveyor.registry import tracking
from conveyor.registry.models import PRODUCTION, version_by_alias

pytestmark = pytest.mark.e2e

NAME = "scored_bc"


@pytest.fixture(scope="module")
def env(airflow_db, demo_registry, settings):
    from test_batch_scoring import ensure_production

    client = tracking.configure(settings)
    return settings, client, ensure_production(client)


def test_registered_version_has_a_card_with_recomputable_fairness(env):
    _, client, version = env
    mv = client.get_model_version(NAME, version)
    url = mv.tags[CARD_TAG]
    assert url.endswith("/model_card/try-1/card/index.html")
    with open_url(url, "r") as fh:
        page = fh.read()
    with open_url(url.replace("index.html", "card.json"), "r") as fh:
        card = json.load(fh)
    assert f"Model card: {NAME} v{version}" in page
    assert "Fairness: mean radius" in page and 'class="fairness"' in page
    assert card["owner"] == "Conveyor tests" and card["intended_use"].startswith("Test fixture")
    assert card["data"]["md5"] == mv.tags["conveyor.data_md5"]
    assert card["metrics"]["candidate"]["roc_auc"] > 0.9
    # every per-group number equals fairlearn's, recomputed from the stored predictions
    with open_url(card["held_out_predictions"], "rb") as fh:
        preds = pd.read_parquet(fh)
    fairness = card["fairness"]["mean radius"]
    positive = fairness["positive_class"]
    frame = MetricFrame(
        metrics={
            "selection_rate": lambda t, p: selection_rate(t, p, pos_label=positive),
            "true_positive_rate": lambda t, p: true_positive_rate(t, p, pos_label=positive),
            "false_positive_rate": lambda t, p: false_positive_rate(t, p, pos_label=positive),
        },
        y_true=preds["y_true"],
        y_pred=preds["y_pred"],
        sensitive_features=preds["mean radius__group"],
    )
    expected = frame.by_group
    assert len(fairness["by_group"]) == len(expected) >= 2
    for row in fairness["by_group"]:
        for metric in ("selection_rate", "true_positive_rate", "false_positive_rate"):
            assert row[metric] == pytest.approx(expected.loc[row["group"], metric]), (row, metric)
    dpd = expected["selection_rate"].max() - expected["selection_rate"].min()
    assert fairness["differences"]["demographic_parity_difference"] == pytest.approx(dpd, abs=1e-6)
    # sliced metrics and permutation importance are there
    assert {r["group"] for r in card["slices"]["mean texture"]} == set(preds["mean texture__group"])
    assert card["importance"] and {"feature", "mean", "std"} <= set(card["importance"][0])
    assert any(i["mean"] > 0 for i in card["importance"])
    for image in ("permutation_importance.png", "calibration.png", "confusion_matrix.png"):
        assert f'src="{image}"' in page


def test_a_missed_fairness_bound_rejects_at_the_gate(env):
    _, client, _ = env
    from conveyor_airflow.factory import build_pipeline_dag
    from conveyor_airflow.operators.gate import DECISION_KEY

    dag_run = build_pipeline_dag("unfair_bc").test()
    states = {
        ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
    }
    assert states["evaluate_model"] == "success"
    assert states["gate"] == "skipped" and states["register_model"] == "skipped", states
    decision = dag_run.get_task_instance("gate").xcom_pull(task_ids="gate", key=DECISION_KEY)
    [check] = [c for c in decision["checks"] if c["kind"] == "fairness"]
    assert check["metric"] == "demographic_parity_difference" and not check["ok"]
    assert any(
        r.startswith("demographic_parity_difference") and "FAILED" in r for r in decision["reasons"]
    )
    assert client.search_model_versions("name = 'unfair_bc'") == []
    assert version_by_alias(client, "unfair_bc", PRODUCTION) is None


def test_pipelines_view_links_production_s_model_card(env):
    """The overview (JSON and page, through Airflow's API app as the admin) carries
    production's card URL from its ``conveyor.model_card`` tag; the page's link opens it."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from conveyor_airflow.links import artifact_href

    settings, client, version = env
    url = client.get_model_version(NAME, version).tags[CARD_TAG]
    api = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    api.headers["Authorization"] = f"Bearer {token}"
    overview = api.get("/conveyor/api/pipelines").json()
    entry = next(e for e in overview if e["name"] == NAME)
    assert entry["production"]["version"] == version
    assert entry["production"]["model_card"] == url
    href = artifact_href(url, settings.artifact_root)
    assert href and href.startswith("/conveyor/artifacts/train_scored_bc/")
    page = api.get("/conveyor/")
    assert page.status_code == 200
    assert f'<a href="{href}">model card</a>' in page.text
    card = api.get(href)
    assert card.status_code == 200 and "text/html" in card.headers["content-type"]
    assert f"Model card: {NAME} v{version}" in card.text
