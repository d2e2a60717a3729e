"""A JSON Lines file: one object per record.

full_refresh replaces the file atomically; incremental appends; dedup rewrites the file with
one record per primary key (the latest by cursor, else the last seen), merging through a
temporary SQLite index so that no file is held in memory.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from connectors.loaders.files import FileLoader, fsync_directory
from connectors.sdk import ConfigError
from connectors.sdk.wire import json_numbers


class JsonlLoader(FileLoader):
    target_name = "JSON"  # no NaN or infinities (Loader.non_finite): those are bad records

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.key = list(context.sync.primary_key)
        self.cursor_field = context.sync.cursor_field
        if context.sync.mode == "dedup" and not self.key:
            raise ConfigError("mode dedup needs a primary key")

    def encode(self, columns: list[str], rows: list[list[Any]]) -> bytes:
        dumps = orjson.dumps
        rows = json_numbers(self.column_types(), columns, rows)
        lines = [dumps(dict(zip(columns, row, strict=True))) for row in rows]
        lines.append(b"")
        return b"\n".join(lines)

    def finish_file(self) -> None:
        if self.context.sync.mode == "dedup":
            self._rewrite_deduplicated()
        super().finish_file()

    def _rewrite_deduplicated(self) -> None:
        """Working file := old target + new records, one line per key, first-seen order."""
        index_path = self.working.with_suffix(".index")
        index_path.unlink(missing_ok=True)
        index = sqlite3.connect(index_path)
        try:
            index.execute(
                "CREATE TABLE latest (key BLOB PRIMARY KEY, cursor, line BLOB, seen INTEGER)"
            )
            newer = (
                " WHERE latest.cursor IS NULL OR excluded.cursor >= latest.cursor"
                if self.cursor_field
                else ""
            )
            upsert = (
                "INSERT INTO latest VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "cursor = excluded.cursor, line = excluded.line" + newer
            )
            sources = [p for p in (self.target, self.working) if p.exists()]
            index.executemany(upsert, self._keyed_lines(sources))
            rewritten = self.working.with_suffix(".dedup")
            with open(rewritten, "wb") as out:
                for (line,) in index.execute("SELECT line FROM latest ORDER BY seen"):
                    out.write(line + b"\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(rewritten, self.working)
            fsync_directory(self.working.parent)
        finally:
            index.close()
            index_path.unlink(missing_ok=True)

    def _keyed_lines(self, paths: list[Path]) -> Iterator[tuple[bytes, Any, bytes, int]]:
        seen = 0
        for path in paths:
            with open(path, "rb") as lines:
                for raw in lines:
                    line = raw.rstrip(b"\n")
                    if not line:
                        continue
                    record = orjson.loads(line)
                    seen += 1
                    key = orjson.dumps([record.get(name) for name in self.key])
                    cursor = record.get(self.cursor_field) if self.cursor_field else None
                    if isinstance(cursor, dict | list):
                        cursor = orjson.dumps(cursor)
                    yield key, cursor, line, seen
