"""Values are kept exactly, or the run says why not (issue 12, section 1).

Real syncs: the extractor and the loader run as subprocesses through a real RabbitMQ into real
SQLite, PostgreSQL, CSV, JSONL and AMQP targets; every test reads the target back and compares
values exactly. The decision table these tests pin is in docs/connectors.md ("Types").
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import time
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pika
import pytest
from connector_harness import AMQP_URL, events_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_support import pg_database  # noqa: F401 - fixture

LOADERS = ("sqlite", "postgres", "csv", "jsonl", "amqp")
# What each loader stores of the non-finite values, per column type (the rest: bad records).
STORES_NON_FINITE = {
    "sqlite": {"number": {"Infinity", "-Infinity"}, "decimal": {"NaN", "Infinity", "-Infinity"}},
    "postgres": {kind: {"NaN", "Infinity", "-Infinity"} for kind in ("number", "decimal")},
    "csv": {kind: {"NaN", "Infinity", "-Infinity"} for kind in ("number", "decimal")},
    "jsonl": {},
    "amqp": {},
}
NON_FINITE_TEXT = {"NaN": "NaN", "nan": "NaN", "inf": "Infinity", "Infinity": "Infinity",
                   "-inf": "-Infinity", "-Infinity": "-Infinity"}


# --- a target, read back as {id: {column: value}} --------------------------------------------
class Target:
    def __init__(self, kind: str, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.tmp = tmp
        self.table = f"t_{uuid.uuid4().hex[:8]}"
        if kind == "postgres":
            self.pg = request.getfixturevalue("pg_database")
        if kind == "amqp":
            request.getfixturevalue("rabbitmq")
            self.queue = f"etlctl-test-values-{uuid.uuid4().hex[:8]}"
            with _amqp_channel() as channel:
                channel.queue_declare(self.queue, durable=False)
            request.addfinalizer(self._delete_queue)

    def _delete_queue(self) -> None:
        with _amqp_channel() as channel:
            channel.queue_delete(self.queue)

    def config(self) -> dict[str, Any]:
        if self.kind == "sqlite":
            return {"path": str(self.tmp / "target.db"), "table": self.table}
        if self.kind == "postgres":
            return self.pg.config(table=self.table)
        if self.kind == "amqp":
            return {"url": AMQP_URL, "routing_key": self.queue}
        return {"path": str(self.tmp / f"{self.table}.{self.kind}")}

    def rows(self) -> dict[int, dict[str, Any]]:
        """id -> {column: value as the target holds it} (exact types: int, float, Decimal,
        str)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.tmp / "target.db") as db:
                cursor = db.execute(f'SELECT * FROM "{self.table}"')
                names = [d[0] for d in cursor.description]
                found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        elif self.kind == "postgres":
            with self.pg.connect() as connection:
                cursor = connection.execute(f'SELECT * FROM "{self.table}"')
                names = [d.name for d in cursor.description]
                found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        elif self.kind == "csv":
            with open(self.tmp / f"{self.table}.csv", newline="") as handle:
                found = [{k: (v if v != "" else None) for k, v in row.items()}
                         for row in csv.DictReader(handle)]
        elif self.kind == "jsonl":
            lines = (self.tmp / f"{self.table}.jsonl").read_text().splitlines()
            found = [_exact_json(line) for line in lines]
        else:
            found = [_exact_json(body) for body in _drain(self.queue)]
        return {int(row["id"]): row for row in found}

    def declared_type(self, column: str) -> str:
        if self.kind == "sqlite":
            with sqlite3.connect(self.tmp / "target.db") as db:
                info = db.execute(f'PRAGMA table_info("{self.table}")').fetchall()
            return {row[1]: row[2] for row in info}[column]
        rows = self.pg.rows(
            "SELECT data_type FROM information_schema.columns WHERE table_name = %s "
            "AND column_name = %s", [self.table, column],
        )
        return rows[0][0]


