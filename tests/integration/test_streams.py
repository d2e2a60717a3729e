# ruff: noqa: F811
"""Several streams in one connection, end to end: real Docker containers and RabbitMQ, real
SQLite and PostgreSQL on both sides. Each stream lands in its own table, with its own mode
and state; one stream can be reset alone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

# The fixtures etl and pg are those of the end-to-end tests: tests take them as arguments.
from test_connectors_e2e import etl, pg, pg_config, pg_exec, pg_rows  # noqa: F401

from tests_support import leftover_containers, leftover_queues

pytestmark = pytest.mark.integration


def make_shop(path: Path, users: int, orders: int, start: int = 1, month: int = 5) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, user_id INTEGER, "
        "amount REAL, updated_at TEXT)"
    )
    db.executemany("INSERT OR REPLACE INTO users VALUES (?, ?)",
                   [(i, f"user {i}") for i in range(start, start + users)])
    db.executemany(
        "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?)",
        [(i, i % 50, i * 1.5, f"2024-{month:02d}-{1 + i // 1000:02d}T00:{i % 60:02d}:00")
         for i in range(start, start + orders)],
    )
    db.commit()
    db.close()


def rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def states(etl, name: str) -> dict[str, dict]:
    shown = json.loads(etl("connection", "show", name, "--json").stdout)
    return {stream: entry["state"] for stream, entry in (shown["state"] or {"streams": {}})[
        "streams"].items()}


def test_two_tables_sync_into_their_own_tables_with_their_own_modes_and_state(etl, tmp_path):
    source, target = tmp_path / "shop.db", tmp_path / "out" / "wh.db"
    make_shop(source, users=300, orders=2500)
    etl("source", "add", "shop", "--type", "sqlite", "--config", f"path={source}",
        "--config", 'tables=["users", "orders"]')
    discovered = json.loads(etl("source", "discover", "shop", "--json").stdout)
    assert [s["name"] for s in discovered] == ["users", "orders"]
    orders = discovered[1]
    assert orders["columns"] == [
        {"name": "id", "type": "integer"}, {"name": "user_id", "type": "integer"},
        {"name": "amount", "type": "number"}, {"name": "updated_at", "type": "string"},
    ]
    assert orders["key_properties"] == ["id"] and "updated_at" in orders["cursor_candidates"]
    assert "stream orders" in etl("source", "discover", "shop").stdout

    etl("loader", "add", "wh", "--type", "sqlite", "--config", f"path={target}",
        "--config", "table=raw_{stream}")
    etl("connection", "add", "shop-to-wh", "--source", "shop", "--loader", "wh",
        "--stream", "users", "--stream", "orders:incremental:updated_at:id")
    run = json.loads(etl("sync", "shop-to-wh", "--json").stdout)
    assert run["status"] == "succeeded" and run["records_loaded"] == 2800
    assert rows(target, "SELECT count(*), count(DISTINCT id) FROM raw_users") == [(300, 300)]
    assert rows(target, "SELECT count(*), count(DISTINCT id), sum(amount) FROM raw_orders") == [
        (2500, 2500, sum(i * 1.5 for i in range(1, 2501)))
    ]
    # users is a full refresh: no state; orders resumes from its cursor.
    latest = rows(source, "SELECT max(updated_at) FROM orders")[0][0]
    saved = states(etl, "shop-to-wh")
    assert list(saved) == ["orders"] and saved["orders"]["cursor"] == latest
    shown = etl("connection", "show", "shop-to-wh").stdout
    assert "orders:incremental:updated_at:id" in shown

    # New and changed rows: users replaced whole, orders appended past the cursor.
    make_shop(source, users=20, orders=100, start=2501, month=6)
    run = json.loads(etl("sync", "shop-to-wh", "--json").stdout)
    assert run["status"] == "succeeded"
    assert rows(target, "SELECT count(*), count(DISTINCT id) FROM raw_users") == [(320, 320)]
    assert rows(target, "SELECT count(*), count(DISTINCT id) FROM raw_orders") == [(2600, 2600)]
    latest = rows(source, "SELECT max(updated_at) FROM orders")[0][0]
    assert states(etl, "shop-to-wh")["orders"]["cursor"] == latest

    # Reset one stream: orders starts over (deduplicated by its key), users is untouched.
    reset = etl("connection", "reset", "shop-to-wh", "--stream", "orders").stdout
    assert "orders" in reset
    assert states(etl, "shop-to-wh") == {}
    etl("connection", "reset", "shop-to-wh", "--stream", "nope", code=3)
    run = json.loads(etl("sync", "shop-to-wh", "--json").stdout)
    assert run["records_loaded"] == 320 + 2600
    assert rows(target, "SELECT count(*), count(DISTINCT id) FROM raw_orders") == [(2600, 2600)]
    assert "orders" in states(etl, "shop-to-wh")
    assert leftover_containers("shop-to-wh") == [] and leftover_queues("shop-to-wh") == []


def test_a_stream_the_source_does_not_offer_fails_the_run_and_names_it(etl, tmp_path):
    source, target = tmp_path / "shop.db", tmp_path / "wh.db"
    make_shop(source, users=5, orders=5)
    etl("source", "add", "shop", "--type", "sqlite", "--config", f"path={source}",
        "--config", 'tables=["*"]')
    etl("loader", "add", "wh", "--type", "sqlite", "--config", f"path={target}",
        "--config", "table={stream}")
    etl("connection", "add", "shop-typo", "--source", "shop", "--loader", "wh",
        "--stream", "order")
    result = etl("sync", "shop-typo", code=None)
    assert result.exit_code != 0
    assert "stream 'order' is not offered by this source (it offers: orders, users)" in (
        result.stderr
    )
    assert not target.exists() or rows(target, "SELECT name FROM sqlite_schema "
                                               "WHERE name IN ('orders', 'users')") == []
    # Every table of the file, no selection: both land, each in the table named after it.
    etl("connection", "update", "shop-typo", "--all-streams")
    etl("sync", "shop-typo")
    assert rows(target, "SELECT count(*) FROM users") == [(5,)]
    assert rows(target, "SELECT count(*) FROM orders") == [(5,)]


def test_a_loader_of_one_table_refuses_a_second_stream_with_the_fix(etl, tmp_path):
    source, target = tmp_path / "shop.db", tmp_path / "wh.db"
    make_shop(source, users=5, orders=5)
    etl("source", "add", "shop", "--type", "sqlite", "--config", f"path={source}",
        "--config", 'tables=["users", "orders"]')
    etl("loader", "add", "one", "--type", "sqlite", "--config", f"path={target}",
        "--config", "table=everything")
    etl("connection", "add", "shop-one", "--source", "shop", "--loader", "one")
    result = etl("sync", "shop-one", code=None)
    assert result.exit_code != 0
    assert ("this loader writes one stream per run, and the extractor sent a second one "
            "('orders' after 'users')") in result.stderr
    assert "table={stream}" in result.stderr
    assert rows(target, "SELECT count(*) FROM sqlite_schema WHERE name = 'everything'") == [(0,)]


def test_postgres_schema_to_postgres_tables_per_stream(etl, pg):
    pg_exec(pg, "CREATE SCHEMA app")
    pg_exec(pg, "CREATE TABLE app.users (id int PRIMARY KEY, name text)")
    pg_exec(pg, "CREATE TABLE app.events (id bigint PRIMARY KEY, kind text, at timestamptz)")
    pg_exec(pg, "INSERT INTO app.users SELECT i, 'u' || i FROM generate_series(1, 400) i")
    pg_exec(pg, "INSERT INTO app.events SELECT i, 'k' || (i % 7), '2024-05-01 00:00+00'::"
                "timestamptz + i * interval '1 minute' FROM generate_series(1, 5000) i")
    etl("source", "add", "appdb", "--type", "postgres",
        *pg_config(pg, schema="app"), "--config", 'tables=["*"]')
    discovered = json.loads(etl("source", "discover", "appdb", "--json").stdout)
    assert {s["name"]: s["key_properties"] for s in discovered} == {"events": ["id"],
                                                                  "users": ["id"]}
    etl("loader", "add", "whpg", "--type", "postgres",
        *pg_config(pg, schema="wh"), "--config", "table=app_{stream}")
    etl("connection", "add", "app-to-wh", "--source", "appdb", "--loader", "whpg",
        "--stream", "events:incremental:at:id", "--stream", "*")
    run = json.loads(etl("sync", "app-to-wh", "--json").stdout)
    assert run["status"] == "succeeded" and run["records_loaded"] == 5400
    assert pg_rows(pg, "SELECT count(*), count(DISTINCT id) FROM wh.app_users") == [(400, 400)]
    assert pg_rows(pg, "SELECT count(*), count(DISTINCT id) FROM wh.app_events") == [
        (5000, 5000)]
    saved = etl.store.read().get_state("app-to-wh")
    assert set(saved.streams) == {"events"}
    assert saved.streams["events"].state["cursor"].startswith("2024-05-04T11:20:00")

    pg_exec(pg, "INSERT INTO app.events SELECT i, 'new', '2024-06-01 00:00+00' "
                "FROM generate_series(5001, 5100) i")
    pg_exec(pg, "DELETE FROM app.users WHERE id > 300")
    etl("sync", "app-to-wh")
    assert pg_rows(pg, "SELECT count(*), count(DISTINCT id) FROM wh.app_events") == [
        (5100, 5100)]
    assert pg_rows(pg, "SELECT count(*) FROM wh.app_users") == [(300,)]
    assert etl.store.read().get_state("app-to-wh").streams["events"].state[
        "cursor"].startswith("2024-06-01")
