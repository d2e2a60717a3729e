"""Helpers shared by file extractors: globs and readable checks."""

from __future__ import annotations

import contextlib
import glob
import os
from typing import IO, Any

from connectors.sdk.errors import ConfigError, ConnectorError
from connectors.sdk.extractor import ReadProgress

GLOB_CHARACTERS = frozenset("*?[")


def matching_files(pattern: str) -> list[str]:
    """The file itself, or the files a glob matches, in sorted order (stable across runs)."""
    if not GLOB_CHARACTERS & set(pattern):
        return [pattern]
    files = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
    if not files:
        raise ConnectorError(f"no file matches {pattern!r}")
    return files


def check_readable(pattern: str) -> list[str]:
    files = matching_files(pattern)
    for path in files:
        if not os.path.isfile(path):
            raise ConfigError(f"file not found: {path}")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"file not readable: {path}")
    return files


class BytesRead:
    """How far a read over files is: the sizes of the files done, plus the position in the
    open one (its binary buffer's, accurate to one read-ahead chunk), of all their sizes."""

    def __init__(self, paths: list[str]) -> None:
        self.sizes: dict[str, int] = {}
        for path in paths:
            with contextlib.suppress(OSError):
                self.sizes[path] = os.path.getsize(path)
        self.total = sum(self.sizes.values())
        self.before = 0  # bytes of the files read completely
        self.path: str | None = None
        self.handle: IO[Any] | None = None

    def open_file(self, path: str, handle: IO[Any]) -> None:
        if self.path is not None:
            self.before += self.sizes.get(self.path, 0)
        self.path, self.handle = path, handle

    def progress(self) -> ReadProgress | None:
        if not self.total:
            return None
        position = 0
        if self.handle is not None:
            if self.handle.closed:
                position = self.sizes.get(self.path or "", 0)
            else:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    position = getattr(self.handle, "buffer", self.handle).tell()
        return ReadProgress(done=min(self.before + position, self.total), total=self.total)
