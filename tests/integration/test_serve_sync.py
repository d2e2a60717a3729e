"""Syncs started through `etlctl serve`: real server, real Docker containers and RabbitMQ,
real SQLite targets. A named pipe as the CSV source keeps a sync running for exactly as long
as a test wants (it ends when the test closes the pipe)."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from serve_support import (
    SENTINEL,
    PipeSource,
    Receiver,
    etlctl_argv,
    running_server,
    server_env,
)
from tests_support import leftover_containers, leftover_queues, write_users_csv

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def wait_until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


def register(server, tmp_path: Path, name: str, source_path: Path) -> Path:
    target = tmp_path / "out" / f"{name}.db"
    for path, body in (
        (
            "/api/v1/sources",
            {"name": f"{name}-src", "type": "csv", "config": {"path": str(source_path)}},
        ),
        (
            "/api/v1/loaders",
            {
                "name": f"{name}-dst",
                "type": "sqlite",
                "config": {"path": str(target), "table": "users"},
            },
        ),
        ("/api/v1/connections", {"name": name, "source": f"{name}-src", "loader": f"{name}-dst"}),
    ):
        created = server.post(path, json=body)
        assert created.status_code == 201, created.text
    return target


def events(server, run_id: str) -> list[tuple[str, dict]]:
    """Read the run's server-sent events until `end`."""
    seen: list[tuple[str, dict]] = []
    event = None
    with httpx.stream(
        "GET",
        f"{server.base_url}/api/v1/runs/{run_id}/events",
        headers=server.headers,
        timeout=httpx.Timeout(10, read=300),
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
                server.responses.append(line)
                if event == "end":
                    break
    return seen


@pytest.fixture(scope="module")
def server(services, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("serve") / "home" / "store.json") as server:
        yield server
        assert SENTINEL not in server.everything_said()


def test_a_sync_started_through_the_api_runs_like_etlctl_sync(server, tmp_path):
    name = unique("api")
    source = tmp_path / "users.csv"
    write_users_csv(source, 20_000)
    target = register(server, tmp_path, name, source)

    started = server.post(f"/api/v1/connections/{name}/sync")
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert started.json()["run"]["status"] == "running"
    seen = events(server, run_id)
    assert seen[-1] == ("end", {"status": "succeeded"})
    final = [data for event, data in seen if event == "run"][-1]
    assert final["records_loaded"] == final["records_extracted"] == 20_000

    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), count(DISTINCT id) FROM users").fetchone() == (
        20_000,
        20_000,
    )
    run = server.store.read().get_run(run_id)
    assert run.trigger == "api" and run.status.value == "succeeded"
    assert leftover_containers(name) == [] and leftover_queues(name) == []

    log = server.get(f"/api/v1/runs/{run_id}/logs")
    assert log.status_code == 200 and log.text.startswith(f"run {run_id} of connection {name}")
    tail = server.get(f"/api/v1/runs/{run_id}/logs", params={"tail": 2}).text
    assert tail.count("\n") == 2 and log.text.endswith(tail)
    listed = server.get("/api/v1/runs", params={"connection": name}).json()
    assert [r["id"] for r in listed] == [run_id]

    metrics = server.get("/metrics").text
    assert f'etlctl_runs_total{{connection="{name}",status="succeeded"}} 1.0' in metrics
    assert f'etlctl_records_loaded_total{{connection="{name}"}} 20000.0' in metrics
    assert f'etlctl_run_duration_seconds_count{{connection="{name}"}} 1.0' in metrics
    assert f'etlctl_last_success_timestamp_seconds{{connection="{name}"}}' in metrics


def test_restarting_the_server_neither_kills_nor_forgets_a_sync(server, tmp_path):
    name = unique("restart")
    pipe = PipeSource(tmp_path / "users.csv")
    target = register(server, tmp_path, name, pipe.path)
    run_id = server.post(f"/api/v1/connections/{name}/sync").json()["run_id"]
    wait_until(lambda: len(leftover_containers(name)) == 2, 120, "both connectors to run")
    pid = server.store.read().get_run(run_id).pid

    server.stop()
    os.kill(pid, 0)  # the sync process lives on without the server
    with running_server(server.store_path) as again:
        shown = again.get(f"/api/v1/runs/{run_id}").json()
        assert shown["status"] == "running"
        busy = again.post(f"/api/v1/connections/{name}/sync")
        assert busy.status_code == 409
        assert busy.json()["error"]["message"].startswith(
            f"connection '{name}' is already syncing (run {run_id}"
        )
        pipe.finish()
        seen = events(again, run_id)
        assert seen[-1] == ("end", {"status": "succeeded"})
        assert SENTINEL not in again.everything_said()
    server.start()  # the module's server again, for the tests after this one
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), count(DISTINCT id) FROM users").fetchone() == (
        10_000,
        10_000,
    )
    assert leftover_containers(name) == [] and leftover_queues(name) == []


