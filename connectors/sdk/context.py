"""What a running connector knows about its run: config, state, sync settings, limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.sdk.protocol import BatchLimits, RunFile, SyncSettings


@dataclass(frozen=True)
class RunContext:
    run_id: str
    connection: str
    sync: SyncSettings
    batch: BatchLimits
    state: dict[str, Any] | None = None
    rejects_path: str | None = None

    @classmethod
    def from_run_file(cls, run: RunFile) -> RunContext:
        return cls(
            run_id=run.run_id,
            connection=run.connection,
            sync=run.sync,
            batch=run.batch,
            state=run.state,
            rejects_path=run.rejects_path,
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
