"""Typing and inference: pure functions, no services."""

from __future__ import annotations

import pytest

from connectors.sdk.protocol import Column
from connectors.sdk.values import RowConverter, infer_text_type, json_type_of, merge_types


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
