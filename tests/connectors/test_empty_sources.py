"""An empty or truncated source never wipes a target (docs/connectors.md, "Empty sources").

Real syncs: connector processes, a real RabbitMQ, real SQLite/PostgreSQL/files. Each target
holds three rows before the sync; the test asserts its exact columns, types and rows after.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pika
import pytest
from connector_harness import AMQP_URL, events_of
from pg_support import pg_database  # noqa: F401  (a fixture)

REFUSED = "full_refresh refused: the source yielded no records"
ROWS = [(1, "Ada"), (2, "Bob"), (3, "Cy")]


# --- targets: three rows of users(id INTEGER, name TEXT) -------------------------------------
def filled_sqlite(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "target.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?)", ROWS)
    db.commit()
    db.close()
    return {"path": str(path), "table": "users"}


def sqlite_table(config: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple]]:
    """(columns with declared types, rows in id order) of the target table."""
    db = sqlite3.connect(config["path"])
    try:
        columns = [(row[1], row[2]) for row in db.execute("PRAGMA table_info(users)")]
        rows = db.execute("SELECT * FROM users ORDER BY 1").fetchall()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert not [t for t in tables if t.startswith("_etlctl_staging_")]
    return columns, rows


SQLITE_BEFORE = ([("id", "INTEGER"), ("name", "TEXT")], ROWS)
SQLITE_EMPTIED = ([("id", "INTEGER"), ("name", "TEXT")], [])


def assert_refused(sync, extractor: int, loader: int, events: list[dict[str, Any]]) -> None:
    assert extractor == 1, sync.extractor_log
    errors = [event["message"] for event in events_of(events, "error")]
    assert len(errors) == 1 and errors[0].startswith(REFUSED), errors
    assert "etlctl connection update NAME --allow-empty" in errors[0]
    assert "Traceback" not in sync.extractor_log


def assert_succeeded(sync, extractor: int, loader: int, events: list[dict[str, Any]]) -> None:
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    assert [event["records"] for event in events_of(events, "done", "loader")] == [0]


# --- every extractor: a source with no records ---------------------------------------------
def header_only_csv(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    path = tmp_path / "users.csv"
    path.write_text("id,name\n")
    return "csv", {"path": str(path)}


def empty_jsonl(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    path = tmp_path / "users.jsonl"
    path.write_bytes(b"")
    return "jsonl", {"path": str(path)}


def empty_sqlite_table(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    path = tmp_path / "source.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    db.commit()
    db.close()
    return "sqlite", {"path": str(path), "table": "users"}


EMPTY_SOURCES = {
    "csv-header-only": header_only_csv,
    "jsonl-0-bytes": empty_jsonl,
    "sqlite-empty-table": empty_sqlite_table,
}


@pytest.mark.parametrize("source", list(EMPTY_SOURCES))
def test_an_empty_source_is_refused_in_full_refresh_and_the_table_kept(
    tmp_path, make_sync, source
):
    target = filled_sqlite(tmp_path)
    assert sqlite_table(target) == SQLITE_BEFORE
    sync = make_sync(*EMPTY_SOURCES[source](tmp_path), "sqlite", target)
    assert_refused(sync, *sync.run())
    assert sqlite_table(target) == SQLITE_BEFORE


@pytest.mark.parametrize("source", list(EMPTY_SOURCES))
def test_an_allowed_empty_source_empties_the_table_but_keeps_its_columns_and_types(
    tmp_path, make_sync, source
):
    target = filled_sqlite(tmp_path)
    sync = make_sync(*EMPTY_SOURCES[source](tmp_path), "sqlite", target, allow_empty=True)
    assert_succeeded(sync, *sync.run())
    # Not ("_etlctl_empty" TEXT), and not id retyped as TEXT by a header-only file.
    assert sqlite_table(target) == SQLITE_EMPTIED


def test_a_postgres_source_with_no_rows_is_refused_then_allowed(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    pg_database.execute("CREATE TABLE empty_users (id bigint, name text)")
    target = filled_sqlite(tmp_path)
    config = pg_database.config(table="empty_users")
    sync = make_sync("postgres", config, "sqlite", target)
    assert_refused(sync, *sync.run())
    assert sqlite_table(target) == SQLITE_BEFORE
    sync.queues.reset()
    sync = make_sync("postgres", config, "sqlite", target, allow_empty=True)
    assert_succeeded(sync, *sync.run())
    assert sqlite_table(target) == SQLITE_EMPTIED


@pytest.mark.parametrize("allow_empty", [False, True])
def test_a_zero_byte_csv_with_a_header_expected_is_an_error_even_when_empty_is_allowed(
    tmp_path, make_sync, allow_empty
):
    path = tmp_path / "users.csv"
    path.write_bytes(b"")
    target = filled_sqlite(tmp_path)
    sync = make_sync("csv", {"path": str(path)}, "sqlite", target, allow_empty=allow_empty)
    extractor, _, events = sync.run()
    assert extractor == 1
    assert [event["message"] for event in events_of(events, "error")] == [
        f"{path} is empty: no header line (header: true); a file without records still "
        "needs its header"
    ]
    assert sqlite_table(target) == SQLITE_BEFORE


def test_a_filter_that_drops_every_row_is_refused_and_says_so(tmp_path, make_sync):
    path = tmp_path / "users.csv"
    path.write_text("id,name\n1,Ada\n2,Bob\n")
    target = filled_sqlite(tmp_path)
    sync = make_sync("csv", {"path": str(path)}, "sqlite", target,
                     transform={"filter": ["id > 5"]})
    extractor, _, events = sync.run()
    assert extractor == 1
    [message] = [event["message"] for event in events_of(events, "error")]
    assert message.startswith(
        "full_refresh refused: no record is left to load: 2 dropped by the transform's filter;"
    )
    assert sqlite_table(target) == SQLITE_BEFORE


def test_incremental_with_nothing_new_is_not_refused(tmp_path, make_sync):
    target = filled_sqlite(tmp_path)
    sync = make_sync(*header_only_csv(tmp_path), "sqlite", target,
                     mode="incremental", cursor_field="id")
    assert_succeeded(sync, *sync.run())
    assert sqlite_table(target) == SQLITE_BEFORE


# --- every loader: an empty source ----------------------------------------------------------
def test_postgres_target_is_kept_then_emptied_keeping_its_types(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    pg_database.execute("CREATE TABLE users (id bigint, name text)")
    pg_database.execute("INSERT INTO users VALUES (1, 'Ada'), (2, 'Bob'), (3, 'Cy')")

    def table() -> tuple[list[tuple], list[tuple]]:
        columns = pg_database.rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'users' ORDER BY ordinal_position"
        )
        return columns, pg_database.rows("SELECT * FROM users ORDER BY id")

    columns = [("id", "bigint"), ("name", "text")]
    assert table() == (columns, ROWS)
    config = pg_database.config(table="users")
    sync = make_sync(*header_only_csv(tmp_path), "postgres", config)
    assert_refused(sync, *sync.run())
    assert table() == (columns, ROWS)
    sync.queues.reset()
    sync = make_sync(*header_only_csv(tmp_path), "postgres", config, allow_empty=True)
    assert_succeeded(sync, *sync.run())
    assert table() == (columns, [])
    assert pg_database.rows(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE '\\_etlctl\\_staging\\_%'"
    ) == [(0,)]


@pytest.mark.parametrize(
    ("loader", "before", "emptied"),
    [
        ("csv", "id,name\n1,Ada\n2,Bob\n3,Cy\n", "id,name\n"),
        ("jsonl", "".join(json.dumps({"id": i, "name": n}) + "\n" for i, n in ROWS), ""),
    ],
)
def test_file_targets_are_kept_then_emptied_keeping_the_csv_header(
    tmp_path, make_sync, loader, before, emptied
):
    target = tmp_path / f"target.{loader}"
    target.write_text(before)
    source = empty_jsonl(tmp_path)  # no columns at all: the csv header must come from the file
    sync = make_sync(*source, loader, {"path": str(target)})
    assert_refused(sync, *sync.run())
    assert target.read_text() == before
    sync.queues.reset()
    sync = make_sync(*source, loader, {"path": str(target)}, allow_empty=True)
    assert_succeeded(sync, *sync.run())
    assert target.read_text() == emptied


# --- the loader's own guard: an extractor not built on the SDK ------------------------------
def publish_raw(sync, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """What a connector in another language could send: SCHEMA then END with no records."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for seq, (message_type, body) in enumerate(messages, 1):
            channel.basic_publish(
                "", sync.queues.data, orjson.dumps(body),
                pika.BasicProperties(type=message_type, headers={"run_id": sync.run_id,
                                                                 "seq": seq}),
            )
    finally:
        connection.close()


@pytest.mark.parametrize("allow_empty", [False, True])
def test_the_loader_refuses_an_empty_full_refresh_from_any_extractor(
    tmp_path, make_sync, allow_empty
):
    target = filled_sqlite(tmp_path)
    sync = make_sync("csv", {"path": "unused"}, "sqlite", target, allow_empty=allow_empty)
    schema = {"stream": "users", "columns": [{"name": "id", "type": "string"},
                                             {"name": "name", "type": "string"}]}
    publish_raw(sync, [("SCHEMA", schema), ("END", {"records": 0, "state": None})])
    loader = sync.start("loader")
    code = loader.wait(60)
    log = loader.stderr.read()
    events = sync.queues.drain_events()
    if allow_empty:
        assert code == 0, log
        assert sqlite_table(target) == SQLITE_EMPTIED
    else:
        assert code == 1, log
        [message] = [event["message"] for event in events_of(events, "error", "loader")]
        assert message.startswith(REFUSED)
        assert sqlite_table(target) == SQLITE_BEFORE
