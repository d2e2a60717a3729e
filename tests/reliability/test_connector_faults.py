"""Connectors that die, hang or stall in the middle of a real sync (docker runtime).

Each case checks the run's recorded outcome and reason, the saved state against what the
target committed, the target's exact contents after the next sync, and that no container
or queue of the connection is left.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from reliability_support import (
    AMQP_URL,
    Etl,
    assert_nothing_left,
    committed_seq,
    connector_containers,
    docker,
    sqlite_rows,
    unique,
    wait_until,
    write_items,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROWS = 200_000
# Small batches: many messages and commits, so a fault lands in the middle of the sync.
SLOW = ("--batch-size", "100")


def _kill_mid_sync(etl: Etl, name: str, target: Path, role: str) -> subprocess.Popen[str]:
    """Start a sync, wait for the loader's first commit, then `docker kill` one connector."""
    earlier = frozenset(run.id for run in etl.runs(name))
    process = etl.start("sync", name, "--json", *SLOW)
    wait_until(lambda: committed_seq(target, earlier) > 0, 120, f"a first commit of {name}")
    containers = connector_containers(name, role)
    assert containers, f"the {role} of {name} ended before it could be killed"
    docker("kill", *containers)
    process.communicate(timeout=180)
    return process


@pytest.mark.parametrize("role", ["loader", "extractor"])
def test_killed_connector_in_full_refresh_keeps_previous_table_then_next_sync_is_exact(
    etl: Etl, role: str
) -> None:
    name = unique(f"kill-{role[:4]}-fr")
    source = etl.csv_source(f"{name}-src", 1000)
    target = etl.sqlite_loader(f"{name}-dst")
    etl.connection(name, f"{name}-src", f"{name}-dst")
    etl.sync(name)
    assert sqlite_rows(target, "SELECT count(*) FROM users") == [(1000,)]

    from tests_support import write_users_csv

    write_users_csv(source, ROWS)
    process = _kill_mid_sync(etl, name, target, role)
    assert process.returncode == 1
    run = etl.last_run(name)
    assert run.status.value == "failed"
    assert f"the {role} exited with code 137" in (run.error or ""), run.error
    # The staging table never replaced the target: the previous full refresh is whole.
    assert sqlite_rows(target, "SELECT count(*), min(id), max(id) FROM users") == [(1000, 1, 1000)]
    assert etl.state(name) is None  # full_refresh saves no cursor
    assert_nothing_left(name)

    etl.sync(name)
    assert sqlite_rows(target, "SELECT count(*), count(DISTINCT id), max(id) FROM users") == [
        (ROWS, ROWS, ROWS)
    ]
    assert etl.last_run(name).status.value == "succeeded"
    assert_nothing_left(name)


@pytest.mark.parametrize("role", ["loader", "extractor"])
def test_killed_connector_in_incremental_never_saves_state_past_the_target(
    etl: Etl, role: str
) -> None:
    name = unique(f"kill-{role[:4]}-inc")
    source = etl.sqlite_source(f"{name}-src", ROWS)
    target = etl.sqlite_loader(f"{name}-dst", table="items")
    etl.connection(
        name, f"{name}-src", f"{name}-dst",
        "--mode", "incremental", "--cursor-field", "updated_at", "--primary-key", "id",
    )
    process = _kill_mid_sync(etl, name, target, role)
    assert process.returncode == 1
    run = etl.last_run(name)
    assert run.status.value == "failed"
    assert f"the {role} exited with code 137" in (run.error or ""), run.error
    loaded = sqlite_rows(target, "SELECT count(*) FROM items")[0][0]
    assert 0 < loaded < ROWS
    # At-least-once: every source row below the saved cursor is committed in the target.
    state = etl.state(name)
    if state is not None:
        below = sqlite_rows(source, "SELECT count(*) FROM items WHERE updated_at < ?",
                            (state["cursor"],))[0][0]
        in_target = sqlite_rows(target, "SELECT count(*) FROM items WHERE updated_at < ?",
                                (state["cursor"],))[0][0]
        assert in_target == below, (state, in_target, below)
        assert list(run.state_after["streams"].values()) == [state]
    assert_nothing_left(name)

    # New rows arrive; the next sync ends with the target exactly equal to the source.
    write_items(source, 500, start=ROWS + 1)
    etl.sync(name)
    expected = sqlite_rows(source, "SELECT id, name, updated_at FROM items ORDER BY id")
    assert sqlite_rows(target, "SELECT id, name, updated_at FROM items ORDER BY id") == expected
    assert etl.state(name)["cursor"] == expected[-1][2]
    assert_nothing_left(name)


