"""Fuzzing the CLI's argument and config parsing: whatever a user types or a config file
holds, etlctl answers with one error line and a documented exit code, never a traceback and
never an internal error; an input it refuses changes nothing in the store.

Commands that start containers, contact services, send alerts or serve (sync, check,
discover, gc, images, serve, doctor, alerts) are left out: their argument parsing is the same
typer code, their work is not parsing (and must not send anything to a generated address).
"""

from __future__ import annotations

import atexit
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from etlctl.cli.main import app
from etlctl.models import Run, RunStatus
from etlctl.store import Store

# README: 0 success, 1 a sync failed, 2 invalid input, 3 not found, 4 conflict, 5 store
# unreadable, 6 service unavailable, 7 timeout, 130 cancelled. Parsing never runs a sync: 1
# here is the catch-all for a bug.
PARSING_EXITS = {0, 2, 3, 4, 5}
SKIPPED = (
    "sync", "gc", "serve", "doctor", "images", "source check", "loader check",
    "source discover", "alerts",
)
CONNECTOR_TYPES = ["csv", "jsonl", "http", "sqlite", "postgres", "amqp", "nope"]

runner = CliRunner()


def _annotations(callback) -> dict[str, object]:
    """The declared type of each parameter ("int | None"): typer keeps no click type on
    its parameters before they are parsed."""
    while hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    return {name: p.annotation for name, p in inspect.signature(callback).parameters.items()}


def _commands() -> dict[tuple[str, ...], list]:
    """Every leaf command (but SKIPPED) with its parameters."""
    found: dict[tuple[str, ...], list] = {}

    def walk(command, path: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
            return
        if not " ".join(path).startswith(SKIPPED):
            annotations = _annotations(command.callback)
            for param in command.params:
                param.fuzz_annotation = str(annotations.get(param.name, ""))
            found[path] = list(command.params)

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _commands()

# Mostly numbers no 64-bit integer holds: where a command turns one into a C size, it fails.
huge_ints = st.sampled_from(
    ["99999999999999999999", "9223372036854775808", "18446744073709551616", "1" * 5000,
     "-99999999999999999999", "1e400", "-1e999", "nan", "inf", "0", "-1"]
)
odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30
)
RUN_ID = "run_20240501T101500Z_ab12cd"
names = st.sampled_from(
    ["users", "u2w", "wh", RUN_ID, "missing", "a" * 70, "../x", "UP", "a b"]
)
paths = st.sampled_from(["/dev/full", "/dev/null", "fifo", "link", "dir", "missing/x.yaml"])
config_pairs = st.builds(
    lambda key, value: f"{key}={value}",
    st.sampled_from(["path", "table", "delimiter", "header", "url", "pagination.start_page",
                     "pagination", "params", "batch", "x.y.z", ""]),
    st.one_of(huge_ints, odd_text, st.sampled_from(['{"type": 1}', "[1,2", "{}", "true"])),
)


def _values_for(param) -> st.SearchStrategy[str]:
    """What a user might pass to this parameter: mostly plausible, often hostile."""
    declared = param.fuzz_annotation
    if "int" in declared or "float" in declared:
        plausible = huge_ints
    elif param.name == "run_id":
        plausible = st.just(RUN_ID)
    elif param.name in ("name", "source", "loader", "connection"):
        plausible = st.sampled_from(["users", "wh", "u2w"])
    elif param.name in ("connector_type", "type"):
        plausible = st.sampled_from(CONNECTOR_TYPES)
    elif param.name in ("config", "set_config"):
        plausible = config_pairs
    else:
        plausible = st.one_of(paths, names)
    hostile = st.one_of(odd_text, huge_ints, names, paths)
    return st.integers(0, 9).flatmap(lambda roll: plausible if roll < 7 else hostile)


@st.composite
def command_lines(draw: st.DrawFn, path: tuple[str, ...]) -> list[str]:
    params = COMMANDS[path]
    tokens: list[str] = list(path)
    for param in params:
        if not getattr(param, "opts", None) or param.opts[0].startswith("-"):
            continue
        if draw(st.integers(0, 9)) > 0:  # positional, usually given
            tokens.append(draw(_values_for(param)))
    options = [p for p in params if getattr(p, "opts", None) and p.opts[0].startswith("-")]
    for param in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        tokens.append(draw(st.sampled_from(param.opts)))
        if not getattr(param, "is_flag", False):
            tokens.append(draw(_values_for(param)))
    if draw(st.integers(0, 9)) == 0:  # a stray token anywhere
        tokens.insert(draw(st.integers(0, len(tokens))), draw(st.one_of(odd_text, huge_ints)))
    return tokens


