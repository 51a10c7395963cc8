"""Render a worker workload: options + specs → the workload body and its companions.

One chain for every kind — validate, name, label, wire spec and credentials (companions), build
the container, build the Pod/Job/Deployment, merge a pod template under it — so the operators,
the DAG factory and ``zdtp render`` produce the same objects. Pure: credentials arrive as DSNs
already looked up (or not at all), namespaces already resolved; errors are WorkloadError (or
InvalidName), both ValueErrors whose message starts with the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from zdtp_provider.k8s import job as jobs
from zdtp_provider.k8s import manifest
from zdtp_provider.k8s.deployment import worker_deployment
from zdtp_provider.k8s.inputs import workload_inputs
from zdtp_provider.k8s.labels import selector_labels, worker_labels
from zdtp_provider.k8s.names import dns_label, short_hash, validate_dns_label
from zdtp_provider.k8s.pod import WorkerContainer, build_pod
from zdtp_provider.k8s.secret import content_hash, tls_mount
from zdtp_provider.workload.errors import WorkloadError
from zdtp_provider.workload.options import WorkloadOptions
from zdtp_provider.workload.pod_parts import PodParts, apply_template, pod_parts
from zdtp_worker.contract.envelope import INDEX_ENV, full_args, incremental_args
from zdtp_worker.contract.spec import WorkerSpec


@dataclass(frozen=True)
class Rendered:
    """A workload (``kubernetes.client`` model) and the Secret/ConfigMap it needs first."""

    workload: Any
    companions: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.workload.metadata.name

    @property
    def namespace(self) -> str:
        return self.workload.metadata.namespace

    def body(self) -> dict:
        return manifest(self.workload)

    def documents(self) -> list[dict]:
        """Companions first (the order they are applied in), then the workload."""
        return [*(manifest(c) for c in self.companions), self.body()]


def deployment_name(task: str, worker: str = "w0") -> str:
    """The Deployment name zdtp derives for a sync task's incremental worker."""
    return dns_label("zdtp", task, worker, "cdc")


def _parts(options: WorkloadOptions) -> PodParts:
    """The pod arguments as builder inputs, plus the TLS Secret mount when one is named."""
    parts = pod_parts(options.pod)
    if not options.credentials.tls_secret:
        return parts
    volume, mount = tls_mount(options.credentials.tls_secret)
    volumes = [*(parts.pod_kwargs.get("volumes") or []), volume]
    return replace(parts, mounts=[*parts.mounts, mount], pod_kwargs={**parts.pod_kwargs, "volumes": volumes})


@dataclass(frozen=True)
class _Target:
    """The workload being rendered: its name, namespace and labels (its companions share them)."""

    name: str
    namespace: str
    labels: Mapping[str, str]


def _container(
    options: WorkloadOptions,
    parts: PodParts,
    target: _Target,
    spec_files: Mapping[str, str],
    *,
    dsns: Mapping[str, str] | None,
    args: Sequence[str],
    index_template: str | None = None,
    health_port: int | None = None,
):
    inputs = workload_inputs(
        name=target.name,
        namespace=target.namespace,
        labels=target.labels,
        spec_files=spec_files,
        dsns=dict(dsns or {}),
        user_secret=options.credentials.user_secret(),
        index_template=index_template,
    )
    cfg = WorkerContainer(
        image=options.image,
        args=list(args),
        spec=inputs.spec,
        credentials=inputs.credentials,
        resources=parts.resources,
        image_pull_policy=parts.image_pull_policy,
        health_port=health_port,
        extra_env=parts.env,
        env_from=parts.env_from,
        extra_mounts=parts.mounts,
    )
    return cfg, inputs


def _with_template(parts: PodParts, template_owner: Any) -> None:
    """Merge the user's pod template under a Job's/Deployment's pod template, in place."""
    if parts.template is None:
        return
    tpl = template_owner.spec.template
    tpl.metadata, tpl.spec = apply_template(parts.template, tpl.metadata, tpl.spec)


def render_pod(
    options: WorkloadOptions,
    spec: WorkerSpec,
    *,
    namespace: str,
    run_id: str,
    task_id: str,
    try_number: int,
    name: str | None = None,
    dsns: Mapping[str, str] | None = None,
    queue: str | None = None,
    queue_mode: str | None = None,
    active_deadline_seconds: int | None = None,
) -> Rendered:
    """One full-sync worker as a bare Pod (FullSyncOperator). The name is unique per try."""
    options.validate()
    if queue_mode not in (None, "one", "drain"):
        raise WorkloadError(f"queue_mode: must be 'one' or 'drain', got {queue_mode!r}")
    parts = _parts(options)
    base = name or dns_label("zdtp", spec.task, spec.worker, max_length=54)
    pod_name = dns_label(base, short_hash(run_id, task_id, try_number))
    labels = worker_labels(
        task=spec.task,
        worker=spec.worker,
        component="full-sync",
        run_id=spec.run_id,
        extra=options.pod.labels,
    )
    target = _Target(pod_name, namespace, labels)
    args = full_args(queue=queue, queue_mode=queue_mode)
    cfg, inputs = _container(options, parts, target, {"spec.json": spec.to_json()}, dsns=dsns, args=args)
    pod = build_pod(
        cfg,
        name=pod_name,
        namespace=namespace,
        labels=labels,
        annotations=dict(options.pod.annotations or {}),
        active_deadline_seconds=active_deadline_seconds,
        **parts.pod_kwargs,
    )
    if parts.template is not None:
        pod.metadata, pod.spec = apply_template(parts.template, pod.metadata, pod.spec)
    return Rendered(pod, inputs.companions)


