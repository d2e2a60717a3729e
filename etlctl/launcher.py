"""Syncs in their own process, and what can be done to a running sync from outside it.

``start_sync_process`` runs ``etlctl sync`` as a child in a session of its own: the same
command cron runs, so the lock, the run record and the cleanup are exactly those of a sync
started from a shell, and stopping or restarting the process that started it (``etlctl
serve``) neither kills nor forgets it. ``cancel_run`` sends SIGTERM to the process of a
running sync, which cancels it as Ctrl-C does (containers and queues removed, run recorded
as cancelled), whoever started it. ``watch_run`` follows a run until it ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from etlctl.errors import ConflictError, NotFoundError, error_for_exit_code
from etlctl.live import live_run, progress_path
from etlctl.locks import connection_lock
from etlctl.models import Run, new_run_id
from etlctl.paths import ensure_private_dir, logs_dir
from etlctl.store import Store

# How long a start waits for the sync process to record its run (or to fail before that:
# unknown connection, broker down, already syncing), so the caller gets that error.
START_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.1
WATCH_SECONDS = 0.5
# While a run's progress file moves, the store (possibly large) is read this seldom.
WATCH_STORE_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class StartedSync:
    run_id: str
    pid: int
    output_path: Path  # what the sync process printed (its progress lines and outcome)
    run: Run | None  # None when it had not recorded the run within the wait


def sync_command(store: Store, connection: str, run_id: str, trigger: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "etlctl",
        "--store",
        str(store.path),
        "sync",
        connection,
        "--trigger",
        trigger,
        "--run-id",
        run_id,
    ]


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Collect the child's exit so it leaves no zombie while this process lives."""
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()


def _error_from_output(path: Path, code: int) -> Exception:
    """The `error:` and `hint:` lines the child printed, as the error it raised."""
    message, hint = f"the sync process exited with code {code} before it started", None
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("error: "):
            message = line.removeprefix("error: ")
        elif line.startswith("hint: "):
            hint = line.removeprefix("hint: ")
    return error_for_exit_code(code, message, hint)


def start_sync_process(
    store: Store, connection: str, trigger: str = "api", wait: float = START_WAIT_SECONDS
) -> StartedSync:
    """Start ``etlctl sync`` in its own process; return once it recorded its run.

    Raises what the sync raised when it failed before recording a run (exit code kept)."""
    store.read().get("connection", connection)  # a missing connection: the CLI's message
    run_id = new_run_id()
    output_path = ensure_private_dir(logs_dir(store.path) / connection) / f"{run_id}.out"
    fd = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        process = subprocess.Popen(
            sync_command(store, connection, run_id, trigger),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the server's process group: survives its stop
            close_fds=True,
        )
    finally:
        os.close(fd)
    _reap(process)
    deadline = time.monotonic() + wait
    while True:
        run = store.read().find_run(run_id)
        if run is not None:
            return StartedSync(run_id, process.pid, output_path, run)
        code = process.poll()
        if code is not None:
            raise _error_from_output(output_path, code)
        if time.monotonic() > deadline:
            return StartedSync(run_id, process.pid, output_path, None)
        time.sleep(POLL_SECONDS)


def connection_syncing(store: Store, connection: str) -> bool:
    """Whether some process holds the connection's sync lock right now."""
    try:
        with connection_lock(store, connection):
            return False
    except ConflictError:
        return True


def cancel_run(store: Store, run_id: str) -> Run:
    """Ask the process of a running sync to cancel it (SIGTERM, as `kill` would)."""
    run = store.read().get_run(run_id)
    if run.status.finished:
        raise ConflictError(f"run {run_id} is not running (it {run.status.value})")
    if run.host and run.host != socket.gethostname():
        raise ConflictError(
            f"run {run_id} runs on host {run.host}, not here", hint="cancel it on that host"
        )
    if run.pid is None or not connection_syncing(store, run.connection):
        raise ConflictError(
            f"run {run_id} is marked running but no process syncs {run.connection!r}",
            hint="its process was killed; `etlctl gc` marks the run failed",
        )
    try:
        os.kill(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise ConflictError(
            f"the process of run {run_id} (pid {run.pid}) is gone",
            hint="`etlctl gc` marks the run failed",
        ) from None
    return run


def watch_run(
    store: Store, run_id: str, interval: float = WATCH_SECONDS, timeout: float | None = None
) -> Iterator[Run]:
    """The run now, then again each time its counts or status change, until it ends.

    Reads the small progress file often and the store seldom (or when that file goes away:
    the run has ended)."""
    run = store.read().get_run(run_id)
    shown, _ = live_run(run)
    yield shown
    deadline = None if timeout is None else time.monotonic() + timeout
    next_store_read = time.monotonic() + WATCH_STORE_EVERY_SECONDS
    while not run.status.finished:
        if deadline is not None and time.monotonic() > deadline:
            return
        time.sleep(interval)
        progress = progress_path(run)
        if time.monotonic() >= next_store_read or progress is None or not progress.exists():
            found = store.read().find_run(run_id)
            if found is None:
                raise NotFoundError(f"run {run_id!r} does not exist any more")
            run = found
            next_store_read = time.monotonic() + WATCH_STORE_EVERY_SECONDS
        current, _ = live_run(run)
        if current != shown:
            shown = current
            yield shown
