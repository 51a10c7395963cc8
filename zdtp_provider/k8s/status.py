"""Reading outcomes from object status: pure functions over ``kubernetes.client`` models.

Operators decide success from status, never from logs: a Job's conditions and per-index fields,
a Deployment's rollout fields, a container's termination message (the worker's JSON result).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes.client import V1Deployment, V1Job, V1Pod

from zdtp_provider.k8s.pod import CONTAINER_NAME, JOB_INDEX_ANNOTATION
from zdtp_worker.contract.errors import FATAL_EXIT_CODES
from zdtp_worker.contract.result import parse_result


def container_terminated(pod: V1Pod, container: str = CONTAINER_NAME) -> Any | None:
    """The terminated state of ``container`` (current, else the last one), or None."""
    for status in (pod.status and pod.status.container_statuses) or []:
        if status.name != container:
            continue
        if status.state and status.state.terminated:
            return status.state.terminated
        if status.last_state and status.last_state.terminated:
            return status.last_state.terminated
    return None


def pod_result(pod: V1Pod, container: str = CONTAINER_NAME) -> dict | None:
    """The worker's JSON summary from the termination message, if it left one."""
    terminated = container_terminated(pod, container)
    return parse_result(terminated.message) if terminated else None


def pod_exit(pod: V1Pod, container: str = CONTAINER_NAME) -> tuple[int | None, str | None]:
    """Exit code and termination message (or reason) of the worker container."""
    terminated = container_terminated(pod, container)
    if terminated is None:
        return None, None
    return terminated.exit_code, terminated.message or terminated.reason


# ---------------------------------------------------------------- Jobs


def job_condition(job: V1Job, kind: str) -> Any | None:
    for cond in (job.status and job.status.conditions) or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def job_phase(job: V1Job) -> str:
    """``succeeded``, ``failed`` or ``running`` from the terminal Job conditions."""
    if job_condition(job, "Complete"):
        return "succeeded"
    if job_condition(job, "Failed"):
        return "failed"
    return "running"


def job_failure_message(job: V1Job) -> str | None:
    cond = job_condition(job, "Failed")
    if cond is None:
        return None
    return f"{cond.reason}: {cond.message}" if cond.message else str(cond.reason)


def parse_index_set(text: str | None) -> set[int]:
    """Parse a Job's ``completedIndexes``/``failedIndexes`` (``"1,3-5"``) into a set."""
    result: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        result.update(range(int(lo), int(hi or lo) + 1))
    return result


def index_report(job: V1Job, pods: Iterable[V1Pod]) -> dict[str, Any]:
    """Per-index outcome of an Indexed Job: status, attempts, exit codes, worker results.

    The Job's ``completedIndexes``/``failedIndexes`` are authoritative for the status; pods add
    attempt counts, exit codes and the result summary of the attempt that succeeded.
    """
    completions = (job.spec and job.spec.completions) or 0
    done = parse_index_set(job.status and job.status.completed_indexes)
    failed = parse_index_set(job.status and job.status.failed_indexes)
    indexes: dict[str, dict[str, Any]] = {
        str(i): {
            "status": "succeeded" if i in done else "failed" if i in failed else "incomplete",
            "attempts": 0,
            "exit_codes": [],
        }
        for i in range(completions)
    }
    for pod in sorted(pods, key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name)):
        idx = ((pod.metadata.annotations or {}).get(JOB_INDEX_ANNOTATION)) or (
            (pod.metadata.labels or {}).get(JOB_INDEX_ANNOTATION)
        )
        if idx is None or idx not in indexes:
            continue
        entry = indexes[idx]
        code, message = pod_exit(pod)
        if code is None:
            continue
        entry["attempts"] += 1
        entry["exit_codes"].append(code)
        if code == 0 and (result := pod_result(pod)) is not None:
            entry["result"] = result
        elif code != 0 and message:
            entry["message"] = message[:500]
    return {
        "job": job.metadata.name,
        "phase": job_phase(job),
        "succeeded": sorted(done),
        "failed": sorted(failed),
        "indexes": indexes,
    }


def pods_report(job: V1Job, pods: Iterable[V1Pod]) -> dict[str, Any]:
    """Outcome of a non-indexed Job: counts, exit codes and the results workers reported."""
    attempts = []
    for pod in sorted(pods, key=lambda p: (p.metadata.creation_timestamp or 0, p.metadata.name)):
        code, message = pod_exit(pod)
        if code is None:
            continue
        entry: dict[str, Any] = {"pod": pod.metadata.name, "exit_code": code}
        if (result := pod_result(pod)) is not None:
            entry["result"] = result
        elif message and code != 0:
            entry["message"] = message[:500]
        attempts.append(entry)
    status = job.status
    return {
        "job": job.metadata.name,
        "phase": job_phase(job),
        "succeeded": (status and status.succeeded) or 0,
        "failed": (status and status.failed) or 0,
        "pods": attempts,
    }


