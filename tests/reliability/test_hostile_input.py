"""Bad and hostile input through the CLI: names, schedules, crontab lines, YAML manifests,
paths. Each one is refused with a clear error and leaves the store byte-for-byte unchanged,
or (crontab lines) is made harmless. No services needed except where a sync runs.

YAML tags, alias bombs and duplicate keys are also covered at the manifest level in
tests/unit/test_cli_manifest.py; here they go through `etlctl apply` on a store that holds
objects, which must stay untouched.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from reliability_support import Etl

from etlctl.models import Connection
from etlctl.scheduler import JobEnvironment, entry_for

pytestmark = pytest.mark.reliability

HOSTILE_NAMES = [
    "a;touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "a\nb",
    "a\rb",
    "..",
    "../etc",
    "a/../b",
    "a b",
    "a|b",
    "a&&b",
    "-rf",
    "A-upper",
    "x" * 64,
    "x" * 5000,
    "",
    "é",
    "a\x00b",
]


@pytest.fixture
def cli(tmp_path: Path) -> Etl:
    """The CLI on a store with one object in it, to prove nothing is overwritten."""
    etl = Etl(tmp_path)
    etl("source", "add", "keep", "--type", "csv", "--config", f"path={tmp_path}/keep.csv")
    return etl


def _unchanged(etl: Etl, before: bytes) -> None:
    assert etl.store_path.read_bytes() == before
    assert not (etl.tmp / "pwned").exists()


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_names_are_refused_and_change_nothing(cli: Etl, name: str) -> None:
    before = cli.store_path.read_bytes()
    if "\x00" in name:  # the OS refuses NUL in argv before etlctl sees it
        with pytest.raises(ValueError):
            cli("source", "add", name, "--type", "csv", "--config", "path=/tmp/x.csv")
        return
    for args in (
        ("source", "add", name, "--type", "csv", "--config", "path=/tmp/x.csv"),
        ("connection", "add", name, "--source", "keep", "--loader", "keep"),
        ("connection", "add", "ok", "--source", name, "--loader", "keep"),
    ):
        result = cli(*args, code=None)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        # "-rf" is taken for an option by the parser: a usage error, refused all the same.
        assert "invalid" in result.stderr or "Usage:" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr) < 2000  # a 5000-character name is not echoed whole
    result = cli("sync", name, code=None)
    assert result.returncode in (2, 3) and "Traceback" not in result.stderr
    _unchanged(cli, before)


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * *\n* * * * * touch /tmp/pwned",
        "* * * * * touch pwned",
        "*/5 * * * *; touch pwned",
        "0 0 * * * %",
        "@reboot",
        "* * * * * * * *",
        "$(touch pwned)",
    ],
)
def test_crontab_injection_through_the_schedule_is_refused(cli: Etl, schedule: str) -> None:
    cli("loader", "add", "out", "--type", "jsonl", "--config", f"path={cli.tmp}/o.jsonl")
    before = cli.store_path.read_bytes()
    result = cli("connection", "add", "c", "--source", "keep", "--loader", "out",
                 "--schedule", schedule, code=None)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    _unchanged(cli, before)


@pytest.mark.parametrize(
    "directory",
    ["a;touch pwned;b", "$(touch pwned)", "`touch pwned`", "it's \"quoted\" & <here>", "sp ace"],
)
def test_a_hostile_store_path_stays_one_quoted_argument_of_one_crontab_line(
    tmp_path: Path, directory: str
) -> None:
    """Cron hands the command to /bin/sh: run the rendered command the same way, with a
    stand-in for etlctl that records its arguments, and check they arrive intact."""
    store = tmp_path / directory / "store.json"
    store.parent.mkdir(parents=True)
    recorder = tmp_path / "record-argv"
    argv_file = tmp_path / "argv"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(argv_file))}\n')
    recorder.chmod(0o755)
    job = JobEnvironment(program=(str(recorder),), home=str(tmp_path))
    connection = Connection(id="c1", name="nightly", source="s", loader="l", schedule="0 3 * * *")
    line = entry_for(store, connection, job)
    assert "\n" not in line and "\r" not in line
    command = line.split(" ", 5)[5].rsplit(" # ", 1)[0]  # cron: five fields, then the command
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, timeout=30, check=True)
    assert argv_file.read_text().splitlines() == [
        "--store", os.path.realpath(store), "sync", "nightly", "--trigger", "schedule",
    ]
    assert not (tmp_path / "pwned").exists()


def test_a_store_path_cron_would_rewrite_is_refused(tmp_path: Path) -> None:
    from etlctl.errors import ValidationError

    job = JobEnvironment(program=("/usr/bin/etlctl",), home=str(tmp_path))
    connection = Connection(id="c1", name="nightly", source="s", loader="l", schedule="0 3 * * *")
    for directory in ("100%", "new\nline"):
        store = tmp_path / directory / "store.json"
        with pytest.raises(ValidationError, match="cannot go into a crontab line"):
            entry_for(store, connection, job)


# --- YAML manifests through `etlctl apply` ------------------------------------------------
MANIFESTS = {
    "python-tag": "kind: source\nname: !!python/object/apply:os.system ['touch pwned']\n"
                  "type: csv\nconfig: {path: /tmp/a.csv}\n",
    "python-name": "kind: source\nname: x\ntype: !!python/name:os.system\n",
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
                  + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)},"
                            f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
                            for i in range(9)),
    "duplicate-key": "kind: source\nname: keep\nname: other\ntype: csv\n"
                     "config: {path: /tmp/a.csv}\n",
    "huge": "kind: source\nname: x\ntype: csv\nconfig: {path: /tmp/a.csv}\n# "
            + "x" * (20 * 1024 * 1024) + "\n",
}


@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_hostile_yaml_is_refused_and_changes_nothing(cli: Etl, kind: str) -> None:
    manifest = cli.tmp / f"{kind}.yaml"
    manifest.write_text(MANIFESTS[kind])
    before = cli.store_path.read_bytes()
    for args in (("apply", "-f", str(manifest)), ("diff", "-f", str(manifest))):
        result = cli(*args, "--no-crontab", code=None, timeout=60) if args[0] == "apply" else \
            cli(*args, code=None, timeout=60)
        assert result.returncode == 2, (args, result.stdout, result.stderr[-500:])
        assert "Traceback" not in result.stderr
    _unchanged(cli, before)


# --- paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["relative/users.csv", "../../etc/passwd", "./x.csv"])
def test_relative_config_paths_are_made_absolute_when_registered(cli: Etl, value: str) -> None:
    """A relative path is resolved once, against the directory the command ran in, so that the
    shell, cron and a container all mean the same file. No connector has a base-directory
    option (see docs/reliability.md): the directory mounted is the one the path names."""
    cli("source", "add", "rel", "--type", "csv", "--config", f"path={value}")
    stored = cli.store.read().get("source", "rel").config["path"]
    assert stored == os.path.normpath(os.path.join(cli.tmp, value))
    assert os.path.isabs(stored) and ".." not in stored.split(os.sep)


@pytest.mark.integration
def test_a_symlink_cannot_lead_a_container_out_of_its_mount(etl: Etl) -> None:
    """Only the named file's directory is mounted: a symlink in it that points elsewhere on
    the host dangles inside the container, so the sync fails instead of reading the file."""
    outside = etl.tmp / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("id,secret\n1,SENTINEL-OUTSIDE\n")
    data = etl.tmp / "data"
    data.mkdir()
    (data / "users.csv").symlink_to(outside / "secret.csv")
    etl("source", "add", "src", "--type", "csv", "--config", f"path={data / 'users.csv'}")
    target = etl.tmp / "out" / "o.jsonl"
    etl("loader", "add", "dst", "--type", "jsonl", "--config", f"path={target}")
    etl.connection("lnk-" + os.urandom(3).hex(), "src", "dst")
    name = etl.store.read().connections()[0].name
    result = etl.sync(name, code=None)
    assert result.returncode == 1, result.stderr
    assert not target.exists() or "SENTINEL-OUTSIDE" not in target.read_text()
