"""Build one Airflow DAG from one sync-task config.

Parse-time work is only: read YAML, validate, wire tasks. Catalog reads, connection look-ups and
Kubernetes calls all happen inside tasks, so parsing stays fast and works without the databases.

Shape by mode:

* ``full``: ``plan`` → ``copy`` → ``verify``; ``copy`` by ``fanout``: mapped FullSyncOperator
  (tasks), one Indexed Job, mapped FullSyncJobOperator (job-per-worker), or one
  QueueFullSyncJobOperator that enqueues, runs the queue Job and checks the queue (queue,
  queue-drain)
* ``incremental``: ``prepare_stream`` → ``stream`` (IncrementalSyncOperator Deployment)
* ``full+incremental``: ``prepare_stream`` → ``plan`` → ``copy`` → ``verify`` → ``stream``;
  the slot exists before the copy, the stream starts after it (see ``database_steps``).

``verify`` carries the target tables as Asset outlets so downstream DAGs can be scheduled on
fresh data; tables picked by ``include`` patterns are emitted through an AssetAlias.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetAlias, BaseHook, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from zdtp_provider.config import SyncTaskConfig

# Imported at module level on purpose: Airflow's DAG processor pre-imports the modules a DAG file
# imports (``parsing_pre_import_modules``) once, before it forks per parse, so the heavy
# Kubernetes client imports behind these operators are not paid again on every parse.
from zdtp_provider.operators.full import FullSyncOperator
from zdtp_provider.operators.incremental import IncrementalSyncOperator
from zdtp_provider.operators.job import (
    FullSyncJobOperator,
    IndexedFullSyncJobOperator,
    QueueFullSyncJobOperator,
)
from zdtp_provider.run_params import ParamError, run_config
from zdtp_provider.workload import config_kwargs, stream_spec
from zdtp_provider.workload.batch import CRONJOB_TASK
from zdtp_provider.workload.sync_task import (
    COPY_TASK,
    PLAN_TASK,
    PREPARE_STREAM_TASK,
    STREAM_TASK,
    VERIFY_TASK,
    indexed_settings,
    queue_settings,
)

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LAST_RUN_TASK = "last_run"


def table_asset(config: SyncTaskConfig, table: str) -> Asset:
    from urllib.parse import quote

    from zdtp_worker.contract.identifiers import parse_qualified

    # Any identifier: the canonical name in the Asset name, each part percent-encoded in the URI.
    schema, name = (quote(p, safe="") for p in parse_qualified(table))
    return Asset(
        name=f"zdtp.{config.target_conn_id}.{table}", uri=f"zdtp://{config.target_conn_id}/{schema}/{name}"
    )


def _dsn(conn_id: str, *, sslmode: str | None) -> str:
    """The connection's DSN for work on the Airflow worker itself (plan, verify, prepare_stream):
    the config's ``sslmode`` applies here too; certificate paths stay the connection's own (the
    ``tls_secret`` mount only exists in worker pods)."""
    from zdtp_provider.connections import dsn_from_connection

    try:
        return dsn_from_connection(BaseHook.get_connection(conn_id), sslmode=sslmode)
    except ValueError as exc:
        raise AirflowFailException(f"connection {conn_id!r} {exc}") from None


def _params(config: SyncTaskConfig) -> dict[str, Param]:
    cron: dict[str, Param] = {}
    if config.schedule_on == "kubernetes":
        cron["cron_action"] = Param(
            "apply",
            enum=["apply", "suspend", "resume", "delete"],
            title="CronJob action",
            description="schedule_on kubernetes: what this run does to the task's CronJob.",
        )
    return cron | {
        "tables": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Tables",
            description="Sync only these tables ('schema.table', within the config's selection);"
            " empty = the config's selection.",
        ),
        "workers": Param(
            config.workers,
            type="integer",
            minimum=1,
            maximum=config.workers,
            title="Workers",
            description=f"Maximum parallel full-sync workers for this run (at most {config.workers}).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Plan and print the workers, start nothing.",
        ),
    }


def build_dag(config: SyncTaskConfig, *, source_file: str | Path | None = None) -> DAG:
    """The DAG ``zdtp_<name>`` for one sync task."""
    doc = "\n".join(
        [
            f"### zdtp sync task `{config.name}`",
            config.description,
            "",
            f"* mode: **{config.mode}**, fan-out: `{config.fanout}`, workers ≤ {config.workers}",
            f"* source: `{config.source_conn_id}` → target: `{config.target_conn_id}`",
            f"* tables: {', '.join(config.tables) or '-'}; include: {', '.join(config.include) or '-'}",
            f"* namespace `{config.namespace}`, image `{config.image}`, verify `{config.verify}`",
            f"* config file: `{source_file}`" if source_file else "",
        ]
    )
    dag = DAG(
        dag_id=config.dag_id,
        # schedule_on kubernetes: the CronJob keeps the schedule; the DAG is run to manage it.
        schedule=config.schedule if config.schedule_on == "airflow" else None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["zdtp", f"mode:{config.mode}", *config.tags],
        default_args={"owner": config.owner},
        doc_md=doc,
        description=config.description or f"zdtp {config.mode} sync {config.name}",
        params=_params(config),
    )
    with dag:
        if config.mode == "incremental":
            prepare = _prepare_stream_task(config, source_file=source_file)
            _stream_task(config, prepare)
            return dag
        plan = _plan_task(config)
        if config.schedule_on == "kubernetes":
            plan >> _cronjob_tasks(config, plan)
            return dag
        copy = _copy_task(config, plan)
        verify = _verify_task(config)(plan)
        plan >> copy >> verify
        if config.mode == "full+incremental":
            prepare = _prepare_stream_task(config, source_file=source_file)
            prepare >> plan
            verify >> _stream_task(config, prepare)
    return dag


def _run_config(config: SyncTaskConfig, params: dict[str, Any]) -> SyncTaskConfig:
    """The run's config: params narrow it, never widen it (``run_params``)."""
    try:
        return run_config(config, params)
    except ParamError as exc:
        raise AirflowFailException(str(exc)) from None


