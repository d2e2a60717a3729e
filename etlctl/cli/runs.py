"""`etlctl runs ...` and `etlctl logs`: what syncs did."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from etlctl import launcher, views
from etlctl.cli.output import app_state, print_fields, print_json, print_table, say, stdout, when
from etlctl.errors import NotFoundError
from etlctl.live import live_run
from etlctl.models import RunStatus, RunTiming
from etlctl.progress import load_timeline, throughput

app = typer.Typer(
    help="Inspect sync runs: status, counts, duration, errors, logs.", no_args_is_help=True
)

LOG_TAIL_LINES = 20
MAX_TAIL_LINES = 1_000_000_000  # larger is "all of it": a bound keeps --tail an ordinary int
ERROR_COLUMN_CHARS = 80
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
CANCEL_WAIT_SECONDS = 60.0


def _short(text: str | None, limit: int) -> str:
    """One line of at most `limit` characters; an ellipsis says when some was cut."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def throughput_chart(timeline: list[list[float]]) -> str | None:
    """Rows loaded per second over the run as a one-line bar chart, with its peak."""
    rates = throughput(timeline)
    if len(rates) < 2:
        return None
    peak = max(rates)
    if peak <= 0:
        return None
    top = len(SPARK_LEVELS) - 1
    bars = "".join(SPARK_LEVELS[round(rate / peak * top)] for rate in rates)
    span = timeline[-1][0]
    return f"{bars}  (0 to {span:,.1f}s; peak {peak:,.0f} rows/s)"


def _side_time(busy: float | None, wait: float | None, waiting_for: str) -> str | None:
    if busy is None or wait is None:
        return None
    total = busy + wait
    share = f" ({busy / total:.0%})" if total > 0 else ""
    return f"busy {busy:,.1f}s{share}, waiting {wait:,.1f}s for {waiting_for}"


def time_went(timing: RunTiming | None) -> list[tuple[str, str | None]]:
    """`runs show` lines: how busy each side was, and how often the data queue was full."""
    if timing is None:
        return []
    queue_full = timing.queue_full
    return [
        (
            "extractor",
            _side_time(
                timing.extractor_busy_seconds, timing.extractor_wait_seconds, "the queue"
            ),
        ),
        (
            "loader",
            _side_time(timing.loader_busy_seconds, timing.loader_wait_seconds, "data"),
        ),
        (
            "queue full",
            None if queue_full is None else f"{queue_full:,} times (the loader was slower)"
            if queue_full
            else "never",
        ),
    ]


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
        print_json([views.run_summary(run) for run in runs])
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
    help="Show one run: status, counts, duration, rows/s, throughput over time, where the time went, error, the tail of its log.\n\nExamples:\n\n  etlctl runs show run_20240501T101500Z_ab12cd\n\n  etlctl runs show run_20240501T101500Z_ab12cd --json",
)
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run id (see etlctl runs list)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    run, _ = live_run(app_state(ctx).store.read().get_run(run_id))
    log_tail = views.log_tail(run.log_path, LOG_TAIL_LINES)
    if as_json:
        print_json(
            {**views.run_summary(run), "timeline": load_timeline(run), "log_tail": log_tail}
        )
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
            ("throughput", throughput_chart(load_timeline(run))),
            *time_went(run.timing),
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
    tail_lines: int | None = typer.Option(
        None, "--tail", min=1, max=MAX_TAIL_LINES, help="Only the last N lines."
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        "-F",
        help="While the run is running, print its progress; then its log.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"run_id", "log_path", "lines": [...]} as JSON.'
    ),
) -> None:
    """Print a run's log (both connectors' output). The log is written when the run ends;
    --follow prints the progress of a running run until then.

    Examples:

      etlctl logs run_20240501T101500Z_ab12cd

      etlctl logs run_20240501T101500Z_ab12cd --tail 50

      etlctl logs run_20240501T101500Z_ab12cd --follow

      etlctl logs run_20240501T101500Z_ab12cd --json | jq -r '.lines[]'
    """
    store = app_state(ctx).store
    run = store.read().get_run(run_id)
    if follow:
        for run in launcher.watch_run(store, run_id):
            if not run.status.finished and not as_json:
                typer.echo(views.progress_line(run))
    if not run.log_path or not Path(run.log_path).exists():
        raise NotFoundError(
            f"run {run_id} has no log" + (f" at {run.log_path}" if run.log_path else ""),
            hint=f"runs that never started (skipped, failed up front) have none; "
            f"see: etlctl runs show {run_id}",
        )
    if as_json:
        _print_log_json(run.id, run.log_path, tail_lines)
        return
    if tail_lines:
        for line in views.log_tail(run.log_path, tail_lines):
            typer.echo(line)
        return
    with open(run.log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            typer.echo(line, nl=False)


def _print_log_json(run_id: str, log_path: str, tail_lines: int | None) -> None:
    """One JSON object, written line by line: a long log is never held whole in memory."""
    head = json.dumps({"run_id": run_id, "log_path": log_path})[:-1]
    typer.echo(head + ', "lines": [', nl=False)
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        lines = (
            views.log_tail(log_path, tail_lines)
            if tail_lines
            else (line.rstrip("\n") for line in handle)
        )
        for index, line in enumerate(lines):
            typer.echo(("," if index else "") + "\n  " + json.dumps(line), nl=False)
    typer.echo("\n]}")


@app.command(
    "cancel",
    help=(
        "Cancel a running sync, whoever started it (a shell, cron, etlctl serve): its process "
        "stops the containers, removes the queues and records the run as cancelled.\n\n"
        "Examples:\n\n  etlctl runs cancel run_20240501T101500Z_ab12cd\n\n"
        "  etlctl runs cancel run_20240501T101500Z_ab12cd --no-wait"
    ),
)
def cancel(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run id (see etlctl runs list)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the run has ended."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    store = app_state(ctx).store
    run = launcher.cancel_run(store, run_id)
    if wait:
        for run in launcher.watch_run(store, run_id, timeout=CANCEL_WAIT_SECONDS):  # noqa: B007
            pass
    if as_json:
        print_json(views.run_summary(run))
    elif run.status.finished:
        say(f"run {run_id} {run.status.value}")
    else:
        say(f"run {run_id}: cancel requested")
