"""A SQLite table: created with column types, exactly-once, schema evolution.

* full_refresh writes into a staging table that replaces the target in one transaction at
  END, so a failed sync leaves the previous table whole;
* incremental appends; with a primary key (and always in dedup) rows are upserted, keeping
  the latest version by cursor when there is one, else the last one seen;
* every commit writes ``(connection, run_id, last_seq)`` into ``_etlctl_loads`` in the same
  transaction as the rows: a loader restarted after a crash skips what it committed;
* several loaders may write one file at once (two connections, two tables, two cron jobs of
  the same minute): each write transaction starts with ``BEGIN IMMEDIATE``, which waits
  (busy timeout) for the other writer's commit. A deferred ``BEGIN`` would take a read lock
  first and fail at once with "database is locked" when it later needs the write lock while
  another writer holds it, busy timeout or not. A transaction opens at the first write
  after a commit, never while the loader waits for messages.

It writes through apsw rather than the standard library's sqlite3: apsw binds parameters with
far less overhead per value and brings a current SQLite, which more than halves the time of
``executemany``, the loader's hot path (bench/sync_throughput.py). The file format is the same:
any SQLite reads the result.
"""

from __future__ import annotations

import os
from typing import Any

import apsw
import orjson

from connectors.sdk import (
    Column,
    CommittedState,
    ConfigError,
    ConnectorError,
    Loader,
    LoadMark,
    Schema,
)
from connectors.sdk.loader import STREAM_PLACEHOLDER, table_for

