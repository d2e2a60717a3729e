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


# --- the target's committed state wins over a stale store (etlctl/target_state.py) ---------
def _finished_run(store: Store, status: str) -> Run:
    from etlctl.models import RunStatus, utcnow

    run = Run(connection="conn", status=RunStatus(status), ended_at=utcnow())
    with store.transaction() as view:
        view.save_run(run)
    return run


def _answer(state, run_id, stream: str = "") -> dict:
    return {"status": "ok", "streams": {stream: {"state": state, "run_id": run_id}}}


def test_the_target_is_asked_only_after_a_run_that_did_not_succeed(tmp_path: Path) -> None:
    from etlctl import target_state

    store = _store_with_connection(tmp_path)
    connection = store.read().get("connection", "conn")
    assert not target_state.worth_asking(store.read(), connection)  # never ran
    _finished_run(store, "failed")
    assert target_state.worth_asking(store.read(), connection)
    _finished_run(store, "succeeded")
    assert not target_state.worth_asking(store.read(), connection)
    _finished_run(store, "skipped")  # a firing that never started changes nothing
    assert not target_state.worth_asking(store.read(), connection)


def test_a_newer_state_the_target_committed_replaces_the_stores(tmp_path: Path) -> None:
    from etlctl import target_state
    from etlctl.models import SyncState

    store = _store_with_connection(tmp_path)
    connection = store.read().get("connection", "conn")
    old = _finished_run(store, "succeeded")
    crashed = _finished_run(store, "failed")  # etlctl killed; its containers finished
    with store.transaction() as view:
        view.save_state(SyncState(connection="conn", connection_id=connection.id,
                                  state={"cursor": 1}, run_id=old.id))
    with store.transaction() as view:
        adopted = target_state.adopt(view, connection, _answer({"cursor": 9}, crashed.id))
    assert adopted is not None
    saved = store.read().get_state("conn")
    assert (saved.state, saved.run_id, saved.connection_id) == (
        {"cursor": 9}, crashed.id, connection.id)
    with store.transaction() as view:  # in step now: nothing to do
        assert target_state.adopt(view, connection, _answer({"cursor": 9}, crashed.id)) is None
    for useless in ({"status": "unsupported"}, {"status": "ok", "streams": {}},
                    {"status": "failed", "message": "x"}, _answer("garbage", crashed.id),
                    _answer({"cursor": 9}, None)):
        with store.transaction() as view:
            assert target_state.adopt(view, connection, useless) is None
    assert store.read().get_state("conn").state == {"cursor": 9}


def test_a_reset_is_never_undone_by_the_targets_older_state(tmp_path: Path) -> None:
    from etlctl import target_state

    store = _store_with_connection(tmp_path)
    connection = store.read().get("connection", "conn")
    before_reset = _finished_run(store, "failed")
    registry.reset_connection(store, "conn")
    with store.transaction() as view:
        assert target_state.adopt(view, connection, _answer({"cursor": 9}, before_reset.id)) is None
        assert target_state.adopt(view, connection, _answer({"cursor": 9}, "run_unknown")) is None
    assert store.read().get_state("conn").state is None
    after_reset = _finished_run(store, "failed")  # a run since the reset committed, then died
    with store.transaction() as view:
        assert target_state.adopt(view, connection, _answer({"cursor": 3}, after_reset.id))
    saved = store.read().get_state("conn")
    assert saved.state == {"cursor": 3} and saved.reset_at is not None


# --- file loaders keep the committed state in their mark file ----------------------------
def _jsonl_loader(path: Path, run_id: str, connection_id: str = "con_1"):
    from connectors.loaders.jsonl import JsonlLoader
    from connectors.sdk import RunContext
    from connectors.sdk.protocol import BatchLimits, SyncSettings

    context = RunContext(run_id=run_id, connection="c", connection_id=connection_id,
                         sync=SyncSettings(mode="incremental", cursor_field="k"),
                         batch=BatchLimits())
    return JsonlLoader({"path": str(path)}, context)


def test_a_file_target_keeps_its_committed_state_and_drops_a_crashed_runs_tail(
    tmp_path: Path,
) -> None:
    from connectors.sdk import LoadMark, Schema

    target = tmp_path / "out.jsonl"
    first = _jsonl_loader(target, "run_1")
    first.start()
    first.begin(Schema("s", []))
    first.write_batch(["k"], [[1], [2]])
    first.finish(LoadMark(seq=3, records=2, state={"cursor": 2}, stream="s"))
    first.close(failed=False)
    assert _jsonl_loader(target, "x").committed_state().streams == {
        "s": {"state": {"cursor": 2}, "run_id": "run_1"}}
    assert _jsonl_loader(target, "x", "con_other").committed_state().streams == {}

    crashed = _jsonl_loader(target, "run_2")
    crashed.start()
    crashed.write_batch(["k"], [[3]])
    crashed.commit(LoadMark(seq=2, records=1, state={"cursor": 3}, stream="s"))
    crashed.write_batch(["k"], [[4], [5]])  # written, never committed: the process dies
    crashed.handle.flush()
    assert len(target.read_text().splitlines()) == 5

    committed = _jsonl_loader(target, "run_3").committed_state()
    assert committed.streams == {"s": {"state": {"cursor": 3}, "run_id": "run_2"}}
    following = _jsonl_loader(target, "run_3")
    following.start()  # cuts what no committed state covers: the next sync reads it again
    following.close(failed=True)
    assert target.read_text().splitlines() == ['{"k":1}', '{"k":2}', '{"k":3}']
