"""The API under property-based fuzzing from its own OpenAPI document (schemathesis, in
process over ASGI): no 5xx, no traceback, no secret in any response, whatever the input.

Calls that reach outside the store are left out: starting a sync or a connector check (they
run containers), cancelling (it signals processes), writing the crontab, and sending alerts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from etlctl import registry
from etlctl.store import Store
from etlctl.web.app import create_app

SECRET = "SENTINEL-fuzz-41c7"
TOKEN = "f" * 40
OUTSIDE = r"(/sync$|/check$|/cancel$|^/api/v1/schedules/apply$|^/api/v1/alerts/check$)"


# Removed when the test process ends (its finalizer); no "etlctl-" prefix, which the sweep
# of pre-0.2 run files reads.
HOME = tempfile.TemporaryDirectory(prefix="fuzz-api-")


def _app():
    """A throwaway store with a source that holds the secret (schemathesis needs the schema
    when the module is collected, so this is made then, not in a fixture)."""
    home = Path(HOME.name)
    store = Store(home / "store.json")
    (home / "u.csv").write_text("id\n1\n")
    registry.add_connector_object(store, "source", "u", "csv", {"path": str(home / "u.csv")})
    registry.add_connector_object(
        store,
        "source",
        "pg",
        "postgres",
        {"host": "h", "user": "u", "password": SECRET, "dbname": "d", "query": "select 1"},
    )
    registry.add_connector_object(store, "loader", "w", "jsonl", {"path": str(home / "o")})
    registry.add_connection(store, registry.new_connection("c", "u", "w"))
    return create_app(store, TOKEN, no_crontab=True)


schema = schemathesis.openapi.from_asgi("/api/openapi.json", _app()).exclude(
    path_regex=OUTSIDE
)


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_5xx_a_traceback_or_shows_a_secret(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, response.text[:500]
    assert "Traceback" not in response.text
    assert SECRET not in response.text
    content_type = " ".join(response.headers.get("content-type", []))
    if response.status_code >= 400 and content_type.startswith("application/json"):
        assert set(response.json()) == {"error"}, response.text[:500]
