"""Records that cannot be stored, and records larger than a batch may be, in real syncs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from reliability_support import Etl, assert_nothing_left, sqlite_rows, unique

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

RECORDS = 1500
POISON = 1200  # after the SDK's 1000-record schema sample: column v is already "string"


def _poisoned_jsonl(path: Path) -> None:
    """Record POISON holds an object in the string column v: SQLite cannot bind it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for i in range(1, RECORDS + 1):
            value: object = {"nested": True} if i == POISON else f"s{i}"
            handle.write(json.dumps({"id": i, "v": value}) + "\n")


def _poison_connection(etl: Etl, on_error: str) -> tuple[str, Path]:
    name = unique(f"poison-{on_error}")
    source = etl.tmp / "data" / f"{name}.jsonl"
    _poisoned_jsonl(source)
    etl("source", "add", f"{name}-src", "--type", "jsonl", "--config", f"path={source}")
    target = etl.sqlite_loader(f"{name}-dst", table="t")
    etl.connection(name, f"{name}-src", f"{name}-dst", "--on-error", on_error)
    return name, target


def test_poison_record_with_on_error_fail_stops_the_sync_naming_it(etl: Etl) -> None:
    name, target = _poison_connection(etl, "fail")
    started = time.monotonic()
    result = etl.sync(name, code=1)
    assert time.monotonic() - started < 120  # failed, not redelivered in a loop
    run = etl.last_run(name)
    assert run.status.value == "failed"
    assert "column 'v'" in (run.error or "") and f"row {POISON}" in (run.error or ""), run.error
    assert "column 'v'" in result.stderr
    # full_refresh: the staging table never became the target.
    assert not target.exists() or sqlite_rows(
        target, "SELECT count(*) FROM sqlite_master WHERE name = 't'"
    ) == [(0,)]
    assert etl.state(name) is None
    assert_nothing_left(name)


def test_poison_record_with_on_error_skip_is_counted_and_written_to_rejects(etl: Etl) -> None:
    name, target = _poison_connection(etl, "skip")
    run = json.loads(etl.sync(name).stdout)
    assert run["status"] == "succeeded"
    assert run["records_skipped"] == 1 and run["records_loaded"] == RECORDS - 1
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id) FROM t") == [
        (RECORDS - 1, RECORDS - 1)
    ]
    assert sqlite_rows(target, "SELECT count(*) FROM t WHERE id = ?", (POISON,)) == [(0,)]
    rejects = [json.loads(line) for line in Path(run["rejects_path"]).read_text().splitlines()]
    assert len(rejects) == 1
    assert rejects[0]["position"] == {"row": POISON}
    assert rejects[0]["record"]["id"] == POISON and "column 'v'" in rejects[0]["reason"]
    assert_nothing_left(name)


def test_a_record_larger_than_a_batch_travels_alone_and_arrives_whole(etl: Etl) -> None:
    name = unique("bigrec")
    source = etl.tmp / "data" / f"{name}.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    big = "x" * (3 * 1024 * 1024)  # 3 MiB: three times the batch's max_bytes
    with source.open("w") as handle:
        for i in range(1, 11):
            handle.write(json.dumps({"id": i, "v": big if i == 5 else f"s{i}"}) + "\n")
    etl("source", "add", f"{name}-src", "--type", "jsonl", "--config", f"path={source}")
    target = etl.sqlite_loader(f"{name}-dst", table="t")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    run = json.loads(etl.sync(name).stdout)
    assert run["records_loaded"] == 10
    assert sqlite_rows(target, "SELECT id, length(v) FROM t ORDER BY id") == [
        (i, len(big) if i == 5 else len(f"s{i}")) for i in range(1, 11)
    ]
    assert sqlite_rows(target, "SELECT v = ? FROM t WHERE id = 5", (big,)) == [(1,)]
    assert_nothing_left(name)


def test_a_record_over_the_message_limit_is_a_clear_error_never_dropped(etl: Etl) -> None:
    name = unique("hugerec")
    source = etl.tmp / "data" / f"{name}.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    with source.open("w") as handle:
        handle.write(json.dumps({"id": 1, "v": "small"}) + "\n")
        handle.write(json.dumps({"id": 2, "v": "y" * (17 * 1024 * 1024)}) + "\n")
        handle.write(json.dumps({"id": 3, "v": "small"}) + "\n")
    etl("source", "add", f"{name}-src", "--type", "jsonl", "--config", f"path={source}")
    target = etl.sqlite_loader(f"{name}-dst", table="t")
    etl.connection(name, f"{name}-src", f"{name}-dst", "--on-error", "skip")
    result = etl.sync(name, code=1)
    run = etl.last_run(name)
    assert run.status.value == "failed"
    assert "larger than the 16 MiB limit" in (run.error or ""), run.error
    assert "larger than the 16 MiB limit" in result.stderr
    # Not skipped either: a silently missing record is what this refuses.
    assert run.records_skipped == 0
    assert not target.exists() or sqlite_rows(
        target, "SELECT count(*) FROM sqlite_master WHERE name = 't'"
    ) == [(0,)]
    assert_nothing_left(name)
