"""The objects etlctl keeps: sources, loaders, connections, runs and sync state.

These are validated pydantic models; the store turns them into plain JSON documents and
back, so nothing outside ``etlctl.store`` sees TinyDB's types.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from etlctl.errors import ValidationError

# Sources are read by extractors; loaders are played by loaders.
ROLE_OF_KIND = {"source": "extractor", "loader": "loader"}

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def validate_name(name: str, what: str = "name") -> str:
    """Names become queue names, container labels and crontab tags: keep them boring."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        raise ValidationError(
            f"invalid {what} {shown!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
            hint="for example: users-to-sqlite",
        )
    return name


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A stable, unique, sortable-enough id: the prefix says what kind of object it is."""
    return f"{prefix}_{secrets.token_hex(8)}"


RUN_ID_PATTERN = re.compile(r"^run_[0-9]{8}T[0-9]{6}Z_[0-9a-f]{6}$")


def new_run_id() -> str:
    # Time first so that run ids sort by start time in listings and log directories.
    return f"run_{utcnow().strftime('%Y%m%dT%H%M%SZ')}_{secrets.token_hex(3)}"


def validate_run_id(run_id: str) -> str:
    """Run ids name log files: only the shape new_run_id() makes is accepted."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        shown = run_id[:80] if isinstance(run_id, str) else run_id
        raise ValidationError(
            f"invalid run id {shown!r}", hint="run ids look like run_20240501T101500Z_ab12cd"
        )
    return run_id


class SyncMode(StrEnum):
    FULL_REFRESH = "full_refresh"
    INCREMENTAL = "incremental"
    DEDUP = "dedup"


class OnError(StrEnum):
    FAIL = "fail"
    SKIP = "skip"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a scheduled firing that did not start (previous run still running)

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ConnectorObject(_Model):
    """What sources and loaders share: a named, configured connector type."""

    kind: Literal["source", "loader"]
    id: str
    name: str
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None  # a custom image that follows docs/connector-protocol.md
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    managed_by: str | None = None  # "manifest" when `etlctl apply` created it (for --prune)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return validate_name(value)

    @property
    def role(self) -> str:
        """The connector role that plays this object."""
        return ROLE_OF_KIND[self.kind]


class Source(ConnectorObject):
    kind: Literal["source"] = "source"


class Loader(ConnectorObject):
    kind: Literal["loader"] = "loader"


# In a connection's stream selection: every stream no other entry names.
ALL_STREAMS = "*"


class StreamConfig(_Model):
    """One entry of a connection's stream selection: a stream (or ``*``) and what it
    overrides of the connection's mode, cursor field and primary key."""

    name: str = Field(min_length=1, max_length=255)
    mode: SyncMode | None = None
    cursor_field: str | None = None
    primary_key: list[str] | None = None

    @classmethod
    def parse(cls, text: str) -> StreamConfig:
        """``NAME[:MODE[:CURSOR[:KEY,KEY]]]``, as ``--stream`` takes it (empty parts are
        left to the connection: ``orders::updated_at``)."""
        parts = text.split(":")
        if len(parts) > 4 or not parts[0].strip():
            raise ValueError(
                f"invalid stream {text!r}: use NAME[:MODE[:CURSOR_FIELD[:KEY,KEY]]], "
                "for example orders:incremental:updated_at:id"
            )
        name, mode, cursor, key = [part.strip() for part in parts] + [""] * (4 - len(parts))
        if mode and mode not in {m.value for m in SyncMode}:
            raise ValueError(
                f"invalid stream {text!r}: mode {mode!r} is not one of "
                f"{', '.join(m.value for m in SyncMode)}"
            )
        keys = [column.strip() for column in key.split(",") if column.strip()]
        return cls(
            name=name,
            mode=SyncMode(mode) if mode else None,
            cursor_field=cursor or None,
            primary_key=keys or None,
        )

    def to_run_file(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode.value if self.mode else None,
            "cursor_field": self.cursor_field,
            "primary_key": self.primary_key,
        }


