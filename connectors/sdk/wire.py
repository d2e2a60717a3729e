"""Values on the wire: what the protocol's JSON carries for the values JSON has no room for.

JSON has no NaN or infinities, and orjson writes them as ``null`` and refuses integers beyond
64 bits: left alone, such values would become NULL or fail a whole batch. So, per column type
(docs/connector-protocol.md, "Values"):

* ``number``: a NaN or an infinity travels as the string ``"NaN"``, ``"Infinity"`` or
  ``"-Infinity"``; an integer a 64-bit float cannot hold is a bad record;
* ``decimal``: every value travels as a string of its exact decimal text;
* ``integer``: a value beyond 64 bits is a bad record;
* ``string`` (and the other text types): an integer beyond 64 bits or a NaN arriving there
  (a source mixing types) travels as its text.

The extractor side (``encode_rows``) checks a batch a column at a time with C-speed scans and
looks at single values only in a column that holds something unusual. The loader side
(``decode_rows``) turns the spellings back into floats, and refuses the non-finite values
its target cannot store (``Loader.non_finite``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson

from connectors.sdk.protocol import Column
from connectors.sdk.values import (
    INFINITY,
    INT64_MAX,
    INT64_MIN,
    MINUS_INFINITY,
    NAN,
    NON_FINITE,
    _finite_total,
)

_NONE = type(None)
FLOAT_EXACT_INTEGER = 2**53  # integers up to this size are held exactly by a 64-bit float
# Python types that travel as they are, per column type (after the scans below).
_PLAIN: dict[str, frozenset[type]] = {
    "integer": frozenset({int, _NONE}),
    "number": frozenset({float, _NONE}),
    "decimal": frozenset({str, _NONE}),
}
_PLAIN_OTHER = frozenset({str, bool, int, float, dict, list, _NONE})
# Bytes that a RECORDS body holds when it carries a non-finite value: a cheap test first.
SPECIAL_MARKERS = (b'"NaN"', b'Infinity"')


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\Z")


class BadValue(ValueError):
    """A value that cannot travel exactly in its column."""


def spelling_of(value: float | Decimal) -> str:
    if value != value:  # NaN is the only value unequal to itself
        return NAN
    return INFINITY if value > 0 else MINUS_INFINITY


def _column_is_plain(kind: str, values: Sequence[Any]) -> bool:
    kinds = set(map(type, values))
    plain = _PLAIN.get(kind, _PLAIN_OTHER)
    if not kinds <= plain:
        return False
    if float in kinds and not _finite_total(values):  # a TypeError (mixed types) says False
        return False
    if int in kinds:
        if kinds <= {int, _NONE}:
            integers: Any = [v for v in values if v is not None] if _NONE in kinds else values
        else:
            integers = [v for v in values if type(v) is int]
        if not INT64_MIN <= min(integers) <= max(integers) <= INT64_MAX:
            return False
    return True


def wire_value(value: Any, kind: str) -> Any:
    """The value as it travels in a column of type ``kind``; BadValue when it cannot."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value) if kind == "decimal" else value
        if kind in ("integer", "json", "boolean", "date", "timestamp"):
            raise BadValue(f"{spelling_of(value)} cannot be stored in a {kind} column")
        return spelling_of(value)
    if isinstance(value, int):
        if kind == "decimal":
            return str(value)
        if kind == "number":
            if abs(value) > FLOAT_EXACT_INTEGER and float(value) != value:
                raise BadValue(
                    f"{value} has more digits than a number (64-bit float) holds: "
                    "declare the column decimal"
                )
            return value
        if INT64_MIN <= value <= INT64_MAX:
            return value
        if kind == "string":
            return str(value)
        raise BadValue(f"{value} is beyond 64 bits: declare the column decimal")
    if isinstance(value, Decimal):
        return _wire_decimal(value, kind)
    return value


