"""The empty-source guard, as a property over the SDK's own extractor and loader engines:
whatever the mode, rows, filter and ``allow_empty``, a full_refresh never replaces a target
by nothing unless allowed, and when allowed the table keeps its columns and types.

The broker is the one fake (a list of messages); the SDK's RecordStream, LoadEngine and the
real sqlite loader on a real file do the rest. Real syncs: tests/connectors/test_empty_sources.py.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.loaders.sqlite import SqliteLoader
from connectors.sdk.context import RunContext
from connectors.sdk.empty import EmptySourceError
from connectors.sdk.extractor import RecordStream
from connectors.sdk.loader import LoadEngine
from connectors.sdk.protocol import BatchLimits, Column, SyncSettings

TARGET_COLUMNS = [("id", "INTEGER"), ("name", "TEXT")]
BEFORE = [(1, "old-1"), (2, "old-2"), (3, "old-3")]


@dataclass
class Message:
    tag: int
    type: str
    seq: int
    body: bytes
    run_id: str | None = None
    redelivered: bool = False


class Broker:
    """The queue between the two engines, as a list."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.events: list[dict[str, Any]] = []

    def publish_message(self, message_type: str, body: bytes) -> None:
        seq = len(self.messages) + 1
        self.messages.append(Message(seq, message_type, seq, body))

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None:
        self.events.append({"type": event_type, **fields})

    def deliveries(self, prefetch: int) -> Any:
        return iter(self.messages)

    def ack(self, tag: int) -> None:
        pass


def context(mode: str, allow_empty: bool, transform: dict | None = None) -> RunContext:
    sync = SyncSettings(mode=mode, cursor_field="id" if mode == "incremental" else None,
                        allow_empty=allow_empty, transform=transform)
    return RunContext(run_id="r1", connection="c", sync=sync, batch=BatchLimits(max_records=2))


def table(path: Path) -> tuple[list[tuple[str, str]], list[tuple]]:
    db = sqlite3.connect(path)
    try:
        columns = [(row[1], row[2]) for row in db.execute("PRAGMA table_info(users)")]
        rows = db.execute("SELECT * FROM users ORDER BY id").fetchall()
    finally:
        db.close()
    return columns, rows


def make_target(directory: Path) -> Path:
    path = directory / "target.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?)", BEFORE)
    db.commit()
    db.close()
    return path


def load(path: Path, broker: Broker, ctx: RunContext) -> None:
    loader = SqliteLoader({"path": str(path), "table": "users"}, ctx)
    failed = True
    try:
        LoadEngine(loader, ctx, broker, broker).run()
        failed = False
    finally:
        loader.close(failed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["full_refresh", "incremental"]),
    ids=st.lists(st.integers(10, 99), max_size=5, unique=True),
    threshold=st.none() | st.integers(0, 120),
    declared_type=st.sampled_from(["integer", "string"]),  # a header-only CSV says string
    allow_empty=st.booleans(),
)
def test_a_full_refresh_never_empties_a_table_unless_allowed(
    mode, ids, threshold, declared_type, allow_empty
):
    transform = {"filter": [f"id > {threshold}"]} if threshold is not None else None
    ctx = context(mode, allow_empty, transform)
    if declared_type == "string":
        rows = [[str(i), f"new-{i}"] for i in ids]
        transform = None  # a number filter does not fit a text column
        ctx = context(mode, allow_empty)
    else:
        rows = [[i, f"new-{i}"] for i in ids]
    kept = [r for r in rows if transform is None or int(r[0]) > threshold]
    with tempfile.TemporaryDirectory() as directory:
        path = make_target(Path(directory))
        broker = Broker()
        stream = RecordStream(broker, ctx, "users", False, False)
        stream.declare([Column("id", declared_type), Column("name", "string")])
        stream.write_rows(rows)
        if mode == "full_refresh" and not kept and not allow_empty:
            with pytest.raises(EmptySourceError, match="full_refresh refused"):
                stream.end()
            # No END was sent: a loader consuming what was sent never finishes, never swaps.
            assert "END" not in [m.type for m in broker.messages]
            assert table(path) == (TARGET_COLUMNS, BEFORE)
            return
        stream.end()
        load(path, broker, ctx)
        columns, loaded = table(path)
        new = [(int(r[0]) if declared_type == "integer" else r[0], r[1]) for r in kept]
        if mode == "incremental":
            # Appended to the existing INTEGER column: SQLite's affinity stores "10" as 10.
            assert columns == TARGET_COLUMNS
            assert sorted(loaded) == sorted(BEFORE + [(int(i), name) for i, name in new])
        elif kept:
            assert sorted(loaded, key=str) == sorted(new, key=str)
        else:  # an allowed empty full_refresh: no rows, the table's own columns and types
            assert (columns, loaded) == (TARGET_COLUMNS, [])


@settings(max_examples=20, deadline=None)
@given(allow_empty=st.booleans(), columns=st.lists(st.sampled_from(["id", "name", "x"]),
                                                     unique=True, max_size=3))
def test_the_loader_guards_an_empty_end_from_any_extractor(allow_empty, columns):
    """An extractor not built on the SDK may send SCHEMA then END without records."""
    import orjson

    ctx = context("full_refresh", allow_empty)
    with tempfile.TemporaryDirectory() as directory:
        path = make_target(Path(directory))
        broker = Broker()
        schema = {"stream": "users", "columns": [{"name": c, "type": "string"} for c in columns]}
        broker.publish_message("SCHEMA", orjson.dumps(schema))
        broker.publish_message("END", orjson.dumps({"records": 0, "state": None}))
        if allow_empty:
            load(path, broker, ctx)
            assert table(path) == (TARGET_COLUMNS, [])
        else:
            with pytest.raises(EmptySourceError):
                load(path, broker, ctx)
            assert table(path) == (TARGET_COLUMNS, BEFORE)