class Connection(_Model):
    kind: Literal["connection"] = "connection"
    id: str
    name: str
    source: str
    loader: str
    mode: SyncMode = SyncMode.FULL_REFRESH
    cursor_field: str | None = None
    primary_key: list[str] = Field(default_factory=list)
    schedule: str = "manual"
    on_error: OnError = OnError.FAIL
    transform: dict[str, Any] | None = None
    # A full_refresh from a source with no records empties the target only when allowed.
    allow_empty: bool = False
    # The streams to sync and how; empty: every stream of the source, with the settings above.
    streams: list[StreamConfig] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    managed_by: str | None = None

    @field_validator("name", "source", "loader")
    @classmethod
    def _valid_names(cls, value: str) -> str:
        return validate_name(value)

    @field_validator("primary_key")
    @classmethod
    def _valid_key(cls, value: list[str]) -> list[str]:
        cleaned = [column.strip() for column in value if column.strip()]
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("primary key columns must be distinct")
        return cleaned

    @field_validator("transform")
    @classmethod
    def _empty_transform_is_none(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return value or None

    @model_validator(mode="after")
    def _mode_needs_fields(self) -> Connection:
        if self.mode is SyncMode.INCREMENTAL and not self.cursor_field:
            raise ValueError("mode incremental needs --cursor-field")
        if self.mode is SyncMode.DEDUP and not self.primary_key:
            raise ValueError("mode dedup needs --primary-key")
        names = [stream.name for stream in self.streams]
        if len(set(names)) != len(names):
            raise ValueError("each stream may be selected once")
        for stream in self.streams:
            mode, cursor, key = self.settings_of(stream.name)
            if mode is SyncMode.INCREMENTAL and not cursor:
                raise ValueError(
                    f"stream {stream.name!r}: mode incremental needs a cursor field "
                    f"(--stream {stream.name}:incremental:CURSOR_FIELD)"
                )
            if mode is SyncMode.DEDUP and not key:
                raise ValueError(
                    f"stream {stream.name!r}: mode dedup needs a primary key "
                    f"(--stream {stream.name}:dedup:CURSOR_FIELD:KEY)"
                )
        return self

    @property
    def scheduled(self) -> bool:
        return self.schedule != "manual"

    def selection_of(self, stream: str) -> StreamConfig | None:
        """The entry that selects ``stream`` (its own, else ``*``); None when the selection
        leaves it out. No selection at all takes every stream with the connection's settings."""
        if not self.streams:
            return StreamConfig(name=ALL_STREAMS)
        by_name = {entry.name: entry for entry in self.streams}
        return by_name.get(stream) or by_name.get(ALL_STREAMS)

    def settings_of(self, stream: str) -> tuple[SyncMode, str | None, list[str]]:
        """Mode, cursor field and primary key a stream syncs with."""
        entry = self.selection_of(stream) or StreamConfig(name=stream)
        return (
            entry.mode or self.mode,
            entry.cursor_field or self.cursor_field,
            self.primary_key if entry.primary_key is None else entry.primary_key,
        )

    def incremental(self, stream: str) -> bool:
        """Whether ``stream`` resumes from a saved state (a full refresh starts afresh)."""
        return self.settings_of(stream)[0] is not SyncMode.FULL_REFRESH

    @property
    def only_stream(self) -> StreamConfig | None:
        """The stream of a selection that names exactly one and no ``*``."""
        if len(self.streams) == 1 and self.streams[0].name != ALL_STREAMS:
            return self.streams[0]
        return None


# The stream of a state saved before streams had names (store schema 1), or reported by a
# connector that names none: the connection's only stream.
UNNAMED_STREAM = ""


class StreamState(_Model):
    """The committed state of one stream: its next sync starts from here."""

    state: dict[str, Any]
    run_id: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


def state_document_from_version_1(doc: dict[str, Any]) -> dict[str, Any]:
    """A state document of store schema 1 (one ``state`` per connection) as of schema 2: that
    state becomes the one of the connection's only stream, whose name was not recorded."""
    if "state" not in doc:
        return doc
    converted = {key: value for key, value in doc.items() if key != "state"}
    if doc["state"] is not None:
        entry = {"state": doc["state"], "run_id": doc.get("run_id")}
        if doc.get("updated_at") is not None:
            entry["updated_at"] = doc["updated_at"]
        converted["streams"] = {UNNAMED_STREAM: entry}
    return converted


class SyncState(_Model):
    """What the loader has committed for a connection, per stream, plus an optional part
    that belongs to no single stream (``global_state``).

    Kept under the connection's name, but it belongs to the connection's id: a state whose
    ``connection_id`` is not the connection's (a removed connection of the same name) is
    never used. ``reset_at`` marks a `connection reset`: a checkpoint a target committed
    for a run that started before it is not taken back (see orchestrator's reconcile).
    """

    connection: str
    connection_id: str | None = None  # None in stores written before ids were kept here
    streams: dict[str, StreamState] = Field(default_factory=dict)
    global_state: dict[str, Any] | None = None
    run_id: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    reset_at: datetime | None = None

    def belongs_to(self, connection: Connection) -> bool:
        return self.connection_id in (None, connection.id)

    @model_validator(mode="before")
    @classmethod
    def _from_version_1(cls, data: Any) -> Any:
        return state_document_from_version_1(data) if isinstance(data, dict) else data

    @property
    def state(self) -> dict[str, Any] | None:
        """The state of the only stream (what a version-1 connector gets), else None."""
        if len(self.streams) != 1:
            return None
        return next(iter(self.streams.values())).state

    def stream_states(self) -> dict[str, dict[str, Any]]:
        return {name: entry.state for name, entry in self.streams.items()}

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON (what a run shows before and after)."""
        snapshot: dict[str, Any] = {"streams": self.stream_states()}
        if self.global_state is not None:
            snapshot["global"] = self.global_state
        return snapshot

    def committed(
        self,
        run_id: str,
        stream: str | None = None,
        state: dict[str, Any] | None = None,
        global_state: dict[str, Any] | None = None,
    ) -> SyncState:
        """This state after a checkpoint of run ``run_id`` was committed."""
        streams = dict(self.streams)
        if stream is not None and state is not None:
            if stream != UNNAMED_STREAM:
                # The unnamed state was this connection's one stream before it had a name.
                streams.pop(UNNAMED_STREAM, None)
            streams[stream] = StreamState(state=state, run_id=run_id)
        return self.model_copy(
            update={
                "streams": streams,
                "global_state": self.global_state if global_state is None else global_state,
                "run_id": run_id,
                "updated_at": utcnow(),
            }
        )

    def without_stream(self, stream: str) -> SyncState:
        streams = {name: entry for name, entry in self.streams.items() if name != stream}
        return self.model_copy(update={"streams": streams, "updated_at": utcnow()})


class RunTiming(_Model):
    """Where a run's time went: how busy each side was. (Its throughput samples are kept
    in a file beside the run's log, see etlctl.progress: they would triple the size of a
    run's record, and the store keeps hundreds of runs per connection.)"""

    extractor_busy_seconds: float | None = None
    extractor_wait_seconds: float | None = None  # waiting for the broker: a full data queue
    loader_busy_seconds: float | None = None
    loader_wait_seconds: float | None = None  # waiting for data from the extractor
    queue_full: int | None = None  # publishes the full data queue refused (backpressure)


class Run(_Model):
    id: str = Field(default_factory=new_run_id)
    connection: str
    status: RunStatus = RunStatus.RUNNING
    trigger: Literal["manual", "schedule", "api"] = "manual"
    runtime: str = "docker"
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    records_extracted: int = 0
    records_loaded: int = 0
    records_skipped: int = 0
    bytes: int = 0
    state_before: dict[str, Any] | None = None
    state_after: dict[str, Any] | None = None
    error: str | None = None
    log_path: str | None = None
    rejects_path: str | None = None
    pid: int | None = None
    host: str | None = None
    timing: RunTiming | None = None

    @property
    def duration_seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def rows_per_second(self) -> float | None:
        duration = self.duration_seconds
        if not duration:
            return None
        return self.records_loaded / duration
