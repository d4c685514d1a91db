"""The Airflow UI in a real browser (Debian's Chromium driven by Playwright): log in, trigger
the training DAG with typed Params, see the run succeed, follow Conveyor's extra links (Data
Docs; the model card with its version and fairness table), open the pipelines view and a drift report with the same login, and meet the login form without.

Screenshots of every step go to the test's output directory (``tmp_path``).

Runs by default (``make test`` installs Debian's chromium through ``make system-deps``).
Without Chromium or Playwright it is skipped with the install command, except in CI, where
it fails. ``CONVEYOR_SKIP_BROWSER_TESTS=1`` skips it on request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from services.deps import opt_out_mark, require

pytestmark = [
    pytest.mark.system,
    opt_out_mark("CONVEYOR_SKIP_BROWSER_TESTS", "the browser test"),
    # A whole training run on the session's LocalExecutor plus the browser: the default
    # 900 s per test is tight on a busy 2-core machine. Each wait inside has its own bound.
    pytest.mark.timeout(1800),
]

DAG_ID = "train_breast_cancer"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a root, headless, offline machine (see the machine notes): no sandbox as root,
# no GPU, and none of Chromium's background connections, which this network refuses.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
#: Milliseconds a single browser step (a page load, a click) may take on a loaded machine.
STEP_TIMEOUT_MS = 120_000


def browser_problems() -> list[str]:
    """What is missing to drive Chromium with Playwright, as messages."""
    problems = []
    if not os.path.exists(CHROMIUM):
        problems.append(f"Debian's Chromium ({CHROMIUM})")
    else:
        try:
            subprocess.run([CHROMIUM, "--version"], capture_output=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"a working Chromium ({CHROMIUM} --version failed: {exc})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package (a project dependency: `uv sync`)")
    return problems


@pytest.fixture(scope="session", autouse=True)
def browser_available() -> None:
    """Checked before the (session-scoped) Airflow server starts: fail or skip at once."""
    require(browser_problems(), "The browser test", "make system-deps (apt-get install chromium)")


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def test_trigger_with_params_in_the_ui_and_follow_an_extra_link(
    airflow_server, demo_registry, page, tmp_path, settings
):
    _, client = airflow_server
    base = client.url.rstrip("/")
    client.wait_for_dag(DAG_ID, timeout=180)
    client.unpause(DAG_ID)
    before = {r["dag_run_id"] for r in client.list_runs(DAG_ID, limit=50)}
    rev = demo_registry["breast_cancer"]

    log_in(page, base, tmp_path)
    # The single-page app renders after the URL changes: wait for its navigation bar.
    page.get_by_text("Dags", exact=True).first.wait_for()
    page.screenshot(path=tmp_path / "1-home.png")

    page.goto(f"{base}/dags/{DAG_ID}", wait_until="networkidle")
    page.locator("[data-testid=trigger-dag-button]").click()
    page.locator("input#element_data_rev").fill(rev)
    page.locator("label#switch\\:element_force").click()
    page.screenshot(path=tmp_path / "2-trigger-form.png")
    page.locator("[data-testid=trigger-dag-submit]").click()

    # The UI posts the trigger to the REST API; a loaded api-server may take a while.
    deadline = time.monotonic() + 180
    run_id = None
    while time.monotonic() < deadline and run_id is None:
        new = [
            r
            for r in client.list_runs(DAG_ID, limit=50)
            if r["dag_run_id"] not in before and r["run_type"] == "manual"
        ]
        run_id = new[0]["dag_run_id"] if new else None
        time.sleep(1)
    assert run_id, "the UI trigger did not create a run"
    conf = client.dag_run(DAG_ID, run_id)["conf"]
    assert conf["data_rev"] == rev
    assert conf["force"] is True

    result = client.wait_for_run(DAG_ID, run_id, timeout=900)
    assert str(result.state) == "success", result.states
    page.goto(f"{base}/dags/{DAG_ID}/runs/{run_id}", wait_until="networkidle")
    page.get_by_text("success").first.wait_for()
    page.screenshot(path=tmp_path / "3-run-success.png")

    # The validation task's "Data Docs" extra link (as the UI lists it through the REST API)
    # opens the GX report served by the plugin's /conveyor app, in the logged-in browser.
    page.goto(f"{base}/dags/{DAG_ID}/runs/{run_id}/tasks/validate_data", wait_until="networkidle")
    page.screenshot(path=tmp_path / "4-task.png")
    links = client.request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/validate_data/links"
    ).json()["extra_links"]
    href = links["Data Docs"]
    assert "/conveyor/artifacts/" in href
    page.goto(href if href.startswith("http") else base + href, wait_until="networkidle")
    assert "Expectation" in page.content() or "expect_" in page.content()
    page.screenshot(path=tmp_path / "5-data-docs.png")

    # register_model's "Model card" extra link: this run's version and its fairness table
    # (the demo YAML's evaluation.sensitive_features: 'mean texture' quartiles).
    version = registered_version(settings, run_id)
    links = client.request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/register_model/links"
    ).json()["extra_links"]
    href = links["Model card"]
    assert "/conveyor/artifacts/" in href and "/model_card/" in href, href
    page.goto(href if href.startswith("http") else base + href, wait_until="networkidle")
    page.get_by_role("heading", name=f"Model card: breast_cancer v{version}").wait_for()
    page.get_by_role("heading", name="Fairness: mean texture").wait_for()
    fairness = page.locator("table.fairness")
    assert fairness.locator("th", has_text="selection_rate").count() == 1
    assert fairness.locator("tr:has(td)").count() >= 2  # one row per group
    page.screenshot(path=tmp_path / "5b-model-card.png")

    # The pipelines view (the navigation bar's "Conveyor pipelines") in the same login.
    page.goto(f"{base}/conveyor/", wait_until="networkidle")
    page.get_by_role("heading", name="breast_cancer", exact=True).wait_for()
    page.screenshot(path=tmp_path / "6-pipelines-view.png")

    # A drift report with its plots: each <img> is one more request that needs the login.
    page.goto(f"{base}{drift_report(settings)}", wait_until="networkidle")
    page.get_by_text("Drift report").first.wait_for()
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths), widths
    page.screenshot(path=tmp_path / "7-drift-report.png")

    # Logged out (a fresh browser context): the same page leads to the login form.
    anonymous = page.context.browser.new_context()
    try:
        login = anonymous.new_page()
        login.goto(f"{base}/conveyor/", wait_until="networkidle")
        login.locator("input[name=username]").wait_for()
        assert "/auth/login" in login.url, login.url
    finally:
        anonymous.close()


def log_in(page, base: str, tmp_path) -> None:
    """Sign in as the demo admin through the login form. A click that lands before the
    login page's script is ready does nothing (seen late in a full suite run): try again,
    and on a real refusal fail with what the page says."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(1, 4):
        page.goto(f"{base}/auth/login", wait_until="networkidle")
        page.locator("input[name=username]").wait_for()
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "admin")
        page.get_by_role("button", name="Sign in").click()
        try:
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=40_000)
            return
        except PlaywrightTimeout:
            page.screenshot(path=tmp_path / f"0-login-attempt-{attempt}.png")
    raise AssertionError(f"login never left {page.url}: {page.inner_text('body')[:800]}")


