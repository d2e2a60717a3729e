"""The T: a small, safe mapping applied to records in the stream.

A connection may declare::

    transform:
      filter:                       # keep rows where every condition holds
        - "country == 'GB'"         # text form: COLUMN OP VALUE, VALUE a JSON literal
        - {column: amount, op: ">", value: 10}
        - "email is not null"
      select: [id, email, amount]   # or exclude: [internal_notes]
      rename: {amount: amount_gbp}
      cast: {amount_gbp: number}    # integer, number, boolean, string, date, timestamp, json
      add: {source_system: crm}     # constant columns

Steps run in that order (filter sees the source's column names). Conditions are parsed into
(column, operator, value) triples and evaluated by plain comparisons: nothing is ever passed
to eval. A transform that names a column the stream does not have is refused with an error
naming it. etlctl validates the shape when a connection is saved; the column check happens
when the extractor knows its schema.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.sdk.protocol import COLUMN_TYPES, Column
from connectors.sdk.values import json_type_of

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


class TransformError(ValueError):
    """The transform is malformed or does not fit the stream's columns."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: Any = None

    def test(self, value: Any) -> bool:
        if self.op == "is null":
            return value is None
        if self.op == "is not null":
            return value is not None
        if self.op == "in":
            return value in self.value
        if self.op == "not in":
            return value not in self.value
        if value is None:
            return False  # SQL-like: NULL compares as unknown, the row is dropped
        try:
            return _COMPARISONS[self.op](value, self.value)
        except TypeError:
            return False


def _literal(text: str) -> Any:
    """A JSON or Python literal (42, 1.5, "x", 'x', true, null, ['a', 'b']); a bare word is
    a string. ast.literal_eval only builds literals: it never runs code."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


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
                f'filter condition {raw!r}: expected COLUMN OP VALUE, e.g. "amount > 10"'
            )
        column = match["column"]
        op = " ".join(match["op"].lower().split())
        value = _literal(match["value"]) if match["value"] else None
    else:
        raise TransformError(f"filter condition {raw!r} must be a string or a mapping")
    if op not in _COMPARISONS and op not in ("in", "not in", "is null", "is not null"):
        raise TransformError(f"filter condition on {column!r}: unknown operator {op!r}")
    if op in ("in", "not in") and not isinstance(value, list):
        raise TransformError(f"filter condition on {column!r}: {op} needs a list value")
    if op in _COMPARISONS and value is None:
        raise TransformError(
            f"filter condition on {column!r}: compare with a value, or use 'is null'"
        )
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

        for condition in self.conditions:
            need(condition.column, "filter", names)
        kept = list(names)
        if self.select is not None:
            for column in self.select:
                need(column, "select", names)
            kept = list(self.select)
        for column in self.exclude:
            need(column, "exclude", names)
        kept = [name for name in kept if name not in self.exclude]
        types = {column.name: column.type for column in columns}
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
            conditions=tuple((names.index(c.column), c) for c in self.conditions),
            picks=tuple(names.index(name) for name in kept),
            casters=tuple(casters),
            constants=tuple(value for _, value in self.add),
        )


@dataclass(frozen=True)
class TransformPlan:
    output_columns: list[Column]
    conditions: tuple[tuple[int, Condition], ...]
    picks: tuple[int, ...]
    casters: tuple[Callable[[Any], Any] | None, ...]
    constants: tuple[Any, ...]

    def apply_row(self, row: list[Any]) -> list[Any] | None:
        """The transformed row, or None when a filter drops it. Cast errors raise ValueError."""
        for index, condition in self.conditions:
            if not condition.test(row[index]):
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


def _to_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


CASTS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_int,
    "number": lambda value: float(value),
    "boolean": _to_bool,
    "string": _to_text,
    "date": lambda value: str(value)[:10],
    "timestamp": _to_text,
    "json": lambda value: json.loads(value) if isinstance(value, str) else value,
}
