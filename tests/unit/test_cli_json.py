"""Every read command takes --json (README): enumerated from the typer app itself, so a new
read command without --json fails here, and each one's --json output parses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main

from etlctl.cli.main import app
from etlctl.models import Run, RunStatus
from etlctl.store import Store

# Commands that change something (the store, targets, crontab, images), send or serve. Every other
# command is a read command and must take --json.
CHANGING = {
    "serve",
    "source remove", "loader remove", "connection remove", "connection reset",
    "settings set", "settings unset",
    "alerts set", "alerts remove", "alerts check",  # check sends the alerts that are due
}


def _commands() -> dict[str, list[str]]:
    """Every leaf command of the app ("runs show") with its option names."""
    found: dict[str, list[str]] = {}

    def walk(command, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
            return
        found[" ".join(path)] = [o for p in command.params for o in getattr(p, "opts", [])]

    walk(typer.main.get_command(app), [])
    return found


def test_every_read_command_takes_json() -> None:
    commands = _commands()
    assert set(commands) >= CHANGING, f"not commands any more: {CHANGING - set(commands)}"
    missing = sorted(name for name, options in commands.items()
                     if name not in CHANGING and "--json" not in options)
    assert missing == [], f"read commands without --json: {missing}"


@pytest.fixture
def populated(cli, store_path: Path, tmp_path: Path) -> str:
    """A source, a loader, a connection and a finished run with a log; returns the run id."""
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path / 'u.csv'}")
    cli("loader", "add", "wh", "--type", "sqlite", "--config", f"path={tmp_path / 'w.db'}",
        "--config", "table=users")
    cli("connection", "add", "u2w", "--source", "users", "--loader", "wh")
    log = tmp_path / "run.log"
    log.write_text('extractor: started\nloader: "quoted" \\ line\nloader: done\n')
    run = Run(connection="u2w", status=RunStatus.SUCCEEDED, log_path=str(log))
    with Store(store_path).transaction() as view:
        view.save_run(run)
    return run.id


READS_OFFLINE = [
    ("source", "list"), ("source", "show", "users"),
    ("loader", "list"), ("loader", "show", "wh"),
    ("connection", "list"), ("connection", "show", "u2w"),
    ("connectors", "list"), ("connectors", "spec", "csv"),
    ("runs", "list"), ("runs", "show", "{run}"),
    ("logs", "{run}"), ("logs", "{run}", "--tail", "2"),
    ("settings", "show"), ("schedule", "list"), ("export",),
]


@pytest.mark.parametrize("args", READS_OFFLINE, ids=" ".join)
def test_read_commands_print_json(cli, populated: str, args: tuple[str, ...]) -> None:
    result = cli(*(a.replace("{run}", populated) for a in args), "--json")
    json.loads(result.stdout)


def test_logs_json_holds_the_lines_exactly(cli, populated: str) -> None:
    document = json.loads(cli("logs", populated, "--json").stdout)
    assert document["run_id"] == populated
    assert document["lines"] == ["extractor: started", 'loader: "quoted" \\ line', "loader: done"]
    tail = json.loads(cli("logs", populated, "--json", "--tail", "1").stdout)
    assert tail["lines"] == ["loader: done"]
    empty = Path(document["log_path"])
    empty.write_text("")
    assert json.loads(cli("logs", populated, "--json").stdout)["lines"] == []


def test_connectors_spec_json_is_the_spec(cli) -> None:
    assert json.loads(cli("connectors", "spec", "csv", "--json").stdout) == json.loads(
        cli("connectors", "spec", "csv").stdout
    )
