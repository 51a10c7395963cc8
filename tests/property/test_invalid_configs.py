"""Generated invalid input: sync-task files and WorkerSpecs are rejected with one line naming the
file (for files), the field and the offending value — and nothing reaches the Kubernetes API.

Each test runs ``CASES`` generated cases (hypothesis, seeded by the ``seed`` fixture:
``ZDTP_TEST_SEED`` replays a run, the seed is printed). One case takes a valid sync task / spec and
breaks exactly one field in one way, so the error must name that field and that value.

* Sync-task files go through ``load_config`` (what the DAG factory and ``zdtp`` use) and the
  ``zdtp validate`` CLI in-process.
* WorkerSpecs go through the public operators' ``execute`` against the dev cluster, in a fresh
  namespace. Every request the Kubernetes client sends is recorded (a pass-through spy on its
  REST layer): no create/patch/delete may be among them, and afterwards the namespace holds no
  object the operators could have made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from zdtp_provider.cli import main as zdtp_cli
from zdtp_provider.config import load_config

CASES = 1000
SETTINGS = settings(max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

VALID_TASK: dict[str, Any] = {
    "name": "shop",
    "source_conn_id": "src",
    "target_conn_id": "tgt",
    "tables": ["public.orders"],
    "namespace": "zdtp",
}


@dataclass(frozen=True)
class Break:
    """One way to break one field: where (dotted path), the bad value, and how it shows."""

    path: tuple[str | int, ...]
    value: Any
    field: str  # the field path the error must name
    shown: Any = None  # what must appear (repr) in the message; default: the value itself

    def apply(self, base: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(json.dumps(base))
        node = data
        for key in self.path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[self.path[-1]] = self.value
        return data

    @property
    def kind(self) -> str:
        return "unknown key" if "unknown_" in self.field else self.field

    @property
    def needle(self) -> str:
        return repr(self.value if self.shown is None else self.shown)


def _not_matching(pattern: str, *, max_size: int = 70) -> st.SearchStrategy[str]:
    import re

    regex = re.compile(pattern)
    return st.text(min_size=1, max_size=max_size).filter(lambda s: not regex.fullmatch(s) and "\n" not in s)


_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_dns_bad = _not_matching(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_long_label = st.text(alphabet="abcdefghij", min_size=64, max_size=90)
_conn_bad = st.one_of(
    st.just(""), _not_matching(r"[A-Za-z0-9_.\-]{1,250}"), st.text(alphabet="ab", min_size=251, max_size=260)
)


def _choice_bad(allowed: set[str]) -> st.SearchStrategy[str]:
    return st.text(min_size=1, max_size=20).filter(lambda s: s not in allowed and "\n" not in s)


def _top(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Break]:
    return values.map(lambda v: Break((field,), v, field))


_task_breaks = st.one_of(
    _top("name", st.one_of(_dns_bad, st.text(alphabet="abc", min_size=41, max_size=60))),
    _top("namespace", st.one_of(_dns_bad, _long_label)),
    _top("workers", st.one_of(st.integers(max_value=0), st.integers(min_value=1001))),
    _top("chunk_rows", st.integers(max_value=0)),
    _top("lease_seconds", st.floats(max_value=0, allow_nan=False, allow_infinity=False)),
    _top("allow_lossy_type_changes", st.sampled_from(["maybe", "sometimes", 2])),
    _top("mode", _choice_bad({"full", "incremental", "full+incremental"})),
    _top("fanout", _choice_bad({"tasks", "indexed-job"})),
    _top("verify", _choice_bad({"none", "count", "checksum"})),
    _top("copy_mode", _choice_bad({"resume", "restart", "swap"})),
    _top("sslmode", _choice_bad({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})),
    _top("source_conn_id", _conn_bad),
    _top("kubernetes_conn_id", _conn_bad),
    _top("image", st.text(min_size=1, max_size=10).map(lambda s: f"zdtp/{s} worker")),
    _top("tls_secret", _not_matching(_SUBDOMAIN)),
    st.sampled_from(["a.b.c", "", '"unclosed', "public.", ".orders", 'x."y']).map(
        lambda t: Break(("tables",), ["public.orders", t], "tables", shown=t)
    ),
    st.sampled_from(["a.b.c", "", '"unclosed', "x.", '"a"b.c']).map(
        lambda t: Break(("include",), [t], "include", shown=t)
    ),
    st.text(alphabet="xyz!?#", min_size=1, max_size=8).map(
        lambda q: Break(("resources", "requests"), {"cpu": q}, "resources.requests", shown=q)
    ),
    st.sampled_from(["gpu", "nvidia.com/gpu", "CPU"]).map(
        lambda k: Break(("resources", "limits"), {k: "1"}, "resources.limits", shown=k)
    ),
    _choice_bad({"Exists", "Equal"}).map(
        lambda op: Break(
            ("pod", "tolerations"), [{"key": "k", "operator": op}], "pod.tolerations.0.operator", op
        )
    ),
    st.text(alphabet="qwxz_", min_size=3, max_size=12).map(
        lambda k: Break((f"unknown_{k}",), "x", f"unknown_{k}", shown="x")
    ),
    st.text(alphabet="qwxz_", min_size=3, max_size=12).map(
        lambda k: Break(("pod", f"unknown_{k}"), 1, f"pod.unknown_{k}", shown=1)
    ),
    st.sampled_from(["every day", "* * *", "61 * * * *", "* 25 * * *", "bogus"]).map(
        lambda c: Break(("schedule",), c, "schedule")
    ),
)


@pytest.fixture
def replay(seed: int) -> Iterator[Callable[[Callable[..., None]], Callable[..., None]]]:
    """Apply the test's seed to a hypothesis test (so ``ZDTP_TEST_SEED`` replays every case)."""
    yield lambda test: hypothesis_seed(seed)(test)


