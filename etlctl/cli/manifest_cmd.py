"""`etlctl apply`, `etlctl diff` and `etlctl export`: manifests in and out (docs/manifests.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from etlctl import manifest
from etlctl.cli.options import no_crontab_option
from etlctl.cli.output import app_state, note, print_json, stdout
from etlctl.cli.schedule import sync_after_change
from etlctl.errors import ValidationError
from etlctl.files import write_atomically
from etlctl.manifest import Action, FieldDiff, Plan, Step

DONE = {
    Action.CREATE: "created",
    Action.UPDATE: "updated",
    Action.UNCHANGED: "unchanged",
    Action.PRUNE: "pruned",
}
WOULD = {
    Action.CREATE: "would be created",
    Action.UPDATE: "would be updated",
    Action.UNCHANGED: "unchanged",
    Action.PRUNE: "would be pruned",
}
MARK = {
    Action.CREATE: "[green]+[/green]",
    Action.UPDATE: "[yellow]~[/yellow]",
    Action.UNCHANGED: "[dim]=[/dim]",
    Action.PRUNE: "[red]-[/red]",
}

FILES_HELP = "A manifest file, a directory of *.yaml/*.yml files, or - for stdin (repeatable)."


def _files_option() -> Any:
    return typer.Option(..., "--filename", "-f", help=FILES_HELP, show_default=False)


# --- rendering -----------------------------------------------------------------------------
def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, ensure_ascii=False)


def _diff_line(diff: FieldDiff) -> str:
    before, after = _value(diff.before), _value(diff.after)
    # A masked secret shows the same stars on both sides: say that it changed.
    suffix = " (secret changed)" if before == after else ""
    return f"      {escape(diff.path)}: {escape(before)} -> {escape(after)}{suffix}"


def _step_line(step: Step, dry_run: bool) -> str:
    words = (WOULD if dry_run else DONE)[step.action]
    where = f"  [dim]({escape(str(step.location))})[/dim]" if step.location else ""
    title = manifest.TITLE_OF_KIND[step.kind]
    return f"{MARK[step.action]} {title} {escape(step.name)} {words}{where}"


def _summary(plan: Plan) -> str:
    counts = plan.counts()
    parts = ", ".join(f"{counts[action.value]} {DONE[action]}" for action in Action)
    if plan.dry_run:
        return f"Dry run, nothing changed. Plan: {parts}."
    return f"Applied: {parts}."


def render_plan(plan: Plan, as_json: bool) -> None:
    """The plan on stdout (text or JSON); its warnings on stderr."""
    for warning in plan.warnings:
        note(f"warning: {warning}")
    if as_json:
        print_json(plan.to_json())
        return
    for step in plan.steps:
        stdout.print(_step_line(step, plan.dry_run))
        for diff in step.diffs:
            stdout.print(_diff_line(diff))
    stdout.print(_summary(plan))


def _load(files: list[str]) -> list[manifest.Manifest]:
    return manifest.load(files, stdin=typer.get_binary_stream("stdin"))


# --- commands ------------------------------------------------------------------------------
APPLY_HELP = """Create, update (and with --prune remove) objects so the store matches manifests.

The whole set is validated first and applied in one store transaction: one invalid
object changes nothing. Exit codes: 0 applied, 2 invalid manifests, others as for every
command (see docs/manifests.md).

Examples:

  etlctl apply -f examples/manifests/

  etlctl apply -f manifests/ --prune

  etlctl apply -f users.yaml --dry-run

  cat all.yaml | etlctl apply -f -
"""


def apply_command(
    ctx: typer.Context,
    files: list[str] = _files_option(),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan and change nothing (same as `etlctl diff`)."
    ),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Remove objects an earlier apply created that the manifests no longer declare.",
    ),
    no_crontab: bool = no_crontab_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    state = app_state(ctx)
    manifests = _load(files)
    plan = manifest.apply(state.store, manifests, prune=prune, dry_run=dry_run)
    render_plan(plan, as_json)
    if not dry_run:
        sync_after_change(state.store, plan.schedules_changed, no_crontab)


DIFF_HELP = """Show what `etlctl apply` would change, and change nothing.

With --exit-code the exit code says whether anything would change: 0 nothing, 1 some
change; invalid manifests still exit 2 (as `git diff --exit-code`).

Examples:

  etlctl diff -f manifests/

  etlctl diff -f manifests/ --prune --exit-code

  etlctl diff -f manifests/ --json | jq '.steps[] | select(.action != "unchanged")'
"""


def diff_command(
    ctx: typer.Context,
    files: list[str] = _files_option(),
    prune: bool = typer.Option(False, "--prune", help="Also show what --prune would remove."),
    exit_code: bool = typer.Option(
        False, "--exit-code", help="Exit 1 when something would change, 0 when nothing would."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    manifests = _load(files)
    plan = manifest.apply(app_state(ctx).store, manifests, prune=prune, dry_run=True)
    render_plan(plan, as_json)
    if exit_code and plan.changed:
        raise typer.Exit(1)


EXPORT_HELP = """Write the store's sources, loaders and connections as manifests.

Plain secrets are never written: each becomes a reference {fromEnv: ETLCTL_<KIND>_<NAME>_<FIELD>}
(with a warning). Applying the export to the same store changes nothing.

Examples:

  etlctl export > all.yaml

  etlctl export -o manifests/all.yaml

  etlctl export --json | jq '.[].metadata.name'
"""


def export_command(
    ctx: typer.Context,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the manifests as a JSON array (stdout only)."
    ),
) -> None:
    if as_json and output is not None:
        raise ValidationError("--json prints to stdout; it cannot be used with --output")
    documents, warnings = manifest.export_documents(app_state(ctx).store.read())
    for warning in warnings:
        note(f"warning: {warning}")
    if as_json:
        print_json(documents)
    elif output is None:
        typer.echo(manifest.export_text(documents), nl=False)
    else:
        # no plain secrets inside: readable like any manifest
        write_atomically(output, manifest.export_text(documents).encode(), mode=0o644)
        note(f"exported {len(documents)} object(s) to {output}")


def register(app: typer.Typer) -> None:
    """Add apply, diff and export to the top-level command."""
    app.command("apply", help=APPLY_HELP)(apply_command)
    app.command("diff", help=DIFF_HELP)(diff_command)
    app.command("export", help=EXPORT_HELP)(export_command)
