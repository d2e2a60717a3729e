"""`etlctl serve`'s REST API: a real server process, real HTTP, the same store as the CLI.

No Docker needed here: syncs through the API are in test_serve_sync.py.
"""

from __future__ import annotations

import json
import stat
import subprocess

import pytest

from serve_support import SENTINEL, etlctl_argv, running_server, server_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (each start costs seconds on a busy machine); the tests
    use names of their own."""
    with running_server(tmp_path_factory.mktemp("serve") / "home" / "store.json") as server:
        yield server
        assert SENTINEL not in server.everything_said()


def cli(server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        etlctl_argv(server.store_path, *args),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=120,
    )


def register(server, tmp_path, name: str = "users") -> None:
    """A CSV source with a secret-bearing twin (postgres), a SQLite loader, a connection."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "users.csv").write_text("id,name\n1,a\n2,b\n")
    created = server.post(
        "/api/v1/sources",
        json={"name": f"{name}-src", "type": "csv", "config": {"path": str(data / "users.csv")}},
    )
    assert created.status_code == 201, created.text
    created = server.post(
        "/api/v1/loaders",
        json={
            "name": f"{name}-dst",
            "type": "sqlite",
            "config": {"path": str(tmp_path / "out" / "wh.db"), "table": "users"},
        },
    )
    assert created.status_code == 201, created.text
    created = server.post(
        "/api/v1/connections",
        json={"name": name, "source": f"{name}-src", "loader": f"{name}-dst"},
    )
    assert created.status_code == 201, created.text


