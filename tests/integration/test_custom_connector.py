"""A connector image written from the protocol alone (examples/custom-connector) in a sync."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etlctl.cli.main import app

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom-connector"
IMAGE = "etlctl-example/sequence:1.0"


@pytest.fixture(scope="module")
def sequence_image(services):
    subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE, str(EXAMPLE)], check=True, capture_output=True
    )
    return IMAGE


def test_the_custom_connector_runs_in_a_sync(sequence_image, tmp_path):
    store = tmp_path / "store.json"
    target = tmp_path / "out" / "numbers.db"
    runner = CliRunner()

    def etl(*args, code=0):
        result = runner.invoke(app, ["--store", str(store), *args])
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    etl(
        "source",
        "add",
        "numbers",
        "--type",
        "sequence",
        "--image",
        sequence_image,
        "--config",
        "count=1234",
    )
    etl(
        "loader",
        "add",
        "numbers-db",
        "--type",
        "sqlite",
        "--config",
        f"path={target}",
        "--config",
        "table=numbers",
    )
    etl(
        "connection",
        "add",
        "numbers-to-db",
        "--source",
        "numbers",
        "--loader",
        "numbers-db",
        "--mode",
        "incremental",
        "--cursor-field",
        "n",
        "--primary-key",
        "n",
    )
    run = json.loads(etl("sync", "numbers-to-db", "--json").stdout)
    assert run["status"] == "succeeded" and run["records_loaded"] == 1234
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), sum(n), max(square) FROM numbers").fetchone() == (
        1234,
        1234 * 1235 // 2,
        1234 * 1234,
    )
    # A protocol-1 connector names its stream in SCHEMA only: its state is kept under that
    # name, and given back to it as the run file's `state` (unchanged since version 1).
    shown = json.loads(etl("connection", "show", "numbers-to-db", "--json").stdout)
    assert {name: entry["state"] for name, entry in shown["state"]["streams"].items()} == {
        "sequence": {"cursor": 1234}
    }
    etl("source", "update", "numbers", "--config", "count=1500")
    run = json.loads(etl("sync", "numbers-to-db", "--json").stdout)
    # `>=` the saved cursor: 1234 again (deduplicated by key), then 1235..1500.
    assert run["status"] == "succeeded" and run["records_loaded"] == 1500 - 1234 + 1
    assert run["state_before"] == {"streams": {"sequence": {"cursor": 1234}}}
    assert run["state_after"] == {"streams": {"sequence": {"cursor": 1500}}}
    assert db.execute("SELECT count(*), count(DISTINCT n), max(n) FROM numbers").fetchone() == (
        1500,
        1500,
        1500,
    )
