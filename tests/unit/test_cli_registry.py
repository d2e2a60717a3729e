"""The registry commands through typer's CliRunner, asserting on the store and the output."""

from __future__ import annotations

import json

import pytest
import yaml

from etlctl.cli.main import app
from etlctl.store import Store


def _registered(cli, tmp_path):
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path}/users.csv")
    cli(
        "loader",
        "add",
        "wh",
        "--type",
        "postgres",
        "--config",
        "host=127.0.0.1",
        "--config",
        "port=5432",
        "--config",
        "dbname=wh",
        "--config",
        "user=etl",
        "--config",
        "password=s3cr3t-sentinel",
        "--config",
        "table=users",
    )
    cli("connection", "add", "users-to-wh", "--source", "users", "--loader", "wh")


def test_version(cli):
    assert cli("--version").stdout.startswith("etlctl 0.1.0")


def _leaf_commands(group, path=()):
    """Every command of the CLI, as the argument lists that reach it."""
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands"):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def _all_commands():
    import typer.main

    return sorted(_leaf_commands(typer.main.get_command(app)))


def test_the_cli_has_every_command_group():
    groups = {command[0] for command in _all_commands()}
    assert {"source", "loader", "connection", "connectors", "sync", "runs", "logs", "gc",
            "images", "schedule", "apply", "diff", "export"} <= groups


@pytest.mark.parametrize("command", _all_commands(), ids=" ".join)
def test_every_command_help_has_a_purpose_and_an_example(cli, command):
    text = cli(*command, "--help").stdout
    assert "Usage" in text
    assert "Examples" in text and "etlctl " in text, f"{' '.join(command)} --help has no example"


def test_add_list_show_with_ids_and_masked_secrets(cli, tmp_path, store_path):
    _registered(cli, tmp_path)
    listed = json.loads(cli("source", "list", "--json").stdout)
    assert [item["name"] for item in listed] == ["users"]
    shown = json.loads(cli("loader", "show", "wh", "--json").stdout)
    assert shown["id"].startswith("ldr_")
    assert shown["config"]["password"] == "********"
    assert shown["config"]["port"] == 5432  # typed by the spec, not a string
    for output in (cli("loader", "show", "wh").stdout, cli("loader", "list", "--json").stdout):
        assert "s3cr3t-sentinel" not in output
    # The store keeps the real value: the loader needs it.
    assert Store(store_path).read().get("loader", "wh").config["password"] == "s3cr3t-sentinel"
    connection = json.loads(cli("connection", "show", "users-to-wh", "--json").stdout)
    assert connection["id"].startswith("con_") and connection["state"] is None


def test_ids_are_stable_across_updates(cli, tmp_path):
    _registered(cli, tmp_path)
    before = json.loads(cli("source", "show", "users", "--json").stdout)
    cli("source", "update", "users", "--config", "delimiter=;")
    after = json.loads(cli("source", "show", "users", "--json").stdout)
    assert after["id"] == before["id"]
    assert after["config"] == {"path": f"{tmp_path}/users.csv", "delimiter": ";"}
    assert (
        cli("source", "update", "users", "--config", "delimiter=;")
        .stdout.strip()
        .endswith("unchanged")
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "csv"], "missing required config field 'path'"),
        (
            ["--type", "csv", "--config", "path=/x", "--config", "colour=red"],
            "unknown config field 'colour'",
        ),
        (
            ["--type", "csv", "--config", "path=/x", "--config", "header=maybe"],
            "'header' must be true or false",
        ),
        (["--type", "nosuch"], "unknown extractor type 'nosuch'"),
        (["--type", "csv", "--config", "novalue"], "--config expects KEY=VALUE"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(cli, store_path, args, message):
    result = cli("source", "add", "users", *args, code=2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error and its hint
    assert not store_path.exists()  # nothing written


@pytest.mark.parametrize("name", ["Users", "-x", "a b", "a;rm -rf", "a\nb", "../x", "x" * 64, ""])
def test_invalid_names_are_refused(cli, store_path, name):
    result = cli("source", "add", "--type", "csv", "--config", "path=/x", "--", name, code=2)
    assert "invalid source name" in result.stderr
    assert not store_path.exists()


def test_removing_a_used_source_is_refused_naming_the_connection(cli, tmp_path, store_path):
    _registered(cli, tmp_path)
    before = store_path.read_bytes()
    result = cli("source", "remove", "users", code=4)
    assert "used by connection(s): users-to-wh" in result.stderr
    assert store_path.read_bytes() == before
    cli("connection", "remove", "users-to-wh")
    cli("source", "remove", "users")
    assert Store(store_path).read().sources() == []


def test_duplicates_and_missing_objects(cli, tmp_path):
    _registered(cli, tmp_path)
    assert (
        "exists already"
        in cli("source", "add", "users", "--type", "csv", "--config", "path=/x", code=4).stderr
    )
    assert "does not exist" in cli("source", "show", "nope", code=3).stderr
    result = cli("connection", "add", "c2", "--source", "nope", "--loader", "wh", code=2)
    assert "source 'nope'" in result.stderr


def test_connection_modes_need_their_fields(cli, tmp_path):
    _registered(cli, tmp_path)
    assert (
        "needs --cursor-field"
        in cli(
            "connection",
            "add",
            "inc",
            "--source",
            "users",
            "--loader",
            "wh",
            "--mode",
            "incremental",
            code=2,
        ).stderr
    )
    assert (
        "needs --primary-key"
        in cli(
            "connection",
            "add",
            "dd",
            "--source",
            "users",
            "--loader",
            "wh",
            "--mode",
            "dedup",
            code=2,
        ).stderr
    )
    cli(
        "connection",
        "add",
        "dd",
        "--source",
        "users",
        "--loader",
        "wh",
        "--mode",
        "dedup",
        "--primary-key",
        "id, region",
        "--cursor-field",
        "updated_at",
    )
    shown = json.loads(cli("connection", "show", "dd", "--json").stdout)
    assert shown["primary_key"] == ["id", "region"]


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        ("*/15 * * * *", True),
        ("@daily", True),
        ("manual", True),
        ("61 * * * *", False),
        ("* * *", False),
        ("@sometimes", False),
        ("* * * * *\n* * * * * rm -rf /", False),
    ],
)
def test_schedules_are_validated(cli, tmp_path, schedule, ok):
    _registered(cli, tmp_path)
    result = cli("connection", "update", "users-to-wh", "--schedule", schedule, code=0 if ok else 2)
    if not ok:
        assert "schedule" in result.stderr


