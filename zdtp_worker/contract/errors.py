"""Process exit codes of the worker (sysexits), the contract Kubernetes Jobs and operators read.

A Job's ``podFailurePolicy`` maps them: DATA_ERROR and CONFIG_ERROR fail at once, TEMPFAIL
counts toward retries. Keep this module dependency-free: the provider imports it too.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DATA_ERROR = 65  # EX_DATAERR: schema/data problem; a retry would fail the same way
    TEMPFAIL = 75  # EX_TEMPFAIL: connection lost, lock timeout, serialization failure; retry is safe
    CONFIG_ERROR = 78  # EX_CONFIG: bad spec or credentials file; fix the input first

    @property
    def retryable(self) -> bool:
        return self is ExitCode.TEMPFAIL

    @property
    def fatal(self) -> bool:
        """A retry would fail the same way: fail the task/Job index at once."""
        return int(self) in FATAL_EXIT_CODES


# Exit codes a Job's podFailurePolicy and the operators treat as final (no retry); manifests list
# them as ``sorted(FATAL_EXIT_CODES)``.
FATAL_EXIT_CODES: frozenset[int] = frozenset({int(ExitCode.DATA_ERROR), int(ExitCode.CONFIG_ERROR)})


class WorkerError(Exception):
    """An error the worker reports with a one-line message and a documented exit code."""

    exit_code: ExitCode = ExitCode.DATA_ERROR

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(WorkerError):
    exit_code = ExitCode.CONFIG_ERROR


class DataError(WorkerError):
    exit_code = ExitCode.DATA_ERROR


class TemporaryError(WorkerError):
    exit_code = ExitCode.TEMPFAIL
