"""Helpers of the fault-injection suite: drive etlctl as a user does (a subprocess per
command), build sources, find a sync's containers, poll for conditions (never sleep and hope).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from etlctl.models import Run
from etlctl.store import Store
from tests_support import leftover_containers, leftover_queues, write_users_csv

REPO = Path(__file__).resolve().parents[2]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
COMMAND_TIMEOUT = 240  # one etlctl command; generous for a busy 2-core machine
CURSOR_VALUES = 50  # sqlite sources: many rows share each cursor value


def unique(prefix: str) -> str:
    """Connection names are shared with other test runs on the broker and the engine."""
    return f"{prefix}-{secrets.token_hex(3)}"


def wait_until(condition: Callable[[], Any], seconds: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


class Etl:
    """The etlctl CLI over one throwaway store (and its own XDG dirs: logs, locks)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.store_path = tmp / "home" / "store.json"
        self.env = {
            **os.environ,
            "ETLCTL_NO_CRONTAB": "1",
            "XDG_DATA_HOME": str(tmp / "xdg"),
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        self.env.pop("ETLCTL_AMQP_URL", None)
        self.started: list[subprocess.Popen[str]] = []

    @property
    def store(self) -> Store:
        return Store(self.store_path)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "etlctl", "--store", str(self.store_path), *args]

    def __call__(
        self,
        *args: str,
        code: int | None = 0,
        env: dict[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
            input=stdin,
            cwd=self.tmp,
        )
        if code is not None:
            assert result.returncode == code, (args, result.returncode, result.stdout,
                                               result.stderr)
        return result

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.tmp,
        )
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(30)

    # --- registering -----------------------------------------------------------------
    def csv_source(self, name: str, rows: int, start: int = 1) -> Path:
        path = self.tmp / "data" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_users_csv(path, rows, start)
        self("source", "add", name, "--type", "csv", "--config", f"path={path}")
        return path

    def sqlite_source(self, name: str, rows: int) -> Path:
        """A table sorted by cursor (checkpoints between batches), many rows per value."""
        path = self.tmp / "data" / f"{name}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_items(path, rows)
        self(
            "source", "add", name, "--type", "sqlite",
            "--config", f"path={path}", "--config", "table=items",
        )
        return path

    def sqlite_loader(self, name: str, table: str = "users") -> Path:
        path = self.tmp / "out" / f"{name}.db"
        self(
            "loader", "add", name, "--type", "sqlite",
            "--config", f"path={path}", "--config", f"table={table}",
        )
        return path

    def connection(self, name: str, source: str, loader: str, *options: str) -> None:
        self("connection", "add", name, "--source", source, "--loader", loader, *options)

    # --- syncing ---------------------------------------------------------------------
    def sync(self, name: str, *options: str, code: int | None = 0,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self("sync", name, "--json", *options, code=code, env=env)

    def runs(self, connection: str) -> list[Run]:
        return self.store.read().list_runs(connection)

    def last_run(self, connection: str) -> Run:
        return self.runs(connection)[0]

    def state(self, connection: str) -> dict[str, Any] | None:
        saved = self.store.read().get_state(connection)
        return saved.state if saved else None


def write_items(path: Path, rows: int, start: int = 1) -> None:
    """items(id, name, updated_at): cursor values 2024-05-01T00:MM:00, ~rows/50 rows each."""
    per_value = max(1, rows // CURSOR_VALUES)
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS items "
        "(id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)"
    )
    db.executemany(
        "INSERT OR REPLACE INTO items VALUES (?, ?, ?)",
        [(i, f"n{i}", cursor_of(i, per_value)) for i in range(start, start + rows)],
    )
    db.commit()
    db.close()


def cursor_of(i: int, per_value: int) -> str:
    minute = min((i - 1) // per_value, 59)
    return f"2024-05-01T00:{minute:02d}:00"


def sqlite_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def committed_seq(path: Path, ignore_runs: frozenset[str] = frozenset()) -> int:
    """The loader's last committed message (its _etlctl_loads mark) of a run not in
    ``ignore_runs`` (earlier syncs keep their mark there), 0 before any."""
    if not path.exists():
        return 0
    try:
        found = sqlite_rows(path, "SELECT run_id, last_seq FROM _etlctl_loads")
    except sqlite3.Error:
        return 0
    return max((seq for run_id, seq in found if run_id not in ignore_runs), default=0)


def connector_containers(connection: str, role: str) -> list[str]:
    out = subprocess.run(
        [
            "docker", "ps", "-q",
            "--filter", f"label=io.etlctl.connection={connection}",
            "--filter", f"label=io.etlctl.role={role}",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return out.split()


def run_files(etl: Etl) -> list[Path]:
    """The run-file directories beside the etl's store (they hold the config's secrets)."""
    from etlctl.leftovers import run_files_dir

    root = run_files_dir(etl.store_path)
    return sorted(root.iterdir()) if root.is_dir() else []


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    ).stdout


def assert_nothing_left(connection: str) -> None:
    """No container and no queue of the connection: cleanup is synchronous, so at once."""
    assert leftover_containers(connection) == [], f"containers of {connection} left behind"
    assert leftover_queues(connection) == [], f"queues of {connection} left behind"


def run_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout)


def rabbitmqctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout
    )


def broker_answers() -> bool:
    import pika

    try:
        pika.BlockingConnection(
            pika.URLParameters(AMQP_URL + "?connection_attempts=1&socket_timeout=2")
        ).close()
    except Exception:
        return False
    return True


@contextmanager
def broker_stopped() -> Iterator[None]:
    """Stop the RabbitMQ app for a while; always start it again, and wait until it serves."""
    try:
        stopped = rabbitmqctl("stop_app")
        assert stopped.returncode == 0, stopped.stderr
        yield
    finally:
        rabbitmqctl("start_app")
        wait_until(broker_answers, 120, "RabbitMQ to serve again", step=0.5)