def _exact_json(text: str | bytes) -> dict[str, Any]:
    return json.loads(text, parse_float=Decimal, parse_int=int)


class _amqp_channel:
    def __enter__(self) -> Any:
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        return self.connection.channel()

    def __exit__(self, *exc: object) -> None:
        self.connection.close()


def _drain(queue: str) -> list[bytes]:
    bodies = []
    with _amqp_channel() as channel:
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)


@pytest.fixture(params=LOADERS)
def target(request, tmp_path) -> Target:
    return Target(request.param, tmp_path, request)


def same_number(stored: Any, expected: str, kind: str, loader: str) -> bool:
    """Does the target hold exactly the number the source wrote (``expected``, as text)?"""
    if stored is None:
        return False
    special = NON_FINITE_TEXT.get(expected)
    if special is not None:
        if isinstance(stored, str):
            return stored == special
        value = float(stored)
        return math.isnan(value) if special == "NaN" else value == float(special)
    if kind == "integer":
        return isinstance(stored, int | str | Decimal) and int(stored) == int(expected)
    if kind == "decimal" and loader in ("sqlite", "csv"):
        return stored == expected  # text, as the source wrote it
    if kind == "decimal":
        return Decimal(str(stored)) == Decimal(expected)
    # number: the target holds the 64-bit float the text reads as
    return float(stored) == float(expected)


def held_by_a_float(text: str) -> bool:
    """The rule of docs/connectors.md: the text is the float rounded to the text's last
    significant digit (exact arithmetic with fractions)."""
    value = float(text)
    if not math.isfinite(value):
        return False
    exact = Decimal(text)
    if not exact:
        return True
    unit = Fraction(10) ** exact.normalize().as_tuple().exponent
    return abs(Fraction(exact) - Fraction(value)) * 2 <= unit


def sync_csv(make_sync, tmp_path: Path, target: Target, text: str, **options):
    source = tmp_path / f"source-{uuid.uuid4().hex[:6]}.csv"
    source.write_text(text)
    config = {"path": str(source), **options.pop("source", {})}
    sync = make_sync("csv", config, target.kind, target.config(), **options)
    return source, sync, *sync.run()


# --- the cases the issue lists (each failed before this change) ------------------------------
def test_csv_integers_beyond_64_bits_are_kept_exactly(tmp_path, make_sync, target):
    ids = ["12345678901234567890", "12345678901234567891", "9223372036854775808",
           "-9223372036854775809", "9223372036854775807"]
    text = "id,big\n" + "".join(f"{n},{value}\n" for n, value in enumerate(ids, 1))
    _, sync, extractor, loader, _ = sync_csv(make_sync, tmp_path, target, text)
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    rows = target.rows()
    assert len(rows) == 5
    assert len({str(row["big"]) for row in rows.values()}) == 5  # none collapsed
    for n, value in enumerate(ids, 1):
        assert same_number(rows[n]["big"], value, "decimal", target.kind), (rows[n], value)
    if target.kind == "sqlite":
        assert target.declared_type("big") == "DECIMAL_TEXT"
    if target.kind == "postgres":
        assert target.declared_type("big") == "numeric"


def test_jsonl_integer_2_pow_70_is_kept_exactly(tmp_path, make_sync, target):
    source = tmp_path / "a.jsonl"
    source.write_text(f'{{"id": 1, "n": {2**70}}}\n{{"id": 2, "n": {2**70 + 1}}}\n'
                      f'{{"id": 3, "n": 5}}\n')
    sync = make_sync("jsonl", {"path": str(source)}, target.kind, target.config())
    extractor, loader, _ = sync.run()
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    rows = target.rows()
    assert [int(rows[n]["n"]) for n in (1, 2, 3)] == [2**70, 2**70 + 1, 5]


