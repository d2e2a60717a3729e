"""The extractor side of the SDK: the base class an author fills in, and the engine that
turns what it produces into the protocol's messages.

An author writes either

* ``records()``: yield dicts. The SDK infers the schema from a sample, adds columns that
  appear later (schema evolution) and turns the dicts into positional rows; or
* ``read(out)``: the fast lane for sources that know their columns: ``out.declare(columns)``
  then ``out.write_rows(rows)`` with positional, already typed rows (any number at a time).

Either way the SDK batches rows under ``max_records``/``max_bytes``, publishes SCHEMA,
RECORDS, CHECKPOINT and END with publisher confirms and backpressure, filters by the saved
cursor (unless the source does it itself), and reports progress, rejects and errors.

A source with several streams (tables, endpoints) lists them in ``streams()`` and reads one
in ``read_stream(name, out)``; the SDK calls it once per stream the run selects, each with
its own ``RecordStream`` and with ``self.context`` set to that stream's mode, cursor, key
and state. A source with one stream needs neither: it is the stream ``stream_name``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson

from connectors.sdk.context import RunContext
from connectors.sdk.cursor import CursorTracker
from connectors.sdk.empty import refuse_empty_refresh
from connectors.sdk.errors import ConfigError, ConnectorError, Position, RecordError
from connectors.sdk.faults import Faults
from connectors.sdk.protocol import (
    ALL_STREAMS,
    CHECKPOINT,
    END,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_MIB,
    RECORDS,
    SCHEMA,
    Column,
    Schema,
    StreamInfo,
)
from connectors.sdk.rejects import Rejects
from connectors.sdk.transform import Transform, TransformError, TransformPlan
from connectors.sdk.values import float_holds, json_type_of, merge_types
from connectors.sdk.wire import encode_rows, printable

log = logging.getLogger("connectors.extractor")

PROGRESS_INTERVAL_SECONDS = 1.0
INFERENCE_SAMPLE = 1000  # dict records buffered to infer the schema before the first batch
# Fill batches to 90% of max_bytes, so that rows a little larger than the average still fit.
BYTES_HEADROOM = 0.9


@dataclass(frozen=True)
class ReadProgress:
    """How far an extractor has read of all there is to read, when it can tell cheaply:
    files by bytes, SQL sources by rows (an estimate), APIs by the total they report.
    Sent in progress events as ``estimate`` (docs/connector-protocol.md)."""

    done: int
    total: int
    unit: str = "bytes"  # "bytes" or "records"

    def to_json(self) -> dict[str, Any]:
        return {"unit": self.unit, "done": self.done, "total": self.total}


class Publisher(Protocol):
    """Where messages go: the AMQP session in a sync, a list in tests."""

    def publish_message(self, message_type: str, body: bytes) -> None: ...

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None: ...


class Extractor:
    """Base class of extractors. Subclass it, set nothing else than what you need."""

    #: True when the source yields records in ascending cursor order (an ORDER BY): then the
    #: SDK can place checkpoints between batches. Otherwise the only checkpoint is the final
    #: state at END, because a maximum seen half-way would skip smaller cursors still to come.
    sorted_by_cursor: ClassVar[bool] = False
    #: True when the source itself reads only ``cursor >= context.start_cursor``.
    filters_by_cursor: ClassVar[bool] = False
    #: The stream name sent in SCHEMA messages.
    stream_name: ClassVar[str] = "records"

    def __init__(self, config: dict[str, Any], context: RunContext) -> None:
        self.config = config
        self.context = context

    def check(self) -> None:
        """Raise ConfigError or ConnectorError when the source cannot be read."""

    def streams(self) -> list[StreamInfo]:
        """The streams this source offers (``discover``); by default the one ``stream_name``."""
        return [StreamInfo(self.stream_name)]

    def read_stream(self, stream: str, out: RecordStream) -> None:
        """Produce the records of one stream; with one stream, that is ``read(out)``."""
        self.read(out)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield records as dicts (the simple way)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither records() nor read()")

    def read(self, out: RecordStream) -> None:
        """Produce the records into ``out`` (the fast way); the default uses records()."""
        for record in self.records():
            out.write_record(record)

    def position(self) -> Position | None:
        """Where the extractor is (``{"file": ..., "line": ...}``), for error events."""
        return None

    def progress(self) -> ReadProgress | None:
        """How far the read is of its total; None when the total is not known (the user
        then sees counters without a percentage)."""
        return None

    def close(self) -> None:
        """Release files and connections; called whatever happened."""


class RunOutput:
    """What the streams of one run share: the publisher, the run's record and byte counts
    (CHECKPOINT and END carry the run's totals), its rejects and the pace of progress."""

    def __init__(self, publisher: Publisher, context: RunContext) -> None:
        self.publisher = publisher
        self.context = context
        self.records_sent = 0
        self.bytes_sent = 0
        self.rejects = Rejects(publisher, context)
        self.last_progress = -PROGRESS_INTERVAL_SECONDS  # the first batch reports at once

    def send(self, message_type: str, payload: dict[str, Any]) -> None:
        self.send_body(message_type, orjson.dumps(payload, default=_json_default))

    def send_body(self, message_type: str, body: bytes) -> None:
        self.publisher.publish_message(message_type, body)
        self.bytes_sent += len(body)

    @property
    def rejected(self) -> int:
        return self.rejects.count

    def end(self, streams: list[str], final: dict[str, Any] | None = None) -> None:
        """END, with the run's total and its streams (a loader restarted after their SCHEMA
        still finishes each one); ``final``: the only stream's state, version-1 style."""
        announced = self.records_sent + (1 if Faults().reached("end_count") else 0)
        self.send(END, {"records": announced, "streams": streams, **(final or {})})


class RecordStream:
    """The author's handle to one stream of the sync: schema, rows, rejects. Batching
    happens here."""

    def __init__(
        self,
        publisher: Publisher,
        context: RunContext,
        stream: str,
        filters_by_cursor: bool,
        sorted_by_cursor: bool,
        position: Callable[[], Position | None] = lambda: None,
        progress: Callable[[], ReadProgress | None] = lambda: None,
        output: RunOutput | None = None,
    ) -> None:
        self.publisher = publisher
        self.position = position
        self.read_progress = progress
        self.context = context
        self.stream = stream
        self.output = output or RunOutput(publisher, context)
        self.schema: Schema | None = None  # what is sent: the columns after the transform
        self.source_columns: list[Column] = []
        try:
            self._transform = Transform.parse(context.sync.transform)
        except TransformError as exc:
            raise ConfigError(f"invalid transform: {exc}") from None
        self._plan: TransformPlan | None = None
        self.stream_records = 0  # records of this stream sent
        self.records_filtered = 0  # dropped by the transform's filter
        self._pending: list[Any] = []
        self._target_rows = context.batch.max_records
        self._batches_since_checkpoint = 0
        # Dict path: a sample buffered until the schema is inferred (with where each was).
        self._sample: list[dict[str, Any]] | None = []
        self._sample_positions: list[Position | None] = []
        self._positions: list[Position | None] | None = None  # of the rows being written
        self._rows_written = 0  # rows given to write_rows, for the positions of bad ones
        self._index: dict[str, int] = {}
        self._source_names: list[str] = []
        # Incremental reading: the saved cursor, its boundary, the cursor to save next.
        sync = context.sync
        self._cursor_field = sync.cursor_field
        self._cursor: CursorTracker | None = None
        if sync.cursor_field:
            self._cursor = CursorTracker(
                sync.cursor_field,
                context.state,
                context.start_cursor,
                filter_rows=not filters_by_cursor,
                check_order=sync.mode != "full_refresh",
            )
        self._cursor_index: int | None = None
        self._checkpoints_between_batches = (
            sorted_by_cursor and sync.mode != "full_refresh" and bool(sync.cursor_field)
        )
        self._checkpoint_due = False

    @property
    def records_sent(self) -> int:
        """Records published so far in the run (all streams)."""
        return self.output.records_sent

    @property
    def bytes_sent(self) -> int:
        return self.output.bytes_sent

    # --- schema ------------------------------------------------------------------------
    def declare(self, columns: Sequence[Column], key_properties: Sequence[str] = ()) -> None:
        """Declare the columns; declaring more columns later adds them (schema evolution).
        Columns can be added at the end, never removed or reordered."""
        columns = list(columns)
        if self.schema is not None:
            known = [c.name for c in self.source_columns]
            if [c.name for c in columns[: len(known)]] != known:
                raise ConnectorError("a schema may only add columns at the end")
            if len(columns) == len(known):
                return
            self.flush()
        self.source_columns = columns
        output = columns
        if self._transform is not None and columns:
            try:
                self._plan = self._transform.plan(columns)
            except TransformError as exc:
                raise ConfigError(str(exc)) from None
            output = self._plan.output_columns
        keys = list(key_properties or self.context.sync.primary_key)
        self.schema = Schema(self.stream, output, keys)
        self._index = {column.name: i for i, column in enumerate(columns)}
        self._source_names = [column.name for column in columns]
        if self._cursor_field is not None:
            self._cursor_index = self._index.get(self._cursor_field)
        self._send(SCHEMA, self.schema.to_json())
        if columns:
            self._require_cursor_column()

    def _require_cursor_column(self) -> None:
        if self._cursor_field is not None and self._cursor_index is None:
            needed = (
                self.context.start_cursor is not None or self.context.sync.mode != "full_refresh"
            )
            if needed:
                raise ConnectorError(
                    f"cursor field {self._cursor_field!r} is not a column of the source "
                    f"(columns: {', '.join(c.name for c in self.source_columns)})"
                )

    # --- rows ---------------------------------------------------------------------------
    def write_rows(self, rows: list[Any], typed: bool = False) -> None:
        """Positional rows over the declared columns. ``typed=True`` promises that every value
        has its column's type (an int within 64 bits in an integer column, a float that holds
        what the source wrote in a number column, text in a decimal one): then only NaN and
        infinities are looked for. Otherwise every value is checked (connectors.sdk.wire)."""
        if not rows:
            return
        if self.schema is None:
            raise ConnectorError("write_rows() before declare()")
        first = self._rows_written
        self._rows_written += len(rows)
        rows = self._exact_rows(self.source_columns, rows, first, self._positions, typed)
        pending = self._pending
        if self._cursor is not None and self._cursor_index is not None:
            rows = self._cursor.track(rows, self._cursor_index, self._source_names)
        if self._plan is not None:
            rows = self._apply_transform(self._plan, rows)
            rows = self._exact_rows(self.schema.columns, rows, None, None, False)
        if not pending and len(rows) == self._target_rows:
            self._publish_rows(rows)
        else:
            pending.extend(rows)
            while len(pending) >= self._target_rows:
                batch = pending[: self._target_rows]
                del pending[: self._target_rows]
                self._publish_rows(batch)
        self._checkpoint_if_due()

    def _exact_rows(
        self,
        columns: list[Column],
        rows: list[Any],
        first: int | None,
        positions: list[Position | None] | None,
        typed: bool,
    ) -> list[Any]:
        """Rows as they travel (connectors.sdk.wire); a value that cannot travel exactly (an
        integer beyond 64 bits in an integer column, a NaN in a date...) is a bad record.
        ``first``: how many rows came before these; ``positions``: where each row was read."""
        given = rows
        rows, bad = encode_rows(columns, rows, typed)
        for index, reason in bad:
            if positions is not None and index < len(positions):
                position = positions[index]
            else:
                position = dict(self.position() or {})
                if first is not None:
                    position["record"] = first + index + 1
            raw = {c.name: printable(v) for c, v in zip(columns, given[index], strict=False)}
            self.reject(reason, position, raw)
        return rows

    def _apply_transform(self, plan: TransformPlan, rows: list[Any]) -> list[Any]:
        out = []
        for row in rows:
            try:
                transformed = plan.apply_row(row)
            except (ValueError, TypeError) as exc:
                self.reject(f"transform: {exc}", self.position(), raw=row)
                continue
            if transformed is not None:
                out.append(transformed)
            else:
                self.records_filtered += 1
        return out

    def write_record(self, record: dict[str, Any]) -> None:
        """One record as a dict; the schema is inferred from the first records."""
        if self._sample is not None:
            self._sample.append(record)
            self._sample_positions.append(self.position())
            if len(self._sample) >= INFERENCE_SAMPLE:
                self._end_sampling()
            return
        if not record.keys() <= self._index.keys():
            self._add_columns_of([record])
        names = self._index
        self.write_rows([[record.get(name) for name in names]])

    def _end_sampling(self) -> None:
        sample, self._sample = self._sample or [], None
        if not sample:
            return
        self._add_columns_of(sample)
        names = list(self._index)
        # Row i of the sample is record i: bad ones get their position.
        self._positions = self._sample_positions
        try:
            self.write_rows([[record.get(name) for name in names] for record in sample])
        finally:
            self._positions = None
            self._sample_positions = []

    def _add_columns_of(self, records: list[dict[str, Any]]) -> None:
        types: dict[str, str | None] = {}
        for record in records:
            for name, value in record.items():
                if name not in self._index:
                    types[name] = merge_types(types.get(name), json_type_of(value))
        if not types:
            return
        current = list(self.source_columns)
        added = [Column(name, kind or "string") for name, kind in types.items()]
        self.declare(current + added)

    # --- rejects ------------------------------------------------------------------------
    @property
    def rejected(self) -> int:
        return self.output.rejects.count

    def reject(self, reason: str, position: Position | None = None, raw: Any = None) -> None:
        """A bad record: stops the sync under ``on_error: fail``; under ``skip`` it is counted,
        reported and appended to the rejects file, and the sync goes on."""
        self.output.rejects.reject(reason, position, raw)

    # --- batches and messages -----------------------------------------------------------
    def flush(self) -> None:
        """Publish the rows held back (before a schema change, a checkpoint, the end)."""
        if self._sample is not None:
            self._end_sampling()
        if self._pending:
            batch, self._pending = self._pending, []
            self._publish_rows(batch)
        self._checkpoint_if_due()

    def _publish_rows(self, rows: list[Any]) -> None:
        assert self.schema is not None
        body = orjson.dumps(
            {"stream": self.stream, "columns": self.schema.names, "rows": rows},
            default=_json_default,
        )
        limit = self.context.batch.max_bytes
        if len(body) > limit and len(rows) > 1:
            middle = len(rows) // 2
            self._publish_rows(rows[:middle])
            self._publish_rows(rows[middle:])
            return
        if len(body) > MAX_MESSAGE_BYTES:
            raise RecordError(
                f"a record of {len(body)} bytes is larger than the {MAX_MESSAGE_MIB} MiB limit",
                position={"record": self.records_sent + 1},
            )
        self._adapt_batch_size(len(rows), len(body))
        self.output.send_body(RECORDS, body)
        self.output.records_sent += len(rows)
        self.stream_records += len(rows)
        self._after_batch()

    def _adapt_batch_size(self, rows: int, size: int) -> None:
        per_row = size / rows
        fitting = int(self.context.batch.max_bytes * BYTES_HEADROOM / per_row)
        self._target_rows = max(1, min(self.context.batch.max_records, fitting))

    def _after_batch(self) -> None:
        self._batches_since_checkpoint += 1
        if (
            self._checkpoints_between_batches
            and self._batches_since_checkpoint >= self.context.batch.commit_every
        ):
            # Not here: a batch split in halves by size has its second half still to go.
            self._checkpoint_due = True
        now = time.monotonic()
        if now - self.output.last_progress >= PROGRESS_INTERVAL_SECONDS:
            self.output.last_progress = now
            self.report_progress()

    def report_progress(self) -> None:
        """A progress event: records and bytes sent, and the read estimate when known."""
        fields: dict[str, Any] = {"records": self.records_sent, "bytes": self.bytes_sent}
        estimate = self.read_progress()
        if estimate is not None:
            fields["estimate"] = estimate.to_json()
        self.publisher.publish_event("progress", essential=False, **fields)

    def state(self) -> dict[str, Any] | None:
        if self._cursor is None:
            return self.context.state
        return self._cursor.state(self.context.state)

    def _checkpoint_if_due(self) -> None:
        if self._checkpoint_due:
            self._checkpoint_due = False
            self.checkpoint()

    def checkpoint(self) -> None:
        """Everything read so far may be committed under the current state."""
        self._batches_since_checkpoint = 0
        if self._pending:
            # The state covers every row read, so the rows held back go first (a short batch
            # once per checkpoint): then the boundary it names is exactly what was sent.
            batch, self._pending = self._pending, []
            self._publish_rows(batch)
            self._batches_since_checkpoint = 0
            self._checkpoint_due = False
        state = self.state()
        if state is not None:
            self._send(
                CHECKPOINT, {"stream": self.stream, "state": state, "records": self.records_sent}
            )

    def finish(self, checkpoint: bool = True) -> None:
        """The stream is read: publish what is held back and, with ``checkpoint``, its final
        state (a run of several streams commits each one as it ends)."""
        self.flush()
        # Before END: without END no loader replaces its target by what this run sent.
        refuse_empty_refresh(self.context.sync, self.stream_records, self._why_nothing_sent())
        if self.schema is None:
            self.declare([])  # an empty source still tells the loader its (empty) schema
        self._require_cursor_column()
        if checkpoint:
            self.checkpoint()

    def end(self) -> None:
        """The stream is the run's only one: finish it and END with its state (the shape a
        version-1 loader knows)."""
        self.finish(checkpoint=False)
        self.output.end([self.stream], {"stream": self.stream, "state": self.state()})

    def _why_nothing_sent(self) -> str:
        reasons = []
        if self.records_filtered:
            reasons.append(f"{self.records_filtered} dropped by the transform's filter")
        if self.rejected:
            reasons.append(f"{self.rejected} rejected as bad records")
        return "no record is left to load: " + ", ".join(reasons) if reasons else ""

    def _send(self, message_type: str, payload: dict[str, Any]) -> None:
        self.output.send(message_type, payload)


def selected_streams(extractor: Extractor, context: RunContext) -> list[str]:
    """The names of the streams this run reads, in the source's order. A stream the
    selection names but the source does not offer is a config error (a typo must not pass
    for an empty stream)."""
    offered = [stream.name for stream in extractor.streams()]
    unknown = [
        selection.name
        for selection in context.streams
        if selection.name != ALL_STREAMS and selection.name not in offered
    ]
    if unknown:
        raise ConfigError(
            f"stream {unknown[0]!r} is not offered by this source "
            f"(it offers: {', '.join(offered) or 'none'})"
        )
    return [name for name in offered if context.selects(name)]


def extract(extractor: Extractor, publisher: Publisher) -> RunOutput:
    """Read every selected stream into the queue, then END. While a stream is read,
    ``extractor.context`` is that stream's context; the run's is restored afterwards."""
    run_context = extractor.context
    names = selected_streams(extractor, run_context)
    output = RunOutput(publisher, run_context)
    try:
        for name in names:
            only = len(names) == 1
            extractor.context = run_context.for_stream(name, only=only)
            out = RecordStream(
                publisher,
                extractor.context,
                name,
                filters_by_cursor=extractor.filters_by_cursor,
                sorted_by_cursor=extractor.sorted_by_cursor,
                position=extractor.position,
                progress=extractor.progress,
                output=output,
            )
            extractor.read_stream(name, out)
            if only:
                out.end()
                return output
            out.finish()
            log.info("stream %s: read (%d records in the run so far)", name, out.records_sent)
    finally:
        extractor.context = run_context
    output.end(names)
    return output


def _json_default(value: Any) -> Any:
    """Types orjson does not serialize natively (Decimal inside JSON values, bytes, sets).
    Columns' own values were made ready to travel by connectors.sdk.wire already."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        converted = float(value)
        if float_holds(str(value), converted) and value.is_finite():
            return converted
        raise TypeError(f"the number {value} cannot be kept exactly inside a JSON value")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot send a value of type {type(value).__name__}")
