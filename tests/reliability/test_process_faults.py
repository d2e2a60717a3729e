"""The broker or etlctl itself fails in the middle of a real sync.

SIGINT and SIGTERM of etlctl (cleanup, run recorded as cancelled) and SIGKILL followed by
`etlctl gc` are proven in tests/integration/test_sync_lifecycle.py; here SIGKILL is followed
by the next *sync* of the connection, in incremental mode, with the target checked exactly.
"""

from __future__ import annotations

import signal

import pytest
from reliability_support import (
    Etl,
    assert_nothing_left,
    broker_stopped,
    committed_seq,
    run_files,
    sqlite_rows,
    unique,
    wait_until,
)

from tests_support import leftover_containers

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROWS = 200_000
SLOW = ("--batch-size", "100")
INCREMENTAL = ("--mode", "incremental", "--cursor-field", "updated_at", "--primary-key", "id")


def _incremental(etl: Etl, prefix: str):
    name = unique(prefix)
    source = etl.sqlite_source(f"{name}-src", ROWS)
    target = etl.sqlite_loader(f"{name}-dst", table="items")
    etl.connection(name, f"{name}-src", f"{name}-dst", *INCREMENTAL)
    return name, source, target


def _assert_state_not_ahead(etl: Etl, name: str, source, target) -> None:
    state = etl.state(name)
    if state is None:
        return
    below = sqlite_rows(source, "SELECT count(*) FROM items WHERE updated_at < ?",
                        (state["cursor"],))[0][0]
    assert sqlite_rows(target, "SELECT count(*) FROM items WHERE updated_at < ?",
                       (state["cursor"],))[0][0] == below, state


def _assert_exact(source, target) -> None:
    expected = sqlite_rows(source, "SELECT id, name, updated_at FROM items ORDER BY id")
    assert sqlite_rows(target, "SELECT id, name, updated_at FROM items ORDER BY id") == expected


def test_broker_stopped_mid_sync_fails_clearly_and_the_next_sync_is_exact(etl: Etl) -> None:
    name, source, target = _incremental(etl, "broker")
    process = etl.start("sync", name, "--json", *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    with broker_stopped():
        _, err = process.communicate(timeout=180)
        assert process.returncode != 0
        assert "Traceback" not in err, err
        assert "RabbitMQ" in err, err
    run = etl.last_run(name)
    assert run.status.value == "failed" and "RabbitMQ" in (run.error or ""), run.error
    # Counted as loaded only what the loader committed and reported before the broker went.
    assert run.records_loaded <= sqlite_rows(target, "SELECT count(*) FROM items")[0][0]
    _assert_state_not_ahead(etl, name, source, target)
    assert leftover_containers(name) == []
    # The durable queues outlive the broker's restart; the next sync removes them.
    etl.sync(name)
    _assert_exact(source, target)
    assert_nothing_left(name)


def test_sigkilled_etlctl_is_cleaned_up_by_the_next_sync(etl: Etl) -> None:
    name, source, target = _incremental(etl, "sigkill")
    process = etl.start("sync", name, "--json", *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    orphan = etl.last_run(name)
    assert orphan.status.value == "running"
    assert [path.name for path in run_files(etl)] == [orphan.id]
    _assert_state_not_ahead(etl, name, source, target)

    etl.sync(name)  # no gc in between: the sync itself removes the orphan's leftovers
    marked = etl.store.read().get_run(orphan.id)
    assert marked.status.value == "failed" and "ended without finishing" in (marked.error or "")
    assert marked.ended_at is not None
    _assert_exact(source, target)
    assert etl.last_run(name).status.value == "succeeded"
    assert_nothing_left(name)
    assert run_files(etl) == [], "the next sync removes the run files of the dead run"
