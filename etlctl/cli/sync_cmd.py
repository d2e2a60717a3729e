"""`etlctl sync` and `etlctl gc`: run a sync, clean up after killed ones."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from etlctl import alerts, leftovers, orchestrator, settings
from etlctl.cli.options import amqp_url_option, network_option, runtime_option
from etlctl.cli.output import app_state, note, print_json, say, stderr
from etlctl.errors import ConflictError, EtlctlError
from etlctl.models import Run, RunStatus
from etlctl.orchestrator import SyncOptions
from etlctl.progress import ProgressFigures, SyncProgress
from etlctl.store import Store
from etlctl.views import run_summary

PLAIN_PROGRESS_EVERY_SECONDS = 5.0


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _amount(value: int, unit: str | None) -> str:
    if unit == "bytes":
        for size, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= size:
                return f"{value / size:,.1f} {suffix}"
        return f"{value:,} B"
    return f"{value:,} rows"


def describe(figures: ProgressFigures) -> dict[str, str]:
    """The pieces every text display shows (live and plain lines alike)."""
    f = figures
    if f.percent is None:
        percent = "total unknown" if f.extracted else "starting"
    else:
        assert f.done is not None and f.total is not None
        percent = f"{f.percent:.0f}% ({_amount(f.done, f.unit)} of {_amount(f.total, f.unit)})"
    counts = (
        f"{f.extracted:,} extracted" + (" (done)" if f.extractor_done else "")
        + f", {f.loaded:,} loaded" + (" (done)" if f.loader_done else "")
        + f", {f.rows_per_second:,.0f} rows/s"
    )  # fmt: skip
    eta = f"ETA {_duration(f.eta_seconds)}" if f.eta_seconds is not None else ""
    return {"percent": percent, "counts": counts, "eta": eta,
            "elapsed": _duration(f.elapsed_seconds)}  # fmt: skip


class _LiveDisplay:
    """A rich progress bar on a terminal: percent, counts, rows/s and ETA when the total is
    known; a pulsing bar and the counters when it is not."""

    def __init__(self, connection: str) -> None:
        self.live = Progress(
            TextColumn("[bold]{task.description}[/bold]"),
            BarColumn(),
            TextColumn("{task.fields[percent]}"),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("[dim]{task.fields[elapsed]}[/dim]"),
            console=stderr,
            refresh_per_second=4,
            transient=False,
        )
        self.task = self.live.add_task(
            escape(connection), total=None, percent="starting", counts="", eta="", elapsed=""
        )
        self.last: SyncProgress | None = None

    def finish(self) -> None:
        """The last frame shows the run's final counts (the summary line repeats them)."""
        if self.last is not None:
            self(self.last)

    def __call__(self, progress: SyncProgress) -> None:
        self.last = progress
        figures = progress.figures()
        known = figures.percent is not None
        self.live.update(
            self.task,
            total=100.0 if known else None,
            completed=figures.percent if known else 0,
            **{key: escape(text) for key, text in describe(figures).items()},
        )


class _PlainProgress:
    """For CI logs: a line every few seconds, no terminal control codes; with --json the
    same figures as one JSON object per line (stderr: stdout keeps the run summary)."""

    def __init__(self, connection: str, as_json: bool, interval: float) -> None:
        self.connection = connection
        self.as_json = as_json
        self.interval = interval
        self.next_line = time.monotonic() + interval

    def __call__(self, progress: SyncProgress) -> None:
        now = time.monotonic()
        if now < self.next_line:
            return
        self.next_line = now + self.interval
        figures = progress.figures(now)
        if self.as_json:
            event = {"event": "progress", "connection": self.connection, "run": progress.run.id}
            line = json.dumps({**event, **figures.to_doc()})
        else:
            parts = describe(figures)
            line = f"[{self.connection}] {parts['elapsed']} {parts['percent']}: {parts['counts']}"
            line += f", {parts['eta']}" if parts["eta"] else ""
        print(line, file=sys.stderr, flush=True)


def _quiet(progress: SyncProgress) -> None:
    """Cron logs: no progress lines; the summary line at the end says it all."""


