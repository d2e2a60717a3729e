"""One exception hierarchy for everything etlctl reports to a user.

Each error carries the exit code the CLI returns and a hint (what to do next). The CLI maps
them to one line on stderr in exactly one place (``etlctl.cli.main``); nothing else prints
errors or calls ``sys.exit``.

Exit codes (stable, listed in the README):

====  =====================================================
0     success
1     a sync ran and failed (or an unexpected internal error)
2     usage or validation error: bad input, nothing was changed
3     not found
4     conflict: exists already, in use, locked, concurrent run
5     the store file is unreadable, corrupt or not etlctl's
6     a service is unavailable: Docker engine, RabbitMQ, crontab
7     the sync timed out
130   cancelled (Ctrl-C, SIGTERM)
====  =====================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EtlctlError(Exception):
    """Base of every error etlctl reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ValidationError(EtlctlError):
    """Input is invalid: a name, a config field, a manifest, a cron expression."""

    exit_code = 2


class NotFoundError(EtlctlError):
    exit_code = 3


class ConflictError(EtlctlError):
    """The object exists already, is in use, or another process holds its lock."""

    exit_code = 4


class StoreError(EtlctlError):
    """The store file cannot be trusted: unreadable, truncated, empty or foreign."""

    exit_code = 5


class ServiceUnavailableError(EtlctlError):
    """A service etlctl needs is not reachable: Docker engine, RabbitMQ, crontab."""

    exit_code = 6


class ImageMissingError(ServiceUnavailableError):
    """A connector image is not present on the Docker engine."""


class ConnectorCheckFailed(EtlctlError):
    """A connector's `check` found its config does not work (file, database, API)."""

    exit_code = 1


class SyncFailedError(EtlctlError):
    """A sync ran and failed; the run record holds the details."""

    exit_code = 1


class SyncTimeoutError(SyncFailedError):
    exit_code = 7


class CancelledError(EtlctlError):
    exit_code = 130


def close_match(name: str, candidates: Iterable[str]) -> str | None:
    """The existing name one typo away from `name` ('usres' -> 'users'), else None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


# The error a child `etlctl` process meant, from its exit code (etlctl.launcher reads a
# sync process's exit this way, so an API caller gets the same error as a shell user).
ERROR_OF_EXIT_CODE: dict[int, type[EtlctlError]] = {
    2: ValidationError,
    3: NotFoundError,
    4: ConflictError,
    5: StoreError,
    6: ServiceUnavailableError,
    7: SyncTimeoutError,
    130: CancelledError,
}


def error_for_exit_code(code: int, message: str, hint: str | None = None) -> EtlctlError:
    return ERROR_OF_EXIT_CODE.get(code, EtlctlError)(message, hint)