def test_cancel_stops_a_long_sync_and_cleans_up(server, tmp_path):
    name = unique("cancel")
    pipe = PipeSource(tmp_path / "users.csv")
    register(server, tmp_path, name, pipe.path)
    run_id = server.post(f"/api/v1/connections/{name}/sync").json()["run_id"]
    wait_until(lambda: len(leftover_containers(name)) == 2, 120, "both connectors to run")
    cancelled = server.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    seen = events(server, run_id)
    assert seen[-1] == ("end", {"status": "cancelled"})
    run = server.store.read().get_run(run_id)
    assert run.error == "cancelled by SIGTERM"
    assert leftover_containers(name) == [] and leftover_queues(name) == []
    again = server.post(f"/api/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"run {run_id} is not running (it cancelled)"
    pipe.more.set()  # its writes now fail: nobody reads the pipe any more


def test_a_failed_sync_alerts_the_webhook_once_retrying_after_a_500(server, tmp_path):
    hook = Receiver([500])
    set_alert = server.request(
        "PUT",
        "/api/v1/alerts/default",
        json={"webhook": hook.url, "headers": {"X-Token": SENTINEL}},
    )
    assert set_alert.status_code == 200, set_alert.text
    assert set_alert.json()["headers"] == {"X-Token": "********"}
    try:
        name = unique("alert")
        register(server, tmp_path, name, tmp_path / "missing.csv")
        run_id = server.post(f"/api/v1/connections/{name}/sync").json()["run_id"]
        assert events(server, run_id)[-1] == ("end", {"status": "failed"})
        wait_until(lambda: len(hook.received) >= 2, 60, "the notification, after one retry")
        time.sleep(2)  # nothing more comes
        assert len(hook.received) == 2
        headers, body = hook.received[-1]
        assert headers["X-Token"] == SENTINEL
        assert (body["run_id"], body["status"], body["event"]) == (run_id, "failed", "failure")
        assert "missing.csv" in body["error"]
        assert body == hook.received[0][1]
        output = next((server.store_path.parent / "logs" / name).glob(f"{run_id}.out"))
        assert SENTINEL not in output.read_text()
    finally:
        server.request("DELETE", "/api/v1/alerts/default")
        hook.close()


def test_a_sync_started_from_the_cli_shows_live_and_the_cli_cancels_it(server, tmp_path):
    name = unique("cli")
    pipe = PipeSource(tmp_path / "users.csv")
    register(server, tmp_path, name, pipe.path)
    sync = subprocess.Popen(
        etlctl_argv(server.store_path, "sync", name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(),
    )
    try:
        wait_until(lambda: len(leftover_containers(name)) == 2, 120, "both connectors to run")
        listed = server.get("/api/v1/runs", params={"connection": name}).json()
        assert [(run["status"], run["trigger"]) for run in listed] == [("running", "manual")]
        run_id = listed[0]["id"]
        live = wait_until(
            lambda: server.get(f"/api/v1/runs/{run_id}").json()["progress"],
            60,
            "the CLI's sync to report its progress to other processes",
        )
        assert live["extractor_done"] is False and live["elapsed_seconds"] >= 0
        cancelled = subprocess.run(
            etlctl_argv(server.store_path, "runs", "cancel", run_id, "--json"),
            capture_output=True,
            text=True,
            env=server_env(),
            timeout=120,
        )
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["status"] == "cancelled"
        assert sync.wait(timeout=60) == 130
        assert leftover_containers(name) == [] and leftover_queues(name) == []
    finally:
        pipe.more.set()
        if sync.poll() is None:  # the test failed first: cancel, so it cleans up after itself
            sync.terminate()
            try:
                sync.wait(timeout=60)
            except subprocess.TimeoutExpired:
                sync.kill()
