"""The T: a small, safe mapping applied to records in the stream.

A connection may declare::

    transform:
      filter:                       # keep rows where every condition holds
        - "country == 'GB'"         # text form: COLUMN OP VALUE, VALUE a JSON literal
        - {column: amount, op: ">", value: 10}
        - "email is not null"
      select: [id, email, amount]   # or exclude: [internal_notes]
      rename: {amount: amount_gbp}
      cast: {amount_gbp: number}    # any column type (integer, number, decimal, string, ...)
      add: {source_system: crm}     # constant columns

Steps run in that order (filter sees the source's column names). Conditions are parsed into
(column, operator, value) triples and evaluated by plain comparisons: nothing is ever passed
to eval. A filter never drops a row because it could not compare it:

* when a connection is saved, everything that is wrong whatever the columns is refused: a
  condition that does not parse (``amount >= 10 and amount <= 20``: one condition per item),
  a value that is not a literal, an operator that does not fit its value (``> true``,
  ``in 'GB'``), a number written as text in an ordering (``amount > "10"``: text compares
  character by character);
* when the extractor knows its columns, before it reads a row, a value whose kind does not
  fit its column's type (a number against a text column, text against an integer column);
* a row whose value is not of its column's declared type is a bad record (``on_error``).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.sdk.protocol import COLUMN_TYPES, Column
from connectors.sdk.values import json_type_of, parse_decimal, parse_number
from connectors.sdk.wire import wire_value

STEPS = ("filter", "select", "exclude", "rename", "cast", "add")
_CONDITION = re.compile(
    r"^\s*(?P<column>[A-Za-z_][\w.-]*)\s*"
    r"(?P<op>==|!=|>=|<=|>|<|not\s+in\b|in\b|is\s+not\s+null\b|is\s+null\b)\s*(?P<value>.*?)\s*$",
    re.IGNORECASE,
)
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


ORDERINGS = frozenset({">", ">=", "<", "<="})
MEMBERSHIP = frozenset({"in", "not in"})
NULL_TESTS = frozenset({"is null", "is not null"})
# What a filter value may be compared with: the kind of value each column type holds.
KIND_OF_TYPE = {
    "integer": "number",
    "number": "number",
    "string": "text",
    "date": "text",
    "timestamp": "text",
    "boolean": "boolean",
}
_NUMBER_TEXT = re.compile(r"\s*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*\Z")
_DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ALLOWED = (
    "a condition is COLUMN OP VALUE, one per list item (all must hold); OP is ==, !=, >, >=, "
    "<, <=, in, not in, is null, is not null; VALUE is a number (10), quoted text ('GB'), "
    "true/false, or a list ([1, 2])"
)


class TransformError(ValueError):
    """The transform is malformed or does not fit the stream's columns."""


def value_kind(value: Any) -> str:
    """number, text, boolean (or json): what a value compares as."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict | list):
        return "json"
    return "text"


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: Any = None

    @property
    def kind(self) -> str | None:
        """What the value compares as (number, text, boolean); None for the null tests."""
        if self.op in NULL_TESTS:
            return None
        return value_kind(self.value[0] if self.op in MEMBERSHIP else self.value)

    def test(self, value: Any, strict: bool = False) -> bool:
        """Whether ``value`` passes. ``strict`` (a column of a scalar type): a value of another
        kind than the condition's is not of its column's type: a bad record (TypeError),
        never a row silently dropped."""
        if self.op == "is null":
            return value is None
        if self.op == "is not null":
            return value is not None
        if value is None:
            return False  # SQL-like: NULL compares as unknown (in and not in too): dropped
        if strict and value_kind(value) != self.kind:
            raise TypeError(
                f"filter {self.text()}: column {self.column!r} holds {value!r}, which is not "
                f"{self.kind}"
            )
        if self.op == "in":
            return value in self.value
        if self.op == "not in":
            return value not in self.value
        try:
            return _COMPARISONS[self.op](value, self.value)
        except TypeError:
            raise TypeError(
                f"filter {self.text()}: cannot compare the value {value!r} of column "
                f"{self.column!r} with {self.value!r}"
            ) from None

    def text(self) -> str:
        if self.op in NULL_TESTS:
            return f"{self.column} {self.op}"
        return f"{self.column} {self.op} {json.dumps(self.value, ensure_ascii=False)}"

    def check_fits(self, column_type: str) -> None:
        """Refuse a value whose kind does not fit the column's type (before any row)."""
        if self.op in NULL_TESTS:
            return
        if column_type == "json":
            if self.op in ORDERINGS:
                raise TransformError(
                    f"filter {self.text()!r}: column {self.column!r} holds JSON, which cannot "
                    "be ordered; use ==, !=, in, is null"
                )
            return
        expected = KIND_OF_TYPE.get(column_type, "text")
        values = self.value if self.op in MEMBERSHIP else [self.value]
        kinds = {value_kind(value) for value in values}
        if kinds != {expected}:
            hint = {
                "number": "compare it with a number, unquoted",
                "text": "compare it with quoted text; to compare numbers, declare the "
                "column's type in the source (csv: column_types)",
                "boolean": "compare it with true or false",
            }[expected]
            raise TransformError(
                f"filter {self.text()!r}: column {self.column!r} is {column_type} and "
                f"{self.value!r} is {' and '.join(sorted(kinds))}: {hint}"
            )
        if expected == "boolean" and self.op in ORDERINGS:
            raise TransformError(
                f"filter {self.text()!r}: column {self.column!r} is boolean: use == or !="
            )
        if column_type in ("date", "timestamp"):
            bad = [v for v in values if not _DATE_PREFIX.match(v)]
            if bad:
                raise TransformError(
                    f"filter {self.text()!r}: column {self.column!r} is {column_type}: "
                    f"compare it with an ISO 8601 date such as '2024-05-01', not {bad[0]!r}"
                )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a value a filter can compare with")


