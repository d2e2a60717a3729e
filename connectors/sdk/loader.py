"""The loader side of the SDK: the base class an author fills in, and the engine that
consumes the data queue and drives it.

The engine consumes with manual acknowledgements and a prefetch larger than ``commit_every``,
calls ``write_batch`` for every RECORDS message, ``commit`` at every CHECKPOINT, every
``commit_every`` batches, when the queue stays idle for ``IDLE_SECONDS`` and at END
(``finish``), and acknowledges (multiple=True) only what
is committed. A loader that stores ``(run_id, seq)`` with its commits (``start`` returns it)
gets exactly-once: redelivered messages it already committed are acknowledged and skipped.

Streams: every message names its stream (protocol 2; a version-1 extractor's messages belong
to its only stream). The engine asks ``for_stream`` for the loader that writes each stream:
by default the loader itself, which then takes one stream only; a loader that writes several
returns one per stream that shares its target (connection, transaction), and the engine
commits through the first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson

from connectors.sdk.context import RunContext
from connectors.sdk.empty import empty_refresh, refuse_empty_refresh
from connectors.sdk.errors import ConfigError, ProtocolError, RecordError
from connectors.sdk.faults import CRASH_AFTER_COMMIT_ENV, CRASH_EXIT_CODE, Faults
from connectors.sdk.protocol import CHECKPOINT, END, RECORDS, SCHEMA, Column, Schema
from connectors.sdk.rejects import Rejects
from connectors.sdk.wire import SPECIAL_MARKERS, decode_rows

log = logging.getLogger("connectors.loader")
__all__ = [
    "CRASH_AFTER_COMMIT_ENV",
    "CRASH_EXIT_CODE",
    "CommittedState",
    "LoadEngine",
    "LoadMark",
    "Loader",
]

PROGRESS_INTERVAL_SECONDS = 1.0
IDLE_SECONDS = 1.0


# In a loader's table (or file) setting: the stream's name, one table per stream.
STREAM_PLACEHOLDER = "{stream}"


def table_for(rule: str, stream: str) -> str:
    """The table of a stream under a naming rule: ``{stream}`` becomes the stream's name."""
    return rule.replace(STREAM_PLACEHOLDER, stream)


class BatchRejects:
    """Records of the batch being written that the target refuses (``Loader.reject``).

    Positions are record numbers in the run (``{"row": n}``); without an engine (a loader
    used on its own) every reject is an error.
    """

    def __init__(self, rejects: Rejects | None = None) -> None:
        self.rejects = rejects
        self.offset = 0  # records of the run before this batch
        self.in_batch = 0
        self.kept: list[int] | None = None  # index in the message of each row written

    def start_batch(self, offset: int) -> None:
        self.offset = offset
        self.in_batch = 0
        self.kept = None

    def reject(self, reason: str, index: int, record: Any = None) -> None:
        if self.kept is not None:
            index = self.kept[index]
        position = {"row": self.offset + index + 1}
        if self.rejects is None:
            raise RecordError(reason, position, record)
        self.rejects.reject(reason, position, record)
        self.in_batch += 1


@dataclass(frozen=True)
class LoadMark:
    """What a loader has committed of this run: the last message and the records up to it,
    and the checkpoint state this commit completes (None: none, at this commit).

    A loader that stores ``state`` with the rows, in the same transaction, keyed by the
    connection id, lets etlctl take the target's word over its own store after a crash
    (``committed_state``): the store is a cache of the target's checkpoint.
    """

    seq: int = 0
    records: int = 0
    state: dict[str, Any] | None = None
    stream: str = ""  # whose state it is


@dataclass(frozen=True)
class CommittedState:
    """The last checkpoint state a target committed for a connection, per stream:
    ``{stream: {"state": {...}, "run_id": "..."}}`` (empty: none)."""

    streams: dict[str, dict[str, Any]]


