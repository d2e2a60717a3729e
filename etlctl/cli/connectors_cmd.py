"""`etlctl connectors ...`: the built-in connector types and their config specs."""

from __future__ import annotations

import typer

from etlctl import catalog
from etlctl.cli.output import print_json, print_table
from etlctl.errors import ValidationError, close_match

app = typer.Typer(
    help="Inspect the built-in connector types and their config specs.", no_args_is_help=True
)


def _check_role(role: str | None) -> None:
    if role not in (None, "extractor", "loader"):
        raise ValidationError(
            f"--role must be extractor or loader, got {role!r}", hint="for example: --role loader"
        )


@app.command(
    "list",
    help="List the built-in connector types.\n\nExamples:\n\n  etlctl connectors list\n\n  etlctl connectors list --role loader --json",
)
def list_(
    role: str | None = typer.Option(None, "--role", help="Only extractors or only loaders."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    _check_role(role)
    infos = catalog.connectors(role)
    if as_json:
        print_json(
            [
                {
                    "type": i.type,
                    "role": i.role,
                    "image": i.image,
                    "description": i.description,
                    "modes": list(i.modes),
                }
                for i in infos
            ]
        )
        return
    print_table(
        None,
        ["TYPE", "ROLE", "IMAGE", "MODES", "DESCRIPTION"],
        [(i.type, i.role, i.image, ", ".join(i.modes), i.description) for i in infos],
    )


@app.command(
    "spec",
    help=(
        "Print a connector type's config schema (JSON Schema; secret fields are marked).\n\n"
        "Examples:\n\n  etlctl connectors spec csv\n\n  etlctl connectors spec postgres --role loader"
        "\n\n  etlctl connectors spec http --json | jq '.properties | keys'"
    ),
)
def spec(
    connector_type: str = typer.Argument(..., metavar="TYPE", help="The connector type."),
    role: str | None = typer.Option(
        None, "--role", help="extractor or loader, when the type is both."
    ),
    as_json: bool = typer.Option(
        True, "--json", help="Print JSON (the only format of a spec; accepted for scripts)."
    ),
) -> None:
    _check_role(role)
    roles = [role] if role else ["extractor", "loader"]
    found = [info for r in roles if (info := catalog.find_connector(r, connector_type))]
    if not found:
        known = sorted({info.type for info in catalog.connectors(role)})
        guess = close_match(connector_type, known)
        raise ValidationError(
            f"unknown {role or 'connector'} type {connector_type!r}; built-in types: "
            + ", ".join(known),
            hint=(f"did you mean {guess!r}? " if guess else "")
            + "see: etlctl connectors list",
        )
    if len(found) > 1:
        print_json({info.role: info.spec for info in found})
    else:
        print_json(found[0].spec)
