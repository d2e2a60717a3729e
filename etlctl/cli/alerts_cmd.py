"""`etlctl alerts ...`: who is told when a run fails or succeeds, or a connection goes stale."""

from __future__ import annotations

import typer

from etlctl import alerts, catalog
from etlctl.cli.output import app_state, print_json, print_table, say
from etlctl.errors import ValidationError

app = typer.Typer(
    help="Alerts: a webhook and/or a command when a run fails (or succeeds), and when a "
    "connection has had no successful run for too long.",
    no_args_is_help=True,
)


def _scope(connection: str | None, default: bool) -> str:
    if bool(connection) == default:
        raise ValidationError(
            "name a connection or pass --default (exactly one of these)",
            hint="for example: etlctl alerts set --default --webhook https://hooks.example.com/x",
        )
    return alerts.DEFAULT_SCOPE if default else str(connection)


def _headers(pairs: list[str]) -> dict[str, object]:
    """NAME=VALUE, NAME=env:VARIABLE or NAME=file:/path (the last two are references)."""
    headers: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValidationError(f"--header expects NAME=VALUE, got {name.strip()!r}=...")
        if value.startswith("env:"):
            headers[name.strip()] = {"fromEnv": value.removeprefix("env:")}
        elif value.startswith("file:"):
            headers[name.strip()] = {"fromFile": value.removeprefix("file:")}
        else:
            headers[name.strip()] = value
    return headers


@app.command(
    "set",
    help=(
        "Set the alert of a connection, or the default one (for connections without their "
        "own).\n\nHeader values are secrets: masked in every output; NAME=env:VAR and "
        "NAME=file:/path read them when an alert is sent.\n\n"
        "Examples:\n\n"
        "  etlctl alerts set --default --webhook https://hooks.example.com/etl --header Authorization=env:HOOK_TOKEN\n\n"
        "  etlctl alerts set users-to-wh --on failure --on success --command 'logger -t etl'\n\n"
        "  etlctl alerts set users-to-wh --webhook http://127.0.0.1:9000/ --stale-after 6h"
    ),
)
def set_(
    ctx: typer.Context,
    connection: str | None = typer.Argument(None, help="The connection (or --default)."),
    default: bool = typer.Option(False, "--default", help="The rule of every other connection."),
    webhook: str | None = typer.Option(None, "--webhook", help="POST a JSON document here."),
    header: list[str] = typer.Option([], "--header", help="A webhook header, NAME=VALUE."),
    command: str | None = typer.Option(
        None, "--command", help="Run this (no shell; the JSON document on its stdin)."
    ),
    on: list[str] = typer.Option(["failure"], "--on", help="failure and/or success (repeatable)."),
    stale_after: str | None = typer.Option(
        None, "--stale-after", help="Alert when no run succeeded for this long: 6h, 30m, 2d."
    ),
) -> None:
    rule = alerts.build_rule(
        _scope(connection, default),
        on=on,
        webhook=webhook,
        headers=_headers(header),
        command=command,
        stale_after_seconds=alerts.parse_duration(stale_after) if stale_after else None,
    )
    alerts.set_rule(app_state(ctx).store, rule)
    say(f"alert for {rule.scope} set")


@app.command(
    "show",
    help="Show the alert rules (header values masked).\n\nExamples:\n\n  etlctl alerts show --json",
)
def show(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    found = [alerts.masked(rule) for rule in alerts.rules(app_state(ctx).store.read())]
    if as_json:
        print_json(found)
        return
    print_table(
        None,
        ["FOR", "ON", "WEBHOOK", "HEADERS", "COMMAND", "STALE AFTER"],
        [
            (
                rule["scope"],
                ", ".join(rule["on"]),
                rule["webhook"] or "-",
                ", ".join(
                    f"{k}: {v if isinstance(v, str) else catalog.MASK}"
                    for k, v in rule["headers"].items()
                )
                or "-",
                rule["command"] or "-",
                f"{rule['stale_after_seconds']:g}s" if rule["stale_after_seconds"] else "-",
            )
            for rule in found
        ],
    )
    if not found:
        say("no alerts; set one with: etlctl alerts set --default --webhook URL")


@app.command(
    "remove", help="Remove an alert rule.\n\nExamples:\n\n  etlctl alerts remove --default"
)
def remove(
    ctx: typer.Context,
    connection: str | None = typer.Argument(None, help="The connection (or --default)."),
    default: bool = typer.Option(False, "--default", help="The default rule."),
) -> None:
    scope = _scope(connection, default)
    alerts.remove_rule(app_state(ctx).store, scope)
    say(f"alert for {scope} removed")


@app.command(
    "check",
    help=(
        "Alert for connections with no successful run for longer than their --stale-after "
        "(once per period). Scheduled syncs check this too; run it from cron for "
        "connections that may not fire at all.\n\nExamples:\n\n  etlctl alerts check"
    ),
)
def check(ctx: typer.Context) -> None:
    told = alerts.check_freshness(app_state(ctx).store)
    say(f"stale: {', '.join(told)}" if told else "nothing stale")