class Loader:
    """Base class of loaders. The SDK calls, in order:

    ``start()`` once; ``for_stream(stream, context)`` at a stream's first message;
    ``begin(schema)`` at its first SCHEMA; ``add_columns(columns)`` when a later SCHEMA adds
    columns; ``write_batch(columns, rows)`` per batch; ``commit(mark)`` at commit points;
    at END ``finish_stream()`` per stream, then ``finish(mark)`` (commit the rest and, for
    full_refresh, swap the staging copy in), or ``finish_stream_empty()`` for a stream in
    full_refresh that brought no records when the connection allows it (an empty
    full_refresh it does not allow is refused before either); then ``finish(mark)`` (commit
    the rest); ``close(failed)`` always, last. Per-stream calls go to the loader
    ``for_stream`` returned; start, commit, finish and close to this one.
    """

    #: sync modes this loader supports; others are refused before anything is written
    modes: ClassVar[tuple[str, ...]] = ("full_refresh", "incremental", "dedup")
    #: non-finite values ("NaN", "Infinity", "-Infinity") the target stores exactly, per
    #: column type ("number", "decimal"); a row holding another one is a bad record (never a
    #: silent NULL). number values arrive as floats, decimal values as strings.
    non_finite: ClassVar[dict[str, frozenset[str]]] = {}
    #: how errors name the target ("SQLite cannot store NaN ...")
    target_name: ClassVar[str] = "this loader"

    def __init__(self, config: dict[str, Any], context: RunContext) -> None:
        self.config = config
        self.context = context
        self.schema: Schema | None = None
        self.batch_rejects = BatchRejects()

    def check(self) -> None:
        """Raise ConfigError or ConnectorError when the target cannot be written."""

    def start(self) -> LoadMark:
        """Open the target; return what is already committed of this run (a restart)."""
        return LoadMark()

    def for_stream(self, stream: str, context: RunContext) -> Loader:
        """The loader that writes ``stream`` (``context``: the stream's mode, cursor, key).
        This one by default: such a loader takes one stream per run."""
        return self

    def begin(self, schema: Schema) -> None:
        """Prepare the target (or its staging copy) for these columns."""

    def resume(self, columns: list[str]) -> None:
        """A restart after the SCHEMA message was committed and acknowledged: the target
        (or staging copy) exists already; make ready to write these columns."""

    def add_columns(self, columns: list[Column]) -> None:
        """Schema evolution: the source has new columns."""
        raise ProtocolError(
            f"this loader cannot add columns ({', '.join(c.name for c in columns)})"
        )

    def write_batch(self, columns: list[str], rows: list[list[Any]]) -> None:
        """Write one batch. A row the target refuses goes to ``reject`` (and is not
        written); the rest of the batch is written all the same."""
        raise NotImplementedError

    def column_types(self) -> dict[str, str]:
        """Column name -> type of the stream ({} after a restart that did not see SCHEMA)."""
        return {c.name: c.type for c in self.schema.columns} if self.schema else {}

    def reject(self, reason: str, index: int, record: Any = None) -> None:
        """Row ``index`` of the batch being written cannot be stored: under ``on_error:
        fail`` this raises (the sync stops with the record's position); under ``skip`` the
        record is counted, reported and appended to the rejects file."""
        self.batch_rejects.reject(reason, index, record)

    def commit(self, mark: LoadMark) -> None:
        """Make everything written durable, together with ``mark`` when you can."""

    def finish_stream(self) -> None:
        """END, for each stream: make its result visible (the full_refresh swap), in the
        transaction that ``finish`` commits when the target has one."""

    def finish_stream_empty(self) -> None:
        """END of a stream in full_refresh that brought no records, which the connection
        allows (``allow_empty``): empty the target but keep its columns and types; a target
        that does not exist yet is made from the schema. The default finishes as usual."""
        self.finish_stream()

    def finish(self, mark: LoadMark) -> None:
        """END, once streams are finished: commit the rest."""
        self.commit(mark)

    def committed_state(self) -> CommittedState:
        """The state this target committed for ``context.connection_id`` (the ``state``
        command), read without changing anything. Loaders that do not keep it say so."""
        raise NotImplementedError(f"{type(self).__name__} does not keep the committed state")

    def keeps_state(self, mark: LoadMark) -> bool:
        """Whether ``mark``'s state is to be stored with this commit."""
        return (
            mark.state is not None
            and bool(self.context.connection_id)
            and self.context.sync.mode != "full_refresh"
        )

    def close(self, failed: bool) -> None:
        """Release the target; on failure drop what was not committed."""

    def remove_leftovers(self) -> list[str]:
        """Remove what a killed run of this loader left in the target beside its data (a
        staging table, a temporary file) and say what was removed. Called by `etlctl gc`
        (the ``cleanup`` command) once the run is known dead, never during a sync."""
        return []


