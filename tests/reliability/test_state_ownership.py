"""State belongs to the connection that made it, and is never ahead of or behind the target
(issue 12, section 3). Real syncs (docker runtime, RabbitMQ, SQLite/PostgreSQL targets), the
target checked exactly: count and count distinct.
"""

from __future__ import annotations

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

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROWS = 20_000
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
