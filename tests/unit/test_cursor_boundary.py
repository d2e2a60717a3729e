"""Incremental append is exactly-once without a primary key: the SDK's cursor boundary
(connectors/sdk/cursor.py) over the real RecordStream, messages collected in a list.

The property: a source that grows between syncs (records arriving later never have a cursor
below one already synced: the incremental contract), many records per cursor value, identical
records, any order within the source, any batch sizes, syncs at any moments, a sync that
crashes after any of its checkpoints: the target ends holding each record exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.sdk import Column, ConnectorError, RunContext
from connectors.sdk.cursor import MAX_BOUNDARY_RECORDS, CursorTracker, text_order_problem
from connectors.sdk.extractor import RecordStream
from connectors.sdk.protocol import CHECKPOINT, END, RECORDS, BatchLimits, SyncSettings

COLUMNS = [Column("k", "integer"), Column("payload", "string")]


class Messages:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def publish_message(self, message_type: str, body: bytes) -> None:
        self.sent.append((message_type, orjson.loads(body)))

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None:
        pass


def one_sync(
    rows: list[list[Any]],
    state: dict[str, Any] | None,
    chunks: list[int],
    max_records: int,
    sorted_source: bool,
    source_filters: bool,
) -> list[tuple[str, Any]]:
    context = RunContext(
        run_id="run", connection="c",
        sync=SyncSettings(mode="incremental", cursor_field="k"),
        batch=BatchLimits(max_records=max_records, max_bytes=1 << 20, commit_every=1),
        # Through JSON, as the store and the run file carry it.
        state=orjson.loads(orjson.dumps(state)) if state else None,
    )
    if source_filters and context.start_cursor is not None:
        rows = [row for row in rows if row[0] >= context.start_cursor]  # WHERE k >= saved
    out = Messages()
    stream = RecordStream(out, context, "s", filters_by_cursor=source_filters,
                          sorted_by_cursor=sorted_source)
    stream.declare(COLUMNS)
    position = 0
    for size in chunks:
        stream.write_rows([list(row) for row in rows[position:position + size]])
        position += size
    stream.write_rows([list(row) for row in rows[position:]])
    stream.end()
    return out.sent


def load(messages: list[tuple[str, Any]], crash_at: int | None) -> tuple[list, dict | None]:
    """What a loader commits: every batch up to the END, or (a crash) up to the crash_at-th
    checkpoint; and the state that goes with it."""
    checkpoints = [i for i, (kind, _) in enumerate(messages) if kind in (CHECKPOINT, END)]
    upto = checkpoints[-1] if crash_at is None else checkpoints[crash_at % len(checkpoints)]
    loaded = [tuple(row) for kind, body in messages[: upto + 1] if kind == RECORDS
              for row in body["rows"]]
    return loaded, messages[upto][1]["state"]


records = st.lists(
    st.tuples(st.integers(0, 6), st.sampled_from(["a", "b", "c", "é", ""])),
    min_size=1, max_size=80,
)


syncs = st.lists(
    st.tuples(
        st.integers(0, 80),  # how many of the records had arrived when this sync ran
        st.lists(st.integers(1, 5), max_size=6),  # how the source hands out its rows
        st.one_of(st.none(), st.integers(0, 20)),  # crash after that checkpoint, or none
    ),
    max_size=4,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=records,
    plan=syncs,
    sorted_source=st.booleans(),
    source_filters=st.booleans(),
    max_records=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_any_split_into_syncs_loads_each_record_exactly_once(
    source, plan, sorted_source, source_filters, max_records, seed
) -> None:
    shuffler = random.Random(seed)
    arrivals = sorted(source)  # arrival order: cursors never go below what was synced
    target: list[tuple] = []
    state = None
    plan = [*sorted(plan, key=lambda step: step[0]), (len(arrivals), [], None)]
    for end, chunks, crash in plan:
        present = arrivals[:end]
        rows = (sorted(present) if sorted_source or source_filters
                else shuffler.sample(present, len(present)))
        messages = one_sync(rows, state, chunks, max_records, sorted_source, source_filters)
        loaded, committed_state = load(messages, crash)
        target += loaded
        state = committed_state if committed_state is not None else state
    assert Counter(target) == Counter(arrivals)


def test_a_checkpoint_never_claims_rows_still_held_back() -> None:
    """Sorted source, rows held back between batches when a checkpoint falls due: a crash
    after that checkpoint must not lose them (they are sent before it)."""
    rows = [[i // 3, f"r{i}"] for i in range(20)]
    loaded, state = load(one_sync(rows, None, [2, 2, 2, 2, 2], 3, True, False), 0)
    rest, _ = load(one_sync(rows, state, [], 3, True, False), None)
    assert Counter(loaded + rest) == Counter(map(tuple, rows))


def test_three_syncs_of_an_unchanged_source_load_it_once() -> None:
    rows = [[i // 500, f"r{i}"] for i in range(1500)]  # 500 records per cursor value
    target: list[tuple] = []
    state = None
    for _ in range(3):
        loaded, state = load(one_sync(rows, state, [], 100, False, False), None)
        target += loaded
    assert len(target) == 1500 and len(set(target)) == 1500
    assert state["cursor"] == 2 and sum(state["boundary"].values()) == 500


def test_identical_records_are_counted_not_collapsed() -> None:
    first = [[1, "same"], [1, "same"]]
    loaded, state = load(one_sync(first, None, [], 10, False, False), None)
    assert len(loaded) == 2 and list(state["boundary"].values()) == [2]
    # A third identical copy arrives with the same cursor: loaded once, the two are not.
    loaded, state = load(one_sync([*first, [1, "same"]], state, [], 10, False, False), None)
    assert loaded == [(1, "same")] and list(state["boundary"].values()) == [3]


def test_a_record_changed_at_the_same_cursor_is_loaded_again() -> None:
    _, state = load(one_sync([[1, "old"]], None, [], 10, False, False), None)
    loaded, _ = load(one_sync([[1, "new"]], state, [], 10, False, False), None)
    assert loaded == [(1, "new")]


def test_a_boundary_over_the_limit_is_left_out_and_the_state_stays_small() -> None:
    tracker = CursorTracker("k", None, None, filter_rows=True, check_order=True)
    tracker.track([[1, str(i)] for i in range(MAX_BOUNDARY_RECORDS + 1)], 0, ["k", "v"])
    assert tracker.state(None) == {"cursor": 1}
    tracker.track([[2, "x"]], 0, ["k", "v"])  # a new greatest value starts afresh
    assert set(tracker.state(None)) == {"cursor", "boundary"}


@pytest.mark.parametrize("value", [
    "12/31/2024", "1/5/2025", "31.12.2024", "12-31-2024 10:00", "2024-1-5", "2024-12-5",
    "Dec 31, 2024", "31 Dec 2024", "Tue, 31 Dec 2024 10:00:00 GMT",
])
def test_text_dates_that_do_not_sort_as_dates_are_refused(value) -> None:
    assert text_order_problem(value) is not None
    tracker = CursorTracker("updated", None, None, filter_rows=True, check_order=True)
    with pytest.raises(ConnectorError) as caught:
        tracker.track([[value]], 0, ["updated"])
    assert "cursor field 'updated' holds dates" in str(caught.value)
    assert "ISO 8601" in str(caught.value)


@pytest.mark.parametrize("value", [
    "2024-12-31", "2024-12-31T23:59:00", "2024-12-31 23:59:59.123+00:00", "b", "user 7",
    "2024", "abc-12-31",
])
def test_text_that_sorts_as_it_means_is_accepted(value) -> None:
    assert text_order_problem(value) is None
    CursorTracker("u", None, None, filter_rows=True, check_order=True).track([[value]], 0, ["u"])


def test_numbers_held_as_text_of_varying_width_are_refused_with_the_fix() -> None:
    tracker = CursorTracker("seq", None, None, filter_rows=True, check_order=True)
    tracker.track([["007"], ["123"]], 0, ["seq"])  # fixed width sorts fine
    with pytest.raises(ConnectorError) as caught:
        tracker.track([["9"], ["10"]], 0, ["seq"])
    assert "column_types.seq=integer" in str(caught.value)


def test_full_refresh_does_not_check_the_cursor_text() -> None:
    CursorTracker("u", None, None, filter_rows=True, check_order=False).track(
        [["12/31/2024"]], 0, ["u"])


@given(st.text(max_size=30))
def test_the_text_check_never_crashes(value) -> None:
    text_order_problem(value)
