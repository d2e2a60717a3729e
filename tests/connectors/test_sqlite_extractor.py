"""The sqlite extractor: tables and queries, typed by declaration, incremental in order."""

from __future__ import annotations

import json
import sqlite3

from connector_harness import events_of


def make_source(path, statements: list[str], rows: list[tuple] | None = None) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            db.executemany(f"INSERT INTO t VALUES ({marks})", rows)
    db.close()


def test_table_types_follow_declarations(tmp_path, make_sync):
    source = tmp_path / "s.db"
    make_source(source, [
        "CREATE TABLE t (id INTEGER PRIMARY KEY, price REAL, ok BOOLEAN, born DATE, "
        "at DATETIME, doc JSON, name TEXT, raw)",
    ], [(1, 2, 1, "2024-01-31", "2024-01-31 10:00:00", '{"a": [1, "ü"]}', "Zoë, \"q\"", 5),
        (2, None, 0, None, None, None, None, None)])
    out = tmp_path / "out.jsonl"
    sync = make_sync("sqlite", {"path": str(source), "table": "t"}, "jsonl", {"path": str(out)})
    assert sync.run()[:2] == (0, 0), sync.extractor_log
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0] == {"id": 1, "price": 2.0, "ok": True, "born": "2024-01-31",
                          "at": "2024-01-31 10:00:00", "doc": {"a": [1, "ü"]},
                          "name": 'Zoë, "q"', "raw": 5}
    assert records[1]["ok"] is False and records[1]["price"] is None


def test_query_and_a_value_that_does_not_fit_its_column(tmp_path, make_sync):
    source = tmp_path / "s.db"
    make_source(source, ["CREATE TABLE t (id INTEGER, v TEXT)"],
                [(1, "a"), ("oops", "b"), (3, "c")])
    out = tmp_path / "out.jsonl"
    sync = make_sync("sqlite", {"path": str(source), "table": "t"}, "jsonl", {"path": str(out)},
                     on_error="skip")
    _, _, events = sync.run()
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 3]
    assert events_of(events, "rejected")[0]["position"] == {"row": 2}
    query = "SELECT id * 10 AS id10, upper(v) AS v FROM t WHERE id <> 'oops'"
    sync.source_config = {"path": str(source), "query": query}
    sync.start_new_run()
    assert sync.run()[:2] == (0, 0)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [{"id10": 10, "v": "A"}, {"id10": 30, "v": "C"}]


def test_incremental_checkpoints_between_batches_in_cursor_order(tmp_path, make_sync):
    source = tmp_path / "s.db"
    # 2000 rows over 20 cursor values (100 each), inserted out of order.
    rows = [(i, f"2024-05-{1 + i % 20:02d}") for i in range(2000)]
    make_source(source, ["CREATE TABLE t (id INTEGER, day DATE)"], rows)
    db = tmp_path / "t.db"
    sync = make_sync("sqlite", {"path": str(source), "table": "t"}, "sqlite",
                     {"path": str(db), "table": "t"}, mode="incremental", cursor_field="day",
                     primary_key=["id"], state={"cursor": "2024-05-11"},
                     batch={"max_records": 37, "max_bytes": 1048576, "commit_every": 3})
    _, _, events = sync.run()
    states = [e["state"]["cursor"] for e in events_of(events, "checkpoint_committed", "loader")]
    assert len(states) > 5 and states == sorted(states) and states[-1] == "2024-05-20"
    with sqlite3.connect(db) as target:
        assert target.execute("SELECT count(*), min(day) FROM t").fetchone() == (1000, "2024-05-11")
    target.close()
