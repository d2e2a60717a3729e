"""Filters never drop rows because they could not compare them (issue 12, section 6).

What is wrong whatever the columns is refused when the connection is saved; a value that does
not fit its column's type is refused when the extractor knows the columns, before any row;
whatever both accept evaluates without error on every value of the column's type, and as
SQLite evaluates the same condition (an independent oracle). Real syncs:
tests/connectors/test_filters.py.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connectors.sdk.protocol import Column
from connectors.sdk.transform import Transform, TransformError
from etlctl.errors import ValidationError
from etlctl.registry import validate_transform

TYPES = ["integer", "number", "string", "boolean", "date", "timestamp", "json"]
SCHEMA = [Column(f"c_{kind}", kind) for kind in TYPES]
OPS = ["==", "!=", ">", ">=", "<", "<=", "in", "not in", "is null", "is not null"]
SQL_OPS = {"==": "=", "!=": "<>"}

# --- what is refused when saved, and how ------------------------------------------------------
REFUSED = {
    "amount >= 10 and amount <= 20": (
        "filter 'amount >= 10 and amount <= 20': '10 and amount <= 20' is not a value; "
        "a condition is COLUMN OP VALUE, one per list item (all must hold)"
    ),
    'amount > "10"': (
        "filter 'amount > \"10\"': '10' is text, and text compares character by character "
        "('9' > '10'); to compare numbers write the number unquoted: amount > 10"
    ),
    "amount <= '1e3'": "'1e3' is text, and text compares character by character",
    "country == GB": "filter 'country == GB': 'GB' is not a value;",
    "amount > true": "true/false cannot be ordered: use == or !=",
    "amount > NaN": "'NaN' is not a value",
    "amount == 1e999": "inf is not a value a filter can compare with",
    "country in 'GB'": "in needs a list value",
    "country in []": "needs a list of at least one value",
    "country in ['GB', 1]": "the list mixes number and text",
    "country in [None, 'GB']": "the list may hold numbers, text or true/false",
    "note is null 5": "is null takes no value",
    "amount > (1, 2)": "(1, 2) is not a value a filter can compare with",
    "amount > {'a': 1}": "is not a value a filter can compare with",
}


@pytest.mark.parametrize("condition", list(REFUSED))
def test_a_filter_that_cannot_work_is_refused_when_saved(condition):
    with pytest.raises(ValidationError) as refused:
        validate_transform({"filter": [condition]})
    message = refused.value.message
    assert message.startswith("invalid transform: ") and "\n" not in message
    assert REFUSED[condition] in message


@pytest.mark.parametrize(
    "condition",
    [{"column": "amount", "op": ">", "value": "10"}, {"column": "tags", "op": "==", "value": {}},
     {"column": "amount", "op": "in", "value": [1, [2]]}],
)
def test_the_mapping_form_is_held_to_the_same_rules(condition):
    with pytest.raises(ValidationError):
        validate_transform({"filter": [condition]})


FITS = {
    "c_integer == '10'": "column 'c_integer' is integer and '10' is text: compare it with a "
                         "number, unquoted",
    "c_string >= 10": "column 'c_string' is string and 10 is number: compare it with quoted "
                      "text; to compare numbers, declare the column's type in the source",
    "c_boolean == 1": "column 'c_boolean' is boolean and 1 is number: compare it with true",
    "c_boolean > 'x'": "column 'c_boolean' is boolean and 'x' is text",
    "c_date >= 'yesterday'": "column 'c_date' is date: compare it with an ISO 8601 date",
    "c_json > 'a'": "column 'c_json' holds JSON, which cannot be ordered",
}


@pytest.mark.parametrize("condition", list(FITS))
def test_a_value_that_does_not_fit_its_column_is_refused_before_any_row(condition):
    transform = Transform.parse({"filter": [condition]})  # fine whatever the columns
    with pytest.raises(TransformError) as refused:
        transform.plan(SCHEMA)
    assert FITS[condition] in str(refused.value)


def test_a_value_not_of_its_columns_type_is_a_bad_record_never_a_silent_drop():
    plan = Transform.parse({"filter": ["c_integer > 10", "c_string in ['a']"]}).plan(SCHEMA)
    row = [None] * len(SCHEMA)
    for index, value in ((0, "15"), (0, True), (2, 5), (2, {"a": 1})):
        bad = list(row)
        bad[0], bad[2] = 11, "a"
        bad[index] = value
        with pytest.raises(TypeError, match="which is not"):
            plan.apply_row(bad)


def test_null_satisfies_no_comparison_not_even_not_in():
    plan = Transform.parse({"filter": ["c_string not in ['GB']"]}).plan(SCHEMA)
    assert plan.apply_row([None] * len(SCHEMA)) is None


# --- the property: generated conditions ------------------------------------------------------
def _quoted(text: str) -> str:
    return repr(text) if len(text) % 2 else json.dumps(text)


LITERALS = st.one_of(
    st.integers(-(2**53), 2**53).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "True", "null", "None", "NaN", "Infinity", "1e999"]),
    st.text(max_size=8).map(_quoted),
    st.integers(-999, 999).map(lambda n: _quoted(str(n))),  # numbers written as text
    st.dates().map(lambda d: _quoted(d.isoformat())),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),  # bare words
    st.lists(st.one_of(st.integers(-50, 50), st.text(max_size=3), st.booleans(), st.none()),
             max_size=3).map(json.dumps),
)
CONDITIONS = st.one_of(
    st.builds(lambda c, o, v: f"{c} {o} {v}", st.sampled_from([c.name for c in SCHEMA]),
              st.sampled_from(OPS), LITERALS),
    st.builds(lambda c, o, v, w: f"{c} {o} {v} and {c} {o} {w}",
              st.sampled_from([c.name for c in SCHEMA]), st.sampled_from(OPS), LITERALS,
              LITERALS),
    st.builds(lambda c, o: f"{c} {o}", st.sampled_from([c.name for c in SCHEMA]),
              st.sampled_from([*OPS, "=", "<>", "~", "like"])),
    st.text(max_size=30),
    st.fixed_dictionaries({
        "column": st.sampled_from([c.name for c in SCHEMA]),
        "op": st.sampled_from(OPS),
        "value": st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                st.text(max_size=2), inner, max_size=2),
            max_leaves=4,
        ),
    }),
)
VALUES = {
    "integer": st.integers(-(2**53), 2**53),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
    "string": st.text(max_size=6),
    "boolean": st.booleans(),
    "date": st.dates().map(lambda d: d.isoformat()),
    "timestamp": st.datetimes().map(lambda d: d.isoformat()),
    "json": st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3),
                         lambda inner: st.lists(inner, max_size=2), max_leaves=3),
}


def _sqlite_keeps(condition, column_type: str, value: Any) -> bool:
    """The same condition evaluated by SQLite (NULL semantics, typed comparisons)."""
    declared = {"integer": "INTEGER", "number": "REAL", "boolean": "INTEGER"}.get(
        column_type, "TEXT")
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE TABLE t (v {declared})")
        db.execute("INSERT INTO t VALUES (?)", (value,))
        op = condition.op
        if op in ("is null", "is not null"):
            sql, params = f"v {op}", []
        elif op in ("in", "not in"):
            sql, params = f"v {op} ({', '.join('?' * len(condition.value))})", condition.value
        else:
            sql, params = f"v {SQL_OPS.get(op, op)} ?", [condition.value]
        return bool(db.execute(f"SELECT count(*) FROM t WHERE {sql}", params).fetchone()[0])
    finally:
        db.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=CONDITIONS, data=st.data())
def test_what_is_accepted_evaluates_without_error_and_as_sqlite_does(raw, data):
    try:
        transform = Transform.parse({"filter": [raw]})
    except TransformError as refused:  # refused when saved: one line, through etlctl too
        assert "\n" not in str(refused)
        with pytest.raises(ValidationError):
            validate_transform({"filter": [raw]})
        return
    validate_transform({"filter": [raw]})
    [condition] = transform.conditions
    column_type = SCHEMA[[c.name for c in SCHEMA].index(condition.column)].type
    try:
        plan = transform.plan(SCHEMA)
    except TransformError:  # refused before any row: the value does not fit the column
        return
    value = data.draw(st.none() | VALUES[column_type], label="value")
    row = [None] * len(SCHEMA)
    row[[c.name for c in SCHEMA].index(condition.column)] = value
    kept = plan.apply_row(row) is not None  # never raises for a value of the column's type
    if column_type != "json":
        assume(not (isinstance(value, float) and math.isinf(value)))
        assert kept == _sqlite_keeps(condition, column_type, value), (raw, value)


def _fitting_literal(column_type: str) -> st.SearchStrategy[Any]:
    if column_type in ("integer", "number"):
        return st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    if column_type == "boolean":
        return st.booleans()
    if column_type in ("date", "timestamp"):
        return st.dates().map(lambda d: d.isoformat())
    return st.text(max_size=6).filter(lambda t: not t.strip().lstrip("+-").replace(".", "", 1)
                                      .isdigit())


@st.composite
def fitting_conditions(draw: Any) -> tuple[Any, str]:
    """A condition whose value fits its column: what a user means to write."""
    column = draw(st.sampled_from([c for c in SCHEMA if c.type != "json"]))
    ops = ["==", "!=", "in", "not in", "is null", "is not null"]
    if column.type != "boolean":
        ops += [">", ">=", "<", "<="]
    op = draw(st.sampled_from(ops))
    literal = _fitting_literal(column.type)
    if op in ("is null", "is not null"):
        value = None
    elif op in ("in", "not in"):
        value = draw(st.lists(literal, min_size=1, max_size=3))
    else:
        value = draw(literal)
    if draw(st.booleans()):  # the mapping form
        return {"column": column.name, "op": op, "value": value}, column.type
    text = "" if value is None else json.dumps(value)
    return f"{column.name} {op} {text}".strip(), column.type


@settings(max_examples=300, deadline=None)
@given(case=fitting_conditions(), data=st.data())
def test_conditions_that_fit_their_column_are_accepted_and_evaluate_as_sqlite_does(case, data):
    raw, column_type = case
    validate_transform({"filter": [raw]})  # accepted when saved
    plan = Transform.parse({"filter": [raw]}).plan(SCHEMA)  # and when the columns are known
    [condition] = Transform.parse({"filter": [raw]}).conditions
    value = data.draw(st.none() | VALUES[column_type], label="value")
    row = [None] * len(SCHEMA)
    row[[c.name for c in SCHEMA].index(condition.column)] = value
    assert (plan.apply_row(row) is not None) == _sqlite_keeps(condition, column_type, value)
