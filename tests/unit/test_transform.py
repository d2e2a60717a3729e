"""The transform (the T): parsing is strict, evaluation never uses eval."""

from __future__ import annotations

import pytest

from connectors.sdk.protocol import Column
from connectors.sdk.transform import Transform, TransformError

COLUMNS = [
    Column("id", "integer"),
    Column("email", "string"),
    Column("amount", "number"),
    Column("country", "string"),
    Column("notes", "string"),
]


def plan(spec):
    return Transform.parse(spec).plan(COLUMNS)


def test_all_steps_in_order():
    p = plan(
        {
            "filter": [
                "country in ['GB', 'FR']",
                "amount >= 10",
                {"column": "email", "op": "is not null"},
            ],
            "exclude": ["notes"],
            "rename": {"amount": "amount_gbp"},
            "cast": {"amount_gbp": "integer"},
            "add": {"source_system": "crm", "version": 2},
        }
    )
    assert [(c.name, c.type) for c in p.output_columns] == [
        ("id", "integer"),
        ("email", "string"),
        ("amount_gbp", "integer"),
        ("country", "string"),
        ("source_system", "string"),
        ("version", "integer"),
    ]
    assert p.apply_row([1, "a@x", 12.0, "GB", "n"]) == [1, "a@x", 12, "GB", "crm", 2]
    assert p.apply_row([2, "b@x", 9.5, "GB", "n"]) is None
    assert p.apply_row([3, "c@x", 50.0, "DE", "n"]) is None
    assert p.apply_row([4, None, 50.0, "FR", "n"]) is None


def test_null_never_passes_a_comparison():
    p = plan({"filter": ["amount > 1"]})
    assert p.apply_row([1, "a", None, "GB", None]) is None


def test_select_keeps_only_and_orders():
    p = plan({"select": ["email", "id"]})
    assert p.apply_row([1, "a@x", 1.0, "GB", "n"]) == ["a@x", 1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"select": ["nope"]}, "transform.select names column 'nope'"),
        ({"rename": {"nope": "x"}}, "transform.rename names column 'nope'"),
        ({"filter": ["nope == 1"]}, "transform.filter names column 'nope'"),
        ({"exclude": ["id"], "cast": {"id": "integer"}}, "transform.cast names column 'id'"),
        ({"add": {"id": 1}}, "column 'id' exists already"),
    ],
)
def test_unknown_columns_are_named(spec, message):
    with pytest.raises(TransformError, match=message):
        plan(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"filter": ["__import__('os').system('id')"]}, "expected COLUMN OP VALUE"),
        ({"filter": ["amount ~ 3"]}, "expected COLUMN OP VALUE"),
        ({"filter": ["amount >"]}, "compare with a value"),
        ({"filter": ["country in 'GB'"]}, "needs a list"),
        ({"cast": {"amount": "money"}}, "unknown type 'money'"),
        ({"select": ["id"], "exclude": ["notes"]}, "not both"),
        ({"explode": ["id"]}, "unknown transform step"),
    ],
)
def test_malformed_transforms_are_refused(spec, message):
    with pytest.raises(TransformError, match=message):
        Transform.parse(spec)


def test_a_value_that_cannot_be_cast_raises_for_the_record():
    p = plan({"cast": {"email": "integer"}})
    with pytest.raises(ValueError):
        p.apply_row([1, "not a number", 1.0, "GB", None])


@pytest.mark.parametrize("text", ["1e400", "-1e999", "0.1000000000000000000001"])
def test_a_cast_to_number_never_rounds_and_decimal_keeps_it(text):
    with pytest.raises(ValueError, match="declare the column decimal"):
        plan({"cast": {"email": "number"}}).apply_row([1, text, 1.0, "GB", None])
    row = plan({"cast": {"email": "decimal"}}).apply_row([1, text, 1.0, "GB", None])
    assert row[1] == text
    with pytest.raises(ValueError, match="without losing digits"):
        plan({"cast": {"id": "number"}}).apply_row([2**53 + 1, "x", 1.0, "GB", None])
