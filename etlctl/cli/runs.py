"""`etlctl runs ...` and `etlctl logs`: what syncs did."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import typer

from etlctl.cli.output import app_state, print_fields, print_json, print_table, say, stdout, when
from etlctl.errors import NotFoundError
from etlctl.models import Run, RunStatus

app = typer.Typer(
    help="Inspect sync runs: status, counts, duration, errors, logs.", no_args_is_help=True
)

LOG_TAIL_LINES = 20
ERROR_COLUMN_CHARS = 80


def _short(text: str | None, limit: int) -> str:
    """One line of at most `limit` characters; an ellipsis says when some was cut."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_summary(run: Run) -> dict[str, Any]:
    doc = run.to_doc()
    doc["duration_seconds"] = run.duration_seconds
    doc["rows_per_second"] = run.rows_per_second
    return doc


def tail(path: str | None, lines: int) -> list[str]:
    if not path or not Path(path).exists():
        return []
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]


@app.command(
    "list",
    help="List runs, newest first.\n\nExamples:\n\n  etlctl runs list\n\n  etlctl runs list users-to-wh --status failed --json",
)
def list_(
    ctx: typer.Context,
    connection: str | None = typer.Argument(None, help="Only this connection's runs."),
    status: RunStatus | None = typer.Option(None, "--status", help="Only runs with this status."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    view = app_state(ctx).store.read()
    if (
        connection is not None
        and view.find("connection", connection) is None
        and not view.list_runs(connection)
    ):
        raise NotFoundError(
            f"connection {connection!r} does not exist and has no runs",
            hint="see: etlctl connection list",
        )
    runs = view.list_runs(connection, status)[:limit]
    if as_json:
        print_json([run_summary(run) for run in runs])
        return
    print_table(
        None,
        ["RUN", "CONNECTION", "STATUS", "TRIGGER", "STARTED", "DURATION", "LOADED", "ERROR"],
        [
            (
                run.id,
                run.connection,
                run.status.value,
                run.trigger,
                when(run.started_at),
                f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else "-",
                f"{run.records_loaded:,}",
                _short(run.error, ERROR_COLUMN_CHARS),
            )
            for run in runs
        ],
    )
    if not runs:
        say("no runs yet; start one with: etlctl sync CONNECTION")


@app.command(
    "show",
    help="Show one run: status, counts, duration, rows/s, error, the tail of its log.\n\nExamples:\n\n  etlctl runs show run_20240501T101500Z_ab12cd\n\n  etlctl runs show run_20240501T101500Z_ab12cd --json",
)
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run id (see etlctl runs list)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    run = app_state(ctx).store.read().get_run(run_id)
    log_tail = tail(run.log_path, LOG_TAIL_LINES)
    if as_json:
        print_json({**run_summary(run), "log_tail": log_tail})
        return
    rate = run.rows_per_second
    print_fields(
        f"run {run.id}",
        [
            ("connection", run.connection),
            ("status", run.status.value),
            ("trigger", run.trigger),
            ("runtime", run.runtime),
            ("started", when(run.started_at)),
            ("ended", when(run.ended_at)),
            (
                "duration",
                f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else None,
            ),
            ("extracted", f"{run.records_extracted:,}"),
            ("loaded", f"{run.records_loaded:,}"),
            ("skipped", f"{run.records_skipped:,}"),
            ("bytes", f"{run.bytes:,}"),
            ("rows/s", f"{rate:,.0f}" if rate else None),
            ("state before", run.state_before),
            ("state after", run.state_after),
            ("error", run.error),
            ("log", run.log_path),
            ("rejects", run.rejects_path),
        ],
    )
    if log_tail:
        stdout.print("\n[bold]log tail[/bold]")
        for line in log_tail:
            stdout.print(f"  {line}", markup=False)


def logs(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run id (see etlctl runs list)."),
    tail_lines: int | None = typer.Option(None, "--tail", min=1, help="Only the last N lines."),
) -> None:
    """Print a run's log (both connectors' output).

    Examples:

      etlctl logs run_20240501T101500Z_ab12cd

      etlctl logs run_20240501T101500Z_ab12cd --tail 50
    """
    run = app_state(ctx).store.read().get_run(run_id)
    if not run.log_path or not Path(run.log_path).exists():
        raise NotFoundError(
            f"run {run_id} has no log" + (f" at {run.log_path}" if run.log_path else ""),
            hint=f"runs that never started (skipped, failed up front) have none; "
            f"see: etlctl runs show {run_id}",
        )
    if tail_lines:
        for line in tail(run.log_path, tail_lines):
            typer.echo(line)
        return
    with open(run.log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            typer.echo(line, nl=False)
