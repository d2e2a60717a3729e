"""`etlctl source ...` and `etlctl loader ...`: the same commands for both kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from etlctl import catalog, orchestrator, registry, settings
from etlctl.cli.options import network_option, runtime_option
from etlctl.cli.output import app_state, print_fields, print_json, print_table, say, when
from etlctl.errors import ConnectorCheckFailed
from etlctl.views import masked_object

EXAMPLES = {
    "source": {
        "type": "csv",
        "name": "users",
        "config": "--config path=/data/users.csv --config delimiter=;",
        "update": "--config delimiter=,",
    },
    "loader": {
        "type": "sqlite",
        "name": "warehouse",
        "config": "--config path=/data/warehouse.db --config table=users",
        "update": "--config table=customers",
    },
}


def read_config_options(
    kind: str, connector_type: str, pairs: list[str], config_file: Path | None
) -> dict[str, Any]:
    """--config-file first, then --config KEY=VALUE pairs on top of it."""
    info = catalog.find_connector(catalog.ROLE_OF_KIND[kind], connector_type)
    config = catalog.load_config_file(config_file) if config_file else {}
    if config_file:  # paths in a file are relative to the file, as in manifests
        config = catalog.absolute_paths(kind, connector_type, config, config_file.parent.absolute())
    pairs_config = catalog.parse_config_pairs(pairs, info.spec if info else None)
    pairs_config = catalog.absolute_paths(kind, connector_type, pairs_config, Path.cwd())
    return catalog.merge_config(config, pairs_config)


def build_app(kind: str) -> typer.Typer:
    ex = EXAMPLES[kind]
    plural = f"{kind}s"
    app = typer.Typer(
        help=f"Register and inspect {plural} ({'where data comes from' if kind == 'source' else 'where data goes'}).",
        no_args_is_help=True,
    )

    @app.command(
        "add",
        help=(
            f"Register a {kind}: a connector type and its config, validated against the type's spec.\n\n"
            "Examples:\n\n"
            f"  etlctl {kind} add {ex['name']} --type {ex['type']} {ex['config']}\n\n"
            f"  etlctl {kind} add {ex['name']} --type {ex['type']} --config-file {ex['name']}.yaml\n\n"
            f"  etlctl {kind} add custom --type mytype --image registry.example.com/my-{kind}:1.0"
        ),
    )
    def add(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=f"Name of the {kind} (lowercase, digits, - and _)."),
        connector_type: str = typer.Option(
            ..., "--type", "-t", help="Connector type: see `etlctl connectors list`."
        ),
        config: list[str] = typer.Option(
            [], "--config", "-c", help="A config field, KEY=VALUE (repeatable; nested: a.b=VALUE)."
        ),
        config_file: Path | None = typer.Option(
            None, "--config-file", "-f", help="A JSON or YAML file with config fields."
        ),
        image: str | None = typer.Option(
            None,
            "--image",
            help="A custom connector image that follows docs/connector-protocol.md.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the created object as JSON."),
    ) -> None:
        state = app_state(ctx)
        values = read_config_options(kind, connector_type, config, config_file)
        item = registry.add_connector_object(state.store, kind, name, connector_type, values, image)
        if as_json:
            print_json(masked_object(item))
        else:
            say(f'{kind} "{item.name}" created ({item.type}, id {item.id})')

    @app.command(
        "list",
        help=f"List the {plural}.\n\nExamples:\n\n  etlctl {kind} list\n\n  etlctl {kind} list --json | jq -r '.[].name'",
    )
    def list_(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        view = app_state(ctx).store.read()
        items = view.list(kind)
        if as_json:
            print_json([masked_object(item) for item in items])
            return
        used: dict[str, list[str]] = {}
        for conn in view.connections():
            used.setdefault(getattr(conn, kind), []).append(conn.name)
        print_table(
            None,
            ["NAME", "TYPE", "IMAGE", "CONNECTIONS", "UPDATED"],
            [
                (
                    item.name,
                    item.type,
                    masked_object(item)["image"],
                    ", ".join(used.get(item.name, [])) or "-",
                    when(item.updated_at),
                )
                for item in items
            ],
        )
        if not items:
            say(f"no {plural} yet; add one with: etlctl {kind} add NAME --type TYPE ...")

    @app.command(
        "show",
        help=f"Show one {kind} with its config (secret fields masked).\n\nExamples:\n\n  etlctl {kind} show {ex['name']}\n\n  etlctl {kind} show {ex['name']} --json",
    )
    def show(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=f"Name of the {kind}."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        view = app_state(ctx).store.read()
        item = view.get(kind, name)
        doc = masked_object(item)
        doc["connections"] = registry.connections_using(view, kind, name)
        if as_json:
            print_json(doc)
            return
        print_fields(
            f"{kind} {item.name}",
            [
                ("id", item.id),
                ("type", item.type),
                ("image", doc["image"]),
                ("config", doc["config"]),
                ("connections", ", ".join(doc["connections"]) or "-"),
                ("managed by", item.managed_by or "cli"),
                ("created", item.created_at),
                ("updated", item.updated_at),
            ],
        )

    @app.command(
        "update",
        help=(
            f"Change a {kind}'s config, type or image; the result is validated again.\n\n"
            "Examples:\n\n"
            f"  etlctl {kind} update {ex['name']} {ex['update']}\n\n"
            f"  etlctl {kind} update {ex['name']} --unset encoding\n\n"
            f"  etlctl {kind} update {ex['name']} --config-file {ex['name']}.yaml --replace"
        ),
    )
    def update(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=f"Name of the {kind}."),
        config: list[str] = typer.Option(
            [], "--config", "-c", help="Set a config field, KEY=VALUE (repeatable)."
        ),
        config_file: Path | None = typer.Option(
            None, "--config-file", "-f", help="A JSON or YAML file with config fields."
        ),
        replace: bool = typer.Option(
            False, "--replace", help="Replace the whole config instead of merging into it."
        ),
        unset: list[str] = typer.Option([], "--unset", help="Remove a config field (repeatable)."),
        connector_type: str | None = typer.Option(
            None, "--type", "-t", help="Change the connector type."
        ),
        image: str | None = typer.Option(None, "--image", help="Use this custom image."),
        default_image: bool = typer.Option(
            False, "--default-image", help="Go back to the built-in image."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the updated object as JSON."),
    ) -> None:
        state = app_state(ctx)
        current = state.store.read().get(kind, name)
        values = read_config_options(kind, connector_type or current.type, config, config_file)
        changes = registry.ConnectorObjectChanges(
            config=None if replace else values,
            replace_config=values if replace else None,
            unset=tuple(unset),
            image=image,
            clear_image=default_image,
            connector_type=connector_type,
        )
        item = registry.update_connector_object(state.store, kind, name, changes)
        if as_json:
            print_json(masked_object(item))
        else:
            say(
                f'{kind} "{item.name}" {"updated" if item.updated_at != current.updated_at else "unchanged"}'
            )

    @app.command(
        "remove",
        help=f"Remove a {kind} (refused while a connection uses it).\n\nExamples:\n\n  etlctl {kind} remove {ex['name']}",
    )
    def remove(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=f"Name of the {kind}."),
    ) -> None:
        registry.remove_connector_object(app_state(ctx).store, kind, name)
        say(f'{kind} "{name}" removed')

    @app.command(
        "check",
        help=(
            f"Test a {kind}'s config for real: its connector checks that files are readable "
            "and databases reachable.\n\n"
            f"Examples:\n\n  etlctl {kind} check {ex['name']}\n\n"
            f"  etlctl {kind} check {ex['name']} --runtime local --json"
        ),
    )
    def check(
        ctx: typer.Context,
        name: str = typer.Argument(..., help=f"Name of the {kind}."),
        runtime: str | None = runtime_option(),
        network: str | None = network_option(),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        store = app_state(ctx).store
        stored = store.read().settings()
        result = orchestrator.check_connector(
            store,
            kind,
            name,
            runtime_name=settings.chosen(stored, "runtime", runtime),
            network=settings.chosen(stored, "network", network),
        )
        if as_json:
            print_json({"name": name, "ok": result.ok, "message": result.message})
        elif result.ok:
            say(f'{kind} "{name}": ok')
        if not result.ok:
            raise ConnectorCheckFailed(
                f'{kind} "{name}" check failed: {result.message}',
                hint=f"fix its config with: etlctl {kind} update {name} --config KEY=VALUE "
                f"(see: etlctl {kind} show {name})",
            )

    if kind == "source":
        app.command(
            "discover",
            help=(
                "List the streams a source offers: columns and types, key properties, cursor "
                "candidates, supported modes (pick them with connection --stream).\n\n"
                f"Examples:\n\n  etlctl source discover {ex['name']}\n\n"
                f"  etlctl source discover {ex['name']} --json | jq '.[].name'"
            ),
        )(discover)
    return app


def discover(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the source."),
    runtime: str | None = runtime_option(),
    network: str | None = network_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the streams as JSON."),
) -> None:
    store = app_state(ctx).store
    stored = store.read().settings()
    streams = orchestrator.discover_source(
        store,
        name,
        runtime_name=settings.chosen(stored, "runtime", runtime),
        network=settings.chosen(stored, "network", network),
    )
    if as_json:
        print_json(streams)
        return
    if not streams:
        say(f'source "{name}" offers no streams')
        return
    for stream in streams:
        columns = ", ".join(f"{c['name']} {c['type']}" for c in stream.get("columns", []))
        print_fields(
            f"stream {stream['name']}",
            [
                ("columns", columns or "known once read"),
                ("key", ", ".join(stream.get("key_properties", []))),
                ("cursor candidates", ", ".join(stream.get("cursor_candidates", []))),
                ("modes", ", ".join(stream.get("modes", []))),
            ],
        )
