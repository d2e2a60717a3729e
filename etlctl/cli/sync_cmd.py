"""`etlctl sync` and `etlctl gc`: run a sync, clean up after killed ones."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext

import typer
from rich.live import Live
from rich.table import Table

from etlctl import orchestrator, settings
from etlctl.cli.options import amqp_url_option, network_option, runtime_option
from etlctl.cli.output import app_state, note, print_json, say, stderr
from etlctl.cli.runs import run_summary
from etlctl.errors import ConflictError, EtlctlError
from etlctl.models import Run, RunStatus
from etlctl.orchestrator import SyncOptions, SyncProgress
from etlctl.store import Store

PLAIN_PROGRESS_EVERY_SECONDS = 5.0


class _LiveDisplay:
    """A rich live panel on a terminal: records extracted and loaded, rate, elapsed."""

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.started = time.monotonic()
        self.live = Live(self._render(None), console=stderr, refresh_per_second=4, transient=False)

    def _render(self, progress: SyncProgress | None) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(justify="right")
        extracted = progress.run.records_extracted if progress else 0
        loaded = progress.run.records_loaded if progress else 0
        rate = loaded / elapsed if elapsed > 0 else 0
        table.add_row("sync", self.connection)
        table.add_row(
            "extracted",
            f"{extracted:,}" + (" (done)" if progress and progress.extractor_done else ""),
        )
        table.add_row(
            "loaded", f"{loaded:,}" + (" (done)" if progress and progress.loader_done else "")
        )
        table.add_row("rate", f"{rate:,.0f} records/s")
        table.add_row("elapsed", f"{elapsed:,.1f}s")
        return table

    def __call__(self, progress: SyncProgress) -> None:
        self.live.update(self._render(progress))


class _PlainProgress:
    """For cron and CI logs: one line every few seconds, no terminal control codes."""

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.started = time.monotonic()
        self.next_line = self.started + PLAIN_PROGRESS_EVERY_SECONDS

    def __call__(self, progress: SyncProgress) -> None:
        now = time.monotonic()
        if now < self.next_line:
            return
        self.next_line = now + PLAIN_PROGRESS_EVERY_SECONDS
        run = progress.run
        print(
            f"[{self.connection}] {now - self.started:.0f}s extracted={run.records_extracted} "
            f"loaded={run.records_loaded}",
            file=sys.stderr,
            flush=True,
        )


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
        "manual", "--trigger", hidden=True, help="manual or schedule (set by crontab entries)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Run one sync of a connection: extractor and loader containers through RabbitMQ.

    Exits 0 only when the run succeeded.

    Examples:

      etlctl sync users-to-wh

      etlctl sync users-to-wh --timeout 600 --json

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
    )
    display = _LiveDisplay(connection) if stderr.is_terminal and not as_json else None
    reporter = display or _PlainProgress(connection)
    try:
        with display.live if display else nullcontext():
            run = orchestrator.run_sync(state.store, connection, options, on_progress=reporter)
    except EtlctlError as exc:
        if trigger == "schedule":
            _record_unstarted(state.store, connection, exc)
        raise
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
    """Remove containers and queues that killed syncs left behind; mark their runs failed.

    Connections that are syncing right now are left alone.

    Examples:

      etlctl gc

      etlctl gc --json
    """
    store = app_state(ctx).store
    chosen_runtime = settings.chosen(store.read().settings(), "runtime", runtime)
    report = orchestrator.collect_garbage(store, chosen_runtime, amqp_url)
    if as_json:
        print_json({"removed": report.removed, "busy": report.busy})
        return
    for item in report.removed:
        say(f"removed {item}")
    for name in report.busy:
        say(f"skipped {name}: syncing now")
    if not report.removed:
        say("nothing to clean up")
