"""run_sync(): the whole life of one sync.

    validate -> lock the connection -> remove leftovers of a killed run -> record the run
    -> declare queues -> start loader and extractor -> follow events, save committed
    checkpoints -> collect exit codes and logs -> remove containers and queues -> record
    the outcome

Cleanup runs whatever happens: success, failure, timeout, Ctrl-C or SIGTERM. A SIGKILLed
etlctl cannot clean up; the next sync of the connection (or `etlctl gc`) does it, and marks
the orphaned run as failed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from connectors.registry import ConnectorInfo
from etlctl import catalog, target_state
from etlctl.broker import Broker, ConnectionQueues, redact_url, resolve_amqp_url
from etlctl.errors import (
    CancelledError,
    ConflictError,
    EtlctlError,
    SyncFailedError,
    SyncTimeoutError,
    ValidationError,
)
from etlctl.leftovers import (
    CHECK_LABEL,
    CONNECTION_LABEL,
    MANAGED_LABEL,
    PID_LABEL,
    ROLE_LABEL,
    RUN_LABEL,
    STORE_LABEL,
    log_section,
    new_check_files_dir,
    new_run_files_dir,
    remove_leftovers,
    sweep_run_files,
    write_run_log,
)
from etlctl.live import ProgressFile
from etlctl.locks import connection_lock
from etlctl.models import (
    UNNAMED_STREAM,
    Connection,
    ConnectorObject,
    Run,
    RunStatus,
    SyncState,
    utcnow,
    validate_run_id,
)
from etlctl.paths import ensure_private_dir, logs_dir
from etlctl.progress import Estimate, SyncProgress
from etlctl.runtime import ConnectorLaunch, Mount, Runtime, get_runtime
from etlctl.store import Store

# Run files are written in version 2 of docs/connector-protocol.md, a superset of version 1:
# a version-1 connector finds in `state` and `sync` what it knows.
PROTOCOL_VERSION = 2
# The start of a timed-out run's error: raise_for_run() turns such a run into exit code 7.
TIMED_OUT = "the sync did not finish within"
DEFAULT_TIMEOUT_SECONDS = 6 * 3600
# Asking a loader for the state its target committed (only after a run that did not succeed).
STATE_QUERY_SECONDS = 120
EVENT_WAIT_SECONDS = 0.02
CONTAINER_POLL_SECONDS = 0.1
# Once a connector said it is done, its exit is a few milliseconds away: look often.
EXIT_POLL_SECONDS = 0.02
# After the loader ends, how long the extractor may take to finish on its own.
PEER_GRACE_SECONDS = 30.0
# The signals that cancel a sync like Ctrl-C (SIGINT, KeyboardInterrupt): every catchable
# signal whose default action ends the process. A closed terminal or a dropped ssh session
# (SIGHUP) must clean up as surely as `kill` (SIGTERM), and so must Ctrl-\ (SIGQUIT), a stray
# `kill -USR1` or a CPU limit (SIGXCPU). SIGPIPE is ignored by Python (a write raises).
CANCELLING_SIGNALS = (
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGXCPU,
    signal.SIGXFSZ,
)


@dataclass
class SyncOptions:
    runtime: str = "docker"
    amqp_url: str | None = None
    network: str = "host"
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    trigger: str = "manual"
    batch_records: int = 2000
    batch_bytes: int = 1024 * 1024
    commit_every: int = 16
    # Given by `etlctl serve`, which answers with the id before the sync process records it.
    run_id: str | None = None


ProgressCallback = Callable[[SyncProgress], None]


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, turned into an exception so that cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signal_name = signal.Signals(signum).name


# --- preparing a run ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Side:
    """One connector of the sync: the stored object, its type info and resolved config."""

    obj: ConnectorObject
    info: ConnectorInfo | None
    config: dict[str, Any]

    @property
    def role(self) -> str:
        return self.obj.role

    @property
    def image(self) -> str:
        if self.obj.image:
            return self.obj.image
        assert self.info is not None
        return self.info.image


def _side(obj: ConnectorObject) -> _Side:
    info = catalog.find_connector(obj.role, obj.type)
    config = catalog.resolve_secret_refs(obj.config)
    # Known from now on to the redaction of this process' messages and run logs.
    catalog.remember_secrets(config, info.spec if info else None)
    return _Side(obj=obj, info=info, config=config)


def mounts_for(side: _Side) -> list[Mount]:
    """Directories of the config's path fields, mounted at the same path (same config works
    in the local and the docker runtime)."""
    if side.info is None:
        return []
    mounts: dict[str, bool] = {}
    for name, prop in side.info.spec.get("properties", {}).items():
        access = prop.get("x-path") if isinstance(prop, dict) else None
        value = side.config.get(name)
        if not access or not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise ValidationError(
                f"{side.obj.kind} {side.obj.name!r}: config field {name!r} must be an absolute "
                f"path, got {value!r}",
                hint=f"etlctl {side.obj.kind} update {side.obj.name} --config {name}=/abs/path",
            )
        # A glob mounts the directory before its first wildcard.
        static = (
            Path(value.split("*")[0].split("?")[0].split("[")[0]) if glob.has_magic(value) else path
        )
        directory = static if (glob.has_magic(value) and value.endswith("/")) else static.parent
        if access == "write":
            directory.mkdir(parents=True, exist_ok=True)
        elif not directory.is_dir():
            raise ValidationError(
                f"{side.obj.kind} {side.obj.name!r}: directory {directory} of config field "
                f"{name!r} does not exist"
            )
        read_only = access == "read"
        # Not resolved: the config names this path, so the container must see it here too
        # (Docker follows a symlinked source on the host side).
        key = os.path.normpath(directory)
        mounts[key] = mounts.get(key, True) and read_only
    return [Mount(host_path=path, read_only=ro) for path, ro in sorted(mounts.items())]


def resumable_state(connection: Connection, saved: SyncState | None) -> SyncState | None:
    """What a sync starts from: the saved state of the streams it reads incrementally
    (a full refresh starts from scratch every time)."""
    if saved is None or not saved.belongs_to(connection):
        return None  # none yet, or left by a removed connection of the same name
    streams = {name: entry for name, entry in saved.streams.items() if connection.incremental(name)}
    if not streams and (saved.global_state is None or connection.mode.value == "full_refresh"):
        return None
    return saved.model_copy(update={"streams": streams})


def _sync_settings(connection: Connection) -> dict[str, Any]:
    """The run file's `sync`: the connection's settings or, when it selects one stream, that
    stream's (what a version-1 connector reads)."""
    only = connection.only_stream
    mode, cursor, key = connection.settings_of(only.name) if only else (
        connection.mode, connection.cursor_field, connection.primary_key
    )
    return {
        "mode": mode.value,
        "cursor_field": cursor,
        "primary_key": key,
        "on_error": connection.on_error.value,
        "transform": connection.transform,
        "allow_empty": connection.allow_empty,
    }


