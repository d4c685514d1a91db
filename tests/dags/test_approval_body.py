"""The approval task's body, rendered as Airflow renders it: metrics and the model card link
of the register task's XComs (the href its "Model card" extra link opens)."""

from __future__ import annotations

from conveyor_airflow.links import ModelCardLink

CARD = "/conveyor/artifacts/train_approve_bc/manual__1/model_card/try-1/card/index.html"


class FakeTI:
    """``ti.xcom_pull`` of the register task: its result, or a URL it pushed under a key."""

    def __init__(self, pushed: dict[str, str]) -> None:
        self.pushed = pushed
        self.pulls: list[tuple[str, str]] = []

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        self.pulls.append((task_ids, key))
        if key == "return_value":
            return {"version": "7", "metrics": {"roc_auc": 0.99}, "model_card": "file:///x"}
        return self.pushed.get(key)


def render(task, ti: FakeTI) -> str:
    return task.render_template(task.body, {"ti": ti})


def test_body_links_the_model_card_of_the_registered_version():
    from conveyor_airflow.factory import build_pipeline_dag

    task = build_pipeline_dag("approve_bc").get_task("approve_deployment")
    ti = FakeTI({ModelCardLink.url_key(): CARD})
    body = render(task, ti)
    assert f"[model card]({CARD})" in body
    assert "roc_auc" in body and "0.99" in body
    assert ("register_model", ModelCardLink.url_key()) in ti.pulls

    # a registration without a card (no link pushed): no dangling link
    bare = render(task, FakeTI({}))
    assert "model card" not in bare and "Approve to run" in bare


def test_body_in_a_task_group_pulls_from_the_prefixed_register_task():
    from airflow.sdk import DAG

    from conveyor_airflow.factory import build_pipeline_task_group

    with DAG("nightly_approve", schedule=None) as dag:
        build_pipeline_task_group("approve_bc", group_id="grp")
    task = dag.get_task("grp.approve_deployment")
    ti = FakeTI({ModelCardLink.url_key(): CARD})
    assert f"[model card]({CARD})" in render(task, ti)
    assert ("grp.register_model", ModelCardLink.url_key()) in ti.pulls
