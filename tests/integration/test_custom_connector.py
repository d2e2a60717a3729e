"""Connector images written from the protocol alone in a sync: examples/custom-connector
(protocol version 2) and the same connector as it was written for version 1
(tests/integration/protocol_v1), which must keep working unchanged."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors import image_tag
from etlctl.cli.main import app

pytestmark = pytest.mark.integration

EXAMPLES = {
    2: Path(__file__).resolve().parents[2] / "examples" / "custom-connector",
    1: Path(__file__).resolve().parent / "protocol_v1",
}


@pytest.fixture(scope="module", params=[2, 1], ids=["protocol-2", "protocol-1"])
def sequence_image(request, services):
    # Tagged per checkout, like the built-in images: parallel test runs never share it.
    image = f"etlctl-example/sequence-v{request.param}:{image_tag()}"
    subprocess.run(
        ["docker", "build", "-q", "-t", image, str(EXAMPLES[request.param])],
        check=True,
        capture_output=True,
    )
    return image


def test_the_custom_connector_runs_in_a_sync(sequence_image, tmp_path):
    store = tmp_path / "store.json"
    target = tmp_path / "out" / "numbers.db"
    runner = CliRunner()

    def etl(*args, code=0):
        result = runner.invoke(app, ["--store", str(store), *args])
        if code is not None:
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
    discovered = etl("source", "discover", "numbers", "--json", code=None)
    if "sequence-v1" in sequence_image:
        assert discovered.exit_code == 2
        assert "its connector does not answer discover" in discovered.stderr
    else:
        streams = json.loads(discovered.stdout)
        assert [(s["name"], s["key_properties"]) for s in streams] == [("sequence", ["n"])]
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
    # Its state is kept under its stream's name (a protocol-1 connector names it in SCHEMA
    # only), and given back as the run file's `state` and `stream_states`.
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
