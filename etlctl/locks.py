"""The per-connection lock: whoever holds it is the only sync of that connection.

A sync holds it for its whole life; `connection remove`, `connection reset` and
`apply --prune` take it too, so they are refused (exit 4) while the connection syncs instead
of letting the sync save its cursor afterwards under a name that now means something else.
The lock is an OS file lock: a SIGKILLed holder releases it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import filelock

from etlctl.errors import ConflictError
from etlctl.models import RunStatus, validate_name
from etlctl.paths import ensure_private_dir, locks_dir
from etlctl.store import Store


@contextlib.contextmanager
def connection_lock(store: Store, connection: str, refusing: str | None = None) -> Iterator[None]:
    """Hold the connection's lock; fails at once (ConflictError) if a sync holds it.

    ``refusing`` names what is refused (``"remove"``) for the message; None means a sync.
    """
    validate_name(connection, "connection name")  # it becomes a file name
    lock = filelock.FileLock(
        str(ensure_private_dir(locks_dir(store.path)) / f"{connection}.lock"), timeout=0
    )
    try:
        lock.acquire()
    except filelock.Timeout:
        raise _syncing_error(store, connection, refusing) from None
    try:
        yield
    finally:
        lock.release()


def _syncing_error(store: Store, connection: str, refusing: str | None) -> ConflictError:
    running = store.read().list_runs(connection, RunStatus.RUNNING)
    detail = (
        f" (run {running[0].id}, started {running[0].started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"pid {running[0].pid})"
        if running
        else ""
    )
    if refusing is None:
        return ConflictError(
            f"connection {connection!r} is already syncing{detail}",
            hint="wait for it to finish, or see: etlctl runs list " + connection,
        )
    return ConflictError(
        f"cannot {refusing} connection {connection!r} while it is syncing{detail}",
        hint=f"wait for the sync to end (or stop it), then run the {refusing} again",
    )
