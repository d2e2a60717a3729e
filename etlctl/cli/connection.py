"""`etlctl connection ...`: wire a source to a loader with a sync mode and a schedule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from etlctl import catalog, registry
from etlctl.cli.options import no_crontab_option
from etlctl.cli.output import app_state, print_fields, print_json, print_table, say, when
from etlctl.cli.schedule import sync_after_change
from etlctl.models import Connection, OnError, SyncMode
from etlctl.views import connection_view

app = typer.Typer(
    help="Wire sources to loaders: sync mode, cursor, primary key, schedule.",
    no_args_is_help=True,
)


def _split_key(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [column.strip() for column in value.split(",") if column.strip()]


def _read_transform(path: Path | None) -> dict[str, Any] | None:
    return catalog.load_config_file(path) if path else None


def _stream_label(name: str) -> str:
    return name or "(unnamed stream)"


def _selection(connection: Connection) -> list[str]:
    """The stream selection as --stream would take it."""
    shown = []
    for entry in connection.streams:
        parts = [entry.name, entry.mode.value if entry.mode else "", entry.cursor_field or "",
                 ",".join(entry.primary_key or [])]
        while parts and not parts[-1]:
            parts.pop()
        shown.append(":".join(parts))
    return shown


def _state_per_stream(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The saved state, stream by stream, for people (the JSON view has every detail)."""
    if not state:
        return None
    shown: dict[str, Any] = {
        _stream_label(name): entry["state"] for name, entry in state["streams"].items()
    }
    if state.get("global_state") is not None:
        shown["(global)"] = state["global_state"]
    return shown or None


@app.command(
    "add",
    help=(
        "Create a connection from a source to a loader.\n\n"
        "Examples:\n\n"
        "  etlctl connection add users-to-wh --source users --loader warehouse\n\n"
        "  etlctl connection add orders-inc --source orders --loader warehouse "
        "--mode incremental --cursor-field updated_at --primary-key id\n\n"
        '  etlctl connection add nightly --source users --loader warehouse --schedule "0 2 * * *"'
    ),
)
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the connection (becomes queue and crontab tag)."),
    source: str = typer.Option(..., "--source", "-s", help="The source to read."),
    loader: str = typer.Option(..., "--loader", "-l", help="The loader to write to."),
    mode: SyncMode = typer.Option(SyncMode.FULL_REFRESH, "--mode", "-m", help="Sync mode."),
    cursor_field: str | None = typer.Option(
        None, "--cursor-field", help="Field whose growth marks new records (incremental)."
    ),
    primary_key: str | None = typer.Option(
        None, "--primary-key", help="Key column(s), comma-separated (dedup)."
    ),
    schedule: str = typer.Option(
        "manual", "--schedule", help='"manual" or a cron expression like "*/15 * * * *".'
    ),
    on_error: OnError = typer.Option(
        OnError.FAIL, "--on-error", help="What a bad record does: fail the run or skip it."
    ),
    transform_file: Path | None = typer.Option(
        None, "--transform-file", help="A YAML/JSON file with the transform (docs/transform.md)."
    ),
    allow_empty: bool = typer.Option(
        False,
        "--allow-empty",
        help="Let a full_refresh from a source with no records empty the target "
        "(by default it is refused and the target kept).",
    ),
    streams: list[str] = typer.Option(
        [],
        "--stream",
        help="A stream to sync, NAME[:MODE[:CURSOR_FIELD[:KEY,KEY]]] (repeatable; '*' is every "
        "other stream; none: every stream with the connection's settings). See: etlctl source "
        "discover SOURCE",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the created connection as JSON."),
    no_crontab: bool = no_crontab_option(),
) -> None:
    state = app_state(ctx)
    connection = registry.new_connection(
        name,
        source,
        loader,
        mode,
        cursor_field,
        _split_key(primary_key),
        schedule,
        on_error,
        transform=_read_transform(transform_file),
        allow_empty=allow_empty,
        streams=registry.parse_streams(streams),
    )
    registry.add_connection(state.store, connection)
    if as_json:
        print_json(connection.to_doc())
    else:
        say(
            f'connection "{connection.name}" created ({source} -> {loader}, {mode.value}, id {connection.id})'
        )
    sync_after_change(state.store, connection.scheduled, no_crontab)


