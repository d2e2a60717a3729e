"""Every signal and every leftover: SIGHUP (a closed terminal, a dropped ssh session) cleans
up like SIGTERM; after SIGKILL, `etlctl gc` finds everything of this store whether or not the
connection still exists, marks the run failed, keeps the orphans' logs and removes the run
files (they hold the config's secrets). Real etlctl processes, real signals, real containers
and queues.
"""

from __future__ import annotations

import json
import signal

import pytest
from reliability_support import (
    Etl,
    assert_nothing_left,
    committed_seq,
    connector_containers,
    docker,
    run_files,
    sqlite_rows,
    unique,
    wait_until,
)

from tests_support import leftover_containers, leftover_queues

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROWS = 200_000
SLOW = ("--batch-size", "100")


def _slow_connection(etl: Etl, prefix: str) -> tuple[str, object]:
    name = unique(prefix)
    etl.sqlite_source(f"{name}-src", ROWS)
    target = etl.sqlite_loader(f"{name}-dst", table="items")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    return name, target


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_cleans_up_like_sigterm(etl: Etl, signum: signal.Signals) -> None:
    name, target = _slow_connection(etl, "hup")
    process = etl.start("sync", name, *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    assert run_files(etl), "a running sync has its run files"
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    run = etl.last_run(name)
    assert run.status.value == "cancelled", run
    assert run.error == f"cancelled by {signum.name}"
    assert_nothing_left(name)
    assert run_files(etl) == []


def test_gc_after_sigkill_and_connection_remove_removes_everything_and_keeps_the_logs(
    etl: Etl,
) -> None:
    name, target = _slow_connection(etl, "gone")
    process = etl.start("sync", name, *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    orphan = etl.last_run(name)
    assert orphan.status.value == "running"
    assert connector_containers(name, "loader"), "SIGKILL cannot clean up: the loader runs on"
    assert [path.name for path in run_files(etl)] == [orphan.id]

    etl("connection", "remove", name)
    result = etl("gc", "--json")
    report = json.loads(result.stdout)
    assert orphan.id in report["removed"], report
    assert leftover_containers(name) == [] and leftover_queues(name) == []
    assert docker("ps", "-aq", "--filter", f"label=io.etlctl.run={orphan.id}") == ""
    marked = etl.store.read().get_run(orphan.id)
    assert marked.status.value == "failed" and "ended without finishing" in (marked.error or "")
    assert run_files(etl) == []
    # What the orphans did is kept: `etlctl logs RUN` shows both connectors' output.
    logs = etl("logs", orphan.id).stdout
    assert "===== loader (exit code" in logs and "===== extractor (exit code" in logs, logs
    assert f"loader: run {orphan.id} of {name}" in logs, logs
    assert f"extractor: run {orphan.id} of {name}" in logs, logs
    # Nothing is left to collect a second time.
    assert "nothing to clean up" in etl("gc").stdout


def test_gc_leaves_a_connection_that_is_syncing_alone(etl: Etl) -> None:
    name, target = _slow_connection(etl, "busy")
    process = etl.start("sync", name, *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    report = json.loads(etl("gc", "--json").stdout)
    assert report["busy"] == [name] and report["removed"] == [], report
    run = etl.last_run(name)
    assert [path.name for path in run_files(etl)] == [run.id], "a live run keeps its files"
    assert len(leftover_containers(name)) == 2
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert_nothing_left(name)


def test_gc_removes_the_staging_table_a_killed_full_refresh_left(etl: Etl) -> None:
    name, target = _slow_connection(etl, "staging")
    process = etl.start("sync", name, *SLOW)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    for container in connector_containers(name, "loader"):
        docker("pause", container, check=False)  # the orphan must not finish and swap it in
    staging = "SELECT name FROM sqlite_master WHERE name = '_etlctl_staging_items'"
    assert sqlite_rows(target, staging) == [("_etlctl_staging_items",)]

    report = json.loads(etl("gc", "--json").stdout)
    assert f"staging table _etlctl_staging_items in {target}" in report["removed"], report
    assert report["problems"] == []
    assert sqlite_rows(target, staging) == []
    assert_nothing_left(name)
    assert run_files(etl) == []