def test_config_file_yaml_and_json(cli, tmp_path):
    (tmp_path / "src.yaml").write_text("path: /data/a.csv\ndelimiter: ';'\nheader: true\n")
    cli("source", "add", "a", "--type", "csv", "--config-file", str(tmp_path / "src.yaml"))
    (tmp_path / "src.json").write_text('{"path": "/data/b.csv", "header": "yes"}')
    result = cli(
        "source", "add", "b", "--type", "csv", "--config-file", str(tmp_path / "src.json"), code=2
    )
    assert "'header' must be of type boolean" in result.stderr
    (tmp_path / "dup.yaml").write_text("path: /a\npath: /b\n")
    result = cli(
        "source", "add", "c", "--type", "csv", "--config-file", str(tmp_path / "dup.yaml"), code=2
    )
    assert "duplicate key 'path'" in result.stderr


def test_broken_store_is_a_clear_error(cli, store_path):
    store_path.parent.mkdir(parents=True)
    store_path.write_text("")
    result = cli("source", "list", code=5)
    assert "is empty" in result.stderr and "Traceback" not in result.stderr
    result = cli("source", "add", "x", "--type", "csv", "--config", "path=/x", code=5)
    assert store_path.read_text() == ""


def test_debug_prints_the_traceback(cli, store_path):
    store_path.parent.mkdir(parents=True)
    store_path.write_text("{")
    assert "Traceback" in cli("--debug", "source", "list", code=5).stderr


def test_connectors_list_and_spec(cli):
    listed = json.loads(cli("connectors", "list", "--json").stdout)
    pairs = {(item["role"], item["type"]) for item in listed}
    for extractor in ("csv", "jsonl", "http", "sqlite", "postgres"):
        assert ("extractor", extractor) in pairs
    for loader in ("jsonl", "csv", "sqlite", "postgres", "amqp"):
        assert ("loader", loader) in pairs
    spec = json.loads(cli("connectors", "spec", "postgres", "--role", "loader").stdout)
    assert spec["properties"]["password"]["secret"] is True
    assert "table" in spec["required"] or "table" in json.dumps(spec)
    assert "unknown" in cli("connectors", "spec", "nosuch", code=2).stderr


def test_reset_clears_state(cli, tmp_path, store_path):
    from etlctl.models import SyncState

    _registered(cli, tmp_path)
    with Store(store_path).transaction() as view:
        view.save_state(SyncState(connection="users-to-wh", state={"cursor": "2024-01-01"}))
    shown = json.loads(cli("connection", "show", "users-to-wh", "--json").stdout)
    assert shown["state"]["streams"][""]["state"] == {"cursor": "2024-01-01"}
    assert "2024-01-01" in cli("connection", "reset", "users-to-wh").stdout
    after = Store(store_path).read().get_state("users-to-wh")
    assert after.state is None and after.reset_at is not None  # remembered, not just dropped


