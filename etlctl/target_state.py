"""The store is a cache of the target's checkpoint, never a second opinion.

SQL loaders commit each checkpoint's state in the transaction of the rows it covers
(``_etlctl_state``, keyed by the connection id); file loaders keep it in their mark file,
written after the data's fsync. The store hears of a checkpoint only through the loader's
``checkpoint_committed`` event, so after a run that did not end well (etlctl SIGKILLed while
its containers finished the load, a timeout, a lost broker) the store may be behind the
target. Before such a connection's next sync, etlctl asks the loader for the state its target
committed (the connector's ``state`` command) and takes it when it is newer, so the next sync
starts where the target is, not where the store last heard.

A `connection reset` stays a reset: a state committed by a run that started before it is
never taken back.
"""

from __future__ import annotations

from typing import Any

from etlctl.models import Connection, RunStatus, SyncState
from etlctl.store import StoreView


def worth_asking(view: StoreView, connection: Connection) -> bool:
    """Whether the store may be behind the target: the connection's last run (a firing
    that never started aside) did not succeed. A succeeded run saved its final checkpoint."""
    if connection.mode.value == "full_refresh":
        return False
    for run in view.list_runs(connection.name):
        if run.status is RunStatus.SKIPPED:
            continue
        return run.status is not RunStatus.SUCCEEDED
    return False


def adopt(view: StoreView, connection: Connection, answer: dict[str, Any]) -> SyncState | None:
    """Save, per stream, the target's committed state in the store when it differs (the
    target is the truth); returns the new state, or None when the store keeps what it has.
    ``answer`` is the loader's ``state`` reply: ``{"status": "ok", "streams": {...}}``."""
    streams = answer.get("streams")
    if answer.get("status") != "ok" or not isinstance(streams, dict):
        return None
    saved = view.get_state(connection.name)
    if saved is None or not saved.belongs_to(connection):
        saved = SyncState(connection=connection.name, connection_id=connection.id)
    updated = saved
    for stream, committed in sorted(streams.items()):
        if not isinstance(committed, dict):
            continue
        state, run_id = committed.get("state"), committed.get("run_id")
        if not isinstance(state, dict) or not isinstance(run_id, str):
            continue
        known = saved.streams.get(stream)
        if known is not None and known.run_id == run_id and known.state == state:
            continue  # in step
        if saved.reset_at is not None and not _started_after(view, connection, run_id,
                                                            saved.reset_at):
            continue  # committed before the reset: the reset wins
        updated = updated.committed(run_id, stream=stream, state=state)
    if updated is saved:
        return None
    view.save_state(updated)
    return updated


def _started_after(view: StoreView, connection: Connection, run_id: str, moment: Any) -> bool:
    run = view.find_run(run_id)
    return run is not None and run.connection == connection.name and run.started_at > moment