def _one_line(message: str) -> None:
    assert message and "\n" not in message.strip(), f"not one line: {message!r}"


def test_generated_invalid_sync_task_files_are_rejected_with_file_field_value(
    tmp_path: Path, replay, capsys: pytest.CaptureFixture[str]
) -> None:
    cases: list[str] = []

    @replay
    @SETTINGS
    @given(brk=_task_breaks)
    def check(brk: Break) -> None:
        path = tmp_path / f"case-{len(cases)}.yaml"
        cases.append(brk.kind)
        path.write_text(yaml.safe_dump(brk.apply(VALID_TASK), sort_keys=False))
        with pytest.raises(ValueError) as info:
            load_config(path)
        message = str(info.value)
        _one_line(message)
        assert message.startswith(f"{path}: "), message
        assert brk.field in message, (brk, message)
        assert brk.needle in message, (brk, message)
        # The CLI prints the same one line and fails.
        capsys.readouterr()
        assert zdtp_cli(["validate", str(path)]) == 1
        err = capsys.readouterr().err
        assert err == f"invalid: {message}\n", err

    started = time.monotonic()
    check()
    took = time.monotonic() - started
    fields = sorted(set(cases))
    print(f"{len(cases)} invalid sync-task files in {took:.1f}s; broken: {', '.join(fields)}")
    assert len(cases) >= CASES


def test_broken_yaml_and_non_mapping_files_name_the_file(tmp_path: Path, replay) -> None:
    count = [0]

    @replay
    @settings(max_examples=200, deadline=None, database=None)
    @given(
        text=st.one_of(
            st.sampled_from(["name: [unclosed", "a: b: c", "- x\ny: 1", "name: 'open", "\t- bad"]),
            st.lists(st.integers(), max_size=3).map(yaml.safe_dump),
            st.text(alphabet="abc ", min_size=1, max_size=10),
        )
    )
    def check(text: str) -> None:
        path = tmp_path / f"broken-{count[0]}.yaml"
        count[0] += 1
        path.write_text(text)
        with pytest.raises(ValueError) as info:
            load_config(path)
        _one_line(str(info.value))
        assert str(info.value).startswith(f"{path}:"), str(info.value)

    check()
    assert count[0] >= 50