def _wire_decimal(value: Decimal, kind: str) -> Any:
    if value.is_snan():
        raise BadValue("a signalling NaN is no value")
    if not value.is_finite():
        if kind in ("decimal", "number", "string"):
            return spelling_of(value)
        raise BadValue(f"{spelling_of(value)} cannot be stored in a {kind} column")
    if kind in ("decimal", "string"):
        return str(value)
    if kind == "number":
        converted = float(value)
        if math.isfinite(converted) and Decimal(repr(converted)) == value:
            return converted
        raise BadValue(
            f"{value} is not held exactly by a number (64-bit float): declare the column decimal"
        )
    if kind == "integer" and value == value.to_integral_value():
        return wire_value(int(value), kind)
    raise BadValue(f"{value} cannot be stored exactly in a {kind} column")


def printable(value: Any) -> Any:
    """A value as the rejects file and events can show it (JSON): big integers, NaN and
    Decimal as their text."""
    try:
        return wire_value(value, "string")
    except BadValue:
        return str(value)


def encode_rows(
    columns: Sequence[Column], rows: list[Any], typed: bool = False
) -> tuple[list[Any], list[tuple[int, str]]]:
    """The rows as they travel, and (index, reason) of the rows that cannot travel exactly
    (left out of the rows returned). ``typed``: every value has its column's type already
    (integers within 64 bits, floats that hold what the source wrote): only number columns
    are looked at, for NaN and infinities."""
    if not rows or not columns:
        return rows, []
    if typed:
        numbers = [i for i, column in enumerate(columns) if column.type == "number"]
        if not numbers:
            return rows, []
        work = [i for i in numbers if not _finite_total(map(itemgetter(i), rows))]
    else:
        transposed = list(zip(*rows, strict=True))
        work = [
            index
            for index, (column, values) in enumerate(zip(columns, transposed, strict=True))
            if not _column_is_plain(column.type, values)
        ]
    if not work:
        return rows, []
    out: list[Any] = []
    bad: list[tuple[int, str]] = []
    for row_index, row in enumerate(rows):
        changed: list[Any] | None = None
        try:
            for index in work:
                value = row[index]
                column = columns[index]
                try:
                    sent = wire_value(value, column.type)
                except BadValue as exc:
                    raise BadValue(f"column {column.name!r}: {exc}") from None
                if sent is not value:
                    if changed is None:
                        changed = list(row)
                    changed[index] = sent
        except BadValue as exc:
            bad.append((row_index, str(exc)))
            continue
        out.append(row if changed is None else changed)
    return out, bad


def decode_rows(
    types: Mapping[str, str],
    columns: Sequence[str],
    rows: list[list[Any]],
    storable: Mapping[str, frozenset[str]],
    target: str,
) -> tuple[list[list[Any]], list[tuple[int, str]]]:
    """Loader side: NaN and infinities of number columns back to floats; (index, reason) of
    rows whose non-finite values the target cannot store (``storable``: spellings per column
    type). Call it only for a body that holds one of SPECIAL_MARKERS."""
    work = [
        (index, name, types[name])
        for index, name in enumerate(columns)
        if types.get(name) in ("number", "decimal")
    ]
    if not work:
        return rows, []
    out: list[list[Any]] = []
    bad: list[tuple[int, str]] = []
    for row_index, row in enumerate(rows):
        refused = None
        for index, name, kind in work:
            value = row[index]
            if value.__class__ is not str or value not in NON_FINITE:
                continue
            if value not in storable.get(kind, ()):
                refused = f"column {name!r}: {target} cannot store {value} (in a {kind} column)"
                break
            if kind == "number":
                row[index] = float(value)
        if refused is None:
            out.append(row)
        else:
            bad.append((row_index, refused))
    return out, bad


def json_numbers(
    types: Mapping[str, str], columns: Sequence[str], rows: list[list[Any]]
) -> list[list[Any]]:
    """For JSON targets: decimal values (strings on the wire) written as exact JSON numbers
    (orjson.Fragment), in JSON's spelling (``.5`` -> ``0.5``). NaN and infinities never get
    here (JSON has none: Loader.non_finite refuses them)."""
    indexes = [i for i, name in enumerate(columns) if types.get(name) == "decimal"]
    if not indexes:
        return rows
    for row in rows:
        for index in indexes:
            value = row[index]
            if value.__class__ is str:
                text = value if _JSON_NUMBER.match(value) else str(Decimal(value))
                row[index] = orjson.Fragment(text.encode())
    return rows
