"""`etlctl doctor` against things broken for real: a store opened to others or corrupted, a
Docker socket that is not there, a RabbitMQ node of the test's own (stopped, wrong password,
a user without rights, leftover queues), connector images under a tag of the test's own
(one deleted, one stale), this store's crontab line removed, changed or foreign, a tiny
filesystem under a target, a source whose file is gone. Each asserts the line and the exit
code, as a user runs the command (a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from rabbitmq_node import RabbitNode

from etlctl import scheduler
from etlctl.store import Store
from tests_support import write_users_csv

pytestmark = pytest.mark.integration

ETLCTL = [sys.executable, "-m", "etlctl"]


class Setup:
    """A store with a csv -> sqlite connection `prog`, and the doctor run against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store_path = root / "store" / "store.json"
        self.store = Store(self.store_path)
        self.source = root / "data" / "users.csv"
        self.source.parent.mkdir(parents=True)
        write_users_csv(self.source, 10)
        self.target = root / "out" / "wh.db"
        self.etl("source", "add", "src", "--type", "csv", "--config", f"path={self.source}")
        self.etl("loader", "add", "dst", "--type", "sqlite", "--config", f"path={self.target}",
                 "--config", "table=users")
        self.etl("connection", "add", "prog", "--source", "src", "--loader", "dst")

    def etl(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([*ETLCTL, "--store", str(self.store_path), *args],
                                capture_output=True, text=True, env={**os.environ, **(env or {})},
                                timeout=600)
        assert result.returncode == 0, result.stderr
        return result

    def doctor(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict]]:
        result = subprocess.run(
            [*ETLCTL, "--store", str(self.store_path), "doctor", "--json", *args],
            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
        )
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is (result.returncode == 0)
        return result.returncode, report["checks"]

    def text(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        result = subprocess.run([*ETLCTL, "--store", str(self.store_path), "doctor", *args],
                                capture_output=True, text=True, env={**os.environ, **(env or {})},
                                timeout=600)
        return result.returncode, result.stdout


def find(checks: list[dict[str, Any]], area: str, status: str, text: str) -> dict[str, Any]:
    found = [c for c in checks if c["area"] == area and c["status"] == status
             and text in c["message"]]
    assert found, f"no {status} {area} line with {text!r} in:\n" + "\n".join(
        f"{c['status']} {c['area']} {c['message']}" for c in checks)
    return found[0]


def errors(checks: list[dict[str, Any]]) -> list[str]:
    return [f"{c['area']}: {c['message']}" for c in checks if c["status"] == "error"]


@pytest.fixture
def setup(tmp_path, services) -> Setup:
    return Setup(tmp_path)


def test_a_working_setup_has_no_error_and_exits_0(setup):
    code, checks = setup.doctor()
    assert errors(checks) == [] and code == 0
    assert {c["area"] for c in checks} >= {"store", "docker", "images", "rabbitmq", "cron", "disk"}
    find(checks, "docker", "ok", "Docker ")
    find(checks, "rabbitmq", "ok", "connected, may declare queues")
    code, text = setup.text()
    assert code == 0 and text.splitlines()[-1].endswith("0 error(s)")


def test_a_store_open_to_others_warns_and_a_corrupt_one_is_an_error(setup):
    setup.store_path.chmod(0o644)
    code, checks = setup.doctor()
    line = find(checks, "store", "warning", "can be read by other users (mode 0644)")
    assert line["fix"] == f"chmod 600 {setup.store_path}" and code == 0
    setup.store_path.write_text('{"_meta": {"1": {"app": "etlctl"')
    code, checks = setup.doctor()
    assert code == 1
    find(checks, "store", "error", f"the store {setup.store_path} is corrupt or truncated")
    code, text = setup.text()
    assert code == 1 and "error    store" in text and "fix: restore it from a backup" in text


def test_docker_not_answering_is_an_error(setup, tmp_path):
    socket_path = tmp_path / "no-docker.sock"
    code, checks = setup.doctor(env={"DOCKER_HOST": f"unix://{socket_path}"})
    assert code == 1
    line = find(checks, "docker", "error", f"Docker engine is not reachable at unix://{socket_path}")
    assert "start it" in line["fix"]
    find(checks, "images", "warning", "not checked: the Docker engine does not answer")


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


def test_rabbitmq_of_our_own_node_broken_four_ways(setup, rabbit_node):
    node = rabbit_node
    code, checks = setup.doctor("--amqp-url", node.url())
    assert code == 0, errors(checks)
    find(checks, "rabbitmq", "ok", f"RabbitMQ at amqp://guest:***@127.0.0.1:{node.port}/%2F")

    # Queues a killed sync of this store left behind.
    leftover = f"etlctl.prog.{setup.store.id}.data"
    connection = pika.BlockingConnection(pika.URLParameters(node.url()))
    connection.channel().queue_declare(leftover, durable=True)
    connection.close()
    code, checks = setup.doctor("--amqp-url", node.url())
    line = find(checks, "rabbitmq", "warning", f"leftover queue(s) of killed syncs of this store: "
                f"{leftover}")
    assert line["fix"] == "etlctl gc" and code == 0

    # A wrong password: an error that never shows the password.
    wrong = node.url(password="s3cret-wrong")
    result = subprocess.run([*ETLCTL, "--store", str(setup.store_path), "doctor", "--amqp-url",
                             wrong], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "s3cret-wrong" not in result.stdout + result.stderr
    code, checks = setup.doctor("--amqp-url", wrong)
    find(checks, "rabbitmq", "error", "refused the credentials")

    # A user who may use the vhost but not declare queues; and one who may not use it at all.
    assert node.ctl("add_user", "weak", "weakpw").returncode == 0
    assert node.ctl("set_permissions", "-p", "/", "weak", "^$", "^$", "^$").returncode == 0
    code, checks = setup.doctor("--amqp-url", node.url("weak", "weakpw"))
    assert code == 1
    line = find(checks, "rabbitmq", "error", "refused to let user weak declare queues (403")
    assert "set_permissions" in line["fix"]
    assert node.ctl("add_user", "nobody-here", "pw").returncode == 0
    code, checks = setup.doctor("--amqp-url", node.url("nobody-here", "pw"))
    find(checks, "rabbitmq", "error", "does not let user nobody-here use virtual host '/'")

    # The broker stopped.
    node.stop()
    code, checks = setup.doctor("--amqp-url", node.url())
    assert code == 1
    line = find(checks, "rabbitmq", "error",
                f"RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:{node.port}/%2F")
    assert "start it" in line["fix"]


def docker(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, text=True, input=stdin)


@pytest.fixture
def own_image_tag(connector_images) -> Iterator[str]:
    """Every built-in image under a tag of this test's own (copies of the checkout's)."""
    from connectors import image_tag

    ours = f"doctor-test-{uuid.uuid4().hex[:10]}"
    current = image_tag()
    tagged = []
    try:
        for image in connector_images:
            name = image.rsplit(":", 1)[0]
            docker("tag", f"{name}:{current}", f"{name}:{ours}")
            tagged.append(f"{name}:{ours}")
        yield ours
    finally:
        for image in tagged:
            subprocess.run(["docker", "rmi", image], capture_output=True)


def test_missing_and_stale_images(setup, own_image_tag):
    env = {"ETLCTL_IMAGE_TAG": own_image_tag}
    code, checks = setup.doctor(env=env)
    assert code == 0, errors(checks)
    find(checks, "images", "ok", "all 11 built-in images present and current")

    # An unused image missing: a warning; a used one missing: an error naming who needs it.
    docker("rmi", f"etlctl/loader-jsonl:{own_image_tag}")
    docker("rmi", f"etlctl/extractor-csv:{own_image_tag}")
    code, checks = setup.doctor(env=env)
    assert code == 1
    line = find(checks, "images", "error",
                f"image etlctl/extractor-csv:{own_image_tag} is missing: source src cannot sync")
    assert line["fix"] == "etlctl images build extractor-csv"
    find(checks, "images", "warning", f"etlctl/loader-jsonl:{own_image_tag}")

    # An image built by another version of etlctl.
    dockerfile = (f"FROM etlctl/loader-sqlite:{own_image_tag}\n"
                  "LABEL org.opencontainers.image.version=0.0.1\n")
    docker("build", "-q", "-t", f"etlctl/loader-sqlite:{own_image_tag}", "-", stdin=dockerfile)
    code, checks = setup.doctor(env=env)
    find(checks, "images", "warning", f"image etlctl/loader-sqlite:{own_image_tag} is stale "
         "(used by loader dst): built by etlctl 0.0.1")


def _edit_crontab(store: Store, edit) -> None:
    """Change this store's lines only, under etlctl's crontab lock (others share the file)."""
    with scheduler.crontab_lock(store):
        scheduler.write_crontab(edit(scheduler.read_crontab()))


def test_crontab_entries_missing_outdated_and_foreign(setup):
    if scheduler.cron_daemon_running() is not True:
        pytest.fail("no cron daemon runs (run: bash scripts/ensure-services.sh cron)")
    tag = scheduler.entry_tag(setup.store.id, "prog")
    try:
        setup.etl("connection", "update", "prog", "--schedule", "0 3 * * *")
        code, checks = setup.doctor()
        find(checks, "cron", "ok", "1 scheduled connection(s), all installed")
        assert code == 0, errors(checks)

        _edit_crontab(setup.store, lambda text: "".join(
            line for line in text.splitlines(keepends=True) if tag not in line))
        code, checks = setup.doctor()
        assert code == 1
        line = find(checks, "cron", "error",
                    "connection prog is scheduled (0 3 * * *) but has no crontab entry")
        assert line["fix"] == "etlctl schedule apply"

        setup.etl("schedule", "apply")
        _edit_crontab(setup.store, lambda text: text.replace("0 3 * * * ", "5 4 * * * "))
        code, checks = setup.doctor()
        find(checks, "cron", "warning", "the crontab entry of prog differs")
        assert code == 0

        ghost = f"0 1 * * * true # {scheduler.entry_tag(setup.store.id, 'ghost')}\n"
        _edit_crontab(setup.store, lambda text: text + ghost)
        code, checks = setup.doctor()
        find(checks, "cron", "warning", "not scheduled (foreign to it now): ghost")
    finally:
        scheduler.remove_crontab_entries(setup.store)
    assert tag not in scheduler.read_crontab()


@pytest.fixture
def tiny_filesystem(tmp_path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("mounting a test filesystem needs root (as on the CI machines)")
    where = tmp_path / "tiny"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_little_disk_space_where_a_target_lives_is_an_error(setup, tiny_filesystem):
    target = tiny_filesystem / "wh.db"
    setup.etl("loader", "update", "dst", "--config", f"path={target}")
    code, checks = setup.doctor()
    assert code == 1
    line = find(checks, "disk", "error", f"free of 4.0 MiB at {tiny_filesystem} (loader dst)")
    assert line["fix"] == f"free some space in {tiny_filesystem}"


def test_connectors_option_runs_each_check(setup):
    code, checks = setup.doctor("--connectors")
    assert code == 0, errors(checks)
    find(checks, "source", "ok", "source src (csv): check passed")
    find(checks, "loader", "ok", "loader dst (sqlite): check passed")
    setup.source.unlink()
    code, checks = setup.doctor("--connectors")
    assert code == 1
    find(checks, "source", "error", f"source src (csv): file not found: {setup.source}")


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is root's alone)."""
    if os.geteuid() != 0:
        pytest.fail("running the doctor as another user needs root (as on the CI machines)")
    where = Path(tempfile.mkdtemp(prefix="etlctl-doctor-test-"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_a_store_this_user_cannot_read_or_write_is_an_error(shared_dir, rabbitmq):
    store = shared_dir / "store.json"
    subprocess.run([*ETLCTL, "--store", str(store), "settings", "set", "runtime", "local"],
                   check=True, capture_output=True)

    def doctor_as_nobody() -> tuple[int, list[dict[str, Any]]]:
        result = subprocess.run([*NOBODY, *ETLCTL, "--store", str(store), "doctor", "--json"],
                                capture_output=True, text=True, timeout=300)
        return result.returncode, json.loads(result.stdout)["checks"]

    code, checks = doctor_as_nobody()  # the store is root's, mode 0600
    assert code == 1
    line = find(checks, "store", "error", f"cannot read the store {store}: Permission denied")
    assert "permissions" in line["fix"]
    # Every other command says the same with exit 5 (it was a usage error of --store, 2).
    listed = subprocess.run([*NOBODY, *ETLCTL, "--store", str(store), "source", "list"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 5
    assert listed.stderr.startswith(f"error: cannot read the store {store}: Permission denied")
    store.chmod(0o644)
    code, checks = doctor_as_nobody()
    assert code == 1
    find(checks, "store", "error", f"the store {store} is not writable by this user")


def test_no_cron_daemon_in_sight_is_an_error_once_something_is_scheduled(setup):
    # In a PID namespace of its own the doctor sees no cron process: the shared daemon
    # keeps running for everyone else.
    in_own_pids = ["unshare", "--pid", "--fork", "--mount-proc"]
    command = [*in_own_pids, *ETLCTL, "--store", str(setup.store_path), "doctor", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    checks = json.loads(result.stdout)["checks"]
    find(checks, "cron", "warning", "no cron daemon is running: schedules never fire")
    try:
        setup.etl("connection", "update", "prog", "--schedule", "@daily")
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        line = find(json.loads(result.stdout)["checks"], "cron", "error",
                    "no cron daemon is running (1 scheduled connection(s) need it)")
        assert "service cron start" in line["fix"]
    finally:
        scheduler.remove_crontab_entries(setup.store)