class EventPublisher(Protocol):
    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None: ...


class DeliverySource(Protocol):
    def deliveries(self, prefetch: int) -> Iterator[Any]: ...

    def ack(self, tag: int) -> None: ...


class LoadEngine:
    """Drives one Loader through one run's data-queue messages."""

    def __init__(
        self, loader: Loader, context: RunContext, source: DeliverySource, events: EventPublisher
    ) -> None:
        self.loader = loader
        self.context = context
        self.source = source
        self.events = events
        self.received = 0  # records received this run (loaded or rejected), committed or not
        self.bytes = 0
        self.skipped = 0  # records the loader rejected under on_error: skip (this process)
        loader.batch_rejects = BatchRejects(Rejects(events, context))
        self._committed = LoadMark()
        self._last_seq = 0
        self._last_tag: int | None = None
        self._uncommitted_batches = 0
        self._dirty = False
        self._last_progress = time.monotonic()
        self._faults = Faults()
        # Where the time went: writing and committing, or waiting for the extractor's data.
        self._started = time.monotonic()
        self._handling_since: float | None = None
        self.busy_seconds = 0.0
        # The loader writing each stream, in order of arrival; a version-1 extractor's
        # messages that name no stream belong to the one it declared.
        self._writers: dict[str, Loader] = {}
        self._loaded_by_stream: dict[str, int] = {}  # by this process (not before a restart)
        self._resumed_from = 0  # the message a restarted run resumes after

    @property
    def prefetch(self) -> int:
        # Must exceed the messages held unacknowledged between two commits, or the broker
        # stops sending before we reach the commit point and the sync hangs.
        return self.context.batch.commit_every * 2 + 4

    def run(self) -> None:
        self._check_mode(self.context.sync.mode, self.loader)
        self._committed = self.loader.start()
        self._resumed_from = self._committed.seq
        self._last_seq = self._committed.seq
        self.received = self._committed.records
        if self._committed.seq:
            log.info("resuming run after message %d", self._committed.seq)
        self._started = time.monotonic()
        for delivery in self.source.deliveries(self.prefetch):
            if delivery is None:
                if self._dirty:
                    # Nothing came for a while (a slow source): commit what is written, so
                    # that it is durable and the target's write lock is free for others.
                    self._commit()
                self._report_progress(force=True)
                continue
            self._handling_since = time.monotonic()
            over = self._handle(delivery)
            self.busy_seconds += time.monotonic() - self._handling_since
            self._handling_since = None
            if over:
                return

    def _handle(self, delivery: Any) -> bool:
        """Process one message; True when the run is over."""
        if delivery.run_id is not None and delivery.run_id != self.context.run_id:
            raise ProtocolError(
                f"message of run {delivery.run_id!r} in the queue of run {self.context.run_id!r}"
            )
        if delivery.seq <= self._committed.seq:
            # Committed before a restart: acknowledge, do not apply twice.
            self.source.ack(delivery.tag)
            if delivery.type == END:
                # Finished before a crash that lost the acknowledgement: report it again.
                self._checkpoint_committed(orjson.loads(delivery.body))
                self._done()
                return True
            return False
        if delivery.seq != self._last_seq + 1:
            raise ProtocolError(
                f"message {self._last_seq + 1} is missing (got {delivery.seq} next)"
            )
        self._last_seq = delivery.seq
        self._last_tag = delivery.tag
        self.bytes += len(delivery.body)
        body = orjson.loads(delivery.body)
        if delivery.type == RECORDS:
            self._on_records(body, any(marker in delivery.body for marker in SPECIAL_MARKERS))
        elif delivery.type == SCHEMA:
            self._on_schema(Schema.from_json(body))
        elif delivery.type == CHECKPOINT:
            self._commit(body)
        elif delivery.type == END:
            self._on_end(body)
            return True
        else:
            raise ProtocolError(f"unknown message type {delivery.type!r}")
        return False

    # --- streams -------------------------------------------------------------------------
    def _check_mode(self, mode: str, loader: Loader, stream: str | None = None) -> None:
        if mode not in loader.modes:
            raise ConfigError(
                f"{f'stream {stream!r}: ' if stream else ''}this loader does not support mode "
                f"{mode!r} (it supports: {', '.join(loader.modes)})"
            )

    def _stream_of(self, body: dict[str, Any]) -> str:
        stream = body.get("stream")
        if isinstance(stream, str):
            return stream
        if len(self._writers) > 1:
            raise ProtocolError("a message names no stream in a run of several streams")
        return next(iter(self._writers), "")

    def _writer(self, stream: str) -> Loader:
        writer = self._writers.get(stream)
        if writer is not None:
            return writer
        context = self.context.for_stream(stream, only=False)
        writer = self.loader.for_stream(stream, context)
        if any(known is writer for known in self._writers.values()):
            raise ProtocolError(
                f"this loader writes one stream per run, and the extractor sent a second one "
                f"({stream!r} after {next(iter(self._writers))!r}): select one stream, or "
                f"name a table per stream in the loader (for example table={STREAM_PLACEHOLDER})"
            )
        self._check_mode(context.sync.mode, writer, stream)
        writer.batch_rejects = self.loader.batch_rejects
        self._writers[stream] = writer
        return writer

    def _resumed_writer(self, stream: str, columns: list[str]) -> Loader:
        """The writer of a stream whose SCHEMA was committed before a restart."""
        writer = self._writer(stream)
        if writer.schema is None:
            if not self._committed.seq:
                raise ProtocolError(f"stream {stream!r}: data before its SCHEMA")
            writer.schema = Schema(stream, [Column(name) for name in columns])
            writer.resume(columns)
        return writer

    def _on_schema(self, schema: Schema) -> None:
        writer = self._writer(schema.stream)
        current = writer.schema
        if current is None:
            writer.schema = schema
            writer.begin(schema)
            return
        known = set(current.names)
        added = [column for column in schema.columns if column.name not in known]
        if added:
            writer.add_columns(added)
        writer.schema = Schema(schema.stream, current.columns + added, schema.key_properties)

    def _on_records(self, body: dict[str, Any], special: bool = False) -> None:
        """``special``: the body may hold NaN or an infinity (connectors.sdk.wire)."""
        columns = body["columns"]
        rows = body["rows"]
        stream = self._stream_of(body)
        writer = self._resumed_writer(stream, columns)
        rejects = self.loader.batch_rejects
        rejects.start_batch(self.received)
        count = len(rows)
        if special:
            rows = self._decode_non_finite(writer, columns, rows, rejects)
        writer.write_batch(columns, rows)
        self.received += count
        self.skipped += rejects.in_batch
        loaded = self._loaded_by_stream.get(stream, 0)
        self._loaded_by_stream[stream] = loaded + len(rows) - rejects.in_batch
        self._dirty = True
        self._uncommitted_batches += 1
        if self._uncommitted_batches >= self.context.batch.commit_every:
            self._commit()
        self._report_progress()

    @staticmethod
    def _decode_non_finite(
        writer: Loader, columns: list[str], rows: list[list[Any]], rejects: BatchRejects
    ) -> list[list[Any]]:
        """NaN and infinities back to floats; rows whose ones the target cannot store are
        bad records (before the writer sees the batch)."""
        decoded, bad = decode_rows(
            writer.column_types(), columns, rows, writer.non_finite, writer.target_name
        )
        if not bad:
            return decoded
        refused = {index for index, _ in bad}
        for index, reason in bad:
            rejects.reject(reason, index, dict(zip(columns, rows[index], strict=False)))
        rejects.kept = [index for index in range(len(rows)) if index not in refused]
        return decoded

    def _mark(self, checkpoint: dict[str, Any] | None = None) -> LoadMark:
        """What is committed now; with the state of the CHECKPOINT (or END) it completes."""
        state = (checkpoint or {}).get("state")
        if not isinstance(state, dict):
            return LoadMark(seq=self._last_seq, records=self.received)
        return LoadMark(seq=self._last_seq, records=self.received, state=state,
                        stream=self._stream_of(checkpoint or {}))

    def _commit(self, checkpoint: dict[str, Any] | None = None) -> None:
        """Commit, then report the ``checkpoint``'s state (if any), then acknowledge: in this
        order only, so that nothing acknowledged or reported is uncommitted."""
        mark = self._mark(checkpoint)
        self._faults.crash("before_commit")
        self.loader.commit(mark)
        self._committed_through(mark, checkpoint)

    def _committed_through(self, mark: LoadMark, checkpoint: dict[str, Any] | None) -> None:
        self._faults.crash("after_commit")
        self._committed = mark
        self._uncommitted_batches = 0
        self._dirty = False
        if self._checkpoint_committed(checkpoint):
            self._faults.crash("after_report")
        if self._last_tag is not None:
            self.source.ack(self._last_tag)
            self._last_tag = None

    def _checkpoint_committed(self, body: dict[str, Any] | None) -> bool:
        """Report the state a CHECKPOINT (or END) carried, now committed, with its stream;
        True when there was one to report."""
        body = body or {}
        state, shared = body.get("state"), body.get("global")
        if state is None and shared is None:
            return False
        fields: dict[str, Any] = {"records_loaded": self.loaded}
        if state is not None:
            fields["stream"] = self._stream_of(body)
            fields["state"] = state
        if shared is not None:
            fields["global"] = shared
        self.events.publish_event("checkpoint_committed", **fields)
        return True

    def _on_end(self, body: dict[str, Any]) -> None:
        expected = int(body.get("records", -1))
        if expected != self.received:
            raise ProtocolError(
                f"the extractor sent {expected} records but {self.received} arrived"
            )
        # Every stream of the run, also those whose messages were all committed before a
        # restart (their staging copy still has to be swapped in).
        for stream in body.get("streams") or []:
            self._resumed_writer(stream, [])
        if not self._writers and "streams" not in body:
            # A version-1 extractor always declares its stream; a restart may not have seen it.
            self._resumed_writer("", [])
        empty = [stream for stream in self._writers if self._stream_is_empty(stream)]
        for stream in empty:
            rejected = f"all {self.skipped} records rejected by the loader" if self.skipped else ""
            if len(self._writers) > 1:
                rejected = f"stream {stream!r}: {rejected or 'the source yielded no records'}"
            refuse_empty_refresh(self._writers[stream].context.sync, 0, rejected)
        mark = self._mark(body)
        self._faults.crash("before_finish")
        for stream, writer in self._writers.items():
            if stream in empty:
                writer.finish_stream_empty()
            else:
                writer.finish_stream()
        self.loader.finish(mark)
        self._committed_through(mark, body)
        if self._faults.reached("exit_without_done"):
            self._faults.exit("exit_without_done", 0)
        self._done()

    def _stream_is_empty(self, stream: str) -> bool:
        """A full_refresh stream that brought no records. After a restart, rows committed
        before it are not counted by stream: then only a run that loaded nothing is empty."""
        sync = self._writers[stream].context.sync
        loaded = self._loaded_by_stream.get(stream, 0)
        if self._resumed_from and self.loaded:
            return False
        return empty_refresh(sync, loaded)

    def _done(self) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        # _done runs while the END message is handled: count that message's work too.
        handling = now - self._handling_since if self._handling_since is not None else 0.0
        busy = min(self.busy_seconds + handling, elapsed)
        self.events.publish_event(
            "done",
            records=self.loaded,
            bytes=self.bytes,
            skipped=self.skipped,
            busy_seconds=round(busy, 3),
            wait_seconds=round(elapsed - busy, 3),
        )

    @property
    def loaded(self) -> int:
        return self.received - self.skipped

    def _report_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_INTERVAL_SECONDS:
            self._last_progress = now
            self.events.publish_event(
                "progress", essential=False, records=self.received, bytes=self.bytes
            )
