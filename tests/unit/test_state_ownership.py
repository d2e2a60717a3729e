"""A sync's state belongs to the connection (its id) that started it: the orchestrator's
checkpoint handling against a real store file, without containers (those are in
tests/reliability/test_state_ownership_syncs.py)."""

from __future__ import annotations

from pathlib import Path

from etlctl import registry
from etlctl.models import Run
from etlctl.orchestrator import SyncOptions, _SyncSession
from etlctl.store import Store


def _store_with_connection(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store.json")
    registry.add_connector_object(store, "source", "src", "csv", {"path": str(tmp_path / "a.csv")})
    registry.add_connector_object(
        store, "loader", "dst", "sqlite", {"path": str(tmp_path / "o.db"), "table": "t"}
    )
    registry.add_connection(
        store,
        registry.new_connection("conn", "src", "dst", mode="incremental", cursor_field="u"),
    )
    return store


def _session(store: Store) -> _SyncSession:
    connection = store.read().get("connection", "conn")
    run = Run(connection="conn")
    return _SyncSession(store, connection, run, None, None, None, SyncOptions(), None)


def _checkpoint(session: _SyncSession, cursor: int) -> None:
    session.handle_event({"type": "checkpoint_committed", "role": "loader",
                          "run_id": session.run.id, "state": {"cursor": cursor}})


def test_a_checkpoint_is_saved_under_the_connection_id(tmp_path: Path) -> None:
    store = _store_with_connection(tmp_path)
    session = _session(store)
    _checkpoint(session, 5)
    saved = store.read().get_state("conn")
    assert saved.state == {"cursor": 5} and saved.connection_id == session.connection.id


def test_a_checkpoint_never_lands_on_a_new_connection_of_the_same_name(tmp_path: Path) -> None:
    store = _store_with_connection(tmp_path)
    session = _session(store)  # a sync of the first "conn" is running...
    with store.transaction() as view:  # ...while "conn" is removed behind the lock's back
        view.delete("connection", "conn")
    registry.add_connection(
        store, registry.new_connection("conn", "src", "dst", mode="incremental", cursor_field="u")
    )
    _checkpoint(session, 99)
    assert store.read().get_state("conn") is None
    with store.transaction() as view:
        view.delete("connection", "conn")
    _checkpoint(session, 100)  # gone altogether: saved nowhere either
    assert store.read().get_state("conn") is None


def test_a_state_of_another_connection_id_is_not_used(tmp_path: Path) -> None:
    from etlctl.models import SyncState

    store = _store_with_connection(tmp_path)
    connection = store.read().get("connection", "conn")
    assert SyncState(connection="conn", connection_id=connection.id).belongs_to(connection)
    assert SyncState(connection="conn").belongs_to(connection)  # stores from before ids
    assert not SyncState(connection="conn", connection_id="con_other").belongs_to(connection)
