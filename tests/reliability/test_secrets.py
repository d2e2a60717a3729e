"""A sentinel value in every secret-bearing field of every connector (derived from the specs:
`secret: true` fields, secret header maps, URL fields' user:password) and in the broker
password, through real syncs, real failures and a SIGKILLed sync: it must appear nowhere a
user or another local user can read it: `docker inspect`, container and run logs, rejects
files, show/list/--json output, exports, error messages, the crontab line, `ps`, and no file
beside the store (run files after gc) but the store itself. An HTTP server on another loopback
address, reached by the API's next link, must never receive a credential. And no connector
container runs privileged or with the Docker socket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import pytest
from reliability_support import (
    Etl,
    assert_nothing_left,
    docker,
    rabbitmqctl,
    unique,
    wait_until,
)

from connectors.registry import all_connectors
from connectors.secrets import secret_fields, secret_map_fields
from etlctl.scheduler import JobEnvironment, entry_for
from tests_support import leftover_containers

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

TOKEN = secrets.token_hex(6)
PREFIX = f"SNTL{TOKEN}"
PG_PASSWORD = f"{PREFIX}pg"
HTTP_TOKEN = f"{PREFIX}http"
HTTP_KEY = f"{PREFIX}httpkey"
HTTP_URL_PASSWORD = f"{PREFIX}httpurl"
HTTP_USER = "reader"
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


def _serve(host: str, answer) -> tuple[HTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path, self.headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


@dataclass
class Api:
    url: str  # the API, on 127.0.0.1
    elsewhere_seen: list[str]  # every request's headers at the other server (127.0.0.2)


@pytest.fixture
def http_api() -> Iterator[Api]:
    """/people wants the bearer token, /basic the URL's user:password; both want the API key
    and link to a next page on another loopback address; /echo fails, quoting the request's
    credentials in its error body (as verbose APIs do)."""
    seen: list[str] = []
    elsewhere, elsewhere_url = _serve(
        "127.0.0.2", lambda path, headers: (seen.append(str(headers)), (200, {"records": []}))[1]
    )
    basic = "Basic " + base64.b64encode(f"{HTTP_USER}:{HTTP_URL_PASSWORD}".encode()).decode()
    wanted = {"/people": f"Bearer {HTTP_TOKEN}", "/basic": basic}

    def answer(path: str, headers) -> tuple[int, object]:
        if path == "/echo":
            return 403, {"error": "denied", "you_sent": dict(headers.items())}
        if headers.get("Authorization") != wanted.get(path) or headers.get("X-Api-Key") != HTTP_KEY:
            return 401, {"error": "who are you"}
        records = [{"id": i, "name": f"h{i}"} for i in range(1, 21)]
        return 200, {"records": records, "next": f"{elsewhere_url}/more"}

    api, api_url = _serve("127.0.0.1", answer)
    yield Api(api_url, seen)
    api.shutdown()
    elsewhere.shutdown()


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


# Every secret-bearing place of every connector, as the specs declare them (connectors/
# secrets.py); the test below plants a sentinel in each. A connector with a new secret field
# fails test_every_secret_field_of_every_connector_has_a_sentinel until it is planted too.
PLANTED = {
    ("extractor", "postgres", "password"),
    ("loader", "postgres", "password"),
    ("extractor", "http", "bearer_token"),
    ("extractor", "http", "headers"),
    ("extractor", "http", "url"),
    ("loader", "amqp", "url"),
    ("loader", "amqp", "password"),
}


def secret_places() -> set[tuple[str, str, str]]:
    """(role, type, field) of every field the specs mark secret, every secret map, and every
    URL field (its user:password is secret)."""
    places = set()
    for info in all_connectors():
        fields = secret_fields(info.spec) | secret_map_fields(info.spec)
        fields |= {name for name, prop in info.spec["properties"].items()
                   if prop.get("format") == "uri"}
        places |= {(info.role, info.type, name) for name in fields}
    return places


def test_every_secret_field_of_every_connector_has_a_sentinel() -> None:
    missing = secret_places() - PLANTED
    assert not missing, f"plant a sentinel in these (test_secrets_never_leak...): {missing}"


def _files_beside_the_store(etl: Etl) -> list[str]:
    """Every file etlctl wrote beside the store (logs, rejects, run files, locks, progress),
    and run files an older version left in /tmp: the store alone may hold secrets."""
    texts = []
    for path in etl.store_path.parent.rglob("*"):
        if path.is_file() and path != etl.store_path:
            texts.append(f"{path}: " + path.read_bytes().decode("utf-8", errors="replace"))
    for path in Path(tempfile.gettempdir()).glob("etlctl-*/*.json"):
        with contextlib.suppress(OSError):
            texts.append(f"{path}: " + path.read_text(errors="replace"))
    return texts


# Five syncs, a failing and a killed one, gc and some forty CLI commands: about 7 minutes on
# a quiet 2-core machine, more when it is shared; the suite's 600 s would cut it short.
@pytest.mark.timeout(1800)
def test_secrets_never_leak_and_containers_are_unprivileged(
    etl: Etl,
    broker_users: dict[str, str],
    pg_role: str,
    http_api: Api,
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
    http = ["--config", "records_path=records", "--config", f"headers.X-Api-Key={HTTP_KEY}",
            "--config", "pagination.type=next_link_body", "--config", "max_retries=0"]
    etl("source", "add", "pgsrc", "--type", "postgres", *pg, "--config", "table=people")
    etl("source", "add", "httpsrc", "--type", "http", "--config", f"url={http_api.url}/people",
        "--config", f"bearer_token={HTTP_TOKEN}", *http)
    etl("source", "add", "httpbasic", "--type", "http", *http, "--config",
        f"url=http://{HTTP_USER}:{HTTP_URL_PASSWORD}@{http_api.url[7:]}/basic")
    etl("source", "add", "httpecho", "--type", "http", *http, "--config",
        f"url=http://{HTTP_USER}:{HTTP_URL_PASSWORD}@{http_api.url[7:]}/echo",
        "--config", f"bearer_token={HTTP_TOKEN}")
    slow = etl.sqlite_source("slowsrc", 100_000)
    assert slow.exists()
    etl("loader", "add", "pgdst", "--type", "postgres", *pg, "--config", "table=copied")
    etl("loader", "add", "amqpurl", "--type", "amqp", "--config",
        f"url=amqp://{users[1]}:{AMQP_URL_PASSWORD}@127.0.0.1:5672/%2F",
        "--config", f"routing_key={routing}")
    etl("loader", "add", "amqpfield", "--type", "amqp", "--config", f"user={users[2]}",
        "--config", f"password={AMQP_FIELD_PASSWORD}", "--config", f"routing_key={routing}")
    names = {unique("sec-a"): ("pgsrc", "amqpurl"), unique("sec-b"): ("httpsrc", "pgdst"),
             unique("sec-c"): ("pgsrc", "amqpfield"), unique("sec-d"): ("httpbasic", "pgdst")}
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
    # The API's next link led to another host: it was asked, and got no credential.
    assert http_api.elsewhere_seen, "the next page on the other host was read"
    seen.texts += http_api.elsewhere_seen
    assert not any("Authorization" in h or "X-Api-Key" in h for h in http_api.elsewhere_seen)

    # Errors: a failing sync whose API quotes the credentials back, bad URLs, a check.
    failing = unique("sec-e")
    etl.connection(failing, "httpecho", "pgdst")
    result = _watch(etl, failing, seen, env)
    assert result.returncode == 1 and "HTTP 403" in result.stderr, result.stderr
    run = etl.last_run(failing)
    seen.texts += [etl("logs", run.id).stdout, etl("runs", "show", run.id).stdout,
                   etl("runs", "list", "--json").stdout]
    for args, code in (
        (("source", "check", "httpecho"), 1),
        (("source", "add", "badurl", "--type", "http", "--config",
          f"url=ftp://u:{PREFIX}ftp@example.com/"), 2),
        (("sync", failing, "--amqp-url", f"amqp://u:{PREFIX}/slash@127.0.0.1:5672/"), 2),
        (("settings", "set", "amqp_url", f"amqp://u:{PREFIX}#hash@127.0.0.1/"), 2),
        (("source", "update", "pgsrc", "--config", "port=notanumber"), 2),
    ):
        result = etl(*args, code=code, env=env)
        seen.texts += [result.stdout, result.stderr]

    # A SIGKILLed sync leaves its run files (the passwords in clear) until gc removes them.
    killed = unique("sec-f")
    etl.connection(killed, "slowsrc", "pgdst")
    process = etl.start("sync", killed, "--batch-size", "100", env=env)
    wait_until(lambda: len(leftover_containers(killed)) == 2, 120, "both containers")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert any(PG_PASSWORD in text for text in _files_beside_the_store(etl)), "run files exist"
    seen.texts.append(etl("gc", "--json", env=env).stdout)
    assert_nothing_left(killed)
    seen.texts.append(etl("logs", etl.last_run(killed).id).stdout)
    seen.texts += _files_beside_the_store(etl)

    for kind, objects in (("source", ("pgsrc", "httpsrc", "httpbasic", "httpecho")),
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
    exporting = etl("export", "-o", str(exported))
    seen.texts += [exported.read_text(), exporting.stderr]
    seen.texts.append(etl("diff", "-f", str(exported), code=None).stdout)
    seen.texts.append(etl("settings", "show", "--json", env=env).stdout)
    seen.texts.append(etl("schedule", "list", "--json").stdout)
    job = JobEnvironment(program=("/usr/bin/etlctl",), home=str(tmp_path))
    for connection in etl.store.read().connections():
        if connection.schedule != "manual":
            seen.texts.append(entry_for(etl.store_path, connection, job))

    leaks = [text for text in seen.texts if PREFIX in text]
    excerpts = [text[max(0, text.find(PREFIX) - 200) :][:400] for text in leaks]
    assert leaks == [], f"a sentinel leaked: {excerpts}"

    assert len(seen.containers) >= 2 * len(names), "every container was inspected"
    for container in seen.containers:
        host = container["HostConfig"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        # Only the run file's path; the image may add its own (PATH, ...), never a value of ours.
        assert "ETLCTL_RUN_FILE=/etlctl/run.json" in container["Config"]["Env"]
        mounts = [mount["Source"] for mount in container["Mounts"]]
        assert not any("docker.sock" in source for source in mounts), mounts
        assert container["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
