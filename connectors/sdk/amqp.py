"""The only module on the connector side that talks to RabbitMQ (pika).

One BlockingConnection, one channel with publisher confirms. pika is not thread-safe: use a
session from the thread that created it only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pika
import pika.exceptions
from pika.adapters.utils import io_services_utils

from connectors.sdk.errors import ConnectorError, ProtocolError

log = logging.getLogger("connectors.amqp")


class _HandledNacks(logging.Filter):
    """Drops pika's WARNING for each nacked publish: a full queue nacks by design
    (backpressure), ``BrokerSession.publish`` resends and counts it, and the entrypoint logs
    one summary line ("the data queue was full N times") instead of dozens of warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Message was Nack'ed by broker")


_PIKA_PUBLISHER_LOG = logging.getLogger("pika.adapters.blocking_connection")
_PIKA_PUBLISHER_LOG.addFilter(_HandledNacks())

# pika reads its socket 4 KiB at a time and appends every read to its frame buffer (a copy
# of the growing buffer each time): a 128 KiB frame took 32 reads and copies. Batches are
# that large: read up to 1 MiB at once, and up to 4 MiB before pika turns to its timers.
_transport = io_services_utils._AsyncTransportBase
if hasattr(_transport, "_MAX_RECV_BYTES") and hasattr(_transport, "_MAX_CONSUME_BYTES"):
    _transport._MAX_RECV_BYTES = 1 << 20
    _transport._MAX_CONSUME_BYTES = 4 << 20

FIRST_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 1.0
# Events are small and the orchestrator drains them: a full events queue is retried a while,
# then a non-essential event (progress) is given up rather than stalling the sync.
NONESSENTIAL_EVENT_ATTEMPTS = 3
PERSISTENT = pika.DeliveryMode.Persistent
# Data messages are transient: a persistent one is written and fsynced by the broker before
# it confirms, which made publishing the slowest step of a sync. Persisting them buys
# nothing: a broker restart drops the connectors' connections, so the run fails either way,
# and the next sync starts again from the last committed checkpoint.
TRANSIENT = pika.DeliveryMode.Transient


@dataclass(frozen=True)
class Delivery:
    """One message from the data queue."""

    tag: int
    type: str
    seq: int
    run_id: str | None
    redelivered: bool
    body: bytes


class BrokerSession:
    """Publishes with confirms (resending on nack: backpressure) and consumes with manual acks."""

    def __init__(self, url: str, run_id: str, role: str, events_queue: str) -> None:
        self.run_id = run_id
        self.role = role
        self.events_queue = events_queue
        try:
            params = pika.URLParameters(url)
            self.connection = pika.BlockingConnection(params)
        except pika.exceptions.AMQPError as exc:
            host = f"{params.host}:{params.port}" if "params" in locals() else "the broker"
            raise ConnectorError(f"cannot connect to RabbitMQ at {host}: {exc!r}") from None
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.nacks = 0  # how often backpressure held us back, for the logs
        self.consuming = False

    # --- publishing -------------------------------------------------------------------
    def _publish_once(self, queue: str, body: bytes, properties: pika.BasicProperties) -> None:
        try:
            self.channel.basic_publish(
                exchange="", routing_key=queue, body=body, properties=properties, mandatory=True
            )
        except pika.exceptions.UnroutableError:
            raise ProtocolError(
                f"queue {queue!r} does not exist (etlctl declares it before the sync starts)"
            ) from None

    def publish(
        self, queue: str, body: bytes, properties: pika.BasicProperties, attempts: int = 0
    ) -> bool:
        """Publish until the broker confirms; on a nack (queue full) wait 50 ms doubling to 1 s
        and resend the same message. ``attempts`` > 0 bounds the tries; returns False then."""
        delay = FIRST_BACKOFF_SECONDS
        tries = 0
        while True:
            try:
                self._publish_once(queue, body, properties)
                return True
            except pika.exceptions.NackError:
                self.nacks += 1
                tries += 1
                if attempts and tries >= attempts:
                    return False
                # sleep() keeps serving heartbeats while we wait for the loader to catch up
                self.connection.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def publish_data(self, queue: str, message_type: str, seq: int, body: bytes) -> None:
        properties = pika.BasicProperties(
            type=message_type,
            content_type="application/json",
            delivery_mode=TRANSIENT,
            headers={"run_id": self.run_id, "seq": seq},
        )
        self.publish(queue, body, properties)

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None:
        event = {"type": event_type, "role": self.role, "run_id": self.run_id, **fields}
        properties = pika.BasicProperties(
            type=event_type, content_type="application/json", delivery_mode=PERSISTENT,
            headers={"run_id": self.run_id},
        )
        body = orjson.dumps(event, default=str)
        sent = self.publish(
            self.events_queue, body, properties,
            attempts=0 if essential else NONESSENTIAL_EVENT_ATTEMPTS,
        )
        if not sent:
            log.warning("events queue full: dropped a %s event", event_type)

    # --- consuming ----------------------------------------------------------------------
    def consume(self, queue: str, prefetch: int, idle_seconds: float) -> Iterator[Delivery | None]:
        """Yield deliveries (manual acks); None after ``idle_seconds`` without a message, so
        the caller can report progress. Iterating keeps heartbeats served."""
        self.channel.basic_qos(prefetch_count=prefetch)
        self.consuming = True
        for method, properties, body in self.channel.consume(
            queue, auto_ack=False, inactivity_timeout=idle_seconds
        ):
            if method is None:
                yield None
                continue
            headers = properties.headers or {}
            yield Delivery(
                tag=method.delivery_tag,
                type=properties.type or "",
                seq=int(headers.get("seq", 0)),
                run_id=headers.get("run_id"),
                redelivered=bool(method.redelivered),
                body=body,
            )

    def ack(self, tag: int, multiple: bool = True) -> None:
        self.channel.basic_ack(delivery_tag=tag, multiple=multiple)

    def keep_alive(self) -> None:
        """Serve heartbeats during long work (call it between slow steps)."""
        self.connection.process_data_events(time_limit=0)

    def close(self) -> None:
        """Close quietly: unacked messages go back to the queue, which is what we want."""
        try:
            if self.consuming and self.channel.is_open:
                self.channel.cancel()
        except Exception:  # closing after a failure must not hide the failure
            pass
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:
            pass


