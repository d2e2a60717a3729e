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
    shown = json.loads(etl("connection", "show", "numbers-to-db", "--json").stdout)
    assert shown["state"]["state"] == {"cursor": 1234}
