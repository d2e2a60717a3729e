"""The amqp loader publishes every record as a JSON message with publisher confirms."""

from __future__ import annotations

import json
import uuid

import pika
import pytest
from connector_harness import AMQP_URL, events_of


@pytest.fixture
def target_queue(rabbitmq):
    name = f"etlctl-test-target-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.queue_declare(name, durable=False)
    yield channel, name
    channel.queue_delete(name)
    connection.close()


def drain(channel, queue: str) -> list:
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((properties, json.loads(body)))


def test_records_become_messages(tmp_path, make_sync, target_queue):
    channel, queue = target_queue
    source = tmp_path / "a.jsonl"
    source.write_text("".join(json.dumps({"id": i, "name": f"Zoë {i}", "doc": {"n": [i]}}) + "\n"
                              for i in range(1, 2501)), encoding="utf-8")
    config = {"host": "127.0.0.1", "user": "guest", "password": "guest", "routing_key": queue}
    sync = make_sync("jsonl", {"path": str(source)}, "amqp", config, mode="incremental",
                     batch={"max_records": 500, "max_bytes": 1048576, "commit_every": 2})
    extractor, loader, events = sync.run()
    assert (extractor, loader) == (0, 0), sync.loader_log
    messages = drain(channel, queue)
    assert [body["id"] for _, body in messages] == list(range(1, 2501))
    assert messages[0][1] == {"id": 1, "name": "Zoë 1", "doc": {"n": [1]}}
    properties = messages[-1][0]
    assert properties.message_id == f"{sync.run_id}:2500"
    assert properties.delivery_mode == 2 and properties.content_type == "application/json"
    assert events_of(events, "done", "loader")[0]["records"] == 2500


def test_unroutable_messages_fail_and_dedup_is_refused(tmp_path, make_sync, rabbitmq):
    source = tmp_path / "a.jsonl"
    source.write_text('{"id": 1}\n')
    config = {"url": AMQP_URL, "routing_key": f"no-such-queue-{uuid.uuid4().hex[:6]}"}
    sync = make_sync("jsonl", {"path": str(source)}, "amqp", config)
    _, loader, events = sync.run()
    assert loader == 1
    assert "no queue receives" in events_of(events, "error", "loader")[0]["message"]

    sync.mode, sync.primary_key = "dedup", ["id"]
    sync.queues.delete()
    sync.queues.declare()
    sync.start_new_run()
    loader_process = sync.start("loader")
    assert loader_process.wait(30) == 2
    assert "does not support mode 'dedup'" in loader_process.stderr.read()
