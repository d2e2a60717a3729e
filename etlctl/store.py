"""The state store: one JSON file, the only module that imports TinyDB.

Promises (tests/unit/test_store*.py and tests/integration/test_store_processes.py prove them):

* Every write replaces the whole file atomically (temp file in the same directory, fsync,
  ``os.replace``, fsync of the directory): a process killed at any instant leaves the old or
  the new file, never a broken one. TinyDB's own JSONStorage rewrites in place, so it is not
  used for the file; TinyDB works on an in-memory snapshot instead.
* Read-modify-write happens under an inter-process lock (filelock) held for the whole
  transaction, so concurrent writers (a cron job and a user) never lose each other's changes.
* A file that exists but is empty, truncated, unreadable or not etlctl's is refused loudly
  (StoreError), never treated as a new store. The file is created with mode 0600.
* The document carries a schema version; older stores are migrated on the next write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import filelock
from tinydb import Query, TinyDB
from tinydb.storages import Storage

from etlctl.errors import ConflictError, NotFoundError, StoreError, close_match
from etlctl.files import not_a_regular_file, real_path, write_atomically
from etlctl.models import (
    Connection,
    ConnectorObject,
    Loader,
    Run,
    RunStatus,
    Source,
    SyncState,
    state_document_from_version_1,
)

SCHEMA_VERSION = 2
APP_MARKER = "etlctl"
META_TABLE = "_meta"
LOCK_TIMEOUT_SECONDS = 30.0
RUNS_KEPT_PER_CONNECTION = 500
STORE_ID_LENGTH = 12



def _states_per_stream(document: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: sync state is kept per stream."""
    states = document.get("states")
    if isinstance(states, dict):
        document["states"] = {
            key: state_document_from_version_1(doc) if isinstance(doc, dict) else doc
            for key, doc in states.items()
        }
    return document


# version N -> function turning a version-N document into a version N+1 document.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _states_per_stream}

KIND_TABLES: dict[str, tuple[str, type]] = {
    "source": ("sources", Source),
    "loader": ("loaders", Loader),
    "connection": ("connections", Connection),
}

ModelT = TypeVar("ModelT")


