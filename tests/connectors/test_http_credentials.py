"""Credentials of the http extractor go to the configured URL's origin only.

Two real HTTP servers on different loopback addresses (127.0.0.1 and 127.0.0.2) and a third
on another port of 127.0.0.1: the API's next links, Link headers and redirects lead from the
configured server to the others and back. Every request's headers are recorded; a bearer
token, an API key header or the URL's user:password must reach the configured origin on every
page and no other server ever.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

TOKEN = "tok-SECRET-bearer"
API_KEY = "key-SECRET-header"
USER, PASSWORD = "alice", "pw-SECRET-userinfo"
SECRETS = (TOKEN, API_KEY, PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


@dataclass
class Server:
    """One HTTP server; ``route`` answers a path, every request's headers are kept."""

    host: str
    seen: list[dict[str, str]] = field(default_factory=list)
    routes: dict[str, Any] = field(default_factory=dict)
    url: str = ""

    def start(self) -> ThreadingHTTPServer:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server_self.seen.append({k.lower(): v for k, v in self.headers.items()})
                parts = urlsplit(self.path)
                route = server_self.routes.get(parts.path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                status, body, headers = route(parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer((self.host, 0), Handler)
        self.url = f"http://{self.host}:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server, Server]]:
    """home: the configured origin; other_host: another loopback address; other_port: the
    same address on another port (another origin too)."""
    made = [Server("127.0.0.1"), Server("127.0.0.2"), Server("127.0.0.1")]
    running = [server.start() for server in made]
    yield made[0], made[1], made[2]
    for server in running:
        server.shutdown()
        server.server_close()


def _page(ids: range, next_url: str | None, link_header: bool = False):
    records = [{"id": i} for i in ids]
    if link_header:
        headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
        return lambda query: (200, {"items": records}, headers)
    return lambda query: (200, {"items": records, "next": next_url}, {})


def _redirect(to: str):
    return lambda query: (302, {}, {"Location": to})


def _wire(style: str, home: Server, other_host: Server, other_port: Server) -> dict[str, Any]:
    """Five pages: home -> other host -> home -> other port -> home (same origin again)."""
    link_header = style == "link_header"
    if style == "redirect":
        # Page 1 on home names the next page on home, which redirects to the other host,
        # which redirects back to home (same origin again), and so on.
        home.routes["/p1"] = _page(range(1, 3), f"{home.url}/go2")
        home.routes["/go2"] = _redirect(f"{other_host.url}/p2")
        other_host.routes["/p2"] = _page(range(3, 5), f"{other_host.url}/go3")
        other_host.routes["/go3"] = _redirect(f"{home.url}/p3")
        home.routes["/p3"] = _page(range(5, 7), f"{home.url}/go4")
        home.routes["/go4"] = _redirect(f"{other_port.url}/p4")
        other_port.routes["/p4"] = _page(range(7, 9), f"{home.url}/p5")
    else:
        home.routes["/p1"] = _page(range(1, 3), f"{other_host.url}/p2", link_header)
        other_host.routes["/p2"] = _page(range(3, 5), f"{home.url}/p3", link_header)
        home.routes["/p3"] = _page(range(5, 7), f"{other_port.url}/p4", link_header)
        other_port.routes["/p4"] = _page(range(7, 9), "/p5", link_header)  # relative: port's
        other_port.routes["/p5"] = _page(range(9, 11), None, link_header)
        home.routes["/p5"] = _page(range(9, 11), None, link_header)
    home.routes["/p5"] = _page(range(9, 11), None, link_header)
    pagination = {"type": "link_header"} if link_header else {"type": "next_link_body"}
    return {"records_path": "items", "pagination": pagination}


CREDENTIALS = {
    "bearer_token": lambda url: {"url": url, "bearer_token": TOKEN},
    "headers": lambda url: {"url": url, "headers": {"X-Api-Key": API_KEY}},
    "url_userinfo": lambda url: {"url": url.replace("http://", f"http://{USER}:{PASSWORD}@")},
}
EXPECTED_ON_HOME = {
    "bearer_token": ("authorization", f"Bearer {TOKEN}"),
    "headers": ("x-api-key", API_KEY),
    "url_userinfo": ("authorization", "Basic " + SECRETS[3]),
}


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize("style", ["next_link_body", "link_header", "redirect"])
def test_credentials_reach_the_configured_origin_only(
    tmp_path, make_sync, servers, style, credential
):
    home, other_host, other_port = servers
    config = {**_wire(style, home, other_host, other_port),
              **CREDENTIALS[credential](f"{home.url}/p1")}
    out = tmp_path / "out.jsonl"
    sync = make_sync("http", config, "jsonl", {"path": str(out)})
    extractor, loader, _ = sync.run(timeout=60)
    assert (extractor, loader) == (0, 0), sync.extractor_log
    ids = sorted(json.loads(line)["id"] for line in out.read_text().splitlines())
    assert ids == list(range(1, 11)), "every page was read"

    header, value = EXPECTED_ON_HOME[credential]
    assert home.seen and all(seen.get(header) == value for seen in home.seen), home.seen
    assert other_host.seen and other_port.seen, "the other servers were asked"
    for seen in other_host.seen + other_port.seen:
        assert "authorization" not in seen and "x-api-key" not in seen, seen
        assert not any(secret in json.dumps(seen) for secret in SECRETS), seen
    for log in (sync.extractor_log, sync.loader_log):
        assert not any(secret in log for secret in SECRETS), log
