"""What a usability pass found: output that broke on data, messages that did not say what to
do, defaults that ignored the settings. CliRunner against a throwaway store; no services."""

from __future__ import annotations

import json

import pytest

from etlctl import leftovers, orchestrator
from etlctl.broker import Broker, redact_url
from etlctl.errors import ValidationError
from etlctl.models import Run, RunStatus, SyncState
from etlctl.store import Store

MARKUP = "bad [/x] value [bold]kept[/bold]"


@pytest.fixture
def registered(cli, tmp_path):
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path}/users.csv")
    cli("loader", "add", "warehouse", "--type", "sqlite", "--config", f"path={tmp_path}/wh.db",
        "--config", "table=users")
    cli("connection", "add", "users-to-wh", "--source", "users", "--loader", "warehouse")


def _save_run(store_path, **fields) -> Run:
    run = Run(connection="users-to-wh", **fields)
    with Store(store_path).transaction() as view:
        view.save_run(run)
    return run


# --- text from outside is never rich markup ---------------------------------------------------
def test_runs_list_shows_an_error_with_brackets_as_it_is(cli, registered, store_path):
    # "[/x]" used to raise rich's MarkupError: a traceback on every `runs list` after that run
    _save_run(store_path, status=RunStatus.FAILED, error=f"no file matches '/data{MARKUP}'")
    out = cli("runs", "list").stdout
    assert "[/x]" in out and "[bold]kept" in out


def test_runs_list_cuts_long_errors_with_an_ellipsis(cli, registered, store_path):
    _save_run(store_path, status=RunStatus.FAILED, error="x" * 70 + " the part that matters")
    out = cli("runs", "list").stdout
    assert "…" in out and "the part that matters" not in out


def test_reset_prints_a_state_with_brackets_as_json(cli, registered, store_path):
    with Store(store_path).transaction() as view:
        view.save_state(SyncState(connection="users-to-wh", state={"cursor": MARKUP}))
    out = cli("connection", "reset", "users-to-wh").stdout
    assert json.dumps({"cursor": MARKUP}) in out


# --- schedules ----------------------------------------------------------------------------------
def test_a_schedule_that_never_fires_is_refused(cli, registered):
    result = cli("connection", "update", "users-to-wh", "--schedule", "0 0 31 2 *", code=2)
    assert "never fires" in result.stderr


def test_a_stored_schedule_that_never_fires_is_an_error_naming_the_fix(cli, registered, store_path):
    # a store written before such schedules were refused: `schedule list` was a traceback
    with Store(store_path).transaction() as view:
        conn = view.get("connection", "users-to-wh")
        view.save(conn.model_copy(update={"schedule": "0 0 31 2 *"}))
    for command in (("schedule", "list"), ("schedule", "list", "--json"), ("schedule", "apply")):
        result = cli(*command, code=2)
        assert "connection 'users-to-wh': invalid schedule '0 0 31 2 *'" in result.stderr
        assert "etlctl connection update users-to-wh --schedule" in result.stderr
        assert result.stdout == ""
    cli("connection", "update", "users-to-wh", "--schedule", "@daily")
    assert "users-to-wh" in cli("schedule", "list").stdout


def test_out_of_range_cron_field_is_named(cli, registered):
    result = cli("connection", "update", "users-to-wh", "--schedule", "0 24 * * *", code=2)
    assert "the hour field '24'" in result.stderr and "0-23" in result.stderr


# --- names: typos get a suggestion, grammar ------------------------------------------------------
def test_a_typo_in_a_name_suggests_the_close_one(cli, registered):
    result = cli("source", "show", "user", code=3)
    assert "did you mean 'users'?" in result.stderr
    assert "etlctl source list" in result.stderr


def test_a_missing_reference_says_which_and_suggests(cli, registered):
    result = cli("connection", "add", "c2", "--source", "usres", "--loader", "warehouse", code=2)
    assert "source 'usres', which does not exist" in result.stderr
    assert "did you mean source 'users'?" in result.stderr
    assert "create it first: etlctl source add" in result.stderr


def test_a_typo_in_a_connector_type_suggests_the_close_one(cli):
    assert "did you mean 'csv'?" in cli("source", "add", "x", "--type", "cvs", code=2).stderr
    result = cli("connectors", "spec", "cvs", code=2)
    assert "unknown connector type 'cvs'" in result.stderr
    assert "did you mean 'csv'?" in result.stderr
    assert "--image" not in result.stderr  # not relevant to `connectors spec`