def _plan_task(config: SyncTaskConfig):
    @task(task_id=PLAN_TASK, multiple_outputs=False)
    def plan() -> list[dict[str, Any]]:
        """Read the source catalog and split the work into balanced worker specs."""
        from zdtp_provider.planner import PlanningError, plan_workers, read_catalog

        context = get_current_context()
        params = context["params"]
        cfg = _run_config(config, params)
        try:
            estimates = read_catalog(
                _dsn(cfg.source_conn_id, sslmode=cfg.sslmode),
                cfg,
                target_dsn=_dsn(cfg.target_conn_id, sslmode=cfg.sslmode),
            )
            specs = plan_workers(cfg, estimates, run_id=context["run_id"], workers=cfg.workers)
        except PlanningError as exc:
            raise AirflowFailException(str(exc)) from None
        lines = [f"plan for {config.name}: {len(specs)} worker(s)"]
        for spec in specs:
            parts = [
                str(t.source) + (f"[{t.key_range.lower}..{t.key_range.upper})" if t.key_range else "")
                for t in spec.tables
            ]
            lines.append(f"  {spec.worker}: {', '.join(parts)}")
        lines += [f"  note: {e.name}: {e.note}" for e in estimates if e.note]
        print("\n".join(lines))
        if params.get("dry_run"):
            print("dry run: no worker is started")
            return []
        return [spec.model_dump(mode="json", by_alias=True) for spec in specs]

    return plan()


def _copy_task(config: SyncTaskConfig, plan):
    kwargs = {**config_kwargs(config), "deferrable": config.deferrable}
    if config.fanout == "indexed-job":
        return IndexedFullSyncJobOperator(task_id=COPY_TASK, specs=plan, **indexed_settings(config), **kwargs)
    if config.fanout == "job-per-worker":
        return FullSyncJobOperator.partial(
            task_id=COPY_TASK, job_retries=config.worker_retries, **kwargs
        ).expand(spec=plan)
    if config.fanout in ("queue", "queue-drain"):
        return QueueFullSyncJobOperator(task_id=COPY_TASK, spec=plan, **queue_settings(config), **kwargs)
    # One pod per try: a retry's pod resumes the run's chunks (same run id), so a crashed or killed
    # worker redoes at most one chunk per stream; exit 65/78 fail the task without retries.
    return FullSyncOperator.partial(
        task_id=COPY_TASK,
        get_logs=config.pod.stream_logs,
        retries=config.worker_retries,
        retry_delay=dt.timedelta(seconds=10),
        **kwargs,
    ).expand(spec=plan)


def _cronjob_tasks(config: SyncTaskConfig, plan):
    """``cronjob`` applies/suspends/resumes/deletes the CronJob (run param ``cron_action``);
    after an apply, ``last_run`` waits for a scheduled run to finish and reports it."""
    from zdtp_provider.operators.cronjob import FullSyncCronJobOperator
    from zdtp_provider.sensors.cronjob import CronJobRunSensor

    cron = FullSyncCronJobOperator(
        task_id=CRONJOB_TASK,
        task=config.name,
        action="{{ params.cron_action }}",
        spec=plan,
        schedule=config.schedule,
        time_zone=config.time_zone,
        starting_deadline_seconds=config.starting_deadline_seconds,
        **config_kwargs(config),
    )
    report = CronJobRunSensor(
        task_id=LAST_RUN_TASK,
        task=config.name,
        action="{{ params.cron_action }}",
        since="{{ ti.xcom_pull(task_ids='cronjob')['applied_at'] if params.cron_action == 'apply' else '' }}",
        namespace=config.namespace,
        kubernetes_conn_id=config.kubernetes_conn_id,
        mode="reschedule",
        poke_interval=15,
        timeout=3 * 3600,
    )
    cron >> report
    return cron