def _literal(raw: str, text: str) -> Any:
    """A JSON or Python literal (42, 1.5, "x", 'x', true, null, ['a', 'b']). Anything else
    (a bare word, ``10 and amount <= 20``) is refused rather than read as text.
    ast.literal_eval only builds literals: it never runs code."""
    text = text.strip()
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise TransformError(
            f"filter {raw!r}: {text!r} is not a value; {ALLOWED}"
        ) from None


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int)  # bool is an int


def _check_value(raw: Any, column: str, op: str, value: Any) -> None:
    """Everything about a condition's value that is wrong whatever the column."""
    where = f"filter {raw!r}"
    if op in NULL_TESTS:
        if value is not None:
            raise TransformError(f"{where}: {op} takes no value")
        return
    if value is None:
        raise TransformError(f"{where}: compare with a value, or use 'is null'")
    if op in MEMBERSHIP:
        if not isinstance(value, list):
            raise TransformError(f"{where}: {op} needs a list value, e.g. ['GB', 'FR']")
        if not value:
            raise TransformError(f"{where}: {op} needs a list of at least one value")
        if not all(_is_scalar(item) for item in value):
            raise TransformError(
                f"{where}: the list may hold numbers, text or true/false, not null or lists"
            )
        kinds = {value_kind(item) for item in value}
        if len(kinds) > 1:
            raise TransformError(f"{where}: the list mixes {' and '.join(sorted(kinds))}")
        return
    if not _is_scalar(value):
        raise TransformError(
            f"{where}: {value!r} is not a value a filter can compare with; {ALLOWED}"
        )
    if op in ORDERINGS:
        if isinstance(value, bool):
            raise TransformError(f"{where}: true/false cannot be ordered: use == or !=")
        if isinstance(value, str) and _NUMBER_TEXT.match(value):
            raise TransformError(
                f"{where}: {value!r} is text, and text compares character by character "
                f"('9' > '10'); to compare numbers write the number unquoted: "
                f"{column} {op} {value.strip()}"
            )


def parse_condition(raw: Any) -> Condition:
    if isinstance(raw, dict):
        unknown = set(raw) - {"column", "op", "value"}
        if unknown or "column" not in raw or "op" not in raw:
            raise TransformError(f"filter condition {raw!r}: expected {{column, op, value}}")
        column, op, value = str(raw["column"]), str(raw["op"]).lower(), raw.get("value")
    elif isinstance(raw, str):
        match = _CONDITION.match(raw)
        if not match:
            raise TransformError(
                f'filter condition {raw!r}: expected COLUMN OP VALUE, e.g. "amount > 10"; '
                f"{ALLOWED}"
            )
        column = match["column"]
        op = " ".join(match["op"].lower().split())
        value = _literal(raw, match["value"]) if match["value"] else None
        if op in NULL_TESTS and match["value"]:
            raise TransformError(f"filter {raw!r}: {op} takes no value")
    else:
        raise TransformError(f"filter condition {raw!r} must be a string or a mapping")
    if op not in _COMPARISONS and op not in MEMBERSHIP | NULL_TESTS:
        raise TransformError(f"filter condition on {column!r}: unknown operator {op!r}")
    _check_value(raw, column, op, value)
    return Condition(column, op, value)


