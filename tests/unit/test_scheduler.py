"""Schedules without cron: expressions, the crontab line, reconciling crontab text, the CLI.

Nothing here runs `crontab`: the crontab is replaced by an in-memory text where a test needs
one (tests/integration/test_crontab.py uses the real command).
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors import IMAGE_TAG_ENV
from etlctl import scheduler
from etlctl.errors import ServiceUnavailableError, ValidationError
from etlctl.models import Connection, Run, RunStatus
from etlctl.store import Store

JOB = scheduler.JobEnvironment(
    program=("/opt/etl/venv/bin/etlctl",),
    home="/home/etl",
    env_tool="/usr/bin/env",
    mkdir_tool="/bin/mkdir",
)


def _connection(name: str = "users-to-wh", schedule: str = "*/15 * * * *") -> Connection:
    return Connection(id=f"con_{name}", name=name, source="src", loader="ldr", schedule=schedule)


def _entry(store_path: Path, name: str = "users-to-wh", schedule: str = "*/15 * * * *") -> str:
    return scheduler.entry_for(store_path, _connection(name, schedule), JOB)


# --- expressions ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expression",
    ["*/15 * * * *", "0 2 * * 1-5", "0 0 1 jan,jul *", "30 4 * * sun", "@daily", "@HOURLY"],
)
def test_valid_schedules(expression):
    assert scheduler.validate_schedule(expression) == " ".join(expression.split())


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "3 field(s)"),
        ("* * * * * *", "6 field(s)"),
        ("@sometimes", "unknown macro"),
        ("@reboot", "unknown macro"),
        # croniter takes L; cron does not
        ("0 0 L * *", "does not understand 'L' in the day-of-month field"),
        # '#' would also start a comment in the crontab line
        ("0 0 * * 1#2", "characters cron does not understand"),
        ("0 0 ? * *", "characters cron does not understand"),
        ("5/10 * * * *", "malformed"),  # a step without a range: croniter yes, cron no
        ("0 0 * mon *", "does not understand 'mon' in the month field"),  # a day name
        ("* * * * *\n* * * * * rm -rf /", "one line"),
        ("* * * * %", "characters cron does not understand"),
    ],
)
def test_invalid_schedules_are_refused_clearly(expression, says):
    with pytest.raises(ValidationError) as caught:
        scheduler.validate_schedule(expression)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("61 * * * *", "the minute field '61' is out of range or malformed (it takes 0-59"),
        ("0 24 * * *", "the hour field '24'"),
        ("0 0 0 * *", "the day-of-month field '0'"),
        ("0 0 * 13 *", "the month field '13'"),
        ("0 0 * * 8", "the day-of-week field '8'"),
    ],
)
def test_out_of_range_names_the_field_and_its_values(expression, says):
    with pytest.raises(ValidationError) as caught:
        scheduler.validate_schedule(expression)
    assert says in str(caught.value)


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6 *"])
def test_dates_that_never_come_are_refused(expression):
    # croniter takes them, and `schedule list` then failed with a traceback
    with pytest.raises(ValidationError) as caught:
        scheduler.validate_schedule(expression)
    assert "never fires" in str(caught.value)


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 2 mon", "0 0 31 */2 *"])
def test_rare_but_real_dates_are_accepted(expression):
    assert scheduler.validate_schedule(expression) == expression
    assert scheduler.next_runs(expression, 1)


def test_next_runs_of_a_stored_schedule_that_never_fires_is_empty():
    """A store written before such schedules were refused must still list."""
    assert scheduler.next_runs("0 0 31 2 *", 3) == []


def test_manual_stays_manual():
    assert scheduler.validate_schedule(" Manual ") == "manual"


@pytest.mark.parametrize(
    ("expression", "meaning"),
    [
        ("*/15 * * * *", "Every 15 minutes"),
        ("0 2 * * 1-5", "At 02:00, Monday through Friday"),
        ("@daily", "At 00:00"),
        ("@hourly", "Every hour"),
        ("manual", "only when run by hand"),
    ],
)
def test_plain_english_meaning(expression, meaning):
    assert scheduler.describe_schedule(expression) == meaning


def test_next_three_runs_in_local_time():
    now = datetime(2024, 3, 9, 23, 50, tzinfo=ZoneInfo("Europe/Paris"))
    runs = scheduler.next_runs("0 * * * *", 3, now)
    assert [run.isoformat() for run in runs] == [
        "2024-03-10T00:00:00+01:00",
        "2024-03-10T01:00:00+01:00",
        "2024-03-10T02:00:00+01:00",
    ]
    assert scheduler.next_runs("@daily", 1, now)[0].isoformat() == "2024-03-10T00:00:00+01:00"
    assert scheduler.next_runs("manual") == []


# --- the crontab line --------------------------------------------------------------------------
def test_the_line_runs_this_installation_with_the_store_and_a_log(tmp_path, monkeypatch):
    monkeypatch.delenv(IMAGE_TAG_ENV)  # a user's installation: the images of the version
    store_path = tmp_path / "store.json"
    line = _entry(store_path)
    schedule, command_and_tag = line[: len("*/15 * * * *")], line[len("*/15 * * * * ") :]
    assert schedule == "*/15 * * * *"
    command, tag = command_and_tag.rsplit(" # ", 1)
    store_hash = scheduler.store_id(store_path)
    assert tag == f"etlctl:{store_hash}:users-to-wh"
    words = shlex.split(command)
    log = str(tmp_path / "logs" / "users-to-wh" / "cron.log")
    assert words[:5] == ["umask", "077", "&&", "/bin/mkdir", "-p"]
    sync = words[words.index("/usr/bin/env") :]
    assert sync == [
        "/usr/bin/env",
        f"PATH=/opt/etl/venv/bin:{scheduler.SYSTEM_PATH}",
        "HOME=/home/etl",
        "LANG=C.UTF-8",
        "LC_ALL=C.UTF-8",
        "/opt/etl/venv/bin/etlctl",
        "--store",
        str(store_path),
        "sync",
        "users-to-wh",
        "--trigger",
        "schedule",
        ">>",
        log,
        "2>&1",
    ]


def test_the_entry_runs_the_image_tag_it_was_installed_with(tmp_path, monkeypatch):
    monkeypatch.setenv(IMAGE_TAG_ENV, "0.1.0-test-abc")
    words = shlex.split(_entry(tmp_path / "store.json").split(" # ")[0])
    assert words[words.index("/usr/bin/env") + 5] == "ETLCTL_IMAGE_TAG=0.1.0-test-abc"


@pytest.mark.parametrize("tag", ["a b", "x;id", "-lead", "t\nx", "x" * 129])
def test_an_image_tag_that_is_not_a_docker_tag_is_refused(tmp_path, monkeypatch, tag):
    monkeypatch.setenv(IMAGE_TAG_ENV, tag)
    with pytest.raises(ValidationError, match="invalid ETLCTL_IMAGE_TAG"):
        _entry(tmp_path / "store.json")


def test_the_entry_calls_this_installation_by_absolute_path():
    job = scheduler.JobEnvironment.current()
    assert Path(job.program[0]).is_absolute() and Path(job.program[0]).exists()
    assert job.program in {(str(Path(sys.executable).parent / "etlctl"),),
                           (sys.executable, "-m", "etlctl")}  # fmt: skip
    assert job.path.startswith(str(Path(job.program[0]).parent) + ":")


def test_macros_stay_macros(tmp_path):
    assert _entry(tmp_path / "s.json", schedule="@daily").startswith("@daily umask 077 ")


@pytest.mark.parametrize(
    "directory",
    ["a b", "x;touch /tmp/pwned", "$(touch /tmp/pwned)", "`id`", "it's", 'say "hi"', "a # b"],
)
def test_hostile_store_paths_stay_one_quoted_argument(tmp_path, directory):
    store_path = tmp_path / directory / "store.json"
    line = _entry(store_path)
    assert "\n" not in line
    command = line.split(" ", 5)[5].rsplit(" # etlctl:", 1)[0]
    words = shlex.split(command)
    assert words[words.index("--store") + 1] == str(store_path)
    assert scheduler.parse_tag(line) == scheduler.TaggedLine(
        scheduler.store_id(store_path), "users-to-wh"
    )


@pytest.mark.parametrize("directory", ["new\nline", "carriage\rreturn", "50%", "tab\there"])
def test_store_paths_cron_would_break_are_refused(tmp_path, directory):
    with pytest.raises(ValidationError, match="cannot go into a crontab line"):
        _entry(tmp_path / directory / "store.json")


def test_store_id_is_stable_and_follows_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert scheduler.store_id(real / "s.json") == scheduler.store_id(tmp_path / "link/s.json")
    assert scheduler.store_id(real / "s.json") != scheduler.store_id(real / "t.json")
    assert len(scheduler.store_id(real / "s.json")) == 12


def test_a_commented_out_line_is_not_ours(tmp_path):
    assert scheduler.parse_tag("# " + _entry(tmp_path / "s.json")) is None
    assert scheduler.parse_tag("0 * * * * echo # etlctl:nothex:users") is None


# --- reconciling -------------------------------------------------------------------------------
FOREIGN = (
    "# my own jobs\n"
    "MAILTO=ops@example.com\n"
    "0  2 * * *   /usr/local/bin/backup  --all   # nightly\n"
    "\n"
    "  # indented comment, trailing spaces   \n"
    "*/5 * * * * echo 50\\% done\n"
)


def _ours(store_path: Path):
    store_hash = scheduler.store_id(store_path)
    return lambda tag: tag.store_id == store_hash


def test_reconcile_keeps_foreign_lines_byte_for_byte_and_is_idempotent(tmp_path):
    store_path = tmp_path / "s.json"
    desired = {"b": _entry(store_path, "b"), "a": _entry(store_path, "a", "@hourly")}
    text, change = scheduler.reconcile(FOREIGN, _ours(store_path), desired)
    assert text == FOREIGN + desired["a"] + "\n" + desired["b"] + "\n"
    assert change.added == ["a", "b"]
    again, change = scheduler.reconcile(text, _ours(store_path), desired)
    assert again == text
    assert not change.changed and change.unchanged == ["a", "b"]


def test_reconcile_updates_in_place_and_removes(tmp_path):
    store_path = tmp_path / "s.json"
    start = FOREIGN + _entry(store_path, "a") + "\n# between\n" + _entry(store_path, "b") + "\n"
    desired = {"a": _entry(store_path, "a", "0 3 * * *")}
    text, change = scheduler.reconcile(start, _ours(store_path), desired)
    assert text == FOREIGN + desired["a"] + "\n# between\n"
    assert (change.updated, change.removed, change.added) == (["a"], ["b"], [])


def test_reconcile_leaves_other_stores_alone(tmp_path):
    mine, theirs = tmp_path / "mine.json", tmp_path / "theirs.json"
    start = _entry(theirs, "a") + "\n" + _entry(mine, "a") + "\n"
    text, change = scheduler.reconcile(start, _ours(mine), {})
    assert text == _entry(theirs, "a") + "\n"
    assert change.removed == ["a"]


def test_reconcile_drops_duplicates_and_adds_a_missing_final_newline(tmp_path):
    store_path = tmp_path / "s.json"
    line = _entry(store_path, "a")
    text, change = scheduler.reconcile(f"{line}\n{line}\n", _ours(store_path), {"a": line})
    assert text == f"{line}\n"
    assert change.updated == ["a"] and change.unchanged == []
    text, _ = scheduler.reconcile("0 1 * * * foreign", _ours(store_path), {"a": line})
    assert text == f"0 1 * * * foreign\n{line}\n"


def test_installed_entries(tmp_path):
    store_path = tmp_path / "s.json"
    text = FOREIGN + _entry(store_path, "a") + "\n" + _entry(tmp_path / "x.json", "b") + "\n"
    assert scheduler.installed_entries(text, scheduler.store_id(store_path)) == {
        "a": _entry(store_path, "a")
    }


# --- the CLI, with the crontab as a text in memory ------------------------------------------
class FakeCrontab:
    def __init__(self, text: str = "") -> None:
        self.text = text
        self.writes = 0

    def read(self, user=None) -> str:
        return self.text

    def write(self, text: str, user=None) -> None:
        self.text = text
        self.writes += 1


@pytest.fixture
def crontab(monkeypatch, tmp_path):
    fake = FakeCrontab(FOREIGN)
    monkeypatch.setattr(scheduler, "read_crontab", fake.read)
    monkeypatch.setattr(scheduler, "write_crontab", fake.write)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ETLCTL_NO_CRONTAB", raising=False)
    return fake


def _register(cli, tmp_path, *connection_args: str):
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path}/u.csv")
    cli("loader", "add", "out", "--type", "jsonl", "--config", f"path={tmp_path}/out.jsonl")
    return cli(
        "connection", "add", "users-out", "--source", "users", "--loader", "out", *connection_args
    )


def test_connection_commands_keep_the_crontab_in_step(cli, crontab, tmp_path, store_path):
    result = _register(cli, tmp_path, "--schedule", "*/10 * * * *")
    assert "crontab: added users-out" in result.stderr
    assert crontab.text.startswith(FOREIGN)
    assert crontab.text.count("etlctl:") == 1 and "*/10 * * * *" in crontab.text

    result = cli("connection", "update", "users-out", "--on-error", "skip")
    assert "crontab" not in result.stderr and crontab.writes == 1  # schedule untouched

    result = cli("connection", "update", "users-out", "--schedule", "@hourly")
    assert "crontab: updated users-out" in result.stderr
    assert "@hourly" in crontab.text and "*/10" not in crontab.text

    result = cli("connection", "remove", "users-out")
    assert "crontab: removed users-out" in result.stderr
    assert crontab.text == FOREIGN


def test_no_crontab_leaves_it_alone_and_says_so(cli, crontab, tmp_path, monkeypatch):
    result = _register(cli, tmp_path, "--schedule", "@daily", "--no-crontab")
    assert "--no-crontab" in result.stderr and crontab.writes == 0
    monkeypatch.setenv("ETLCTL_NO_CRONTAB", "1")
    cli("connection", "update", "users-out", "--schedule", "@hourly")
    assert crontab.writes == 0
    monkeypatch.delenv("ETLCTL_NO_CRONTAB")
    assert "added users-out" in cli("schedule", "apply").stdout
    assert "already up to date" in cli("schedule", "apply").stdout
    assert crontab.writes == 1


def test_manual_connections_never_touch_the_crontab(cli, crontab, tmp_path, monkeypatch):
    monkeypatch.setattr(scheduler, "read_crontab", None)  # would raise if called
    _register(cli, tmp_path)
    cli("connection", "update", "users-out", "--on-error", "skip")
    cli("connection", "remove", "users-out")


def test_schedule_list(cli, crontab, tmp_path, store_path):
    _register(cli, tmp_path, "--schedule", "0 2 * * 1-5")
    with Store(store_path).transaction() as view:
        view.save_run(Run(connection="users-out", trigger="schedule", status=RunStatus.SKIPPED))
    crontab.text += _entry(store_path, "gone") + "\n"
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    [item] = listed["schedules"]
    assert item["connection"] == "users-out"
    assert item["description"] == "At 02:00, Monday through Friday"
    assert len(item["next_runs"]) == 3
    assert item["last_run"]["status"] == "skipped"
    assert item["crontab"] == "yes"
    assert listed["stale_crontab_entries"] == ["gone"]
    table = cli("schedule", "list")
    assert "Monday through Friday" in table.stdout and "skipped" in table.stdout
    assert "schedule apply" in table.stderr


def test_schedule_remove(cli, crontab, tmp_path, store_path):
    _register(cli, tmp_path, "--schedule", "@daily")
    other = _entry(tmp_path / "other.json", "x") + "\n"
    crontab.text += other
    cli("schedule", "remove", code=2)
    cli("schedule", "remove", "users-out", "--all", code=2)
    assert "removed users-out" in cli("schedule", "remove", "users-out").stdout
    assert crontab.text == FOREIGN + other
    assert json.loads(cli("schedule", "apply", "--json").stdout)["added"] == ["users-out"]
    dry = json.loads(cli("schedule", "remove", "--all", "--dry-run", "--json").stdout)
    assert dry["removed"] == ["users-out"] and not dry["written"]
    cli("schedule", "remove", "--all")
    assert crontab.text == FOREIGN + other
    cli("schedule", "remove", "--all-stores")
    assert crontab.text == FOREIGN


def test_a_crontab_failure_after_the_store_changed_says_both(cli, crontab, tmp_path, monkeypatch):
    def refuse(text, user=None):
        raise ServiceUnavailableError("cannot write the crontab of user etl: not allowed")

    monkeypatch.setattr(scheduler, "write_crontab", refuse)
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path}/u.csv")
    cli("loader", "add", "out", "--type", "jsonl", "--config", f"path={tmp_path}/out.jsonl")
    result = cli(
        "connection", "add", "c", "--source", "users", "--loader", "out", "--schedule", "@daily",
        code=6,
    )  # fmt: skip
    assert "the store was changed, but the crontab was not updated" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(cli("connection", "show", "c", "--json").stdout)["schedule"] == "@daily"


def test_a_missing_crontab_command_is_a_clear_error(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler, "which", lambda name: None)
    monkeypatch.setattr(scheduler, "CRONTAB_CANDIDATES", ())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = cli("schedule", "apply", code=6)
    assert "`crontab` command is not installed" in result.stderr
    assert "--no-crontab" in result.stderr


@pytest.mark.parametrize("command", [["schedule"], ["schedule", "list"], ["schedule", "apply"],
                                     ["schedule", "remove"]])  # fmt: skip
def test_every_schedule_help_has_a_purpose_and_an_example(cli, command):
    text = cli(*command, "--help").stdout
    assert "Usage" in text
    if len(command) > 1:
        assert "Examples" in text
