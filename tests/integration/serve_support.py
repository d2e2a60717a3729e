"""A real `etlctl serve` process on a free loopback port, for the tests of the API and pages.

Everything the server answers and logs is kept, so a test can assert that a sentinel secret
appears nowhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from etlctl.store import Store

REPO = Path(__file__).resolve().parents[2]
SENTINEL = "SENTINEL-pw-7f3a9c1e"
START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def etlctl_argv(store_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "etlctl", "--store", str(store_path), *args]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "ETLCTL_NO_CRONTAB": "1", "PYTHONPATH": str(REPO)}
    env.pop("ETLCTL_AMQP_URL", None)
    env.update(extra or {})
    return env


class Server:
    """One `etlctl serve` process; `responses` keeps the text of every answer it gave."""

    def __init__(self, store_path: Path, env: dict[str, str] | None = None) -> None:
        self.store_path = store_path
        self.store = Store(store_path)
        self.env = server_env(env)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = store_path.parent / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.responses: list[str] = []
        self.token = ""

    def start(self) -> Server:
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            etlctl_argv(self.store_path, "serve", "--port", str(self.port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"etlctl serve exited: {self.log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.base_url + "/api/openapi.json", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"etlctl serve did not answer: {self.log_path.read_text()}")
            time.sleep(0.1)
        self.token = (self.store_path.parent / "serve.token").read_text().strip()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any):
        headers = {**(self.headers if auth else {}), **kwargs.pop("headers", {})}
        response = httpx.request(
            method, self.base_url + path, headers=headers, timeout=120, **kwargs
        )
        self.responses.append(f"{method} {path} {response.status_code}\n{response.text}")
        return response

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.request("POST", path, **kwargs)

    def everything_said(self) -> str:
        """Every response body and the server's whole log."""
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(self.responses) + "\n" + log


@contextlib.contextmanager
def running_server(store_path: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(store_path, env).start()
    try:
        yield server
    finally:
        server.stop()
        _cancel_leftover_syncs(server.store)


def _cancel_leftover_syncs(store: Store) -> None:
    """Syncs the server started live on after it (by design): a failed test must not
    leave one running."""
    from etlctl import launcher
    from etlctl.errors import EtlctlError

    if not store.exists():
        return
    for run in store.read().list_runs(status=None):
        if not run.status.finished:
            with contextlib.suppress(EtlctlError):
                launcher.cancel_run(store, run.id)
                for _ in launcher.watch_run(store, run.id, timeout=60):
                    pass


class PipeSource:
    """A CSV source the test feeds through a named pipe: the sync reads until it closes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.more = threading.Event()
        self.rows_written = 0
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # a cancelled sync reads no more
            self._write()

    def _write(self) -> None:
        with self.path.open("w") as pipe:  # blocks until the extractor opens it
            pipe.write("id,name\n")
            for part in (0, 1):
                for i in range(part * 5000 + 1, part * 5000 + 5001):
                    pipe.write(f"{i},user {i}\n")
                self.rows_written += 5000
                pipe.flush()
                if part == 0:
                    self.more.wait(timeout=600)

    def finish(self) -> None:
        self.more.set()
        self.thread.join(timeout=60)


class Receiver:
    """Answers each POST with the next status of `answers` (then 200) and keeps it."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), json.loads(body)))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
