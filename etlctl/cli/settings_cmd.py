"""`etlctl settings ...`: defaults kept in the store, so cron and CI runs use them too."""

from __future__ import annotations

import typer

from etlctl import settings
from etlctl.cli.output import app_state, print_fields, print_json, say

app = typer.Typer(
    help="Defaults kept in the store (broker URL, runtime, network, timeout).",
    no_args_is_help=True,
)


@app.command(
    "show",
    help=(
        "Show the settings (the broker password masked).\n\n"
        "Examples:\n\n  etlctl settings show\n\n  etlctl settings show --json"
    ),
)
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    current = settings.effective(app_state(ctx).store.read().settings())
    if as_json:
        print_json(current)
        return
    print_fields("settings", [(key, value) for key, value in current.items()])


@app.command(
    "set",
    help=(
        "Set a default. Keys: " + ", ".join(settings.KEYS) + ".\n\n"
        "Examples:\n\n"
        "  etlctl settings set amqp_url amqp://etl:s3cret@rabbitmq.internal:5672/%2F\n\n"
        "  etlctl settings set timeout 3600"
    ),
)
def set_(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="The setting."),
    value: str = typer.Argument(..., help="Its value."),
) -> None:
    settings.set_value(app_state(ctx).store, key, value)
    say(f"setting {key} set")


@app.command(
    "unset",
    help="Go back to the built-in default of a setting.\n\nExamples:\n\n  etlctl settings unset amqp_url",
)
def unset(ctx: typer.Context, key: str = typer.Argument(..., help="The setting.")) -> None:
    settings.set_value(app_state(ctx).store, key, None)
    say(f"setting {key} unset")
