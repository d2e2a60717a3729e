"""A PostgreSQL table or query, streamed through a server-side (named) cursor.

The server keeps the result; the extractor fetches ``fetch_size`` rows per round trip, so
memory holds one chunk whatever the table's size. Column types follow the result's type
OIDs: integers, numeric and floats (``number``), boolean, text, date, timestamp and
timestamptz (ISO 8601 strings; the session runs in UTC so timestamptz carry ``+00:00``),
json/jsonb and arrays (``json``); any other type travels as its text form.

Incremental syncs read ``WHERE cursor >= %s ORDER BY cursor`` so that the SDK can place
checkpoints between batches. The password never appears in a message or a log line.

Streams: ``table`` is one stream named after the table, ``query`` one stream named
``query``; ``tables`` (a list of names in ``schema``, or ``["*"]`` for every table and view
of it) makes one stream per table, each read with its own mode, cursor and state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.types.json
from psycopg import sql

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
from connectors.sdk.values import big_number_in, float_holds, loads_exact
from connectors.sdk.wire import printable, spelling_of

log = logging.getLogger("connectors.postgres")

CURSOR_NAME = "etlctl_extract"
# For the percentage shown: a table's planner estimate (pg_class.reltuples) when it is at
# least this large, else an exact count(*), which the server gives up after the budget.
SMALL_TABLE_ROWS = 100_000
COUNT_BUDGET_MS = 1000
# Type OIDs (pg_type) of the built-in types, by protocol column type.
INTEGER_OIDS = {20, 21, 23, 26}  # int8, int2, int4, oid
NUMBER_OIDS = {700, 701}  # float4, float8
TYPE_OIDS: dict[int, str] = {
    **dict.fromkeys(INTEGER_OIDS, "integer"),
    **dict.fromkeys(NUMBER_OIDS, "number"),
    1700: "decimal",  # numeric: exact, any precision
    16: "boolean",
    25: "string", 1043: "string", 1042: "string", 19: "string",  # text, varchar, bpchar, name
    1082: "date",
    1114: "timestamp", 1184: "timestamp",
    114: "json", 3802: "json",
}

Converter = Callable[[Any], Any]


def connection_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """libpq connection settings from a postgres config (shared with the loader)."""
    settings = {
        "host": config["host"],
        "port": config["port"],
        "dbname": config["dbname"],
        "user": config["user"],
        "sslmode": config["sslmode"],
        "connect_timeout": config["connect_timeout"],
        "application_name": "etlctl",
    }
    if config.get("password") is not None:
        settings["password"] = config["password"]
    return settings


def connect(config: dict[str, Any], autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open a connection; errors name host, port, database and user, never the password."""
    where = f"{config['user']}@{config['host']}:{config['port']}/{config['dbname']}"
    try:
        connection = psycopg.connect(**connection_kwargs(config), autocommit=autocommit)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        secret = config.get("password")
        if secret:
            reason = reason.replace(secret, "***")
        raise ConnectorError(f"cannot connect to PostgreSQL as {where}: {reason}") from None
    connection.execute("SET TIME ZONE 'UTC'")
    # psycopg's json.loads would round long numbers in json/jsonb values and make floats of
    # 1e400: parse them exactly (and refuse what cannot travel, see _checked_json).
    psycopg.types.json.set_json_loads(_load_json, connection)
    return connection


def _decimal(value: Decimal) -> str:
    return str(value) if value.is_finite() else spelling_of(value)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime | time) else value


def _text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return value if isinstance(value, str) else str(value)


def _json_value(value: Any) -> Any:
    """Arrays of any element type arrive as lists; make their elements JSON values. A number
    JSON cannot carry exactly (NaN, 1e400 in a numeric[]) is a ValueError: a bad record."""
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, Decimal):
        converted = float(value)
        if not (value.is_finite() and float_holds(str(value), converted)):
            raise ValueError(f"the number {value} cannot be kept exactly inside a JSON value")
        return converted
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{spelling_of(value)} cannot be kept inside a JSON value")
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return value


class _InexactJson:
    """A json/jsonb value holding a number JSON values cannot carry exactly on the wire."""

    def __init__(self, found: str) -> None:
        self.found = found


def _load_json(data: bytes | str) -> Any:
    value, exactly = loads_exact(data)
    if exactly:
        found = big_number_in([value])
        if found is not None:
            return _InexactJson(found)
    return value