@app.command(
    "list",
    help="List the connections.\n\nExamples:\n\n  etlctl connection list\n\n  etlctl connection list --json",
)
def list_(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    view = app_state(ctx).store.read()
    connections = view.connections()
    last_runs = view.last_runs()
    if as_json:
        print_json([connection_view(view, conn, last_runs.get(conn.name)) for conn in connections])
        return
    rows = []
    for conn in connections:
        last = last_runs.get(conn.name)
        rows.append(
            (
                conn.name,
                conn.source,
                conn.loader,
                conn.mode.value,
                conn.schedule,
                f"{last.status.value} {when(last.started_at)}"
                if last
                else "never",
            )
        )
    print_table(None, ["NAME", "SOURCE", "LOADER", "MODE", "SCHEDULE", "LAST RUN"], rows)
    if not connections:
        say("no connections yet; add one with: etlctl connection add NAME --source S --loader L")


@app.command(
    "show",
    help="Show a connection, its saved state and its last run.\n\nExamples:\n\n  etlctl connection show users-to-wh\n\n  etlctl connection show users-to-wh --json | jq .state",
)
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the connection."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    view = app_state(ctx).store.read()
    connection = view.get("connection", name)
    doc = connection_view(view, connection)
    if as_json:
        print_json(doc)
        return
    state = doc["state"]
    last = doc["last_run"]
    print_fields(
        f"connection {connection.name}",
        [
            ("id", connection.id),
            ("source", connection.source),
            ("loader", connection.loader),
            ("mode", connection.mode.value),
            ("cursor field", connection.cursor_field),
            ("primary key", ", ".join(connection.primary_key)),
            ("schedule", connection.schedule),
            ("on error", connection.on_error.value),
            ("transform", connection.transform),
            ("empty source", "allowed" if connection.allow_empty else "refused in full_refresh"),
            ("streams", _selection(connection) or "every stream of the source"),
            ("state", _state_per_stream(state) or "none (the next sync starts from scratch)"),
            ("last run", f"{last['id']} {last['status']}" if last else "never"),
            ("managed by", connection.managed_by or "cli"),
            ("created", connection.created_at),
            ("updated", connection.updated_at),
        ],
    )


@app.command(
    "update",
    help=(
        "Change a connection's mode, cursor, key, schedule, source or loader.\n\n"
        "Examples:\n\n"
        "  etlctl connection update users-to-wh --mode dedup --primary-key id\n\n"
        '  etlctl connection update users-to-wh --schedule "@hourly"'
    ),
)
def update(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the connection."),
    source: str | None = typer.Option(None, "--source", "-s", help="Read another source."),
    loader: str | None = typer.Option(None, "--loader", "-l", help="Write to another loader."),
    mode: SyncMode | None = typer.Option(None, "--mode", "-m", help="Sync mode."),
    cursor_field: str | None = typer.Option(None, "--cursor-field", help="Cursor field."),
    primary_key: str | None = typer.Option(
        None, "--primary-key", help="Key column(s), comma-separated."
    ),
    schedule: str | None = typer.Option(None, "--schedule", help='"manual" or a cron expression.'),
    on_error: OnError | None = typer.Option(None, "--on-error", help="fail or skip."),
    transform_file: Path | None = typer.Option(
        None, "--transform-file", help="A YAML/JSON file with the transform."
    ),
    no_transform: bool = typer.Option(False, "--no-transform", help="Remove the transform."),
    allow_empty: bool | None = typer.Option(
        None,
        "--allow-empty/--no-allow-empty",
        help="Whether a full_refresh from a source with no records may empty the target.",
    ),
    streams: list[str] = typer.Option(
        [], "--stream", help="Replace the stream selection, NAME[:MODE[:CURSOR[:KEY,KEY]]]."
    ),
    all_streams: bool = typer.Option(
        False, "--all-streams", help="Drop the stream selection: sync every stream."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the updated connection as JSON."),
    no_crontab: bool = no_crontab_option(),
) -> None:
    state = app_state(ctx)
    before = state.store.read().get("connection", name)
    changes = {
        "source": source,
        "loader": loader,
        "mode": mode,
        "cursor_field": cursor_field,
        "primary_key": _split_key(primary_key),
        "schedule": schedule,
        "on_error": on_error,
        "transform": _read_transform(transform_file),
        "allow_empty": allow_empty,
        "streams": [] if all_streams else registry.parse_streams(streams),
    }
    if no_transform:
        changes["transform"] = {}
    connection = registry.update_connection(state.store, name, changes)
    if as_json:
        print_json(connection.to_doc())
    else:
        changed = connection.updated_at != before.updated_at
        say(f'connection "{name}" {"updated" if changed else "unchanged"}')
    sync_after_change(state.store, connection.schedule != before.schedule, no_crontab)


@app.command(
    "remove",
    help="Remove a connection and its saved state (its run history stays). Refused (exit 4) while it syncs.\n\nExamples:\n\n  etlctl connection remove users-to-wh",
)
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the connection."),
    no_crontab: bool = no_crontab_option(),
) -> None:
    store = app_state(ctx).store
    removed = registry.remove_connection(store, name)
    say(f'connection "{name}" removed')
    sync_after_change(store, removed.scheduled, no_crontab)


@app.command(
    "reset",
    help="Forget a connection's saved state (or one stream's): the next sync starts from scratch. Refused (exit 4) while it syncs.\n\nExamples:\n\n  etlctl connection reset users-to-wh\n\n  etlctl connection reset db-to-wh --stream orders",
)
def reset(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the connection."),
    stream: str | None = typer.Option(
        None, "--stream", help="Forget the state of this stream only; the others keep theirs."
    ),
) -> None:
    previous = registry.reset_connection(app_state(ctx).store, name, stream)
    if previous and (previous.streams or previous.global_state is not None):
        was = json.dumps(_state_per_stream(previous.to_doc()), default=str)
        say(f'connection "{name}" reset (was: {was})')
    else:
        say(f'connection "{name}" had no saved state')
