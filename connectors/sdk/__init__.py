"""What a connector author sees: base classes, columns and schemas, errors.

Write an extractor by subclassing :class:`Extractor` (yield dicts from ``records()``, or
``declare`` columns and ``write_rows`` in ``read(out)``), a loader by subclassing
:class:`Loader` (``begin``, ``write_batch``, ``commit``, ``finish``). The SDK speaks the
protocol of docs/connector-protocol.md for you. See docs/connectors.md.
"""

from connectors.sdk.context import RunContext
from connectors.sdk.errors import ConfigError, ConnectorError, ProtocolError, RecordError
from connectors.sdk.extractor import Extractor, ReadProgress, RecordStream
from connectors.sdk.loader import CommittedState, Loader, LoadMark
from connectors.sdk.protocol import Column, Schema, StreamInfo

__all__ = [
    "Column",
    "CommittedState",
    "ConfigError",
    "ConnectorError",
    "Extractor",
    "LoadMark",
    "Loader",
    "ProtocolError",
    "ReadProgress",
    "RecordError",
    "RecordStream",
    "RunContext",
    "Schema",
    "StreamInfo",
]
