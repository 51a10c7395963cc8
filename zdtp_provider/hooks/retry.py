"""Retrying Kubernetes API calls, and turning API errors into messages people can act on.

Retried: 429 (honouring ``Retry-After``), 5xx, connection errors, and 409 *Conflict* (a stale
resourceVersion or a concurrent writer). Not retried: 409 *AlreadyExists*, which callers handle
as "someone already created it" — retrying it would only delay the same answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import tenacity
from airflow.sdk.exceptions import AirflowException
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
ATTEMPTS = 6
WAIT_MIN = 0.5
WAIT_MAX = 10.0

P = ParamSpec("P")
T = TypeVar("T")


class ZdtpApiError(AirflowException):
    """An API call failed for good; carries the HTTP status and the server's own message."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def server_reason(exc: ApiException) -> tuple[str | None, str]:
    """``(reason, message)`` from a Status body, e.g. ``("AlreadyExists", "jobs.batch ... exists")``."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return body.get("reason") or exc.reason, body.get("message") or str(exc.reason or exc.status)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        if exc.status == 409:
            return server_reason(exc)[0] != "AlreadyExists"
        return exc.status in RETRY_STATUSES
    return isinstance(exc, HTTPError)


class _Wait(tenacity.wait.wait_base):
    def __init__(self) -> None:
        self._exp = tenacity.wait_exponential(multiplier=WAIT_MIN, min=WAIT_MIN, max=WAIT_MAX)

    def __call__(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ApiException) and exc.status == 429:
            retry_after = (exc.headers or {}).get("Retry-After")
            if retry_after and str(retry_after).isdigit():
                return min(float(retry_after), 60.0)
        return self._exp(state)


def to_airflow_error(exc: ApiException, what: str) -> ZdtpApiError:
    reason, message = server_reason(exc)
    return ZdtpApiError(f"{what}: HTTP {exc.status} {reason}: {message}", status=exc.status, reason=reason)


def api_call(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a hook method: retry transient failures, then raise :class:`ZdtpApiError`."""

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            retrying = tenacity.Retrying(
                stop=tenacity.stop_after_attempt(ATTEMPTS),
                wait=_Wait(),
                retry=tenacity.retry_if_exception(is_retryable),
                reraise=True,
                before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
            )
            try:
                return retrying(func, *args, **kwargs)
            except ApiException as exc:
                raise to_airflow_error(exc, what) from None

        return wrapper

    return decorate


def status_of(exc: Any) -> int | None:
    return getattr(exc, "status", None)
