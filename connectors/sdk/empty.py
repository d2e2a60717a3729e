"""The empty-source guard: a full_refresh never replaces a target by nothing on its own.

A source that yields no records (a 0-byte or header-only file, an API or table emptied by
an upstream failure, a filter that drops every row) would make a full_refresh swap in an
empty target and exit 0. Unless the connection says an empty source is legitimate
(``allow_empty``), the extractor refuses to end the stream (so no loader swaps anything) and
the loader refuses an END that brought nothing (for extractors not built on this SDK).
With ``allow_empty``, loaders empty the target but keep its columns and types
(``Loader.finish_empty``).
"""

from __future__ import annotations

from connectors.sdk.errors import ConnectorError
from connectors.sdk.protocol import SyncSettings

ALLOW_HINT = (
    "if an empty source is legitimate, allow it: etlctl connection update NAME --allow-empty "
    "(manifest: allowEmpty: true)"
)


class EmptySourceError(ConnectorError):
    """A full_refresh got no records and the connection does not allow an empty source."""


def empty_refresh(sync: SyncSettings, records: int) -> bool:
    """True when this run is a full_refresh that would replace the target by no records."""
    return sync.mode == "full_refresh" and records == 0


def refuse_empty_refresh(sync: SyncSettings, records: int, why: str = "") -> None:
    """Raise EmptySourceError for an empty full_refresh the connection does not allow.
    ``why``: what became of the records that were read, when some were (filtered, rejected)."""
    if empty_refresh(sync, records) and not sync.allow_empty:
        raise EmptySourceError(
            f"full_refresh refused: {why or 'the source yielded no records'}; replacing the "
            f"target by nothing would lose its rows, so it is left as it was; {ALLOW_HINT}"
        )
