"""A sentinel value in every secret field and in the broker password, through real syncs:
it must appear nowhere a user or another local user can read it: `docker inspect`, container
and run logs, show/list/--json output, exports, the crontab line, `ps`. And no connector
container runs privileged or with the Docker socket.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import pytest
from reliability_support import Etl, assert_nothing_left, docker, rabbitmqctl, unique

from etlctl.scheduler import JobEnvironment, entry_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

TOKEN = secrets.token_hex(6)
PREFIX = f"SNTL{TOKEN}"
PG_PASSWORD = f"{PREFIX}pg"
HTTP_TOKEN = f"{PREFIX}http"
BROKER_PASSWORD = f"{PREFIX}broker"
AMQP_URL_PASSWORD = f"{PREFIX}amqpurl"
AMQP_FIELD_PASSWORD = f"{PREFIX}amqpfield"
ROLE = f"etl_sntl_{TOKEN}"


@dataclass
class Seen:
    """Everything captured while the syncs ran."""

    texts: list[str] = field(default_factory=list)
    containers: list[dict] = field(default_factory=list)


@pytest.fixture
def broker_users(rabbitmq: str) -> Iterator[dict[str, str]]:
    """RabbitMQ users whose passwords are sentinels: one for etlctl, two for the amqp loader."""
    users = {
        f"etl-sntl-{TOKEN}-b": BROKER_PASSWORD,
        f"etl-sntl-{TOKEN}-u": AMQP_URL_PASSWORD,
        f"etl-sntl-{TOKEN}-f": AMQP_FIELD_PASSWORD,
    }
    try:
        for user, password in users.items():
            assert rabbitmqctl("add_user", user, password).returncode == 0
            assert rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*").returncode == 0
        yield users
    finally:
        for user in users:
            rabbitmqctl("delete_user", user)


@pytest.fixture
def pg_role(postgres_url: str) -> Iterator[str]:
    """A database owned by a role whose password is the sentinel; a table to read."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PG_PASSWORD}'")
        admin.execute(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
    try:
        with psycopg.connect(
            host="127.0.0.1", dbname=ROLE, user=ROLE, password=PG_PASSWORD, autocommit=True
        ) as db:
            db.execute("CREATE TABLE people (id integer PRIMARY KEY, name text)")
            db.execute("INSERT INTO people SELECT i, 'p' || i FROM generate_series(1, 50) i")
        yield ROLE
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {ROLE} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {ROLE}")


@pytest.fixture
def http_api() -> Iterator[str]:
    """Answers only with the right bearer token."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {HTTP_TOKEN}":
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"records": [{"id": i, "name": f"h{i}"} for i in range(1, 21)]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/people"
    server.shutdown()


@pytest.fixture
def output_queue(rabbitmq: str) -> Iterator[str]:
    """Where the amqp loaders publish (the default exchange routes to it by name)."""
    import pika

    name = f"etl-sntl-{TOKEN}-out"

    def on_queue(action: str) -> None:
        # A connection per step: one held idle through the whole test misses its heartbeats
        # on a loaded machine, and the broker drops it before the teardown.
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
        try:
            getattr(connection.channel(), action)(name)
        finally:
            connection.close()

    on_queue("queue_declare")
    yield name
    on_queue("queue_delete")


def _watch(etl: Etl, name: str, seen: Seen, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a sync; meanwhile keep `ps` output and `docker inspect` of its containers."""
    process = etl.start("sync", name, "--json", env=env)
    inspected: set[str] = set()
    while process.poll() is None:
        seen.texts.append(subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                         text=True, timeout=30).stdout)
        ids = docker("ps", "-aq", "--filter", f"label=io.etlctl.connection={name}").split()
        for container in set(ids) - inspected:
            raw = docker("inspect", container, check=False)
            if raw.strip():
                inspected.add(container)
                seen.texts.append(raw)
                seen.containers.extend(json.loads(raw))
                seen.texts.append(docker("logs", container, check=False))
    out, err = process.communicate(timeout=180)
    seen.texts += [out, err]
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_secrets_never_leak_and_containers_are_unprivileged(
    etl: Etl,
    broker_users: dict[str, str],
    pg_role: str,
    http_api: str,
    output_queue: str,
    tmp_path: Path,
) -> None:
    users = list(broker_users)
    broker_url = f"amqp://{users[0]}:{BROKER_PASSWORD}@127.0.0.1:5672/%2F"
    env = {"ETLCTL_AMQP_URL": broker_url}  # not an argument: arguments show in `ps`
    routing = output_queue
    pg = ["--config", "host=127.0.0.1", "--config", f"dbname={pg_role}",
          "--config", f"user={pg_role}", "--config", f"password={PG_PASSWORD}",
          "--config", "sslmode=disable"]
    etl("source", "add", "pgsrc", "--type", "postgres", *pg, "--config", "table=people")
    etl("source", "add", "httpsrc", "--type", "http", "--config", f"url={http_api}",
        "--config", f"bearer_token={HTTP_TOKEN}", "--config", "records_path=records")
    etl("loader", "add", "pgdst", "--type", "postgres", *pg, "--config", "table=copied")
    etl("loader", "add", "amqpurl", "--type", "amqp", "--config",
        f"url=amqp://{users[1]}:{AMQP_URL_PASSWORD}@127.0.0.1:5672/%2F",
        "--config", f"routing_key={routing}")
    etl("loader", "add", "amqpfield", "--type", "amqp", "--config", f"user={users[2]}",
        "--config", f"password={AMQP_FIELD_PASSWORD}", "--config", f"routing_key={routing}")
    names = {unique("sec-a"): ("pgsrc", "amqpurl"), unique("sec-b"): ("httpsrc", "pgdst"),
             unique("sec-c"): ("pgsrc", "amqpfield")}
    seen = Seen()
    for name, (source, loader) in names.items():
        etl.connection(name, source, loader, "--schedule", "0 3 * * *")
        result = _watch(etl, name, seen, env)
        assert result.returncode == 0, result.stderr
        run = json.loads(result.stdout)
        assert run["records_loaded"] in (50, 20), run
        seen.texts.append(etl("logs", run["id"]).stdout)
        seen.texts.append(Path(run["log_path"]).read_text())
        seen.texts.append(etl("runs", "show", run["id"], "--json").stdout)
        seen.texts.append(etl("runs", "list", name, "--json").stdout)
        seen.texts.append(etl("connection", "show", name).stdout)
        assert_nothing_left(name)
    # The data really went through with the secrets (they were used, not dropped).
    with psycopg.connect(host="127.0.0.1", dbname=pg_role, user=pg_role,
                         password=PG_PASSWORD) as db:
        assert db.execute("SELECT count(*) FROM copied").fetchone() == (20,)

    for kind, objects in (("source", ("pgsrc", "httpsrc")),
                          ("loader", ("pgdst", "amqpurl", "amqpfield"))):
        seen.texts.append(etl(kind, "list").stdout)
        seen.texts.append(etl(kind, "list", "--json").stdout)
        for name in objects:
            seen.texts.append(etl(kind, "show", name).stdout)
            seen.texts.append(etl(kind, "show", name, "--json").stdout)
    seen.texts.append(etl("connection", "list", "--json").stdout)
    seen.texts.append(etl("export").stdout)
    seen.texts.append(etl("export", "--json").stdout)
    exported = tmp_path / "export.yaml"
    etl("export", "-o", str(exported))
    seen.texts.append(exported.read_text())
    seen.texts.append(etl("schedule", "list", "--json").stdout)
    job = JobEnvironment(program=("/usr/bin/etlctl",), home=str(tmp_path))
    for connection in etl.store.read().connections():
        seen.texts.append(entry_for(etl.store_path, connection, job))

    leaks = [text for text in seen.texts if PREFIX in text]
    excerpts = [text[max(0, text.find(PREFIX) - 200) :][:400] for text in leaks]
    assert leaks == [], f"a sentinel leaked: {excerpts}"

    assert len(seen.containers) == 2 * len(names), "every container was inspected"
    for container in seen.containers:
        host = container["HostConfig"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        # Only the run file's path; the image may add its own (PATH, ...), never a value of ours.
        assert "ETLCTL_RUN_FILE=/etlctl/run.json" in container["Config"]["Env"]
        mounts = [mount["Source"] for mount in container["Mounts"]]
        assert not any("docker.sock" in source for source in mounts), mounts
        assert container["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
