"""Typing, inference and the wire encoding of values: pure functions, no services."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sdk.protocol import Column
from connectors.sdk.values import (
    RowConverter,
    infer_text_type,
    json_type_of,
    loads_exact,
    merge_types,
)
from connectors.sdk.wire import decode_rows, encode_rows


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", ""], "integer"),
        (["007", "8"], "string"),  # leading zeros are identifiers
        (["1.5", "2"], "number"),
        (["true", "False"], "boolean"),
        (["2024-05-01", ""], "date"),
        (["2024-05-01T10:00:00+02:00", "2024-05-01 10:00"], "timestamp"),
        (["2024-13-01"], "string"),
        (["", ""], "string"),
        (["99999999999999999999"], "decimal"),  # past 64 bits: kept exactly as a decimal
        (["1e400", "2"], "decimal"),  # a float cannot hold 1e400
        (["1.5", "NaN", "-inf"], "number"),
        (["NaN"], "string"),
        (["9223372036854775808"], "decimal"),  # integers never become floats
        (["0.10000000000000001", "1.000000000000000056e-01"], "number"),  # C, numpy spellings
    ],
)
def test_inference(values, expected):
    assert infer_text_type(values, [""]) == expected


def test_converter_keeps_integers_and_nulls():
    converter = RowConverter(
        [Column("id", "integer"), Column("x", "number"), Column("ok", "boolean"),
         Column("s", "string"), Column("j", "json")],
        ["", "NULL"],
    )
    rows, bad = converter.convert([["1", "2.5", "true", "a", '{"k": [1]}'],
                                   ["NULL", "", "no", "", "null"]])
    assert bad == []
    assert [list(row) for row in rows] == [[1, 2.5, True, "a", {"k": [1]}],
                                           [None, None, False, None, None]]
    assert isinstance(rows[0][0], int)


def test_converter_names_the_bad_value_and_keeps_the_good_rows():
    converter = RowConverter([Column("id", "integer"), Column("d", "date")], [""])
    rows, bad = converter.convert([["1", "2024-01-01"], ["2", "2024-02-30"], ["x", ""]])
    assert [list(row) for row in rows] == [[1, "2024-01-01"]]
    assert [(b.row, b.column, b.value) for b in bad] == [(1, "d", "2024-02-30"), (2, "id", "x")]


def test_integer_out_of_range_is_refused():
    converter = RowConverter([Column("id", "integer")], [""])
    _, bad = converter.convert([[str(2**64)]])
    assert bad and "beyond 64 bits: declare the column decimal" in bad[0].reason


def test_json_types():
    assert [json_type_of(v) for v in (True, 1, 1.5, "a", {"a": 1}, [1], None)] == [
        "boolean", "integer", "number", "string", "json", "json", None,
    ]
    assert merge_types("integer", "number") == "number"
    assert merge_types(None, "string") == "string"
    assert merge_types("integer", "string") == "string"
    assert merge_types("json", "integer") == "json"


# --- exactness: properties over values nobody listed ----------------------------------------
def rounds_to(text: str, value: float) -> bool:
    """``text`` is ``value`` rounded to the text's last significant digit (exact fractions)."""
    exact = Decimal(text)
    if not exact:
        return value == 0
    unit = Fraction(10) ** exact.normalize().as_tuple().exponent
    return abs(Fraction(exact) - Fraction(value)) * 2 <= unit


number_texts = st.one_of(
    st.floats().map(repr),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e400", "-1e999", "1e-400", "NaN", "inf", "-Infinity", "0.1",
                     "0.10000000000000001", "1.000000000000000056e-01", "9007199254740993"]),
)


@given(st.lists(number_texts, min_size=1, max_size=30))
def test_a_number_column_keeps_each_value_exactly_or_names_it(texts):
    converter = RowConverter([Column("x", "number")], [""])
    rows, bad = converter.convert([[text] for text in texts])
    bad_rows = {b.row for b in bad}
    kept = [text for index, text in enumerate(texts) if index not in bad_rows]
    assert [row[0] for row in rows] == [float(text) for text in kept] or all(
        (a != a and b != b) or a == b
        for a, b in zip([row[0] for row in rows], [float(t) for t in kept], strict=True)
    )
    for (value,), text in zip(rows, kept, strict=True):
        if value == value and abs(value) != float("inf"):
            assert rounds_to(text, value)
    assert all("declare the column decimal" in b.reason for b in bad)


@given(st.lists(number_texts, min_size=1, max_size=30))
def test_inferred_numbers_are_never_rounded(texts):
    """Whatever the sample, the inferred column type holds every value exactly."""
    kind = infer_text_type(texts, [""])
    rows, bad = RowConverter([Column("x", kind)], [""]).convert([[t] for t in texts])
    assert bad == []
    for (value,), text in zip(rows, texts, strict=True):
        if kind == "decimal":
            assert value == text or value in ("NaN", "Infinity", "-Infinity")
        elif kind == "number" and value == value and abs(value) != float("inf"):
            assert rounds_to(text, value)
        elif kind == "integer":
            assert value == int(text)


@given(st.lists(st.one_of(st.floats(), st.none()), min_size=1, max_size=30))
def test_floats_cross_the_wire_unchanged_including_nan_and_infinities(values):
    rows, bad = encode_rows([Column("x", "number")], [[v] for v in values])
    assert bad == []
    body = orjson.dumps({"columns": ["x"], "rows": rows})
    decoded, refused = decode_rows(
        {"x": "number"}, ["x"], orjson.loads(body)["rows"],
        {"number": frozenset({"NaN", "Infinity", "-Infinity"})}, "test",
    )
    assert refused == []
    for (got,), sent in zip(decoded, values, strict=True):
        assert (got is None and sent is None) or got == sent or (got != got and sent != sent)


@given(st.recursive(
    st.one_of(st.integers(min_value=-(2**100), max_value=2**100),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=4),
    max_leaves=12,
))
def test_json_numbers_parse_exactly(value):
    parsed, _ = loads_exact(json.dumps(value))
    assert parsed == value  # ints of any size stay ints; floats stay the same floats