def test_non_finite_and_overflowing_numbers_are_kept_or_refused(tmp_path, make_sync, target):
    """A declared number column: 1e400 and -1e999 are no 64-bit float (a bad record, never
    NULL); NaN and infinities are stored where the target has them, else bad records."""
    values = ["1.5", "1e400", "-1e999", "NaN", "inf", "-inf"]
    text = "id,x\n" + "".join(f"{n},{value}\n" for n, value in enumerate(values, 1))
    rejects = tmp_path / "rejects.jsonl"
    _, sync, extractor, loader, events = sync_csv(
        make_sync, tmp_path, target, text, source={"column_types": {"x": "number"}},
        on_error="skip", rejects_path=str(rejects),
    )
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    stored = STORES_NON_FINITE[target.kind].get("number", set())
    expected = {1} | {n for n, v in enumerate(values, 1) if NON_FINITE_TEXT.get(v) in stored}
    rows = target.rows()
    assert set(rows) == expected
    for n in expected:
        assert same_number(rows[n]["x"], values[n - 1], "number", target.kind)
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert len(rejected) == len(values) - len(expected)
    extractor_rejects = [r for r in rejected if "file" in (r["position"] or {})]
    assert sorted(r["position"]["line"] for r in extractor_rejects) == [3, 4]  # 1e400, -1e999
    assert all("column 'x'" in r["reason"] and "declare the column decimal" in r["reason"]
               for r in extractor_rejects)
    done = {e["role"]: e for e in events_of(events, "done")}
    assert done["loader"]["records"] == len(expected)


def test_inferred_column_of_huge_numbers_becomes_decimal(tmp_path, make_sync, target):
    values = ["1e400", "-1e999", "2.5", "0.1000000000000000000001"]
    text = "id,x\n" + "".join(f"{n},{value}\n" for n, value in enumerate(values, 1))
    _, sync, extractor, loader, _ = sync_csv(make_sync, tmp_path, target, text)
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    rows = target.rows()
    for n, value in enumerate(values, 1):
        assert same_number(rows[n]["x"], value, "decimal", target.kind), (rows[n], value)


@pytest.mark.parametrize("value", ["1e400", "12345678901234567890"])
def test_fail_names_file_line_and_column(tmp_path, make_sync, rabbitmq, value):
    db = tmp_path / "t.db"
    text = "id,x\n1,2\n2,3\n3," + value + "\n"
    source = tmp_path / "a.csv"
    source.write_text(text)
    sync = make_sync("csv", {"path": str(source), "column_types": {"x": "number"}}, "sqlite",
                     {"path": str(db), "table": "t"})
    loader = sync.start("loader")
    extractor = sync.start("extractor").wait(60)
    time.sleep(1.5)  # the loader waits for an END that never comes: etlctl stops it
    loader.kill()
    loader.wait(10)
    events = sync.queues.drain_events()
    assert extractor == 1
    error = events_of(events, "error", "extractor")[0]
    assert error["position"]["file"] == str(source) and error["position"]["line"] == 4
    assert error["message"].startswith(f"column 'x': cannot read '{value}' as number")
    assert "declare the column decimal" in error["message"]


def test_existing_real_column_refuses_decimal_values(tmp_path, make_sync, rabbitmq):
    """Appending decimals to a REAL column would round them (SQLite converts the text)."""
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (id INTEGER, big REAL)")
    source = tmp_path / "a.csv"
    source.write_text("id,big\n1,12345678901234567891\n")
    sync = make_sync("csv", {"path": str(source)}, "sqlite", {"path": str(db), "table": "t"},
                     mode="incremental")
    _, loader, events = sync.run()
    assert loader == 1
    assert "would round the source's decimal values" in events_of(events, "error")[0]["message"]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)


