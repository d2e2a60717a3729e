"""Extractor and loader as real subprocesses through a real RabbitMQ, into real files."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from connector_harness import events_of

from connectors.sdk.loader import CRASH_AFTER_COMMIT_ENV, CRASH_EXIT_CODE

USERS_CSV = (
    "\ufeffid,name,amount,active,joined,updated_at\n"
    '1,"Ada, Countess",1.5,true,2024-01-01,2024-05-01T10:00:00\n'
    "2,,2,false,,2024-05-01T10:00:00\n"
    '3,"Line one\nline two",,true,2024-02-03,2024-05-02T09:00:00\n'
    "4,Zoë,-7.25,false,2024-02-04,2024-05-03T08:00:00\n"
)


def write_csv(path: Path, rows: int, start: int = 1, updated: str = "2024-05-01") -> Path:
    lines = ["id,name,score,updated_at"]
    lines += [
        f"{i},name {i},{i * 0.5},{updated}T00:00:{i % 60:02d}"
        for i in range(start, start + rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def sqlite_rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql).fetchall()


def test_csv_to_sqlite_full_refresh_keeps_types(tmp_path, make_sync):
    source = tmp_path / "users.csv"
    source.write_text(USERS_CSV, encoding="utf-8")
    db = tmp_path / "target.db"
    sync = make_sync("csv", {"path": str(source)}, "sqlite", {"path": str(db), "table": "users"})
    extractor, loader, events = sync.run()
    assert (extractor, loader) == (0, 0), sync.loader_log + sync.extractor_log
    rows = sqlite_rows(
        db, "SELECT id, name, amount, active, joined, typeof(id), typeof(amount) FROM users"
    )
    assert rows == [
        (1, "Ada, Countess", 1.5, 1, "2024-01-01", "integer", "real"),
        (2, None, 2.0, 0, None, "integer", "real"),
        (3, "Line one\nline two", None, 1, "2024-02-03", "integer", "null"),
        (4, "Zoë", -7.25, 0, "2024-02-04", "integer", "real"),
    ]
    done = {event["role"]: event for event in events_of(events, "done")}
    assert done["extractor"]["records"] == 4
    assert done["loader"]["records"] == 4


def test_full_refresh_replaces_and_failed_sync_leaves_target_whole(tmp_path, make_sync):
    db = tmp_path / "target.db"
    source = write_csv(tmp_path / "a.csv", 50)
    sync = make_sync("csv", {"path": str(source)}, "sqlite", {"path": str(db), "table": "t"},
                     batch={"max_records": 100, "max_bytes": 1048576, "commit_every": 2})
    assert sync.run()[:2] == (0, 0)
    write_csv(source, 30, start=100)
    sync.start_new_run()
    assert sync.run()[:2] == (0, 0)
    assert sqlite_rows(db, "SELECT min(id), max(id), count(*) FROM t") == [(100, 129, 30)]
    # A malformed row half-way: the extractor fails after the loader committed part of the
    # new load (into its staging table); the previous table stays as it was.
    lines = write_csv(source, 5000, start=1).read_text().splitlines()
    lines[4000] = "oops,not,an,integer,too,many"
    source.write_text("\n".join(lines) + "\n")
    sync.start_new_run()
    extractor, _loader_code, events = _run_with_failing_extractor(sync, db)
    assert extractor == 1
    error = events_of(events, "error", "extractor")[0]
    assert error["position"]["file"] == str(source)
    assert error["position"]["line"] == 4001
    assert sqlite_rows(db, "SELECT min(id), max(id), count(*) FROM t") == [(100, 129, 30)]
    staged = sqlite_rows(db, "SELECT count(*) FROM _etlctl_staging_t")[0][0]
    assert 0 < staged <= 4000  # committed, but only in the staging table


def _run_with_failing_extractor(sync, db: Path):
    """The extractor fails; the loader, waiting for an END that never comes, is stopped (as
    etlctl stops it) once it has committed something of this run."""
    loader = sync.start("loader")
    extractor = sync.start("extractor")
    code = extractor.wait(60)
    deadline = time.monotonic() + 60
    while _committed_seq(db, sync.run_id) == 0:
        assert time.monotonic() < deadline, "the loader committed nothing of the failing run"
        time.sleep(0.05)
    loader.kill()
    loader.wait(10)
    return code, loader.returncode, sync.queues.drain_events()


def test_incremental_appends_from_saved_cursor_and_reports_checkpoint(tmp_path, make_sync):
    db = tmp_path / "target.db"
    source = write_csv(tmp_path / "a.csv", 10, updated="2024-05-01")
    options = {"mode": "incremental", "cursor_field": "updated_at", "primary_key": ["id"]}
    sync = make_sync(
        "csv", {"path": str(source)}, "sqlite", {"path": str(db), "table": "t"}, **options
    )
    _, _, events = sync.run()
    committed = events_of(events, "checkpoint_committed", "loader")
    assert committed[-1]["state"]["cursor"] == "2024-05-01T00:00:10"
    # Rows 5..10 change and 11..12 arrive; all share or pass the saved cursor.
    write_csv(source, 8, start=5, updated="2024-05-02")
    sync.state = committed[-1]["state"]
    sync.start_new_run()
    assert sync.run()[:2] == (0, 0)
    rows = sqlite_rows(db, "SELECT id, updated_at FROM t ORDER BY id")
    assert [r[0] for r in rows] == list(range(1, 13))
    assert rows[4][1].startswith("2024-05-02") and rows[0][1].startswith("2024-05-01")


def test_dedup_keeps_latest_by_cursor_in_sqlite_and_jsonl(tmp_path, make_sync):
    source = tmp_path / "a.csv"
    source.write_text(
        "id,v,updated_at\n1,new,2024-05-03\n1,old,2024-05-01\n2,x,2024-05-01\n2,y,2024-05-02\n"
    )
    db, out = tmp_path / "t.db", tmp_path / "out.jsonl"
    options = {"mode": "dedup", "cursor_field": "updated_at", "primary_key": ["id"]}
    for loader_type, config in (("sqlite", {"path": str(db), "table": "t"}),
                                ("jsonl", {"path": str(out)})):
        sync = make_sync("csv", {"path": str(source)}, loader_type, config, **options)
        assert sync.run()[:2] == (0, 0), sync.loader_log
    assert sqlite_rows(db, "SELECT id, v FROM t ORDER BY id") == [(1, "new"), (2, "y")]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["v"]) for r in records] == [(1, "new"), (2, "y")]


def test_csv_to_jsonl_full_refresh(tmp_path, make_sync):
    source = tmp_path / "users.csv"
    source.write_text(USERS_CSV, encoding="utf-8")
    out = tmp_path / "users.jsonl"
    out.write_text('{"stale": true}\n')
    sync = make_sync("csv", {"path": str(source)}, "jsonl", {"path": str(out)})
    assert sync.run()[:2] == (0, 0), sync.loader_log
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0] == {
        "id": 1, "name": "Ada, Countess", "amount": 1.5, "active": True,
        "joined": "2024-01-01", "updated_at": "2024-05-01T10:00:00",
    }
    assert [r["id"] for r in records] == [1, 2, 3, 4]
    assert records[1]["name"] is None
    assert not list(tmp_path.glob(".users.jsonl.etlctl-*.tmp"))


def test_backpressure_with_a_tiny_queue(tmp_path, make_sync, rabbitmq):
    from connector_harness import new_queues

    queues = new_queues(max_length=2)
    try:
        source = write_csv(tmp_path / "big.csv", 20000)
        db = tmp_path / "t.db"
        sync = make_sync("csv", {"path": str(source)}, "sqlite", {"path": str(db), "table": "t"},
                         batch={"max_records": 100, "max_bytes": 1048576, "commit_every": 4})
        sync.queues = queues
        extractor = sync.start("extractor")
        # No consumer yet: the queue fills and the broker nacks (polled: a loaded machine
        # may take seconds to start the extractor).
        deadline = time.monotonic() + 60
        while queues.message_count() < 2:
            assert time.monotonic() < deadline, "the extractor never filled the queue"
            time.sleep(0.1)
        time.sleep(0.5)  # it keeps trying; the bound holds
        assert queues.message_count() == 2
        loader = sync.start("loader")
        assert extractor.wait(60) == 0
        assert loader.wait(60) == 0, loader.stderr.read()
        assert "backpressure" in extractor.stderr.read()
        assert sqlite_rows(db, "SELECT count(DISTINCT id) FROM t") == [(20000,)]
    finally:
        queues.delete()


def test_restarted_loader_does_not_duplicate(tmp_path, make_sync):
    """The loader dies after some commits; a new loader process of the same run ends right.

    It dies by fault injection, right after its 3rd commit and before acknowledging it (the
    worst moment): killing it from here once it had committed enough raced with a loader fast
    enough to load everything between two looks."""
    source = write_csv(tmp_path / "a.csv", 30000)
    db = tmp_path / "t.db"
    sync = make_sync("csv", {"path": str(source)}, "sqlite", {"path": str(db), "table": "t"},
                     mode="incremental", cursor_field="updated_at",
                     batch={"max_records": 500, "max_bytes": 1048576, "commit_every": 2})
    sync.queues.delete()
    sync.queues.max_length = 10000
    sync.queues.declare()
    extractor = sync.start("extractor")  # fills the queue first: the loader then dies mid-run
    assert extractor.wait(60) == 0
    loader = sync.start("loader", env={CRASH_AFTER_COMMIT_ENV: "3"})
    assert loader.wait(30) == CRASH_EXIT_CODE, loader.stderr.read()
    assert _committed_seq(db) == 7  # SCHEMA, then 3 commits of 2 batches; the last unacked
    committed = sqlite_rows(db, "SELECT count(*) FROM t")[0][0]
    assert 0 < committed < 30000
    restarted = sync.start("loader")
    assert restarted.wait(60) == 0, restarted.stderr.read()
    assert sqlite_rows(db, "SELECT count(*), count(DISTINCT id) FROM t") == [(30000, 30000)]
    assert events_of(sync.queues.drain_events(), "done", "loader")


def _committed_seq(db: Path, run_id: str | None = None) -> int:
    try:
        rows = sqlite_rows(
            db, "SELECT max(last_seq) FROM _etlctl_loads"
            + ("" if run_id is None else f" WHERE run_id = '{run_id}'")
        )
    except sqlite3.Error:
        return 0
    return rows[0][0] or 0


def test_skip_bad_rows_reports_rejects(tmp_path, make_sync):
    source = tmp_path / "a.csv"
    source.write_text("id,n\n1,a\nx,b\n3,c,extra\n4,d\n")
    rejects = tmp_path / "rejects.jsonl"
    db = tmp_path / "t.db"
    sync = make_sync("csv", {"path": str(source), "column_types": {"id": "integer"}},
                     "sqlite", {"path": str(db), "table": "t"},
                     on_error="skip", rejects_path=str(rejects))
    _, _, events = sync.run()
    assert sqlite_rows(db, "SELECT id, n FROM t") == [(1, "a"), (4, "d")]
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert sorted(line["position"]["line"] for line in lines) == [3, 4]
    assert len(events_of(events, "rejected")) == 2
    done = events_of(events, "done", "extractor")[0]
    assert done["skipped"] == 2


@pytest.mark.parametrize("command", ["check"])
def test_check_reports_missing_file(tmp_path, make_sync, command):
    sync = make_sync("csv", {"path": str(tmp_path / "missing.csv")}, "jsonl",
                     {"path": str(tmp_path / "o.jsonl")})
    process = sync.start("extractor", command)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert json.loads(out)["status"] == "failed"
    process = sync.start("loader", command)
    out, _ = process.communicate(timeout=30)
    assert (process.returncode, json.loads(out)) == (0, {"status": "ok"})
