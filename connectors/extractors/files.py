"""Helpers shared by file extractors: globs and readable checks."""

from __future__ import annotations

import glob
import os

from connectors.sdk.errors import ConfigError, ConnectorError

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