def test_remove_reset_and_prune_of_a_syncing_connection_are_refused(cli, tmp_path, store_path):
    from etlctl.locks import connection_lock
    from etlctl.models import SyncState

    _registered(cli, tmp_path)
    with Store(store_path).transaction() as view:
        view.save_state(SyncState(connection="users-to-wh", state={"cursor": 7}))
    before = store_path.read_bytes()
    with connection_lock(Store(store_path), "users-to-wh"):  # what a running sync holds
        removed = cli("connection", "remove", "users-to-wh", code=4)
        reset = cli("connection", "reset", "users-to-wh", code=4)
    assert "cannot remove connection 'users-to-wh' while it is syncing" in removed.stderr
    assert "cannot reset connection 'users-to-wh' while it is syncing" in reset.stderr
    assert store_path.read_bytes() == before
    # Not syncing: both work again.
    cli("connection", "reset", "users-to-wh")
    cli("connection", "remove", "users-to-wh")
    assert Store(store_path).read().find("connection", "users-to-wh") is None


def test_relative_paths_are_stored_absolute(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("source", "add", "rel", "--type", "csv", "--config", "path=data/users.csv")
    shown = json.loads(cli("source", "show", "rel", "--json").stdout)
    assert shown["config"]["path"] == str(tmp_path / "data" / "users.csv")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "src.yaml").write_text("path: ../in/*.csv\n")
    cli("source", "add", "fromfile", "--type", "csv", "--config-file", "conf/src.yaml")
    shown = json.loads(cli("source", "show", "fromfile", "--json").stdout)
    assert shown["config"]["path"] == str(tmp_path / "in" / "*.csv")


def test_settings_are_validated_kept_in_the_store_and_masked(cli, store_path):
    cli("settings", "set", "amqp_url", "amqp://etl:pw-sentinel@127.0.0.1:5672/%2F")
    cli("settings", "set", "runtime", "local")
    shown = json.loads(cli("settings", "show", "--json").stdout)
    assert shown["amqp_url"] == "amqp://etl:***@127.0.0.1:5672/%2F"
    assert shown["runtime"] == "local" and shown["network"] == "host"
    stored = Store(store_path).read().settings()["amqp_url"]
    assert stored.endswith("pw-sentinel@127.0.0.1:5672/%2F")
    assert "unknown setting" in cli("settings", "set", "colour", "red", code=2).stderr
    assert "runtime must be one of" in cli("settings", "set", "runtime", "k8s", code=2).stderr
    cli("settings", "unset", "runtime")
    assert json.loads(cli("settings", "show", "--json").stdout)["runtime"] == "docker"


def test_allow_empty_is_off_by_default_and_set_by_add_and_update(cli, tmp_path):
    _registered(cli, tmp_path)

    def allowed(name: str) -> bool:
        return json.loads(cli("connection", "show", name, "--json").stdout)["allow_empty"]

    cli("connection", "add", "strict", "--source", "users", "--loader", "wh")
    cli("connection", "add", "lenient", "--source", "users", "--loader", "wh", "--allow-empty")
    assert (allowed("strict"), allowed("lenient")) == (False, True)
    assert "empty source: refused in full_refresh" in cli("connection", "show", "strict").stdout
    cli("connection", "update", "strict", "--allow-empty")
    cli("connection", "update", "lenient", "--no-allow-empty")
    assert (allowed("strict"), allowed("lenient")) == (True, False)
    assert "unchanged" in cli("connection", "update", "lenient", "--mode", "full_refresh").stdout
    assert allowed("lenient") is False


BAD_FILTERS = {
    "amount >= 10 and amount <= 20": "'10 and amount <= 20' is not a value; a condition is "
                                     "COLUMN OP VALUE, one per list item (all must hold)",
    'amount > "10"': "'10' is text, and text compares character by character ('9' > '10'); "
                     "to compare numbers write the number unquoted: amount > 10",
}


@pytest.mark.parametrize("condition", list(BAD_FILTERS))
def test_a_filter_that_cannot_work_is_refused_by_connection_add_and_update(
    cli, tmp_path, store_path, condition
):
    _registered(cli, tmp_path)
    cli("connection", "add", "c", "--source", "users", "--loader", "wh")
    transform = tmp_path / "transform.yaml"
    transform.write_text(yaml.safe_dump({"filter": [condition]}))
    before = store_path.read_bytes()
    for command in (("add", "c2", "--source", "users", "--loader", "wh"), ("update", "c")):
        result = cli("connection", *command, "--transform-file", str(transform), code=2)
        assert result.stderr.splitlines() == [
            f"error: invalid transform: filter {condition!r}: {BAD_FILTERS[condition]}"
            + ("; OP is ==, !=, >, >=, <, <=, in, not in, is null, is not null; VALUE is a "
               "number (10), quoted text ('GB'), true/false, or a list ([1, 2])"
               if " and " in condition else ""),
            "hint: see docs/transform.md",
        ]
        assert store_path.read_bytes() == before
