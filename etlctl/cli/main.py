"""The `etlctl` command: top-level options, the command groups, and the one place where
errors become a message on stderr and an exit code."""

from __future__ import annotations

import traceback
from pathlib import Path

import typer
from typer.core import TyperGroup

from etlctl.catalog import redact
from etlctl.cli import (
    alerts_cmd,
    connection,
    connectors_cmd,
    doctor_cmd,
    images,
    manifest_cmd,
    objects,
    runs,
    schedule,
    serve_cmd,
    settings_cmd,
    sync_cmd,
)
from etlctl.cli.output import AppState, stderr
from etlctl.errors import EtlctlError
from etlctl.paths import STORE_ENV, default_store_path


def etlctl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~20 ms: only for --version

    try:
        return version("etlctl")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "0+unknown"


class ErrorMappingGroup(TyperGroup):
    """Turns every EtlctlError raised by a command into one line on stderr + its exit code.

    Living in the command group (not in main()) means CliRunner tests see exactly what users
    see. With --debug the traceback is printed too.
    """

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EtlctlError as exc:
            state = ctx.obj if isinstance(ctx.obj, AppState) else None
            if state is not None and state.debug:
                stderr.print(traceback.format_exc(), markup=False)
            # Every error path ends here: redact once for all of them (URL passwords, and
            # any secret value this process resolved or validated).
            stderr.print(f"error: {redact(exc.message)}", markup=False, highlight=False)
            if exc.hint:
                stderr.print(f"hint: {redact(exc.hint)}", markup=False, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("error: interrupted", markup=False)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=ErrorMappingGroup,
    name="etlctl",
    help=(
        "Run container-isolated ELT syncs: sources, loaders and connections in a local store, "
        "records through RabbitMQ, schedules in cron, manifests from CI.\n\n"
        "Examples:\n\n"
        "  etlctl source add users --type csv --config path=/data/users.csv\n\n"
        "  etlctl loader add warehouse --type sqlite --config path=/data/wh.db --config table=users\n\n"
        "  etlctl connection add users-to-wh --source users --loader warehouse\n\n"
        "  etlctl sync users-to-wh"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"etlctl {etlctl_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Path | None = typer.Option(
        None,
        "--store",
        envvar=STORE_ENV,
        help="The store file (default: $XDG_DATA_HOME/etlctl/store.json).",
        show_default=False,
        # The store checks its file itself: an unreadable one is exit 5 with a hint (and
        # `doctor` reports it), not a usage error from click.
        readable=False,
    ),
    debug: bool = typer.Option(False, "--debug", help="Print tracebacks of errors."),
    version_flag: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_show_version,
        is_eager=True,
    ),
) -> None:
    ctx.obj = AppState(
        store_path=(store.expanduser().absolute() if store else default_store_path()),
        debug=debug,
    )


app.add_typer(objects.build_app("source"), name="source")
app.add_typer(objects.build_app("loader"), name="loader")
app.add_typer(connection.app, name="connection")
app.add_typer(connectors_cmd.app, name="connectors")
app.add_typer(schedule.app, name="schedule")
app.command("sync")(sync_cmd.sync)
app.add_typer(runs.app, name="runs")
app.command("logs")(runs.logs)
app.command("gc")(sync_cmd.gc)
app.add_typer(images.app, name="images")
app.add_typer(settings_cmd.app, name="settings")
app.add_typer(alerts_cmd.app, name="alerts")
app.command("serve")(serve_cmd.serve)
app.command("doctor")(doctor_cmd.doctor_command)
manifest_cmd.register(app)  # apply, diff, export: top-level, kubectl style


def main() -> None:
    app()
