"""Runs connectors the way etlctl does: subprocesses with run files, real RabbitMQ queues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

AMQP_URL = os.environ.get("ETLCTL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REPO = Path(__file__).resolve().parents[2]


def broker_available() -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL + "?connection_attempts=1")).close()
    except Exception:
        return False
    return True


@dataclass
class Queues:
    """A data and an events queue declared as etlctl declares them; deleted at the end."""

    name: str
    max_length: int = 64

    @property
    def data(self) -> str:
        return f"etlctl.{self.name}.data"

    @property
    def events(self) -> str:
        return f"etlctl.{self.name}.events"

    def declare(self) -> None:
        with _channel() as channel:
            channel.queue_declare(
                self.data,
                durable=True,
                arguments={"x-max-length": self.max_length, "x-overflow": "reject-publish"},
            )
            channel.queue_declare(self.events, durable=True)

    def delete(self) -> None:
        with _channel() as channel:
            channel.queue_delete(self.data)
            channel.queue_delete(self.events)

    def reset(self) -> None:
        """Empty both queues, as etlctl's cleanup does after a run (a failed run may leave
        messages a later run must not see)."""
        self.delete()
        self.declare()

    def drain_events(self) -> list[dict[str, Any]]:
        events = []
        with _channel() as channel:
            while True:
                method, _properties, body = channel.basic_get(self.events, auto_ack=True)
                if method is None:
                    return events
                events.append(json.loads(body))

    def message_count(self) -> int:
        with _channel() as channel:
            return channel.queue_declare(self.data, passive=True).method.message_count


class _channel:
    def __enter__(self) -> Any:
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        return self.connection.channel()

    def __exit__(self, *exc: object) -> None:
        self.connection.close()


def new_queues(max_length: int = 64) -> Queues:
    queues = Queues(f"test-{uuid.uuid4().hex[:10]}", max_length)
    queues.declare()
    return queues


@dataclass
class Sync:
    """One sync's run files and queues."""

    tmp: Path
    queues: Queues
    source_type: str
    source_config: dict[str, Any]
    loader_type: str
    loader_config: dict[str, Any]
    mode: str = "full_refresh"
    cursor_field: str | None = None
    primary_key: list[str] = field(default_factory=list)
    on_error: str = "fail"
    state: dict[str, Any] | None = None
    run_id: str = field(default_factory=lambda: f"r-{uuid.uuid4().hex[:8]}")
    batch: dict[str, int] = field(
        default_factory=lambda: {"max_records": 2000, "max_bytes": 1048576, "commit_every": 16}
    )
    rejects_path: str | None = None
    # The loader's own batch settings when they must differ from the extractor's (a loader
    # that commits only at checkpoints: a large commit_every).
    loader_batch: dict[str, int] | None = None
    transform: dict[str, Any] | None = None
    allow_empty: bool = False

    def run_file(self, role: str) -> Path:
        connector_type, config = (
            (self.source_type, self.source_config)
            if role == "extractor"
            else (self.loader_type, self.loader_config)
        )
        document = {
            "protocol": 1,
            "role": role,
            "connector_type": connector_type,
            "config": config,
            "state": self.state,
            "sync": {
                "mode": self.mode,
                "cursor_field": self.cursor_field,
                "primary_key": self.primary_key,
                "on_error": self.on_error,
                "transform": self.transform,
                "allow_empty": self.allow_empty,
            },
            "run": {"id": self.run_id, "connection": self.queues.name, "connection_id": "c1"},
            "broker": {
                "url": AMQP_URL,
                "data_queue": self.queues.data,
                "events_queue": self.queues.events,
            },
            "batch": self.loader_batch if role == "loader" and self.loader_batch else self.batch,
            "rejects_path": self.rejects_path,
        }
        path = self.tmp / f"{self.run_id}-{role}.json"
        path.write_text(json.dumps(document))
        return path

    def start(
        self, role: str, command: str = "run", env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        connector_type = self.source_type if role == "extractor" else self.loader_type
        return start_connector(role, connector_type, command, self.run_file(role), env)

    def run(self, timeout: float = 120) -> tuple[int, int, list[dict[str, Any]]]:
        """Start the loader, then the extractor; wait; return both exit codes and the events.
        A failed extractor sends no END: its loader is stopped, as etlctl does."""
        loader = self.start("loader")
        extractor = self.start("extractor")
        try:
            extractor_code = extractor.wait(timeout)
            if extractor_code != 0:
                loader.kill()
            loader_code = loader.wait(timeout)
        finally:  # a test that times out leaves no connector running
            for process in (extractor, loader):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        self.extractor_log = extractor.stderr.read() if extractor.stderr else ""
        self.loader_log = loader.stderr.read() if loader.stderr else ""
        return extractor_code, loader_code, self.queues.drain_events()

    def start_new_run(self) -> None:
        self.run_id = f"r-{uuid.uuid4().hex[:8]}"


def start_connector(
    role: str, connector_type: str, command: str, run_file: Path,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``env``: extra variables (fault injection, see connectors/sdk/loader.py)."""
    return subprocess.Popen(
        [sys.executable, "-m", "connectors", role, connector_type, command],
        env={
            **os.environ, "ETLCTL_RUN_FILE": str(run_file), "PYTHONPATH": str(REPO),
            **(env or {}),
        },
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events_of(events: list[dict[str, Any]], event_type: str, role: str | None = None) -> list:
    return [e for e in events if e["type"] == event_type and role in (None, e["role"])]
