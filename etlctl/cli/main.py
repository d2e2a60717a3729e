"""The `etlctl` command: top-level options, the command groups, and the one place where
errors become a message on stderr and an exit code."""

from __future__ import annotations

import os
import sys
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
from etlctl.files import real_path
from etlctl.paths import STORE_ENV, default_store_path


def etlctl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~20 ms: only for --version

    try:
        return version("etlctl")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "0+unknown"


# What typer and click raise to end a command on purpose (exit codes, usage errors, --help).
_TYPER_CONTROL = (typer.Exit, typer.Abort, typer.TyperException)


class ErrorMappingGroup(TyperGroup):
    """Turns every error raised by a command into one line on stderr + its exit code.

    EtlctlError carries its own message, hint and exit code. Anything else is a bug or the
    system refusing (a full disk under stdout): still one line and exit 1, never a traceback;
    its message is not printed (it could quote a secret), --debug prints the traceback.
    Living in the command group (not in main()) means CliRunner tests see exactly what users
    see.
    """

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except _TYPER_CONTROL:
            raise
        except EtlctlError as exc:
            _report(ctx, exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("error: interrupted", markup=False)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `etlctl ... | head`: the reader has all it wanted
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (at exit, flush nowhere)
            raise typer.Exit(1) from None
        except OSError as exc:
            if exc.filename is None:  # stdout or stderr: nothing more will get through
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (at exit, flush nowhere)
            where = f" ({exc.filename})" if exc.filename else " (writing the output)"
            _report(ctx, f"{exc.strerror or type(exc).__name__}{where}",
                    "check the disk, the permissions, and where the output goes")
            raise typer.Exit(1) from None
        except Exception as exc:
            _report(ctx, f"internal error ({type(exc).__name__}): this is a bug in etlctl",
                    "rerun with --debug to see the traceback, and report it")
            raise typer.Exit(1) from None


def _report(ctx: typer.Context, message: str, hint: str | None) -> None:
    state = ctx.obj if isinstance(ctx.obj, AppState) else None
    if state is not None and state.debug:
        stderr.print(traceback.format_exc(), markup=False)
    # Every error path ends here: redact once for all of them (URL passwords, and any
    # secret value this process resolved or validated).
    stderr.print(f"error: {redact(message)}", markup=False, highlight=False)
    if hint:
        stderr.print(f"hint: {redact(hint)}", markup=False, highlight=False)


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
        store_path=real_path(store or default_store_path()),
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
