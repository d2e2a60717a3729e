"""The swarm runtime on a real single-node Docker swarm (tests/integration/swarm_support.py):
a sync moves every row, a cancelled or killed one leaves no service, secret, task or queue,
the run file's secrets never show in `docker service inspect` or the logs, and plain docker
syncs keep working while the engine is a swarm manager."""

from __future__ import annotations

import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarm_support import containers, join_test_swarm, leave_test_swarm, swarm_objects

from connectors import image_tag
from etlctl.runtime import ConnectorLaunch, get_runtime
from etlctl.store import Store
from tests_support import IN_CI, leftover_queues, write_users_csv

pytestmark = pytest.mark.integration

AMQP_PASSWORD = "guest"  # the broker's only user here; it must not leak either


def test_not_a_swarm_is_one_clear_error(tmp_path):
    """First in the module: the swarm fixture has not joined a swarm yet."""
    from swarm_support import swarm_state

    from etlctl.errors import ServiceUnavailableError

    if swarm_state() == "active":
        # Only a shared development engine can be in another session's swarm; CI runs alone,
        # so there it means the test proves nothing and must fail.
        message = "the engine is in a swarm now (another test session uses it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with pytest.raises(ServiceUnavailableError, match="not part of a swarm"):
        get_runtime("swarm").preflight()


@pytest.fixture(scope="module")
def swarm(services) -> Iterator[None]:
    join_test_swarm()
    try:
        yield
    finally:
        leave_test_swarm()


@pytest.fixture
def cli(tmp_path, swarm):
    store_path = tmp_path / "store.json"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etlctl", "--store", str(store_path), *args],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "etlctl", "--store", str(store_path), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    run.start = start
    run.store = Store(store_path)
    return run


def _connection(cli, tmp_path: Path, name: str, rows: int) -> Path:
    source = tmp_path / f"{name}.csv"
    write_users_csv(source, rows)
    target = tmp_path / "out" / f"{name}.db"
    for args in (
        ("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source}"),
        ("loader", "add", f"{name}-dst", "--type", "sqlite", "--config", f"path={target}",
         "--config", "table=users"),
        ("connection", "add", name, "--source", f"{name}-src", "--loader", f"{name}-dst"),
    ):  # fmt: skip
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return target


def _rows(target: Path) -> tuple[int, int]:
    return (
        sqlite3.connect(target).execute("SELECT count(*), count(DISTINCT id) FROM users").fetchone()
    )


def _nothing_left(store: Store, connection: str) -> None:
    """No service, secret or queue of this store's connection; its task containers go too
    (the node removes them a moment after their service)."""
    label = f"io.etlctl.store={store.id}"
    assert swarm_objects("service", label) == []
    assert swarm_objects("secret", label) == []
    deadline = time.monotonic() + 30
    while containers(label) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert containers(label) == [], "a task's container outlived its service"
    assert leftover_queues(connection, store.id) == []


