"""The crontab through the real `crontab` command, for a throwaway user.

Isolation: every session creates its own system user (``useradd``, name ``etlct-<random>``)
and edits only that user's crontab (``crontab -u``, which etlctl uses when given a user);
the crontab of the user running the tests is never touched. The user and its crontab are
deleted at the end. Needs root (``crontab -u``, ``useradd``) and the `crontab` command: in CI
(``CI=true``) a missing one fails the run, elsewhere the tests are skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etlctl import registry, scheduler
from etlctl.cli.main import app
from etlctl.errors import ServiceUnavailableError, ValidationError
from etlctl.store import Store
from tests_support import missing_service

pytestmark = pytest.mark.integration
CRON_FIX = "bash scripts/ensure-services.sh cron"


FOREIGN = (
    "# jobs of someone else, kept byte for byte\n"
    "MAILTO=ops@example.com\n"
    "0  2 * * *   /usr/local/bin/backup  --all   # nightly\n"
    "\n"
    "  # indented comment, trailing spaces   \n"
    "*/5 * * * * echo 50\\% done >/dev/null\n"
)


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def cron_user() -> Iterator[str]:
    if shutil.which("crontab") is None:
        missing_service("the `crontab` command (apt-get install cron)", CRON_FIX)
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        missing_service(
            "root with useradd (a throwaway user keeps your crontab untouched)", CRON_FIX
        )
    name = f"etlct-{secrets.token_hex(3)}"
    created = _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
    assert created.returncode == 0, created.stderr
    try:
        yield name
    finally:
        _run("crontab", "-u", name, "-r")
        _run("userdel", name)


class UserCrontab:
    def __init__(self, user: str) -> None:
        self.user = user

    def text(self) -> str:
        listed = _run("crontab", "-u", self.user, "-l")
        return listed.stdout if listed.returncode == 0 else ""

    def install(self, text: str) -> None:
        result = _run("crontab", "-u", self.user, "-", stdin=text)
        assert result.returncode == 0, result.stderr


@pytest.fixture
def crontab(cron_user: str, monkeypatch, tmp_path) -> Iterator[UserCrontab]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the crontab lock
    tab = UserCrontab(cron_user)
    tab.install(FOREIGN)
    yield tab
    _run("crontab", "-u", cron_user, "-r")


def _store(path: Path, schedules: dict[str, str]) -> Store:
    store = Store(path)
    registry.add_connector_object(store, "source", "src", "csv", {"path": str(path.parent / "u")})
    registry.add_connector_object(store, "loader", "out", "jsonl", {"path": str(path.parent / "o")})
    for name, schedule in schedules.items():
        registry.add_connection(
            store, registry.new_connection(name, "src", "out", schedule=schedule)
        )
    return store


def _ours(text: str) -> list[str]:
    return [line for line in text.splitlines() if " # etlctl:" in line]


def test_apply_twice_gives_the_same_crontab_and_keeps_foreign_lines(crontab, tmp_path):
    store = _store(tmp_path / "s" / "store.json", {"b-conn": "*/10 * * * *", "a-conn": "@daily"})
    first = scheduler.sync_crontab(store, user=crontab.user)
    assert (first.added, first.written) == (["a-conn", "b-conn"], True)
    after_first = crontab.text()
    assert after_first.startswith(FOREIGN)
    assert [line.split()[0] for line in _ours(after_first)] == ["@daily", "*/10"]

    second = scheduler.sync_crontab(store, user=crontab.user)
    assert not second.changed and not second.written
    assert second.unchanged == ["a-conn", "b-conn"]
    assert crontab.text() == after_first


def test_a_schedule_change_updates_manual_and_removal_delete(crontab, tmp_path):
    store = _store(tmp_path / "store.json", {"a-conn": "*/10 * * * *", "b-conn": "@hourly"})
    scheduler.sync_crontab(store, user=crontab.user)

    registry.update_connection(store, "a-conn", {"schedule": "15 3 * * 1-5"})
    change = scheduler.sync_crontab(store, user=crontab.user)
    assert change.updated == ["a-conn"]
    lines = _ours(crontab.text())
    assert len(lines) == 2 and lines[0].startswith("15 3 * * 1-5 ")

    registry.update_connection(store, "a-conn", {"schedule": "manual"})
    assert scheduler.sync_crontab(store, user=crontab.user).removed == ["a-conn"]
    registry.remove_connection(store, "b-conn")
    assert scheduler.sync_crontab(store, user=crontab.user).removed == ["b-conn"]
    assert crontab.text() == FOREIGN


def test_stores_do_not_touch_each_other_and_remove_all(crontab, tmp_path):
    one = _store(tmp_path / "one" / "store.json", {"same-name": "@daily"})
    two = _store(tmp_path / "two" / "store.json", {"same-name": "@hourly"})
    scheduler.sync_crontab(one, user=crontab.user)
    scheduler.sync_crontab(two, user=crontab.user)
    assert len(_ours(crontab.text())) == 2

    removed = scheduler.remove_crontab_entries(one, user=crontab.user)
    assert removed.removed == ["same-name"]
    [left] = _ours(crontab.text())
    assert left.startswith("@hourly ") and str(two.path) in left

    scheduler.remove_crontab_entries(one, all_stores=True, user=crontab.user)
    assert crontab.text() == FOREIGN


def _fake_etlctl(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in for etlctl that records its arguments: the line itself is under test."""
    record = tmp_path / "argv.json"
    program = tmp_path / "bin" / "etlctl"
    program.parent.mkdir()
    program.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {scheduler.shlex.quote(str(record))}\n'
        'echo "fake etlctl ran" >&2\n'
    )
    program.chmod(0o755)
    return program, record


