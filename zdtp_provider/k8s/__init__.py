"""Pure builders of the Kubernetes objects zdtp creates: no API calls, no Airflow imports.

Everything an operator sends to the API server is produced here from plain arguments, so the
manifests are unit-tested without a cluster and the operators stay thin (apply, wait, read,
clean up). Builders return ``kubernetes.client`` models; :func:`manifest` turns one into the
camelCase dict the API (and server-side apply) expects.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient

_SERIALIZER = ApiClient.__new__(ApiClient)  # sanitize_for_serialization needs no configuration


def manifest(obj: Any) -> Any:
    """Return the API (camelCase, None-free) form of a client model, list or dict."""
    return ApiClient.sanitize_for_serialization(_SERIALIZER, obj)