def sync(
    ctx: typer.Context,
    connection: str = typer.Argument(..., help="The connection to sync."),
    runtime: str | None = runtime_option(),
    amqp_url: str | None = amqp_url_option(),
    network: str | None = network_option(),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        help="Seconds before the sync is stopped and failed (default: 6 h or the setting).",
        show_default=False,
    ),
    batch_size: int = typer.Option(
        2000, "--batch-size", min=1, max=100_000, help="Records per message."
    ),
    trigger: str = typer.Option(
        "manual",
        "--trigger",
        hidden=True,
        help="manual, schedule (set by crontab entries) or api (set by etlctl serve).",
    ),
    run_id: str | None = typer.Option(
        None, "--run-id", hidden=True, help="The id the run gets (set by etlctl serve)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the run summary as JSON; progress as JSON lines on stderr.",
    ),
    progress_interval: float = typer.Option(
        PLAIN_PROGRESS_EVERY_SECONDS,
        "--progress-interval",
        min=0.1,
        help="Seconds between progress lines when not on a terminal (CI logs, --json).",
    ),
) -> None:
    """Run one sync of a connection: extractor and loader containers through RabbitMQ.

    On a terminal a progress bar shows percent, rows/s and ETA when the source's size is
    known (files, SQL tables, APIs that report a total), counters otherwise. Elsewhere a
    line every few seconds (--json: one JSON object per line, on stderr); scheduled runs
    (cron) print only the summary line.

    Exits 0 only when the run succeeded.

    Examples:

      etlctl sync users-to-wh

      etlctl sync users-to-wh --timeout 600 --json

      etlctl sync users-to-wh --progress-interval 30 2>> sync-progress.log

      etlctl sync users-to-wh --runtime local
    """
    state = app_state(ctx)
    stored = state.store.read().settings()
    options = SyncOptions(
        runtime=settings.chosen(stored, "runtime", runtime),
        amqp_url=amqp_url,
        network=settings.chosen(stored, "network", network),
        timeout=settings.chosen(stored, "timeout", timeout),
        trigger=trigger,
        batch_records=batch_size,
        run_id=run_id,
    )
    display = _LiveDisplay(connection) if stderr.is_terminal and not as_json else None
    reporter: Callable[[SyncProgress], None] = display or (
        _quiet if trigger == "schedule" else _PlainProgress(connection, as_json, progress_interval)
    )
    try:
        with display.live if display else nullcontext():
            run = orchestrator.run_sync(state.store, connection, options, on_progress=reporter)
            if display:
                display.finish()
    except EtlctlError as exc:
        if trigger == "schedule":
            _record_unstarted(state.store, connection, exc)
            alerts.check_freshness(state.store, report=note)
        raise
    alerts.notify_run(state.store, run, report=note)
    if trigger == "schedule":
        alerts.check_freshness(state.store, report=note)
    if as_json:
        print_json(run_summary(run))
    else:
        _print_outcome(run)
    orchestrator.raise_for_run(run)


def _record_unstarted(store: Store, connection: str, exc: EtlctlError) -> None:
    """A cron firing that did not start still leaves a run in the store."""
    status = RunStatus.SKIPPED if isinstance(exc, ConflictError) else RunStatus.FAILED
    reason = f"did not start: {exc.message}"
    run = orchestrator.record_unstarted_run(store, connection, "schedule", status, reason)
    if run is not None:
        note(f"recorded run {run.id} ({status.value}): {reason}")
        alerts.notify_run(store, run, report=note)


def _print_outcome(run: Run) -> None:
    summary = run_summary(run)
    rate = f", {summary['rows_per_second']:,.0f} rows/s" if summary["rows_per_second"] else ""
    duration = f" in {summary['duration_seconds']:.1f}s" if summary["duration_seconds"] else ""
    say(
        f"run {run.id} {run.status.value}{duration}: {run.records_extracted:,} extracted, "
        f"{run.records_loaded:,} loaded"
        + (f", {run.records_skipped:,} skipped" if run.records_skipped else "")
        + rate
    )
    if run.state_after is not None:
        say(f"state: {json.dumps(run.state_after)}")
    if run.rejects_path:
        say(f"rejected records: {run.rejects_path}")
    say(f"log: {run.log_path}")


def gc(
    ctx: typer.Context,
    runtime: str | None = runtime_option(),
    amqp_url: str | None = amqp_url_option(),
    as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove what killed syncs left behind: containers, queues, run files, staging tables.

    Everything labelled with this store, whether or not its connection still exists; the
    runs are marked failed and the connectors' logs kept (etlctl logs RUN). Connections that
    are syncing right now are left alone.

    Examples:

      etlctl gc

      etlctl gc --json
    """
    store = app_state(ctx).store
    chosen_runtime = settings.chosen(store.read().settings(), "runtime", runtime)
    report = leftovers.collect_garbage(store, chosen_runtime, amqp_url)
    if as_json:
        print_json({"removed": report.removed, "busy": report.busy, "problems": report.problems})
        return
    for item in report.removed:
        say(f"removed {item}")
    for name in report.busy:
        say(f"skipped {name}: syncing now")
    for problem in report.problems:
        note(f"warning: {problem}")
    if not report.removed:
        say("nothing to clean up")