# --- the matrix: every (type x loader) cell, with values nobody listed --------------------------
finite_floats = st.floats(allow_nan=False, allow_infinity=False).map(repr)
integers = st.integers(min_value=-(2**80), max_value=2**80).map(str)
decimals = st.one_of(
    st.decimals(min_value=Decimal("-1e100"), max_value=Decimal("1e100"),
                allow_nan=False, allow_infinity=False).map(str),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(["1e400", "-1e999", "0.1000000000000000000001", "1E-400",
                     "0.10000000000000001", "1.000000000000000056e-01", "9007199254740993"]),
)
specials = st.sampled_from(sorted(NON_FINITE_TEXT))
CELLS = st.lists(
    st.one_of(
        st.tuples(st.just("integer"), integers),
        st.tuples(st.just("number"), st.one_of(finite_floats, specials, decimals)),
        st.tuples(st.just("decimal"), st.one_of(decimals, specials)),
    ),
    min_size=1, max_size=25,
)


def expected_outcome(kind: str, text: str, loader: str) -> bool:
    """True when the cell's value must be stored (exactly); False: a bad record."""
    special = NON_FINITE_TEXT.get(text)
    if kind == "integer":
        return -(2**63) <= int(text) < 2**63
    if special is not None:
        return special in STORES_NON_FINITE[loader].get(kind, set())
    if kind == "number":
        return held_by_a_float(text)
    return True  # a finite decimal: every target keeps it


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=CELLS)
def test_value_matrix_round_trips_through_a_real_sync(tmp_path, make_sync, target, cells):
    """Each row holds one value in a column declared integer, number or decimal: the target
    holds it exactly, or the record is rejected (counted, in the rejects file), per the table
    in docs/connectors.md. Never NULL, never rounded."""
    target.table = f"t_{uuid.uuid4().hex[:8]}"
    if target.kind == "amqp":
        _drain(target.queue)
    columns = {"integer": "i", "number": "n", "decimal": "d"}
    lines = ["id,i,n,d"]
    for n, (kind, text) in enumerate(cells, 1):
        values = {name: "" for name in columns.values()}
        values[columns[kind]] = text
        lines.append(f"{n},{values['i']},{values['n']},{values['d']}")
    rejects = tmp_path / f"rejects-{uuid.uuid4().hex[:6]}.jsonl"
    _, sync, extractor, loader, events = sync_csv(
        make_sync, tmp_path, target, "\n".join(lines) + "\n",
        source={"column_types": {"i": "integer", "n": "number", "d": "decimal"}},
        on_error="skip", rejects_path=str(rejects),
    )
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    rows = target.rows()
    kept = {n for n, (kind, text) in enumerate(cells, 1)
            if expected_outcome(kind, text, target.kind)}
    assert set(rows) == kept, cells
    for n in kept:
        kind, text = cells[n - 1]
        stored = rows[n][columns[kind]]
        assert same_number(stored, text, kind, target.kind), (kind, text, stored)
    rejected = rejects.read_text().splitlines() if rejects.exists() else []
    assert len(rejected) == len(cells) - len(kept)
    done = {e["role"]: e for e in events_of(events, "done")}
    assert done["loader"]["records"] == len(kept)


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ints=st.lists(st.integers(min_value=-(2**90), max_value=2**90), min_size=1, max_size=20),
    floats=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20),
)
def test_jsonl_numbers_of_any_size_round_trip(tmp_path, make_sync, target, ints, floats):
    """JSON numbers (integers of any size, floats) reach every target with their value."""
    target.table = f"t_{uuid.uuid4().hex[:8]}"
    if target.kind == "amqp":
        _drain(target.queue)
    size = max(len(ints), len(floats))
    source = tmp_path / f"a-{uuid.uuid4().hex[:6]}.jsonl"
    source.write_text("".join(
        json.dumps({"id": n, "i": ints[n % len(ints)], "f": floats[n % len(floats)]}) + "\n"
        for n in range(size)
    ))
    sync = make_sync("jsonl", {"path": str(source)}, target.kind, target.config())
    extractor, loader, _ = sync.run()
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    rows = target.rows()
    assert len(rows) == size
    for n in range(size):
        assert int(Decimal(str(rows[n]["i"]))) == ints[n % len(ints)]
        assert float(rows[n]["f"]) == floats[n % len(floats)]
