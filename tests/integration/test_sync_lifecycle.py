"""The life of a sync around the data: signals, a killed etlctl, services that are down,
and what `runs` and `logs` show afterwards. Real processes, Docker and RabbitMQ."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from etlctl.store import Store
from tests_support import leftover_containers, leftover_queues, write_users_csv

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(tmp_path, services):
    store_path = tmp_path / "store.json"

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etlctl", "--store", str(store_path), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=300,
        )

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "etlctl", "--store", str(store_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    run.start = start
    run.store = Store(store_path)
    return run


def _connection(cli, tmp_path, name: str, rows: int) -> str:
    source = tmp_path / f"{name}.csv"
    write_users_csv(source, rows)
    target = tmp_path / "out" / f"{name}.db"
    for args in (
        ("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source}"),
        (
            "loader",
            "add",
            f"{name}-dst",
            "--type",
            "sqlite",
            "--config",
            f"path={target}",
            "--config",
            "table=users",
        ),
        ("connection", "add", name, "--source", f"{name}-src", "--loader", f"{name}-dst"),
    ):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return str(target)


def _wait_for_containers(connection: str, count: int = 2, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(leftover_containers(connection)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the containers of {connection} never started")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_sync_cleans_up_and_is_recorded_as_cancelled(cli, tmp_path, signum):
    name = f"int{signum}"
    _connection(cli, tmp_path, name, 3_000_000)
    process = cli.start("sync", name)
    _wait_for_containers(name)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "cancelled" in err
    run = cli.store.read().list_runs(name)[0]
    assert run.status.value == "cancelled" and run.ended_at is not None
    assert leftover_containers(name) == [] and leftover_queues(name) == []


def test_after_a_killed_etlctl_the_next_sync_cleans_up_and_marks_the_run_failed(cli, tmp_path):
    target = _connection(cli, tmp_path, "killed", 3_000_000)
    process = cli.start("sync", "killed")
    _wait_for_containers("killed")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert leftover_containers("killed"), "SIGKILL cannot clean up: containers must remain"
    orphan = cli.store.read().list_runs("killed")[0]
    assert orphan.status.value == "running"

    result = cli("gc", "--json")
    assert result.returncode == 0, result.stderr
    assert orphan.id in json.loads(result.stdout)["removed"]
    assert leftover_containers("killed") == []
    assert leftover_queues("killed", cli.store.id) == []
    marked = cli.store.read().get_run(orphan.id)
    assert marked.status.value == "failed" and "ended without finishing" in marked.error
    # The interrupted full refresh left no half table; a new sync loads everything.
    result = cli("sync", "killed", "--json")
    assert result.returncode == 0, result.stderr
    assert sqlite3.connect(target).execute("SELECT count(*) FROM users").fetchone() == (3_000_000,)


def test_an_unreachable_broker_is_one_clear_line(cli, tmp_path):
    _connection(cli, tmp_path, "nobroker", 10)
    result = cli("sync", "nobroker", "--amqp-url", "amqp://guest:s3cret@127.0.0.1:1/%2F")
    assert result.returncode == 6
    assert result.stderr.startswith(
        "error: RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:1/"
    )
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
    assert cli.store.read().list_runs("nobroker") == []


def test_an_unreachable_docker_engine_is_one_clear_line(cli, tmp_path):
    _connection(cli, tmp_path, "nodocker", 10)
    result = cli("sync", "nodocker", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 6, result.stderr
    assert "Docker" in result.stderr.splitlines()[0] and "Traceback" not in result.stderr


def test_a_missing_image_says_how_to_build_it(cli, tmp_path):
    _connection(cli, tmp_path, "noimage", 10)
    assert cli("source", "update", "noimage-src", "--image", "etlctl-test/absent:0").returncode == 0
    result = cli("sync", "noimage")
    assert result.returncode == 6
    assert "etlctl-test/absent:0" in result.stderr and "missing" in result.stderr


def test_a_scheduled_firing_that_cannot_start_leaves_a_run(cli, tmp_path):
    _connection(cli, tmp_path, "firing", 10)
    result = cli("sync", "firing", "--trigger", "schedule", "--amqp-url", "amqp://127.0.0.1:1/")
    assert result.returncode == 6
    run = cli.store.read().list_runs("firing")[0]
    assert run.trigger == "schedule" and run.status.value == "failed"
    assert "did not start: RabbitMQ is not reachable" in run.error


def test_runs_and_logs_show_what_happened(cli, tmp_path):
    _connection(cli, tmp_path, "shown", 50)
    sync = json.loads(cli("sync", "shown", "--json").stdout)
    listed = json.loads(cli("runs", "list", "shown", "--json").stdout)
    assert [run["id"] for run in listed] == [sync["id"]]
    shown = json.loads(cli("runs", "show", sync["id"], "--json").stdout)
    assert shown["records_loaded"] == 50 and shown["duration_seconds"] > 0
    assert any("loader" in line for line in shown["log_tail"]) or shown["log_tail"]
    logs = cli("logs", sync["id"])
    assert logs.returncode == 0 and "===== extractor (exit code 0) =====" in logs.stdout
    assert "guest:guest" not in logs.stdout  # the broker password never reaches a log
    assert cli("runs", "show", "run_nope").returncode == 3


def test_the_broker_url_setting_is_used_by_syncs(cli, tmp_path):
    _connection(cli, tmp_path, "viasettings", 10)
    assert cli("settings", "set", "amqp_url", "amqp://guest:guest@127.0.0.1:1/%2F").returncode == 0
    result = cli("sync", "viasettings")
    assert result.returncode == 6 and "127.0.0.1:1" in result.stderr
