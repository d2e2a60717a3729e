"""The store's promises, in-process: atomic writes, loud refusal of broken files, migration."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etlctl import store as store_module
from etlctl.errors import NotFoundError, StoreError
from etlctl.models import Run, Source, SyncState
from etlctl.store import SCHEMA_VERSION, Store


def _source(name: str) -> Source:
    return Source(id=f"src_{name}", name=name, type="csv", config={"path": f"/d/{name}.csv"})


def test_a_missing_store_reads_as_empty_and_is_not_created(tmp_path):
    store = Store(tmp_path / "store.json")
    assert store.read().sources() == []
    assert not store.exists()


def test_a_transaction_writes_the_file_0600_with_a_version(tmp_path):
    store = Store(tmp_path / "sub" / "store.json")
    with store.transaction() as view:
        view.save(_source("users"))
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600
    document = json.loads(store.path.read_text())
    assert document["_meta"]["1"] == {"app": "etlctl", "schema_version": SCHEMA_VERSION}
    assert [s.name for s in store.read().sources()] == ["users"]


def test_a_failed_transaction_writes_nothing(tmp_path):
    store = Store(tmp_path / "store.json")
    with store.transaction() as view:
        view.save(_source("keep"))
    before = store.path.read_bytes()
    with pytest.raises(RuntimeError), store.transaction() as view:
        view.save(_source("lost"))
        raise RuntimeError("boom")
    assert store.path.read_bytes() == before
    assert not list(tmp_path.glob(".store.json.*.tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b'{"_meta": {"1": {"app": "etlctl", "schema_ver', "corrupt or truncated"),
        (b"\x00\x01garbage", "corrupt or truncated"),
        (b'{"sources": {}}', "not an etlctl store"),
        (b"[1, 2]", "not an etlctl store"),
    ],
)
def test_a_broken_store_is_refused_and_left_untouched(tmp_path, content, message):
    path = tmp_path / "store.json"
    path.write_bytes(content)
    store = Store(path)
    with pytest.raises(StoreError, match=message):
        store.read()
    with pytest.raises(StoreError, match=message), store.transaction() as view:
        view.save(_source("x"))
    assert path.read_bytes() == content


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "store.json"
    path.write_text(json.dumps({"_meta": {"1": {"app": "etlctl", "schema_version": 99}}}))
    with pytest.raises(StoreError, match="newer etlctl"):
        Store(path).read()


def test_an_older_store_is_migrated_on_the_next_write(tmp_path, monkeypatch):
    path = tmp_path / "store.json"
    path.write_text(
        json.dumps(
            {
                "_meta": {"1": {"app": "etlctl", "schema_version": 1}},
                "sources": {"1": {**_source("old").to_doc(), "config": {"file": "/d/old.csv"}}},
            }
        )
    )

    def rename_file_to_path(document):
        for doc in document["sources"].values():
            doc["config"]["path"] = doc["config"].pop("file")
        return document

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(store_module.MIGRATIONS, 1, rename_file_to_path)
    store = Store(path)
    assert store.read().get("source", "old").config == {"path": "/d/old.csv"}
    with store.transaction():
        pass
    document = json.loads(path.read_text())
    assert document["_meta"]["1"]["schema_version"] == 2
    assert document["sources"]["1"]["config"] == {"path": "/d/old.csv"}


def test_unreadable_store_is_refused(tmp_path):
    # A directory where the file should be: unreadable even for root, who ignores modes.
    path = tmp_path / "store.json"
    path.mkdir()
    with pytest.raises(StoreError, match="is a directory, not a file"):
        Store(path).read()


def test_runs_state_and_settings_round_trip(tmp_path):
    store = Store(tmp_path / "store.json")
    run = Run(connection="c1", records_loaded=5)
    with store.transaction() as view:
        view.save_run(run)
        view.save_state(SyncState(connection="c1", state={"cursor": 3}, run_id=run.id))
        view.set_setting("amqp_url", "amqp://x")
    view = store.read()
    assert view.get_run(run.id).records_loaded == 5
    assert view.get_state("c1").state == {"cursor": 3}
    assert view.settings() == {"amqp_url": "amqp://x"}
    with pytest.raises(NotFoundError):
        view.get_run("run_nope")


def test_runs_are_trimmed_per_connection(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "RUNS_KEPT_PER_CONNECTION", 3)
    store = Store(tmp_path / "store.json")
    with store.transaction() as view:
        for _ in range(5):
            view.save_run(Run(connection="c1"))
        view.save_run(Run(connection="c2"))
    view = store.read()
    assert len(view.list_runs("c1")) == 3
    assert len(view.list_runs("c2")) == 1


def test_a_version_1_state_becomes_the_state_of_the_only_stream(tmp_path):
    """Store schema 1 kept one state per connection; schema 2 keeps one per stream. The old
    state is the connection's only stream's, under no name until a sync names the stream."""
    path = tmp_path / "store.json"
    path.write_text(
        json.dumps(
            {
                "_meta": {"1": {"app": "etlctl", "schema_version": 1}},
                "states": {
                    "1": {"connection": "c1", "state": {"cursor": 7}, "run_id": "run_a",
                          "updated_at": "2024-05-01T00:00:00+00:00"},
                    "2": {"connection": "c2", "state": None, "run_id": None,
                          "updated_at": "2024-05-01T00:00:00+00:00"},
                },
            }
        )
    )
    store = Store(path)
    with store.transaction():
        pass
    document = json.loads(path.read_text())
    assert document["_meta"]["1"]["schema_version"] == 2
    migrated = store.read().get_state("c1")
    assert migrated.stream_states() == {"": {"cursor": 7}}
    assert migrated.state == {"cursor": 7}  # what a version-1 connector is given
    assert store.read().get_state("c2").streams == {}
    # The first sync that names the stream takes the unnamed state's place.
    named = migrated.committed("run_b", stream="users", state={"cursor": 9})
    assert named.stream_states() == {"users": {"cursor": 9}}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "users", "orders", "a b"]),
            st.dictionaries(st.sampled_from(["cursor", "page"]), st.integers(), min_size=1),
        ),
        max_size=12,
    )
)
def test_committed_keeps_the_last_state_of_every_stream(commits):
    state = SyncState(connection="c1")
    for number, (stream, value) in enumerate(commits):
        state = state.committed(f"run_{number}", stream=stream, state=value)
    expected: dict[str, dict] = {}
    for stream, value in commits:
        if stream:
            expected.pop("", None)
        expected[stream] = value
    assert state.stream_states() == expected
    assert state.state == (next(iter(expected.values())) if len(expected) == 1 else None)
    # Round trip through the store's JSON form.
    assert SyncState.model_validate(state.to_doc()) == state
