"""Incremental reading at the cursor's edge.

Incremental reads are ``cursor >= saved``: the records that share the saved value are read
again, because records that arrived later with that same value must not be lost. To load each
record exactly once without a primary key, the state remembers *which* records at the saved
value were loaded: a short hash of each (``boundary``: hash -> how many such records), and a
sync skips those it meets again. A record changed without its cursor moving hashes
differently and is loaded again (a new version); identical records are counted, so a second
copy arriving later is loaded once.

State: ``{"cursor": <greatest value loaded>, "boundary": {<hash>: <count>, ...}}``. Over
``MAX_BOUNDARY_RECORDS`` records at one value the boundary is left out (the state would grow
with every record of that value): those records are read again by the next sync, as before;
the connector logs a warning with the fix (a finer cursor, or a primary key).

It also refuses a cursor held as text that does not sort as what it means (``12/31/2024``,
numbers of varying width): compared as text, newer records would never be read.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from connectors.sdk.errors import ConnectorError

log = logging.getLogger("connectors.extractor")

CURSOR_KEY = "cursor"
BOUNDARY_KEY = "boundary"
MAX_BOUNDARY_RECORDS = 10_000
# Text cursors: the first values of a run are all checked, then each batch's greatest.
TEXT_ORDER_SAMPLE = 1000
HASH_BYTES = 10  # 80 bits: no collision among a few thousand records at one cursor value


def record_hash(names: Sequence[str], row: Sequence[Any]) -> str:
    """The record's identity: its non-null values by column name (so that a column added
    later, null in old records, does not change the hash of those)."""
    record = {name: value for name, value in zip(names, row, strict=False) if value is not None}
    body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=_hashable)
    return hashlib.blake2b(body, digest_size=HASH_BYTES).hexdigest()


def _hashable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)  # Decimal and other exact types: their exact text


class CursorTracker:
    """Filters a run's rows by the saved state and follows the state to save next.

    ``filter_rows``: drop rows below the saved cursor here (sources that do not filter).
    ``check_order``: refuse text cursors that do not sort as their values.
    """

    def __init__(
        self,
        field: str,
        saved: dict[str, Any] | None,
        start: Any,
        filter_rows: bool,
        check_order: bool,
    ) -> None:
        self.field = field
        self.start = start
        self.filter_rows = filter_rows and start is not None
        self.check_order = check_order
        self.max: Any = start
        saved_boundary = (saved or {}).get(BOUNDARY_KEY) if start is not None else None
        self.boundary: Counter[str] = Counter(_valid_boundary(saved_boundary))
        # Records at the saved value that an earlier sync loaded: skipped once each.
        self.already_loaded: Counter[str] = Counter(self.boundary)
        self.overflowed = False
        self.skipped = 0
        self._checked = 0
        self._text_shape: str | None = None

    # --- rows ---------------------------------------------------------------------------
    def track(self, rows: list[Any], index: int, names: Sequence[str]) -> list[Any]:
        """The rows still to load; updates the greatest cursor and its boundary."""
        start = self.start
        try:
            if self.filter_rows:
                rows = [row for row in rows if row[index] is not None and row[index] >= start]
            if self.already_loaded:
                rows = self._drop_already_loaded(rows, index, names)
            present = [row[index] for row in rows if row[index] is not None]
            if not present:
                return rows
            batch_max = max(present)
            if self.check_order and isinstance(batch_max, str):
                self._check_text_order(present, batch_max)
            if self.max is None or batch_max > self.max:
                self.max = batch_max
                self.boundary = Counter()
                self.overflowed = False
            if batch_max == self.max:
                self._remember(rows, index, names, batch_max)
        except TypeError as exc:
            raise ConnectorError(
                f"cursor field {self.field!r}: values cannot be compared "
                f"with the saved cursor {start!r} ({exc})"
            ) from None
        return rows

    def _drop_already_loaded(self, rows: list[Any], index: int, names: Sequence[str]) -> list[Any]:
        start = self.start
        at_start = [i for i, row in enumerate(rows) if row[index] == start]
        if not at_start:
            return rows
        dropped = set()
        for i in at_start:
            digest = record_hash(names, rows[i])
            if self.already_loaded.get(digest, 0) > 0:
                self.already_loaded[digest] -= 1
                if not self.already_loaded[digest]:
                    del self.already_loaded[digest]
                dropped.add(i)
        if not dropped:
            return rows
        self.skipped += len(dropped)
        return [row for i, row in enumerate(rows) if i not in dropped]

    def _remember(self, rows: list[Any], index: int, names: Sequence[str], value: Any) -> None:
        if self.overflowed:
            return
        at_max = [row for row in rows if row[index] == value]
        if sum(self.boundary.values()) + len(at_max) > MAX_BOUNDARY_RECORDS:
            self.overflowed = True
            self.boundary = Counter()
            log.warning(
                "more than %d records share the cursor value %r of %r: the next sync reads "
                "them again (appended twice without a primary key); use a finer cursor field "
                "or a primary key", MAX_BOUNDARY_RECORDS, value, self.field,
            )
            return
        self.boundary.update(record_hash(names, row) for row in at_max)

    def state(self, base: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.max is None:
            return base
        state = {**(base or {}), CURSOR_KEY: self.max}
        state.pop(BOUNDARY_KEY, None)
        if self.boundary and not self.overflowed:
            state[BOUNDARY_KEY] = dict(sorted(self.boundary.items()))
        return state

    # --- text cursors -------------------------------------------------------------------
    def _check_text_order(self, present: list[Any], batch_max: str) -> None:
        if self._checked < TEXT_ORDER_SAMPLE:
            sample = present[: TEXT_ORDER_SAMPLE - self._checked]
            self._checked += len(sample)
        else:
            sample = [batch_max]
        for value in sample:
            if isinstance(value, str):
                self._check_text_value(value)

    def _check_text_value(self, value: str) -> None:
        problem = text_order_problem(value)
        if problem is None and _NUMBER.fullmatch(value):
            shape = f"number of {len(value.lstrip('+-').split('.')[0])} digits"
            if self._text_shape is None:
                self._text_shape = shape
            elif shape != self._text_shape:
                problem = (
                    "numbers held as text, of varying width (as text '10' sorts before '9')",
                    f"declare the column's type: --config column_types.{self.field}=integer "
                    "(or number)",
                )
        if problem is not None:
            what, fix = problem
            raise ConnectorError(
                f"cursor field {self.field!r} holds {what}, e.g. {value!r}: compared as text, "
                f"newer records would never be synced; {fix}"
            )


_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_YEAR_LAST = re.compile(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(?:\D.*)?", re.DOTALL)
_UNPADDED_ISO = re.compile(r"\d{4}[-/](?:\d(?!\d)|\d{2}[-/]\d(?!\d)).*", re.DOTALL)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
# "31 Dec 2024", "Dec 31, 2024", "Tue, 31 Dec 2024 10:00:00 GMT" (HTTP dates)
_MONTH_NAME = re.compile(
    rf"(?:[a-z]{{3}},?\s+)?(?:\d{{1,2}}\s+{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}).*",
    re.IGNORECASE | re.DOTALL,
)
_DATE_FIX = (
    "write them as ISO 8601 (2024-12-31, 2024-12-31T23:59:00), which sorts as it means, "
    "or pick another cursor field"
)


def text_order_problem(value: str) -> tuple[str, str] | None:
    """What is wrong with a text cursor value, and the fix; None when text order is fine."""
    if _YEAR_LAST.fullmatch(value):
        return "dates with the year last", _DATE_FIX
    if _UNPADDED_ISO.fullmatch(value):
        return "dates without zero-padded months or days", _DATE_FIX
    if _MONTH_NAME.fullmatch(value):
        return "dates with month names", _DATE_FIX
    return None


def _valid_boundary(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {str(key): count for key, count in raw.items() if isinstance(count, int) and count > 0}
