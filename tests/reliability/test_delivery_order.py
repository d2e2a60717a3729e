"""The delivery order, pinned window by window: commit, then report, then acknowledge; a run
succeeds only on the loader's `done` after an END whose count matches.

A fault point (ETLCTL_TEST_FAULT, connectors/sdk/faults.py) stops a connector in each window.
Every test here fails when the order is broken: a loader that acknowledges before it commits
(the restarted loader misses what was acknowledged), that reports `checkpoint_committed`
before it commits (a reported state ahead of the target), an orchestrator that counts a run as
succeeded without the loader's `done`, a loader that trusts an END whose count is wrong, or a
full refresh written straight into the target instead of its staging table.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    Etl,
    assert_nothing_left,
    sqlite_rows,
    unique,
    write_items,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "connectors"))

from connector_harness import Queues, Sync, events_of, new_queues

from connectors.sdk.faults import CRASH_EXIT_CODE, FAULT_ENV

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROWS = 20_000
BATCH = {"max_records": 250, "max_bytes": 1048576, "commit_every": 4}
LOCAL = ("--runtime", "local", "--batch-size", "100")


@pytest.fixture
def big_queues(rabbitmq: str) -> Queues:
    """Room for the whole run, so the extractor finishes before the loader starts."""
    queues = new_queues(max_length=10_000)
    yield queues
    queues.delete()


def _items_sync(tmp_path: Path, queues: Queues, **options: Any) -> tuple[Sync, Path, Path]:
    source = tmp_path / "source.db"
    write_items(source, ROWS)
    target = tmp_path / "target.db"
    sync = Sync(
        tmp_path, queues, "sqlite", {"path": str(source), "table": "items"},
        "sqlite", {"path": str(target), "table": "items"},
        mode="incremental", cursor_field="updated_at", **options,
    )
    return sync, source, target


def _extract_all(sync: Sync) -> None:
    extractor = sync.start("extractor")
    assert extractor.wait(120) == 0, extractor.stderr.read()


def _crash_at(sync: Sync, fault: str) -> None:
    crashed = sync.start("loader", env={FAULT_ENV: fault})
    assert crashed.wait(120) == CRASH_EXIT_CODE, crashed.stderr.read()
    assert f"fault injection: {fault.partition(':')[0]}" in crashed.stderr.read()


def _restart_to_the_end(sync: Sync) -> list[dict[str, Any]]:
    restarted = sync.start("loader")
    assert restarted.wait(120) == 0, restarted.stderr.read()
    return sync.queues.drain_events()


def _assert_states_covered(events: list[dict[str, Any]], source: Path, target: Path) -> int:
    """Every reported checkpoint is held by the target: each source row below its cursor."""
    reported = events_of(events, "checkpoint_committed", "loader")
    for event in reported:
        cursor = event["state"]["cursor"]
        below = "SELECT count(*) FROM items WHERE updated_at < ?"
        assert sqlite_rows(target, below, (cursor,)) == sqlite_rows(source, below, (cursor,)), (
            f"checkpoint {cursor} was reported but the target does not hold it"
        )
    return len(reported)


# --- within a run: the harness restarts the loader against the same queue ------------------
def test_crash_before_a_commit_loses_nothing_after_a_restart(
    tmp_path: Path, big_queues: Queues
) -> None:
    """Rows written but not committed are rolled back, and their messages, never
    acknowledged, come again: a loader that acknowledged before committing loses them."""
    # No checkpoints between batches: the loader commits every 4 batches, and only then.
    sync, _source, target = _items_sync(
        tmp_path, big_queues, batch={**BATCH, "commit_every": 10_000}, loader_batch=dict(BATCH)
    )
    _extract_all(sync)
    _crash_at(sync, "before_commit:3")
    # Two commits of four batches each are in the target, the third one's rows are not.
    assert sqlite_rows(target, "SELECT count(*) FROM items") == [(2 * 4 * 250,)]
    events = _restart_to_the_end(sync)
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id) FROM items") == [
        (ROWS, ROWS)
    ]
    assert events_of(events, "done", "loader")[-1]["records"] == ROWS


def test_a_checkpoint_is_reported_only_once_committed(tmp_path: Path, big_queues: Queues) -> None:
    """The loader commits only at checkpoints here (its commit_every is larger than the run),
    and dies before its third commit: no report may name a state the target lacks."""
    sync, source, target = _items_sync(
        tmp_path, big_queues, batch={**BATCH, "commit_every": 2},
        loader_batch={**BATCH, "commit_every": 10_000},
    )
    _extract_all(sync)
    _crash_at(sync, "before_commit:3")
    events = sync.queues.drain_events()
    assert _assert_states_covered(events, source, target) == 2
    assert 0 < sqlite_rows(target, "SELECT count(*) FROM items")[0][0] < ROWS
    events = _restart_to_the_end(sync)
    _assert_states_covered(events, source, target)
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id) FROM items") == [
        (ROWS, ROWS)
    ]


@pytest.mark.parametrize("fault", ["after_commit:3", "after_report:3"])
def test_crash_after_a_commit_before_its_ack_is_not_applied_twice(
    tmp_path: Path, big_queues: Queues, fault: str
) -> None:
    """Committed and (for after_report) reported, not acknowledged: the messages come again
    and the restarted loader skips them, in append mode without a key."""
    sync, source, target = _items_sync(
        tmp_path, big_queues, batch={**BATCH, "commit_every": 2},
        loader_batch={**BATCH, "commit_every": 10_000},
    )
    _extract_all(sync)
    _crash_at(sync, fault)
    events = sync.queues.drain_events()
    reported = _assert_states_covered(events, source, target)
    assert reported == (3 if fault.startswith("after_report") else 2)
    assert sync.queues.message_count() > 0  # the crashed commit's messages are back
    events = _restart_to_the_end(sync)
    _assert_states_covered(events, source, target)
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id) FROM items") == [
        (ROWS, ROWS)
    ]


# --- through etlctl (local runtime, which passes the environment on) ------------------------
def test_crash_before_the_last_commit_saves_no_state_and_the_next_sync_is_exact(
    etl: Etl,
) -> None:
    """A CSV source reports its state at END only: a loader that dies before its last
    commit must leave no saved cursor (one reported early would skip the rows it lost)."""
    name = unique("order-fin")
    source = etl.csv_source(f"{name}-src", 5000)
    target = etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst",
                   "--mode", "incremental", "--cursor-field", "updated_at", "--primary-key", "id")
    result = etl.sync(name, *LOCAL, code=1, env={FAULT_ENV: "before_finish"})
    assert "the loader exited with code 137" in result.stderr
    assert etl.state(name) is None
    assert 0 < sqlite_rows(target, "SELECT count(*) FROM users")[0][0] < 5000
    assert_nothing_left(name)

    from tests_support import write_users_csv

    write_users_csv(source, 5100)
    etl.sync(name, *LOCAL)
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id), max(id) FROM users") == [
        (5100, 5100, 5100)
    ]
    assert_nothing_left(name)


def test_a_loader_that_exits_0_without_done_fails_the_run(etl: Etl) -> None:
    name = unique("order-done")
    etl.csv_source(f"{name}-src", 3000)
    etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    result = etl.sync(name, *LOCAL, code=1, env={FAULT_ENV: "exit_without_done"})
    assert "the loader finished without confirming the load" in result.stderr
    run = etl.last_run(name)
    assert run.status.value == "failed"
    assert run.error == "the loader finished without confirming the load"
    assert_nothing_left(name)


def test_an_end_whose_count_is_wrong_fails_and_keeps_the_previous_table(etl: Etl) -> None:
    """The loader committed part of the new full refresh into its staging table before the
    END with a wrong count arrived: the run fails naming both counts, the previous table is
    whole (a loader writing straight into it would show the new rows), the next sync exact."""
    name = unique("order-end")
    source = etl.csv_source(f"{name}-src", 1000)
    target = etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    etl.sync(name, *LOCAL)

    from tests_support import write_users_csv

    write_users_csv(source, 5000, start=10_001)
    result = etl.sync(name, *LOCAL, code=1, env={FAULT_ENV: "end_count"})
    assert "the extractor sent 5001 records but 5000 arrived" in result.stderr
    assert etl.last_run(name).status.value == "failed"
    # None of it reached the target...
    assert sqlite_rows(target, "SELECT count(*), min(id), max(id) FROM users") == [(1000, 1, 1000)]
    # ... although the failed run committed part of it (into its staging table).
    staged = sqlite_rows(target, "SELECT count(*) FROM _etlctl_staging_users")[0][0]
    assert 0 < staged < 5000
    assert_nothing_left(name)

    etl.sync(name, *LOCAL)
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id), min(id) FROM users") == [
        (5000, 5000, 10_001)
    ]
    assert sqlite_rows(
        target, "SELECT count(*) FROM sqlite_master WHERE name LIKE '_etlctl_staging_%'"
    ) == [(0,)]
