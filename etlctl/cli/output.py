"""Rendering for the CLI: rich for people, plain JSON for scripts, errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from etlctl.store import Store

# Piped output (CI logs, `| less`) gets a wide fixed width instead of rich's 80 columns, so
# tables keep one line per row.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class AppState:
    """What the top-level options set for every command."""

    store_path: Path
    debug: bool = False

    @property
    def store(self) -> Store:
        return Store(self.store_path)


def app_state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):  # a sub-app invoked on its own, as in some tests
        from etlctl.paths import default_store_path

        root.obj = AppState(store_path=default_store_path())
    return root.obj


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(data: Any) -> None:
    """JSON on stdout, never wrapped or coloured, so `| jq` always works."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Cells are plain text: an error message or a value holding '[/x]' is shown as it is,
    never read as rich markup (which would drop it or fail the whole command)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    stdout.print(table)


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """A `show` view: aligned label / value lines; dicts as indented JSON."""
    stdout.print(f"[bold]{escape(title)}[/bold]")
    width = max(len(label) for label, _ in fields) + 1
    for label, value in fields:
        if isinstance(value, dict | list):
            text = json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)
            text = text.replace("\n", "\n" + " " * (width + 2))
        elif isinstance(value, datetime):
            text = value.isoformat(timespec="seconds")
        else:
            text = "-" if value is None or value == "" else str(value)
        stdout.print(f"  {label + ':':<{width}} {text}", markup=False)


def say(message: str) -> None:
    """A confirmation for people, kubectl style: `source "users" created`.

    Plain text, never markup: messages carry states, paths and errors from outside."""
    stdout.print(message, markup=False)


def note(message: str) -> None:
    """Progress and side remarks: stderr, so stdout stays clean for --json and pipes.

    Plain text, never markup (see say)."""
    stderr.print(message, markup=False)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
