"""A DAG run's params against its sync-task config: they may narrow the config, never widen it.

Whoever can trigger a DAG can set its params, so the params are not trusted with more than the
config grants: ``tables`` must each be in the config's selection (listed in ``tables``, or
matched by ``include`` and not by ``exclude``), ``workers`` is capped at the config's ``workers``.
Every task of the run (``prepare_stream``, ``plan``, and through the plan ``copy`` and
``verify``) reads the narrowed config from :func:`run_config`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zdtp_provider.config import SyncTaskConfig
from zdtp_worker.contract.identifiers import IdentifierError, parse_qualified, render_qualified


class ParamError(ValueError):
    """A run param the config does not allow (the message names the param and the fix)."""


def _canonical(table: str) -> str:
    try:
        return render_qualified(*parse_qualified(table))
    except IdentifierError as exc:
        raise ParamError(f"param tables: {table!r}: {exc}") from None


def narrow_tables(config: SyncTaskConfig, requested: list[str]) -> SyncTaskConfig:
    """``config`` restricted to ``requested`` tables; ParamError for any outside its selection."""
    tables = list(dict.fromkeys(_canonical(t) for t in requested if t))
    if not tables:
        return config
    outside = [t for t in tables if t not in config.select_tables([t])]
    if outside:
        allowed = ", ".join([*config.tables, *(f"include {p}" for p in config.include)]) or "nothing"
        excluded = f"; exclude {', '.join(config.exclude)}" if config.exclude else ""
        raise ParamError(
            f"param tables: {', '.join(outside)} not in sync task {config.name!r}'s selection"
            f" ({allowed}{excluded})."
            " The tables param can only narrow the config; change the sync-task file to add tables."
        )
    return config.model_copy(update={"tables": tables, "include": [], "exclude": []})


def cap_workers(config: SyncTaskConfig, requested: Any) -> int:
    """The run's worker count: the param, at most the config's ``workers`` (and at least 1)."""
    if requested in (None, ""):
        return config.workers
    return max(1, min(int(requested), config.workers))


def run_config(config: SyncTaskConfig, params: Mapping[str, Any]) -> SyncTaskConfig:
    """The config this run works with: tables narrowed and workers capped by the params."""
    narrowed = narrow_tables(config, list(params.get("tables") or []))
    return narrowed.model_copy(update={"workers": cap_workers(config, params.get("workers"))})