HANG_IMAGE = "etlctl-test/hanging-loader:1"
HEARTBEAT = 3  # seconds; distinctive, see _connections_with_heartbeat


@pytest.fixture(scope="module")
def hanging_image(services: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A loader that never consumes and never exits: an entrypoint that sleeps."""
    context = tmp_path_factory.mktemp("hang")
    (context / "Dockerfile").write_text(
        "FROM etlctl/connector-runtime:0.1.0\n"
        'LABEL io.etlctl.protocol="1" io.etlctl.role="loader" io.etlctl.type="hang"\n'
        'ENTRYPOINT ["sh", "-c", "exec sleep infinity", "hang"]\n'
    )
    docker("build", "-q", "-t", HANG_IMAGE, str(context), timeout=300)
    return HANG_IMAGE


def test_hanging_loader_times_out_and_its_containers_are_removed(
    etl: Etl, hanging_image: str
) -> None:
    name = unique("hang")
    etl.csv_source(f"{name}-src", 20_000)
    target = etl.sqlite_loader(f"{name}-dst")
    etl("loader", "update", f"{name}-dst", "--image", hanging_image)
    etl.connection(name, f"{name}-src", f"{name}-dst")
    result = etl.sync(name, "--timeout", "8", code=7)
    assert "did not finish within 8s" in result.stderr
    run = etl.last_run(name)
    assert run.status.value == "failed" and "did not finish within 8s" in (run.error or "")
    assert run.records_loaded == 0 and etl.state(name) is None
    assert not target.exists()
    assert_nothing_left(name)


def test_loader_paused_longer_than_the_heartbeat_fails_clearly_then_next_sync_is_exact(
    etl: Etl,
) -> None:
    name = unique("pause")
    source = etl.sqlite_source(f"{name}-src", ROWS)
    target = etl.sqlite_loader(f"{name}-dst", table="items")
    etl.connection(
        name, f"{name}-src", f"{name}-dst",
        "--mode", "incremental", "--cursor-field", "updated_at", "--primary-key", "id",
    )
    heartbeat_url = AMQP_URL + f"?heartbeat={HEARTBEAT}"
    process = etl.start("sync", name, "--json", *SLOW, "--amqp-url", heartbeat_url)
    wait_until(lambda: committed_seq(target) > 0, 120, "a first commit")
    loader = connector_containers(name, "loader")
    before = _connections_with_heartbeat(HEARTBEAT)
    docker("pause", *loader)
    try:
        # The broker drops a peer after two missed heartbeats: wait until it did (the
        # loader's connection disappears) rather than for a fixed time.
        wait_until(lambda: _connections_with_heartbeat(HEARTBEAT) < before, 60,
                   "the broker to drop the paused loader", step=0.5)
    finally:
        docker("unpause", *loader, check=False)
    process.communicate(timeout=180)
    assert process.returncode == 1
    run = etl.last_run(name)
    assert run.status.value == "failed"
    # The loader could not send an error event over its dead connection: the run quotes
    # the last error it logged instead of a bare exit code.
    assert "the loader exited with code 1; its last error:" in (run.error or ""), run.error
    assert "Stream" in (run.error or "") or "Connection" in (run.error or ""), run.error
    state = etl.state(name)
    if state is not None:
        below = sqlite_rows(source, "SELECT count(*) FROM items WHERE updated_at < ?",
                            (state["cursor"],))[0][0]
        assert sqlite_rows(target, "SELECT count(*) FROM items WHERE updated_at < ?",
                           (state["cursor"],))[0][0] == below
    assert_nothing_left(name)

    etl.sync(name, "--amqp-url", heartbeat_url)
    expected = sqlite_rows(source, "SELECT id, name, updated_at FROM items ORDER BY id")
    assert sqlite_rows(target, "SELECT id, name, updated_at FROM items ORDER BY id") == expected
    assert_nothing_left(name)


def _connections_with_heartbeat(seconds: int) -> int:
    """How many broker connections negotiated this heartbeat: a distinctive value tells this
    sync's connections (etlctl, extractor, loader) from other test runs' (60 by default)."""
    from reliability_support import rabbitmqctl

    listed = rabbitmqctl("-q", "list_connections", "timeout", timeout=30).stdout
    return sum(1 for line in listed.split() if line == str(seconds))