def registered_version(settings, run_id: str) -> str:
    """The breast_cancer version the training run ``run_id`` registered (its lineage tag)."""
    from conveyor.registry import tracking

    client = tracking.configure(settings)
    [version] = [
        v.version
        for v in client.search_model_versions("name = 'breast_cancer'")
        if v.tags.get("conveyor.run_id") == run_id
    ]
    return str(version)


def drift_report(settings) -> str:
    """The URL path of a drift report written by the monitoring step's own report writer
    (``conveyor.monitoring.report``) for drifted breast-cancer traffic."""
    from pathlib import Path

    import pandas as pd

    from conveyor.config import load_pipeline_config, pipeline_path
    from conveyor.monitoring.drift import build_profile, compute_drift
    from conveyor.monitoring.report import write_report
    from conveyor_runtime.datasets import dataset_frame
    from conveyor_runtime.traffic import traffic_rows

    config = load_pipeline_config(pipeline_path("breast_cancer", settings.pipelines_dir))
    profile = build_profile(dataset_frame("breast_cancer"), config)
    live = pd.DataFrame(traffic_rows("breast_cancer", 300, drift=True, seed=3))
    rel = "conveyor_monitor_breast_cancer/browser_test/drift/try-1/report"
    written = write_report(compute_drift(profile, live), Path(settings.artifact_root) / rel)
    assert any(name.endswith(".png") for name in written), written
    return f"/conveyor/artifacts/{rel}/index.html"
