"""A PostgreSQL table in a schema: created with column types, loaded with COPY, exactly-once.

* full_refresh COPYs into ``_etlctl_staging_<table>``, which replaces the table (DROP +
  RENAME) in the transaction of the last rows at END: a failed sync leaves the previous table
  whole, readers see the old table or the new one;
* rows go in one text COPY per batch, formatted column by column (pg_copy_text), or row by
  row through psycopg when a value needs its adaptation;
* incremental appends with COPY; with a primary key (and always in dedup) each batch is
  COPYed into a temporary table and merged with ``INSERT ... SELECT DISTINCT ON (key) ...
  ON CONFLICT (key) DO UPDATE``, keeping the latest version by cursor when there is one, else
  the last one seen;
* every commit writes ``(connection, run_id, last_seq)`` into ``<schema>._etlctl_loads`` in
  the same transaction as the rows: a loader restarted after a crash skips what it committed
  (the same scheme as the sqlite loader);
* a new source column is added with ``ALTER TABLE ... ADD COLUMN``; a value its column cannot
  store is a bad record naming the column (``on_error: skip`` rejects that row only: the
  batch is COPYed again without it, from a savepoint).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql

from connectors.extractors.postgres import connect
from connectors.loaders.pg_copy_text import format_batch
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
    "integer": "BIGINT",
    "number": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "string": "TEXT",
    "date": "DATE",
    # Timestamps without an offset are read as UTC (the session's time zone).
    "timestamp": "TIMESTAMPTZ",
    "json": "JSONB",
    "decimal": "NUMERIC",  # exact, any precision; NaN and (PostgreSQL 14+) infinities too
}
# Existing column types that would round values of a source column type (silently).
ROUNDING_TYPES = {"decimal": {"float4", "float8"}, "number": {"float4"}}
LOADS_TABLE = "_etlctl_loads"
# The last checkpoint committed per connection id (and stream), in the transaction of its rows.
STATE_TABLE = "_etlctl_state"
STAGING_PREFIX = "_etlctl_staging_"
BATCH_TABLE = "_etlctl_batch"
ORDINAL = "_etlctl_ord"
_COPY_CONTEXT = re.compile(r"COPY [^,]*, line (?P<line>\d+)(?:, column (?P<column>[^:]+))?")


class _BadRow(Exception):
    """A row that could not be sent (raised inside the COPY block to abort it)."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