def _run_document(
    side: _Side,
    connection: Connection,
    run: Run,
    state: SyncState | None,
    amqp_url: str,
    queues: ConnectionQueues,
    options: SyncOptions,
) -> dict[str, Any]:
    extractor = side.role == "extractor"
    return {
        "protocol": PROTOCOL_VERSION,
        "role": side.role,
        "connector_type": side.obj.type,
        "config": side.config,
        # Version 1: the state of the connection's only stream.
        "state": state.state if extractor and state else None,
        "stream_states": state.stream_states() if extractor and state else {},
        "global_state": state.global_state if extractor and state else None,
        "streams": [stream.to_run_file() for stream in connection.streams],
        "sync": _sync_settings(connection),
        "run": {"id": run.id, "connection": connection.name, "connection_id": connection.id},
        "broker": {"url": amqp_url, "data_queue": queues.data, "events_queue": queues.events},
        "batch": {
            "max_records": options.batch_records,
            "max_bytes": options.batch_bytes,
            "commit_every": options.commit_every,
        },
        "rejects_path": run.rejects_path,
    }


def _write_private_json(path: Path, document: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(document))


# --- the sync -----------------------------------------------------------------------------
class _SyncSession:
    """The mutable state of one running sync; run_sync() drives it."""

    def __init__(
        self,
        store: Store,
        connection: Connection,
        run: Run,
        runtime: Runtime,
        broker: Broker,
        queues: ConnectionQueues,
        options: SyncOptions,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.store = store
        self.connection = connection
        self.run = run
        self.runtime = runtime
        self.broker = broker
        self.queues = queues
        self.options = options
        self.on_progress = on_progress
        self.progress = SyncProgress(run=run)
        self.handles: dict[str, Any] = {}
        self.exit_codes: dict[str, int | None] = {}
        self.errors: list[str] = []
        self.skipped: dict[str, int] = {}
        # When the extractor must have ended by, once the loader has (see _containers_settled).
        self.peer_deadline: float | None = None

    # events from the connectors
    def handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        role = event.get("role", "?")
        if event.get("run_id") not in (None, self.run.id):
            return  # a stale event of an earlier run
        if kind == "progress":
            if role == "extractor":
                self.run.records_extracted = int(event.get("records", 0))
                self.run.bytes = int(event.get("bytes", 0))
                self.progress.estimate = (
                    Estimate.from_event(event.get("estimate")) or self.progress.estimate
                )
            elif role == "loader":
                self.run.records_loaded = max(self.run.records_loaded, int(event.get("records", 0)))
            self.progress.counts_changed()
        elif kind == "checkpoint_committed":
            self._save_checkpoint(event)
        elif kind == "rejected":
            # `count` is that connector's running total; the records are in the rejects file.
            self._count_skipped(role, int(event.get("count", 0)))
        elif kind == "error":
            self.errors.append(_describe_error_event(event))
        elif kind == "done":
            if role == "extractor":
                self.run.records_extracted = int(event.get("records", self.run.records_extracted))
                self.run.bytes = int(event.get("bytes", self.run.bytes))
                self.progress.extractor_done = True
            else:
                self.run.records_loaded = int(event.get("records", self.run.records_loaded))
                self.progress.loader_done = True
            self._count_skipped(role, int(event.get("skipped", 0)))
            self._note_timing(role, event)
            self.progress.counts_changed(force=True)
        if self.on_progress:
            self.on_progress(self.progress)

    def _note_timing(self, role: str, event: dict[str, Any]) -> None:
        """Where a connector's time went, from its done event (optional fields)."""
        for name in ("busy_seconds", "wait_seconds"):
            value = event.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                self.progress.timing[f"{role}_{name}"] = float(value)
        queue_full = event.get("queue_full")
        if role == "extractor" and isinstance(queue_full, int) and queue_full >= 0:
            self.progress.timing["queue_full"] = queue_full

    def _count_skipped(self, role: str, running_total: int) -> None:
        """Each connector counts its own rejects; the run shows their sum."""
        self.skipped[role] = max(self.skipped.get(role, 0), running_total)
        self.run.records_skipped = sum(self.skipped.values())

    def _save_checkpoint(self, event: dict[str, Any]) -> None:
        state, shared = event.get("state"), event.get("global")
        self.run.records_loaded = max(self.run.records_loaded, int(event.get("records_loaded", 0)))
        # A loader of protocol 1 names no stream: the state is the connection's only stream's.
        stream = str(event.get("stream") or UNNAMED_STREAM)
        if not isinstance(state, dict) or not self.connection.incremental(stream):
            state = None  # a full refresh starts from scratch every time: nothing to resume
        if not isinstance(shared, dict) or self.connection.mode.value == "full_refresh":
            shared = None
        if state is None and shared is None:
            return
        with self.store.transaction() as view:
            current = view.find("connection", self.connection.name)
            if current is None or current.id != self.connection.id:
                # Removed (or removed and made anew) behind the lock's back: this state
                # belongs to a connection that no longer exists, never to its namesake.
                return
            saved = view.get_state(self.connection.name)
            if saved is None or not saved.belongs_to(self.connection):
                saved = SyncState(
                    connection=self.connection.name, connection_id=self.connection.id
                )
            updated = saved.committed(
                self.run.id,
                stream=stream,
                state=state,
                global_state=shared if isinstance(shared, dict) else None,
            )
            view.save_state(updated)
            self.run.state_after = updated.snapshot()
            view.save_run(self.run)

    # containers
    def poll_exits(self) -> None:
        for role, handle in self.handles.items():
            if self.exit_codes.get(role) is None:
                self.exit_codes[role] = self.runtime.exit_code(handle)

    def finished(self) -> bool:
        return all(code is not None for code in self.exit_codes.values())

    def failed_role(self) -> str | None:
        for role in ("loader", "extractor"):
            code = self.exit_codes.get(role)
            if code not in (None, 0):
                return role
        return None


def _describe_error_event(event: dict[str, Any]) -> str:
    position = event.get("position")
    where = ""
    if isinstance(position, dict):
        # Rows and lines count from 1: "row 0" only means nothing was read yet (a failed login).
        shown = {key: value for key, value in position.items() if value not in (0, None)}
        if shown:
            where = " (" + ", ".join(f"{key} {value}" for key, value in shown.items()) + ")"
    return f"{event.get('role', 'connector')}: {event.get('message', 'failed')}{where}"


def _install_signal_handlers() -> Callable[[], None]:
    """SIGTERM and SIGHUP cancel like Ctrl-C; returns a function that restores the old
    handlers."""
    if not _in_main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in CANCELLING_SIGNALS}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run_sync(
    store: Store,
    connection_name: str,
    options: SyncOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> Run:
    """Run one sync of a connection; returns the finished run (status in run.status).

    Raises before a run is recorded for problems found up front (invalid connection,
    missing image, broker or Docker down, the connection already syncing).
    """
    options = options or SyncOptions()
    if not options.timeout > 0:  # also refuses NaN
        raise ValidationError(
            f"the timeout must be a positive number of seconds, got {options.timeout:g}",
            hint="for example: --timeout 3600 (or leave it out: 6 h, or the timeout setting)",
        )
    view = store.read()
    connection: Connection = view.get("connection", connection_name)
    source = _side(view.get("source", connection.source))
    loader = _side(view.get("loader", connection.loader))
    runtime = get_runtime(options.runtime)
    runtime.preflight()
    for side in (source, loader):
        runtime.ensure_image(side.image)  # the local runtime needs none
    mounts = {"extractor": mounts_for(source), "loader": mounts_for(loader)}
    amqp_url = resolve_amqp_url(options.amqp_url, view.settings())
    catalog.remember_secrets({"url": amqp_url}, None)

    # The lock first: a firing while the previous run still runs is "skipped", whatever
    # the broker's state.
    with connection_lock(store, connection.name), Broker.connect(amqp_url) as broker:
        remove_leftovers(store, connection.name, runtime, broker)
        sweep_run_files(store)
        _take_the_targets_state(store, connection, loader, options)
        state = resumable_state(connection, store.read().get_state(connection.name))
        run = _record_new_run(
            store, connection, runtime.name, options.trigger, state, options.run_id
        )
        progress_file = ProgressFile(run)
        for role_mounts in mounts.values():
            # Connectors append skipped records to run.rejects_path, in the run's log directory.
            role_mounts.append(Mount(host_path=str(Path(run.log_path).parent), read_only=False))
        queues = ConnectionQueues.for_connection(connection.name, store.id)
        session = _SyncSession(
            store,
            connection,
            run,
            runtime,
            broker,
            queues,
            options,
            _reporting(progress_file, on_progress),
        )
        restore_signals = _install_signal_handlers()
        work_dir = new_run_files_dir(store, run.id)
        try:
            broker.declare(queues)
            launches = []
            for side in (loader, source):
                run_file = work_dir / f"{side.role}.json"
                _write_private_json(
                    run_file,
                    _run_document(side, connection, run, state, amqp_url, queues, options),
                )
                launches.append(_launch(store, connection, run, side, run_file, mounts, options))
            _start_connectors(session, launches)
            _follow(session)
            _conclude(session)
        except KeyboardInterrupt:
            run.status = RunStatus.CANCELLED
            run.error = "cancelled by Ctrl-C"
        except _Terminated as signalled:
            run.status = RunStatus.CANCELLED
            run.error = f"cancelled by {signalled.signal_name}"
        except EtlctlError as exc:  # a timeout, a lost broker, a Docker error
            run.status = RunStatus.FAILED
            run.error = exc.message
        finally:
            restore_signals()
            try:
                _cleanup(session, broker, queues)
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)
                run.timing = session.progress.run_timing()
                session.progress.save_timeline()
                run.ended_at = utcnow()
                if run.status is RunStatus.RUNNING:
                    run.status = RunStatus.FAILED
                    run.error = run.error or "etlctl stopped unexpectedly"
                if run.error:  # it may quote a connector's message or a library's
                    run.error = catalog.redact(run.error)
                with store.transaction() as tx:
                    tx.save_run(run)
                progress_file.remove()
    return run


