"""The http extractor against a local JSON API (stdlib http.server on 127.0.0.1) that pages
in every supported style and injects 429 (with Retry-After) and 500 responses."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from connector_harness import events_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.extractors.http import HttpExtractor
from connectors.registry import HTTP_EXTRACTOR_SPEC
from connectors.sdk.context import RunContext
from connectors.sdk.entrypoint import with_defaults
from connectors.sdk.errors import ConnectorError
from connectors.sdk.protocol import BatchLimits, SyncSettings

RECORDS = [
    {"id": i, "name": f"Zoë {i}", "meta": {"tags": ["a", i]},
     "updated_at": f"2024-05-0{1 + i // 10}T00:00:00"}
    for i in range(1, 26)
]
PAGE = 10


class Api(BaseHTTPRequestHandler):
    failures: dict[str, int] = {}  # path -> responses still to fail
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        Api.seen.append({"path": url.path, "query": query,
                         "auth": self.headers.get("Authorization")})
        left = Api.failures.get(url.path, 0)
        if left:
            Api.failures[url.path] = left - 1
            if left % 2:
                self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
            else:
                self._send(500, {"error": "oops"})
            return
        records = [r for r in RECORDS if r["updated_at"] >= query.get("since", "")]
        handler = getattr(self, "_" + url.path.strip("/").replace("-", "_"), None)
        if handler is None:
            self._send(404, {"error": "no such page"})
            return
        handler(records, query)

    def _next_link(self, records: list[dict], query: dict[str, str]) -> None:
        start = int(query.get("from", 0))
        more = start + PAGE < len(records)
        self._send(200, {"data": {"items": records[start:start + PAGE]},
                         "links": {"next": f"/next-link?from={start + PAGE}" if more else None}})

    def _link_header(self, records: list[dict], query: dict[str, str]) -> None:
        start = int(query.get("from", 0))
        headers = {}
        if start + PAGE < len(records):
            link = f"http://{self.headers['Host']}/link-header?from={start + PAGE}"
            headers["Link"] = f'<{link}>; rel="next"'
        self._send(200, records[start:start + PAGE], headers)

    def _page_number(self, records: list[dict], query: dict[str, str]) -> None:
        page = int(query["p"])
        self._send(200, {"results": records[(page - 1) * PAGE:page * PAGE]})

    def _offset_limit(self, records: list[dict], query: dict[str, str]) -> None:
        offset, limit = int(query["offset"]), int(query["limit"])
        self._send(200, {"results": records[offset:offset + limit]})

    def _cursor_token(self, records: list[dict], query: dict[str, str]) -> None:
        start = int(query.get("token") or 0)
        token = str(start + PAGE) if start + PAGE < len(records) else None
        self._send(200, {"results": records[start:start + PAGE], "meta": {"next": token}})

    # --- APIs whose pagination does not advance, or that hold nothing ---------------------
    def _stuck_link(self, records: list[dict], query: dict[str, str]) -> None:
        self._send(200, {"results": records[:PAGE], "next": "/stuck-link?from=10"})

    def _stuck_token(self, records: list[dict], query: dict[str, str]) -> None:
        self._send(200, {"results": records[:PAGE], "meta": {"next": "same-token"}})

    def _ignored_page(self, records: list[dict], query: dict[str, str]) -> None:
        self._send(200, {"results": records[:PAGE]})  # whatever page was asked for

    def _endless(self, records: list[dict], query: dict[str, str]) -> None:
        n = int(query.get("n", 1))
        self._send(200, {"results": [{"id": n}], "next": f"/endless?n={n + 1}"})

    def _graph(self, records: list[dict], query: dict[str, str]) -> None:
        """Page ``at`` of ``links`` (comma-separated next page per page; -1: the last)."""
        links = [int(link) for link in query["links"].split(",")]
        at = int(query.get("at", 0))
        following = links[at]
        self._send(200, {
            "results": [{"id": at}],
            "next": None if following < 0 else f"/graph?links={query['links']}&at={following}",
        })

    def _empty(self, records: list[dict], query: dict[str, str]) -> None:
        self._send(200, {"results": []})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


STYLES = {
    "next_link_body": ("/next-link", "data.items",
                       {"type": "next_link_body", "next_link_path": "links.next"}),
    "link_header": ("/link-header", "", {"type": "link_header"}),
    "page_number": ("/page-number", "results", {"type": "page_number", "page_param": "p"}),
    "offset_limit": ("/offset-limit", "results", {"type": "offset_limit", "page_size": PAGE}),
    "cursor_token": ("/cursor-token", "results",
                     {"type": "cursor_token", "token_path": "meta.next", "token_param": "token"}),
}


def read_all(tmp_path, make_sync, config: dict[str, Any], **options: Any):
    out = tmp_path / "out.jsonl"
    sync = make_sync("http", config, "jsonl", {"path": str(out)}, **options)
    extractor, loader, events = sync.run(timeout=60)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return extractor, loader, events, records, sync


def run_failing(tmp_path, make_sync, config: dict[str, Any]) -> tuple[int, list, Any]:
    """The extractor fails: the loader waits for an END that never comes (etlctl stops it)."""
    sync = make_sync("http", config, "jsonl", {"path": str(tmp_path / "out.jsonl")})
    loader = sync.start("loader")
    extractor = sync.start("extractor")
    code = extractor.wait(60)
    log = extractor.stderr.read()
    loader.kill()
    loader.wait(10)
    return code, sync.queues.drain_events(), log


@pytest.mark.parametrize("style", list(STYLES))
def test_every_pagination_style_reads_every_record(tmp_path, make_sync, api, style):
    path, records_path, pagination = STYLES[style]
    config = {"url": api + path, "records_path": records_path, "pagination": pagination,
              "bearer_token": "tok-123"}
    extractor, loader, _, records, sync = read_all(tmp_path, make_sync, config)
    assert (extractor, loader) == (0, 0), sync.extractor_log
    assert records == RECORDS  # nested objects stay JSON, non-ASCII intact
    assert "tok-123" not in sync.extractor_log


def test_retries_429_and_500_honouring_retry_after(tmp_path, make_sync, api):
    path, records_path, pagination = STYLES["cursor_token"]
    Api.failures["/cursor-token"] = 3  # 429, 500, 429, then the page
    Api.seen.clear()
    config = {"url": api + path, "records_path": records_path, "pagination": pagination,
              "bearer_token": "tok-123", "max_retries": 3, "timeout": 5}
    extractor, loader, _, records, sync = read_all(tmp_path, make_sync, config)
    assert (extractor, loader) == (0, 0), sync.extractor_log
    assert records == RECORDS
    assert len(Api.seen) == 3 + 3  # three failures, then three pages
    assert {seen["auth"] for seen in Api.seen} == {"Bearer tok-123"}
    assert "retrying in 1.0s" in sync.extractor_log  # Retry-After: 1


def test_gives_up_after_max_retries_naming_the_page(tmp_path, make_sync, api):
    Api.failures["/offset-limit"] = 2
    config = {"url": api + "/offset-limit", "records_path": "results",
              "pagination": {"type": "offset_limit", "page_size": PAGE}, "max_retries": 1}
    extractor, events, _ = run_failing(tmp_path, make_sync, config)
    assert extractor == 1
    error = events_of(events, "error", "extractor")[0]
    assert error["position"] == {"page": 1} and "HTTP 429" in error["message"]
    Api.failures.clear()


def test_a_client_error_stops_with_the_page(tmp_path, make_sync, api):
    config = {"url": api + "/missing", "params": {"api_key": "hidden"}}
    extractor, events, log = run_failing(tmp_path, make_sync, config)
    assert extractor == 1
    error = events_of(events, "error", "extractor")[0]
    assert "HTTP 404" in error["message"] and error["position"] == {"page": 1}
    assert "hidden" not in error["message"] + log


def test_incremental_sends_the_saved_cursor_and_saves_the_new_one(tmp_path, make_sync, api):
    path, records_path, pagination = STYLES["page_number"]
    Api.seen.clear()
    config = {"url": api + path, "records_path": records_path, "pagination": pagination,
              "cursor_param": "since", "params": {"fields": "all"}}
    extractor, loader, events, records, sync = read_all(
        tmp_path, make_sync, config, mode="dedup", cursor_field="updated_at",
        primary_key=["id"], state={"cursor": "2024-05-02T00:00:00"},
    )
    assert (extractor, loader) == (0, 0), sync.extractor_log
    assert [r["id"] for r in records] == list(range(10, 26))
    assert Api.seen[0]["query"] == {"since": "2024-05-02T00:00:00", "fields": "all", "p": "1"}
    committed = events_of(events, "checkpoint_committed", "loader")
    assert committed[-1]["state"]["cursor"] == "2024-05-03T00:00:00"


# --- pagination that does not advance (issue 12, section 6) -----------------------------------
def filled_target(tmp_path) -> dict[str, Any]:
    path = tmp_path / "target.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?)", [(1, "Ada"), (2, "Bob"), (3, "Cy")])
    db.commit()
    db.close()
    return {"path": str(path), "table": "users"}


def target_rows(target: dict[str, Any]) -> list[tuple]:
    db = sqlite3.connect(target["path"])
    try:
        return db.execute("SELECT * FROM users ORDER BY id").fetchall()
    finally:
        db.close()


STUCK = {
    "next-link-repeats": (
        "/stuck-link", {"type": "next_link_body"}, 2,
        "page 3: the pagination does not advance: the next request is the one of page 2 again "
        "(http://127.0.0.1:{port}/stuck-link, next link at 'next'); check the pagination "
        "settings, or the API",
    ),
    "cursor-token-repeats": (
        "/stuck-token", {"type": "cursor_token", "token_path": "meta.next"}, 2,
        "page 3: the pagination does not advance: the next request is the one of page 2 again "
        "(http://127.0.0.1:{port}/stuck-token, token at 'meta.next' sent as 'cursor'); check "
        "the pagination settings, or the API",
    ),
    "page-parameter-ignored": (
        "/ignored-page", {"type": "page_number"}, 2,
        "page 2: the pagination does not advance: the API sent the same records as for page 1 "
        "(page parameter 'page'); it may ignore that parameter: check the pagination settings",
    ),
    "offset-parameter-ignored": (
        "/ignored-page", {"type": "offset_limit", "page_size": PAGE}, 2,
        "page 2: the pagination does not advance: the API sent the same records as for page 1 "
        "(offset parameter 'offset'); it may ignore that parameter: check the pagination "
        "settings",
    ),
    "more-pages-than-max-pages": (
        "/endless", {"type": "next_link_body", "max_pages": 5}, 5,
        "page 5: the API still has a next page after max_pages (5); the read would be "
        "incomplete, so the sync stops: raise pagination.max_pages if the API is that large",
    ),
}


@pytest.mark.parametrize("case", list(STUCK))
def test_a_pagination_that_does_not_advance_stops_at_once_and_keeps_the_target(
    tmp_path, make_sync, api, case
):
    path, pagination, requests_made, message = STUCK[case]
    target = filled_target(tmp_path)
    Api.seen.clear()
    config = {"url": api + path, "records_path": "results", "pagination": pagination}
    sync = make_sync("http", config, "sqlite", target)
    extractor, _, events = sync.run(timeout=60)
    assert extractor == 1, sync.extractor_log
    [error] = events_of(events, "error", "extractor")
    assert error["message"] == message.format(port=api.rsplit(":", 1)[1])
    # Stopped at once (a repeated request is not even sent), not at the 6 h timeout.
    assert len(Api.seen) == requests_made
    assert target_rows(target) == [(1, "Ada"), (2, "Bob"), (3, "Cy")]


def test_an_api_of_exactly_max_pages_pages_is_read_whole(tmp_path, make_sync, api):
    pagination = {"type": "next_link_body", "next_link_path": "links.next", "max_pages": 3}
    config = {"url": api + "/next-link", "records_path": "data.items", "pagination": pagination}
    extractor, loader, _, records, sync = read_all(tmp_path, make_sync, config)
    assert (extractor, loader) == (0, 0), sync.extractor_log
    assert records == RECORDS  # 25 records in 3 pages


def test_an_empty_api_is_refused_in_full_refresh(tmp_path, make_sync, api):
    target = filled_target(tmp_path)
    config = {"url": api + "/empty", "records_path": "results"}
    sync = make_sync("http", config, "sqlite", target)
    extractor, _, events = sync.run(timeout=60)
    assert extractor == 1
    [error] = events_of(events, "error", "extractor")
    assert error["message"].startswith("full_refresh refused: the source yielded no records")
    assert target_rows(target) == [(1, "Ada"), (2, "Bob"), (3, "Cy")]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=st.lists(st.integers(-1, 7), min_size=1, max_size=8))
def test_any_link_graph_is_read_once_per_page_or_refused_naming_the_repeat(api, links):
    """Whatever page leads to whatever page: a chain is read whole, each page once; a cycle
    stops at its first repeat with the pagination error. Never a loop."""
    links = [link if link < len(links) else -1 for link in links]
    order, at = [], 0
    while at >= 0 and at not in order:
        order.append(at)
        at = links[at]
    cycle = at >= 0
    first = f"{api}/graph?links={','.join(map(str, links))}&at=0"
    config = {"url": first, "records_path": "results",
              "pagination": {"type": "next_link_body"}, "timeout": 5, "max_retries": 0}
    context = RunContext("r", "c", SyncSettings(), BatchLimits())
    extractor = HttpExtractor(with_defaults(HTTP_EXTRACTOR_SPEC, config), context)
    read: list[int] = []
    try:
        if cycle:
            with pytest.raises(ConnectorError, match="the pagination does not advance"):
                for page in extractor._pages():
                    read.extend(record["id"] for record in page.records)
        else:
            for page in extractor._pages():
                read.extend(record["id"] for record in page.records)
    finally:
        extractor.close()
    assert read == order
