"""One exception hierarchy for connectors; each class says how the process exits.

Exit codes follow the protocol: 1 the sync failed, 2 the run file or the config is invalid.
"""

from __future__ import annotations

from typing import Any

Position = dict[str, Any]


class ConnectorError(Exception):
    """The sync cannot go on. The message is shown to the user: never put a secret in it."""

    exit_code = 1

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class ConfigError(ConnectorError):
    """The run file or the connector config is invalid: nothing was read or written."""

    exit_code = 2


class RecordError(ConnectorError):
    """One record is bad (malformed, wrong type). Under ``on_error: skip`` it is rejected and
    the sync goes on; under ``fail`` it stops the sync with its position."""

    def __init__(self, message: str, position: Position | None = None, raw: Any = None) -> None:
        super().__init__(message, position)
        self.raw = raw


class ProtocolError(ConnectorError):
    """The other side broke the connector protocol (lost message, count mismatch, ...)."""
