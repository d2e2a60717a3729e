"""Files a user points etlctl at: writes go through symlinks to the file they name, devices
and FIFOs are refused, a failed write is an error; invalid input is one line and exit 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from etlctl.models import Run, RunStatus
from etlctl.store import Store


def _add_source(cli, store: Path | None = None, name: str = "users") -> None:
    cli("source", "add", name, "--type", "csv", "--config", "path=/data/u.csv", store=store)


def test_a_store_behind_a_symlink_stays_behind_it(cli, tmp_path: Path) -> None:
    real = tmp_path / "real" / "store.json"
    real.parent.mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(real)
    _add_source(cli, store=link)
    _add_source(cli, store=link, name="more")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert [s.name for s in Store(real).read().list("source")] == ["more", "users"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_store_that_is_not_a_regular_file_is_refused(cli, tmp_path: Path, kind: str) -> None:
    odd = tmp_path / "odd"
    os.mkfifo(odd) if kind == "fifo" else odd.mkdir()
    result = cli("source", "list", code=5, store=odd)
    what = "a FIFO" if kind == "fifo" else "a directory"
    assert result.stderr.splitlines()[0] == f"error: the store {odd} is {what}, not a file"
    assert stat.S_ISFIFO(odd.stat().st_mode) if kind == "fifo" else odd.is_dir()


def test_export_writes_through_a_symlink(cli, tmp_path: Path) -> None:
    _add_source(cli)
    real = tmp_path / "backup.yaml"
    real.write_text("old\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    cli("export", "-o", str(link))
    assert link.is_symlink()
    assert "name: users" in real.read_text()


@pytest.mark.parametrize("target", ["fifo", "/dev/full", "/dev/null"])
def test_export_refuses_devices_and_fifos(cli, tmp_path: Path, target: str) -> None:
    _add_source(cli)
    path = Path(target) if target.startswith("/") else tmp_path / target
    if target == "fifo":
        os.mkfifo(path)
    before = path.stat()
    result = cli("export", "-o", str(path), code=2)
    kind = "a FIFO" if target == "fifo" else "a character device"
    assert result.stderr.splitlines()[0] == (
        f"error: cannot write {path}: it is {kind}; etlctl writes only regular files"
    )
    after = path.stat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_a_write_error_on_stdout_is_an_error(store_path: Path, cli) -> None:
    _add_source(cli)
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "etlctl", "--store", str(store_path), "export"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: No space left on device (writing the output)",
        "hint: check the disk, the permissions, and where the output goes",
    ]


def test_a_config_file_that_is_not_utf8_is_refused(cli, store_path: Path, tmp_path: Path) -> None:
    _add_source(cli)
    before = store_path.read_bytes()
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"path: /tmp/x\xff\xfe.csv\n")
    result = cli("source", "add", "bad", "--type", "csv", "--config-file", str(config), code=2)
    assert result.stderr.splitlines()[0] == (
        f"error: config file {config} is not UTF-8 text (byte 0xff at offset 12)"
    )
    assert store_path.read_bytes() == before


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("123456789012345678901234567890", "integer 123456789012345678901234567890"),
        ("9223372036854775808", "integer 9223372036854775808"),
        ("-9223372036854775809", "integer -9223372036854775809"),
        ("1" * 200, "integer of 662 bits"),
    ],
)
def test_an_integer_beyond_64_bits_in_a_config_is_refused(
    cli, store_path: Path, value: str, shown: str
) -> None:
    _add_source(cli)
    before = store_path.read_bytes()
    result = cli(
        "source", "add", "api", "--type", "http", "--config", "url=http://127.0.0.1:9/x",
        "--config", f'pagination={{"type": "page_number", "start_page": {value}}}', code=2,
    )
    assert result.stderr.splitlines()[0] == (
        f"error: config field 'pagination.start_page': {shown} does not fit in 64 bits"
    )
    assert store_path.read_bytes() == before


def test_logs_tail_beyond_any_log_is_a_usage_error(cli, store_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("one\ntwo\n")
    run = Run(connection="c", status=RunStatus.SUCCEEDED, log_path=str(log))
    with Store(store_path).transaction() as view:
        view.save_run(run)
    assert cli("logs", run.id, "--tail", "1000000000").stdout == "one\ntwo\n"
    result = cli("logs", run.id, "--tail", "99999999999999999999", code=2)
    assert "Invalid value for '--tail'" in result.stderr