# ---------------------------------------------------------------- Deployments


@dataclass(frozen=True)
class Rollout:
    done: bool
    failed: bool
    message: str


def rollout_status(dep: V1Deployment) -> Rollout:
    """``kubectl rollout status`` semantics for a Deployment.

    Done when the controller has seen the latest generation and updated == available == desired
    replicas with nothing old left; failed when ``Progressing`` says ``ProgressDeadlineExceeded``.
    """
    spec_replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
    status = dep.status
    generation = dep.metadata.generation or 0
    if status is None or (status.observed_generation or 0) < generation:
        return Rollout(False, False, "waiting for the controller to observe the new generation")
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return Rollout(False, True, f"rollout failed: {cond.message}")
    updated = status.updated_replicas or 0
    available = status.available_replicas or 0
    total = status.replicas or 0
    if updated < spec_replicas:
        return Rollout(False, False, f"{updated} of {spec_replicas} replicas updated")
    if total > updated:
        return Rollout(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return Rollout(False, False, f"{available} of {updated} updated replicas available")
    return Rollout(True, False, f"rolled out: {available}/{spec_replicas} available")


def pod_restarts(pod: V1Pod) -> int:
    return sum(s.restart_count or 0 for s in (pod.status and pod.status.container_statuses) or [])


def pod_waiting_reasons(pods: Iterable[V1Pod]) -> list[str]:
    """Why pods are not running (CrashLoopBackOff, ImagePullBackOff, Unschedulable...)."""
    reasons = []
    for pod in pods:
        for status in (pod.status and pod.status.container_statuses) or []:
            if status.state and status.state.waiting and status.state.waiting.reason:
                reasons.append(f"{pod.metadata.name}: {status.state.waiting.reason}")
        for cond in (pod.status and pod.status.conditions) or []:
            if cond.type == "PodScheduled" and cond.status == "False":
                reasons.append(f"{pod.metadata.name}: {cond.reason} {cond.message or ''}".strip())
    return reasons


def pod_last_exits(pods: Iterable[V1Pod]) -> list[str]:
    """The last failed exit of each restarted container: code and termination message (the
    worker's own words, where ``CrashLoopBackOff`` says only that it keeps failing). Past
    failures, so for explaining a failure — not a health verdict: a pod that restarted once an
    hour ago keeps its ``lastState``."""
    exits = []
    for pod in pods:
        for status in (pod.status and pod.status.container_statuses) or []:
            last = status.last_state and status.last_state.terminated
            if last and last.exit_code:
                said = " ".join((last.message or last.reason or "").split())[:300]
                exits.append(f"{pod.metadata.name}: last exit {last.exit_code}: {said}".rstrip(": "))
    return exits


# ---------------------------------------------------------------- outcome classification


def is_fatal(codes: Iterable[int | None]) -> bool:
    """True when every failing exit code is one a retry cannot fix (65 data, 78 config)."""
    failing = {c for c in codes if c}
    return bool(failing) and failing <= FATAL_EXIT_CODES


def report_exit_codes(report: dict[str, Any]) -> set[int]:
    """Non-zero exit codes of the attempts that finally failed (index or pod report)."""
    if "indexes" in report:
        return {
            entry["exit_codes"][-1]
            for entry in report["indexes"].values()
            if entry["status"] == "failed" and entry["exit_codes"]
        }
    return {p["exit_code"] for p in report.get("pods", []) if p["exit_code"]}


def failure_summary(report: dict[str, Any]) -> str:
    if "indexes" in report:
        failed = {i: e for i, e in report["indexes"].items() if e["status"] == "failed"}
        parts = [
            f"index {i}: exit {e['exit_codes'][-1:]} {e.get('message', '')}".strip()
            for i, e in failed.items()
        ]
        return f"{len(report['succeeded'])} indexes succeeded, {len(failed)} failed ({'; '.join(parts[:5])})"
    fails = [p for p in report.get("pods", []) if p["exit_code"]]
    parts = [f"{p['pod']}: exit {p['exit_code']} {p.get('message', '')}".strip() for p in fails[:5]]
    return f"{report['succeeded']} pods succeeded, {report['failed']} failed ({'; '.join(parts)})"