def _workspace() -> tuple[Path, Path]:
    """A throwaway store holding a source, a loader and a connection, and odd files."""
    directory = Path(tempfile.mkdtemp(prefix="etlctl-fuzz-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    store = directory / "store.json"
    for args in (
        ["source", "add", "users", "--type", "csv", "--config", f"path={directory}/u.csv"],
        ["loader", "add", "wh", "--type", "sqlite", "--config", f"path={directory}/w.db",
         "--config", "table=t"],
        ["connection", "add", "u2w", "--source", "users", "--loader", "wh"],
    ):
        assert runner.invoke(app, ["--store", str(store), *args]).exit_code == 0
    log = directory / "run.log"
    log.write_text("extractor: started\nloader: done\n")
    with Store(store).transaction() as view:
        view.save_run(Run(id=RUN_ID, connection="u2w", status=RunStatus.SUCCEEDED,
                          log_path=str(log)))
    os.mkfifo(directory / "fifo")
    (directory / "real.yaml").write_text("x: 1\n")
    (directory / "link").symlink_to(directory / "real.yaml")
    (directory / "dir").mkdir()
    return directory, store


WORKSPACE, STORE = _workspace()


def _invoke(args: list[str]) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(WORKSPACE)  # relative paths ("fifo", "link") name the workspace's files
    try:
        result = runner.invoke(app, ["--store", str(STORE), *args], input="")
    finally:
        os.chdir(cwd)
    return result.exit_code, result.stdout + result.stderr


def _assert_answered(code: int, output: str, args: list[str]) -> None:
    assert "Traceback" not in output, (args, output)
    assert "internal error" not in output, (args, output)
    assert code in PARSING_EXITS, (args, code, output)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_no_command_line_ends_in_a_traceback(path: tuple[str, ...]) -> None:
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(command_lines(path))
    def check(args: list[str]) -> None:
        code, output = _invoke(args)
        _assert_answered(code, output, args)

    check()


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.floats(), st.text(max_size=20),
        st.integers(min_value=-(2**80), max_value=2**80),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["path", "table", "url", "pagination", "params",
                                         "start_page", "type", "header", "x"]),
                        children, max_size=4),
    ),
    max_leaves=12,
)


def _config_file(directory: Path, kind: str, payload: object) -> Path:
    if kind == "bytes":
        path = directory / "config.yaml"
        path.write_bytes(payload)  # type: ignore[arg-type]
    elif kind == "json":
        path = directory / "config.json"
        path.write_text(json.dumps(payload, allow_nan=True))
    else:
        path = directory / "config.yaml"
        path.write_text(str(payload))
    return path


config_payloads = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
    st.tuples(st.just("json"), st.dictionaries(st.sampled_from(
        ["path", "table", "url", "pagination", "params", "header", "delimiter"]), json_values,
        max_size=5)),
    st.tuples(st.just("yaml"), st.sampled_from([
        "path: /tmp/a.csv\nheader: 2024-13-01\n", "path: !!binary aGk=\n",
        "path: /tmp/a.csv\nencoding: 2024-05-01\n", "url: http://x/\npagination:\n  type: "
        "page_number\n  start_page: 99999999999999999999\n", "- a\n- b\n", "a: &x [*x]\n",
        "path: " + "[" * 200 + "]" * 200 + "\n", "path: /tmp/a.csv\npath: /tmp/b.csv\n",
        "path: .inf\n", "table: .nan\npath: /tmp/a.db\n", "\ufeffpath: /tmp/a.csv\n",
    ])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["source", "loader"]),
    st.sampled_from(CONNECTOR_TYPES),
    config_payloads,
    st.lists(config_pairs, max_size=3),
)
def test_no_config_ends_in_a_traceback_and_a_refused_one_changes_nothing(
    kind: str, connector_type: str, payload: tuple[str, object], pairs: list[str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="etlctl-fuzz-config-") as directory:
        _add_fuzzed(kind, connector_type, _config_file(Path(directory), *payload), pairs)


def _add_fuzzed(kind: str, connector_type: str, config: Path, pairs: list[str]) -> None:
    before = STORE.read_bytes()
    args = [kind, "add", "fuzzed", "--type", connector_type, "--config-file", str(config)]
    for pair in pairs:
        args += ["--config", pair]
    code, output = _invoke(args)
    _assert_answered(code, output, args)
    assert code in (0, 2), (args, code, output)
    if code == 0:
        assert _invoke([kind, "remove", "fuzzed"])[0] == 0
    else:
        assert STORE.read_bytes() == before, (args, output)
