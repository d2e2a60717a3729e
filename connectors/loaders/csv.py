"""A CSV file with a header line. full_refresh replaces it atomically; incremental appends
(the existing header must match). Values: NULL is an empty field, booleans true/false, JSON
values as JSON text."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import orjson

from connectors.loaders.files import FileLoader
from connectors.sdk import Column, ConnectorError
from connectors.sdk.values import NON_FINITE
from connectors.sdk.wire import spelling_of


def _text(value: Any) -> Any:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if value.__class__ is float and not math.isfinite(value):
        return spelling_of(value)  # NaN, Infinity, -Infinity: what the csv extractor reads
    return value


class CsvLoader(FileLoader):
    modes = ("full_refresh", "incremental")
    non_finite = {kind: NON_FINITE for kind in ("number", "decimal")}  # text holds them

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.delimiter = config["delimiter"]
        self.columns: list[str] = []

    def write_header(self, names: list[str]) -> None:
        self.columns = list(names)
        existing = self._existing_header() if self.appends else None
        if existing is None:
            self._handle().write(self._encode_rows([names]))
        elif existing != names:
            raise ConnectorError(
                f"{self.target} has the columns {existing}, the source {names}: "
                "use full_refresh to rewrite it"
            )

    def finish_stream_empty(self) -> None:
        # An allowed empty full_refresh: the file keeps the columns it had (its header).
        existing = self._existing_header()
        if existing and not self.appends:
            handle = self._handle()
            handle.seek(0)
            handle.truncate()
            handle.write(self._encode_rows([existing]))

    def resume(self, columns: list[str]) -> None:
        self.columns = list(columns)

    def add_columns(self, columns: list[Column]) -> None:
        raise ConnectorError(
            f"the csv loader cannot add columns to a file it is writing "
            f"({', '.join(c.name for c in columns)}); run the sync again with full_refresh"
        )

    def encode(self, columns: list[str], rows: list[list[Any]]) -> bytes:
        if columns != self.columns:
            order = [columns.index(name) for name in self.columns]
            rows = [[row[i] for i in order] for row in rows]
        return self._encode_rows([[_text(value) for value in row] for row in rows])

    def _encode_rows(self, rows: list[list[Any]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n").writerows(rows)
        return buffer.getvalue().encode()

    def _existing_header(self) -> list[str] | None:
        if not self.target.exists() or self.target.stat().st_size == 0:
            return None
        with open(self.target, newline="", encoding="utf-8-sig") as existing:
            return next(csv.reader(existing, delimiter=self.delimiter), None)
