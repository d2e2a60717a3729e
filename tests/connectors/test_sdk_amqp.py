"""The SDK's AMQP session: what a data message looks like on the queue, and the pika tuning
the throughput depends on (bench/sync_throughput.py)."""

from __future__ import annotations

import pika
from connector_harness import AMQP_URL, Queues
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
