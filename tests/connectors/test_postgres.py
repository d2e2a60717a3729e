"""The postgres extractor and loader against a real server (a throwaway database)."""

from __future__ import annotations

import json
import time

import pytest
from connector_harness import events_of
from pg_support import pg_database  # noqa: F401  (a fixture)

SOURCE_TABLE = """
CREATE TABLE source (
    id bigint PRIMARY KEY, small smallint, amount numeric(12, 2), ratio double precision,
    active boolean, name text, code varchar(8), born date, seen timestamp,
    changed timestamptz, doc jsonb, tags int[], ref uuid
)"""
SOURCE_ROWS = """
INSERT INTO source VALUES
 (1, 7, 12.50, 0.25, true, 'Ada "quoted", Zoë', 'A1', '1815-12-10', '2024-05-01 10:00:00',
  '2024-05-01 10:00:00+02', '{"k": [1, {"n": null}], "ü": "é"}', '{1,2}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"""


def test_extractor_maps_types_and_streams_with_a_server_side_cursor(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    pg_database.execute(SOURCE_TABLE)
    pg_database.execute(SOURCE_ROWS)
    out = tmp_path / "out.jsonl"
    sync = make_sync("postgres", pg_database.config(table="source", fetch_size=1), "jsonl",
                     {"path": str(out)})
    extractor, loader, _ = sync.run()
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert first == {
        "id": 1, "small": 7, "amount": 12.5, "ratio": 0.25, "active": True,
        "name": 'Ada "quoted", Zoë', "code": "A1", "born": "1815-12-10",
        "seen": "2024-05-01T10:00:00", "changed": "2024-05-01T08:00:00+00:00",
        "doc": {"k": [1, {"n": None}], "ü": "é"}, "tags": [1, 2],
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    }
    assert set(second.values()) == {2, None}
    assert "postgres" not in sync.extractor_log  # the password is never logged


def test_extractor_query_incremental_reads_from_the_saved_cursor(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    pg_database.execute("CREATE TABLE events (id int, at timestamptz)")
    pg_database.execute(
        "INSERT INTO events SELECT i, '2024-01-01'::timestamptz + (i / 100) * interval '1 day' "
        "FROM generate_series(1, 1000) AS i"
    )
    out = tmp_path / "out.jsonl"
    sync = make_sync(
        "postgres",
        # Fetched 25 rows at a time: a checkpoint can fall after each fetch.
        pg_database.config(query="SELECT id, at FROM events WHERE id > 0;", fetch_size=25),
        "jsonl", {"path": str(out)}, mode="incremental", cursor_field="at",
        state={"cursor": "2024-01-10T00:00:00+00:00"},
        batch={"max_records": 30, "max_bytes": 1048576, "commit_every": 1},
    )
    _, _, events = sync.run()
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == list(range(900, 1001))  # day 9 (900..999) and day 10 (1000)
    states = [e["state"]["cursor"] for e in events_of(events, "checkpoint_committed", "loader")]
    assert len(states) > 2 and states == sorted(states)
    assert states[-1] == "2024-01-11T00:00:00+00:00"


def test_loader_creates_typed_table_and_evolves_it(tmp_path, make_sync, pg_database):  # noqa: F811
    source = tmp_path / "a.jsonl"
    source.write_text(
        '{"id": 1, "n": 1.5, "ok": true, "s": "a\\"b, c", "doc": {"x": [1]}, '
        '"big": 9007199254740993}\n'
        '{"id": 2, "n": null, "ok": false, "s": "Zoë\\n2", "doc": [1, "two"], "big": -1}\n',
        encoding="utf-8",
    )
    config = pg_database.config(table="typed", schema="etl")
    sync = make_sync("jsonl", {"path": str(source)}, "postgres", config)
    assert sync.run()[:2] == (0, 0), sync.loader_log
    types = dict(pg_database.rows(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'etl' AND table_name = 'typed'"
    ))
    assert types == {"id": "bigint", "n": "double precision", "ok": "boolean", "s": "text",
                     "doc": "jsonb", "big": "bigint"}
    assert pg_database.rows("SELECT id, n, ok, s, doc, big FROM etl.typed ORDER BY id") == [
        (1, 1.5, True, 'a"b, c', {"x": [1]}, 9007199254740993),
        (2, None, False, "Zoë\n2", [1, "two"], -1),
    ]
    # A later sync brings a new column: it is added, old rows get NULL.
    source.write_text('{"id": 3, "n": 2, "ok": true, "s": "x", "doc": null, "big": 0, '
                      '"added": "2024-05-01"}\n')
    sync.mode = "incremental"
    sync.start_new_run()
    assert sync.run()[:2] == (0, 0), sync.loader_log
    assert pg_database.rows("SELECT id, added FROM etl.typed ORDER BY id") == [
        (1, None), (2, None), (3, "2024-05-01"),
    ]


def test_unstorable_value_fails_naming_the_column_or_is_skipped(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    pg_database.execute("CREATE TABLE strict (id bigint, at timestamptz, v text)")
    source = tmp_path / "a.jsonl"
    source.write_text("".join(
        json.dumps({"id": i, "at": "not a time" if i in (3, 7) else "2024-05-01T00:00:00",
                    "v": f"v{i}"}) + "\n"
        for i in range(1, 11)
    ))
    sync = make_sync("jsonl", {"path": str(source)}, "postgres",
                     pg_database.config(table="strict"), mode="incremental")
    extractor, loader, events = sync.run()
    assert loader == 1
    error = events_of(events, "error", "loader")[0]
    assert "column 'at'" in error["message"] and error["position"] == {"row": 3}
    assert pg_database.rows("SELECT count(*) FROM strict") == [(0,)]

    rejects = tmp_path / "rejects.jsonl"
    sync.on_error, sync.rejects_path = "skip", str(rejects)
    _fresh_queues(sync)  # etlctl deletes a failed run's queues with what they held
    extractor, loader, events = sync.run()
    assert (extractor, loader) == (0, 0), sync.loader_log
    assert [r[0] for r in pg_database.rows("SELECT id FROM strict ORDER BY id")] == [
        1, 2, 4, 5, 6, 8, 9, 10,
    ]
    rejected = events_of(events, "rejected", "loader")
    assert [e["position"] for e in rejected] == [{"row": 3}, {"row": 7}]
    assert events_of(events, "done", "loader")[0]["skipped"] == 2
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [line["record"]["id"] for line in lines] == [3, 7]


def test_full_refresh_keeps_the_old_table_when_the_sync_fails(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    source = tmp_path / "a.jsonl"
    source.write_text('{"id": 1, "v": "old"}\n{"id": 2, "v": "old"}\n')
    config = pg_database.config(table="swap")
    sync = make_sync("jsonl", {"path": str(source)}, "postgres", config, primary_key=["id"])
    assert sync.run()[:2] == (0, 0), sync.loader_log
    source.write_text('{"id": 1, "v": "new"}\n{"id": 1, "v": "newer"}\n{"id": 3, "v": 5}\n')
    sync.start_new_run()
    assert sync.run()[:2] == (0, 0), sync.loader_log  # and again: constraint names are free
    sync.start_new_run()
    assert sync.run()[:2] == (0, 0), sync.loader_log
    assert pg_database.rows("SELECT id, v FROM swap ORDER BY id") == [(1, "newer"), (3, "5")]
    # A sync that fails half-way (bad JSON, on_error fail) leaves the table as it was.
    source.write_text('{"id": 9, "v": "x"}\n{broken\n')
    _fresh_queues(sync)
    loader = sync.start("loader")
    assert sync.start("extractor").wait(60) == 1
    time.sleep(1)
    loader.kill()
    loader.wait(10)
    assert pg_database.rows("SELECT id, v FROM swap ORDER BY id") == [(1, "newer"), (3, "5")]


def _fresh_queues(sync) -> None:
    sync.queues.delete()
    sync.queues.declare()
    sync.start_new_run()


def test_check_hides_the_password(tmp_path, make_sync, pg_database):  # noqa: F811
    config = pg_database.config(table="t", password="s3cret-Pa55")
    sync = make_sync("postgres", {**config, "table": "nope"}, "postgres", config)
    for role in ("extractor", "loader"):
        process = sync.start(role, "check")
        out, err = process.communicate(timeout=30)
        assert process.returncode == 1
        assert json.loads(out)["status"] == "failed"
        assert "s3cret" not in out + err


@pytest.mark.parametrize("rows", [100_000])
def test_postgres_to_postgres_throughput(tmp_path, make_sync, pg_database, rows):  # noqa: F811
    pg_database.execute(
        "CREATE TABLE big AS SELECT i AS id, md5(i::text) AS name, i * 0.5 AS score, "
        "'2024-01-01'::timestamptz + i * interval '1 second' AS at "
        f"FROM generate_series(1, {rows}) i"
    )
    sync = make_sync("postgres", pg_database.config(table="big"), "postgres",
                     pg_database.config(table="big_copy"))
    started = time.monotonic()
    assert sync.run(timeout=120)[:2] == (0, 0), sync.loader_log
    elapsed = time.monotonic() - started
    assert pg_database.rows("SELECT count(*), sum(id) FROM big_copy") == [
        (rows, rows * (rows + 1) // 2)
    ]
    print(f"\npostgres -> postgres: {rows} rows in {elapsed:.1f}s ({rows / elapsed:,.0f}/s)")
