"""Bad records, on either side of the queue: ``on_error: fail`` stops the sync with the
record's position; ``skip`` counts it, reports a ``rejected`` event and appends it to the
rejects file, and the sync goes on."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from connectors.sdk.context import RunContext
from connectors.sdk.errors import Position, RecordError


class EventSink(Protocol):
    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None: ...


class Rejects:
    """One connector's rejected records: the running count and where they are reported."""

    def __init__(self, events: EventSink, context: RunContext) -> None:
        self.events = events
        self.context = context
        self.count = 0

    def reject(self, reason: str, position: Position | None = None, raw: Any = None) -> None:
        if self.context.sync.on_error != "skip":
            raise RecordError(reason, position, raw)
        self.count += 1
        self.events.publish_event("rejected", count=self.count, position=position, reason=reason)
        if self.context.rejects_path:
            line = {"position": position, "reason": reason, "record": raw}
            with open(self.context.rejects_path, "ab") as rejects:
                rejects.write(orjson.dumps(line, default=str) + b"\n")
