"""Stream selection in connections and manifests, per-stream state in show and reset: the CLI
and the real store, no services."""

from __future__ import annotations

import json
import textwrap

from hypothesis import given
from hypothesis import strategies as st

from etlctl.models import StreamConfig, SyncState
from etlctl.store import Store


def _objects(cli, tmp_path):
    cli("source", "add", "shop", "--type", "sqlite", "--config", f"path={tmp_path}/shop.db",
        "--config", 'tables=["users", "orders"]')
    cli("loader", "add", "wh", "--type", "sqlite", "--config", f"path={tmp_path}/wh.db",
        "--config", "table={stream}")


def test_a_connection_selects_streams_with_their_own_settings(cli, tmp_path):
    _objects(cli, tmp_path)
    cli("connection", "add", "shop-wh", "--source", "shop", "--loader", "wh",
        "--stream", "users", "--stream", "orders:incremental:updated_at:id")
    shown = json.loads(cli("connection", "show", "shop-wh", "--json").stdout)
    assert shown["streams"] == [
        {"name": "users", "mode": None, "cursor_field": None, "primary_key": None},
        {"name": "orders", "mode": "incremental", "cursor_field": "updated_at",
         "primary_key": ["id"]},
    ]
    shown_text = cli("connection", "show", "shop-wh").stdout
    assert '"orders:incremental:updated_at:id"' in shown_text and '"users"' in shown_text
    cli("connection", "update", "shop-wh", "--all-streams")
    assert json.loads(cli("connection", "show", "shop-wh", "--json").stdout)["streams"] == []


def test_bad_stream_selections_are_refused_with_what_to_write(cli, tmp_path):
    _objects(cli, tmp_path)
    add = ("connection", "add", "c", "--source", "shop", "--loader", "wh")
    out = cli(*add, "--stream", "orders:sometimes", code=2).stderr
    assert "invalid stream 'orders:sometimes': mode 'sometimes' is not one of" in out
    out = cli(*add, "--stream", "orders:incremental", code=2).stderr
    assert "stream 'orders': mode incremental needs a cursor field" in out
    out = cli(*add, "--stream", "users", "--stream", "users", code=2).stderr
    assert "each stream may be selected once" in out
    out = cli(*add, "--stream", ":full_refresh", code=2).stderr
    assert "use NAME[:MODE[:CURSOR_FIELD[:KEY,KEY]]]" in out
    assert json.loads(cli("connection", "list", "--json").stdout) == []


def test_reset_of_one_stream_keeps_the_others(cli, tmp_path, store_path):
    _objects(cli, tmp_path)
    cli("connection", "add", "shop-wh", "--source", "shop", "--loader", "wh",
        "--mode", "incremental", "--cursor-field", "id")
    with Store(store_path).transaction() as view:
        connection = view.get("connection", "shop-wh")
        state = SyncState(connection="shop-wh", connection_id=connection.id)
        state = state.committed("run_1", stream="users", state={"cursor": 5})
        state = state.committed("run_1", stream="orders", state={"cursor": 9})
        view.save_state(state)
    shown = cli("connection", "show", "shop-wh").stdout
    assert '"users"' in shown and '"orders"' in shown
    out = cli("connection", "reset", "shop-wh", "--stream", "orders").stdout
    assert out.strip() == 'connection "shop-wh" reset (was: {"orders": {"cursor": 9}})'
    assert Store(store_path).read().get_state("shop-wh").stream_states() == {
        "users": {"cursor": 5}
    }
    err = cli("connection", "reset", "shop-wh", "--stream", "orders", code=3).stderr
    assert "connection 'shop-wh' has no saved state for stream 'orders'" in err
    assert "streams with a state: users" in err
    cli("connection", "reset", "shop-wh")
    assert Store(store_path).read().get_state("shop-wh").streams == {}


def test_manifests_select_streams_and_export_them_back(cli, tmp_path):
    _objects(cli, tmp_path)
    path = tmp_path / "conn.yaml"
    path.write_text(textwrap.dedent("""\
        apiVersion: etlctl/v1
        kind: Connection
        metadata:
          name: shop-wh
        spec:
          source: shop
          loader: wh
          streams:
            - users
            - name: orders
              mode: incremental
              cursorField: updated_at
              primaryKey: [id]
            - "*"
        """))
    cli("apply", "-f", str(path), "--no-crontab")
    shown = json.loads(cli("connection", "show", "shop-wh", "--json").stdout)
    assert [s["name"] for s in shown["streams"]] == ["users", "orders", "*"]
    exported = cli("export").stdout
    assert "cursorField: updated_at" in exported and "- name: orders" in exported
    path.write_text(path.read_text().replace("cursorField: updated_at", "cursorFeld: x"))
    err = cli("apply", "-f", str(path), "--no-crontab", code=2).stderr
    assert "spec.streams[1]" in err and "cursorFeld" in err


@given(st.text(alphabet="abc:*,_ inremtlfushdp", max_size=40))
def test_any_stream_option_is_parsed_or_refused_with_a_message(text):
    try:
        parsed = StreamConfig.parse(text)
    except ValueError as exc:
        assert str(exc).startswith(f"invalid stream {text!r}")
        return
    assert parsed.name == text.split(":")[0].strip()
    assert parsed.primary_key is None or all(key for key in parsed.primary_key)


def test_only_incremental_streams_keep_a_state(cli, tmp_path, store_path):
    """A checkpoint of a full_refresh stream is not saved, and a saved one is not resumed:
    a full refresh starts from scratch every time, stream by stream."""
    from etlctl import orchestrator
    from etlctl.models import Run

    _objects(cli, tmp_path)
    cli("connection", "add", "shop-wh", "--source", "shop", "--loader", "wh",
        "--stream", "users", "--stream", "orders:incremental:updated_at")
    store = Store(store_path)
    connection = store.read().get("connection", "shop-wh")
    run = Run(connection="shop-wh")
    session = orchestrator._SyncSession(
        store, connection, run, None, None, None, orchestrator.SyncOptions(), None
    )
    for stream, cursor in (("users", 7), ("orders", "2024-05-02")):
        session.handle_event({"type": "checkpoint_committed", "run_id": run.id,
                              "stream": stream, "state": {"cursor": cursor}})
    saved = store.read().get_state("shop-wh")
    assert saved.stream_states() == {"orders": {"cursor": "2024-05-02"}}
    assert run.state_after == {"streams": {"orders": {"cursor": "2024-05-02"}}}
    both = saved.committed("run_x", stream="users", state={"cursor": 7})
    resumed = orchestrator.resumable_state(connection, both)
    assert resumed.stream_states() == {"orders": {"cursor": "2024-05-02"}}