class _SnapshotStorage(Storage):
    """TinyDB storage over an in-memory document; the Store decides when it reaches disk."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.dirty = False

    def read(self) -> dict[str, Any]:
        return self.document

    def write(self, data: dict[str, Any]) -> None:
        self.document = data
        self.dirty = True


def _new_document() -> dict[str, Any]:
    return {META_TABLE: {"1": {"app": APP_MARKER, "schema_version": SCHEMA_VERSION}}}


def _schema_version(document: dict[str, Any], path: Path) -> int:
    meta = document.get(META_TABLE)
    record = meta.get("1") if isinstance(meta, dict) else None
    if not isinstance(record, dict) or record.get("app") != APP_MARKER:
        raise StoreError(
            f"{path} is not an etlctl store (no etlctl marker in it)",
            hint="point --store or ETLCTL_STORE at an etlctl store, or move this file away",
        )
    version = record.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"{path} has an invalid schema version {version!r}")
    return version


def migrate(document: dict[str, Any], path: Path) -> tuple[dict[str, Any], bool]:
    """Bring a document to SCHEMA_VERSION; returns it and whether anything changed."""
    version = _schema_version(document, path)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer etlctl (store schema {version}, "
            f"this etlctl knows {SCHEMA_VERSION})",
            hint="upgrade etlctl",
        )
    migrated = version < SCHEMA_VERSION
    while version < SCHEMA_VERSION:
        document = MIGRATIONS[version](document)
        version += 1
        document[META_TABLE]["1"]["schema_version"] = version
    return document, migrated


def read_document(path: Path) -> dict[str, Any] | None:
    """The parsed store file, or None when it does not exist. Never repairs anything."""
    kind = not_a_regular_file(path)
    if kind is not None:  # a FIFO would block the read, a device would be replaced
        raise StoreError(
            f"the store {path} is {kind}, not a file",
            hint="point --store (or $ETLCTL_STORE) at a regular file, or at a new path",
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(
            f"cannot read the store {path}: {exc.strerror}",
            hint="check the file's permissions and owner",
        ) from exc
    if not raw.strip():
        raise StoreError(
            f"the store {path} is empty ({len(raw)} bytes): it was truncated or is not a store",
            hint="restore it from a backup, or move it away to start a new store",
        )
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(
            f"the store {path} is corrupt or truncated (not valid JSON: {exc})",
            hint="restore it from a backup, or move it away to start a new store",
        ) from exc
    if not isinstance(document, dict):
        raise StoreError(f"{path} is not an etlctl store (its top level is not an object)")
    _schema_version(document, path)
    return document


def write_document_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write via a temp file in the same directory + fsync + rename: all or nothing. Through
    a symlink, the file it points to is replaced (etlctl.files)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False).encode()
    written = write_atomically(path, payload, mode=0o600)
    dir_fd = os.open(written.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


class StoreView:
    """Typed access to one snapshot of the store. Writes go to the snapshot only."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._storage = _SnapshotStorage(document)
        self._db = TinyDB(storage=_StorageFactory(self._storage))

    @property
    def dirty(self) -> bool:
        return self._storage.dirty

    @property
    def document(self) -> dict[str, Any]:
        return self._storage.document

    # --- sources, loaders, connections -------------------------------------------------
    def list(self, kind: str) -> list[Any]:
        table, model = KIND_TABLES[kind]
        items = [model.model_validate(doc) for doc in self._db.table(table).all()]
        return sorted(items, key=lambda item: item.name)

    def find(self, kind: str, name: str) -> Any | None:
        table, model = KIND_TABLES[kind]
        doc = self._db.table(table).get(Query().name == name)
        return model.model_validate(doc) if doc is not None else None

    def get(self, kind: str, name: str) -> Any:
        found = self.find(kind, name)
        if found is None:
            raise NotFoundError(
                f"{kind} {name!r} does not exist", hint=self.missing_hint(kind, name)
            )
        return found

    def missing_hint(self, kind: str, name: str) -> str:
        """What to say about a name that does not exist: the near miss, if any, and the list."""
        guess = self.close_name(kind, name)
        see = f"see: etlctl {kind} list"
        return f"did you mean {guess!r}? ({see})" if guess else see

    def close_name(self, kind: str, name: str) -> str | None:
        table, _ = KIND_TABLES[kind]
        return close_match(name, (doc.get("name", "") for doc in self._db.table(table).all()))

    def save(self, item: ConnectorObject | Connection) -> None:
        table, _ = KIND_TABLES[item.kind]
        self._db.table(table).upsert(item.to_doc(), Query().name == item.name)

    def delete(self, kind: str, name: str) -> None:
        table, _ = KIND_TABLES[kind]
        if not self._db.table(table).remove(Query().name == name):
            raise NotFoundError(
                f"{kind} {name!r} does not exist", hint=self.missing_hint(kind, name)
            )

    def sources(self) -> list[Source]:
        return self.list("source")

    def loaders(self) -> list[Loader]:
        return self.list("loader")

    def connections(self) -> list[Connection]:
        return self.list("connection")

    # --- sync state --------------------------------------------------------------------
    def get_state(self, connection: str) -> SyncState | None:
        doc = self._db.table("states").get(Query().connection == connection)
        return SyncState.model_validate(doc) if doc is not None else None

    def save_state(self, state: SyncState) -> None:
        self._db.table("states").upsert(state.to_doc(), Query().connection == state.connection)

    def clear_state(self, connection: str) -> bool:
        return bool(self._db.table("states").remove(Query().connection == connection))

    # --- runs --------------------------------------------------------------------------
    def save_run(self, run: Run) -> None:
        runs = self._db.table("runs")
        previous = runs.get(Query().id == run.id)
        runs.upsert(run.to_doc(), Query().id == run.id)
        if run.status.finished and (previous is None or previous.get("status") == "running"):
            self._count_finished(run)
        self._trim_runs(run.connection)

    def _count_finished(self, run: Run) -> None:
        """Add a run that just ended to its connection's running totals: what metrics count.
        Kept apart from the runs, which are trimmed, so the totals never go down."""
        table = self._db.table("run_totals")
        totals = table.get(Query().connection == run.connection) or {"connection": run.connection}
        totals = dict(totals)
        by_status = dict(totals.get("runs", {}))
        by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
        totals["runs"] = by_status
        totals["records_loaded"] = totals.get("records_loaded", 0) + run.records_loaded
        totals["bytes"] = totals.get("bytes", 0) + run.bytes
        duration = run.duration_seconds
        if duration is not None and run.status is not RunStatus.SKIPPED:
            totals["duration_seconds"] = totals.get("duration_seconds", 0.0) + duration
            totals["timed_runs"] = totals.get("timed_runs", 0) + 1
        if run.status is RunStatus.SUCCEEDED and run.ended_at is not None:
            totals["last_success_at"] = run.ended_at.isoformat()
        table.upsert(totals, Query().connection == run.connection)

    def run_totals(self) -> dict[str, dict[str, Any]]:
        """Per connection: runs by status, records and bytes, seconds, last success (ISO)."""
        return {doc["connection"]: dict(doc) for doc in self._db.table("run_totals").all()}

    def last_runs(self) -> dict[str, Run]:
        """Each connection's newest run, in one pass over the runs."""
        return {name: runs[0] for name, runs in self.recent_runs(1).items()}

    def recent_runs(self, per_connection: int) -> dict[str, list[Run]]:
        """Each connection's newest runs (newest first), in one pass over the raw documents."""
        newest: dict[str, list[dict[str, Any]]] = {}
        for doc in self._db.table("runs").all():
            newest.setdefault(doc.get("connection", ""), []).append(doc)
        return {
            name: [
                Run.model_validate(doc)
                for doc in sorted(
                    docs, key=lambda doc: (doc["started_at"], doc["id"]), reverse=True
                )[:per_connection]
            ]
            for name, docs in newest.items()
        }

    def find_run(self, run_id: str) -> Run | None:
        doc = self._db.table("runs").get(Query().id == run_id)
        return Run.model_validate(doc) if doc is not None else None

    def get_run(self, run_id: str) -> Run:
        run = self.find_run(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id!r} does not exist", hint="see: etlctl runs list")
        return run

    def list_runs(
        self, connection: str | None = None, status: RunStatus | None = None
    ) -> list[Run]:
        """Runs, newest first. Filters on the raw documents, so only the runs asked for are
        validated (a store keeps up to RUNS_KEPT_PER_CONNECTION per connection)."""
        docs = self._db.table("runs").all()
        if connection is not None:
            docs = [doc for doc in docs if doc.get("connection") == connection]
        if status is not None:
            docs = [doc for doc in docs if doc.get("status") == status.value]
        runs = [Run.model_validate(doc) for doc in docs]
        return sorted(runs, key=lambda run: (run.started_at, run.id), reverse=True)

    def _trim_runs(self, connection: str) -> None:
        """Keep the file small: a cron job every minute must not grow it without bound."""
        runs = self._db.table("runs")
        docs = runs.search(Query().connection == connection)
        if len(docs) <= RUNS_KEPT_PER_CONNECTION:
            return
        docs.sort(key=lambda doc: (doc["started_at"], doc["id"]))
        old_ids = [doc.doc_id for doc in docs[: len(docs) - RUNS_KEPT_PER_CONNECTION]]
        runs.remove(doc_ids=old_ids)

    # --- alert rules (etlctl.alerts validates them) -------------------------------------
    def alert_rules(self) -> list[dict[str, Any]]:
        return [dict(doc) for doc in self._db.table("alerts").all()]

    def save_alert_rule(self, rule: dict[str, Any]) -> None:
        self._db.table("alerts").upsert(rule, Query().scope == rule["scope"])

    def delete_alert_rule(self, scope: str) -> bool:
        return bool(self._db.table("alerts").remove(Query().scope == scope))

    # --- settings ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        doc = self._db.table("settings").get(doc_id=1)
        return dict(doc) if doc else {}

    def set_setting(self, key: str, value: Any) -> None:
        settings = self.settings()
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
        table = self._db.table("settings")
        table.truncate()
        table.insert(settings)