def _verify_task(config: SyncTaskConfig):
    static = [table_asset(config, t) for t in config.tables]
    alias = AssetAlias(f"zdtp.{config.name}")

    @task(task_id=VERIFY_TASK, outlets=[*static, alias])
    def verify(plan: list[dict[str, Any]]) -> dict[str, Any]:
        """Check the run from what its chunks recorded (``verify`` level; the live source is never
        read, so writes on it do not matter) and summarise the run."""
        from zdtp_provider.database_steps import planned_tables, verify_run
        from zdtp_worker.contract.errors import WorkerError
        from zdtp_worker.contract.spec import WorkerSpec

        context = get_current_context()
        if not plan:
            print("dry run or empty plan: nothing to verify")
            return {"tables": [], "verified": config.verify, "dry_run": True}
        specs = [WorkerSpec.model_validate(p) for p in plan]
        tables = planned_tables(specs)
        try:
            result = verify_run(
                target_dsn=_dsn(config.target_conn_id, sslmode=config.sslmode),
                config=config,
                run_id=specs[0].run_id,
                specs=specs,
            )
        except WorkerError as exc:
            raise AirflowException(f"verify ({config.verify}): {exc}") from None
        for r in result.tables:
            print(
                f"{r.table}: {r.recorded}/{r.chunks} chunks recorded, source {r.source_rows} rows, "
                f"target {r.target_rows} rows (table now {r.live_rows})"
                + (f", checksums {r.source_checksum} / {r.target_checksum}" if r.source_checksum else "")
                + "".join(f"\n  - {p}" for p in r.problems)
            )
        if not result.ok:
            bad = ", ".join(r.table for r in result.tables if not r.ok)
            raise AirflowException(f"verify ({config.verify}) failed for {bad}: {result.problems[0]}")
        for table in tables:
            if table not in config.tables:
                context["outlet_events"][alias].add(table_asset(config, table))
        return {"tables": [r.to_dict() for r in result.tables] or tables, "verified": config.verify}

    return verify


def _refuse_rerun(config: SyncTaskConfig, context: Any, *, source: str, source_file: str | None) -> None:
    """full+incremental: no copy while a stream of the task exists (``rerun_guard``); reads only."""
    from zdtp_provider.hooks.connection import KubeConnection
    from zdtp_provider.rerun_guard import decide, read_facts, refusal
    from zdtp_provider.workload import deployment_name

    facts = read_facts(
        task=config.name,
        namespace=config.namespace,
        deployment=deployment_name(config.name),
        hook=KubeConnection(conn_id=config.kubernetes_conn_id).hook(),
        source_dsn=source,
        target_dsn=_dsn(config.target_conn_id, sslmode=config.sslmode),
    )
    found = refusal(facts, task=config.name, dag_id=config.dag_id, source_file=source_file)
    run_type = getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type)
    verdict = decide(found, run_type=str(run_type))
    if verdict == "skip":
        raise AirflowSkipException(f"{run_type} run skipped: {found.message}")  # type: ignore[union-attr]
    if verdict == "fail":
        raise AirflowFailException(found.message)  # type: ignore[union-attr]


def _prepare_stream_task(base: SyncTaskConfig, *, source_file: str | Path | None = None):
    @task(task_id=PREPARE_STREAM_TASK, multiple_outputs=True)
    def prepare_stream() -> dict[str, Any]:
        """Check the source can stream and create publication + slot before anything is copied."""
        from zdtp_provider.database_steps import prepare_stream as prepare
        from zdtp_provider.planner import read_catalog
        from zdtp_worker.contract.errors import WorkerError

        context = get_current_context()
        config = _run_config(base, context["params"])
        source = _dsn(config.source_conn_id, sslmode=config.sslmode)
        if config.mode == "full+incremental":
            # First, before anything is written: a copy under a live stream loses updates.
            _refuse_rerun(
                config, context, source=source, source_file=str(source_file) if source_file else None
            )
        tables = [e.name for e in read_catalog(source, config)]
        try:
            names = prepare(
                source_dsn=source,
                config=config,
                tables=tables,
                # full+incremental: the copy that follows redefines the target, so the stream
                # restarts from the slot (and a lost slot is replaced instead of failing forever).
                target_dsn=_dsn(config.target_conn_id, sslmode=config.sslmode)
                if config.mode == "full+incremental"
                else None,
            )
        except WorkerError as exc:
            raise AirflowFailException(str(exc)) from None
        # Slot and publication stay unset: the worker derives the same names prepare used.
        # include/exclude let the worker report tables created after this plan (not streamed).
        spec = stream_spec(
            config,
            tables,
            include=list(config.include),
            exclude=list(config.exclude),
            set_replica_identity=config.set_replica_identity,
        ).model_dump(mode="json", by_alias=True)
        print(f"stream {names['slot']} (publication {names['publication']}) ready for {', '.join(tables)}")
        return {**names, "spec": spec}

    return prepare_stream()


def _stream_task(config: SyncTaskConfig, prepare):
    return IncrementalSyncOperator(
        task_id=STREAM_TASK, spec=prepare["spec"], deferrable=config.deferrable, **config_kwargs(config)
    )
