"""Pure manifest builders: names, labels, security, spec/credential wiring, Jobs, Deployment."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zdtp_provider.k8s import manifest
from zdtp_provider.k8s.deployment import CONFIG_HASH_ANNOTATION, worker_deployment
from zdtp_provider.k8s.inputs import workload_inputs
from zdtp_provider.k8s.job import indexed_job, queue_job, worker_job
from zdtp_provider.k8s.labels import selector_labels, worker_labels
from zdtp_provider.k8s.names import (
    InvalidName,
    dns_label,
    label_value,
    validate_dns_label,
    validate_labels,
)
from zdtp_provider.k8s.pod import SpecSource, WorkerContainer, build_pod
from zdtp_provider.k8s.secret import SPEC_ENV_MAX_BYTES, content_hash
from zdtp_worker.contract.envelope import INDEX_ENV

DNS = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
LABEL = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"


@given(st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=4))
def test_dns_label_is_always_valid_and_deterministic(parts: list[str]) -> None:
    name = dns_label(*parts)
    assert len(name) <= 63
    assert __import__("re").match(DNS, name), name
    assert dns_label(*parts) == name


def test_long_names_differ_by_hash_not_collide() -> None:
    a = dns_label("zdtp", "x" * 80, "a")
    b = dns_label("zdtp", "x" * 80, "b")
    assert a != b and len(a) <= 63 and len(b) <= 63


@given(st.text(max_size=200))
def test_label_value_always_valid(value: str) -> None:
    assert __import__("re").match(LABEL, label_value(value))


def test_airflow_run_id_becomes_unique_label() -> None:
    r1 = label_value("manual__2024-01-01T00:00:00+00:00")
    r2 = label_value("manual__2024-01-01T00:00:00-00:00")
    assert r1 != r2


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("a" * 64, "64 characters"), ("Bad_Name", "DNS-1123"), ("-x", "DNS-1123"), ("", "non-empty")],
)
def test_validate_dns_label_names_the_field(value: str, fragment: str) -> None:
    with pytest.raises(InvalidName, match=rf"^name: .*{fragment}"):
        validate_dns_label(value, field="name")


def test_validate_labels_rejects_bad_key_and_value() -> None:
    with pytest.raises(InvalidName, match="labels"):
        validate_labels({"bad key": "x"}, field="labels")
    with pytest.raises(InvalidName, match="value"):
        validate_labels({"ok": "x" * 64}, field="labels")


def test_worker_labels_carry_design_labels_and_user_cannot_override() -> None:
    labels = worker_labels(
        task="orders",
        worker="w1",
        component="full-sync",
        run_id="manual__2024",
        extra={"team": "data", "zdtp.io/task": "evil"},
    )
    assert labels["app.kubernetes.io/name"] == "zdtp-worker"
    assert labels["app.kubernetes.io/managed-by"] == "zdtp"
    assert labels["app.kubernetes.io/component"] == "full-sync"
    assert labels["zdtp.io/task"] == "orders"
    assert labels["zdtp.io/worker"] == "w1"
    assert labels["zdtp.io/run"] == "manual__2024"
    assert labels["team"] == "data"
    assert set(selector_labels(task="orders", worker="w1").items()) <= set(labels.items())


def _cfg(**kw) -> WorkerContainer:
    return WorkerContainer(image="zdtp/worker:1", args=["full"], spec=SpecSource(inline_json="{}"), **kw)


def test_pod_is_restricted_and_never_restarts() -> None:
    pod = manifest(build_pod(_cfg(), name="p", namespace="ns", labels={"a": "b"}))
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])
    assert c["resources"]["limits"]["memory"]


def test_credentials_are_secret_files_never_env_values() -> None:
    inputs = workload_inputs(
        name="w",
        namespace="ns",
        labels={"a": "b"},
        spec_files={"spec.json": '{"task": "t"}'},
        dsns={"source-dsn": "postgresql://u:hunter2@h/db", "target-dsn": "postgresql://u:hunter2@h/db2"},
    )
    pod = manifest(build_pod(_cfg_from(inputs), name="w", namespace="ns", labels={}))
    text = json.dumps(pod)
    assert "hunter2" not in text
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["ZDTP_SOURCE_DSN_FILE"].endswith("/source-dsn")
    assert env["ZDTP_TARGET_DSN_FILE"].endswith("/target-dsn")
    assert env["ZDTP_WORKER_SPEC"] == '{"task": "t"}'
    (secret,) = [manifest(c) for c in inputs.companions]
    assert secret["kind"] == "Secret" and secret["stringData"]["source-dsn"].endswith("@h/db")
    assert secret["metadata"]["labels"]["zdtp.io/part"] == "credentials"


def _cfg_from(inputs) -> WorkerContainer:
    return WorkerContainer(image="i", args=["full"], spec=inputs.spec, credentials=inputs.credentials)


def test_large_spec_goes_to_a_config_map_file() -> None:
    big = json.dumps({"x": "y" * (SPEC_ENV_MAX_BYTES + 1)})
    inputs = workload_inputs(name="w", namespace="ns", labels={}, spec_files={"spec.json": big})
    (cm,) = [manifest(c) for c in inputs.companions]
    assert cm["kind"] == "ConfigMap" and cm["data"]["spec.json"] == big
    pod = manifest(build_pod(_cfg_from(inputs), name="w", namespace="ns", labels={}))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert "ZDTP_WORKER_SPEC" not in env
    assert env["ZDTP_WORKER_SPEC_FILE"] == "/etc/zdtp/spec/spec.json"


def test_indexed_job_reads_its_own_spec_file_and_has_exit_code_policy() -> None:
    inputs = workload_inputs(
        name="j",
        namespace="ns",
        labels={},
        spec_files={f"spec-{i}.json": "{}" for i in range(3)},
        index_template=f"spec-$({INDEX_ENV}).json",
    )
    job = manifest(
        indexed_job(
            _cfg_from(inputs), name="j", namespace="ns", labels={"a": "b"}, completions=3, parallelism=8
        )
    )
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 3 and spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == 1
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailIndex" and rules[1]["onExitCodes"]["values"] == [65, 78]
    assert rules[2]["action"] == "Count" and rules[2]["onExitCodes"]["values"] == [75]
    env = spec["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    # The index var must come before the reference that expands it.
    assert names.index(INDEX_ENV) < names.index("ZDTP_WORKER_SPEC_FILE")
    assert env[names.index("ZDTP_WORKER_SPEC_FILE")]["value"].endswith(f"spec-$({INDEX_ENV}).json")
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_worker_job_fails_job_on_fatal_codes() -> None:
    job = manifest(worker_job(_cfg(), name="j", namespace="ns", labels={}, retries=2))
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["completions"] == 1
    assert job["spec"]["podFailurePolicy"]["rules"][1]["action"] == "FailJob"


def test_queue_job_modes() -> None:
    one = manifest(queue_job(_cfg(), name="q", namespace="ns", labels={}, parallelism=3, items=10))
    assert one["spec"]["completions"] == 10 and one["spec"]["parallelism"] == 3
    drain = manifest(queue_job(_cfg(), name="q", namespace="ns", labels={}, parallelism=3))
    assert "completions" not in drain["spec"] and drain["spec"]["parallelism"] == 3


@pytest.mark.parametrize("kwargs", [{"parallelism": -1}, {"parallelism": 0}, {"parallelism": 2, "items": 0}])
def test_queue_job_rejects_bad_counts(kwargs) -> None:
    with pytest.raises(ValueError, match=r"^(parallelism|items):"):
        queue_job(_cfg(), name="q", namespace="ns", labels={}, **kwargs)


def test_deployment_recreate_probes_and_deterministic() -> None:
    cfg = WorkerContainer(
        image="i", args=["incremental"], spec=SpecSource(inline_json="{}"), health_port=8080
    )
    labels = worker_labels(task="t", worker="w0", component="incremental-sync")

    def build(h: str) -> dict:
        return manifest(
            worker_deployment(
                cfg,
                name="d",
                namespace="ns",
                labels=labels,
                selector=selector_labels(task="t", worker="w0"),
                config_hash=h,
            )
        )

    dep = build("abc")
    assert dep == build("abc")
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    tmpl = spec["template"]
    assert tmpl["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == "abc"
    assert tmpl["spec"]["restartPolicy"] == "Always"
    c = tmpl["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080}
    assert "zdtp.io/run" not in tmpl["metadata"]["labels"]


@given(
    values=st.dictionaries(
        st.text(min_size=1, max_size=12), st.text(min_size=12, max_size=40), min_size=1, max_size=5
    )
)
def test_content_hash_changes_with_content_only(values: dict[str, str]) -> None:
    h = content_hash(values)
    # A short hex digest goes on the pod template; the content itself never does.
    assert re.fullmatch(r"[0-9a-f]{16}", h), h
    assert not any(v in h or v[:8] in h for v in values.values())
    assert content_hash(dict(reversed(list(values.items())))) == h  # key order does not matter
    key = next(iter(values))
    assert content_hash({**values, key: values[key] + "x"}) != h  # any content change rolls out