class _StorageFactory:
    """TinyDB instantiates its storage class itself; hand it the existing snapshot."""

    def __init__(self, storage: _SnapshotStorage) -> None:
        self._storage = storage

    def __call__(self) -> _SnapshotStorage:
        return self._storage


class Store:
    """The store file. Use ``read()`` for queries and ``transaction()`` for changes."""

    def __init__(self, path: Path | str) -> None:
        # Symlinks followed once, here: the lock, the logs and every write belong to the
        # file the link points to, and a write replaces that file, never the link.
        self.path = real_path(path)

    @property
    def id(self) -> str:
        """A short, stable id of this store file. Queues, container labels and crontab tags
        carry it, so that several stores on one host (two users, parallel test runs) never
        touch each other's things even when their connections share a name."""
        real = os.path.realpath(self.path)
        return hashlib.sha256(real.encode()).hexdigest()[:STORE_ID_LENGTH]

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> StoreView:
        """A consistent snapshot without taking the lock (writes replace the file whole)."""
        document = read_document(self.path)
        if document is None:
            return StoreView(_new_document())
        document, _ = migrate(document, self.path)
        return StoreView(document)

    def _sweep_stale_temp_files(self) -> None:
        """Temp files are only written under the lock: any found now is a killed writer's."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    @contextlib.contextmanager
    def transaction(self, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[StoreView]:
        """Read-modify-write under the inter-process lock; written only if all went well."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = filelock.FileLock(str(self.lock_path), timeout=timeout, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise ConflictError(
                f"the store {self.path} is locked by another etlctl process "
                f"(waited {timeout:.0f}s)",
                hint=f"try again; if no etlctl runs, remove {self.lock_path}",
            ) from exc
        try:
            self._sweep_stale_temp_files()
            document = read_document(self.path)
            created = document is None
            document, migrated = migrate(document or _new_document(), self.path)
            view = StoreView(document)
            yield view
            if view.dirty or migrated or created:
                write_document_atomically(self.path, view.document)
        finally:
            lock.release()