def _reporting(
    progress_file: ProgressFile, on_progress: ProgressCallback | None
) -> ProgressCallback:
    """Progress goes to the run's progress file (what other processes see), then to the
    caller's display."""

    def report(progress: SyncProgress) -> None:
        progress_file.update(progress)
        if on_progress is not None:
            on_progress(progress)

    return report


def _record_new_run(
    store: Store,
    connection: Connection,
    runtime: str,
    trigger: str,
    state: SyncState | None,
    run_id: str | None = None,
) -> Run:
    snapshot = state.snapshot() if state else None
    run = Run(
        **({"id": validate_run_id(run_id)} if run_id else {}),
        connection=connection.name,
        trigger=trigger,
        runtime=runtime,
        state_before=snapshot,
        state_after=snapshot,
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    run_logs = ensure_private_dir(logs_dir(store.path) / connection.name)
    run.log_path = str(run_logs / f"{run.id}.log")
    run.rejects_path = str(run_logs / f"{run.id}.rejects.jsonl")
    with store.transaction() as tx:
        if tx.find_run(run.id) is not None:
            raise ConflictError(f"run {run.id} exists already", hint="leave out --run-id")
        tx.save_run(run)
    return run


def _launch(
    store: Store,
    connection: Connection,
    run: Run,
    side: _Side,
    run_file: Path,
    mounts: dict[str, list[Mount]],
    options: SyncOptions,
) -> ConnectorLaunch:
    """How one connector of the run starts: labelled so that cleanup always finds it."""
    return ConnectorLaunch(
        name=f"etlctl-{connection.name}-{run.id.replace('_', '-').lower()}-{side.role}",
        role=side.role,
        connector_type=side.obj.type,
        image=side.image,
        run_file=str(run_file),
        labels={
            MANAGED_LABEL: "true",
            STORE_LABEL: store.id,
            CONNECTION_LABEL: connection.name,
            RUN_LABEL: run.id,
            ROLE_LABEL: side.role,
        },
        mounts=tuple(mounts[side.role]),
        network=options.network,
    )


def _start_connectors(session: _SyncSession, launches: list[ConnectorLaunch]) -> None:
    """Start the connectors at once: each start is several Docker API round trips, and the
    queues exist already, so neither needs the other to be up first."""
    with ThreadPoolExecutor(max_workers=len(launches), thread_name_prefix="start") as pool:
        # Leaving the block waits for every start, also on Ctrl-C: no container can appear
        # after the cleanup has looked for them.
        futures = [(launch.role, pool.submit(session.runtime.start, launch)) for launch in launches]
        for role, future in futures:
            with contextlib.suppress(Exception):
                session.handles[role] = future.result()
                session.exit_codes[role] = None
    for _, future in futures:
        future.result()  # the first failure, now that every started container is known


def _follow(session: _SyncSession) -> None:
    """Read events and watch the containers until both end, one fails, or time runs out."""
    deadline = time.monotonic() + session.options.timeout
    next_poll = 0.0
    poll_interval = CONTAINER_POLL_SECONDS
    # One consumer for the whole run: events it has received but not yet handed out would
    # be lost if it were cancelled and another one started for the last events.
    events = session.broker.events(session.queues.events, EVENT_WAIT_SECONDS)
    try:
        for event in events:
            if event is not None:
                session.handle_event(event)
                if event.get("type") == "done":
                    # Its process is about to exit: look now, and then often.
                    next_poll, poll_interval = 0.0, EXIT_POLL_SECONDS
            now = time.monotonic()
            if now < next_poll:
                continue
            next_poll = now + poll_interval
            if _containers_settled(session, now, deadline):
                break
        # Take what is left on the events queue (done, last checkpoint) before judging.
        for event in events:
            if event is None:
                break
            session.handle_event(event)
    finally:
        events.close()


def _containers_settled(session: _SyncSession, now: float, deadline: float) -> bool:
    """Look at the connectors: True when the run is over (both ended, or one failed).
    Raises SyncTimeoutError past the deadline; otherwise reports progress."""
    session.poll_exits()
    if session.finished() or session.failed_role() is not None:
        return True  # on a failure the other connector is stopped in cleanup
    if session.exit_codes.get("loader") == 0:
        # The loader only exits after END, so an extractor still running now is stuck
        # on its way out; give it a moment to end by itself.
        session.peer_deadline = session.peer_deadline or now + PEER_GRACE_SECONDS
        if now > session.peer_deadline:
            return True
    if now > deadline:
        raise SyncTimeoutError(
            f"{TIMED_OUT} {session.options.timeout:g}s; its containers were stopped",
            hint="raise --timeout, or look at the logs: etlctl logs " + session.run.id,
        )
    if session.on_progress:
        session.on_progress(session.progress)
    return False


def _conclude(session: _SyncSession) -> None:
    run = session.run
    failed = session.failed_role()
    if failed is None and session.finished() and session.progress.loader_done:
        run.status = RunStatus.SUCCEEDED
        return
    run.status = RunStatus.FAILED
    if session.errors:
        run.error = session.errors[0]
    elif failed is not None:
        code = session.exit_codes[failed]
        run.error = f"the {failed} exited with code {code}{_EXIT_MEANINGS.get(code, '')}"
        logged = _last_logged_error(session, failed)
        if logged:
            run.error += f"; its last error: {logged}"
    elif session.exit_codes.get("loader") is None:
        run.error = "the extractor finished but the loader did not"
    else:
        run.error = "the loader finished without confirming the load"


# A connector that dies without an error event (killed, out of memory) leaves only its exit
# code: say what the usual ones mean, so the run's error needs no lookup.
_EXIT_MEANINGS: dict[int | None, str] = {
    137: " (killed by SIGKILL: docker kill, the OOM killer, or a crash)",
    143: " (stopped by SIGTERM)",
    255: " (its container vanished)",
}


def _last_logged_error(session: _SyncSession, role: str) -> str | None:
    """The last ERROR line a failed connector logged, for when it could not send its error
    event (its broker connection was what broke: a paused container past the heartbeat, a
    broker restart). Connectors never log secrets (docs/connector-protocol.md, 6.)."""
    handle = session.handles.get(role)
    if handle is None:
        return None
    try:
        text = session.runtime.logs(handle)
    except Exception:  # the container may be gone; the exit code alone must do then
        return None
    for line in reversed(text.splitlines()):
        _, marker, message = line.partition(" ERROR ")
        if marker and message.strip():
            message = message.strip()
            return message if len(message) <= 300 else message[:297] + "..."
    return None


def _cleanup(session: _SyncSession, broker: Broker, queues: ConnectionQueues) -> None:
    """Stop and remove the containers, keep their logs, delete the queues. Never raises on
    things that are already gone."""
    run = session.run
    log_parts: list[str] = []
    for role, handle in session.handles.items():
        with contextlib.suppress(Exception):
            if session.runtime.exit_code(handle) is None:
                # Kill at once: a graceful stop would give a loader time to commit a load
                # the run no longer owns (after a timeout or a cancel).
                session.runtime.stop(handle, timeout=0)
        code = None
        with contextlib.suppress(Exception):
            code = session.runtime.exit_code(handle)
        logs = ""
        with contextlib.suppress(Exception):
            logs = session.runtime.logs(handle)
        log_parts.append(log_section(role, code, logs))
        with contextlib.suppress(Exception):
            session.runtime.remove(handle)
    # A signal may land between creating a container and getting its handle back: sweep
    # by the run's label too.
    with contextlib.suppress(Exception):
        session.runtime.remove_leftovers({MANAGED_LABEL: "true", RUN_LABEL: run.id})
    with contextlib.suppress(Exception):
        broker.delete_queues(queues.names)
    if run.log_path:
        header = f"run {run.id} of connection {run.connection} (broker {redact_url(broker.url)})\n"
        # Connectors redact their own output; this covers custom images that do not.
        write_run_log(Path(run.log_path), header, [catalog.redact(part) for part in log_parts])
    if run.rejects_path and not Path(run.rejects_path).exists():
        run.rejects_path = None  # nothing was rejected


def raise_for_run(run: Run) -> None:
    """Turn a finished run into the exit the CLI should give."""
    if run.status is RunStatus.SUCCEEDED:
        return
    if run.status is RunStatus.CANCELLED:
        raise CancelledError(f"run {run.id} was cancelled")
    error = run.error or "unknown reason"
    if error.startswith(TIMED_OUT):
        raise SyncTimeoutError(f"run {run.id} timed out: {error}", hint=f"etlctl logs {run.id}")
    raise SyncFailedError(f"run {run.id} failed: {error}", hint=f"see: etlctl logs {run.id}")


def record_unstarted_run(
    store: Store, connection: str, trigger: str, status: RunStatus, reason: str
) -> Run | None:
    """Leave a trace of a firing that could not start (cron must never fail silently).

    Returns None when even the store cannot take the record (it is locked or broken);
    the caller's log line is then the only trace.
    """
    run = Run(
        connection=connection,
        trigger=trigger,
        status=status,
        error=reason,
        ended_at=utcnow(),
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    try:
        with store.transaction(timeout=10) as view:
            view.save_run(run)
    except EtlctlError:
        return None
    return run


@dataclass
class CheckResult:
    ok: bool
    message: str


def _run_command(
    store: Store,
    side: _Side,
    command: str,
    runtime_name: str,
    network: str,
    timeout: float,
    sync: dict[str, Any] | None = None,
    run: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run a connector's one-shot command (check, discover, state) with its real config."""
    runtime = get_runtime(runtime_name)
    runtime.preflight()
    runtime.ensure_image(side.image)  # the local runtime needs none
    name = side.obj.name
    work_dir = new_check_files_dir(store)
    try:
        run_file = work_dir / "run.json"
        document = {
            "protocol": PROTOCOL_VERSION,
            "role": side.role,
            "connector_type": side.obj.type,
            "config": side.config,
            "state": None,
            "sync": sync or {"mode": "full_refresh"},
            "run": {"id": command, "connection": "", "connection_id": "", **(run or {})},
            "broker": None,
            "batch": {},
            "rejects_path": None,
        }
        _write_private_json(run_file, document)
        launch = ConnectorLaunch(
            name=f"etlctl-{command}-{name}-{os.getpid()}-{int(time.time() * 1000) % 100000}",
            role=side.role,
            connector_type=side.obj.type,
            image=side.image,
            run_file=str(run_file),
            labels={
                MANAGED_LABEL: "true",
                STORE_LABEL: store.id,
                CHECK_LABEL: side.obj.name,
                PID_LABEL: str(os.getpid()),  # gc removes it once this process is gone
            },
            mounts=tuple(mounts_for(side)),
            network=network,
            command=(command,),
        )
        return runtime.run_once(launch, timeout)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def check_connector(
    store: Store,
    kind: str,
    name: str,
    runtime_name: str = "docker",
    network: str = "host",
    timeout: float = 120,
) -> CheckResult:
    """Run the connector's `check` (file readable, database reachable) with its real config."""
    side = _side(store.read().get(kind, name))
    code, stdout, stderr = _run_command(store, side, "check", runtime_name, network, timeout)
    try:
        answer = orjson.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    except orjson.JSONDecodeError:
        answer = {}
    if code == 0 and answer.get("status") == "ok":
        return CheckResult(ok=True, message="ok")
    message = answer.get("message") or (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
    return CheckResult(ok=False, message=catalog.redact(str(message)))


def discover_source(
    store: Store,
    name: str,
    runtime_name: str = "docker",
    network: str = "host",
    timeout: float = 120,
) -> list[dict[str, Any]]:
    """The streams a source offers (``discover``): name, columns and types, key properties,
    cursor candidates, supported modes."""
    side = _side(store.read().get("source", name))
    code, stdout, stderr = _run_command(store, side, "discover", runtime_name, network, timeout)
    last_error = catalog.redact((stderr.strip().splitlines() or [f"exit code {code}"])[-1])
    if code != 0:
        if "usage:" in last_error or "unknown command" in last_error:
            raise ValidationError(
                f"source {name!r}: its connector does not answer discover "
                "(a connector of protocol version 1 has one stream)",
            )
        error = ValidationError if code == 2 else SyncFailedError
        raise error(f"source {name!r}: discover failed: {last_error}",
                    hint=f"etlctl source check {name}")
    try:
        answer = orjson.loads(stdout.strip().splitlines()[-1])
        streams = answer["streams"]
        if not isinstance(streams, list):
            raise TypeError("streams is not a list")
    except (orjson.JSONDecodeError, IndexError, KeyError, TypeError) as exc:
        raise SyncFailedError(f"source {name!r}: discover printed no stream list ({exc})") from None
    return streams


def _take_the_targets_state(
    store: Store, connection: Connection, loader: _Side, options: SyncOptions
) -> None:
    """After a run that did not end well the store may be behind the target: ask the loader
    what its target committed, and take it when newer (etlctl/target_state.py)."""
    if not target_state.worth_asking(store.read(), connection):
        return
    sync = {
        "mode": connection.mode.value,
        "cursor_field": connection.cursor_field,
        "primary_key": connection.primary_key,
    }
    run = {"connection": connection.name, "connection_id": connection.id}
    code, stdout, _ = _run_command(
        store, loader, "state", options.runtime, options.network, STATE_QUERY_SECONDS, sync, run
    )
    try:
        answer = orjson.loads(stdout.strip().splitlines()[-1]) if code == 0 else None
    except (orjson.JSONDecodeError, IndexError):
        answer = None
    if not isinstance(answer, dict):
        return  # the target cannot say (a custom image, unreachable): the store's state stands
    with store.transaction() as view:
        target_state.adopt(view, connection, answer)
