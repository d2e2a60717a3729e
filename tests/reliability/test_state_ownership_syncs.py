"""State belongs to the connection that made it, and is never ahead of or behind the target
(issue 12, section 3). Real syncs (docker runtime, RabbitMQ, SQLite/PostgreSQL targets), the
target checked exactly: count and count distinct.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from reliability_support import (
    Etl,
    assert_nothing_left,
    committed_seq,
    connector_containers,
    docker,
    sqlite_rows,
    unique,
    wait_until,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from pg_support import pg_database  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROWS = 20_000
ORPHAN_ROWS = 200_000  # with 100-record batches: a sync long enough to kill in the middle
SLOW = ("--batch-size", "100")


def _count_and_distinct(path, table: str = "items") -> tuple[int, int]:
    return sqlite_rows(path, f"SELECT count(*), count(DISTINCT id) FROM {table}")[0]


def test_remove_and_reset_of_a_syncing_connection_are_refused_and_keep_its_state(
    etl: Etl,
) -> None:
    name = unique("owned")
    etl.sqlite_source(f"{name}-src", ROWS)
    target = etl.sqlite_loader(f"{name}-dst", table="items")
    etl.connection(name, f"{name}-src", f"{name}-dst",
                   "--mode", "incremental", "--cursor-field", "updated_at")
    process = etl.start("sync", name, "--json", *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    loader = connector_containers(name, "loader")
    docker("pause", *loader)  # hold the sync in the middle (well within the heartbeat)
    try:
        removed = etl("connection", "remove", name, code=4)
        reset = etl("connection", "reset", name, code=4)
    finally:
        docker("unpause", *loader, check=False)
    assert f"cannot remove connection '{name}' while it is syncing (run run_" in removed.stderr
    assert f"cannot reset connection '{name}' while it is syncing (run run_" in reset.stderr
    _, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    assert _count_and_distinct(target) == (ROWS, ROWS)
    saved = etl.store.read().get_state(name)
    connection = etl.store.read().get("connection", name)
    assert saved.connection_id == connection.id and saved.state["cursor"] == "2024-05-01T00:49:00"

    # Not syncing: remove works; a new connection of the same name starts from nothing.
    etl("connection", "remove", name)
    assert etl.store.read().get_state(name) is None
    etl.connection(name, f"{name}-src", f"{name}-dst",
                   "--mode", "incremental", "--cursor-field", "updated_at", "--primary-key", "id")
    etl.sync(name)
    assert _count_and_distinct(target) == (ROWS, ROWS)
    assert etl.last_run(name).records_loaded == ROWS  # read from the start, not the old cursor
    assert_nothing_left(name)


# --- (c) the boundary: incremental append without a primary key, each record once ----------
def _write_days_csv(path, days: dict[str, int], start: int = 1) -> int:
    """id, updated_at (one date for many rows), name; returns the next id."""
    lines = [] if path.exists() else ["id,updated_at,name"]
    next_id = start
    for day, count in days.items():
        for _ in range(count):
            lines.append(f"{next_id},{day},name {next_id}")
            next_id += 1
    with path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return next_id


def _add_target(etl: Etl, name: str, kind: str, request) -> tuple[str, object]:
    if kind == "sqlite":
        return "sqlite", etl.sqlite_loader(name, table="items")
    if kind == "jsonl":
        path = etl.tmp / "out" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        etl("loader", "add", name, "--type", "jsonl", "--config", f"path={path}")
        return "jsonl", path
    pg = request.getfixturevalue("pg_database")
    config = pg.config(table=f"items_{name.replace('-', '_')}")
    etl("loader", "add", name, "--type", "postgres",
        *[arg for key, value in config.items() for arg in ("--config", f"{key}={value}")])
    return "postgres", (pg, config["table"])


def _target_counts(kind: str, target) -> tuple[int, int]:
    if kind == "sqlite":
        return _count_and_distinct(target)
    if kind == "jsonl":
        ids = [json.loads(line)["id"] for line in target.read_text().splitlines()]
        return len(ids), len(set(ids))
    pg, table = target
    return pg.rows(f"SELECT count(*), count(DISTINCT id) FROM {table}")[0]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_incremental_append_without_a_key_loads_each_record_once(
    etl: Etl, kind: str, request
) -> None:
    name = unique(f"edge-{kind[:2]}")
    source = etl.tmp / "data" / f"{name}.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    next_id = _write_days_csv(source, {f"2024-05-0{d}": 300 for d in range(1, 6)})
    etl("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source}")
    kind, target = _add_target(etl, f"{name}-dst", kind, request)
    etl.connection(name, f"{name}-src", f"{name}-dst",
                   "--mode", "incremental", "--cursor-field", "updated_at")
    for _ in range(3):  # the file unchanged: 300 records share the saved cursor value
        etl.sync(name)
        assert _target_counts(kind, target) == (1500, 1500)
    state = etl.state(name)
    assert state["cursor"] == "2024-05-05" and sum(state["boundary"].values()) == 300
    assert etl.last_run(name).records_loaded == 0

    # New records arrive at the saved cursor value and after it: loaded, each once.
    _write_days_csv(source, {"2024-05-05": 100, "2024-05-06": 100}, start=next_id)
    etl.sync(name)
    assert _target_counts(kind, target) == (1700, 1700)
    assert etl.last_run(name).records_loaded == 200
    etl.sync(name)
    assert _target_counts(kind, target) == (1700, 1700)
    assert_nothing_left(name)


# --- (d) a text cursor that does not sort as what it means -----------------------------------
def test_a_text_cursor_that_does_not_sort_as_dates_is_refused_with_the_fix(etl: Etl) -> None:
    name = unique("mdy")
    source = etl.tmp / "data" / f"{name}.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("id,updated,name\n1,12/30/2024,a\n2,12/31/2024,b\n3,1/2/2025,c\n")
    etl("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source}")
    target = etl.sqlite_loader(f"{name}-dst", table="items")
    etl.connection(name, f"{name}-src", f"{name}-dst",
                   "--mode", "incremental", "--cursor-field", "updated")
    result = etl.sync(name, code=1)
    assert ("cursor field 'updated' holds dates with the year last, e.g. '12/30/2024': "
            "compared as text, newer records would never be synced; write them as ISO 8601"
            ) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert etl.state(name) is None
    assert not target.exists() or sqlite_rows(
        target, "SELECT count(*) FROM sqlite_master WHERE name = 'items'") == [(0,)]
    assert_nothing_left(name)


# --- (b) a SIGKILLed etlctl whose containers finished the load ------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgres", "jsonl"])
def test_after_a_sigkilled_etlctl_the_targets_committed_state_wins(
    etl: Etl, kind: str, request
) -> None:
    name = unique(f"orphan-{kind[:2]}")
    etl.sqlite_source(f"{name}-src", ORPHAN_ROWS)
    kind, target = _add_target(etl, f"{name}-dst", kind, request)
    etl.connection(name, f"{name}-src", f"{name}-dst",
                   "--mode", "incremental", "--cursor-field", "updated_at")  # no key
    process = etl.start("sync", name, "--json", *SLOW)
    wait_until(lambda: etl.runs(name) and etl.last_run(name).records_loaded > 0, 120,
               "a first checkpoint")
    process.send_signal(signal.SIGKILL)  # etlctl dies; its containers go on
    process.wait(30)
    wait_until(lambda: not connector_containers(name, "loader"), 240,
               "the orphaned loader to finish the load", step=0.5)
    assert _target_counts(kind, target) == (ORPHAN_ROWS,) * 2  # the orphans loaded it all...
    stale = etl.state(name)
    assert stale is not None and stale["cursor"] < "2024-05-01T00:49:00"  # ...unheard of

    etl.sync(name)  # asks the target, which committed the whole increment: nothing again
    assert _target_counts(kind, target) == (ORPHAN_ROWS, ORPHAN_ROWS)
    assert etl.last_run(name).records_loaded == 0
    # It started from the orphaned run's final state, taken from the target.
    (before,) = etl.last_run(name).state_before["streams"].values()
    assert before["cursor"] == "2024-05-01T00:49:00"
    etl.sync(name)
    assert _target_counts(kind, target) == (ORPHAN_ROWS, ORPHAN_ROWS)
    assert_nothing_left(name)
