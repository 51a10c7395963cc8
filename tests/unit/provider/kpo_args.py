"""KubernetesPodOperator pod arguments used by the unit and cluster tests, with where each must
show up in the worker pod spec (``spec`` is the pod spec as the API returns it, camelCase)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import V1ObjectMeta, V1Pod

POOL = "zdtp.io/test-pool"


def kpo_arguments(tmp_path: Path, *, priority_class: str, service_account: str) -> dict[str, Any]:
    template = tmp_path / "pod-template.yaml"
    template.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"labels": {"from-template": "yes"}},
                "spec": {
                    "containers": [
                        {
                            "name": "base",
                            "env": [{"name": "FROM_TEMPLATE", "value": "1"}],
                            # A template must not loosen the security context.
                            "securityContext": {"privileged": True, "runAsUser": 0},
                        }
                    ],
                    "securityContext": {"runAsUser": 0},
                    "automountServiceAccountToken": True,
                },
            }
        )
    )
    return {
        "container_resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "300Mi"}},
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [{"key": POOL, "operator": "Exists"}]}}
                ]
            }
        },
        "tolerations": [{"key": POOL, "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"kubernetes.io/os": "linux"},
        "image_pull_secrets": "zdtp-regcred",
        "image_pull_policy": "IfNotPresent",
        "env_vars": {"EXTRA_SETTING": "on"},
        "volumes": [{"name": "extra", "emptyDir": {"sizeLimit": "1Mi"}}],
        "volume_mounts": [{"name": "extra", "mountPath": "/extra"}],
        "priority_class_name": priority_class,
        "service_account_name": service_account,
        "labels": {"team": "data"},
        "annotations": {"team.example.com/owner": "data"},
        "termination_grace_period": 17,
        "pod_template_file": str(template),
        "full_pod_spec": V1Pod(metadata=V1ObjectMeta(labels={"from-full-spec": "yes"})),
    }


def assert_honoured(meta: dict, spec: dict, *, priority_class: str, service_account: str) -> None:
    """Every argument of :func:`kpo_arguments` is visible in the pod (template) ``meta``/``spec``."""
    (worker,) = [c for c in spec["containers"] if c["name"] == "worker"]
    assert worker["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert worker["resources"]["limits"] == {"memory": "300Mi"}
    pref = spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert pref["preference"]["matchExpressions"][0]["key"] == POOL
    assert {"key": POOL, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["imagePullSecrets"] == [{"name": "zdtp-regcred"}]
    assert worker["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["EXTRA_SETTING"] == "on" and env["FROM_TEMPLATE"] == "1"
    assert {"name": "extra", "mountPath": "/extra"}.items() <= next(
        m for m in worker["volumeMounts"] if m["name"] == "extra"
    ).items()
    assert any(v["name"] == "extra" and "emptyDir" in v for v in spec["volumes"])
    assert spec["priorityClassName"] == priority_class
    assert spec["serviceAccountName"] == service_account
    assert spec["terminationGracePeriodSeconds"] == 17
    labels = meta["labels"]
    assert labels["team"] == "data" and labels["from-template"] == "yes" and labels["from-full-spec"] == "yes"
    assert meta["annotations"]["team.example.com/owner"] == "data"
    # zdtp's restricted security context survived the template.
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    sc = worker["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False and sc["runAsUser"] != 0
    assert worker["command"] == ["zdtp-worker"]
