"""Filters in real syncs: the rows they keep are exactly the ones asked for, and a filter that
cannot compare a column is refused before any row, never "0 extracted" (issue 12, section 6).
Save-time refusals: tests/unit/test_transform_filters.py and the CLI tests.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from connector_harness import events_of

BEFORE = [(1, 100), (2, 200), (3, 300)]


def filled_target(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "target.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE orders (id INTEGER, amount INTEGER)")
    db.executemany("INSERT INTO orders VALUES (?, ?)", BEFORE)
    db.commit()
    db.close()
    return {"path": str(path), "table": "orders"}


def target(config: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple]]:
    db = sqlite3.connect(config["path"])
    try:
        columns = [(row[1], row[2]) for row in db.execute("PRAGMA table_info(orders)")]
        return columns, db.execute("SELECT * FROM orders ORDER BY id").fetchall()
    finally:
        db.close()


def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text("id,amount\n" + "".join(f"{i},{i * 5}\n" for i in range(1, 6)))
    return path  # amounts 5, 10, 15, 20, 25


def test_a_range_written_as_two_conditions_keeps_exactly_that_range(tmp_path, make_sync):
    config = filled_target(tmp_path)
    sync = make_sync("csv", {"path": str(orders_csv(tmp_path))}, "sqlite", config,
                     transform={"filter": ["amount >= 10", "amount <= 20"]})
    extractor, loader, _ = sync.run()
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    assert target(config) == ([("id", "INTEGER"), ("amount", "INTEGER")],
                              [(2, 10), (3, 15), (4, 20)])


def test_a_number_against_a_text_column_is_refused_before_any_row(tmp_path, make_sync):
    config = filled_target(tmp_path)
    source = {"path": str(orders_csv(tmp_path)), "infer_types": False}  # amount is text
    sync = make_sync("csv", source, "sqlite", config, transform={"filter": ["amount > 10"]})
    extractor, _, events = sync.run()
    assert extractor == 2  # invalid config: nothing read
    [error] = events_of(events, "error", "extractor")
    assert error["message"] == (
        "filter 'amount > 10': column 'amount' is string and 10 is number: compare it with "
        "quoted text; to compare numbers, declare the column's type in the source (csv: "
        "column_types)"
    )
    assert target(config) == ([("id", "INTEGER"), ("amount", "INTEGER")], BEFORE)


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_a_value_not_of_its_columns_type_is_a_bad_record_not_a_silent_drop(
    tmp_path, make_sync, on_error
):
    """The first 1000 records type `amount` as integer; a later text value is a bad record."""
    path = tmp_path / "orders.jsonl"
    records = [{"id": i, "amount": i} for i in range(1, 1201)]
    records[1099]["amount"] = "abc"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    config = filled_target(tmp_path)
    sync = make_sync("jsonl", {"path": str(path)}, "sqlite", config, on_error=on_error,
                     transform={"filter": ["amount > 1000"]})
    extractor, loader, events = sync.run()
    if on_error == "fail":
        assert extractor == 1
        [error] = events_of(events, "error", "extractor")
        assert error["message"] == (
            "transform: filter amount > 1000: column 'amount' holds 'abc', which is not number"
        )
        assert target(config)[1] == BEFORE
    else:
        assert (extractor, loader) == (0, 0), sync.extractor_log
        [rejected] = events_of(events, "rejected", "extractor")
        assert rejected["reason"].startswith("transform: filter amount > 1000")
        kept = [(i, i) for i in range(1001, 1201) if i != 1100]
        assert target(config)[1] == kept
