"""The store under damage and under concurrent use, through the CLI and real syncs.

tests/unit/test_store.py covers damaged files at the Store level and
tests/integration/test_store_processes.py SIGKILLed writers; here the damage meets the CLI
and `etlctl sync`, and many syncs run while a CLI loop edits the store.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from reliability_support import (
    Etl,
    assert_nothing_left,
    run_json,
    sqlite_rows,
    unique,
)

from etlctl.store import Store

pytestmark = pytest.mark.reliability

DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "emptied": lambda text: "",
    "garbage": lambda text: "\x00\xff garbage \x01" * 10,
    "not-etlctl": lambda text: json.dumps({"_default": {}}),
    "wrong-shape": lambda text: "[1, 2, 3]",
}


@pytest.mark.integration
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_store_is_refused_by_every_command_and_never_overwritten(
    etl: Etl, damage: str
) -> None:
    name = unique("dmg")
    etl.csv_source(f"{name}-src", 10)
    etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    original = etl.store_path.read_text()
    damaged = DAMAGE[damage](original)
    etl.store_path.write_bytes(damaged.encode("utf-8", errors="surrogateescape"))
    before = etl.store_path.read_bytes()
    for args in (
        ("connection", "list", "--json"),
        ("source", "add", "new", "--type", "csv", "--config", "path=/tmp/a.csv"),
        ("connection", "update", name, "--on-error", "skip"),
        ("sync", name, "--json"),
        ("gc",),
        ("export",),
    ):
        result = etl(*args, code=None, timeout=120)
        assert result.returncode == 5, (args, result.returncode, result.stderr)
        first = result.stderr.splitlines()[0]
        assert first.startswith("error: ") and str(etl.store_path) in first, result.stderr
        assert "Traceback" not in result.stderr
        assert etl.store_path.read_bytes() == before, f"{args} changed the damaged store"
    assert_nothing_left(name)  # the sync was refused before it started anything


@pytest.mark.integration
def test_two_syncs_of_one_connection_at_once_one_runs_the_other_is_refused(etl: Etl) -> None:
    name = unique("twice")
    etl.csv_source(f"{name}-src", 100_000)
    target = etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    first = etl.start("sync", name, "--json", "--batch-size", "200")
    # The second starts once the first holds the lock (its run is recorded as running).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not etl.runs(name):
        time.sleep(0.02)
    second = etl("sync", name, "--json", code=None)
    _out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert second.returncode == 4, second.stderr
    assert "already syncing" in second.stderr
    runs = etl.runs(name)
    assert [run.status.value for run in runs] == ["succeeded"]
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id) FROM users") == [
        (100_000, 100_000)
    ]
    assert_nothing_left(name)


SYNCS = 8
ROWS = 5_000


@pytest.mark.integration
def test_eight_syncs_at_once_while_a_cli_loop_edits_the_store(etl: Etl) -> None:
    names = [unique(f"many{i}") for i in range(SYNCS)]
    targets = {}
    for name in names:
        etl.csv_source(f"{name}-src", ROWS)
        targets[name] = etl.sqlite_loader(f"{name}-dst")
        etl.connection(name, f"{name}-src", f"{name}-dst")

    stop = threading.Event()
    edits: list[str] = []
    failures: list[str] = []

    def edit_loop() -> None:
        """Add sources and change the connections' settings while they sync."""
        i = 0
        while not stop.is_set() and i < 200:
            i += 1
            for args in (
                ("source", "add", f"extra-{i}", "--type", "csv",
                 "--config", f"path=/tmp/extra-{i}.csv"),
                ("connection", "update", names[i % SYNCS], "--on-error",
                 "skip" if i % 2 else "fail"),
            ):
                result = etl(*args, code=None, timeout=120)
                if result.returncode != 0:
                    failures.append(f"{args}: {result.stderr}")
            edits.append(f"extra-{i}")

    editor = threading.Thread(target=edit_loop, name="cli-editor")
    editor.start()
    try:
        syncs = {name: etl.start("sync", name, "--json") for name in names}
        results = {name: proc.communicate(timeout=300) for name, proc in syncs.items()}
    finally:
        stop.set()
        editor.join(timeout=240)
    assert not editor.is_alive()
    assert failures == []
    for name, proc in syncs.items():
        assert proc.returncode == 0, results[name][1]
        run = json.loads(results[name][0])
        assert run["status"] == "succeeded" and run["records_loaded"] == ROWS
        assert sqlite_rows(targets[name], "SELECT count(*), count(DISTINCT id) FROM users") == [
            (ROWS, ROWS)
        ]
        assert_nothing_left(name)
    # The store is valid and complete: every edit and every run is in it.
    view = Store(etl.store_path).read()
    sources = {source.name for source in view.list("source")}
    assert set(edits) <= sources and len(edits) > 0
    for name in names:
        assert [run.status.value for run in view.list_runs(name)] == ["succeeded"]
    listed = run_json(etl("connection", "list", "--json"))
    assert {item["name"] for item in listed} == set(names)


def test_store_writes_survive_many_cli_processes_at_once(tmp_path) -> None:
    """No services: 12 processes adding objects at once lose none of them."""
    etl = Etl(tmp_path)
    etl("source", "add", "seed", "--type", "csv", "--config", "path=/tmp/seed.csv")
    processes = [
        subprocess.Popen(
            etl.argv("source", "add", f"p{i}", "--type", "csv", "--config", f"path=/tmp/{i}.csv"),
            env=etl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(12)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    names = {source.name for source in Store(etl.store_path).read().list("source")}
    assert names == {"seed", *(f"p{i}" for i in range(12))}


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["full_refresh", "incremental"])
def test_two_syncs_writing_one_sqlite_file_at_once_both_complete(etl: Etl, mode: str) -> None:
    """Two connections load different tables of one SQLite file at the same moment (two cron
    jobs of the same minute): each waits for the other's commit, neither fails with
    'database is locked'."""
    rows = 100_000
    name = unique("onefile")
    target = etl.tmp / "out" / "shared.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    options = () if mode == "full_refresh" else (
        "--mode", "incremental", "--cursor-field", "updated_at", "--primary-key", "id"
    )
    sides = ("a", "b")
    for side in sides:
        etl.csv_source(f"{name}-{side}-src", rows)
        etl("loader", "add", f"{name}-{side}-dst", "--type", "sqlite",
            "--config", f"path={target}", "--config", f"table=t_{side}")
        etl.connection(f"{name}-{side}", f"{name}-{side}-src", f"{name}-{side}-dst", *options)
    syncs = [etl.start("sync", f"{name}-{side}", "--json", "--batch-size", "500")
             for side in sides]
    # Both end before anything is judged: a sync killed by the fixture's cleanup would leave
    # its containers behind.
    outputs = [process.communicate(timeout=300) for process in syncs]
    for side, process, (out, err) in zip(sides, syncs, outputs, strict=True):
        assert process.returncode == 0, (side, err)
        assert run_json(subprocess.CompletedProcess([], 0, out, err))["records_loaded"] == rows
    for side in sides:
        assert sqlite_rows(target, f"SELECT count(*), count(DISTINCT id) FROM t_{side}") == [
            (rows, rows)
        ]
        assert_nothing_left(f"{name}-{side}")
