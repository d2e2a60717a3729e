"""The SDK's AMQP session: what a data message looks like on the queue, and the pika tuning
the throughput depends on (bench/sync_throughput.py)."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pika
from connector_harness import AMQP_URL, Queues, Sync, new_queues
from pika.adapters.utils import io_services_utils

from connectors.sdk.amqp import PublisherThread


def test_data_messages_are_transient_numbered_and_confirmed(queues: Queues) -> None:
    publisher = PublisherThread(AMQP_URL, "run-1", "extractor", queues.events)
    try:
        publisher.publish_data(queues.data, "RECORDS", 1, b'{"columns": ["id"], "rows": [[1]]}')
        publisher.flush()  # returns once the broker confirmed
    finally:
        publisher.close()

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        method, properties, body = connection.channel().basic_get(queues.data, auto_ack=True)
    finally:
        connection.close()
    assert method is not None, "the confirmed message is not on the data queue"
    assert properties.delivery_mode == pika.DeliveryMode.Transient.value
    assert properties.type == "RECORDS"
    assert properties.headers == {"run_id": "run-1", "seq": 1}
    assert body == b'{"columns": ["id"], "rows": [[1]]}'


def test_pika_reads_the_socket_in_large_chunks() -> None:
    # If a pika release renames these attributes, the SDK silently keeps pika's 4 KiB reads
    # and a sync slows down: this test says so instead.
    transport = io_services_utils._AsyncTransportBase
    assert transport._MAX_RECV_BYTES == 1 << 20
    assert transport._MAX_CONSUME_BYTES == 4 << 20


def test_a_full_queue_logs_one_summary_line_not_a_warning_per_nack(tmp_path: Path) -> None:
    queues = new_queues(max_length=1)
    try:
        source = tmp_path / "items.jsonl"
        source.write_text("".join(f'{{"id": {i}}}\n' for i in range(1, 401)))
        target = tmp_path / "items.db"
        sync = Sync(tmp_path, queues, "jsonl", {"path": str(source)}, "sqlite",
                    {"path": str(target), "table": "items"},
                    batch={"max_records": 2, "max_bytes": 1048576, "commit_every": 16})
        # The extractor alone first: its second message finds the queue full and is nacked
        # until the loader starts consuming.
        extractor = sync.start("extractor")
        time.sleep(2)
        loader = sync.start("loader")
        codes = (extractor.wait(timeout=120), loader.wait(timeout=120))
        logs = (extractor.stderr.read(), loader.stderr.read())
    finally:
        queues.delete()
    assert codes == (0, 0), logs
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*), count(DISTINCT id) FROM items").fetchone() == (400, 400)
    assert "Nack'ed" not in "".join(logs)
    summaries = re.findall(r"the data queue was full (\d+) times", logs[0])
    assert len(summaries) == 1 and int(summaries[0]) > 0, logs[0]
