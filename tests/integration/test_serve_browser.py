"""The web admin in a real browser: Debian's chromium driven by Playwright, against a real
`etlctl serve`, real syncs through Docker and RabbitMQ into SQLite.

ETLCTL_SCREENSHOTS=DIR keeps screenshots of the main pages there (docs/img/ holds them).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from serve_support import SENTINEL, PipeSource, etlctl_argv, running_server, server_env
from tests_support import leftover_containers, leftover_queues, missing_service, write_users_csv

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("Playwright for Python", "make install")
    if not Path(CHROMIUM).exists():
        missing_service(f"chromium at {CHROMIUM}", "bash scripts/ensure-services.sh chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(services, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("web") / "home" / "store.json") as server:
        yield server
        assert SENTINEL not in server.everything_said()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    seen: list[str] = []
    page.on("response", lambda response: seen.append(response.url))
    yield page
    html = page.content()
    context.close()
    assert SENTINEL not in html


def log_in(page, server) -> None:
    page.goto(server.base_url + "/")
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Connections')")


def shot(page, name: str) -> None:
    directory = os.environ.get("ETLCTL_SCREENSHOTS")
    if directory:
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


def test_no_page_without_the_token(page, server):
    for path in ("/", "/sources", "/runs", "/connections/new", "/manifests"):
        page.goto(server.base_url + path)
        assert page.url.startswith(server.base_url + "/login"), path
        assert page.locator("#token").is_visible()
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "wrong token"
    # A form posted without the session's CSRF token is refused, even when logged in.
    log_in(page, server)
    refused = page.request.post(server.base_url + "/sources/new", form={"type": "csv", "name": "x"})
    assert refused.status == 403
    assert server.store.read().find("source", "x") is None


def add_source_and_loader(page, server, tmp_path: Path, name: str, source_path: Path) -> Path:
    page.goto(server.base_url + "/sources/new?type=csv")
    page.fill("#name", f"{name}-src")
    page.fill("#f-path", str(source_path))
    page.click("#save")
    page.wait_for_selector(f"text={name}-src created")
    target = tmp_path / "out" / f"{name}.db"
    page.goto(server.base_url + "/loaders/new?type=sqlite")
    page.fill("#name", f"{name}-dst")
    page.fill("#f-path", str(target))
    page.fill("#f-table", "users")
    page.click("#save")
    page.wait_for_selector(f"text={name}-dst created")
    return target


def add_connection(page, server, name: str) -> None:
    page.goto(server.base_url + "/connections/new")
    page.fill("#name", name)
    page.select_option("#source", f"{name}-src")
    page.select_option("#loader", f"{name}-dst")
    page.click("#save")
    page.wait_for_selector(f"text=connection {name} created")


def test_forms_create_objects_and_a_sync_runs_to_the_end(page, server, tmp_path):
    name = f"web-{secrets.token_hex(3)}"
    source_path = tmp_path / "users.csv"
    write_users_csv(source_path, 30_000)
    log_in(page, server)

    # A wrong config shows the CLI's message in the form and changes nothing.
    page.goto(server.base_url + "/loaders/new?type=sqlite")
    page.fill("#name", f"{name}-dst")
    page.fill("#f-path", str(tmp_path / "x.db"))
    page.click("#save")
    error = page.locator(".error").inner_text()
    assert "invalid config for loader type 'sqlite': missing required config field 'table'" in error
    assert page.locator("#f-path").input_value() == str(tmp_path / "x.db")
    assert server.store.read().find("loader", f"{name}-dst") is None

    # Secret fields are password inputs; what was typed never comes back into the page.
    page.goto(server.base_url + "/sources/new?type=postgres")
    assert page.locator("#f-password").get_attribute("type") == "password"
    page.fill("#name", f"{name}-pg")
    page.fill("#f-password", SENTINEL)
    page.fill("#f-port", "-1")
    page.click("#save")
    assert "invalid config for extractor type 'postgres'" in page.locator(".error").inner_text()
    assert page.locator("#f-password").input_value() == ""
    shot(page, "source-form")

    target = add_source_and_loader(page, server, tmp_path, name, source_path)
    add_connection(page, server, name)
    stored = server.store.read().get("connection", name)
    assert (stored.source, stored.loader) == (f"{name}-src", f"{name}-dst")

    page.click("#start-sync")
    page.wait_for_url(re.compile(r".*/runs/run_[0-9T]+Z_[0-9a-f]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#status.succeeded")  # live: the page follows the run's events
    assert page.locator("#loaded").inner_text() == "30,000"
    assert page.locator("#log").inner_text().startswith(f"run {run_id} of connection {name}")
    shot(page, "run")
    db = sqlite3.connect(target)
    assert db.execute("SELECT count(*), count(DISTINCT id) FROM users").fetchone() == (
        30_000,
        30_000,
    )
    assert leftover_containers(name) == [] and leftover_queues(name) == []

    page.goto(server.base_url + "/runs")
    row = page.locator(f"tr:has(a[href='/runs/{run_id}'])")
    assert "succeeded" in row.inner_text() and "30,000" in row.inner_text()
    page.goto(server.base_url + "/")
    overview = page.locator(f"tr[data-connection='{name}']").inner_text()
    assert "succeeded" in overview and "30,000" in overview
    assert page.locator(f"tr[data-connection='{name}'] svg.chart rect").count() == 1
    shot(page, "overview")


def test_cancel_a_long_sync_from_its_page(page, server, tmp_path):
    name = f"webc-{secrets.token_hex(3)}"
    pipe = PipeSource(tmp_path / "users.csv")
    log_in(page, server)
    add_source_and_loader(page, server, tmp_path, name, pipe.path)
    add_connection(page, server, name)
    page.click("#start-sync")
    page.wait_for_selector("#cancel")
    page.wait_for_function("document.getElementById('status').textContent === 'running'")
    page.click("#cancel")
    page.wait_for_selector("#status.cancelled")
    assert "cancelled by SIGTERM" in page.locator("#error").inner_text()
    assert leftover_containers(name) == [] and leftover_queues(name) == []
    pipe.more.set()


@pytest.fixture
def crontab_server(services, tmp_path):
    """A server that installs schedules in the real crontab (of this user); its lines are
    tagged with its own store and removed afterwards."""
    if shutil.which("crontab") is None:
        missing_service("crontab", "bash scripts/ensure-services.sh cron")
    store_path = tmp_path / "cron" / "store.json"
    env = {"ETLCTL_NO_CRONTAB": ""}
    try:
        with running_server(store_path, env) as server:
            yield server
    finally:
        subprocess.run(
            etlctl_argv(store_path, "schedule", "remove", "--all"),
            env=server_env(env),
            capture_output=True,
            timeout=120,
        )


def test_edit_a_schedule_see_its_meaning_and_the_crontab_line(browser, crontab_server, tmp_path):
    server = crontab_server
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    name = f"webs-{secrets.token_hex(3)}"
    (tmp_path / "u.csv").write_text("id\n1\n")
    log_in(page, server)
    add_source_and_loader(page, server, tmp_path, name, tmp_path / "u.csv")
    add_connection(page, server, name)
    page.fill("#schedule", "0 3 1 1 *")
    page.wait_for_function(
        "document.getElementById('schedule-preview').textContent.includes('next:')"
    )
    preview = page.locator("#schedule-preview").inner_text()
    assert "03:00" in preview and "January" in preview
    page.fill("#schedule", "61 * * * *")
    page.wait_for_selector("#schedule-preview.error")
    page.fill("#schedule", "0 3 1 1 *")
    page.wait_for_function(
        "document.getElementById('schedule-preview').textContent.includes('next:')"
    )
    shot(page, "connection")
    page.click("#save")
    page.wait_for_selector(f"text=connection {name} saved")
    assert server.store.read().get("connection", name).schedule == "0 3 1 1 *"
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    line = next(line for line in crontab.splitlines() if line.endswith(f":{name}"))
    assert line.startswith("0 3 1 1 * ") and f"sync {name}" in line
    assert f"--store {server.store_path}" in line or str(server.store_path) in line
    context.close()


def test_the_manifest_diff_view(page, server, tmp_path):
    (tmp_path / "m.csv").write_text("id\n1\n")
    manifest = f"""apiVersion: etlctl/v1
kind: Source
metadata: {{name: mview-src}}
spec: {{type: csv, config: {{path: {tmp_path / "m.csv"}}}}}
"""
    log_in(page, server)
    page.goto(server.base_url + "/manifests")
    page.fill("#manifest", manifest)
    page.click("#diff")
    assert "mview-src" in page.locator("#plan").inner_text()
    assert page.locator("#plan li.create").count() == 1
    assert server.store.read().find("source", "mview-src") is None
    shot(page, "manifest-diff")
    page.click("#apply")
    page.wait_for_selector("#plan-title:has-text('Applied')")
    assert server.store.read().get("source", "mview-src").type == "csv"