class PostgresLoader(Loader):
    # double precision and numeric store NaN and infinities (numeric's since PostgreSQL 14:
    # on an older server COPY refuses them, a bad record naming the column).
    non_finite = {
        kind: frozenset({"NaN", "Infinity", "-Infinity"}) for kind in ("number", "decimal")
    }
    target_name = "PostgreSQL"

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.schema_name: str = config["schema"]
        # A table naming {stream} is a rule: one table per stream (for_stream).
        self.per_stream = STREAM_PLACEHOLDER in config["table"]
        self.table: str = config["table"]
        self.key: tuple[str, ...] = tuple(context.sync.primary_key)
        self.cursor_field: str | None = context.sync.cursor_field
        self.full_refresh = context.sync.mode == "full_refresh"
        if context.sync.mode == "dedup" and not self.key:
            raise ConfigError("mode dedup needs a primary key")
        self.write_table = STAGING_PREFIX + self.table if self.full_refresh else self.table
        self.upsert = bool(self.key)
        self.skip = context.sync.on_error == "skip"
        self.load_name = context.connection or self.table
        self.connection: psycopg.Connection[Any] | None = None
        self.resuming = False
        self.json_columns: set[str] = set()

    # --- check -----------------------------------------------------------------------------
    def check(self) -> None:
        with connect(self.config) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema_name]
            ).fetchone()
            if found is None:
                raise ConfigError(f"schema {self.schema_name!r} does not exist")

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LoadMark:
        self.connection = connect(self.config)
        db = self.connection
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema()))
        db.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (connection TEXT NOT NULL, run_id TEXT NOT NULL, "
                "last_seq BIGINT NOT NULL, records BIGINT NOT NULL, "
                "loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (connection, run_id))"
            ).format(self._name(LOADS_TABLE))
        )
        if not self.full_refresh:
            db.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (connection_id TEXT NOT NULL, "
                    "stream TEXT NOT NULL, state TEXT NOT NULL, run_id TEXT NOT NULL, "
                    "committed_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
                    "PRIMARY KEY (connection_id, stream))"
                ).format(self._name(STATE_TABLE))
            )
        db.commit()
        found = db.execute(
            sql.SQL("SELECT last_seq, records FROM {} WHERE connection = %s AND run_id = %s")
            .format(self._name(LOADS_TABLE)),
            [self.load_name, self.context.run_id],
        ).fetchone()
        self.resuming = found is not None
        return LoadMark(seq=found[0], records=found[1]) if found else LoadMark()

    def begin(self, schema: Schema) -> None:
        db = self._db()
        if self.full_refresh and not self.resuming:
            # A staging table left by a failed earlier run is stale: start it afresh.
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._name(self.write_table)))
        if self._existing_columns():
            self._refuse_rounding_columns(schema.columns)
            self._add_missing_columns(schema.columns)
        else:
            self._create_table(schema.columns)
        self._after_schema_change()
        if self.upsert:
            self._ensure_unique_key()

    def resume(self, columns: list[str]) -> None:
        if not self._existing_columns():
            raise ConnectorError(
                f"cannot resume: table {self.schema_name}.{self.write_table} is gone"
            )
        self._after_schema_change()

    def add_columns(self, columns: list[Column]) -> None:
        self._add_missing_columns(columns)
        self._after_schema_change()

    def write_batch(self, columns: list[str], rows: list[list[Any]]) -> None:
        pending = self._prepare(columns, rows)
        target = BATCH_TABLE if self.upsert else self.write_table
        while pending:
            bad = self._copy(target, columns, pending)
            if bad is None:
                break
            index, row = pending.pop(bad.position)
            self.reject(bad.reason, index, dict(zip(columns, row, strict=True)))
        if self.upsert:
            self._merge(columns)

    def commit(self, mark: LoadMark) -> None:
        self._record_mark(mark)
        self._db().commit()

    def for_stream(self, stream: str, context: Any) -> PostgresLoader:
        if not self.per_stream:
            return self
        writer = PostgresLoader({**self.config, "table": table_for(self.table, stream)}, context)
        writer.connection, writer.resuming = self.connection, self.resuming
        writer.load_name = self.load_name
        return writer

    def finish_stream(self) -> None:
        if self.full_refresh:
            self._swap_staging_in()

    def finish_stream_empty(self) -> None:
        if not (self.full_refresh and self._existing_columns(self.table)):
            self.finish_stream()
            return
        # An allowed empty full_refresh: the table keeps its columns and types (and the views
        # on it), only its rows go; in the transaction of the mark.
        db = self._db()
        db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._name(self.write_table)))
        db.execute(sql.SQL("DELETE FROM {}").format(self._name(self.table)))

    def finish(self, mark: LoadMark) -> None:
        self._finish_run(mark)

    def _finish_run(self, mark: LoadMark) -> None:
        db = self._db()
        self._record_mark(mark)
        db.execute(
            sql.SQL("DELETE FROM {} WHERE connection = %s AND run_id <> %s")
            .format(self._name(LOADS_TABLE)),
            [self.load_name, self.context.run_id],
        )
        db.commit()

    def remove_leftovers(self) -> list[str]:
        staging = STAGING_PREFIX + self.table
        db = connect(self.config)
        try:
            found = db.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                [self.schema_name, staging],
            ).fetchone()
            if found is None:
                return []
            db.execute(sql.SQL("DROP TABLE {}").format(self._name(staging)))
            db.commit()
        finally:
            db.close()
        return [f"staging table {self.schema_name}.{staging}"]

    def close(self, failed: bool) -> None:
        if self.connection is None:
            return
        try:
            self.connection.rollback()
        finally:
            self.connection.close()
            self.connection = None

    # --- names -------------------------------------------------------------------------------
    def _schema(self) -> sql.Identifier:
        return sql.Identifier(self.schema_name)

    def _name(self, table: str) -> sql.Identifier:
        return sql.Identifier(self.schema_name, table)

    def _db(self) -> psycopg.Connection[Any]:
        if self.connection is None:
            raise ConnectorError("the postgres loader is not started")
        return self.connection

    # --- tables ------------------------------------------------------------------------------
    def _existing_columns(self, table: str | None = None) -> dict[str, str]:
        """Column name -> type name (pg_type.typname) of ``table`` (default: the table
        written to), {} if none."""
        rows = self._db().execute(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [self._qualified(table or self.write_table)],
        ).fetchall()
        return {name: kind for name, kind in rows}

    def _qualified(self, table: str) -> str:
        return self._name(table).as_string(self._db())

    def _create_table(self, columns: list[Column]) -> None:
        names = {c.name for c in columns}
        missing = [k for k in self.key if k not in names]
        if missing and columns:
            raise ConnectorError(f"primary key column(s) {missing} are not in the source")
        definitions = [
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(SQL_TYPES[c.type]))
            for c in columns
        ]
        if self.key and columns:
            definitions.append(
                sql.SQL("CONSTRAINT {} PRIMARY KEY ({})").format(
                    sql.Identifier(_constraint_name(self.write_table)),
                    sql.SQL(", ").join(map(sql.Identifier, self.key)),
                )
            )
        self._db().execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                self._name(self.write_table), sql.SQL(", ").join(definitions)
            )
        )

    def _refuse_rounding_columns(self, columns: Sequence[Column]) -> None:
        existing = self._existing_columns()
        for column in columns:
            found = existing.get(column.name)
            if found in ROUNDING_TYPES.get(column.type, ()):
                raise ConnectorError(
                    f"column {column.name!r} of {self.schema_name}.{self.write_table} is "
                    f"{found}, which would round the source's {column.type} values: run a "
                    f"full_refresh (the column becomes {SQL_TYPES[column.type]}) or ALTER it"
                )

    def _add_missing_columns(self, columns: Sequence[Column]) -> None:
        existing = self._existing_columns()
        for column in columns:
            if column.name not in existing:
                self._db().execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        self._name(self.write_table),
                        sql.Identifier(column.name),
                        sql.SQL(SQL_TYPES[column.type]),
                    )
                )

    def _after_schema_change(self) -> None:
        """Re-read which columns hold JSON and rebuild the temporary batch table."""
        existing = self._existing_columns()
        self.json_columns = {name for name, kind in existing.items() if kind in ("json", "jsonb")}
        if self.upsert:
            db = self._db()
            db.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(
                sql.Identifier(BATCH_TABLE)))
            # No constraints: the merge decides which version of a key wins.
            db.execute(
                sql.SQL("CREATE TEMP TABLE {} AS SELECT * FROM {} WITH NO DATA").format(
                    sql.Identifier(BATCH_TABLE), self._name(self.write_table)
                )
            )
            db.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {} BIGINT GENERATED ALWAYS AS IDENTITY")
                .format(sql.Identifier(BATCH_TABLE), sql.Identifier(ORDINAL))
            )

    def _ensure_unique_key(self) -> None:
        """ON CONFLICT needs a unique index on the key; tables we create have one already."""
        db = self._db()
        unique_sets = db.execute(
            "SELECT array_agg(a.attname::text) FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL "
            "GROUP BY i.indexrelid",
            [self._qualified(self.write_table)],
        ).fetchall()
        if any(set(columns) == set(self.key) for (columns,) in unique_sets):
            return
        try:
            db.execute("SAVEPOINT etlctl_key")
            db.execute(
                sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                    sql.Identifier(f"_etlctl_key_{self.write_table}"[:63]),
                    self._name(self.write_table),
                    sql.SQL(", ").join(map(sql.Identifier, self.key)),
                )
            )
        except psycopg.errors.UniqueViolation:
            db.execute("ROLLBACK TO SAVEPOINT etlctl_key")
            raise ConnectorError(
                f"table {self.schema_name}.{self.write_table} already holds several rows per "
                f"primary key {list(self.key)}: deduplicate it or use full_refresh"
            ) from None

    def _swap_staging_in(self) -> None:
        """Replace the table with the staging copy, in the transaction of the last rows."""
        db = self._db()
        db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._name(self.table)))
        db.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                self._name(self.write_table), sql.Identifier(self.table)
            )
        )
        if self.key and self._has_staging_constraint(self.table):
            # Names of constraints are per schema: free the staging name for the next run.
            db.execute(
                sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    self._name(self.table),
                    sql.Identifier(_constraint_name(self.write_table)),
                    sql.Identifier(_constraint_name(self.table)),
                )
            )

    def _has_staging_constraint(self, table: str) -> bool:
        found = self._db().execute(
            "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s",
            [self._qualified(table), _constraint_name(self.write_table)],
        ).fetchone()
        return found is not None

    def _record_mark(self, mark: LoadMark) -> None:
        self._db().execute(
            sql.SQL(
                "INSERT INTO {} (connection, run_id, last_seq, records) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (connection, run_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, "
                "records = EXCLUDED.records, loaded_at = now()"
            ).format(self._name(LOADS_TABLE)),
            [self.load_name, self.context.run_id, mark.seq, mark.records],
        )
        if self.keeps_state(mark):
            # The checkpoint, in the transaction of the rows it covers (see committed_state).
            self._db().execute(
                sql.SQL(
                    "INSERT INTO {} (connection_id, stream, state, run_id) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (connection_id, stream) DO UPDATE SET "
                    "state = EXCLUDED.state, run_id = EXCLUDED.run_id, committed_at = now()"
                ).format(self._name(STATE_TABLE)),
                [self.context.connection_id, mark.stream, orjson.dumps(mark.state).decode(),
                 self.context.run_id],
            )

    def committed_state(self) -> CommittedState:
        with connect(self.config) as db:
            table = self._name(STATE_TABLE).as_string(db)
            if db.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
                return CommittedState({})
            rows = db.execute(
                sql.SQL("SELECT stream, state, run_id FROM {} WHERE connection_id = %s")
                .format(self._name(STATE_TABLE)),
                [self.context.connection_id],
            ).fetchall()
        return CommittedState(
            {stream: {"state": orjson.loads(state), "run_id": run_id}
             for stream, state, run_id in rows}
        )

    # --- rows --------------------------------------------------------------------------------
    def _prepare(
        self, columns: list[str], rows: list[list[Any]]
    ) -> list[tuple[int, list[Any]]]:
        """(index in the batch, row) with JSON values encoded; rows without a key rejected."""
        json_indexes = [i for i, name in enumerate(columns) if name in self.json_columns]
        key_indexes = [columns.index(k) for k in self.key if k in columns]
        if not json_indexes and not key_indexes:
            return list(enumerate(rows))
        dumps = orjson.dumps
        prepared = []
        for index, row in enumerate(rows):
            for position in json_indexes:
                value = row[position]
                if value is not None:
                    row[position] = dumps(value).decode()
            missing = [columns[i] for i in key_indexes if row[i] is None]
            if missing:
                self.reject(f"primary key column {missing[0]!r} is null", index,
                            dict(zip(columns, row, strict=True)))
                continue
            prepared.append((index, row))
        return prepared

    def _copy(
        self, table: str, columns: list[str], pending: list[tuple[int, list[Any]]]
    ) -> _BadRow | None:
        """COPY the rows; the first bad row (its position in ``pending``) when one fails.

        Under ``on_error: skip`` the COPY runs inside a savepoint, so that a bad row undoes
        only this attempt; under ``fail`` the caller stops the sync at the first bad row.
        """
        db = self._db()
        name = sql.Identifier(table) if table == BATCH_TABLE else self._name(table)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            name, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        if self.skip:
            db.execute("SAVEPOINT etlctl_batch")
        try:
            data = format_batch([row for _index, row in pending], len(columns))
            with db.cursor() as cursor, cursor.copy(statement) as copy:
                if data is not None:
                    copy.write(data)
                    pending_rows: list[tuple[int, list[Any]]] = []
                else:
                    pending_rows = pending
                for position, (_index, row) in enumerate(pending_rows):
                    try:
                        copy.write_row(row)
                    except (psycopg.ProgrammingError, psycopg.DataError, TypeError,
                            ValueError, OverflowError) as exc:
                        raise _BadRow(position, self._unsendable(columns, row, exc)) from None
        except _BadRow as bad:
            self._undo_attempt()
            return bad
        except psycopg.Error as exc:
            bad = self._bad_row_of(exc)
            if bad is None:
                raise ConnectorError(
                    f"table {self.schema_name}.{table}: {_first_line(exc)}"
                ) from None
            self._undo_attempt()
            return bad
        if self.skip:
            db.execute("RELEASE SAVEPOINT etlctl_batch")
        return None

    def _undo_attempt(self) -> None:
        if self.skip:
            self._db().execute("ROLLBACK TO SAVEPOINT etlctl_batch")

    @staticmethod
    def _bad_row_of(exc: psycopg.Error) -> _BadRow | None:
        """The row and column a COPY error names in its context ("COPY t, line 3, column x")."""
        found = _COPY_CONTEXT.search(exc.diag.context or "")
        if found is None:
            return None
        column = found.group("column")
        where = f"column {column!r}: " if column else ""
        return _BadRow(int(found.group("line")) - 1, where + (exc.diag.message_primary or ""))

    @staticmethod
    def _unsendable(columns: list[str], row: list[Any], exc: Exception) -> str:
        for name, value in zip(columns, row, strict=True):
            if isinstance(value, dict | list):
                return f"column {name!r}: cannot store a JSON {type(value).__name__} in it"
        return f"cannot send the row: {exc}"

    def _merge(self, columns: list[str]) -> None:
        """Batch table -> target: one row per key (the latest), upserted."""
        db = self._db()
        db.execute(self._merge_sql(columns))
        db.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(BATCH_TABLE)))

    def _merge_sql(self, columns: list[str]) -> sql.Composed:
        target = self._name(self.write_table)
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        keys = sql.SQL(", ").join(map(sql.Identifier, self.key))
        order = [sql.Identifier(k) for k in self.key]
        has_cursor = self.cursor_field is not None and self.cursor_field in columns
        if has_cursor:
            order.append(sql.SQL("{} DESC NULLS LAST").format(sql.Identifier(self.cursor_field)))
        order.append(sql.SQL("{} DESC").format(sql.Identifier(ORDINAL)))
        statement = sql.SQL(
            "INSERT INTO {target} AS t ({names}) SELECT DISTINCT ON ({keys}) {names} FROM {batch} "
            "ORDER BY {order} ON CONFLICT ({keys}) "
        ).format(
            target=target, names=names, keys=keys, batch=sql.Identifier(BATCH_TABLE),
            order=sql.SQL(", ").join(order),
        )
        updates = [c for c in columns if c not in self.key]
        if not updates:
            return statement + sql.SQL("DO NOTHING")
        statement += sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates
        )
        if has_cursor:
            # The latest version wins: an older one arriving later does not overwrite it.
            cursor = sql.Identifier(self.cursor_field)
            statement += sql.SQL(" WHERE t.{0} IS NULL OR EXCLUDED.{0} >= t.{0}").format(cursor)
        return statement


def _constraint_name(table: str) -> str:
    return f"{table}_pkey"[:63]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
