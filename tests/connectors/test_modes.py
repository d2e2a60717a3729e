"""Every sync mode, twice, with the source changing in between: the target must hold exactly
the expected rows (none lost, none duplicated, the latest versions) and the saved cursor must
be right. Source: the sqlite extractor; targets: sqlite, postgres and (dedup) jsonl."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from connector_harness import events_of
from pg_support import PgDatabase, pg_database  # noqa: F401  (a fixture)

from connectors.sdk.loader import CRASH_AFTER_COMMIT_ENV, CRASH_EXIT_CODE

T1, T2, T3 = "2024-05-01T00:00:00", "2024-05-02T00:00:00", "2024-05-03T00:00:00"

MODES: dict[str, dict[str, Any]] = {
    "full_refresh": {"mode": "full_refresh"},
    "incremental": {"mode": "incremental", "cursor_field": "updated_at"},
    "incremental_with_key": {
        "mode": "incremental", "cursor_field": "updated_at", "primary_key": ["id"],
    },
    "dedup": {"mode": "dedup", "primary_key": ["id"]},
    "incremental_dedup": {"mode": "dedup", "cursor_field": "updated_at", "primary_key": ["id"]},
}
Row = tuple[int, str, str]  # id, name, updated_at


# --- the source ------------------------------------------------------------------------------
def first_source() -> list[Row]:
    # Half the rows share T1, the other half T2: many records per cursor value.
    return [(i, f"v1-{i}-Zoë", T1 if i <= 25 else T2) for i in range(1, 51)]


def second_source() -> list[Row]:
    """Rows 1-5 updated, 6-10 deleted, 51-60 added at the saved cursor (T2), 61-65 at T3."""
    rows = {row[0]: row for row in first_source() if not 6 <= row[0] <= 10}
    for i in range(1, 6):
        rows[i] = (i, f"v2-{i}", T3)
    for i in range(51, 61):
        rows[i] = (i, f"new-{i}", T2)
    for i in range(61, 66):
        rows[i] = (i, f"new-{i}", T3)
    return sorted(rows.values())


def write_source(path: Path, rows: list[Row]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS items")
        db.execute("CREATE TABLE items (id INTEGER, name TEXT, updated_at TIMESTAMP, "
                   "payload JSON)")
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(*row, json.dumps({"id": row[0], "tags": ["a", "ü"]})) for row in rows],
        )
    db.close()


def rows_read(source: list[Row], options: dict[str, Any], saved: str | None) -> list[Row]:
    if saved is None or options["mode"] == "full_refresh" or "cursor_field" not in options:
        return source
    return [row for row in source if row[2] >= saved]


def expected_target(options: dict[str, Any], first: list[Row], second: list[Row]) -> Counter:
    if options["mode"] == "full_refresh":
        return Counter((i, name) for i, name, _ in second)
    if not options.get("primary_key"):
        # Append: `>=` re-reads the saved cursor's records; those already loaded (the same
        # record, recognised by the state's boundary hashes) are skipped: each once.
        return Counter((i, name) for i, name, _ in set(first) | set(second))
    latest: dict[int, Row] = {}
    for row in first + second:
        if row[0] not in latest or row[2] >= latest[row[0]][2]:
            latest[row[0]] = row
    return Counter((i, name) for i, name, _ in latest.values())


# --- the targets -----------------------------------------------------------------------------
class Target:
    def __init__(self, kind: str, tmp: Path, pg: PgDatabase | None, name: str) -> None:
        self.kind, self.tmp, self.pg, self.name = kind, tmp, pg, name

    @property
    def config(self) -> dict[str, Any]:
        if self.kind == "sqlite":
            return {"path": str(self.tmp / "target.db"), "table": self.name}
        if self.kind == "jsonl":
            return {"path": str(self.tmp / f"{self.name}.jsonl")}
        assert self.pg is not None
        return self.pg.config(table=self.name)

    def rows(self) -> Counter:
        if self.kind == "sqlite":
            with sqlite3.connect(self.tmp / "target.db") as db:
                found = db.execute(f"SELECT id, name FROM {self.name}").fetchall()
            db.close()
            return Counter(found)
        if self.kind == "jsonl":
            lines = (self.tmp / f"{self.name}.jsonl").read_text(encoding="utf-8").splitlines()
            return Counter((r["id"], r["name"]) for r in map(json.loads, lines))
        assert self.pg is not None
        return Counter(self.pg.rows(f"SELECT id, name FROM {self.name}"))


CASES = [(loader, mode) for mode in MODES for loader in ("sqlite", "postgres")] + [
    ("jsonl", "dedup"), ("jsonl", "incremental_dedup"),
]


@pytest.fixture
def target(request, tmp_path) -> Target:
    loader, mode = request.param
    pg = request.getfixturevalue("pg_database") if loader == "postgres" else None
    return Target(loader, tmp_path, pg, f"items_{mode}")


@pytest.mark.parametrize(
    ("target", "mode"), [((loader, mode), mode) for loader, mode in CASES],
    ids=[f"{loader}-{mode}" for loader, mode in CASES], indirect=["target"],
)
def test_two_syncs_with_changes_in_between(tmp_path, make_sync, target, mode):
    options = MODES[mode]
    source = tmp_path / "source.db"
    sync = make_sync("sqlite", {"path": str(source), "table": "items"}, target.kind,
                     target.config, batch={"max_records": 7, "max_bytes": 1048576,
                                           "commit_every": 2}, **options)
    write_source(source, first_source())
    first = _sync(sync)
    cursor = "cursor_field" in options
    if cursor:
        assert first["cursor"] == T2
        assert sum(first["boundary"].values()) == 25  # the records loaded at T2
    assert target.rows() == expected_target(options, [], first_source())

    write_source(source, second_source())
    sync.state = first
    sync.start_new_run()
    second = _sync(sync)
    saved = first["cursor"] if cursor else None
    read = rows_read(second_source(), options, saved)
    assert target.rows() == expected_target(options, first_source(), read)
    if cursor:
        assert second["cursor"] == T3


def _sync(sync) -> Any:
    extractor, loader, events = sync.run(timeout=60)
    assert (extractor, loader) == (0, 0), sync.loader_log + sync.extractor_log
    committed = events_of(events, "checkpoint_committed", "loader")
    return committed[-1]["state"] if committed else None


# --- a crash of the loader in the middle of an incremental sync ------------------------------
def test_killed_postgres_loader_then_new_run_ends_exactly_right(
    tmp_path, make_sync, pg_database  # noqa: F811
):
    source = tmp_path / "source.db"
    rows = [(i, f"n{i}", f"2024-05-01T00:{i // 600:02d}:00") for i in range(1, 30001)]
    write_source(source, rows)
    sync = make_sync(
        "sqlite", {"path": str(source), "table": "items"}, "postgres",
        pg_database.config(table="crash"), mode="incremental", cursor_field="updated_at",
        batch={"max_records": 500, "max_bytes": 1048576, "commit_every": 2},
    )
    sync.queues.delete()
    sync.queues.max_length = 10000
    sync.queues.declare()
    extractor = sync.start("extractor")  # fills the queue first: the loader then dies mid-run
    assert extractor.wait(60) == 0
    # Dies right after its 4th commit, before acknowledging it (fault injection: killing it
    # from here once it had committed enough raced with a fast loader).
    loader = sync.start("loader", env={CRASH_AFTER_COMMIT_ENV: "4"})
    assert loader.wait(30) == CRASH_EXIT_CODE, loader.stderr.read()
    committed = pg_database.rows("SELECT count(*) FROM crash")[0][0]
    assert 0 < committed < 30000
    events = sync.queues.drain_events()
    states = [e["state"]["cursor"] for e in events_of(events, "checkpoint_committed", "loader")]
    assert states == sorted(states)  # checkpoints between batches, in cursor order

    restarted = sync.start("loader")
    assert restarted.wait(60) == 0, restarted.stderr.read()
    assert pg_database.rows("SELECT count(*), count(DISTINCT id) FROM crash") == [(30000, 30000)]
    final = events_of(sync.queues.drain_events(), "checkpoint_committed", "loader")
    assert final[-1]["state"]["cursor"] == "2024-05-01T00:50:00"

    # A new run from the saved cursor re-reads only the last cursor value's rows, and skips
    # them: the state's boundary names them. Append without a key, each record once.
    sync.state = final[-1]["state"]
    sync.start_new_run()
    assert sync.run(timeout=60)[:2] == (0, 0), sync.loader_log
    assert pg_database.rows("SELECT count(*), count(DISTINCT id) FROM crash") == [(30000, 30000)]