SQL_TYPES = {
    "integer": "INTEGER",
    "number": "REAL",
    # BOOLEAN has NUMERIC affinity: True/False are stored as 1/0, which SQLite calls true.
    "boolean": "BOOLEAN",
    "string": "TEXT",
    # Dates, timestamps and JSON are TEXT on purpose: a declared type such as DATE or JSON
    # would get NUMERIC affinity and turn the text "2024" or "123" into numbers.
    "date": "TEXT",
    "timestamp": "TEXT",
    "json": "TEXT",
    # SQLite has no exact decimal type: NUMERIC affinity would round 12345678901234567890 to
    # a REAL. The text keeps every digit; the name says what it holds (TEXT affinity).
    "decimal": "DECIMAL_TEXT",
}
ALL_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})
LOADS_TABLE = "_etlctl_loads"
# The last checkpoint committed per connection id (and stream), in the transaction of its rows.
STATE_TABLE = "_etlctl_state"
# What apsw raises for a row it cannot store: a value it cannot bind (TypeError: a dict in a
# non-JSON column), an integer beyond 64 bits, a constraint of an existing table.
UNSTORABLE = (TypeError, OverflowError, apsw.ConstraintError, apsw.MismatchError)
STAGING_PREFIX = "_etlctl_staging_"
BUSY_TIMEOUT_MS = 60_000  # another writer (a reader's lock) may hold the file a while


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type (https://sqlite.org/datatype3.html 3.1)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


class SqliteLoader(Loader):
    # A REAL holds infinities; SQLite stores a NaN as NULL, so a NaN is a bad record.
    non_finite = {"number": frozenset({"Infinity", "-Infinity"}), "decimal": ALL_NON_FINITE}
    target_name = "SQLite"

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.path: str = config["path"]
        # A table naming {stream} is a rule: one table per stream (for_stream).
        self.per_stream = STREAM_PLACEHOLDER in config["table"]
        self.table: str = config["table"]
        self.key: tuple[str, ...] = tuple(context.sync.primary_key)
        self.cursor_field: str | None = context.sync.cursor_field
        self.full_refresh = context.sync.mode == "full_refresh"
        self.write_table = STAGING_PREFIX + self.table if self.full_refresh else self.table
        self.upsert = bool(self.key)
        self.db: apsw.Connection | None = None
        self.resuming = False
        self._statements: dict[tuple[str, ...], tuple[str, list[int]]] = {}
        self._json_columns: set[str] = set()
        self.load_name = context.connection or self.table

    # --- check -----------------------------------------------------------------------------
    def check(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigError(f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise ConfigError(f"directory {directory} is not writable")
        if os.path.exists(self.path):
            try:
                db = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
            except apsw.Error as exc:
                raise ConfigError(f"cannot open {self.path}: {exc}") from None
            try:
                db.execute("PRAGMA schema_version").fetchall()
            except apsw.Error as exc:
                raise ConfigError(f"{self.path} is not a SQLite database: {exc}") from None
            finally:
                db.close()

    def remove_leftovers(self) -> list[str]:
        staging = STAGING_PREFIX + self.table
        if not os.path.exists(self.path):
            return []
        db = apsw.Connection(self.path)
        try:
            db.setbusytimeout(BUSY_TIMEOUT_MS)
            found = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (staging,)
            ).fetchall()
            if not found:
                return []
            db.execute(f"DROP TABLE {quote(staging)}")
        finally:
            db.close()
        return [f"staging table {staging} in {self.path}"]

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LoadMark:
        try:
            self.db = apsw.Connection(self.path)
            self.db.setbusytimeout(BUSY_TIMEOUT_MS)
        except apsw.Error as exc:
            raise ConnectorError(f"cannot open {self.path}: {exc}") from None
        db = self.db
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (connection TEXT NOT NULL, "
            "run_id TEXT NOT NULL, last_seq INTEGER NOT NULL, records INTEGER NOT NULL, "
            "loaded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (connection, run_id))"
        )
        # fetchall, not fetchone: an unfinished apsw cursor keeps its statement running.
        found = next(iter(db.execute(
            f"SELECT last_seq, records FROM {LOADS_TABLE} WHERE connection = ? AND run_id = ?",
            (self.load_name, self.context.run_id),
        ).fetchall()), None)
        self.resuming = found is not None
        return LoadMark(seq=found[0], records=found[1]) if found else LoadMark()

    def begin(self, schema: Schema) -> None:
        db = self._writing()
        self._json_columns = {c.name for c in schema.columns if c.type == "json"}
        if self.full_refresh and not self.resuming:
            # A staging table left by a failed earlier run is stale: start it afresh.
            db.execute(f"DROP TABLE IF EXISTS {quote(self.write_table)}")
        if self._existing_columns(self.write_table):
            self._refuse_rounding_columns(schema.columns)
            self._add_missing_columns(schema.columns)
        else:
            db.execute(self._create_table_sql(self.write_table, schema.columns))
        if self.upsert:
            self._ensure_unique_key()

    def resume(self, columns: list[str]) -> None:
        existing = self._existing_columns(self.write_table)
        if not existing:
            raise ConnectorError(
                f"cannot resume: table {self.write_table!r} is gone from {self.path}"
            )
        self._json_columns = set()  # unknown after a restart: JSON values are encoded anyway

    def add_columns(self, columns: list[Column]) -> None:
        self._writing()
        self._json_columns |= {c.name for c in columns if c.type == "json"}
        self._add_missing_columns(columns)
        self._statements.clear()

    def write_batch(self, columns: list[str], rows: list[list[Any]]) -> None:
        statement, json_indexes = self._statement(tuple(columns))
        for index in json_indexes:
            for row in rows:
                value = row[index]
                if value is not None:
                    row[index] = orjson.dumps(value).decode()
        db = self._writing()
        # executemany stops at the first row SQLite refuses, with the rows before it applied.
        # A savepoint lets us undo that part and write the batch again row by row, so that
        # the bad row is named (on_error: fail) or rejected alone (skip) instead of the whole
        # batch failing the sync, even under skip.
        db.execute("SAVEPOINT etlctl_batch")
        try:
            db.cursor().executemany(statement, rows)
        except UNSTORABLE:
            db.execute("ROLLBACK TO etlctl_batch")
            self._write_row_by_row(statement, columns, rows)
        db.execute("RELEASE etlctl_batch")

    def _write_row_by_row(self, statement: str, columns: list[str], rows: list[list[Any]]) -> None:
        db = self._db()
        for index, row in enumerate(rows):
            try:
                db.execute(statement, row)  # one statement: all of the row or nothing
            except UNSTORABLE as exc:
                reason = (
                    f"table {self.table!r}: {exc}"
                    if isinstance(exc, apsw.ConstraintError | apsw.MismatchError)
                    else self._describe_unstorable(columns, [row], exc)
                )
                # Raises RecordError (with the row's position) under on_error: fail.
                self.reject(reason, index, dict(zip(columns, row, strict=False)))

    def commit(self, mark: LoadMark) -> None:
        db = self._writing()
        self._record_mark(mark)
        db.execute("COMMIT")

    def for_stream(self, stream: str, context: Any) -> SqliteLoader:
        if not self.per_stream:
            return self
        writer = SqliteLoader({**self.config, "table": table_for(self.table, stream)}, context)
        writer.db, writer.resuming, writer.load_name = self.db, self.resuming, self.load_name
        return writer

    def finish_stream(self) -> None:
        if self.full_refresh:
            # Swap in the same transaction as the last rows and the mark: all or nothing.
            db = self._writing()
            db.execute(f"DROP TABLE IF EXISTS {quote(self.table)}")
            db.execute(f"ALTER TABLE {quote(self.write_table)} RENAME TO {quote(self.table)}")

    def finish_stream_empty(self) -> None:
        if not (self.full_refresh and self._existing_columns(self.table)):
            self.finish_stream()
            return
        # An allowed empty full_refresh: the table keeps its columns and types (a header-only
        # file would declare every column as text), only its rows go.
        db = self._writing()
        db.execute(f"DROP TABLE IF EXISTS {quote(self.write_table)}")
        db.execute(f"DELETE FROM {quote(self.table)}")

    def finish(self, mark: LoadMark) -> None:
        self._writing()
        self._finish_run(mark)

    def _finish_run(self, mark: LoadMark) -> None:
        db = self._db()
        self._record_mark(mark)
        db.execute(
            f"DELETE FROM {LOADS_TABLE} WHERE connection = ? AND run_id <> ?",
            (self.load_name, self.context.run_id),
        )
        db.execute("COMMIT")

    def close(self, failed: bool) -> None:
        if self.db is None:
            return
        if not self.db.getautocommit():  # in a transaction: drop what is not committed
            self.db.execute("ROLLBACK")
        self.db.close()
        self.db = None

    # --- helpers ------------------------------------------------------------------------------
    def _db(self) -> apsw.Connection:
        if self.db is None:
            raise ConnectorError("the sqlite loader is not started")
        return self.db

    def _writing(self) -> apsw.Connection:
        """The connection, inside a write transaction (see the module's docstring)."""
        db = self._db()
        if db.getautocommit():
            db.execute("BEGIN IMMEDIATE")
        return db

    def _record_mark(self, mark: LoadMark) -> None:
        db = self._db()
        db.execute(
            f"INSERT INTO {LOADS_TABLE} (connection, run_id, last_seq, records) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (connection, run_id) DO UPDATE SET "
            "last_seq = excluded.last_seq, records = excluded.records, "
            "loaded_at = CURRENT_TIMESTAMP",
            (self.load_name, self.context.run_id, mark.seq, mark.records),
        )
        if self.keeps_state(mark):
            # The checkpoint, in the transaction of the rows it covers (see committed_state).
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (connection_id TEXT NOT NULL, "
                "stream TEXT NOT NULL, state TEXT NOT NULL, run_id TEXT NOT NULL, "
                "committed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, "
                "PRIMARY KEY (connection_id, stream))"
            )
            db.execute(
                f"INSERT INTO {STATE_TABLE} (connection_id, stream, state, run_id) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (connection_id, stream) DO UPDATE SET "
                "state = excluded.state, run_id = excluded.run_id, "
                "committed_at = CURRENT_TIMESTAMP",
                (self.context.connection_id, mark.stream, orjson.dumps(mark.state).decode(),
                 self.context.run_id),
            )

    def committed_state(self) -> CommittedState:
        if not os.path.exists(self.path):
            return CommittedState({})
        try:
            db = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
            db.setbusytimeout(BUSY_TIMEOUT_MS)
            try:
                found = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (STATE_TABLE,),
                ).fetchall()
                rows = db.execute(
                    f"SELECT stream, state, run_id FROM {STATE_TABLE} WHERE connection_id = ?",
                    (self.context.connection_id,),
                ).fetchall() if found else []
            finally:
                db.close()
        except apsw.Error as exc:
            raise ConnectorError(f"cannot read the committed state in {self.path}: {exc}") from None
        return CommittedState(
            {stream: {"state": orjson.loads(state), "run_id": run_id}
             for stream, state, run_id in rows}
        )

    def _existing_columns(self, table: str) -> list[str]:
        rows = self._db().execute(f"PRAGMA table_info({quote(table)})").fetchall()
        return [row[1] for row in rows]

    def _create_table_sql(self, table: str, columns: list[Column]) -> str:
        if not columns:
            # SQLite needs a column; an empty source still produces a (placeholder) table.
            return f"CREATE TABLE IF NOT EXISTS {quote(table)} (_etlctl_empty TEXT)"
        definitions = [f"{quote(c.name)} {SQL_TYPES.get(c.type, 'TEXT')}" for c in columns]
        names = {c.name for c in columns}
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ConnectorError(f"primary key column(s) {missing} are not in the source")
        if self.key:
            definitions.append(f"PRIMARY KEY ({', '.join(quote(k) for k in self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(definitions)})"

    def _refuse_rounding_columns(self, columns: list[Column]) -> None:
        """An existing column whose affinity would turn decimal text into a REAL (rounding
        it) cannot take a decimal column of the source."""
        rows = self._db().execute(f"PRAGMA table_info({quote(self.write_table)})").fetchall()
        declared = {row[1]: row[2] or "" for row in rows}
        for column in columns:
            if (
                column.type == "decimal"
                and column.name in declared
                and affinity(declared[column.name]) not in ("TEXT", "BLOB")
            ):
                raise ConnectorError(
                    f"column {column.name!r} of table {self.write_table!r} is "
                    f"{declared[column.name] or 'untyped'}, which would round the source's "
                    "decimal values: run a full_refresh (the column becomes DECIMAL_TEXT) "
                    "or change its type to TEXT"
                )

    def _add_missing_columns(self, columns: list[Column]) -> None:
        existing = set(self._existing_columns(self.write_table))
        for column in columns:
            if column.name not in existing:
                self._db().execute(
                    f"ALTER TABLE {quote(self.write_table)} ADD COLUMN "
                    f"{quote(column.name)} {SQL_TYPES.get(column.type, 'TEXT')}"
                )

    def _ensure_unique_key(self) -> None:
        """Upserts need a unique index on the key; tables we create have one already."""
        db = self._db()
        table = quote(self.write_table)
        info = db.execute(f"PRAGMA table_info({table})").fetchall()
        pk_columns = tuple(row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0)
        if set(pk_columns) == set(self.key):
            return
        for index in db.execute(f"PRAGMA index_list({table})").fetchall():
            if index[2]:  # unique
                cols = db.execute(f"PRAGMA index_info({quote(index[1])})").fetchall()
                if {row[2] for row in cols} == set(self.key):
                    return
        try:
            db.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {quote('_etlctl_key_' + self.write_table)} "
                f"ON {table} ({', '.join(quote(k) for k in self.key)})"
            )
        except apsw.ConstraintError:
            raise ConnectorError(
                f"table {self.write_table!r} already holds several rows per primary key "
                f"{list(self.key)}: deduplicate it or use full_refresh"
            ) from None

    def _statement(self, columns: tuple[str, ...]) -> tuple[str, list[int]]:
        cached = self._statements.get(columns)
        if cached is None:
            cached = (self._insert_sql(columns), self._json_indexes(columns))
            self._statements[columns] = cached
        return cached

    def _json_indexes(self, columns: tuple[str, ...]) -> list[int]:
        if self.schema is not None:
            self._json_columns |= {c.name for c in self.schema.columns if c.type == "json"}
        return [i for i, name in enumerate(columns) if name in self._json_columns]

    def _insert_sql(self, columns: tuple[str, ...]) -> str:
        table = quote(self.write_table)
        names = ", ".join(quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        if not self.upsert:
            return sql
        updates = [c for c in columns if c not in self.key]
        conflict = f" ON CONFLICT ({', '.join(quote(k) for k in self.key)})"
        if not updates:
            return sql + conflict + " DO NOTHING"
        sql += conflict + " DO UPDATE SET " + ", ".join(
            f"{quote(c)} = excluded.{quote(c)}" for c in updates
        )
        if self.cursor_field and self.cursor_field in columns:
            # The latest version wins: an older one arriving later does not overwrite it.
            cursor = quote(self.cursor_field)
            sql += f" WHERE {table}.{cursor} IS NULL OR excluded.{cursor} >= {table}.{cursor}"
        return sql

    @staticmethod
    def _describe_unstorable(columns: list[str], rows: list[list[Any]], exc: Exception) -> str:
        for row in rows:
            for name, value in zip(columns, row, strict=False):
                if isinstance(value, dict | list):
                    return f"column {name!r}: cannot store a JSON {type(value).__name__} in it"
                if isinstance(value, int) and not -(2**63) <= value < 2**63:
                    return f"column {name!r}: integer {value} does not fit in 64 bits"
        return f"cannot store a batch: {exc}"
