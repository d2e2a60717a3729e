"""What every front (the CLI's --json, the REST API, the web pages) shows of the stored
objects: secrets masked, runs with their derived figures, connections with their state and
last run. Fronts render these documents; none builds its own, so none can leak a secret
another one masks.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from etlctl import catalog
from etlctl.models import Connection, ConnectorObject, Run
from etlctl.store import StoreView

LAST_RUN_FIELDS = ("id", "status", "started_at", "ended_at")


def masked_object(item: ConnectorObject) -> dict[str, Any]:
    """A source or loader as output shows it: secrets masked, whatever the output format."""
    info = catalog.find_connector(item.role, item.type)
    doc = item.to_doc()
    doc["config"] = catalog.mask_config(item.config, info.spec if info else None)
    doc["image"] = item.image or (info.image if info else None)
    return doc


def run_summary(run: Run) -> dict[str, Any]:
    doc = run.to_doc()
    doc["duration_seconds"] = run.duration_seconds
    doc["rows_per_second"] = run.rows_per_second
    return doc


def progress_line(run: Run) -> str:
    """One line of a running run's counts (logs --follow, the API's log follow)."""
    line = f"{run.status.value}: extracted={run.records_extracted} loaded={run.records_loaded}"
    return line + (f" skipped={run.records_skipped}" if run.records_skipped else "")


def connection_view(
    view: StoreView, connection: Connection, last: Run | bool | None = True
) -> dict[str, Any]:
    """A connection with what users ask next: its saved state and its last run.

    ``last`` may be given (a listing reads every connection's last run in one pass)."""
    doc = connection.to_doc()
    state = view.get_state(connection.name)
    doc["state"] = state.to_doc() if state else None
    if last is True:
        last = view.last_runs().get(connection.name)
    doc["last_run"] = (
        {key: last.to_doc()[key] for key in LAST_RUN_FIELDS} if isinstance(last, Run) else None
    )
    return doc


def log_tail(path: str | None, lines: int) -> list[str]:
    """The last ``lines`` lines of a run's log; read as a stream, never whole."""
    if not path or not Path(path).exists():
        return []
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