def _names(value: Any, step: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TransformError(f"transform.{step} must be a list of column names")
    return value


def _mapping(value: Any, step: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise TransformError(f"transform.{step} must be a mapping of column names")
    return value


@dataclass(frozen=True)
class Transform:
    conditions: tuple[Condition, ...] = ()
    select: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    cast: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: dict[str, Any] | None) -> Transform | None:
        """Validate a transform's shape; None when there is nothing to do."""
        if not spec:
            return None
        if not isinstance(spec, dict):
            raise TransformError("transform must be a mapping")
        unknown = set(spec) - set(STEPS)
        if unknown:
            raise TransformError(
                f"unknown transform step(s) {', '.join(sorted(unknown))}; known: {', '.join(STEPS)}"
            )
        if "select" in spec and "exclude" in spec:
            raise TransformError("transform: use select or exclude, not both")
        filters = spec.get("filter", [])
        if not isinstance(filters, list):
            filters = [filters]
        casts = _mapping(spec.get("cast", {}), "cast")
        for column, kind in casts.items():
            if kind not in COLUMN_TYPES:
                raise TransformError(
                    f"transform.cast.{column}: unknown type {kind!r}; "
                    f"known: {', '.join(sorted(COLUMN_TYPES))}"
                )
        renames = {k: str(v) for k, v in _mapping(spec.get("rename", {}), "rename").items()}
        return cls(
            conditions=tuple(parse_condition(raw) for raw in filters),
            select=tuple(_names(spec["select"], "select")) if "select" in spec else None,
            exclude=tuple(_names(spec.get("exclude", []), "exclude")),
            rename=tuple(renames.items()),
            cast=tuple(casts.items()),
            add=tuple(_mapping(spec.get("add", {}), "add").items()),
        )

    def plan(self, columns: list[Column]) -> TransformPlan:
        """Fit the transform to a stream's columns; names every column it cannot find."""
        names = [column.name for column in columns]

        def need(column: str, step: str, available: list[str]) -> None:
            if column not in available:
                raise TransformError(
                    f"transform.{step} names column {column!r}, which the stream does not "
                    f"have (columns: {', '.join(available)})"
                )

        types = {column.name: column.type for column in columns}
        for condition in self.conditions:
            need(condition.column, "filter", names)
            condition.check_fits(types[condition.column])
        kept = list(names)
        if self.select is not None:
            for column in self.select:
                need(column, "select", names)
            kept = list(self.select)
        for column in self.exclude:
            need(column, "exclude", names)
        kept = [name for name in kept if name not in self.exclude]
        renames = dict(self.rename)
        for column in renames:
            need(column, "rename", kept)
        output = [Column(renames.get(name, name), types[name]) for name in kept]
        output_names = [column.name for column in output]
        casters: list[Callable[[Any], Any] | None] = [None] * len(output)
        for column, kind in self.cast:
            need(column, "cast", output_names)
            index = output_names.index(column)
            output[index] = Column(column, kind)
            casters[index] = CASTS[kind]
        for column, _ in self.add:
            if column in output_names:
                raise TransformError(f"transform.add: column {column!r} exists already")
        output += [Column(name, json_type_of(value) or "string") for name, value in self.add]
        return TransformPlan(
            output_columns=output,
            conditions=tuple(
                (names.index(c.column), c, types[c.column] != "json") for c in self.conditions
            ),
            picks=tuple(names.index(name) for name in kept),
            casters=tuple(casters),
            constants=tuple(value for _, value in self.add),
        )


@dataclass(frozen=True)
class TransformPlan:
    output_columns: list[Column]
    conditions: tuple[tuple[int, Condition, bool], ...]  # column index, condition, strict
    picks: tuple[int, ...]
    casters: tuple[Callable[[Any], Any] | None, ...]
    constants: tuple[Any, ...]

    def apply_row(self, row: list[Any]) -> list[Any] | None:
        """The transformed row, or None when a filter drops it. Cast errors raise ValueError."""
        for index, condition, strict in self.conditions:
            if not condition.test(row[index], strict):
                return None
        out = [row[i] for i in self.picks]
        for index, caster in enumerate(self.casters):
            if caster is not None and out[index] is not None:
                out[index] = caster(out[index])
        out.extend(self.constants)
        return out


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "t", "yes", "y", "1"):
        return True
    if text in ("false", "f", "no", "n", "0"):
        return False
    raise ValueError(f"cannot cast {value!r} to boolean")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"cannot cast {value!r} to integer without losing digits")
        return int(value)
    return int(str(value).strip())


def _to_number(value: Any) -> float:
    """A float, or a ValueError when one cannot hold the value exactly (1e400, 2**60+1)."""
    if isinstance(value, str):
        return parse_number(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and float(value) != value:
        raise ValueError(f"cannot cast {value!r} to number without losing digits")
    return float(value)


def _to_decimal(value: Any) -> str:
    if isinstance(value, str):
        return parse_decimal(value.strip())
    if isinstance(value, bool):
        raise ValueError(f"cannot cast {value!r} to decimal")
    return wire_value(value, "decimal")


def _to_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


CASTS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_int,
    "number": _to_number,
    "decimal": _to_decimal,
    "boolean": _to_bool,
    "string": _to_text,
    "date": lambda value: str(value)[:10],
    "timestamp": _to_text,
    "json": lambda value: json.loads(value) if isinstance(value, str) else value,
}
