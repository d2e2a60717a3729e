"""The loaders' `cleanup` command (what `etlctl gc` runs for a killed run): it removes the
staging table or temporary file a killed full refresh left, and nothing else; run as etlctl
runs it, a subprocess with a run file, against real SQLite, PostgreSQL and files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from connector_harness import REPO
from pg_support import pg_database  # noqa: F401  (a fixture)


def cleanup(sync) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "connectors", "loader", sync.loader_type, "cleanup"],
        env={"ETLCTL_RUN_FILE": str(sync.run_file("loader")), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_sqlite_cleanup_drops_only_the_staging_table(tmp_path, make_sync):
    path = tmp_path / "t.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE items (id int); INSERT INTO items VALUES (1);"
                     "CREATE TABLE _etlctl_staging_items (id int);")
    db.close()
    sync = make_sync("csv", {"path": "/x.csv"}, "sqlite", {"path": str(path), "table": "items"})
    assert cleanup(sync) == {"status": "ok",
                             "removed": [f"staging table _etlctl_staging_items in {path}"]}
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert ("_etlctl_staging_items",) not in tables and ("items",) in tables
    assert cleanup(sync) == {"status": "ok", "removed": []}  # nothing left: nothing to do


def test_postgres_cleanup_drops_only_the_staging_table(tmp_path, make_sync, pg_database):  # noqa: F811
    pg_database.execute("CREATE TABLE items (id int); INSERT INTO items VALUES (1)")
    pg_database.execute("CREATE TABLE _etlctl_staging_items (id int)")
    sync = make_sync("csv", {"path": "/x.csv"}, "postgres", pg_database.config(table="items"))
    assert cleanup(sync) == {"status": "ok",
                             "removed": ["staging table public._etlctl_staging_items"]}
    assert pg_database.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                            "ORDER BY 1") == [("items",)]


def test_file_cleanup_removes_the_temporary_files_of_killed_runs(tmp_path, make_sync):
    target = tmp_path / "out.jsonl"
    target.write_text('{"id": 1}\n')
    stale = tmp_path / ".out.jsonl.etlctl-r-dead.tmp"
    stale.write_text('{"id": 2}\n')
    sync = make_sync("csv", {"path": "/x.csv"}, "jsonl", {"path": str(target)})
    assert cleanup(sync) == {"status": "ok", "removed": [f"temporary file {stale}"]}
    assert not stale.exists() and target.read_text() == '{"id": 1}\n'
