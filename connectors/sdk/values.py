"""Typing of values: text -> typed values (CSV), type inference, types of JSON values.

Conversions work a column of a batch at a time: ``list(map(int, column))`` runs in C, so a
clean column costs little; only a column that holds NULLs or a bad value falls back to a
per-value path. Integers stay integers, dates and timestamps travel as ISO strings.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from connectors.sdk.protocol import Column

TRUE_WORDS = frozenset({"true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "no", "n"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Inference is stricter than conversion: "007" is an identifier, not the integer 7.
_INTEGER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\Z")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_TIMESTAMP_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")


def parse_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS or lowered == "1":
        return True
    if lowered in FALSE_WORDS or lowered == "0":
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_date(text: str) -> str:
    date.fromisoformat(text)
    return text


def parse_timestamp(text: str) -> str:
    datetime.fromisoformat(text)
    return text


def parse_integer(text: str) -> int:
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"integer out of 64-bit range: {text!r}")
    return value


def parse_json(text: str) -> Any:
    return orjson.loads(text)


def _identity(text: str) -> str:
    return text


TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "integer": int,  # the fast path; parse_integer checks the range in the slow path
    "number": float,
    "boolean": parse_boolean,
    "date": parse_date,
    "timestamp": parse_timestamp,
    "json": parse_json,
    "string": _identity,
}
CHECKED_PARSERS = {**TEXT_PARSERS, "integer": parse_integer}


@dataclass(frozen=True)
class BadValue:
    row: int  # index in the batch
    column: str
    value: str
    reason: str


# Exact spellings read by the fast path (a dict lookup in C); others go the slow path.
_BOOLEAN_SPELLINGS = {
    spelling: value
    for words, value in ((TRUE_WORDS | {"1"}, True), (FALSE_WORDS | {"0"}, False))
    for word in words
    for spelling in (word, word.upper(), word.capitalize())
}
_VALIDATORS: dict[str, Callable[[str], Any]] = {
    "date": date.fromisoformat,
    "timestamp": datetime.fromisoformat,
}


def _validated_text(values: Sequence[str], kind: str) -> Sequence[str]:
    """Dates and timestamps travel as the source wrote them once they parse as ISO 8601:
    checking runs in C (deque drains the map), rewriting each value would not."""
    deque(map(_VALIDATORS[kind], values), maxlen=0)
    return values


def _holds_null(values: Sequence[str], nulls: frozenset[str]) -> bool:
    # One scan in C per NULL spelling (usually just ""): cheaper than hashing every value.
    return any(null in values for null in nulls)


def _fast_column(values: Sequence[str], kind: str, nulls: frozenset[str]) -> Sequence[Any]:
    """Convert a column assuming it is clean; raises on any NULL or bad value."""
    if not _holds_null(values, nulls):
        if kind == "string":
            return values
        if kind in _VALIDATORS:
            return _validated_text(values, kind)
        if kind == "boolean":
            return list(map(_BOOLEAN_SPELLINGS.__getitem__, values))
        if kind == "integer":
            converted = list(map(int, values))
            if converted and not INT64_MIN <= min(converted) <= max(converted) <= INT64_MAX:
                raise ValueError("integer out of 64-bit range")
            return converted
        return list(map(TEXT_PARSERS[kind], values))
    if kind == "string":
        return [None if value in nulls else value for value in values]
    parser = CHECKED_PARSERS[kind]
    return [None if value in nulls else parser(value) for value in values]


def _slow_value(value: str, kind: str, nulls: frozenset[str]) -> Any:
    if value in nulls:
        return None
    return CHECKED_PARSERS[kind](value)


class RowConverter:
    """Converts batches of text rows (lists of str) into typed positional rows."""

    def __init__(self, columns: Sequence[Column], null_values: Iterable[str]) -> None:
        self.columns = list(columns)
        self.nulls = frozenset(null_values)
        self.kinds = [column.type for column in self.columns]

    def convert(self, rows: list[list[str]]) -> tuple[list[Any], list[BadValue]]:
        """Typed rows and the bad values found; rows holding a bad value are left out."""
        try:
            columns = list(zip(*rows, strict=True))
            converted = [
                _fast_column(values, kind, self.nulls)
                for values, kind in zip(columns, self.kinds, strict=True)
            ]
            return list(zip(*converted, strict=True)), []
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            return self._convert_row_by_row(rows)

    def _convert_row_by_row(self, rows: list[list[str]]) -> tuple[list[Any], list[BadValue]]:
        good: list[Any] = []
        bad: list[BadValue] = []
        for index, row in enumerate(rows):
            typed: list[Any] = []
            for value, column in zip(row, self.columns, strict=True):
                try:
                    typed.append(_slow_value(value, column.type, self.nulls))
                except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                    reason = f"column {column.name!r}: cannot read {value!r} as {column.type}"
                    bad.append(BadValue(index, column.name, value, f"{reason} ({exc})"))
                    break
            else:
                good.append(typed)
        return good, bad


# --- inference -----------------------------------------------------------------------------
def _fits(values: list[str], test: Callable[[str], bool]) -> bool:
    return all(test(value) for value in values)


def _is_integer_text(value: str) -> bool:
    return bool(_INTEGER_TEXT.match(value)) and INT64_MIN <= int(value) <= INT64_MAX


def _is_date_text(value: str) -> bool:
    if not _DATE_TEXT.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_timestamp_text(value: str) -> bool:
    if not _TIMESTAMP_TEXT.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_boolean_text(value: str) -> bool:
    return value.lower() in ("true", "false")


INFERENCE_ORDER: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("integer", _is_integer_text),
    ("number", lambda value: bool(_NUMBER_TEXT.match(value))),
    ("boolean", _is_boolean_text),
    ("date", _is_date_text),
    ("timestamp", _is_timestamp_text),
)


def infer_text_type(values: Iterable[str], null_values: Iterable[str]) -> str:
    """The narrowest type that reads every non-NULL sample value; string when none does."""
    nulls = frozenset(null_values)
    present = [value for value in values if value not in nulls]
    if not present:
        return "string"
    for kind, test in INFERENCE_ORDER:
        if _fits(present, test):
            return kind
    return "string"


def json_type_of(value: Any) -> str | None:
    """The column type of a value decoded from JSON; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, date | datetime):
        return "timestamp" if isinstance(value, datetime) else "date"
    return "json"


def merge_types(current: str | None, new: str | None) -> str | None:
    """The type of a column that holds values of both types."""
    if current is None or current == new:
        return new if current is None else current
    if new is None:
        return current
    if {current, new} == {"integer", "number"}:
        return "number"
    if "json" in (current, new):
        return "json"
    return "string"
