"""CSV files: one file or a glob, typed by declaration or by inference from a sample.

The hot path reads ``max_records`` rows at a time and converts each column of the chunk at
once (see connectors.sdk.values); a row is looked at alone only when its chunk holds a
problem (a wrong number of fields or a value that does not fit its column's type).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from typing import IO, Any

from connectors.extractors.files import BytesRead, check_readable, matching_files
from connectors.sdk import (
    Column,
    ConfigError,
    ConnectorError,
    Extractor,
    ReadProgress,
    RecordStream,
)
from connectors.sdk.values import RowConverter, infer_text_type

# Fields may be long (embedded documents): allow up to 64 MiB, the protocol's record limit.
csv.field_size_limit(64 * 1024 * 1024)


class CsvFile:
    """One open CSV file and where its reader is."""

    def __init__(self, path: str, config: dict[str, Any]) -> None:
        self.path = path
        try:
            self.handle: IO[str] = open(path, newline="", encoding=config["encoding"])  # noqa: SIM115
        except OSError as exc:
            raise ConnectorError(f"cannot open {path}: {exc.strerror}") from None
        self.reader = csv.reader(
            self.handle,
            delimiter=config["delimiter"],
            quotechar=config["quotechar"],
            strict=True,
        )
        self.records_read = 0
        self.line_before_chunk = 0
        self.records_before_chunk = 0

    @property
    def line(self) -> int:
        return self.reader.line_num

    def next_row(self) -> list[str] | None:
        try:
            return next(self.reader, None)
        except csv.Error as exc:
            raise ConnectorError(f"malformed CSV: {exc}", self.position()) from None
        except UnicodeDecodeError as exc:
            raise ConnectorError(f"not {self.handle.encoding} text: {exc.reason}",
                                 self.position()) from None

    def chunk(self, size: int) -> list[list[str]]:
        self.line_before_chunk = self.line
        self.records_before_chunk = self.records_read
        try:
            rows = list(itertools.islice(self.reader, size))
        except csv.Error as exc:
            raise ConnectorError(f"malformed CSV: {exc}", self.position()) from None
        except UnicodeDecodeError as exc:
            raise ConnectorError(f"not {self.handle.encoding} text: {exc.reason}",
                                 self.position()) from None
        self.records_read += len(rows)
        return rows

    def position(self, line: int | None = None) -> dict[str, Any]:
        return {"file": self.path, "line": line if line is not None else self.line}

    def close(self) -> None:
        self.handle.close()


def record_lines(path: str, config: dict[str, Any], header: bool) -> Iterator[int]:
    """The first line of every record of a file, by reading it again: only used to name
    the exact line of a bad record when fields with newlines make it impossible to count."""
    with open(path, newline="", encoding=config["encoding"]) as handle:
        reader = csv.reader(handle, delimiter=config["delimiter"], quotechar=config["quotechar"])
        if header:
            next(reader, None)
        start = reader.line_num + 1
        for _ in reader:
            yield start
            start = reader.line_num + 1


class CsvExtractor(Extractor):
    stream_name = "csv"

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        if not config["header"] and not config.get("column_names"):
            raise ConfigError("column_names is required when header is false")
        self.current: CsvFile | None = None
        self.bytes_read: BytesRead | None = None

    def check(self) -> None:
        for path in check_readable(self.config["path"]):
            csv_file = CsvFile(path, self.config)
            try:
                if self.config["header"]:
                    self._column_names(csv_file)
            finally:
                csv_file.close()

    def position(self) -> dict[str, Any] | None:
        return self.current.position() if self.current else None

    def progress(self) -> ReadProgress | None:
        return self.bytes_read.progress() if self.bytes_read else None

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    # --- reading ---------------------------------------------------------------------------
    def read(self, out: RecordStream) -> None:
        converter: RowConverter | None = None
        paths = matching_files(self.config["path"])
        self.bytes_read = BytesRead(paths)
        for path in paths:
            self.close()
            self.current = CsvFile(path, self.config)
            self.bytes_read.open_file(path, self.current.handle)
            names = self._column_names(self.current)
            first = max(self.context.batch.max_records, self.config["sample_rows"])
            sample = self.current.chunk(first)
            if converter is None or [c.name for c in converter.columns] != names:
                converter = self._schema_for(names, sample, out, converter)
            self._read_file(self.current, names, sample, converter, out)
        self.close()

    def _column_names(self, csv_file: CsvFile) -> list[str]:
        given = self.config.get("column_names")
        if self.config["header"]:
            header = csv_file.next_row()
            if not header:
                # Like a glob that matches nothing: a file truncated to nothing is no source.
                raise ConnectorError(
                    f"{csv_file.path} is empty: no header line (header: true); a file "
                    "without records still needs its header"
                )
            names = given or header
        else:
            names = given
        if len(set(names)) != len(names):
            raise ConfigError(f"{csv_file.path}: duplicate column names in {names}")
        return list(names)

    def _schema_for(
        self,
        names: list[str],
        sample: list[list[str]],
        out: RecordStream,
        previous: RowConverter | None,
    ) -> RowConverter:
        """Columns of the first file, or the previous columns plus a later file's new ones."""
        known = {c.name: c for c in previous.columns} if previous else {}
        if previous is not None and set(names) < set(known):
            raise ConnectorError(
                f"{self.current.path if self.current else ''}: columns "
                f"{sorted(set(known) - set(names))} are missing from this file"
            )
        declared = self.config.get("column_types") or {}
        nulls = self.config["null_values"]
        extra = self._sample_rows(sample)
        columns: list[Column] = list(previous.columns) if previous else []
        for index, name in enumerate(names):
            if name in known:
                continue
            if name in declared:
                kind = declared[name]
            elif self.config["infer_types"]:
                kind = infer_text_type((row[index] for row in extra if len(row) > index), nulls)
            else:
                kind = "string"
            columns.append(Column(name, kind))
        out.declare(columns)
        return RowConverter(columns, nulls)

    def _sample_rows(self, first_chunk: list[list[str]]) -> list[list[str]]:
        return first_chunk[: self.config["sample_rows"]]

    def _read_file(
        self,
        csv_file: CsvFile,
        names: list[str],
        chunk: list[list[str]],
        converter: RowConverter,
        out: RecordStream,
    ) -> None:
        order = [c.name for c in converter.columns]
        # A later file may hold the columns in another order, or fewer than evolved: map it.
        mapping = None if order == names else [names.index(n) if n in names else -1 for n in order]
        width = len(names)
        size = self.context.batch.max_records
        while chunk:
            # Indexes into the chunk as read, kept only when rows are dropped (for lines).
            kept: list[int] | None = None
            if set(map(len, chunk)) != {width}:
                chunk, kept = self._drop_bad_widths(csv_file, chunk, width, out)
            if mapping is not None:
                chunk = [[row[i] if i >= 0 else "" for i in mapping] for row in chunk]
            rows, bad = converter.convert(chunk)
            for value in bad:
                index = kept[value.row] if kept is not None else value.row
                out.reject(value.reason, self._position_of(csv_file, index), raw=chunk[value.row])
            out.write_rows(rows, typed=True)  # the converter checked every value
            chunk = csv_file.chunk(size)

    def _drop_bad_widths(
        self, csv_file: CsvFile, chunk: list[list[str]], width: int, out: RecordStream
    ) -> tuple[list[list[str]], list[int]]:
        good: list[list[str]] = []
        kept: list[int] = []
        for index, row in enumerate(chunk):
            if len(row) == width:
                good.append(row)
                kept.append(index)
            elif row:  # a blank line is no record
                out.reject(
                    f"expected {width} fields, found {len(row)}",
                    self._position_of(csv_file, index),
                    raw=row,
                )
        return good, kept

    def _position_of(self, csv_file: CsvFile, index: int) -> dict[str, Any]:
        """File and first line of record ``index`` of the chunk just read."""
        chunk_size = csv_file.records_read - csv_file.records_before_chunk
        if csv_file.line - csv_file.line_before_chunk == chunk_size:
            line = csv_file.line_before_chunk + 1 + index  # one line per record: count
        else:
            # Fields with newlines (or blank lines) in this chunk: find the line by reading
            # the file again. Slow, but only for a bad record.
            record_number = csv_file.records_before_chunk + index
            lines = record_lines(csv_file.path, self.config, self.config["header"])
            line = next(itertools.islice(lines, record_number, None), csv_file.line)
        return {**csv_file.position(line), "record": csv_file.records_before_chunk + index + 1}
