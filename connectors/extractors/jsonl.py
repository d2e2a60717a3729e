"""JSON Lines files and JSON array files: one file or a glob; nested values kept as JSON.

Records are dicts handed to the SDK, which infers the column types from a sample and adds
keys that appear later as new columns (schema evolution); objects and arrays inside a record
travel as ``json`` values. A JSON array file is streamed element by element with
``json.JSONDecoder.raw_decode`` over a buffer that holds about one read chunk (plus the
element being read): a file of gigabytes is never loaded whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import orjson

from connectors.extractors.files import BytesRead, check_readable, matching_files
from connectors.sdk import ConnectorError, Extractor, ReadProgress, RecordStream
from connectors.sdk.values import big_number_in, exact_json_decoder, loads_exact

CHUNK_CHARACTERS = 1 << 20  # read a JSON array 1 Mi characters at a time
_WHITESPACE = " \t\n\r"
_NUMBER_CHARACTERS = "0123456789+-.eE"


@dataclass
class Element:
    """One element of a JSON array, with the line where it starts (1-based)."""

    value: Any
    line: int
    text: str


class JsonArrayReader:
    """Streams the elements of a top-level JSON array from a text file.

    ``raw_decode`` cannot tell an element cut off at the end of the buffer from a malformed
    one: on failure the reader reads more and tries again, and only a failure with the whole
    rest of the file in the buffer is an error.
    """

    def __init__(self, handle: IO[str], path: str, chunk: int = CHUNK_CHARACTERS) -> None:
        self.handle = handle
        self.path = path
        self.chunk = chunk
        self.buffer = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # line of self.pos
        self.decoder = exact_json_decoder()

    def elements(self) -> Iterator[Element]:
        if self._next_significant() != "[":
            raise ConnectorError("not a JSON array (expected '[')", self.position())
        self.pos += 1
        if self._next_significant() == "]":
            self._expect_end()
            return
        while True:
            self._next_significant()
            yield self._decode_element()
            separator = self._next_significant()
            if separator == "]":
                self._expect_end()
                return
            if separator != ",":
                found = repr(separator) if separator else "the end of the file"
                raise ConnectorError(f"expected ',' or ']' after an element, found {found}",
                                     self.position())
            self.pos += 1

    def position(self) -> dict[str, Any]:
        return {"file": self.path, "line": self.line}

    def _decode_element(self) -> Element:
        line = self.line
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise ConnectorError(f"invalid JSON: {exc.msg}", self.position()) from None
                self._read_more(grow=True)
                continue
            except ValueError as exc:  # NaN or Infinity: not JSON
                raise ConnectorError(f"invalid JSON: {exc}", self.position()) from None
            if not self.eof and self._may_go_on(value, end):
                self._read_more(grow=True)
                continue
            text = self.buffer[self.pos:end]
            self._advance(end)
            return Element(value, line, text)

    def _may_go_on(self, value: Any, end: int) -> bool:
        """A number cut by the end of the buffer ("12" of "123", "-0" of "-0.5") parses
        too: it is complete only once a character that cannot be part of it follows."""
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return False
        return not self.buffer[end:].lstrip(_NUMBER_CHARACTERS)

    def _next_significant(self) -> str:
        """The next non-whitespace character (not consumed), '' at the end of the file."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in _WHITESPACE:
                if self.buffer[self.pos] == "\n":
                    self.line += 1
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if self.eof:
                return ""
            self._read_more(grow=False)

    def _expect_end(self) -> None:
        self.pos += 1
        if self._next_significant():
            raise ConnectorError("unexpected data after the JSON array", self.position())

    def _advance(self, end: int) -> None:
        self.line += self.buffer.count("\n", self.pos, end)
        self.pos = end

    def _read_more(self, grow: bool) -> None:
        """Drop what was consumed and append the next chunk (a bigger one while an element
        does not fit, so that a huge element costs a few re-parses, not one per chunk)."""
        self.buffer = self.buffer[self.pos:]
        self.pos = 0
        size = max(self.chunk, len(self.buffer)) if grow else self.chunk
        text = self.handle.read(size)
        if not text:
            self.eof = True
        self.buffer += text


class JsonlExtractor(Extractor):
    stream_name = "jsonl"

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.path: str | None = None
        self.line = 0
        self.handle: IO[str] | None = None
        self.bytes_read: BytesRead | None = None

    def check(self) -> None:
        for path in check_readable(self.config["path"]):
            self._open(path).close()

    def position(self) -> dict[str, Any] | None:
        return {"file": self.path, "line": self.line} if self.path else None

    def progress(self) -> ReadProgress | None:
        return self.bytes_read.progress() if self.bytes_read else None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def read(self, out: RecordStream) -> None:
        paths = matching_files(self.config["path"])
        self.bytes_read = BytesRead(paths)
        for path in paths:
            self.close()
            self.path, self.line = path, 0
            self.handle = self._open(path)
            self.bytes_read.open_file(path, self.handle)
            if self._format_of(path) == "json_array":
                self._read_array(self.handle, path, out)
            else:
                self._read_lines(self.handle, out)
        self.close()

    def _format_of(self, path: str) -> str:
        chosen = self.config["format"]
        if chosen != "auto":
            return chosen
        return "json_array" if path.lower().endswith(".json") else "jsonl"

    def _open(self, path: str) -> IO[str]:
        try:
            return open(path, encoding=self.config["encoding"], newline="")
        except OSError as exc:
            raise ConnectorError(f"cannot open {path}: {exc.strerror}") from None

    def _read_lines(self, handle: IO[str], out: RecordStream) -> None:
        try:
            for self.line, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                try:
                    record, exactly = loads_exact(text)
                except orjson.JSONDecodeError as exc:
                    out.reject(f"invalid JSON: {exc}", self.position(), raw=text.rstrip("\r\n"))
                    continue
                if exactly and self._nested_big_number(record, out, text):
                    continue
                self._write(record, out, text)
        except UnicodeDecodeError as exc:
            raise ConnectorError(f"not {self.config['encoding']} text: {exc.reason}",
                                 self.position()) from None

    def _read_array(self, handle: IO[str], path: str, out: RecordStream) -> None:
        reader = JsonArrayReader(handle, path)
        try:
            for element in reader.elements():
                self.line = element.line
                if self._nested_big_number(element.value, out, element.text):
                    continue
                self._write(element.value, out, element.text)
        except UnicodeDecodeError as exc:
            raise ConnectorError(f"not {self.config['encoding']} text: {exc.reason}",
                                 reader.position()) from None

    def _nested_big_number(self, record: Any, out: RecordStream, text: str) -> bool:
        """A number that JSON values on the protocol cannot carry exactly, inside a nested
        value, is a bad record (a top-level one makes its column decimal)."""
        if not isinstance(record, dict):
            return False
        for name, value in record.items():
            if isinstance(value, dict | list):
                found = big_number_in(value)
                if found is not None:
                    out.reject(
                        f"field {name!r}: the number {found} inside a JSON value cannot be "
                        "kept exactly (nested numbers travel as 64-bit floats and integers)",
                        self.position(), raw=text.rstrip("\r\n"),
                    )
                    return True
        return False

    def _write(self, record: Any, out: RecordStream, text: str) -> None:
        if isinstance(record, dict):
            out.write_record(record)
        else:
            kind = type(record).__name__
            out.reject(f"a record must be a JSON object, not {kind}", self.position(), raw=text)