def wait_a_little(session: BrokerSession | None, seconds: float) -> None:
    """Sleep while serving heartbeats when connected."""
    if session is None:
        time.sleep(seconds)
    else:
        session.connection.sleep(seconds)


class PublisherThread:
    """A BrokerSession owned by a thread of its own, for extractors.

    Waiting for the broker's confirm of a batch takes about a millisecond; in a thread it
    overlaps with reading and encoding the next batches (the GIL is released while waiting)
    instead of adding to them. At most ``depth`` messages wait in line, so memory stays
    bounded. pika is not thread-safe: only this thread touches the connection. While idle it
    serves heartbeats. A failure in the thread is raised in the caller at its next call.
    """

    def __init__(
        self, url: str, run_id: str, role: str, events_queue: str, depth: int = 4
    ) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], None], bool] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self.waited_seconds = 0.0  # the caller's time blocked on a full line (backpressure)
        self._ready = threading.Event()
        self._session: BrokerSession | None = None
        self._thread = threading.Thread(
            target=self._serve, args=(url, run_id, role, events_queue),
            name="amqp-publisher", daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        self._raise_failure()

    @property
    def nacks(self) -> int:
        return self._session.nacks if self._session else 0

    def _serve(self, url: str, run_id: str, role: str, events_queue: str) -> None:
        try:
            self._session = BrokerSession(url, run_id, role, events_queue)
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        session = self._session
        while True:
            try:
                job = self._jobs.get(timeout=1.0)
            except queue.Empty:
                self._keep_alive(session)
                continue
            if job is None:
                break
            work, even_after_failure = job
            if self._error is not None and not even_after_failure:
                continue  # the sync failed: drop the rest, keep draining
            try:
                work()
            except BaseException as exc:
                if self._error is None:
                    self._error = exc
        session.close()

    def _keep_alive(self, session: BrokerSession) -> None:
        try:
            session.keep_alive()
        except BaseException as exc:
            if self._error is None:
                self._error = exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _submit(self, work: Callable[[], None], even_after_failure: bool = False) -> None:
        if not even_after_failure:
            self._raise_failure()
        if not self._thread.is_alive():
            raise ConnectorError("the AMQP publisher thread stopped")
        started = time.monotonic()
        self._jobs.put((work, even_after_failure))
        self.waited_seconds += time.monotonic() - started

    def publish_data(self, queue_name: str, message_type: str, seq: int, body: bytes) -> None:
        self._submit(lambda: self._active().publish_data(queue_name, message_type, seq, body))

    def publish_event(self, event_type: str, essential: bool = True, **fields: Any) -> None:
        def send() -> None:
            self._active().publish_event(event_type, essential, **fields)

        self._submit(send, even_after_failure=event_type == "error")

    def flush(self) -> None:
        """Wait until everything submitted is confirmed; raise what failed."""
        done = threading.Event()
        self._submit(done.set, even_after_failure=True)
        while not done.wait(0.5):
            if not self._thread.is_alive():
                break
        self._raise_failure()

    def _active(self) -> BrokerSession:
        assert self._session is not None
        return self._session

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=30)
