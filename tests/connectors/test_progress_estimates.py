"""Extractors tell how far they are: the `estimate` of progress events (files by bytes, SQL by
rows, HTTP by the total the API reports) and where each side's time went (`done` events).

Real connectors in subprocesses, real RabbitMQ queues, real SQLite/PostgreSQL and a local
HTTP server."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from connector_harness import events_of
from pg_support import pg_database  # noqa: F401  (a fixture)

from connectors.extractors import sqlite as sqlite_extractor
from connectors.sdk import RunContext
from connectors.sdk.protocol import BatchLimits, SyncSettings

SMALL_BATCHES = {"max_records": 100, "max_bytes": 1048576, "commit_every": 4}


def estimates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["estimate"] for e in events_of(events, "progress", "extractor") if "estimate" in e]


def assert_sane_timing(events: list[dict[str, Any]]) -> None:
    (extractor_done,) = events_of(events, "done", "extractor")
    (loader_done,) = events_of(events, "done", "loader")
    for done in (extractor_done, loader_done):
        assert done["busy_seconds"] >= 0 and done["wait_seconds"] >= 0
    assert isinstance(extractor_done["queue_full"], int) and extractor_done["queue_full"] >= 0


def test_csv_reports_bytes_read_of_the_files_sizes(tmp_path, make_sync):
    files = []
    for part in range(2):
        path = tmp_path / f"part{part}.csv"
        path.write_text("id,name\n" + "".join(f"{i},name {i}\n" for i in range(3000)))
        files.append(path)
    total = sum(path.stat().st_size for path in files)
    out = tmp_path / "out.jsonl"
    sync = make_sync("csv", {"path": str(tmp_path / "part*.csv")}, "jsonl", {"path": str(out)},
                     batch=SMALL_BATCHES)
    _, loader_code, events = sync.run()
    assert loader_code == 0, sync.loader_log
    seen = estimates(events)
    assert seen, "no progress event carried an estimate"
    assert {e["unit"] for e in seen} == {"bytes"}
    assert {e["total"] for e in seen} == {total}
    dones = [e["done"] for e in seen]
    assert dones == sorted(dones) and 0 < dones[0] <= total
    assert len(out.read_text().splitlines()) == 6000
    assert_sane_timing(events)


def test_jsonl_reports_bytes_read(tmp_path, make_sync):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(2500)))
    sync = make_sync("jsonl", {"path": str(source)}, "jsonl",
                     {"path": str(tmp_path / "out.jsonl")}, batch=SMALL_BATCHES)
    _, loader_code, events = sync.run()
    assert loader_code == 0, sync.loader_log
    seen = estimates(events)
    assert seen and {e["total"] for e in seen} == {source.stat().st_size}
    assert all(0 < e["done"] <= e["total"] for e in seen)


def test_sqlite_counts_the_rows_the_sync_reads(tmp_path, make_sync):
    source = tmp_path / "s.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE t (id INTEGER, day TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)",
                       [(i, f"2024-05-{1 + i % 20:02d}") for i in range(1000)])
    db.close()
    out = tmp_path / "out.jsonl"
    sync = make_sync("sqlite", {"path": str(source), "table": "t"}, "jsonl", {"path": str(out)},
                     batch=SMALL_BATCHES)
    _, _, events = sync.run()
    seen = estimates(events)
    assert seen and {(e["unit"], e["total"]) for e in seen} == {("records", 1000)}
    # Incremental from a saved cursor: the count is of the rows past it.
    sync.mode, sync.cursor_field = "incremental", "day"
    sync.state = {"cursor": "2024-05-11"}
    sync.start_new_run()
    _, _, events = sync.run()
    expected = sum(1 for i in range(1000) if f"2024-05-{1 + i % 20:02d}" >= "2024-05-11")
    assert {e["total"] for e in estimates(events)} == {expected}


def test_sqlite_gives_up_counting_past_its_budget(tmp_path, monkeypatch):
    """A count that would take longer than the budget is interrupted: no estimate, and the
    connection stays usable for the read itself."""
    source = tmp_path / "s.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE t (id INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50_000)])
    db.close()
    context = RunContext("r", "c", SyncSettings(), BatchLimits())
    # A query, so that the count scans the rows (a whole table's count is a quick lookup).
    extractor = sqlite_extractor.SqliteExtractor(
        {"path": str(source), "query": "SELECT id FROM t WHERE id % 2 = 0"}, context
    )
    extractor.db = extractor._connect()
    try:
        assert extractor._count_rows() == 25_000
        monkeypatch.setattr(sqlite_extractor, "COUNT_BUDGET_SECONDS", -1.0)
        assert extractor._count_rows() is None
        assert extractor.db.execute("SELECT count(*) FROM t").fetchone()[0] == 50_000
    finally:
        extractor.close()


class CountingApi(BaseHTTPRequestHandler):
    """Two pages of 10; the total in the body (``meta.total``) and in X-Total-Count."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        page = int(query.get("page", ["1"])[0])
        items = [{"id": i} for i in range((page - 1) * 10, min(page * 10, 20))]
        data = json.dumps({"items": items, "meta": {"total": 20}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Total-Count", "20")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def counting_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/items"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("total_path", [None, "meta.total"])
def test_http_reports_the_total_the_api_gives(tmp_path, make_sync, counting_api, total_path):
    config: dict[str, Any] = {
        "url": counting_api,
        "records_path": "items",
        "pagination": {"type": "page_number", "page_param": "page"},
    }
    if total_path:
        config["total_path"] = total_path
    sync = make_sync("http", config, "jsonl", {"path": str(tmp_path / "out.jsonl")},
                     batch={**SMALL_BATCHES, "max_records": 5})
    _, loader_code, events = sync.run(timeout=60)
    assert loader_code == 0, sync.extractor_log
    seen = estimates(events)
    assert seen and {(e["unit"], e["total"]) for e in seen} == {("records", 20)}


def test_http_without_a_total_sends_no_estimate(tmp_path, make_sync, counting_api):
    config = {"url": counting_api, "records_path": "items", "total_path": "meta.missing"}
    sync = make_sync("http", config, "jsonl", {"path": str(tmp_path / "out.jsonl")})
    _, loader_code, events = sync.run(timeout=60)
    assert loader_code == 0
    assert events_of(events, "progress", "extractor") and not estimates(events)


def test_postgres_estimates_small_tables_by_count_and_large_ones_by_reltuples(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    from connectors.extractors.postgres import SMALL_TABLE_ROWS

    pg_database.execute("DROP TABLE IF EXISTS small, big")
    pg_database.execute("CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 321) g")
    big_rows = SMALL_TABLE_ROWS + 5000
    pg_database.execute(
        # No autovacuum: it would refresh the estimate behind the test's back.
        "CREATE TABLE big WITH (autovacuum_enabled = false) AS "
        f"SELECT g AS id FROM generate_series(1, {big_rows}) g"
    )
    out = str(tmp_path / "out.jsonl")
    sync = make_sync("postgres", pg_database.config(table="small"), "jsonl", {"path": out})
    _, _, events = sync.run()
    assert {(e["unit"], e["total"]) for e in estimates(events)} == {("records", 321)}
    # A large table: the planner's estimate (VACUUM makes it the exact count), not a
    # count(*): the 7 rows inserted after it are not in the estimate.
    pg_database.execute("VACUUM big")
    pg_database.execute("INSERT INTO big SELECT g FROM generate_series(1, 7) g")
    sync.source_config = pg_database.config(table="big", fetch_size=5000)
    sync.start_new_run()
    _, _, events = sync.run()
    seen = estimates(events)
    assert seen and seen[0]["total"] == big_rows
    with open(out) as written:
        assert sum(1 for _ in written) == big_rows + 7
    # A query is counted (within the server-side budget).
    sync.source_config = pg_database.config(query="SELECT id FROM small WHERE id <= 100")
    sync.start_new_run()
    _, _, events = sync.run()
    assert {e["total"] for e in estimates(events)} == {100}
