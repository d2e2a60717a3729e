"""Values are kept exactly through `etlctl sync` in Docker (issue 12, section 1): the cases the
issue lists, CSV to SQLite and to PostgreSQL. (tests/connectors/test_value_fidelity.py runs
every type x loader cell with generated values.)"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from etlctl.cli.main import app
from tests_support import missing_service

pytestmark = pytest.mark.integration

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "postgres"}
IDS = ["12345678901234567890", "12345678901234567891", "9223372036854775808"]
SOURCE = "id,big,x\n" + "".join(
    f"{n},{big},{x}\n"
    for n, (big, x) in enumerate(
        zip([*IDS, "1", "2", "3", "4"], ["1.5", "NaN", "inf", "-inf", "1e400", "-1e999", "2.5"],
            strict=True),
        1,
    )
)


@pytest.fixture
def etl(tmp_path, services):
    store_path = tmp_path / "store.json"
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0):
        result = runner.invoke(app, ["--store", str(store_path), *args])
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


def sync_values(etl, tmp_path: Path, loader: list[str]) -> dict:
    source = tmp_path / "values.csv"
    source.write_text(SOURCE)
    etl("source", "add", "s", "--type", "csv", "--config", f"path={source}",
        "--config", 'column_types={"x": "number"}')
    etl("loader", "add", "d", *loader)
    etl("connection", "add", "v", "--source", "s", "--loader", "d", "--on-error", "skip")
    run = json.loads(etl("sync", "v", "--json").stdout)
    assert run["status"] == "succeeded"
    rejects = [json.loads(line) for line in Path(run["rejects_path"]).read_text().splitlines()]
    run["rejects"] = rejects
    return run


def test_big_integers_and_non_finite_numbers_reach_sqlite_exactly(etl, tmp_path):
    target = tmp_path / "out" / "t.db"
    run = sync_values(etl, tmp_path, ["--type", "sqlite", "--config", f"path={target}",
                                      "--config", "table=t"])
    # 1e400 and -1e999 are no 64-bit float; SQLite would store NaN as NULL: three bad records.
    assert run["records_loaded"] == 4 and run["records_skipped"] == 3
    reasons = sorted(r["reason"] for r in run["rejects"])
    assert sum("declare the column decimal" in r for r in reasons) == 2
    assert sum("SQLite cannot store NaN" in r for r in reasons) == 1
    rows = sqlite3.connect(target).execute(
        "SELECT id, big, typeof(big), x FROM t ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (1, IDS[0], "text"), (3, IDS[2], "text"), (4, "1", "text"), (7, "4", "text")]
    assert [r[3] for r in rows] == [1.5, math.inf, -math.inf, 2.5]
    assert sqlite3.connect(target).execute(
        "SELECT count(DISTINCT big) FROM t").fetchone() == (4,)


def test_big_integers_and_non_finite_numbers_reach_postgres_exactly(etl, tmp_path):
    name = f"etlctl_values_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(**PG, dbname="postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        missing_service("PostgreSQL on 127.0.0.1:5432 (postgres/postgres)")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        config = {**PG, "dbname": name, "sslmode": "disable", "table": "t"}
        loader = ["--type", "postgres"] + [
            arg for key, value in config.items() for arg in ("--config", f"{key}={value}")]
        run = sync_values(etl, tmp_path, loader)
        assert run["records_loaded"] == 5 and run["records_skipped"] == 2  # 1e400, -1e999
        with psycopg.connect(**PG, dbname=name) as connection:
            rows = connection.execute("SELECT id, big, x FROM t ORDER BY id").fetchall()
            kinds = dict(connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 't'").fetchall())
        assert kinds["big"] == "numeric" and kinds["x"] == "double precision"
        assert [(r[0], r[1]) for r in rows] == [
            (1, Decimal(IDS[0])), (2, Decimal(IDS[1])), (3, Decimal(IDS[2])), (4, Decimal(1)),
            (7, Decimal(4))]
        assert rows[0][2] == 1.5 and math.isnan(rows[1][2])
        assert [r[2] for r in rows[2:]] == [math.inf, -math.inf, 2.5]
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