def _wait_for_services(store: Store, count: int = 2, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(swarm_objects("service", f"io.etlctl.store={store.id}")) < count:
        assert time.monotonic() < deadline, "the services never appeared"
        time.sleep(0.05)


def test_a_sync_moves_every_row_and_leaves_nothing(cli, tmp_path):
    target = _connection(cli, tmp_path, "swarm10k", 10_000)
    result = cli("sync", "swarm10k", "--runtime", "swarm", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "succeeded" and run["runtime"] == "swarm"
    assert _rows(target) == (10_000, 10_000)
    _nothing_left(cli.store, "swarm10k")
    logs = cli("logs", run["id"])
    assert "===== loader (exit code 0) =====" in logs.stdout


def test_the_runtime_setting_selects_swarm(cli, tmp_path):
    target = _connection(cli, tmp_path, "swarmset", 300)
    assert cli("settings", "set", "runtime", "swarm").returncode == 0
    result = cli("sync", "swarmset", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runtime"] == "swarm"
    assert _rows(target) == (300, 300)


def test_plain_docker_syncs_still_work_on_a_swarm_manager(cli, tmp_path):
    target = _connection(cli, tmp_path, "swarmdocker", 2_000)
    result = cli("sync", "swarmdocker", "--runtime", "docker", "--json")
    assert result.returncode == 0, result.stderr
    assert _rows(target) == (2_000, 2_000)
    assert swarm_objects("service", f"io.etlctl.store={cli.store.id}") == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_cancelled_sync_leaves_no_service_secret_task_or_queue(cli, tmp_path, signum):
    name = f"swarmcancel{int(signum)}"
    _connection(cli, tmp_path, name, 3_000_000)
    process = cli.start("sync", name, "--runtime", "swarm")
    _wait_for_services(cli.store)
    time.sleep(1)  # the tasks run
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    run = cli.store.read().list_runs(name)[0]
    assert run.status.value == "cancelled"
    _nothing_left(cli.store, name)


def test_a_killed_etlctl_leaves_services_that_gc_removes(cli, tmp_path):
    target = _connection(cli, tmp_path, "swarmkilled", 3_000_000)
    process = cli.start("sync", "swarmkilled", "--runtime", "swarm")
    _wait_for_services(cli.store)
    process.send_signal(signal.SIGKILL)
    process.wait()
    label = f"io.etlctl.store={cli.store.id}"
    assert swarm_objects("service", label) and swarm_objects("secret", label)
    orphan = cli.store.read().list_runs("swarmkilled")[0]
    result = cli("gc", "--runtime", "swarm", "--json")
    assert result.returncode == 0, result.stderr
    assert orphan.id in json.loads(result.stdout)["removed"]
    _nothing_left(cli.store, "swarmkilled")
    assert cli.store.read().get_run(orphan.id).status.value == "failed"
    assert (
        not target.exists()
        or sqlite3.connect(target)
        .execute("SELECT name FROM sqlite_master WHERE name = 'users'")
        .fetchone()
        is None
    )


def test_the_run_file_is_a_secret_never_in_service_inspect_or_logs(cli, tmp_path):
    _connection(cli, tmp_path, "swarmsecret", 400_000)
    assert (
        cli("settings", "set", "amqp_url", "amqp://guest:guest@127.0.0.1:5672/%2F").returncode == 0
    )
    label = f"io.etlctl.store={cli.store.id}"
    inspected: list[dict] = []

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(inspected) < 2:
            ids = swarm_objects("service", label)
            if len(ids) == 2:
                out = subprocess.run(
                    ["docker", "service", "inspect", *ids], capture_output=True, text=True
                )
                tasks = subprocess.run(
                    ["docker", "inspect", *subprocess.run(
                        ["docker", "service", "ps", "-q", *ids], capture_output=True, text=True
                    ).stdout.split()], capture_output=True, text=True,
                )  # fmt: skip
                if out.returncode == 0 and tasks.returncode == 0:
                    inspected.extend(json.loads(out.stdout))
                    inspected.append({"tasks": tasks.stdout})
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = cli("sync", "swarmsecret", "--runtime", "swarm", "--json")
    watcher.join()
    assert result.returncode == 0, result.stderr
    assert len(inspected) >= 2, "never saw the running services"
    text = json.dumps(inspected)
    assert "amqp://" not in text and f":{AMQP_PASSWORD}@" not in text
    for service in inspected[:2]:
        spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert spec["Env"] == ["ETLCTL_RUN_FILE=/etlctl/run.json"]
        assert spec["ReadOnly"] is True and spec["CapabilityDrop"] == ["ALL"]
        assert "docker.sock" not in json.dumps(spec.get("Mounts", []))
        assert [s["File"]["Name"] for s in spec["Secrets"]] == ["/etlctl/run.json"]
        assert spec["Secrets"][0]["File"]["Mode"] == 0o400
    run_id = json.loads(result.stdout)["id"]
    assert "amqp://guest:guest" not in cli("logs", run_id).stdout


# --- the runtime itself -------------------------------------------------------------------
@pytest.fixture
def swarm_runtime(swarm):
    runtime = get_runtime("swarm")
    runtime.preflight()
    return runtime


def _spec_launch(tmp_path: Path, run_label: str, image: str) -> ConnectorLaunch:
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"config": {}}))
    run_file.chmod(0o600)
    return ConnectorLaunch(
        name=f"etlctl-test-swarm-{run_label}",
        role="extractor",
        connector_type="csv",
        image=image,
        run_file=str(run_file),
        labels={"io.etlctl.managed": "true", "io.etlctl.run": run_label},
        command=("spec",),
    )


def test_run_once_gives_stdout_and_stderr_apart_and_removes_everything(swarm_runtime, tmp_path):
    label = uuid.uuid4().hex[:10]
    launch = _spec_launch(tmp_path, label, f"etlctl/extractor-csv:{image_tag()}")
    code, stdout, stderr = swarm_runtime.run_once(launch, timeout=120)
    assert code == 0, stderr
    assert json.loads(stdout)["title"] == "csv extractor"
    assert swarm_objects("service", f"io.etlctl.run={label}") == []
    assert swarm_objects("secret", f"io.etlctl.run={label}") == []
    # A failing command: its exit code, and its message on stderr, not stdout.
    failing = dataclasses.replace(launch, command=("no-such-command",))
    code, stdout, stderr = swarm_runtime.run_once(failing, timeout=120)
    assert code != 0 and stdout == "" and stderr.strip()


def test_a_task_the_swarm_rejects_fails_at_once_with_the_reason(swarm_runtime, tmp_path):
    label = uuid.uuid4().hex[:10]
    launch = _spec_launch(tmp_path, label, f"etlctl-test/no-such-image:{label}")
    started = time.monotonic()
    code, _, stderr = swarm_runtime.run_once(launch, timeout=120)
    assert code == 125 and "No such image" in stderr
    assert time.monotonic() - started < 60
    assert swarm_objects("service", f"io.etlctl.run={label}") == []


def test_a_long_name_is_shortened_uniquely(swarm_runtime, tmp_path):
    label = uuid.uuid4().hex[:10]
    launch = dataclasses.replace(
        _spec_launch(tmp_path, label, f"etlctl/extractor-csv:{image_tag()}"),
        name=f"etlctl-{'x' * 63}-run-20240501t000000z-abcdef-extractor-{label}",
    )
    code, stdout, stderr = swarm_runtime.run_once(launch, timeout=120)
    assert code == 0, stderr
    assert json.loads(stdout)["title"] == "csv extractor"
