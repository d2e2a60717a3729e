"""`etlctl schedule ...`: see schedules, and install them as entries of the user's crontab."""

from __future__ import annotations

import typer

from etlctl import scheduler
from etlctl.cli.output import app_state, note, print_json, print_table, say, when
from etlctl.errors import ValidationError
from etlctl.scheduler import CrontabChange
from etlctl.store import Store

app = typer.Typer(
    help="Scheduled connections and their crontab entries: list, apply, remove.",
    no_args_is_help=True,
)


def sync_after_change(store: Store, schedule_changed: bool, no_crontab: bool) -> None:
    """After a change that touched a schedule: bring the crontab in line, and say so."""
    if schedule_changed and no_crontab:
        note("crontab left alone (--no-crontab); install it with: etlctl schedule apply")
    change = scheduler.sync_after_change(store, schedule_changed, no_crontab)
    if change is not None:
        note(f"crontab: {change.summary()}")


def _rows(infos: list[scheduler.ScheduleInfo]) -> list[tuple[str, ...]]:
    rows = []
    for info in infos:
        next_three = "\n".join(moment.strftime("%Y-%m-%d %H:%M %Z") for moment in info.next_runs)
        last = f"{info.last_run_status} {when(info.last_run_at)}" if info.last_run_at else "never"
        rows.append(
            (
                info.connection,
                info.schedule,
                info.description,
                next_three,
                last,
                info.installed or "unknown",
            )
        )
    return rows


@app.command(
    "list",
    help=(
        "List scheduled connections: expression, meaning, next three runs, last run, crontab.\n\n"
        "Examples:\n\n"
        "  etlctl schedule list\n\n"
        "  etlctl schedule list --json | jq '.schedules[].next_runs'"
    ),
)
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    infos, stale = scheduler.list_schedules(app_state(ctx).store)
    if as_json:
        print_json({"schedules": [info.to_doc() for info in infos], "stale_crontab_entries": stale})
        return
    print_table(
        None,
        ["CONNECTION", "SCHEDULE", "MEANING", "NEXT RUNS", "LAST RUN", "CRONTAB"],
        _rows(infos),
    )
    if not infos:
        say(
            'no scheduled connections; set one with: etlctl connection update NAME --schedule "@daily"'
        )
    if any(info.installed in {"missing", "outdated"} for info in infos) or stale:
        note("the crontab does not match the store; fix it with: etlctl schedule apply")
    if any(info.installed is None for info in infos):
        note("the crontab could not be read (is cron installed?); the CRONTAB column is unknown")


def _report(change: CrontabChange, as_json: bool, dry_run: bool, nothing: str) -> None:
    if as_json:
        print_json({**change.to_doc(), "dry_run": dry_run})
    elif not change.changed:
        say(f"crontab: {nothing}")
    else:
        say(f"{'would change' if dry_run else 'crontab'}: {change.summary()}")


def _warn_without_daemon() -> None:
    if scheduler.cron_daemon_running() is False:
        note("warning: no cron daemon seems to run on this machine; the entries will not fire")


@app.command(
    "apply",
    help=(
        "Make your crontab match the store: one entry per scheduled connection.\n\n"
        "Touches only this store's etlctl lines; running it twice changes nothing.\n\n"
        "Examples:\n\n"
        "  etlctl schedule apply\n\n"
        "  etlctl schedule apply --dry-run\n\n"
        "  etlctl --store /srv/etl/store.json schedule apply --json"
    ),
)
def apply(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print what changed as JSON."),
) -> None:
    change = scheduler.sync_crontab(app_state(ctx).store, dry_run=dry_run)
    _report(change, as_json, dry_run, "already up to date")
    if change.added or change.updated or change.unchanged:
        _warn_without_daemon()


@app.command(
    "remove",
    help=(
        "Remove etlctl entries from your crontab (the store keeps the schedules).\n\n"
        "`etlctl schedule apply` puts them back; to stop a connection for good, set its "
        "schedule to manual.\n\n"
        "Examples:\n\n"
        "  etlctl schedule remove users-to-wh\n\n"
        "  etlctl schedule remove --all\n\n"
        "  etlctl schedule remove --all-stores"
    ),
)
def remove(
    ctx: typer.Context,
    connections: list[str] | None = typer.Argument(
        None, help="Connections whose entries to remove.", show_default=False
    ),
    all_: bool = typer.Option(False, "--all", help="Every entry of this store."),
    all_stores: bool = typer.Option(
        False, "--all-stores", help="Every etlctl entry, whichever store it belongs to."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change."),
    as_json: bool = typer.Option(False, "--json", help="Print what changed as JSON."),
) -> None:
    names = list(connections or [])
    if bool(names) + all_ + all_stores != 1:
        raise ValidationError(
            "name the connections, or pass --all or --all-stores (exactly one of these)",
            hint="for example: etlctl schedule remove --all",
        )
    change = scheduler.remove_crontab_entries(
        app_state(ctx).store, names or None, all_stores=all_stores, dry_run=dry_run
    )
    _report(change, as_json, dry_run, "no etlctl entries to remove")
    if names and not as_json:
        for missing in sorted(set(names) - set(change.removed)):
            note(f"{missing}: no crontab entry of this store")
