"""The connectors and sync modes through `etlctl sync` with Docker: PostgreSQL, an HTTP API
served on 127.0.0.1, JSON files, transforms, bad records and schema evolution. (The
connector-level suites in tests/connectors cover each connector's details; these prove the
same things hold when etlctl runs them in containers.)"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from typer.testing import CliRunner

from etlctl.cli.main import app
from etlctl.store import Store
from tests_support import leftover_containers, leftover_queues, missing_service

pytestmark = pytest.mark.integration

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "postgres"}


@pytest.fixture
def etl(tmp_path, services):
    store_path = tmp_path / "store.json"
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0):
        result = runner.invoke(app, ["--store", str(store_path), *args])
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    invoke.store = Store(store_path)
    return invoke


@pytest.fixture
def pg(services) -> Iterator[str]:
    """A throwaway database; yields its name."""
    name = f"etlctl_e2e_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(**PG, dbname="postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        missing_service("PostgreSQL on 127.0.0.1:5432 (postgres/postgres)")
    admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


def pg_rows(dbname: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(**PG, dbname=dbname) as connection:
        return connection.execute(sql).fetchall()


def pg_exec(dbname: str, sql: str) -> None:
    with psycopg.connect(**PG, dbname=dbname, autocommit=True) as connection:
        connection.execute(sql)


def pg_config(dbname: str, **extra: str) -> list[str]:
    pairs = {**PG, "dbname": dbname, "sslmode": "disable", **extra}
    return [arg for key, value in pairs.items() for arg in ("--config", f"{key}={value}")]


def test_postgres_to_postgres_incremental_dedup_keeps_latest_versions(etl, pg):
    pg_exec(
        pg,
        "CREATE TABLE src (id int PRIMARY KEY, name text, score numeric, "
        "tags jsonb, updated_at timestamptz, born date, active boolean)",
    )
    pg_exec(
        pg,
        "INSERT INTO src SELECT i, 'user ' || i, i * 1.5, "
        "jsonb_build_object('n', i), '2024-05-01 00:00+00'::timestamptz + (i % 10) * "
        "interval '1 hour', DATE '2000-01-01' + i, i % 2 = 0 FROM generate_series(1, 3000) i",
    )
    etl("source", "add", "pgsrc", "--type", "postgres", *pg_config(pg, table="src"))
    etl(
        "loader", "add", "pgdst", "--type", "postgres", *pg_config(pg, table="dst", schema="public")
    )
    etl(
        "connection",
        "add",
        "pg2pg",
        "--source",
        "pgsrc",
        "--loader",
        "pgdst",
        "--mode",
        "dedup",
        "--cursor-field",
        "updated_at",
        "--primary-key",
        "id",
    )
    first = json.loads(etl("sync", "pg2pg", "--json").stdout)
    assert first["status"] == "succeeded" and first["records_loaded"] == 3000
    assert pg_rows(pg, "SELECT count(*), count(DISTINCT id) FROM dst") == [(3000, 3000)]
    row = pg_rows(pg, "SELECT name, score, tags, born, active FROM dst WHERE id = 4")[0]
    assert row[0] == "user 4" and float(row[1]) == 6.0 and row[2] == {"n": 4}
    assert str(row[3]) == "2000-01-05" and row[4] is True

    # Updates past the cursor, new rows sharing the saved cursor value, and new rows.
    pg_exec(
        pg, "UPDATE src SET name = 'renamed', updated_at = '2024-06-01 00:00+00' WHERE id <= 10"
    )
    pg_exec(
        pg,
        "INSERT INTO src SELECT i, 'late ' || i, 0, '{}', "
        "'2024-05-01 09:00+00', DATE '2000-01-01', false FROM generate_series(3001, 3050) i",
    )
    etl("sync", "pg2pg")
    assert pg_rows(pg, "SELECT count(*), count(DISTINCT id) FROM dst") == [(3050, 3050)]
    assert pg_rows(pg, "SELECT count(*) FROM dst WHERE name = 'renamed'") == [(10,)]
    state = etl.store.read().get_state("pg2pg").state
    assert state["cursor"].startswith("2024-06-01")
    assert leftover_containers("pg2pg") == [] and leftover_queues("pg2pg") == []


class _Api(BaseHTTPRequestHandler):
    """Page-numbered JSON with one 429 (Retry-After) and one 500 on the way."""

    records = [{"id": i, "name": f"item {i}", "meta": {"rank": i % 3}} for i in range(1, 251)]
    faults: list[int] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.faults:
            status = self.faults.pop(0)
            self.send_response(status)
            self.send_header("Retry-After", "1")
            self.end_headers()
            return
        query = parse_qs(urlsplit(self.path).query)
        page = int(query.get("page", ["1"])[0])
        chunk = self.records[(page - 1) * 100 : page * 100]
        body = json.dumps({"data": {"items": chunk}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    _Api.faults = [429, 500]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/items"
    server.shutdown()


def test_http_api_with_retries_into_sqlite(etl, api, tmp_path):
    target = tmp_path / "out" / "api.db"
    etl(
        "source",
        "add",
        "api",
        "--type",
        "http",
        "--config",
        f"url={api}",
        "--config",
        "records_path=data.items",
        "--config",
        "pagination.type=page_number",
        "--config",
        "pagination.page_size=100",
        "--config",
        "bearer_token=tok-sentinel-123",
    )
    etl(
        "loader",
        "add",
        "apidb",
        "--type",
        "sqlite",
        "--config",
        f"path={target}",
        "--config",
        "table=items",
    )
    etl("connection", "add", "api2db", "--source", "api", "--loader", "apidb")
    run = json.loads(etl("sync", "api2db", "--json").stdout)
    assert run["records_loaded"] == 250
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), sum(id) FROM items").fetchone() == (250, 250 * 251 // 2)
    meta = db.execute("SELECT meta FROM items WHERE id = 5").fetchone()[0]
    assert json.loads(meta) == {"rank": 2}
    assert "tok-sentinel-123" not in Path(run["log_path"]).read_text()


def test_jsonl_to_csv_with_a_transform(etl, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = [
        {
            "id": i,
            "email": f"u{i}@x.org",
            "country": "GB" if i % 2 else "FR",
            "amount": i * 10.0,
            "secret_note": "x",
            "address": {"city": "Zürich"},
        }
        for i in range(1, 101)
    ]
    (data / "users.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines))
    transform = tmp_path / "transform.yaml"
    transform.write_text(
        "filter: [\"country == 'GB'\", 'amount >= 100']\n"
        "exclude: [secret_note]\nrename: {amount: amount_gbp}\n"
        "cast: {amount_gbp: integer}\nadd: {source_system: crm}\n"
    )
    target = tmp_path / "out" / "users.csv"
    etl("source", "add", "js", "--type", "jsonl", "--config", f"path={data}/*.jsonl")
    etl("loader", "add", "csvout", "--type", "csv", "--config", f"path={target}")
    etl(
        "connection",
        "add",
        "js2csv",
        "--source",
        "js",
        "--loader",
        "csvout",
        "--transform-file",
        str(transform),
    )
    etl("sync", "js2csv")
    import csv

    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected_ids = [i for i in range(1, 101) if i % 2 and i * 10 >= 100]
    assert [int(r["id"]) for r in rows] == expected_ids
    assert set(rows[0]) == {"id", "email", "country", "amount_gbp", "address", "source_system"}
    assert rows[0]["amount_gbp"] == "110" and rows[0]["source_system"] == "crm"
    assert "Zürich" in rows[0]["address"]


def test_a_transform_naming_a_missing_column_fails_naming_it(etl, tmp_path):
    (tmp_path / "a.csv").write_text("id,name\n1,a\n")
    transform = tmp_path / "t.yaml"
    transform.write_text("select: [id, nope]\n")
    etl("source", "add", "s", "--type", "csv", "--config", f"path={tmp_path}/a.csv")
    etl("loader", "add", "d", "--type", "jsonl", "--config", f"path={tmp_path}/out.jsonl")
    etl(
        "connection",
        "add",
        "tbad",
        "--source",
        "s",
        "--loader",
        "d",
        "--transform-file",
        str(transform),
    )
    result = etl("sync", "tbad", code=1)
    assert "'nope'" in result.stderr


def test_bad_records_are_skipped_counted_and_written_to_the_rejects_file(etl, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,amount\n1,1.5\n2,oops\n3,2.5\n4,nan-ish\n5,3.5\n")
    target = tmp_path / "out" / "t.db"
    etl(
        "source",
        "add",
        "s",
        "--type",
        "csv",
        "--config",
        f"path={source}",
        "--config",
        'column_types={"id": "integer", "amount": "number"}',
    )
    etl(
        "loader",
        "add",
        "d",
        "--type",
        "sqlite",
        "--config",
        f"path={target}",
        "--config",
        "table=t",
    )
    etl("connection", "add", "skip", "--source", "s", "--loader", "d", "--on-error", "skip")
    run = json.loads(etl("sync", "skip", "--json").stdout)
    assert run["status"] == "succeeded"
    assert run["records_loaded"] == 3 and run["records_skipped"] == 2
    rejects = [json.loads(line) for line in Path(run["rejects_path"]).read_text().splitlines()]
    assert len(rejects) == 2 and all("line" in json.dumps(r["position"]) for r in rejects)
    assert sqlite3.connect(target).execute("SELECT id FROM t ORDER BY id").fetchall() == [
        (1,),
        (3,),
        (5,),
    ]

    etl("connection", "update", "skip", "--on-error", "fail")
    result = etl("sync", "skip", code=1)
    assert "line 3" in result.stderr  # the first bad record, by file line


def test_a_new_column_in_a_later_sync_is_added_to_the_target(etl, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,name\n1,a\n2,b\n")
    target = tmp_path / "out" / "t.db"
    etl("source", "add", "s", "--type", "csv", "--config", f"path={source}")
    etl(
        "loader",
        "add",
        "d",
        "--type",
        "sqlite",
        "--config",
        f"path={target}",
        "--config",
        "table=t",
    )
    etl(
        "connection",
        "add",
        "evo",
        "--source",
        "s",
        "--loader",
        "d",
        "--mode",
        "dedup",
        "--primary-key",
        "id",
    )
    etl("sync", "evo")
    source.write_text("id,name,score\n2,b2,7\n3,c,9\n")
    etl("sync", "evo")
    rows = sqlite3.connect(target).execute("SELECT id, name, score FROM t ORDER BY id").fetchall()
    assert rows == [(1, "a", None), (2, "b2", 7), (3, "c", 9)]


def test_check_reports_a_working_and_a_broken_config(etl, pg):
    pg_exec(pg, "CREATE TABLE t (id int)")
    etl("source", "add", "good", "--type", "postgres", *pg_config(pg, table="t"))
    result = json.loads(etl("source", "check", "good", "--json").stdout)
    assert result == {"name": "good", "ok": True, "message": "ok"}
    etl(
        "source",
        "add",
        "bad",
        "--type",
        "postgres",
        *pg_config(pg, table="t", password="wrong-sentinel-pw"),
    )
    result = etl("source", "check", "bad", code=1)
    assert "check failed" in result.stderr
    assert "wrong-sentinel-pw" not in result.stderr + result.stdout
