"""A SQLite table or query, read in chunks of ``max_records`` rows.

Column types come from the declared types (``PRAGMA table_info`` for a table, using SQLite's
affinity rules plus BOOLEAN, DATE, DATETIME/TIMESTAMP and JSON), and for columns without a
usable declaration (expressions of a query, untyped columns) from the values of the first
chunk. SQLite lets any column hold any value: a value that does not fit its column's type is
a bad record (``on_error``), never a silently changed one.

Incremental syncs read ``WHERE cursor >= ?`` ordered by the cursor, so the SDK can place
checkpoints between batches.

Streams: ``table`` is one stream named after the table, ``query`` one stream named
``query``; ``tables`` (a list of names, or ``["*"]`` for every table of the file) makes one
stream per table, each read with its own mode, cursor and state.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import orjson

from connectors.extractors.sql_tables import CURSOR_TYPES, QUERY_STREAM, selected_tables
from connectors.sdk import (
    Column,
    ConfigError,
    ConnectorError,
    Extractor,
    ReadProgress,
    RecordStream,
    StreamInfo,
)
from connectors.sdk.values import json_type_of, merge_types, parse_decimal, parse_json
from connectors.sdk.wire import spelling_of

Converter = Callable[[Any], Any]
# count(*) of what a sync reads, for the percentage shown: given up past this (a huge table,
# a slow query), and the user sees counters without a percentage.
COUNT_BUDGET_SECONDS = 0.5


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def type_of_declaration(declared: str) -> str | None:
    """The column type of a declared SQLite type; None when the values must decide."""
    upper = declared.upper()
    if "INT" in upper:
        return "integer"
    if "DECIMAL" in upper or "NUMERIC" in upper:
        return "decimal"  # exact (DECIMAL_TEXT is what the sqlite loader makes of decimal)
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "string"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "number"
    if "BOOL" in upper:
        return "boolean"
    if "DATETIME" in upper or "TIMESTAMP" in upper:
        return "timestamp"
    if "DATE" in upper:
        return "date"
    if "JSON" in upper:
        return "json"
    return None


def _as_integer(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{value!r} is not an integer")


def _as_number(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        if float(value) != value:
            raise ValueError("a 64-bit float cannot hold it exactly: declare the column DECIMAL")
        return float(value)
    raise ValueError(f"{value!r} is not a number")


def _as_decimal(value: Any) -> str:
    """Exact decimal text: an INTEGER as it is, a REAL as its shortest repr, TEXT checked."""
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return repr(value) if math.isfinite(value) else spelling_of(value)
    if isinstance(value, str):
        return parse_decimal(value)
    raise ValueError(f"{value!r} is not a decimal number")


def _as_boolean(value: Any) -> bool:
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{value!r} is not a boolean")


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _as_date(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date")
    date.fromisoformat(value)
    return value


def _as_timestamp(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a timestamp")
    datetime.fromisoformat(value)
    return value


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        return parse_json(value)  # numbers kept exactly, or a ValueError
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("JSON has no NaN or infinity")
    return value  # a number stored in a JSON column is a JSON number


CONVERTERS: dict[str, Converter] = {
    "integer": _as_integer,
    "number": _as_number,
    "decimal": _as_decimal,
    "boolean": _as_boolean,
    "string": _as_string,
    "date": _as_date,
    "timestamp": _as_timestamp,
    "json": _as_json,
}


# Python types that need no conversion for a column type (sqlite3 returns int, float, str,
# bytes and None).
PLAIN_TYPES: dict[str, set[type]] = {
    "integer": {int, type(None)},
    "number": {float, type(None)},
    "string": {str, type(None)},
}


def _value_type(value: Any) -> str | None:
    return "string" if isinstance(value, bytes) else json_type_of(value)


class SqliteExtractor(Extractor):
    stream_name = QUERY_STREAM
    sorted_by_cursor = True
    filters_by_cursor = True

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.db: sqlite3.Connection | None = None
        self.rows_read = 0
        self.rows_expected: int | None = None
        self.table: str | None = config.get("table")  # the table being read, if any

    def check(self) -> None:
        db = self._connect()
        try:
            for table in self._table_names(db) or [None]:
                self.table = table
                db.execute(f"SELECT * FROM ({self._source_sql()}) LIMIT 0")
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.config['path']}: {exc}") from None
        finally:
            db.close()

    # --- streams -----------------------------------------------------------------------------
    def _table_names(self, db: sqlite3.Connection) -> list[str]:
        """The tables this source reads ([] for a query), as the config names them."""
        def every_table() -> list[str]:
            rows = db.execute(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT "
                "LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_etlctl\\_%' ESCAPE '\\' "
                "ORDER BY name"
            ).fetchall()
            return [row[0] for row in rows]

        return selected_tables(self.config, every_table)

    def streams(self) -> list[StreamInfo]:
        db = self._connect()
        try:
            tables = self._table_names(db)
            if not tables:
                cursor = db.execute(f"SELECT * FROM ({self._source_sql()}) LIMIT 0")
                names = [description[0] for description in cursor.description]
                return [StreamInfo(QUERY_STREAM, [Column(name) for name in names])]
            return [self._describe(db, table) for table in tables]
        finally:
            db.close()

    @staticmethod
    def _describe(db: sqlite3.Connection, table: str) -> StreamInfo:
        info = db.execute(f"PRAGMA table_info({quote(table)})").fetchall()
        if not info:
            raise ConfigError(f"table {table!r} does not exist")
        columns = [Column(row[1], type_of_declaration(row[2] or "") or "string") for row in info]
        key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5] > 0]
        cursors = [column.name for column in columns if column.type in CURSOR_TYPES]
        return StreamInfo(table, columns, key, cursors)

    def read_stream(self, stream: str, out: RecordStream) -> None:
        self.table = None if stream == QUERY_STREAM and not self.config.get("tables") else stream
        self.rows_read = 0
        self.read(out)

    def position(self) -> dict[str, Any]:
        return {"row": self.rows_read}

    def progress(self) -> ReadProgress | None:
        if self.rows_expected is None:
            return None
        return ReadProgress(
            done=self.rows_read, total=max(self.rows_expected, self.rows_read), unit="records"
        )

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # --- reading ---------------------------------------------------------------------------
    def read(self, out: RecordStream) -> None:
        self.db = self.db or self._connect()
        self.rows_expected = self._count_rows()
        sql, parameters = self._select()
        try:
            cursor = self.db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise ConnectorError(f"{self.config['path']}: {exc}") from None
        names = [description[0] for description in cursor.description]
        if len(set(names)) != len(names):
            raise ConfigError(f"the source has duplicate column names: {names}")
        size = self.context.batch.max_records
        chunk = cursor.fetchmany(size)
        columns = self._columns(names, chunk)
        out.declare(columns)
        converters = [CONVERTERS[column.type] for column in columns]
        while chunk:
            # SQLite integers are 64 bits; each value is of its column's type once converted.
            out.write_rows(self._convert(chunk, columns, converters, out), typed=True)
            self.rows_read += len(chunk)
            chunk = cursor.fetchmany(size)

    def _connect(self) -> sqlite3.Connection:
        path = self.config["path"]
        if not os.path.isfile(path):
            raise ConfigError(f"file not found: {path}")
        try:
            # Read-only: an extractor never changes its source (nor creates a missing file).
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open {path}: {exc}") from None

    def _source_sql(self) -> str:
        if self.table:
            return f"SELECT * FROM {quote(self.table)}"
        return self.config["query"].strip().rstrip(";")

    def _count_rows(self) -> int | None:
        """How many rows this sync reads, when SQLite can count them within the budget."""
        assert self.db is not None
        sql, parameters = self._select(ordered=False)
        deadline = time.monotonic() + COUNT_BUDGET_SECONDS
        self.db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            return int(self.db.execute(f"SELECT count(*) FROM ({sql})", parameters).fetchone()[0])
        except sqlite3.Error:  # interrupted past the budget, or a query count(*) cannot wrap
            return None
        finally:
            self.db.set_progress_handler(None, 0)

    def _select(self, ordered: bool = True) -> tuple[str, list[Any]]:
        sql = f"SELECT * FROM ({self._source_sql()}) AS source"
        cursor_field = self.context.sync.cursor_field
        if cursor_field is None or self.context.sync.mode == "full_refresh":
            return sql, []
        cursor = quote(cursor_field)
        start = self.context.start_cursor
        parameters = []
        if start is not None:
            sql += f" WHERE {cursor} >= ?"
            parameters.append(start)
        # Cursor order lets checkpoints fall between batches; NULL cursors come first in
        # SQLite and are not read by later incremental syncs (see docs/connectors.md).
        return (sql + f" ORDER BY {cursor}" if ordered else sql), parameters

    def _columns(self, names: list[str], sample: list[tuple[Any, ...]]) -> list[Column]:
        declared = self._declared_types()
        columns = []
        for index, name in enumerate(names):
            kind = type_of_declaration(declared.get(name, ""))
            if kind is None:
                for row in sample:
                    kind = merge_types(kind, _value_type(row[index]))
            columns.append(Column(name, kind or "string"))
        return columns

    def _declared_types(self) -> dict[str, str]:
        table = self.table
        if not table or self.db is None:
            return {}  # a query's columns have no declared types the sqlite3 module shows
        rows = self.db.execute(f"PRAGMA table_info({quote(table)})").fetchall()
        return {row[1]: row[2] or "" for row in rows}

    def _convert(
        self,
        chunk: list[tuple[Any, ...]],
        columns: list[Column],
        converters: list[Converter],
        out: RecordStream,
    ) -> list[Any]:
        work = self._columns_to_convert(chunk, columns)
        if not work:
            return chunk  # every value already has its column's type: the common case
        rows: list[Any] = []
        for offset, raw in enumerate(chunk):
            row = list(raw)
            try:
                for index in work:
                    if row[index] is not None:
                        row[index] = converters[index](row[index])
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                column = columns[index]
                out.reject(
                    f"column {column.name!r}: cannot read {raw[index]!r} as {column.type} ({exc})",
                    {"row": self.rows_read + offset + 1},
                    raw=dict(zip([c.name for c in columns], raw, strict=True)),
                )
                continue
            rows.append(row)
        return rows

    @staticmethod
    def _columns_to_convert(chunk: list[tuple[Any, ...]], columns: list[Column]) -> list[int]:
        work = []
        for index, column in enumerate(columns):
            plain = PLAIN_TYPES.get(column.type)
            if plain is None or not {type(row[index]) for row in chunk} <= plain:
                work.append(index)
        return work