@dataclass(frozen=True)
class JobShape:
    """How a Job runs its workers: the builder's name and its kind-specific arguments."""

    kind: str  # "job" | "indexed" | "queue"
    args: Sequence[str] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


def _render_job(
    options: WorkloadOptions,
    specs: Sequence[WorkerSpec],
    shape: JobShape,
    *,
    namespace: str,
    owner: str,
    run_id: str,
    dsns: Mapping[str, str] | None,
    active_deadline_seconds: int | None,
) -> Rendered:
    options.validate()
    if not specs:
        raise WorkloadError("specs: no worker to start")
    if len({s.task for s in specs}) != 1:
        raise WorkloadError("spec.task: every worker of one Job must belong to the same sync task")
    parts = _parts(options)
    first = specs[0]
    worker = first.worker if len(specs) == 1 else shape.kind
    name = dns_label(dns_label("zdtp", first.task, worker, max_length=54), short_hash(owner, run_id))
    labels = worker_labels(
        task=first.task,
        worker=worker,
        component="full-sync",
        run_id=run_id,
        owner=owner,
        extra=options.pod.labels,
    )
    indexed = len(specs) > 1 or shape.kind == "indexed"
    spec_files = (
        {f"spec-{i}.json": s.to_json() for i, s in enumerate(specs)}
        if indexed
        else {"spec.json": first.to_json()}
    )
    cfg, inputs = _container(
        options,
        parts,
        _Target(name, namespace, labels),
        spec_files,
        dsns=dsns,
        args=shape.args or full_args(),
        index_template=f"spec-$({INDEX_ENV}).json" if indexed else None,
    )
    common = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "pod_annotations": dict(options.pod.annotations or {}),
        "active_deadline_seconds": active_deadline_seconds,
        "pod_kwargs": parts.pod_kwargs,
    }
    if shape.kind == "indexed":
        job = jobs.indexed_job(cfg, completions=len(specs), **common, **shape.settings)
    elif shape.kind == "queue":
        job = jobs.queue_job(cfg, **common, **shape.settings)
    else:
        job = jobs.worker_job(cfg, **common, **shape.settings)
    _with_template(parts, job)
    return Rendered(job, inputs.companions)


def render_job(
    options: WorkloadOptions, spec: WorkerSpec, *, retries: int, args: Sequence[str] = (), **ctx: Any
) -> Rendered:
    """Pattern (a): one Job runs one worker (``retries`` pod retries inside the Job); ``args``
    other than a plain copy's, e.g. a queue fan-out's enqueue pod (``full_args(enqueue=True)``)."""
    return _render_job(options, [spec], JobShape("job", args=args, settings={"retries": retries}), **ctx)


def render_indexed_job(
    options: WorkloadOptions,
    specs: Sequence[WorkerSpec],
    *,
    parallelism: int,
    retries_per_index: int,
    max_failed_indexes: int | None = None,
    **ctx: Any,
) -> Rendered:
    """Pattern (b): one Indexed Job, index *i* runs ``specs[i]``."""
    settings = {
        "parallelism": parallelism,
        "retries_per_index": retries_per_index,
        "max_failed_indexes": max_failed_indexes,
    }
    return _render_job(options, specs, JobShape("indexed", settings=settings), **ctx)


def render_queue_job(
    options: WorkloadOptions,
    spec: WorkerSpec,
    *,
    queue: str,
    parallelism: int,
    items: int | None,
    retries: int,
    **ctx: Any,
) -> Rendered:
    """Patterns (c)/(d): pods take work-queue items, one each (``items``) or until it is drained."""
    args = full_args(queue=queue, queue_mode="one" if items is not None else "drain")
    settings = {"parallelism": parallelism, "items": items, "retries": retries}
    return _render_job(options, [spec], JobShape("queue", args=args, settings=settings), **ctx)


def render_deployment(
    options: WorkloadOptions,
    spec: WorkerSpec,
    *,
    namespace: str,
    name: str | None = None,
    dsns: Mapping[str, str] | None = None,
    progress_deadline_seconds: int = 600,
    min_ready_seconds: int = 5,
) -> Rendered:
    """The incremental worker's Deployment: deterministic, so re-applying it changes nothing."""
    options.validate()
    parts = _parts(options)
    name = validate_dns_label(name or deployment_name(spec.task, spec.worker), field="name")
    labels = worker_labels(
        task=spec.task, worker=spec.worker, component="incremental-sync", extra=options.pod.labels
    )
    cfg, inputs = _container(
        options,
        parts,
        _Target(name, namespace, labels),
        {"spec.json": spec.to_json()},
        dsns=dsns,
        args=incremental_args(),
        health_port=spec.incremental.health_port,
    )
    dep = worker_deployment(
        cfg,
        name=name,
        namespace=namespace,
        labels=labels,
        selector=selector_labels(task=spec.task, worker=spec.worker),
        config_hash=content_hash(inputs.content),
        pod_annotations=dict(options.pod.annotations or {}),
        progress_deadline_seconds=progress_deadline_seconds,
        min_ready_seconds=min_ready_seconds,
        pod_kwargs=parts.pod_kwargs,
    )
    _with_template(parts, dep)
    return Rendered(dep, inputs.companions)