def _checked_json(value: Any) -> Any:
    if isinstance(value, _InexactJson):
        raise ValueError(f"the number {value.found} cannot be kept exactly inside a JSON value")
    return value


# What each column type needs done to psycopg's Python values (None: nothing).
CONVERTERS: dict[str, Converter | None] = {
    "integer": None,
    "number": None,  # NaN and infinities travel as such (connectors.sdk.wire)
    "decimal": _decimal,
    "boolean": None,
    "string": None,
    "date": _iso,
    "timestamp": _iso,
    "json": _checked_json,  # json/jsonb arrive decoded by psycopg (with loads_exact)
}


def column_type(type_oid: int, is_array: bool) -> str:
    if is_array:
        return "json"
    return TYPE_OIDS.get(type_oid, "string")


def converter_for(type_oid: int, is_array: bool) -> Converter | None:
    if is_array:
        return _json_value
    if type_oid not in TYPE_OIDS:
        return _text  # uuid, interval, inet, bytea, ...: their text form
    return CONVERTERS[TYPE_OIDS[type_oid]]




class PostgresExtractor(Extractor):
    stream_name = QUERY_STREAM
    sorted_by_cursor = True
    filters_by_cursor = True

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.connection: psycopg.Connection[Any] | None = None
        self.rows_read = 0
        self.rows_expected: int | None = None
        self.table: str | None = config.get("table")  # the table being read, if any

    def check(self) -> None:
        with connect(self.config) as connection:
            try:
                for table in self._table_names(connection) or [None]:
                    self.table = table
                    connection.execute(
                        sql.SQL("SELECT * FROM ({}) AS source LIMIT 0").format(self._source_sql())
                    )
            except psycopg.Error as exc:
                raise ConfigError(f"cannot read the source: {_first_line(exc)}") from None

    # --- streams -----------------------------------------------------------------------------
    def _table_names(self, connection: psycopg.Connection[Any]) -> list[str]:
        """The tables this source reads ([] for a query), as the config names them."""
        def every_table() -> list[str]:
            rows = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name NOT LIKE '\\_etlctl\\_%%' ORDER BY table_name",
                [self.config["schema"]],
            ).fetchall()
            return [row[0] for row in rows]

        return selected_tables(self.config, every_table)

    def streams(self) -> list[StreamInfo]:
        with connect(self.config) as connection:
            tables = self._table_names(connection)
            if not tables:
                self.connection = connection
                try:
                    cursor = connection.execute(
                        sql.SQL("SELECT * FROM ({}) AS source LIMIT 0").format(self._source_sql())
                    )
                    arrays = self._array_oids({d.type_code for d in cursor.description or []})
                    columns = [Column(d.name, column_type(d.type_code, d.type_code in arrays))
                               for d in cursor.description or []]
                finally:
                    self.connection = None
                return [StreamInfo(QUERY_STREAM, columns)]
            return [self._describe(connection, table) for table in tables]

    def _describe(self, connection: psycopg.Connection[Any], table: str) -> StreamInfo:
        schema = self.config["schema"]
        rows = connection.execute(
            "SELECT a.attname, a.atttypid, t.typcategory = 'A' FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(%s) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [sql.Identifier(schema, table).as_string(connection)],
        ).fetchall()
        if not rows:
            raise ConfigError(f"table {schema}.{table} does not exist")
        columns = [Column(name, column_type(oid, is_array)) for name, oid, is_array in rows]
        key = [
            row[0]
            for row in connection.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) "
                "AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                [sql.Identifier(schema, table).as_string(connection)],
            ).fetchall()
        ]
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
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    # --- reading ---------------------------------------------------------------------------
    def read(self, out: RecordStream) -> None:
        self.connection = self.connection or connect(self.config)
        self.rows_expected = self._estimate_rows()
        size = self.config["fetch_size"]
        # A named cursor lives on the server; withhold=False keeps it inside this transaction.
        cursor = self.connection.cursor(name=CURSOR_NAME)
        cursor.itersize = size
        statement, parameters = self._select()
        try:
            cursor.execute(statement, parameters)
        except psycopg.Error as exc:
            raise ConnectorError(f"cannot read the source: {_first_line(exc)}") from None
        columns, active = self._columns(cursor)
        out.declare(columns)
        while True:
            try:
                chunk = cursor.fetchmany(size)
            except psycopg.Error as exc:
                raise ConnectorError(f"reading failed: {_first_line(exc)}",
                                     self.position()) from None
            if not chunk:
                break
            rows = self._convert(chunk, active, columns, self.rows_read, out)
            out.write_rows(rows, typed=True)  # int8 is 64 bits; numeric became text
            self.rows_read += len(chunk)
        cursor.close()
        self.connection.rollback()  # read-only: nothing to commit

    def _source_sql(self) -> sql.Composable:
        table = self.table
        if table:
            return sql.SQL("SELECT * FROM {}").format(sql.Identifier(self.config["schema"], table))
        return sql.SQL(self.config["query"].strip().rstrip(";"))

    def _estimate_rows(self) -> int | None:
        """What this sync reads, cheaply: the planner's row estimate of a large table read
        whole, else count(*) within COUNT_BUDGET_MS; None when neither is at hand. On a
        connection of its own, so that a cancelled count leaves the read untouched."""
        statement, parameters = self._select(ordered=False)
        table = self.table
        try:
            with connect(self.config, autocommit=True) as connection:
                if table and not parameters:
                    row = connection.execute(
                        "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                        [self.config["schema"], table],
                    ).fetchone()
                    if row and row[0] is not None and row[0] >= SMALL_TABLE_ROWS:
                        return int(row[0])
                connection.execute(f"SET statement_timeout = {COUNT_BUDGET_MS}")
                counted = connection.execute(
                    sql.SQL("SELECT count(*) FROM ({}) AS counted").format(statement), parameters
                ).fetchone()
                return int(counted[0]) if counted else None
        except (psycopg.Error, ConnectorError) as exc:
            log.info("no row estimate for the progress display: %s", _first_line(exc))
            return None

    def _select(self, ordered: bool = True) -> tuple[sql.Composable, list[Any]]:
        statement = sql.SQL("SELECT * FROM ({}) AS source").format(self._source_sql())
        cursor_field = self.context.sync.cursor_field
        if cursor_field is None or self.context.sync.mode == "full_refresh":
            return statement, []
        cursor = sql.Identifier(cursor_field)
        start = self.context.start_cursor
        parameters: list[Any] = []
        if start is not None:
            statement += sql.SQL(" WHERE {} >= %s").format(cursor)
            parameters.append(start)
        if not ordered:
            return statement, parameters
        # Cursor order lets checkpoints fall between batches; NULL cursors sort last.
        return statement + sql.SQL(" ORDER BY {}").format(cursor), parameters

    def _columns(
        self, cursor: psycopg.ServerCursor[Any]
    ) -> tuple[list[Column], list[tuple[int, Converter]]]:
        """The columns and, for those whose values need it, a converter by index."""
        description = cursor.description or []
        names = [d.name for d in description]
        if len(set(names)) != len(names):
            raise ConfigError(f"the source has duplicate column names: {names}")
        arrays = self._array_oids({d.type_code for d in description})
        columns = [Column(d.name, column_type(d.type_code, d.type_code in arrays))
                   for d in description]
        converters = [(i, converter_for(d.type_code, d.type_code in arrays))
                      for i, d in enumerate(description)]
        return columns, [(i, convert) for i, convert in converters if convert is not None]

    def _array_oids(self, oids: set[int]) -> set[int]:
        assert self.connection is not None
        with self.connection.cursor() as lookup:
            lookup.execute(
                "SELECT oid FROM pg_type WHERE oid = ANY(%s) AND typcategory = 'A'", [list(oids)]
            )
            return {row[0] for row in lookup.fetchall()}

    @staticmethod
    def _convert(
        chunk: list[tuple[Any, ...]],
        active: list[tuple[int, Converter]],
        columns: list[Column],
        rows_before: int,
        out: RecordStream,
    ) -> list[Any]:
        if not active:
            return chunk
        rows = []
        for offset, raw in enumerate(chunk):
            row = list(raw)
            try:
                for index, convert in active:
                    value = row[index]
                    if value is not None:
                        row[index] = convert(value)
            except ValueError as exc:
                out.reject(
                    f"column {columns[index].name!r}: {exc}",
                    {"row": rows_before + offset + 1},
                    raw={c.name: printable(v) for c, v in zip(columns, raw, strict=True)},
                )
                continue
            rows.append(row)
        return rows


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
