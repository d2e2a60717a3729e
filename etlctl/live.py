"""A running sync's progress as other processes see it: a small file beside its log.

The store holds a run's counts when it ends (and at each committed checkpoint); writing the
whole store every second would cost a large store far too much. So the process that runs the
sync (started by a user, cron or the web server alike) rewrites ``<run>.progress.json``
at most a few times a second, and readers (``etlctl serve``'s run page, ``etlctl logs
--follow``) overlay it on the stored run while the run is running. The file is removed when
the run ends.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from etlctl.models import Run, utcnow
from etlctl.progress import SyncProgress

WRITE_EVERY_SECONDS = 0.5
LIVE_FIELDS = ("records_extracted", "records_loaded", "records_skipped", "bytes")


def progress_path(run: Run) -> Path | None:
    if not run.log_path:
        return None
    return Path(run.log_path).with_suffix(".progress.json")


class ProgressFile:
    """Writes a run's counts, throttled; each write replaces the file whole."""

    def __init__(self, run: Run, every: float = WRITE_EVERY_SECONDS) -> None:
        self.run = run
        self.path = progress_path(run)
        self.every = every
        self.next_write = 0.0

    def update(self, progress: SyncProgress, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or (now < self.next_write and not force):
            return
        self.next_write = now + self.every
        document: dict[str, Any] = {field: getattr(self.run, field) for field in LIVE_FIELDS}
        document.update(
            run_id=self.run.id,
            figures=progress.figures(now).to_doc(),
            updated_at=utcnow().isoformat(),
        )
        with contextlib.suppress(OSError):  # progress is a nicety: never fail a sync for it
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".progress.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(orjson.dumps(document))
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def read_progress(run: Run) -> dict[str, Any] | None:
    """The last progress the sync process wrote, or None (not started, ended, unreadable)."""
    path = progress_path(run)
    if path is None:
        return None
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return document if isinstance(document, dict) and document.get("run_id") == run.id else None


def live_run(run: Run) -> tuple[Run, dict[str, Any] | None]:
    """A running run with its latest counts from the progress file; others as they are."""
    if run.status.finished:
        return run, None
    document = read_progress(run)
    if document is None:
        return run, None
    counts = {
        field: int(document[field]) for field in LIVE_FIELDS if isinstance(document.get(field), int)
    }
    return run.model_copy(update=counts), document
