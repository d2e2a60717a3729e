"""What the SQL extractors (sqlite, postgres) share: which tables a config selects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

QUERY_STREAM = "query"  # the one stream of a `query` config
ALL_TABLES = "*"
# Column types a cursor can be: values that grow with new or changed rows.
CURSOR_TYPES = frozenset({"integer", "number", "date", "timestamp", "string"})


def selected_tables(config: dict[str, Any], every_table: Callable[[], list[str]]) -> list[str]:
    """The tables a config reads ([] for a query), as it names them; ``every_table`` lists the
    database's own tables for ``tables: ["*"]`` (asked only then)."""
    if config.get("table"):
        return [config["table"]]
    wanted = config.get("tables")
    if not wanted:
        return []
    if ALL_TABLES in wanted:
        return every_table()
    return list(wanted)
