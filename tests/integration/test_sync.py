"""End-to-end syncs: real Docker containers, a real RabbitMQ, real SQLite and JSONL targets."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etlctl.cli.main import app
from etlctl.store import Store
from tests_support import leftover_containers, leftover_queues, write_users_csv

pytestmark = pytest.mark.integration

ETLCTL = [sys.executable, "-m", "etlctl"]


@pytest.fixture
def etl(tmp_path, services):
    store_path = tmp_path / "store" / "store.json"
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0):
        result = runner.invoke(app, ["--store", str(store_path), *args])
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    invoke.store = Store(store_path)
    invoke.store_path = store_path
    return invoke


def _register_csv_to(
    etl,
    tmp_path,
    name: str,
    loader_type: str,
    rows: int,
    target: Path,
    runtime_extra: tuple[str, ...] = (),
) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    source_file = data / f"{name}.csv"
    write_users_csv(source_file, rows)
    etl("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source_file}")
    config = ["--config", f"path={target}"]
    if loader_type == "sqlite":
        config += ["--config", "table=users"]
    etl("loader", "add", f"{name}-dst", "--type", loader_type, *config)
    etl("connection", "add", name, "--source", f"{name}-src", "--loader", f"{name}-dst")
    return source_file


def test_csv_to_sqlite_moves_every_row_with_types_and_cleans_up(etl, tmp_path):
    target = tmp_path / "out" / "wh.db"
    _register_csv_to(etl, tmp_path, "c2s", "sqlite", 5000, target)
    result = etl("sync", "c2s", "--json")
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded"
    assert run["records_extracted"] == run["records_loaded"] == 5000
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), count(DISTINCT id) FROM users").fetchone() == (5000, 5000)
    row = db.execute(
        "SELECT id, name, amount, active, note, typeof(id), typeof(amount) FROM users WHERE id = 10"
    ).fetchone()
    assert row == (10, "user 10", 15.0, 0, None, "integer", "real")
    assert leftover_containers("c2s") == []
    assert leftover_queues("c2s") == []
    stored = etl.store.read().get_run(run["id"])
    assert stored.status.value == "succeeded" and Path(stored.log_path).exists()


def test_csv_to_jsonl_moves_every_row_with_types(etl, tmp_path):
    target = tmp_path / "out" / "users.jsonl"
    _register_csv_to(etl, tmp_path, "c2j", "jsonl", 1234, target)
    etl("sync", "c2j")
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == 1234
    assert sorted(r["id"] for r in records) == list(range(1, 1235))
    first = next(r for r in records if r["id"] == 5)
    assert first["amount"] == 7.5 and first["active"] is True and first["note"] is None
    assert leftover_containers("c2j") == [] and leftover_queues("c2j") == []


def test_a_malformed_row_fails_the_run_and_leaves_the_target_whole(etl, tmp_path):
    target = tmp_path / "out" / "wh.db"
    source_file = _register_csv_to(etl, tmp_path, "bad", "sqlite", 100, target)
    etl("sync", "bad")
    # The bad row comes after 20,000 good ones in batches of 100: the data queue holds at
    # most 64 messages, so the loader has committed most of them (into the staging table)
    # by the time the extractor reaches it. The target must not show any of them.
    write_users_csv(source_file, 20_000, start=1001)
    with source_file.open("a") as handle:
        handle.write('101,2024-05-02T00:00:00,"unterminated,1.0,true,x\n')
        handle.write("not-an-int,2024,x,y,z,w,extra,columns\n")
    result = etl("sync", "bad", "--batch-size", "100", code=1)
    assert "failed" in result.stderr
    run = etl.store.read().list_runs("bad")[0]
    assert run.status.value == "failed"
    assert run.error and ("line" in run.error or "row" in run.error)
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), min(id), max(id) FROM users").fetchone() == (100, 1, 100)
    committed = db.execute(
        "SELECT records FROM _etlctl_loads WHERE run_id = ?", (run.id,)
    ).fetchone()
    assert committed is not None and committed[0] >= 10_000, committed
    assert leftover_containers("bad") == [] and leftover_queues("bad") == []


def test_a_missing_source_file_fails_with_the_reason(etl, tmp_path):
    target = tmp_path / "out" / "wh.db"
    source_file = _register_csv_to(etl, tmp_path, "gone", "sqlite", 10, target)
    source_file.unlink()
    result = etl("sync", "gone", code=1)
    assert (
        "gone.csv" in result.stderr or "No such file" in result.stderr or "no file" in result.stderr
    )
    assert leftover_containers("gone") == [] and leftover_queues("gone") == []


def test_a_concurrent_sync_of_the_same_connection_is_refused(etl, tmp_path):
    target = tmp_path / "out" / "wh.db"
    _register_csv_to(etl, tmp_path, "twice", "sqlite", 300_000, target)
    first = subprocess.Popen(
        [*ETLCTL, "--store", str(etl.store_path), "sync", "twice"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not etl.store.read().list_runs("twice"):
            time.sleep(0.1)
        second = etl("sync", "twice", code=4)
        assert "already syncing" in second.stderr
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert sqlite3.connect(target).execute("SELECT count(*) FROM users").fetchone() == (300_000,)


def test_a_timeout_stops_and_removes_everything(etl, tmp_path):
    target = tmp_path / "out" / "wh.db"
    _register_csv_to(etl, tmp_path, "slow", "sqlite", 3_000_000, target)
    result = etl("sync", "slow", "--timeout", "1.5", code=7)
    assert "did not finish within 1.5s" in result.stderr
    assert leftover_containers("slow") == [] and leftover_queues("slow") == []
    assert (
        not target.exists()
        or sqlite3.connect(target)
        .execute("SELECT name FROM sqlite_master WHERE name = 'users'")
        .fetchone()
        is None
    )


def test_local_runtime_runs_the_same_sync(etl, tmp_path):
    target = tmp_path / "out" / "wh.db"
    _register_csv_to(etl, tmp_path, "loc", "sqlite", 777, target)
    run = json.loads(etl("sync", "loc", "--runtime", "local", "--json").stdout)
    assert run["status"] == "succeeded" and run["runtime"] == "local"
    assert sqlite3.connect(target).execute("SELECT count(*) FROM users").fetchone() == (777,)
    assert leftover_queues("loc") == []


def test_no_secret_in_docker_inspect_of_a_running_connector(etl, tmp_path):
    """The broker password and config reach containers in a read-only file only."""
    target = tmp_path / "out" / "wh.db"
    _register_csv_to(etl, tmp_path, "sec", "sqlite", 400_000, target)
    inspected: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not inspected:
            ids = leftover_containers("sec")
            if ids:
                out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True)
                if out.returncode == 0:
                    inspected.append(out.stdout)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    etl("sync", "sec", "--amqp-url", "amqp://guest:guest@127.0.0.1:5672/%2F")
    watcher.join()
    assert inspected, "never saw the running containers"
    details = json.loads(inspected[0])
    for container in details:
        env = container["Config"]["Env"] or []
        assert not any("guest" in item or "amqp" in item for item in env)
        assert container["HostConfig"]["Privileged"] is False
        binds = json.dumps(container["HostConfig"].get("Binds") or [])
        assert "docker.sock" not in binds
