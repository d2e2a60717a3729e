"""Protocol 2 in the SDK, without a broker: every message names its stream, each stream has its
own mode, cursor and state, and version-1 messages (no stream) still load."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.sdk import Column, ConfigError, Extractor, Loader, LoadMark, ProtocolError
from connectors.sdk.context import RunContext
from connectors.sdk.extractor import extract
from connectors.sdk.loader import LoadEngine
from connectors.sdk.protocol import (
    CHECKPOINT,
    END,
    RECORDS,
    SCHEMA,
    BatchLimits,
    StreamInfo,
    parse_run_file,
)


class ListPublisher:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.events: list[dict[str, Any]] = []

    def publish_message(self, message_type: str, body: bytes) -> None:
        self.messages.append((message_type, orjson.loads(body)))

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None:
        self.events.append({"type": event_type, **fields})


class TwoTables(Extractor):
    """Streams ``users`` and ``orders``, each rows (id, updated), sorted by ``updated``."""

    sorted_by_cursor = True
    tables = {"users": 5, "orders": 3}

    def __init__(self, config: dict[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        self.contexts: dict[str, RunContext] = {}

    def streams(self) -> list[StreamInfo]:
        return [
            StreamInfo(name, [Column("id", "integer"), Column("updated", "integer")], ["id"],
                       ["updated"])
            for name in self.tables
        ]

    def read_stream(self, stream: str, out: Any) -> None:
        self.contexts[stream] = self.context
        out.declare([Column("id", "integer"), Column("updated", "integer")])
        out.write_rows([[n, n * 10] for n in range(1, self.tables[stream] + 1)])


def run_context(document: dict[str, Any]) -> RunContext:
    base = {"config": {}, "batch": {"max_records": 2, "commit_every": 1}}
    return RunContext.from_run_file(parse_run_file({**base, **document}))


def test_each_stream_is_read_with_its_own_settings_and_state():
    context = run_context(
        {
            "protocol": 2,
            "sync": {"mode": "full_refresh"},
            "streams": [
                {"name": "orders", "mode": "incremental", "cursor_field": "updated"},
                {"name": "*"},
            ],
            "stream_states": {"orders": {"cursor": 20}, "users": {"cursor": 40}},
        }
    )
    extractor = TwoTables({}, context)
    publisher = ListPublisher()
    output = extract(extractor, publisher)

    assert extractor.contexts["users"].sync.mode == "full_refresh"
    assert extractor.contexts["orders"].sync.mode == "incremental"
    assert extractor.contexts["orders"].start_cursor == 20
    assert extractor.contexts["users"].start_cursor is None  # full refresh reads everything
    assert extractor.context is context  # restored after the streams
    types = [kind for kind, _ in publisher.messages]
    assert types[0] == SCHEMA and types[-1] == END
    for kind, body in publisher.messages[:-1]:
        assert body["stream"] in ("users", "orders"), (kind, body)
    rows = {
        stream: [row for kind, body in publisher.messages if kind == RECORDS
                 and body["stream"] == stream for row in body["rows"]]
        for stream in ("users", "orders")
    }
    assert [row[0] for row in rows["users"]] == [1, 2, 3, 4, 5]
    assert [row[0] for row in rows["orders"]] == [2, 3]  # updated >= 20
    final_orders = [body for kind, body in publisher.messages
                    if kind == CHECKPOINT and body["stream"] == "orders"][-1]
    assert final_orders["state"]["cursor"] == 30
    assert publisher.messages[-1][1] == {"records": 7, "streams": ["users", "orders"]}
    assert output.records_sent == 7


def test_a_selection_names_streams_and_refuses_unknown_ones():
    publisher = ListPublisher()
    only = run_context({"protocol": 2, "streams": [{"name": "orders"}]})
    extract(TwoTables({}, only), publisher)
    assert {body["stream"] for kind, body in publisher.messages if kind == SCHEMA} == {"orders"}
    # One stream: END has the version-1 shape too (the stream's state for a v1 loader).
    assert publisher.messages[-1][1]["streams"] == ["orders"]
    assert publisher.messages[-1][1]["stream"] == "orders"

    typo = run_context({"protocol": 2, "streams": [{"name": "order"}]})
    with pytest.raises(ConfigError, match="stream 'order' is not offered by this source "
                       r"\(it offers: users, orders\)"):
        extract(TwoTables({}, typo), ListPublisher())


def test_a_version_1_run_file_still_reads():
    context = run_context(
        {"protocol": 1, "sync": {"mode": "incremental", "cursor_field": "updated"},
         "state": {"cursor": 30}}
    )
    one = context.for_stream("records", only=True)
    assert one.start_cursor == 30 and one.sync.mode == "incremental"
    # Among several streams, a state saved without a stream name belongs to none of them.
    assert context.for_stream("records", only=False).state is None
    with pytest.raises(ConfigError, match="protocol 3 is not supported"):
        parse_run_file({"protocol": 3, "config": {}})


# --- the loader side ------------------------------------------------------------------------
@dataclass
class Delivery:
    tag: int
    type: str
    seq: int
    body: bytes
    run_id: str | None = None
    redelivered: bool = False


class ListDeliveries:
    def __init__(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        self.items = [
            Delivery(n, kind, n, orjson.dumps(body)) for n, (kind, body) in enumerate(messages, 1)
        ]
        self.acked: list[int] = []

    def deliveries(self, prefetch: int) -> Any:
        return iter(self.items)

    def ack(self, tag: int) -> None:
        self.acked.append(tag)


class MemoryTarget(Loader):
    """Tables in a dict; streams share the dict (the target), as SQL loaders share their
    connection."""

    def __init__(self, config: dict[str, Any], context: RunContext, tables: Any = None,
                 multi: bool = True) -> None:
        super().__init__(config, context)
        self.tables: dict[str, list[list[Any]]] = {} if tables is None else tables
        self.multi = multi
        self.name = "single"
        self.finished: list[str] = []

    def for_stream(self, stream: str, context: RunContext) -> Loader:
        if not self.multi:
            return self
        writer = MemoryTarget(self.config, context, self.tables)
        writer.name = stream
        writer.finished = self.finished
        return writer

    def write_batch(self, columns: list[str], rows: list[list[Any]]) -> None:
        self.tables.setdefault(self.name, []).extend(rows)

    def finish_stream(self) -> None:
        self.finished.append(self.name)

    def commit(self, mark: LoadMark) -> None:
        pass


def load(messages, multi=True, sync=None):
    sync = parse_run_file({"config": {}, "sync": sync or {}}).sync
    context = RunContext("r1", "c1", sync, BatchLimits(commit_every=3))
    target = MemoryTarget({}, context, multi=multi)
    events = ListPublisher()
    LoadEngine(target, context, ListDeliveries(messages), events).run()
    return target, events.events


def test_the_loader_writes_each_stream_apart_and_reports_state_per_stream():
    publisher = ListPublisher()
    extract(TwoTables({}, run_context({"protocol": 2, "sync": {
        "mode": "incremental", "cursor_field": "updated"}})), publisher)
    target, events = load(publisher.messages)
    assert target.tables == {"users": [[n, n * 10] for n in range(1, 6)],
                             "orders": [[n, n * 10] for n in range(1, 4)]}
    assert target.finished == ["users", "orders"]
    committed = {e["stream"]: e["state"]["cursor"] for e in events
                 if e["type"] == "checkpoint_committed"}
    assert committed == {"users": 50, "orders": 30}
    assert (events[-1]["type"], events[-1]["records"]) == ("done", 8)


def test_version_1_messages_belong_to_the_stream_their_schema_named():
    messages = [
        (SCHEMA, {"stream": "sequence", "columns": [{"name": "n", "type": "integer"}]}),
        (RECORDS, {"columns": ["n"], "rows": [[1], [2]]}),
        (CHECKPOINT, {"state": {"cursor": 2}, "records": 2}),
        (RECORDS, {"columns": ["n"], "rows": [[3]]}),
        (END, {"records": 3, "state": {"cursor": 3}}),
    ]
    target, events = load(messages, multi=False)
    assert target.tables == {"single": [[1], [2], [3]]}
    assert [(e["stream"], e["state"]) for e in events if e["type"] == "checkpoint_committed"] == [
        ("sequence", {"cursor": 2}), ("sequence", {"cursor": 3})
    ]


def test_a_loader_of_one_stream_refuses_a_second():
    publisher = ListPublisher()
    extract(TwoTables({}, run_context({"protocol": 2})), publisher)
    with pytest.raises(ProtocolError, match="this loader writes one stream per run, and the "
                       r"extractor sent a second one \('orders' after 'users'\)"):
        load(publisher.messages, multi=False)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(min_value=0, max_value=4)),
        min_size=1,
        max_size=30,
    )
)
def test_any_interleaving_of_streams_loads_every_row_into_its_stream(plan):
    """Batches and checkpoints of several streams in any order: each stream's rows land in
    its own table, and the last checkpoint of each stream is the state reported for it."""
    schemas: set[str] = set()
    messages: list[tuple[str, dict[str, Any]]] = []
    expected: dict[str, list[list[Any]]] = {}
    last_state: dict[str, dict[str, Any]] = {}
    total = 0
    for step, (stream, count) in enumerate(plan):
        if stream not in schemas:
            schemas.add(stream)
            messages.append((SCHEMA, {"stream": stream, "columns": [{"name": "v"}]}))
        rows = [[f"{stream}{step}.{i}"] for i in range(count)]
        if rows:
            messages.append((RECORDS, {"stream": stream, "columns": ["v"], "rows": rows}))
            expected.setdefault(stream, []).extend(rows)
            total += count
        if step % 3 == 0:
            last_state[stream] = {"cursor": step}
            messages.append((CHECKPOINT, {"stream": stream, "state": {"cursor": step},
                                          "records": total}))
    messages.append((END, {"records": total, "streams": sorted(schemas)}))
    target, events = load(messages, sync={"allow_empty": True})  # a plan may send no rows
    assert target.tables == expected
    reported: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "checkpoint_committed":
            reported[event["stream"]] = event["state"]
    assert reported == last_state
    assert sorted(target.finished) == sorted(schemas)
