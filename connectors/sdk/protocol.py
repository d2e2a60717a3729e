"""The protocol's data: the run file and the messages, as plain typed values.

Mirrors docs/connector-protocol.md; this module knows nothing about AMQP or any target.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.sdk.errors import ConfigError

PROTOCOL_VERSION = 2
# Run files of these versions are read; a version-2 run file is a superset of version 1.
SUPPORTED_PROTOCOLS = frozenset({1, 2})
RUN_FILE_ENV = "ETLCTL_RUN_FILE"
# In a run file's stream selection: every stream not named by another entry.
ALL_STREAMS = "*"

# AMQP `type` property of data-queue messages
SCHEMA = "SCHEMA"
RECORDS = "RECORDS"
CHECKPOINT = "CHECKPOINT"
END = "END"

COLUMN_TYPES = frozenset(
    {"integer", "number", "decimal", "boolean", "string", "date", "timestamp", "json"}
)
MODES = frozenset({"full_refresh", "incremental", "dedup"})
ON_ERROR = frozenset({"fail", "skip"})
# A record alone in a batch larger than this is refused: RabbitMQ 4.x refuses messages over
# 16 MiB by default (3.x: 128 MiB); the headroom is for properties and headers.
MAX_MESSAGE_MIB = 16
MAX_MESSAGE_BYTES = MAX_MESSAGE_MIB * 1024 * 1024 - 64 * 1024


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


@dataclass
class Schema:
    stream: str
    columns: list[Column]
    key_properties: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "columns": [column.to_json() for column in self.columns],
            "key_properties": list(self.key_properties),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Schema:
        columns = [Column(c["name"], c.get("type", "string")) for c in body["columns"]]
        return cls(body.get("stream", ""), columns, list(body.get("key_properties") or []))


@dataclass
class StreamInfo:
    """A stream a source offers (``discover``): its columns when known before reading, the
    columns that identify a record, those that can serve as a cursor, the modes it allows."""

    name: str
    columns: list[Column] = field(default_factory=list)
    key_properties: list[str] = field(default_factory=list)
    cursor_candidates: list[str] = field(default_factory=list)
    modes: tuple[str, ...] = ("full_refresh", "incremental", "dedup")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [column.to_json() for column in self.columns],
            "key_properties": list(self.key_properties),
            "cursor_candidates": list(self.cursor_candidates),
            "modes": list(self.modes),
        }


@dataclass(frozen=True)
class SyncSettings:
    mode: str = "full_refresh"
    cursor_field: str | None = None
    primary_key: tuple[str, ...] = ()
    on_error: str = "fail"
    transform: dict[str, Any] | None = None
    #: A full_refresh that receives no records may empty the target (else it is refused).
    allow_empty: bool = False


@dataclass(frozen=True)
class StreamSelection:
    """One entry of the run file's ``streams``: a stream (or ``*``: every other one) and how
    to sync it. Fields left out (None) take the run's ``sync`` values."""

    name: str
    mode: str | None = None
    cursor_field: str | None = None
    primary_key: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BatchLimits:
    max_records: int = 2000
    max_bytes: int = 1024 * 1024
    commit_every: int = 16


@dataclass(frozen=True)
class BrokerSettings:
    url: str
    data_queue: str
    events_queue: str

    def __repr__(self) -> str:  # the URL holds the broker password: never print it
        return f"BrokerSettings(data_queue={self.data_queue!r}, events_queue={self.events_queue!r})"


@dataclass(frozen=True)
class RunFile:
    role: str
    connector_type: str
    config: dict[str, Any]
    state: dict[str, Any] | None
    sync: SyncSettings
    run_id: str
    connection: str
    broker: BrokerSettings | None
    batch: BatchLimits
    rejects_path: str | None = None
    protocol: int = PROTOCOL_VERSION
    #: the streams to sync; empty: every stream of the source, with ``sync``'s settings
    streams: tuple[StreamSelection, ...] = ()
    #: the committed state of each stream (version 2); ``state`` is that of the only one
    stream_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the optional part of the state that belongs to no single stream
    global_state: dict[str, Any] | None = None
    #: the connection's id: what a loader keys the state it commits in the target by
    connection_id: str = ""

    def __repr__(self) -> str:  # config holds secrets: never print it
        return f"RunFile(role={self.role!r}, type={self.connector_type!r}, run={self.run_id!r})"


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"run file: {where}{key} must be a {kind.__name__}")
    return value


def _check_mode(mode: Any, where: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"run file: {where}mode {mode!r} is not one of {sorted(MODES)}")


def _key(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value or ())


