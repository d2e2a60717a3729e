"""End to end: the real cron daemon fires a connection scheduled every minute.

This test edits the crontab of the user running it (root in CI), as `etlctl` does for real
users. It backs that crontab up first and puts it back afterwards (byte for byte, or no
crontab at all if there was none), and removes its own entry whatever happens.

Services: the `crontab` command and the `cron` daemon (started here when it is not running).
When the sync stack (Docker engine + RabbitMQ + connector images) is there, and always in CI,
the fired run must have succeeded; without it, the firing must still leave a run with trigger
"schedule" (failed, with its reason) in the store. A missing cron fails in CI, skips elsewhere.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etlctl import scheduler
from etlctl.cli.main import app
from etlctl.models import Run, RunStatus
from etlctl.store import Store
from tests_support import IN_CI, missing_service

pytestmark = pytest.mark.integration
CRON_FIX = "bash scripts/ensure-services.sh cron"
# cron reads a changed crontab at the next minute and fires on the one after at the latest;
# then the sync itself needs a few seconds.
FIRING_TIMEOUT_SECONDS = 150


def _sync_stack_answers() -> bool:
    """Docker engine and RabbitMQ on 127.0.0.1: then a fired sync can really succeed."""
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", 5672)) != 0:
            return False
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return info.returncode == 0


@pytest.fixture
def cron_daemon() -> None:
    if shutil.which("crontab") is None:
        missing_service("the `crontab` command", CRON_FIX)
    if scheduler.cron_daemon_running():
        return
    daemon = shutil.which("cron") or shutil.which("crond")
    if daemon is None:
        missing_service("the cron daemon (apt-get install cron)", CRON_FIX)
    # cron forks into the background by itself; close our descriptors so it holds none.
    subprocess.run([daemon], check=False, close_fds=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not scheduler.cron_daemon_running():
        if time.monotonic() > deadline:
            missing_service(f"a running cron daemon ({daemon} did not stay up)", CRON_FIX)
        time.sleep(0.2)


@pytest.fixture
def own_crontab_backed_up() -> Iterator[None]:
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    if listed.returncode != 0 and "no crontab for" not in listed.stderr:
        missing_service(f"a usable crontab ({listed.stderr.strip()})", CRON_FIX)
    backup = listed.stdout if listed.returncode == 0 else None
    try:
        yield
    finally:
        now = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
        current = now.stdout if now.returncode == 0 else None
        if current != backup:
            if backup is None:
                subprocess.run(["crontab", "-r"], capture_output=True, check=False)
            else:
                subprocess.run(["crontab", "-"], input=backup, text=True, check=True)


def _first_finished_scheduled_run(store: Store, connection: str) -> Run | None:
    runs = store.read().list_runs(connection)
    finished = [run for run in runs if run.trigger == "schedule" and run.status.finished]
    return finished[-1] if finished else None  # list_runs is newest first


def _wait_for_scheduled_run(store: Store, connection: str) -> Run:
    deadline = time.monotonic() + FIRING_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = _first_finished_scheduled_run(store, connection)
        if run is not None:
            return run
        time.sleep(2)
    log = scheduler.cron_log_path(store.path, connection)
    tail = log.read_text()[-2000:] if log.exists() else "(no cron.log: cron never ran it)"
    pytest.fail(f"no scheduled run within {FIRING_TIMEOUT_SECONDS}s; cron.log:\n{tail}")


def test_cron_fires_a_connection_and_the_run_is_recorded(
    cron_daemon, own_crontab_backed_up, tmp_path, monkeypatch, request
):
    require_success = IN_CI or _sync_stack_answers()
    if require_success:
        request.getfixturevalue("services")  # Docker, RabbitMQ and fresh connector images
    monkeypatch.delenv("ETLCTL_NO_CRONTAB", raising=False)
    store_path = tmp_path / "e2e" / "store.json"
    store = Store(store_path)
    source_csv = tmp_path / "users.csv"
    source_csv.write_text("id,name\n1,ada\n2,grace\n3,linus\n")
    target = tmp_path / "out.jsonl"
    runner = CliRunner()

    def etl(*args: str):
        result = runner.invoke(app, ["--store", str(store_path), *args])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    etl("source", "add", "users", "--type", "csv", "--config", f"path={source_csv}")
    etl("loader", "add", "out", "--type", "jsonl", "--config", f"path={target}")
    try:
        added = etl(
            "connection", "add", "every-minute", "--source", "users", "--loader", "out",
            "--schedule", "* * * * *",
        )  # fmt: skip
        assert "crontab: added every-minute" in added.stderr
        listed = json.loads(etl("schedule", "list", "--json").stdout)["schedules"]
        assert [(item["connection"], item["crontab"]) for item in listed] == [
            ("every-minute", "yes")
        ]

        run = _wait_for_scheduled_run(store, "every-minute")
        assert run.trigger == "schedule"
        assert scheduler.cron_log_path(store_path, "every-minute").exists()
        if require_success:
            assert run.status is RunStatus.SUCCEEDED, run.error
            assert run.records_loaded == 3
            assert len(target.read_text().splitlines()) == 3
        else:
            # No sync stack here: the firing still leaves its trace, with the reason.
            assert run.status in {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED}
            assert run.status is RunStatus.SUCCEEDED or run.error
    finally:
        etl("schedule", "remove", "--all")
    own = scheduler.installed_entries(
        subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout,
        scheduler.store_id(Path(store_path)),
    )
    assert own == {}


def test_a_firing_while_the_previous_run_still_runs_records_a_skipped_run(
    services, tmp_path, monkeypatch
):
    """The entry's command, run by /bin/sh as cron runs it, while the connection's sync lock
    is held (as by a long previous run): it must not start, and must leave a `skipped` run."""
    from etlctl import orchestrator, registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(tmp_path / "skip" / "store.json")
    source_csv = tmp_path / "users.csv"
    source_csv.write_text("id,name\n1,ada\n")
    registry.add_connector_object(store, "source", "users", "csv", {"path": str(source_csv)})
    registry.add_connector_object(store, "loader", "out", "jsonl", {"path": str(tmp_path / "o")})
    connection = registry.new_connection("busy", "users", "out", schedule="* * * * *")
    registry.add_connection(store, connection)
    line = scheduler.entry_for(store.path, connection, scheduler.JobEnvironment.current())

    with orchestrator.connection_lock(store, "busy"):
        fired = subprocess.run(
            ["/bin/sh", "-c", line.split(None, 5)[5]], capture_output=True, text=True, timeout=120
        )
    assert fired.returncode == 4, fired  # etlctl's "conflict"; its output went to cron.log
    [run] = store.read().list_runs("busy")
    assert (run.trigger, run.status) == ("schedule", RunStatus.SKIPPED)
    assert "already syncing" in (run.error or "")
    assert "already syncing" in scheduler.cron_log_path(store.path, "busy").read_text()
