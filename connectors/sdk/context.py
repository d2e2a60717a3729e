"""What a running connector knows about its run: config, state, sync settings, limits."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from connectors.sdk.protocol import (
    BatchLimits,
    RunFile,
    StreamSelection,
    SyncSettings,
    selection_for,
    settings_for,
)


@dataclass(frozen=True)
class RunContext:
    run_id: str
    connection: str
    sync: SyncSettings
    batch: BatchLimits
    state: dict[str, Any] | None = None
    rejects_path: str | None = None
    #: the stream this context is about (None: the run as a whole)
    stream: str | None = None
    streams: tuple[StreamSelection, ...] = ()
    stream_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    global_state: dict[str, Any] | None = None
    connection_id: str = ""

    @classmethod
    def from_run_file(cls, run: RunFile) -> RunContext:
        return cls(
            run_id=run.run_id,
            connection=run.connection,
            sync=run.sync,
            batch=run.batch,
            state=run.state,
            rejects_path=run.rejects_path,
            streams=run.streams,
            stream_states=run.stream_states,
            global_state=run.global_state,
            connection_id=run.connection_id,
        )

    def selects(self, stream: str) -> bool:
        """Whether the run's stream selection includes this stream."""
        return selection_for(self.streams, stream) is not None

    def for_stream(self, stream: str, only: bool = True) -> RunContext:
        """This run as one stream sees it: the stream's own mode, cursor, key and state.

        ``only``: the run reads no other stream, so a state saved without a stream name (by
        a version-1 run) is this stream's.
        """
        selection = selection_for(self.streams, stream) or StreamSelection(stream)
        state = self.stream_states.get(stream)
        if state is None and only:
            state = self.state
        return replace(
            self, stream=stream, sync=settings_for(self.sync, selection), state=state
        )

    @property
    def start_cursor(self) -> Any:
        """The saved cursor when this sync reads incrementally, else None (read everything).

        Incremental reads are ``cursor_field >= start_cursor``: records that share the saved
        value are read again rather than lost; the SDK skips those the state's ``boundary``
        says were loaded (connectors/sdk/cursor.py).
        """
        if self.sync.mode == "full_refresh" or not self.sync.cursor_field or not self.state:
            return None
        return self.state.get("cursor")