def _sync_settings(raw: dict[str, Any]) -> SyncSettings:
    mode = raw.get("mode") or "full_refresh"
    on_error = raw.get("on_error") or "fail"
    _check_mode(mode, "sync.")
    if on_error not in ON_ERROR:
        raise ConfigError(f"run file: sync.on_error {on_error!r} is not fail or skip")
    key = _key(raw.get("primary_key"))
    allow_empty = raw.get("allow_empty", False)
    if not isinstance(allow_empty, bool):
        raise ConfigError("run file: sync.allow_empty must be true or false")
    return SyncSettings(
        mode=mode,
        cursor_field=raw.get("cursor_field") or None,
        primary_key=key,
        on_error=on_error,
        transform=raw.get("transform"),
        allow_empty=allow_empty,
    )


def _batch_limits(raw: dict[str, Any]) -> BatchLimits:
    limits = BatchLimits(
        max_records=int(raw.get("max_records") or BatchLimits.max_records),
        max_bytes=int(raw.get("max_bytes") or BatchLimits.max_bytes),
        commit_every=int(raw.get("commit_every") or BatchLimits.commit_every),
    )
    if min(limits.max_records, limits.max_bytes, limits.commit_every) < 1:
        raise ConfigError("run file: batch limits must be positive")
    return limits


def _stream_selections(raw: Any) -> tuple[StreamSelection, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("run file: streams must be a list")
    selections = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError("run file: every entry of streams must be an object with a name")
        if entry.get("mode") is not None:
            _check_mode(entry["mode"], f"streams.{entry['name']}.")
        key = entry.get("primary_key")
        selections.append(
            StreamSelection(
                name=entry["name"],
                mode=entry.get("mode"),
                cursor_field=entry.get("cursor_field") or None,
                primary_key=None if key is None else _key(key),
            )
        )
    return tuple(selections)


def _object_or_null(data: dict[str, Any], key: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"run file: {key} must be an object or null")
    return value


def parse_run_file(data: Any) -> RunFile:
    if not isinstance(data, dict):
        raise ConfigError("run file: the document must be a JSON object")
    protocol = data.get("protocol", 1)
    if protocol not in SUPPORTED_PROTOCOLS:
        raise ConfigError(
            f"run file: protocol {protocol!r} is not supported "
            f"(this connector speaks {', '.join(map(str, sorted(SUPPORTED_PROTOCOLS)))})"
        )
    run = data.get("run") or {}
    broker_raw = data.get("broker")
    broker = None
    if broker_raw is not None:
        broker = BrokerSettings(
            url=_require(broker_raw, "url", str, "broker."),
            data_queue=_require(broker_raw, "data_queue", str, "broker."),
            events_queue=_require(broker_raw, "events_queue", str, "broker."),
        )
    state = _object_or_null(data, "state")
    stream_states = _object_or_null(data, "stream_states") or {}
    if not all(isinstance(value, dict) for value in stream_states.values()):
        raise ConfigError("run file: every value of stream_states must be an object")
    return RunFile(
        role=data.get("role", ""),
        connector_type=data.get("connector_type", ""),
        config=_require(data, "config", dict, ""),
        state=state,
        sync=_sync_settings(data.get("sync") or {}),
        run_id=str(run.get("id") or "run"),
        connection=str(run.get("connection") or ""),
        connection_id=str(run.get("connection_id") or ""),
        broker=broker,
        batch=_batch_limits(data.get("batch") or {}),
        rejects_path=data.get("rejects_path"),
        protocol=protocol,
        streams=_stream_selections(data.get("streams")),
        stream_states=stream_states,
        global_state=_object_or_null(data, "global_state"),
    )


def read_run_file(path: str | os.PathLike[str] | None = None) -> RunFile:
    """Read the run file named by ``$ETLCTL_RUN_FILE`` (or ``path``)."""
    where = path or os.environ.get(RUN_FILE_ENV)
    if not where:
        raise ConfigError(f"no run file: set {RUN_FILE_ENV} to its path")
    try:
        text = Path(where).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the run file {where}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"run file {where}: invalid JSON at line {exc.lineno}: {exc.msg}"
        ) from None
    return parse_run_file(data)


def selection_for(streams: tuple[StreamSelection, ...], name: str) -> StreamSelection | None:
    """How stream ``name`` is selected: its own entry, else the ``*`` entry; None when the
    selection leaves it out. No selection at all selects every stream."""
    if not streams:
        return StreamSelection(ALL_STREAMS)
    by_name = {selection.name: selection for selection in streams}
    return by_name.get(name) or by_name.get(ALL_STREAMS)


def settings_for(sync: SyncSettings, selection: StreamSelection) -> SyncSettings:
    """The run's sync settings with what a stream's selection overrides."""
    return replace(
        sync,
        mode=selection.mode or sync.mode,
        cursor_field=selection.cursor_field or sync.cursor_field,
        primary_key=sync.primary_key if selection.primary_key is None else selection.primary_key,
    )
