"""Acceptance against a real Airflow 3.3: REST trigger, UI trigger form, cron, Asset-driven DAG.

One Airflow (scheduler, api-server, dag-processor, triggerer, LocalExecutor, SQLite) serves the
whole module; see ``conftest.py``. **KWOK pods run no code**: the sync tasks here carry the pod
annotation ``sim.zdtp.io/delay: 1s``, so each simulated worker "runs" one second and exits 0
without copying a row. What these tests prove is the Airflow side — scheduling, the executor, the
triggerer resuming a deferred Job wait, XCom/params/conf, Asset events — and that zdtp's Job really
reaches the Kubernetes API and completes there; not that data moved (``verify: none``; data
movement is covered by the worker and real-node tests).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from croniter import croniter

from devtools.airflow_services import AirflowServices
from tests.e2e.airflow_live.conftest import ARTIFACTS, LiveSyncs

pytestmark = [pytest.mark.airflow, pytest.mark.cluster, pytest.mark.postgres]

RUN_TIMEOUT = 240  # s; a loaded 2-core machine parses zdtp_syncs.py in each task process


@pytest.fixture(scope="module")
def rest_run(live_airflow: AirflowServices, live_syncs: LiveSyncs) -> dict:
    """One run of the indexed-job sync, triggered through the REST API with ``conf``."""
    dag_id = live_syncs.full_indexed
    live_airflow.wait_for_dag(dag_id)
    live_airflow.wait_for_dag(live_syncs.downstream)
    live_airflow.unpause(live_syncs.downstream)
    live_airflow.unpause(dag_id)
    created = live_airflow.trigger(dag_id, conf={"workers": 2})
    run = live_airflow.wait_run(dag_id, created["dag_run_id"], timeout=RUN_TIMEOUT)
    return {"created": created, "run": run, "tasks": live_airflow.task_states(dag_id, created["dag_run_id"])}


def test_rest_trigger_with_conf_runs_to_success(
    rest_run: dict, live_airflow: AirflowServices, live_syncs: LiveSyncs
) -> None:
    """POST /api/v2/dags/{id}/dagRuns (JWT from /auth/token) → plan, Indexed Job, verify: success.

    ``copy`` defers to ZdtpJobTrigger, so success also proves the triggerer resumed it.
    """
    assert rest_run["created"]["conf"] == {"workers": 2}
    assert rest_run["run"]["state"] == "success", rest_run["tasks"]
    assert rest_run["run"]["triggered_by"] == "rest_api"
    assert rest_run["tasks"] == {"plan": "success", "copy": "success", "verify": "success"}
    run_id = rest_run["created"]["dag_run_id"]
    base = f"/dags/{live_syncs.full_indexed}/dagRuns/{run_id}/taskInstances"
    plan = live_airflow.api_json("GET", f"{base}/plan/xcomEntries/return_value")["value"]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert [spec["worker"] for spec in plan] == ["w0", "w1"]  # conf workers=2 → two key ranges
    tables = [t for spec in plan for t in spec["tables"]]
    assert {(t["source"]["schema"], t["source"]["name"]) for t in tables} == {("public", "items")}
    assert len({json.dumps(t["key_range"], sort_keys=True) for t in tables}) == 2  # split by key
    copy = live_airflow.api_json("GET", f"{base}/copy")
    assert copy["try_number"] == 1 and copy["operator"] == "IndexedFullSyncJobOperator"


def test_downstream_dag_runs_on_target_table_asset(
    rest_run: dict, live_airflow: AirflowServices, live_syncs: LiveSyncs
) -> None:
    """The sync's verify task emits an event for ``zdtp://<target_conn_id>/public/items``; a DAG
    scheduled on ``Asset.ref(uri=...)`` of that URI gets an asset-triggered run that succeeds."""
    assert rest_run["run"]["state"] == "success"
    events = live_airflow.api_json("GET", "/assets/events", params={"source_dag_id": live_syncs.full_indexed})
    mine = [e for e in events["asset_events"] if e["source_run_id"] == rest_run["created"]["dag_run_id"]]
    assert [(e["uri"], e["source_task_id"]) for e in mine] == [(live_syncs.asset_uri, "verify")]
    deadline = time.monotonic() + 120
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = live_airflow.api_json("GET", f"/dags/{live_syncs.downstream}/dagRuns")["dag_runs"]
        if any(r["state"] == "success" for r in runs):
            break
        time.sleep(1)
    assert [(r["run_type"], r["state"]) for r in runs] == [("asset_triggered", "success")], runs


def test_cron_schedule_is_picked_up(live_airflow: AirflowServices, live_syncs: LiveSyncs) -> None:
    """``schedule: "0 2 * * *"`` → the scheduler's next run is the cron's fire time (UTC).

    The DAG stays paused (as created), so the scheduler computes the next run without starting it.
    With ``catchup=False`` Airflow 3's CronTriggerTimetable schedules the latest fire time that has
    passed (today's 02:00 if it is past 02:00) — it would run at once if unpaused.
    """
    dag = live_airflow.wait_for_dag(live_syncs.cron)
    assert dag["is_paused"] is True
    assert dag["timetable_summary"] == "0 2 * * *"
    now = dt.datetime.now(dt.UTC)
    fire = croniter("0 2 * * *", now).get_prev(dt.datetime)
    expected = {fire, fire - dt.timedelta(days=1)} if now - fire < dt.timedelta(minutes=5) else {fire}
    run_after = dt.datetime.fromisoformat(dag["next_dagrun_run_after"])
    assert run_after in expected, (dag["next_dagrun_run_after"], expected)
    assert dag["next_dagrun_data_interval_start"] == dag["next_dagrun_data_interval_end"]
    assert dt.datetime.fromisoformat(dag["next_dagrun_data_interval_end"]) == run_after
    # On-demand sync tasks have no schedule at all.
    assert live_airflow.wait_for_dag(live_syncs.full_indexed)["next_dagrun_run_after"] is None


def test_dry_run_of_indexed_job_fanout(live_airflow: AirflowServices, live_syncs: LiveSyncs) -> None:
    """``conf={"dry_run": true}`` plans and starts nothing: the empty plan skips the Indexed Job."""
    dag_id = live_syncs.full_indexed
    live_airflow.wait_for_dag(dag_id)
    live_airflow.unpause(dag_id)
    created = live_airflow.trigger(dag_id, conf={"dry_run": True})
    run = live_airflow.wait_run(dag_id, created["dag_run_id"], timeout=RUN_TIMEOUT)
    states = live_airflow.task_states(dag_id, created["dag_run_id"])
    assert run["state"] == "success", states
    assert (states["plan"], states["copy"], states["verify"]) == ("success", "skipped", "skipped"), states


# ---------------------------------------------------------------- UI (headless Chromium)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    from devtools.browser import BrowserUnavailable, ensure_chromium

    try:
        return ensure_chromium()
    except BrowserUnavailable as exc:
        pytest.skip(f"headless Chromium unavailable: {exc}")


def test_trigger_form_in_browser(
    chromium_path: str, live_airflow: AirflowServices, live_syncs: LiveSyncs
) -> None:
    """Sign in, open the trigger form, set Workers=1 (the config's 2 is the form's maximum) and
    Dry run, trigger; the API then shows a
    ``ui``-triggered run with that conf, which succeeds (plan only: the mapped copy is skipped).
    Screenshots of the filled form and of the page after triggering go to test-artifacts/."""
    from playwright.sync_api import sync_playwright

    dag_id = live_syncs.tasks_fanout
    live_airflow.wait_for_dag(dag_id)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    form_png, after_png = ARTIFACTS / "trigger-form.png", ARTIFACTS / "after-trigger.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{live_airflow.base_url}/dags/{dag_id}")
            page.get_by_label("Username").fill(live_airflow.username)
            page.get_by_label("Password").fill(live_airflow.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"**/dags/{dag_id}")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Run Parameters").wait_for()
            workers = dialog.get_by_role("spinbutton")
            assert workers.input_value() == "2"  # the config's default
            workers.fill("1")
            dialog.locator('[id="switch:element_dry_run:control"]').click()
            page.screenshot(path=str(form_png))
            with page.expect_response(
                lambda r: r.url.endswith(f"/dags/{dag_id}/dagRuns") and r.request.method == "POST"
            ) as posted:
                dialog.get_by_role("button", name="Trigger").click()
            assert posted.value.status == 200, posted.value.text()
            created = posted.value.json()
            page.get_by_text("Dag Run Triggered").wait_for()
            page.screenshot(path=str(after_png))
        finally:
            browser.close()
    assert form_png.stat().st_size > 10_000 and after_png.stat().st_size > 10_000
    run = live_airflow.api_json("GET", f"/dags/{dag_id}/dagRuns/{created['dag_run_id']}")
    assert run["triggered_by"] == "ui"
    assert run["conf"] == {"tables": [], "workers": 1, "dry_run": True}
    done = live_airflow.wait_run(dag_id, created["dag_run_id"], timeout=RUN_TIMEOUT)
    states = live_airflow.task_states(dag_id, created["dag_run_id"])
    assert done["state"] == "success", states
    assert states["plan"] == "success"
    assert states["copy"] == "skipped"  # mapped over an empty plan: no pod started
