"""Alerts against a real HTTP receiver on loopback: retries with backoff, exactly one
notification per run, freshness once per period, secrets masked."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from etlctl import alerts, registry
from etlctl.errors import ValidationError
from etlctl.models import Run, RunStatus, utcnow
from etlctl.store import Store
from serve_support import Receiver

SECRET = "SENTINEL-hook-3b9d"


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(answers: list[int] | None = None) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def store(store_path, tmp_path):
    store = Store(store_path)
    (tmp_path / "u.csv").write_text("id\n1\n")
    registry.add_connector_object(store, "source", "src", "csv", {"path": str(tmp_path / "u.csv")})
    registry.add_connector_object(store, "loader", "dst", "jsonl", {"path": str(tmp_path / "o")})
    registry.add_connection(store, registry.new_connection("c", "src", "dst"))
    return store


def failed_run() -> Run:
    return Run(connection="c", status=RunStatus.FAILED, error="boom", ended_at=utcnow())


def test_a_failed_run_is_notified_once_after_the_receiver_failed_first(store, receiver):
    hook = receiver([500, 503])
    alerts.set_rule(store, alerts.build_rule("*", webhook=hook.url, headers={"X-Token": SECRET}))
    run = failed_run()
    assert alerts.notify_run(store, run) is True  # waits the real backoff: 1 s, then 2 s
    assert len(hook.received) == 3  # 500, 503, then delivered
    headers, body = hook.received[-1]
    assert headers["X-Token"] == SECRET
    assert body["run_id"] == run.id and body["status"] == "failed" and body["error"] == "boom"
    assert body["event"] == "failure" and body["connection"] == "c"
    # Success is not wanted by this rule; a cancel or a skipped firing never alerts.
    ok = Run(connection="c", status=RunStatus.SUCCEEDED, ended_at=utcnow())
    assert alerts.notify_run(store, ok) is False
    assert alerts.notify_run(store, Run(connection="c", status=RunStatus.CANCELLED)) is False
    assert len(hook.received) == 3
    hook.answers = [500, 500, 500, 500]
    waits: list[float] = []
    assert alerts.deliver(alerts.rules(store.read())[0], {"x": 1}, sleep=waits.append) == [
        "the webhook of the '*' alert failed: HTTP 500"
    ]
    assert waits == [1.0, 2.0, 4.0]


def test_a_refusing_receiver_is_not_retried(store, receiver):
    hook = receiver([400])
    rule = alerts.build_rule("c", webhook=hook.url, on=["failure", "success"])
    assert alerts.deliver(rule, {"x": 1}, sleep=lambda _: None) == [
        "the webhook of the 'c' alert failed: HTTP 400"
    ]
    assert len(hook.received) == 1


def test_headers_are_masked_and_kept_when_sent_back_masked(store, receiver):
    hook = receiver()
    alerts.set_rule(store, alerts.build_rule("c", webhook=hook.url, headers={"X-Token": SECRET}))
    shown = alerts.masked(alerts.rules(store.read())[0])
    assert shown["headers"] == {"X-Token": "********"} and SECRET not in json.dumps(shown)
    alerts.set_rule(store, alerts.build_rule("c", webhook=hook.url, headers=shown["headers"]))
    assert alerts.rules(store.read())[0].headers == {"X-Token": SECRET}


def test_freshness_alerts_once_per_period(store, receiver):
    hook = receiver()
    alerts.set_rule(store, alerts.build_rule("c", webhook=hook.url, stale_after_seconds=3600))
    created = store.read().get("connection", "c").created_at
    assert alerts.check_freshness(store, now=created + timedelta(minutes=30)) == []
    assert alerts.check_freshness(store, now=created + timedelta(hours=2)) == ["c"]
    assert alerts.check_freshness(store, now=created + timedelta(hours=2, minutes=5)) == []
    assert alerts.check_freshness(store, now=created + timedelta(hours=3, minutes=5)) == ["c"]
    assert [body["event"] for _, body in hook.received] == ["stale", "stale"]
    # A success resets the clock.
    run = Run(connection="c", status=RunStatus.SUCCEEDED)
    run.ended_at = created + timedelta(hours=4)
    with store.transaction() as view:
        view.save_run(run)
    assert alerts.check_freshness(store, now=created + timedelta(hours=4, minutes=30)) == []


def test_bad_rules_are_one_clear_line(store):
    with pytest.raises(ValidationError, match="needs a webhook or a command"):
        alerts.set_rule(store, alerts.build_rule("c"))
    with pytest.raises(ValidationError, match="webhook: the webhook must be an http"):
        alerts.build_rule("c", webhook="ftp://x")
    with pytest.raises(ValidationError, match="invalid duration"):
        alerts.parse_duration("soon")
    assert alerts.parse_duration("6h") == 21600 and alerts.parse_duration("90") == 90
    with pytest.raises(Exception, match="does not exist"):
        alerts.set_rule(store, alerts.build_rule("nope", command="true"))


def test_the_cli_sets_and_shows_alerts_with_headers_masked(cli, store, receiver):
    hook = receiver()
    cli("alerts", "set", "--default", "--webhook", hook.url, "--header", f"X-Token={SECRET}",
        "--header", "X-Ref=env:HOOK_TOKEN", "--stale-after", "6h")  # fmt: skip
    shown = cli("alerts", "show", "--json").stdout
    assert SECRET not in shown + cli("alerts", "show").stdout
    rule = json.loads(shown)[0]
    assert rule["headers"] == {"X-Token": "********", "X-Ref": {"fromEnv": "HOOK_TOKEN"}}
    assert rule["stale_after_seconds"] == 21600
    refused = cli("alerts", "set", "c", "--default", "--command", "true", code=2)
    assert refused.stderr.startswith("error: name a connection or pass --default")
    refused = cli("alerts", "set", "nope", "--command", "true", code=3)
    assert "connection 'nope' does not exist" in refused.stderr
    cli("alerts", "remove", "--default")
    assert json.loads(cli("alerts", "show", "--json").stdout) == []
