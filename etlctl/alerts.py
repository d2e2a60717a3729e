"""Alerts: tell someone when a run fails (or succeeds), and when a connection has had no
successful run for too long.

Rules live in the store (table ``alerts``), one per connection and one default (scope
``*``) for connections without their own. A rule has a webhook (POST of a JSON document,
retried with backoff; its headers may hold secrets, masked in every output and given as
references like config secrets) and/or a command (run without a shell, the JSON on stdin).

Runs are notified by the process that ran them (``run_sync``'s caller), so syncs started
from a shell, cron or ``etlctl serve`` alert alike. A notification that cannot be delivered
is reported on stderr and never changes the run's outcome. Freshness
(``stale_after_seconds``) is checked by every scheduled sync and by ``etlctl alerts check``.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from etlctl import catalog
from etlctl.errors import EtlctlError, NotFoundError, ValidationError
from etlctl.models import Run, RunStatus, _Model, utcnow, validate_name
from etlctl.registry import build_model
from etlctl.store import Store, StoreView

DEFAULT_SCOPE = "*"
WEBHOOK_ATTEMPTS = 4
WEBHOOK_TIMEOUT_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 60.0
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Event = Literal["failure", "success"]


class AlertRule(_Model):
    scope: str  # a connection name, or "*" for every connection without a rule of its own
    on: list[Event] = Field(default_factory=lambda: ["failure"])
    webhook: str | None = None
    headers: dict[str, Any] = Field(default_factory=dict)  # values are secrets: masked
    command: str | None = None
    stale_after_seconds: float | None = None
    # When each connection was last told stale (one alert per period, not one per check).
    stale_alerted: dict[str, datetime] = Field(default_factory=dict)

    @field_validator("scope")
    @classmethod
    def _valid_scope(cls, value: str) -> str:
        return value if value == DEFAULT_SCOPE else validate_name(value, "connection name")

    @field_validator("webhook")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("the webhook must be an http:// or https:// URL")
        return value


def build_rule(scope: str, **fields: Any) -> AlertRule:
    """A validated rule, or the ValidationError a user reads (field and reason)."""
    return build_model(AlertRule, scope=scope, **fields)


def parse_duration(text: str) -> float:
    """'6h', '30m', '2d', '90s' or plain seconds."""
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in DURATION_UNITS else raw
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ValidationError(f"invalid duration {text!r}", hint="for example: 6h, 30m, 2d or 3600")
    return seconds


def masked(rule: AlertRule) -> dict[str, Any]:
    """The rule as output shows it: header values masked (references shown as they are)."""
    doc = rule.to_doc()
    doc["headers"] = {
        name: value if catalog.is_secret_ref(value) else catalog.MASK
        for name, value in rule.headers.items()
    }
    return doc


# --- rules in the store ------------------------------------------------------------------
def rules(view: StoreView) -> list[AlertRule]:
    return sorted(
        (AlertRule.model_validate(doc) for doc in view.alert_rules()), key=lambda r: r.scope
    )


def rule_for(view: StoreView, connection: str) -> AlertRule | None:
    found = {rule.scope: rule for rule in rules(view)}
    return found.get(connection) or found.get(DEFAULT_SCOPE)


def set_rule(store: Store, rule: AlertRule) -> AlertRule:
    if not (rule.webhook or rule.command):
        raise ValidationError(
            "an alert needs a webhook or a command",
            hint="for example: etlctl alerts set --default --webhook https://hooks.example.com/x",
        )
    with store.transaction() as view:
        if rule.scope != DEFAULT_SCOPE:
            view.get("connection", rule.scope)
        current = {old.scope: old for old in rules(view)}.get(rule.scope)
        kept = current.headers if current is not None else {}
        for name, value in rule.headers.items():
            if value == catalog.MASK and name not in kept:
                raise ValidationError(f"the webhook header {name!r} has no value")
        # A header sent back as shown (masked) keeps its value.
        rule.headers = {
            name: kept[name] if value == catalog.MASK else value
            for name, value in rule.headers.items()
        }
        view.save_alert_rule(rule.to_doc())
    return rule


def remove_rule(store: Store, scope: str) -> None:
    with store.transaction() as view:
        if not view.delete_alert_rule(scope):
            raise NotFoundError(f"no alert for {scope!r}", hint="see: etlctl alerts show")


# --- delivering ----------------------------------------------------------------------------
def payload(run: Run, event: str) -> dict[str, Any]:
    return {
        "event": event,
        "connection": run.connection,
        "run_id": run.id,
        "status": run.status.value,
        "error": run.error,
        "trigger": run.trigger,
        "records_extracted": run.records_extracted,
        "records_loaded": run.records_loaded,
        "records_skipped": run.records_skipped,
        "started_at": run.started_at.isoformat(),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "duration_seconds": run.duration_seconds,
    }


def _post(rule: AlertRule, document: dict[str, Any], sleep: Callable[[float], None]) -> None:
    import httpx

    headers = {str(k): str(v) for k, v in catalog.resolve_secret_refs(rule.headers).items()}
    delay = FIRST_BACKOFF_SECONDS
    problem = "not sent"
    for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
        try:
            answer = httpx.post(
                rule.webhook or "", json=document, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}"
        else:
            if answer.status_code < 300:
                return
            problem = f"HTTP {answer.status_code}"
            if answer.status_code < 500 and answer.status_code != 429:
                break  # the receiver refuses it: sending again will not help
        if attempt < WEBHOOK_ATTEMPTS:
            sleep(delay)
            delay *= 2
    raise EtlctlError(f"the webhook of the {rule.scope!r} alert failed: {problem}")


def _run_command(rule: AlertRule, document: dict[str, Any]) -> None:
    try:
        done = subprocess.run(
            shlex.split(rule.command or ""),
            input=json.dumps(document),
            text=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EtlctlError(f"the command of the {rule.scope!r} alert failed: {exc}") from None
    if done.returncode != 0:
        raise EtlctlError(
            f"the command of the {rule.scope!r} alert exited with code {done.returncode}"
        )


def deliver(
    rule: AlertRule, document: dict[str, Any], sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """Send one notification by every means the rule has; returns the problems."""
    problems = []
    for send, wanted in ((_post, rule.webhook), (_run_command, rule.command)):
        if not wanted:
            continue
        try:
            send(rule, document, sleep) if send is _post else send(rule, document)
        except EtlctlError as exc:
            problems.append(exc.message)
    return problems


def notify_run(store: Store, run: Run, report: Callable[[str], None] | None = None) -> bool:
    """Notify the ended run to whom its rule says; True when a notification was due."""
    # A cancel is someone's decision and a skipped firing (the previous run still runs) no
    # failure: neither alerts.
    event = {RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "failure"}.get(run.status)
    if event is None:
        return False
    try:
        rule = rule_for(store.read(), run.connection)
    except EtlctlError:
        return False
    if rule is None or event not in rule.on:
        return False
    for problem in deliver(rule, payload(run, event)):
        (report or _stderr)(f"alert not delivered: {problem}")
    return True


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_freshness(
    store: Store, now: datetime | None = None, report: Callable[[str], None] | None = None
) -> list[str]:
    """Alert, once per period, for each connection whose last success is too old."""
    now = now or utcnow()
    view = store.read()
    totals = view.run_totals()
    last_runs = view.last_runs()
    stale: list[tuple[AlertRule, dict[str, Any]]] = []
    for connection in view.connections():
        rule = rule_for(view, connection.name)
        if rule is None or rule.stale_after_seconds is None:
            continue
        limit = timedelta(seconds=rule.stale_after_seconds)
        success = totals.get(connection.name, {}).get("last_success_at")
        since = datetime.fromisoformat(success) if success else connection.created_at
        if now - since <= limit:
            continue
        told_at = rule.stale_alerted.get(connection.name)
        if told_at is not None and now - told_at <= limit:
            continue  # told already within this period
        last = last_runs.get(connection.name)
        stale.append(
            (
                rule,
                {
                    "event": "stale",
                    "connection": connection.name,
                    "last_success_at": success,
                    "stale_after_seconds": rule.stale_after_seconds,
                    "last_run_id": last.id if last else None,
                    "last_run_status": last.status.value if last else None,
                },
            )
        )
    told = []
    for rule, document in stale:
        for problem in deliver(rule, document):
            (report or _stderr)(f"alert not delivered: {problem}")
        told.append(document["connection"])
        _remember_stale_alert(store, rule.scope, document["connection"], now)
    return told


def _remember_stale_alert(store: Store, scope: str, connection: str, now: datetime) -> None:
    with contextlib.suppress(EtlctlError), store.transaction(timeout=10) as view:
        for rule in rules(view):
            if rule.scope == scope:
                rule.stale_alerted = {**rule.stale_alerted, connection: now}
                view.save_alert_rule(rule.to_doc())
