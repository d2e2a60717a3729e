"""The API's pure parts in-process (FastAPI's TestClient over a throwaway store): error
mapping, masking, run totals, and property tests over bodies nobody listed. The real server
process is tested in tests/integration/test_serve_*.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etlctl import catalog
from etlctl.errors import ConflictError, EtlctlError, ValidationError, error_for_exit_code
from etlctl.models import Run, RunStatus, utcnow, validate_run_id
from etlctl.store import Store
from etlctl.web.app import create_app
from etlctl.web.server import check_host, is_loopback

SECRET = "SENTINEL-unit-5e1d"
TOKEN = "t" * 40


@pytest.fixture
def client(store_path):
    app = create_app(Store(store_path), TOKEN, no_crontab=True)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def test_run_totals_count_each_run_once_when_it_ends_and_survive_trimming(store_path):
    store = Store(store_path)
    run = Run(connection="c")
    with store.transaction() as view:
        view.save_run(run)  # running: not counted
    assert store.read().run_totals() == {}
    run.status, run.ended_at, run.records_loaded = RunStatus.SUCCEEDED, utcnow(), 7
    run.ended_at = run.started_at + timedelta(seconds=3)
    for _ in range(2):  # saved twice when finished: counted once
        with store.transaction() as view:
            view.save_run(run)
    skipped = Run(connection="c", status=RunStatus.SKIPPED, ended_at=utcnow())
    with store.transaction() as view:
        view.save_run(skipped)
    totals = store.read().run_totals()["c"]
    assert totals["runs"] == {"succeeded": 1, "skipped": 1}
    assert totals["records_loaded"] == 7
    assert totals["timed_runs"] == 1 and totals["duration_seconds"] == 3.0
    assert totals["last_success_at"] == run.ended_at.isoformat()


def test_run_ids_given_from_outside_must_have_the_shape_etlctl_makes():
    assert validate_run_id("run_20240501T101500Z_ab12cd") == "run_20240501T101500Z_ab12cd"
    for bad in ("../../etc/passwd", "run_x", "run_20240501T101500Z_ab12cd\n", ""):
        with pytest.raises(ValidationError, match="invalid run id"):
            validate_run_id(bad)


def test_masked_secrets_sent_back_mean_unchanged():
    spec = {"properties": {"password": {"secret": True}, "user": {}}}
    change = {"password": catalog.MASK, "user": catalog.MASK}
    assert catalog.without_masked_secrets(change, spec) == {"user": catalog.MASK}


def test_exit_codes_map_back_to_the_errors_they_mean():
    assert isinstance(error_for_exit_code(4, "busy"), ConflictError)
    assert error_for_exit_code(4, "busy", "wait").hint == "wait"
    assert type(error_for_exit_code(99, "odd")) is EtlctlError


def test_only_loopback_hosts_are_served_without_the_flag():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    check_host("127.0.0.1", allow_remote=False)
    check_host("0.0.0.0", allow_remote=True)
    with pytest.raises(ValidationError, match="not a loopback address"):
        check_host("0.0.0.0", allow_remote=False)


def test_errors_are_json_with_the_cli_exit_code(client):
    missing = client.get("/api/v1/sources/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "type": "not_found",
            "message": "source 'nope' does not exist",
            "hint": "see: etlctl source list",
            "exit_code": 3,
        }
    }
    not_json = client.post("/api/v1/sources", content=b"{", headers={"Content-Type": "x"})
    assert not_json.status_code == 422 and not_json.json()["error"]["exit_code"] == 2
    assert client.get("/api/v1/runs", params={"limit": 0}).status_code == 422


config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# The secret goes where secrets go (the password field), or where nothing may echo it.
configs = (
    st.fixed_dictionaries(
        {},
        optional={
            "password": st.just(SECRET) | st.just({"fromEnv": "PW"}) | st.just(catalog.MASK),
            **{
                key: config_values
                for key in ("host", "port", "dbname", "user", "query", "path", "table")
            },
        },
    )
    | st.just(SECRET)
    | st.lists(st.just(SECRET), max_size=2)
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["pg", "Bad Name", "", "x" * 70]) | st.text(max_size=10),
        "type": st.sampled_from(["postgres", "csv", "sqlite", "nope"]),
        "config": configs,
        "image": st.none() | st.text(max_size=10),
        "extra": st.just(SECRET),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["sources", "loaders"]), body=bodies, patch=st.booleans())
def test_no_body_makes_a_500_or_shows_a_secret(client, kind, body, patch):
    if patch:
        response = client.patch(f"/api/v1/{kind}/pg", json=body)
    else:
        response = client.post(f"/api/v1/{kind}", json=body)
    assert response.status_code in {200, 201, 404, 409, 422}, response.text
    assert SECRET not in response.text
    error = response.json().get("error") if response.status_code >= 400 else None
    if error is not None:
        assert "\n" not in error["message"] and "Traceback" not in error["message"]
    assert SECRET not in client.get(f"/api/v1/{kind}").text


def test_connections_carry_allow_empty_and_refuse_a_filter_that_cannot_work(client, tmp_path):
    for kind, body in (
        ("sources", {"name": "users", "type": "csv", "config": {"path": f"{tmp_path}/u.csv"}}),
        (
            "loaders",
            {
                "name": "wh",
                "type": "sqlite",
                "config": {"path": f"{tmp_path}/o.db", "table": "users"},
            },
        ),
    ):
        assert client.post(f"/api/v1/{kind}", json=body).status_code == 201
    created = client.post(
        "/api/v1/connections",
        json={"name": "c", "source": "users", "loader": "wh", "allow_empty": True},
    )
    assert created.status_code == 201 and created.json()["allow_empty"] is True
    patched = client.patch("/api/v1/connections/c", json={"allow_empty": False})
    assert patched.json()["allow_empty"] is False
    refused = client.patch(
        "/api/v1/connections/c", json={"transform": {"filter": ["amount >= 10 and amount <= 20"]}}
    )
    assert refused.json()["error"]["exit_code"] == 2
    assert "'10 and amount <= 20' is not a value" in refused.json()["error"]["message"]
    assert client.get("/api/v1/connections/c").json()["transform"] is None


def test_spec_forms_never_carry_a_secret_and_type_values_as_the_cli_does():
    from etlctl.web import forms

    stored = {"host": "db", "password": SECRET, "port": 5433, "dbname": "app", "user": "u",
              "query": "select 1"}  # fmt: skip
    fields = {field.name: field for field in forms.fields_for(
        catalog.connector("extractor", "postgres").spec, stored)}  # fmt: skip
    assert fields["password"].input == "password" and fields["password"].value == ""
    assert fields["password"].secret_set is True
    assert SECRET not in repr(list(fields.values()))
    assert fields["port"].input == "number" and fields["port"].value == "5433"
    posted = {f"config.{key}": str(value) for key, value in stored.items() if key != "password"}
    posted["config.password"] = ""  # left empty: the stored secret stays
    config = forms.config_from_form("source", "postgres", posted, stored)
    assert config["password"] == SECRET and config["port"] == 5433
    with pytest.raises(ValidationError, match="must be an integer"):
        forms.config_from_form("source", "postgres", {**posted, "config.port": "x"}, stored)


def test_the_runs_chart_scales_rows_and_duration():
    from etlctl.web.charts import runs_chart

    assert runs_chart([]) is None
    runs = []
    for rows, seconds in ((10, 1.0), (20, 4.0)):
        run = Run(connection="c", status=RunStatus.SUCCEEDED, records_loaded=rows)
        run.ended_at = run.started_at + timedelta(seconds=seconds)
        runs.append(run)
    chart = runs_chart(runs)
    assert [bar["height"] for bar in chart["bars"]] == [17.0, 34.0]
    assert chart["line"] == "40.0,26.5 120.0,1.0"


def test_pages_need_the_session_and_forms_the_session_s_csrf_token(store_path, tmp_path):
    app = create_app(Store(store_path), TOKEN, no_crontab=True)
    with TestClient(app, follow_redirects=False) as browser:
        assert browser.get("/sources").headers["location"] == "/login?next=/sources"
        assert browser.get("/connections/nope").status_code == 303  # nothing is looked up
        assert browser.post("/login", data={"token": "wrong"}).status_code == 401
        assert (
            browser.post("/login", data={"token": TOKEN, "next": "//evil"}).headers["location"]
            == "/"
        )
        page = browser.get("/sources/new", params={"type": "csv"}).text
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        form = {"type": "csv", "name": "users", "config.path": str(tmp_path / "u.csv")}
        assert browser.post("/sources/new", data=form).status_code == 403
        assert browser.post("/sources/new", data={**form, "csrf": "stale"}).status_code == 403
        assert Store(store_path).read().find("source", "users") is None
        assert browser.post("/sources/new", data={**form, "csrf": csrf}).status_code == 303
        assert Store(store_path).read().get("source", "users").config == {
            "path": str(tmp_path / "u.csv")
        }


def test_a_connection_s_alert_is_set_from_its_page_with_the_header_masked(store_path, tmp_path):
    from etlctl import alerts, registry

    store = Store(store_path)
    (tmp_path / "u.csv").write_text("id\n1\n")
    registry.add_connector_object(store, "source", "s", "csv", {"path": str(tmp_path / "u.csv")})
    registry.add_connector_object(store, "loader", "d", "jsonl", {"path": str(tmp_path / "o")})
    registry.add_connection(store, registry.new_connection("c", "s", "d"))
    app = create_app(store, TOKEN, no_crontab=True)
    with TestClient(app, follow_redirects=False) as browser:
        browser.post("/login", data={"token": TOKEN})
        page = browser.get("/connections/c").text
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        form = {"csrf": csrf, "on_failure": "on", "webhook": "http://127.0.0.1:9/hook",
                "header_name": "X-Token", "header_value": SECRET, "stale_after": "6h"}  # fmt: skip
        assert browser.post("/connections/c/alert", data=form).status_code == 303
        rule = alerts.rules(store.read())[0]
        assert (rule.scope, rule.on, rule.headers) == ("c", ["failure"], {"X-Token": SECRET})
        assert rule.stale_after_seconds == 21600
        page = browser.get("/connections/c").text
        assert SECRET not in page and 'value="http://127.0.0.1:9/hook"' in page
        # Saved again with the header left empty: the stored secret stays.
        again = {**form, "header_value": "", "on_success": "on"}
        assert browser.post("/connections/c/alert", data=again).status_code == 303
        rule = alerts.rules(store.read())[0]
        assert rule.headers == {"X-Token": SECRET} and rule.on == ["failure", "success"]
        # A new header without a value is refused; no webhook and no command removes it.
        refused = {**again, "header_name": "X-Other"}
        browser.post("/connections/c/alert", data=refused)
        assert alerts.rules(store.read())[0].headers == {"X-Token": SECRET}
        assert "has no value" in browser.get("/connections/c").text
        browser.post("/connections/c/alert", data={"csrf": csrf, "webhook": "", "command": ""})
        assert alerts.rules(store.read()) == []


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.text(
        st.characters() | st.characters(categories=["Cs"]),  # lone surrogates too
        min_size=1,
        max_size=8,
    )
)
def test_a_manifest_of_any_text_gets_a_json_answer(client, key):
    """A YAML escape can make any code point, a lone surrogate too; its echo in an error once
    failed the response itself (UnicodeEncodeError, a 500 with no body)."""
    body = f"{json.dumps(key)}: 1\n"  # a YAML double-quoted key, \u escapes and all
    response = client.post(
        "/api/v1/diff", content=body.encode(), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["exit_code"] == 2


def test_a_lone_surrogate_in_an_error_goes_out_as_its_json_escape(client):
    response = client.post(
        "/api/v1/diff", content=b'"\\ud800": 1\n', headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 422
    assert "\\ud800: unknown field" in response.text
    assert "\ud800: unknown field" in response.json()["error"]["message"]