@pytest.mark.parametrize(
    "directory",
    ["semi;colon", "$(touch PWNED)", "`touch PWNED`", "quote'and\"double", "hash # mark"],
)
def test_a_hostile_store_path_cannot_inject_a_command_or_a_line(
    crontab, tmp_path, monkeypatch, directory
):
    program, record = _fake_etlctl(tmp_path)
    monkeypatch.setattr(scheduler, "installation_command", lambda: [str(program)])
    monkeypatch.chdir(tmp_path)
    store = _store(tmp_path / directory / "store.json", {"conn": "* * * * *"})
    scheduler.sync_crontab(store, user=crontab.user)
    text = crontab.text()
    assert text.count("\n") == FOREIGN.count("\n") + 1
    [line] = _ours(text)

    # Run the command as cron does: everything after the five fields, through /bin/sh.
    ran = subprocess.run(
        ["/bin/sh", "-c", line.split(None, 5)[5]], cwd=tmp_path, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert record.read_text().splitlines() == [
        "--store",
        str(store.path),
        "sync",
        "conn",
        "--trigger",
        "schedule",
    ]
    assert not list(tmp_path.rglob("PWNED"))
    log = store.path.parent / "logs" / "conn" / "cron.log"
    assert log.read_text() == "fake etlctl ran\n"
    assert scheduler.sync_crontab(store, user=crontab.user).unchanged == ["conn"]


@pytest.mark.parametrize("directory", ["new\nline", "fifty%", "car\rriage"])
def test_paths_cron_would_split_are_refused_and_nothing_is_written(crontab, tmp_path, directory):
    store = _store(tmp_path / directory / "store.json", {"conn": "@daily"})
    with pytest.raises(ValidationError, match="cannot go into a crontab line"):
        scheduler.sync_crontab(store, user=crontab.user)
    assert crontab.text() == FOREIGN


def test_a_user_who_may_not_use_crontab_gets_a_clear_error(crontab, tmp_path):
    deny = Path("/etc/cron.deny")
    before = deny.read_bytes() if deny.exists() else None
    deny.write_bytes((before or b"") + f"{crontab.user}\n".encode())
    try:
        store = _store(tmp_path / "store.json", {"conn": "@daily"})
        with pytest.raises(ServiceUnavailableError) as caught:
            scheduler.sync_crontab(store, user=crontab.user)
        assert "may not use crontab" in str(caught.value)
        assert "cron.allow" in str(caught.value)
        assert caught.value.exit_code == 6
    finally:
        if before is None:
            deny.unlink()
        else:
            deny.write_bytes(before)


# --- the CLI end to end, aimed at the throwaway user's crontab ------------------------------
@pytest.fixture
def cli(crontab, tmp_path, monkeypatch):
    """The CLI in-process; its crontab commands go to the throwaway user (`crontab -u`)."""
    monkeypatch.setattr(scheduler, "_user_args", lambda user: ["-u", crontab.user])
    monkeypatch.delenv("ETLCTL_NO_CRONTAB", raising=False)
    store_path = tmp_path / "cli" / "store.json"
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(app, ["--store", str(store_path), *args])
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    invoke("source", "add", "src", "--type", "csv", "--config", f"path={tmp_path}/u.csv")
    invoke("loader", "add", "out", "--type", "jsonl", "--config", f"path={tmp_path}/o.jsonl")
    return invoke


def test_cli_keeps_the_crontab_in_step(cli, crontab):
    added = cli("connection", "add", "c1", "-s", "src", "-l", "out", "--schedule", "*/5 * * * *")
    assert "crontab: added c1" in added.stderr
    assert len(_ours(crontab.text())) == 1
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert listed["schedules"][0]["crontab"] == "yes"
    assert listed["schedules"][0]["description"] == "Every 5 minutes"

    cli("connection", "update", "c1", "--schedule", "@weekly")
    assert _ours(crontab.text())[0].startswith("@weekly ")
    assert "already up to date" in cli("schedule", "apply").stdout

    cli("schedule", "remove", "--all")
    assert crontab.text() == FOREIGN
    assert json.loads(cli("schedule", "list", "--json").stdout)["schedules"][0]["crontab"] == (
        "missing"
    )
    cli("schedule", "apply")
    cli("connection", "remove", "c1")
    assert crontab.text() == FOREIGN


def test_concurrent_applies_of_several_stores_lose_nothing(crontab, tmp_path):
    """`crontab FILE` replaces the whole table: without the lock, writers drop each other."""
    stores = [_store(tmp_path / f"s{i}" / "store.json", {"conn": "@daily"}) for i in range(8)]
    code = (
        "import sys\n"
        "from etlctl import scheduler\n"
        "from etlctl.store import Store\n"
        "scheduler.sync_crontab(Store(sys.argv[1]), user=sys.argv[2])\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(store.path), crontab.user], env=env)
        for store in stores
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0] * len(stores)
    text = crontab.text()
    assert text.startswith(FOREIGN)
    assert len(_ours(text)) == len(stores)
    assert {scheduler.parse_tag(line).store_id for line in _ours(text)} == {
        scheduler.store_id(store.path) for store in stores
    }