def test_connectors_spec_refuses_an_unknown_role(cli):
    result = cli("connectors", "spec", "csv", "--role", "lodr", code=2)
    assert "--role must be extractor or loader" in result.stderr


# --- broker URLs and timeouts are input: exit 2, password never shown ----------------------------
def test_a_non_amqp_url_is_invalid_input_not_an_unavailable_service(cli):
    result = cli("settings", "set", "amqp_url", "http://etl:pw-sentinel@mq:5672/", code=2)
    assert "must start with amqp://" in result.stderr and "pw-sentinel" not in result.stderr
    with pytest.raises(ValidationError):
        Broker.connect("http://etl:pw-sentinel@127.0.0.1:1/")


def test_a_malformed_url_is_reported_without_a_traceback_or_its_password(cli):
    result = cli("settings", "set", "amqp_url", "amqp://etl:pw-sentinel@[::1/", code=2)
    assert "malformed" in result.stderr and "pw-sentinel" not in result.stderr
    assert redact_url("amqp://etl:pw-sentinel@[::1/") == "amqp://etl:***@[::1/"
    with pytest.raises(ValidationError) as caught:
        Broker.connect("amqp://etl:pw-sentinel@[::1/")
    assert "pw-sentinel" not in str(caught.value)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_sync_refuses_a_timeout_that_is_not_positive(cli, registered, timeout):
    # --timeout 0 used to start a sync, fail it at once and record a failed run
    result = cli("sync", "users-to-wh", f"--timeout={timeout}", code=2)
    assert "positive number of seconds" in result.stderr


@pytest.mark.parametrize("timeout", ["nan", "inf", "0"])
def test_settings_refuse_a_timeout_that_is_not_a_positive_number(cli, timeout):
    assert "positive number" in cli("settings", "set", "timeout", timeout, code=2).stderr


# --- `source check` and `gc` use the settings, as `sync` does -------------------------------------
def test_check_uses_the_runtime_and_network_settings(cli, registered, monkeypatch):
    seen = {}

    def fake_check(store, kind, name, runtime_name, network):
        seen.update(runtime=runtime_name, network=network)
        return orchestrator.CheckResult(ok=False, message="file not found: /nope.csv")

    monkeypatch.setattr(orchestrator, "check_connector", fake_check)
    cli("settings", "set", "runtime", "local")
    cli("settings", "set", "network", "etl-net")
    result = cli("source", "check", "users", code=1)
    assert seen == {"runtime": "local", "network": "etl-net"}
    assert "hint: fix its config with: etlctl source update users" in result.stderr
    cli("source", "check", "users", "--runtime", "docker", "--network", "host", code=1)
    assert seen == {"runtime": "docker", "network": "host"}


def test_gc_uses_the_runtime_setting(cli, monkeypatch):
    seen = {}

    def fake_gc(store, runtime_name, amqp_url):
        seen["runtime"] = runtime_name
        return leftovers.GcReport()

    monkeypatch.setattr(leftovers, "collect_garbage", fake_gc)
    cli("settings", "set", "runtime", "local")
    assert "nothing to clean up" in cli("gc").stdout
    assert seen == {"runtime": "local"}


# --- runs and logs -----------------------------------------------------------------------------
def test_logs_of_a_run_without_a_log_is_not_found(cli, registered, store_path):
    run = _save_run(store_path, status=RunStatus.SKIPPED, error="did not start: locked")
    result = cli("logs", run.id, code=3)
    assert "has no log" in result.stderr and f"etlctl runs show {run.id}" in result.stderr


def test_runs_of_an_unknown_connection_has_a_hint(cli, registered):
    assert "etlctl connection list" in cli("runs", "list", "nope", code=3).stderr


def test_an_error_before_the_first_row_does_not_say_row_0():
    event = {"role": "extractor", "message": "cannot connect", "position": {"row": 0}}
    assert orchestrator._describe_error_event(event) == "extractor: cannot connect"
    event["position"] = {"file": "/d/a.csv", "line": 7}
    assert orchestrator._describe_error_event(event).endswith("(file /d/a.csv, line 7)")
