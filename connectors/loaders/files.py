"""What file loaders share: a working file, exactly-once by truncation, atomic replace.

A file has no transactions, so a small mark file beside the target (``.NAME.etlctl-load.json``)
records, after each fsync of the data, the run, the last committed message and the size of
the working file. A loader restarted in the same run truncates the working file to that size
and skips the messages the mark covers: nothing is lost, nothing is written twice.

* full_refresh (and dedup) write a temporary file beside the target, swapped in with
  ``os.replace`` at END: readers see the old file or the new one, never half of one;
* incremental appends to the target itself.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import IO, Any

import orjson

from connectors.sdk import CommittedState, ConfigError, ConnectorError, Loader, LoadMark


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLoader(Loader):
    """Subclasses encode batches (``encode``) and may override ``header``/``finish_file``."""

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.target = Path(config["path"]).absolute()
        self.appends = context.sync.mode == "incremental"
        self.mark_path = self.target.with_name(f".{self.target.name}.etlctl-load.json")
        self.working = (
            self.target
            if self.appends
            else self.target.with_name(f".{self.target.name}.etlctl-{context.run_id}.tmp")
        )
        self.handle: IO[bytes] | None = None
        self.resumed = False
        # The last checkpoint committed to this file, per stream: {stream: {state, run_id}}
        # (kept in the mark file across runs).
        self.states: dict[str, dict[str, Any]] = {}

    # --- check --------------------------------------------------------------------------
    def check(self) -> None:
        directory = self.target.parent
        if not directory.is_dir():
            raise ConfigError(f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise ConfigError(f"directory {directory} is not writable")
        if self.target.exists() and not os.access(self.target, os.W_OK):
            raise ConfigError(f"{self.target} is not writable")

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> LoadMark:
        self.check()
        mark = self._read_mark()
        if self._ours(mark) and isinstance(mark.get("states"), dict):
            self.states = dict(mark["states"])
        if mark and mark.get("run_id") == self.context.run_id:
            if mark.get("finished"):
                return LoadMark(mark["seq"], mark["records"])
            self.handle = open(self.working, "r+b")  # noqa: SIM115 - kept open for the run
            self.handle.truncate(mark["offset"])
            self.handle.seek(mark["offset"])
            self.resumed = True
            return LoadMark(mark["seq"], mark["records"])
        self._remove_stale_working_files()
        self.handle = open(self.working, "ab" if self.appends else "wb")  # noqa: SIM115
        if self.appends and self._ours(mark) and mark.get("offset"):
            # A run of this connection crashed after its last commit (or before its first):
            # what it appended beyond the last commit is covered by no saved state, and
            # will be read again.
            size = self.handle.seek(0, os.SEEK_END)
            if size > mark["offset"]:
                self.handle.truncate(mark["offset"])
        return LoadMark()

    def committed_state(self) -> CommittedState:
        mark = self._read_mark()
        if not self._ours(mark) or not isinstance(mark.get("states"), dict):
            return CommittedState({})
        return CommittedState(mark["states"])

    def _ours(self, mark: dict[str, Any] | None) -> bool:
        """The mark file was written by this connection (a version that kept its id)."""
        connection_id = self.context.connection_id
        return bool(mark and connection_id and mark.get("connection_id") == connection_id)

    def begin(self, schema: Any) -> None:
        if not self.resumed:
            self.write_header(schema.names)

    def write_header(self, names: list[str]) -> None:
        """Called once when a new working file starts (CSV writes its header here)."""

    def add_columns(self, columns: list[Any]) -> None:
        """JSON objects carry their keys: nothing to do (CSV overrides)."""

    def write_batch(self, columns: list[str], rows: list[list[Any]]) -> None:
        self._handle().write(self.encode(columns, rows))

    def encode(self, columns: list[str], rows: list[list[Any]]) -> bytes:
        raise NotImplementedError

    def commit(self, mark: LoadMark) -> None:
        handle = self._handle()
        handle.flush()
        os.fsync(handle.fileno())
        self._write_mark(mark, offset=handle.tell(), finished=False)

    def finish(self, mark: LoadMark) -> None:
        handle = self._handle()
        handle.flush()
        os.fsync(handle.fileno())
        size = handle.tell()
        handle.close()
        self.handle = None
        if not self.appends:
            self.finish_file()
        self._write_mark(mark, offset=size if self.appends else 0, finished=True)

    def finish_file(self) -> None:
        """Put the working file in place of the target (dedup rewrites it first)."""
        os.replace(self.working, self.target)
        fsync_directory(self.target.parent)

    def close(self, failed: bool) -> None:
        # The working file stays after a failure: a restart of this run continues it, and the
        # next run removes it. The target was not touched (full_refresh).
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    # --- helpers ------------------------------------------------------------------------
    def _handle(self) -> IO[bytes]:
        if self.handle is None:
            raise ConnectorError("the file loader is not started")
        return self.handle

    def _read_mark(self) -> dict[str, Any] | None:
        try:
            return orjson.loads(self.mark_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None

    def _write_mark(self, mark: LoadMark, offset: int, finished: bool) -> None:
        if self.keeps_state(mark):
            self.states[mark.stream] = {"state": mark.state, "run_id": self.context.run_id}
        document = {
            "run_id": self.context.run_id,
            "seq": mark.seq,
            "records": mark.records,
            "offset": offset,
            "finished": finished,
            # The mark is written after the data's fsync: the state it names is committed.
            "connection_id": self.context.connection_id,
            "states": self.states,
        }
        temporary = self.mark_path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(orjson.dumps(document))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.mark_path)

    def remove_leftovers(self) -> list[str]:
        pattern = glob.escape(str(self.target.parent / f".{self.target.name}.etlctl-")) + "*.tmp"
        removed = []
        for stale in glob.glob(pattern):
            Path(stale).unlink(missing_ok=True)
            removed.append(f"temporary file {stale}")
        return removed

    def _remove_stale_working_files(self) -> None:
        pattern = glob.escape(str(self.target.parent / f".{self.target.name}.etlctl-")) + "*.tmp"
        for stale in glob.glob(pattern):
            if Path(stale) != self.working:
                Path(stale).unlink(missing_ok=True)
