"""An empty or truncated source never wipes a target, through etlctl as a user runs it: real
Docker containers, RabbitMQ and a SQLite target whose exact columns, types and rows are
checked before and after each sync. The per-connector matrix is
tests/connectors/test_empty_sources.py; the SDK-level property test is
tests/unit/test_empty_guard.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_support import Etl, sqlite_rows, unique

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

def table(path: Path) -> tuple[list[tuple[str, str]], int, int]:
    """Columns with types, rows, distinct ids of the target."""
    columns = [(row[1], row[2]) for row in sqlite_rows(path, "PRAGMA table_info(users)")]
    [(rows, distinct)] = sqlite_rows(path, "SELECT count(*), count(DISTINCT id) FROM users")
    return columns, rows, distinct


def test_a_truncated_csv_never_wipes_the_table_unless_the_connection_allows_it(
    etl: Etl,
) -> None:
    name = unique("empty")
    source = etl.csv_source(f"{name}-src", 3)
    target = etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    etl.sync(name)
    loaded = table(target)
    assert loaded[1:] == (3, 3) and loaded[0][0] == ("id", "INTEGER")

    source.write_text("id,updated_at,name,amount,active,note\n")  # truncated to its header
    result = etl.sync(name, code=1)
    assert "full_refresh refused: the source yielded no records" in result.stderr
    assert "etlctl connection update NAME --allow-empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert table(target) == loaded  # not retyped as TEXT, not emptied

    source.write_bytes(b"")  # truncated to nothing
    result = etl.sync(name, code=1)
    assert f"{source} is empty: no header line (header: true)" in result.stderr
    assert table(target) == loaded
    assert [run.status.value for run in etl.runs(name)] == ["failed", "failed", "succeeded"]

    etl("connection", "update", name, "--allow-empty")
    shown = json.loads(etl("connection", "show", name, "--json").stdout)
    assert shown["allow_empty"] is True
    source.write_text("id,updated_at,name,amount,active,note\n")
    etl.sync(name)
    assert table(target) == (loaded[0], 0, 0)  # emptied, columns and types kept
    assert etl.last_run(name).records_loaded == 0
