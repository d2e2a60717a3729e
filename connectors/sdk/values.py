"""Typing of values: text -> typed values (CSV), type inference, types of JSON values.

Conversions work a column of a batch at a time: ``list(map(int, column))`` runs in C, so a
clean column costs little; only a column that holds NULLs or a bad value falls back to a
per-value path. Dates and timestamps travel as ISO strings.

Values are kept exactly or refused, never rounded (docs/connectors.md, "Types"): an
``integer`` is 64 bits, a ``number`` a 64-bit float (the text must read back as the same
number: ``1e400`` or 0.1000000000000000000001 do not), a ``decimal`` any decimal number,
kept as the source wrote it. Inference picks ``decimal`` for a column whose numbers the first
two cannot hold, and JSON is parsed so that such numbers become ``Decimal`` instead of floats.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import MAX_EMAX, MIN_EMIN, Decimal, InvalidOperation, localcontext
from typing import Any

import orjson

from connectors.sdk.protocol import Column

TRUE_WORDS = frozenset({"true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "no", "n"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Inference is stricter than conversion: "007" is an identifier, not the integer 7.
_INTEGER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\Z")
# What a declared decimal column reads: PostgreSQL's numeric syntax without its whitespace.
_DECIMAL_TEXT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
# Non-finite values, by their spellings in text (any case, optional sign) -> the protocol's
# spelling (the one of JavaScript, PostgreSQL and protobuf's JSON mapping).
NAN, INFINITY, MINUS_INFINITY = "NaN", "Infinity", "-Infinity"
NON_FINITE = frozenset({NAN, INFINITY, MINUS_INFINITY})
_NON_FINITE_SPELLINGS = {
    f"{sign}{word}": MINUS_INFINITY if sign == "-" and word != "nan" else (
        NAN if word == "nan" else INFINITY)
    for sign in ("", "+", "-")
    for word in ("nan", "inf", "infinity")
}
# A float's shortest repr has at most 17 significant digits; text of at most 15 characters
# without an exponent always reads back as the same number (DBL_DIG is 15).
_ALWAYS_EXACT_LENGTH = 15
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
        raise ValueError("beyond 64 bits: declare the column decimal to keep it exactly")
    return value


def non_finite_spelling(text: str) -> str | None:
    """NaN, Infinity or -Infinity when ``text`` spells one (nan, inf, -Infinity, ...)."""
    return _NON_FINITE_SPELLINGS.get(text.strip().lower()) if len(text) <= 10 else None


def float_holds(text: str, value: float) -> bool:
    """True when ``value`` (float(text)) is the number ``text`` writes, to the text's last
    significant digit: ``0.1``, ``0.10000000000000001`` (C's %.17g) and
    ``1.000000000000000056e-01`` (numpy) all are the double 0.1 rounded to their digits;
    ``1e400`` (infinite), ``1e-400`` (0.0), ``9007199254740993`` and
    ``0.1000000000000000000001`` are numbers a double cannot hold. A spelled NaN or Infinity
    is held."""
    if not math.isfinite(value):
        return non_finite_spelling(text) is not None
    try:
        exact = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        return False
    if not exact.is_finite():
        return False
    if not exact:
        return True  # 0 (a float holds zero; float(text) is 0.0 or -0.0)
    last_digit = exact.normalize().as_tuple().exponent
    assert isinstance(last_digit, int)
    with localcontext() as context:
        # Exact arithmetic: a double's expansion has at most ~1100 digits around the point.
        context.prec = len(text) + 1200
        context.Emax, context.Emin = MAX_EMAX, MIN_EMIN
        return abs(exact - Decimal(value)) * 2 <= Decimal(1).scaleb(last_digit)


def _maybe_not_held(text: str, value: float) -> bool:
    return (
        len(text) > _ALWAYS_EXACT_LENGTH
        or "e" in text
        or "E" in text
        or not math.isfinite(value)
    )


def parse_number(text: str) -> float:
    value = float(text)
    if _maybe_not_held(text, value) and repr(value) != text and not float_holds(text, value):
        raise ValueError("a 64-bit float cannot hold it exactly: declare the column decimal")
    return value


def parse_decimal(text: str) -> str:
    """A decimal travels as the source wrote it (NaN and infinities in the protocol's
    spelling), once it reads as one."""
    if _DECIMAL_TEXT.match(text):
        return text
    special = non_finite_spelling(text)
    if special is None:
        raise ValueError("not a decimal number")
    return special


def _number_column(values: Sequence[str]) -> list[float]:
    """float() in C; the exactness check only for values that may not be held: long ones,
    ones with an exponent, and those that read as NaN or an infinity."""
    converted = list(map(float, values))
    joined = "".join(values)
    if (
        max(map(len, values), default=0) > _ALWAYS_EXACT_LENGTH
        or not _finite_total(converted)
        or "e" in joined
        or "E" in joined
    ):
        # Text written as a float's shortest repr (what most tools write) is held: compare
        # the whole column in C, and look closer only at values written otherwise.
        spelled = tuple(map(repr, converted))
        if spelled != tuple(values):
            for text, value, again in zip(values, converted, spelled, strict=True):
                if again != text and _maybe_not_held(text, value) and not float_holds(
                    text, value
                ):
                    raise ValueError(f"{text!r} is not held exactly by a number")
    return converted


def _finite_total(values: Iterable[Any]) -> bool:
    """True when no value is NaN or infinite (sum runs in C; an overflow only costs a
    closer look)."""
    try:
        return math.isfinite(sum(filter(None, values)))
    except (TypeError, OverflowError):
        return False


def parse_json(text: str) -> Any:
    value, exactly = loads_exact(text)
    if exactly:
        found = big_number_in([value])
        if found is not None:
            raise ValueError(f"the number {found} cannot be kept exactly inside a JSON value")
    return value


# --- JSON with exact numbers -----------------------------------------------------------------
# Text where a number may be one that orjson cannot keep (it makes floats of integers beyond
# 64 bits, rounds fractions of more than 17 digits, refuses 1e400 and reads 1e-400 as 0.0):
# 19 or more digits and points in a row, or a number with a three-digit exponent. A float
# token of up to 17 significant digits is its nearest double (JSON's own model of numbers), so
# Python's and JavaScript's floats take the fast path. The test runs in C: bytes.translate
# maps digits and points to "0", e/E to "e", signs to "-", what may come before a number
# (":", ",", "[", whitespace) to "x" and all else to " ", then looks for substrings.
_SHAPES = bytes(
    0x30 if chr(c) in "0123456789." else
    0x65 if chr(c) in "eE" else
    0x2D if chr(c) in "+-" else
    0x78 if chr(c) in ":,[ \t\r\n" else
    0x20
    for c in range(256)
)
_LONG_RUN = b"0" * 19


def _may_be_inexact(text: str | bytes) -> bool:
    shapes = (text.encode() if isinstance(text, str) else text).translate(_SHAPES)
    if _LONG_RUN in shapes:
        return True
    for exponent in (b"0e000", b"0e-000"):
        at = shapes.find(exponent)
        while at >= 0:
            # A number only if its mantissa starts the text or follows a delimiter: "x0.5e400",
            # not a UUID's "550e8400" (hex letters are " ").
            start = at
            while start > 0 and shapes[start - 1] == 0x30:
                start -= 1
            if start > 0 and shapes[start - 1] == 0x2D:
                start -= 1
            if start == 0 or shapes[start - 1] == 0x78:
                return True
            at = shapes.find(exponent, at + 1)
    return False


def _exact_float(text: str) -> float | Decimal:
    """A JSON number token: its nearest float when it has at most 17 significant digits and
    is within a float's range (JSON's model of numbers), else the float only if it holds the
    number exactly, else a Decimal."""
    value = float(text)
    digits = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "").strip("0")
    if len(digits) <= 17 and math.isfinite(value) and (value != 0 or not digits):
        return value
    return value if float_holds(text, value) else Decimal(text)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def exact_json_decoder() -> json.JSONDecoder:
    """A JSON decoder that keeps numbers exactly (Decimal when a float cannot hold one) and
    refuses NaN and Infinity (not JSON; the standard library would accept them)."""
    return json.JSONDecoder(parse_float=_exact_float, parse_constant=_not_json)


_decode_exactly = exact_json_decoder().decode


def loads_exact(text: str | bytes) -> tuple[Any, bool]:
    """Parse JSON keeping every number exactly: integers as int (any size), a number a float
    cannot hold as Decimal. orjson parses (fast); the standard library again (slow, exact) only
    text that may hold such a number. Returns the value and whether the slow path ran (only
    then can it hold Decimal or integers beyond 64 bits). Raises orjson.JSONDecodeError."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        error: orjson.JSONDecodeError | None = exc  # 1e400 is infinite to orjson: try again
    else:
        if not _may_be_inexact(text):
            return value, False
        error = None
    try:
        decoded = text.decode("utf-8-sig") if isinstance(text, bytes) else text
        return _decode_exactly(decoded), True
    except (ValueError, RecursionError):
        if error is not None:
            raise error from None
        raise