def test_every_call_needs_the_token_kept_0600_beside_the_store(server):
    token_file = server.store_path.parent / "serve.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    shown = cli(server, "serve", "--show-token")
    assert shown.returncode == 0 and shown.stdout.strip() == server.token
    for path in ("/api/v1/connections", "/api/v1/runs", "/metrics", "/api/v1/settings"):
        refused = server.get(path, auth=False)
        assert refused.status_code == 401, path
        assert refused.json()["error"]["message"].startswith("a bearer token is required")
        wrong = server.get(path, auth=False, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    refused = server.post("/api/v1/sources", auth=False, json={"name": "nope", "type": "csv"})
    assert refused.status_code == 401
    assert server.store.read().find("source", "nope") is None
    # The OpenAPI document is public: it holds no data.
    document = server.get("/api/openapi.json", auth=False).json()
    assert "/api/v1/connections/{name}/sync" in document["paths"]
    assert "bearer" in str(document["components"]["securitySchemes"]).lower()


def test_crud_shares_the_store_and_the_cli_s_messages(server, tmp_path):
    register(server, tmp_path)
    listed = cli(server, "connection", "list", "--json")
    assert "users" in [c["name"] for c in json.loads(listed.stdout)]

    # The same invalid input gives the CLI's message and exit code (as an HTTP status).
    bad_api = server.post(
        "/api/v1/sources", json={"name": "x", "type": "csvv", "config": {"path": "/a.csv"}}
    )
    bad_cli = cli(server, "source", "add", "x", "--type", "csvv", "--config", "path=/a.csv")
    assert bad_api.status_code == 422 and bad_cli.returncode == 2
    error = bad_api.json()["error"]
    assert bad_cli.stderr.splitlines()[0] == f"error: {error['message']}"
    assert bad_cli.stderr.splitlines()[1] == f"hint: {error['hint']}"
    assert error["exit_code"] == 2

    in_use = server.request("DELETE", "/api/v1/sources/users-src")
    assert in_use.status_code == 409
    assert in_use.json()["error"]["message"] == (
        "source 'users-src' is used by connection(s): users"
    )
    missing = server.get("/api/v1/connections/usres")
    assert missing.status_code == 404
    assert missing.json()["error"]["hint"] == "did you mean 'users'? (see: etlctl connection list)"
    exists = server.post(
        "/api/v1/connections", json={"name": "users", "source": "users-src", "loader": "users-dst"}
    )
    assert exists.status_code == 409 and exists.json()["error"]["exit_code"] == 4

    changed = server.request(
        "PATCH", "/api/v1/connections/users", json={"mode": "dedup", "primary_key": ["id"]}
    )
    assert changed.status_code == 200, changed.text
    stored = server.store.read().get("connection", "users")
    assert stored.mode.value == "dedup" and stored.primary_key == ["id"]
    refused = server.request("PATCH", "/api/v1/connections/users", json={"schedule": "61 * * * *"})
    assert refused.status_code == 422 and "minute" in refused.json()["error"]["message"]
    assert server.store.read().get("connection", "users").schedule == "manual"

    assert server.request("DELETE", "/api/v1/connections/users").status_code == 204
    assert "users" not in [c.name for c in server.store.read().connections()]


def test_secrets_are_masked_everywhere_and_kept_when_sent_back_masked(server):
    config = {
        "host": "127.0.0.1",
        "user": "etl",
        "password": SENTINEL,
        "dbname": "app",
        "query": "select 1 as id",
    }
    created = server.post(
        "/api/v1/sources", json={"name": "pg", "type": "postgres", "config": config}
    )
    assert created.status_code == 201, created.text
    assert created.json()["config"]["password"] == "********"
    assert server.get("/api/v1/sources/pg").json()["config"]["password"] == "********"
    # A client that sends back what it was shown leaves the secret as it was.
    shown = server.get("/api/v1/sources/pg").json()["config"]
    updated = server.request(
        "PATCH", "/api/v1/sources/pg", json={"config": {**shown, "user": "etl2"}}
    )
    assert updated.status_code == 200, updated.text
    stored = server.store.read().get("source", "pg").config
    assert stored["password"] == SENTINEL and stored["user"] == "etl2"
    # A reference is accepted, and shown as the reference it is.
    ref = server.request(
        "PATCH", "/api/v1/sources/pg", json={"config": {"password": {"fromEnv": "PG_PASSWORD"}}}
    )
    assert ref.json()["config"]["password"] == {"fromEnv": "PG_PASSWORD"}
    server.request("PATCH", "/api/v1/sources/pg", json={"config": {"password": SENTINEL}})
    # Invalid input that carries the secret never echoes it.
    for body in (
        {"name": "pg2", "type": "postgres", "config": {"password": SENTINEL, "port": "x"}},
        {"name": "pg2", "type": "postgres", "config": SENTINEL},
        {"name": "pg2", "type": "postgres", "config": {"password": SENTINEL}, "extra": 1},
        {"name": "pg2", "type": "nosuchtype", "config": {"password": SENTINEL}},
    ):
        refused = server.post("/api/v1/sources", json=body)
        assert refused.status_code == 422
    exported = server.get("/api/v1/export").json()
    assert exported["documents"][0]["spec"]["config"]["password"] == {
        "fromEnv": "ETLCTL_SOURCE_PG_PASSWORD"
    }
    # the fixture greps every response and the server's log for the sentinel


def test_manifests_apply_and_diff_from_the_request_body(server, tmp_path):
    (tmp_path / "u.csv").write_text("id\n1\n")
    manifest = f"""
apiVersion: etlctl/v1
kind: Source
metadata: {{name: m-src}}
spec: {{type: csv, config: {{path: {tmp_path / "u.csv"}}}}}
---
apiVersion: etlctl/v1
kind: Loader
metadata: {{name: m-dst}}
spec: {{type: jsonl, config: {{path: {tmp_path / "out.jsonl"}}}}}
---
apiVersion: etlctl/v1
kind: Connection
metadata: {{name: m}}
spec: {{source: m-src, loader: m-dst}}
"""
    headers = {"Content-Type": "application/yaml"}
    diff = server.post("/api/v1/diff", content=manifest, headers=headers)
    assert diff.status_code == 200, diff.text
    assert diff.json()["counts"]["create"] == 3
    assert server.store.read().find("source", "m-src") is None
    applied = server.post("/api/v1/apply", content=manifest, headers=headers)
    assert applied.status_code == 200 and applied.json()["changed"] is True
    assert server.store.read().get("connection", "m").loader == "m-dst"
    again = server.post("/api/v1/diff", content=manifest, headers=headers).json()
    assert again["changed"] is False
    broken = server.post(
        "/api/v1/apply", content=manifest.replace("source: m-src", "source: nope"), headers=headers
    )
    assert broken.status_code == 422
    assert "nope" in broken.json()["error"]["message"]
    assert server.store.read().get("connection", "m").source == "m-src"
    empty = server.post("/api/v1/apply", content="", headers=headers)
    assert empty.status_code == 422


def test_settings_schedules_and_connectors(server):
    url = f"amqp://etl:{SENTINEL}@127.0.0.1:5672/%2F"
    changed = server.request("PUT", "/api/v1/settings/amqp_url", json={"value": url})
    assert changed.status_code == 200 and changed.json()["amqp_url"].startswith("amqp://etl:***@")
    assert server.store.read().settings()["amqp_url"] == url
    bad = server.request("PUT", "/api/v1/settings/timeout", json={"value": "-1"})
    assert bad.status_code == 422 and "positive" in bad.json()["error"]["message"]
    unknown = server.request("PUT", "/api/v1/settings/colour", json={"value": "x"})
    assert unknown.status_code == 422
    preview = server.get("/api/v1/schedules/preview", params={"schedule": "*/15 * * * *"}).json()
    assert preview["description"].lower().startswith("every 15 minutes")
    assert len(preview["next_runs"]) == 5
    invalid = server.get("/api/v1/schedules/preview", params={"schedule": "0 0 31 2 *"})
    assert invalid.status_code == 422 and "never fires" in invalid.json()["error"]["message"]
    types = {c["type"] for c in server.get("/api/v1/connectors").json()}
    assert {"csv", "postgres", "sqlite"} <= types
    spec = server.get("/api/v1/connectors/extractor/postgres").json()
    assert spec["properties"]["password"]["secret"] is True


def test_a_non_loopback_host_needs_an_explicit_flag(tmp_path):
    result = subprocess.run(
        etlctl_argv(tmp_path / "store.json", "serve", "--host", "0.0.0.0"),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --host 0.0.0.0 is not a loopback address")
    assert "--allow-remote" in result.stderr