# --------------------------------------------------------------------------- WorkerSpecs

VALID_SPEC: dict[str, Any] = {
    "mode": "full",
    "task": "orders",
    "run_id": "r1",
    "tables": [{"source": "public.orders"}],
}
_ident_bad = st.one_of(
    st.sampled_from(["1abc", "a b", 'x"y', "a-b", "$x"]),
    st.text(alphabet="abc", min_size=64, max_size=80),
)


def _spec(
    field: str, path: tuple[str | int, ...], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[Break]:
    return values.map(lambda v: Break(path, v, field))


_spec_breaks = st.one_of(
    _spec("task", ("task",), _not_matching(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")),
    _spec("run_id", ("run_id",), st.text(alphabet="r", min_size=201, max_size=220)),
    _spec("version", ("version",), st.integers().filter(lambda v: v != 1)),
    _spec("tables.0.source", ("tables", 0, "source"), _ident_bad.map(lambda n: f"public.{n}")),
    _spec("full.chunk_rows", ("full", "chunk_rows"), st.integers(max_value=0)),
    _spec("full.streams", ("full", "streams"), st.integers(max_value=0) | st.integers(min_value=17)),
    _spec("full.lease_seconds", ("full", "lease_seconds"), st.floats(max_value=0, allow_nan=False)),
    _spec("full.copy_mode", ("full", "copy_mode"), _choice_bad({"resume", "restart", "swap"})),
    _spec("full.verify", ("full", "verify"), _choice_bad({"none", "count", "checksum"})),
    _spec("full.queue_mode", ("full", "queue_mode"), _choice_bad({"one", "drain"})),
    st.text(alphabet="qwxz_", min_size=3, max_size=12).map(
        lambda k: Break((f"unknown_{k}",), "x", f"unknown_{k}", shown="x")
    ),
    st.text(alphabet="qwxz_", min_size=3, max_size=12).map(
        lambda k: Break(("full", f"unknown_{k}"), 7, f"full.unknown_{k}", shown=7)
    ),
)
_incremental_breaks = st.one_of(
    _spec(
        "incremental.health_port",
        ("incremental", "health_port"),
        st.one_of(st.integers(max_value=0), st.integers(min_value=65536)),
    ),
    _spec("incremental.batch_max_changes", ("incremental", "batch_max_changes"), st.integers(max_value=0)),
    _spec("tables.0.source", ("tables", 0, "source"), _ident_bad.map(lambda n: f"public.{n}")),
    _spec("task", ("task",), _not_matching(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")),
)

OPERATORS = [
    "FullSyncOperator",
    "FullSyncJobOperator",
    "QueueFullSyncJobOperator",
    "IndexedFullSyncJobOperator",
]


class ApiSpy:
    """Records every request the (sync) Kubernetes client sends, then passes it on unchanged."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from kubernetes.client import rest

        real = rest.RESTClientObject.request
        spy = self

        def request(self, method, url, *args, **kwargs):
            spy.requests.append((method, url))
            return real(self, method, url, *args, **kwargs)

        monkeypatch.setattr(rest.RESTClientObject, "request", request)

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(m, u) for m, u in self.requests if m not in ("GET", "HEAD", "OPTIONS")]


def _operator(kind: str, spec: dict[str, Any], namespace: str):
    from zdtp_provider.operators.full import FullSyncOperator
    from zdtp_provider.operators.incremental import IncrementalSyncOperator
    from zdtp_provider.operators.job import (
        FullSyncJobOperator,
        IndexedFullSyncJobOperator,
        QueueFullSyncJobOperator,
    )

    common = {
        "task_id": "t",
        "namespace": namespace,
        "image": "zdtp/worker:test",
        "source_conn_id": "zt_src",
        "target_conn_id": "zt_tgt",
    }
    if kind == "FullSyncOperator":
        return FullSyncOperator(spec=spec, get_logs=False, **common), "spec"
    if kind == "FullSyncJobOperator":
        return FullSyncJobOperator(spec=spec, deferrable=False, **common), "spec"
    if kind == "QueueFullSyncJobOperator":
        # Its ``spec`` may be a whole plan (a list), so errors name the spec by its position.
        return QueueFullSyncJobOperator(spec=spec, work_queue="q", deferrable=False, **common), "specs[0]"
    if kind == "IndexedFullSyncJobOperator":
        return IndexedFullSyncJobOperator(specs=[VALID_SPEC, spec], deferrable=False, **common), "specs[1]"
    return IncrementalSyncOperator(spec=spec, deferrable=False, **common), "spec"


def _leftovers(cluster, namespace: str) -> list[str]:
    core, apps, batch = cluster.core, cluster.apps, cluster.batch
    found = [f"Pod/{o.metadata.name}" for o in core.list_namespaced_pod(namespace).items]
    found += [f"Secret/{o.metadata.name}" for o in core.list_namespaced_secret(namespace).items]
    found += [
        f"ConfigMap/{o.metadata.name}"
        for o in core.list_namespaced_config_map(namespace).items
        if o.metadata.name != "kube-root-ca.crt"
    ]
    found += [f"Job/{o.metadata.name}" for o in batch.list_namespaced_job(namespace).items]
    found += [f"Deployment/{o.metadata.name}" for o in apps.list_namespaced_deployment(namespace).items]
    found += [f"Event/{o.metadata.name}" for o in core.list_namespaced_event(namespace).items]
    return found


@pytest.mark.cluster
@pytest.mark.airflow
def test_generated_invalid_worker_specs_fail_the_operators_before_any_api_write(
    cluster, namespace: str, airflow_k8s, monkeypatch: pytest.MonkeyPatch, replay
) -> None:
    from airflow.sdk.exceptions import AirflowException

    from tests.integration.provider._context import context

    conn = {"conn_type": "postgres", "host": "db.example", "login": "u", "password": "pw-never-used"}
    for conn_id in ("zt_src", "zt_tgt"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({**conn, "schema": conn_id}))
    spy = ApiSpy()
    spy.install(monkeypatch)
    cluster.core.list_namespaced_pod(namespace)
    assert spy.requests, "the spy must see the client's requests"
    cases: list[str] = []

    @replay
    @SETTINGS
    @given(
        case=st.one_of(
            st.tuples(st.sampled_from(OPERATORS), _spec_breaks),
            st.tuples(st.just("IncrementalSyncOperator"), _incremental_breaks),
        )
    )
    def check(case: tuple[str, Break]) -> None:
        kind, brk = case
        base = VALID_SPEC if kind != "IncrementalSyncOperator" else {**VALID_SPEC, "mode": "incremental"}
        cases.append(f"{kind}:{brk.kind}")
        op, field = _operator(kind, brk.apply(base), namespace)
        with pytest.raises(AirflowException) as info:
            op.execute(context(task_id="t"))
        message = str(info.value)
        _one_line(message)
        assert f"{field}.{brk.field}" in message, (kind, brk, message)
        assert brk.needle in message, (kind, brk, message)
        assert not spy.writes, (kind, brk, spy.writes)

    started = time.monotonic()
    check()
    took = time.monotonic() - started
    operators = sorted({c.split(":")[0] for c in cases})
    print(f"{len(cases)} invalid WorkerSpecs in {took:.1f}s through {', '.join(operators)}")
    assert len(cases) >= CASES
    assert spy.writes == []
    assert _leftovers(cluster, namespace) == []