def big_number_in(value: Any) -> str | None:
    """The first number inside ``value`` (nested in lists and objects) that JSON values on the
    protocol cannot carry exactly: a Decimal, or an integer beyond 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, Decimal) or (
            isinstance(item, int) and not isinstance(item, bool)
            and not INT64_MIN <= item <= INT64_MAX
        ):
            return str(item)
    return None


def _identity(text: str) -> str:
    return text


TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "integer": int,  # the fast path; parse_integer checks the range in the slow path
    "number": parse_number,
    "decimal": parse_decimal,
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
        if kind == "number":
            return _number_column(values)
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


def _is_number_text(value: str) -> bool:
    if _NUMBER_TEXT.match(value):
        return float_holds(value, float(value))
    return non_finite_spelling(value) is not None


def _is_decimal_text(value: str) -> bool:
    return bool(_NUMBER_TEXT.match(value)) or non_finite_spelling(value) is not None


INFERENCE_ORDER: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("integer", _is_integer_text),
    ("number", _is_number_text),
    ("decimal", _is_decimal_text),
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
    if all(non_finite_spelling(value) for value in present):
        return "string"  # "NaN" alone is a word; with other numbers it is a number
    for kind, test in INFERENCE_ORDER:
        if _fits(present, test):
            if kind == "number" and _fits(present, _INTEGER_TEXT.match):
                return "decimal"  # integers past 64 bits stay integral, exact
            return kind
    return "string"


def json_type_of(value: Any) -> str | None:
    """The column type of a value decoded from JSON; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if INT64_MIN <= value <= INT64_MAX else "decimal"
    if isinstance(value, float):
        return "number"
    if isinstance(value, Decimal):
        return "decimal"
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
    if {current, new} <= {"integer", "number", "decimal"}:
        return "decimal"
    if "json" in (current, new):
        return "json"
    return "string"
