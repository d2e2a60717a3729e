"""RabbitMQ on etlctl's side: the only module of etlctl that imports pika.

The orchestrator declares a connection's two queues before any container starts, reads the
events queue while the sync runs, and deletes both afterwards. Connectors talk to the same
queues through connectors/sdk/amqp.py (they never import etlctl).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import pika
import pika.exceptions

from connectors import secrets
from etlctl.errors import ServiceUnavailableError, ValidationError

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
AMQP_URL_ENV = "ETLCTL_AMQP_URL"
# Bounded data queue: with ~1 MiB batches the broker never holds more than ~64 MiB of one
# connection, whatever the dataset size; publishers wait and resend on a nack.
DATA_QUEUE_MAX_MESSAGES = 64
EVENTS_QUEUE_MAX_MESSAGES = 100_000


def redact_url(url: str) -> str:
    """The URL with its password replaced, fit for messages and logs (also when the
    password holds '/', '?', '#' or '@', which a URL parser would split elsewhere)."""
    return secrets.mask_url(url, secrets.REDACTED)


AMQP_URL_EXAMPLE = "amqp://USER:PASSWORD@HOST:5672/%2F"


def check_amqp_url(url: str, what: str = "the RabbitMQ URL") -> str:
    """An amqp:// or amqps:// URL, else a ValidationError that does not show its password."""
    if not url.startswith(("amqp://", "amqps://")):
        raise ValidationError(
            f"{what} must start with amqp:// or amqps://, got {redact_url(url)!r}",
            hint=f"for example: {AMQP_URL_EXAMPLE}",
        )
    userinfo = secrets.url_userinfo(url) or ""
    try:
        urlsplit(url).port  # noqa: B018 - parses host and port, raises on malformed ones
        if any(char in userinfo for char in "/?#"):
            raise ValueError("x")
    except ValueError as exc:
        # A parser that split the password off quotes part of it: say what is wrong instead.
        reason = (
            "a user name or password holding '/', '?', '#' or '@' must be percent-encoded "
            "(%2F, %3F, %23, %40)"
            if any(char in userinfo for char in "/?#@")
            else str(exc)
        )
        raise ValidationError(
            f"{what} {redact_url(url)!r} is malformed: {reason}",
            hint=f"for example: {AMQP_URL_EXAMPLE}",
        ) from None
    return url


def resolve_amqp_url(explicit: str | None, settings: dict[str, Any]) -> str:
    """--amqp-url, then $ETLCTL_AMQP_URL, then the store's settings, then the default."""
    return explicit or os.environ.get(AMQP_URL_ENV) or settings.get("amqp_url") or DEFAULT_AMQP_URL


@dataclass(frozen=True)
class ConnectionQueues:
    data: str
    events: str

    @classmethod
    def for_connection(cls, connection: str, store_id: str) -> ConnectionQueues:
        """Named after the connection, then the store (see Store.id)."""
        prefix = f"etlctl.{connection}.{store_id}"
        return cls(data=f"{prefix}.data", events=f"{prefix}.events")

    @property
    def names(self) -> tuple[str, str]:
        return (self.data, self.events)


class Broker:
    """One blocking connection to RabbitMQ, used from one thread (pika is not thread-safe)."""

    def __init__(self, url: str, connection: pika.BlockingConnection) -> None:
        self.url = url
        self._connection = connection
        self._channel = connection.channel()

    @classmethod
    def connect(cls, url: str, timeout: float = 5.0) -> Broker:
        check_amqp_url(url)
        try:
            params = pika.URLParameters(url)
        except Exception as exc:  # pika raises assorted errors for malformed URLs
            problem = secrets.redact(str(exc), secrets.secret_values({"url": url}, None))
            raise ValidationError(
                f"invalid RabbitMQ URL {redact_url(url)}: {problem}",
                hint=f"for example: {AMQP_URL_EXAMPLE}",
            ) from None
        params.socket_timeout = timeout
        params.blocked_connection_timeout = 60
        params.connection_attempts = 1
        try:
            connection = pika.BlockingConnection(params)
        except pika.exceptions.ProbableAuthenticationError as exc:
            raise ServiceUnavailableError(
                f"RabbitMQ at {redact_url(url)} refused the credentials",
                hint=(
                    "check the user and password in --amqp-url, ETLCTL_AMQP_URL or "
                    "etlctl settings show"
                ),
            ) from exc
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise ServiceUnavailableError(
                f"RabbitMQ at {redact_url(url)} does not let user {params.credentials.username} "
                f"use virtual host {params.virtual_host!r}",
                hint=(
                    f"rabbitmqctl set_permissions -p {params.virtual_host} "
                    f"{params.credentials.username} '.*' '.*' '.*', or use another vhost in "
                    "the URL"
                ),
            ) from exc
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise ServiceUnavailableError(
                f"RabbitMQ is not reachable at {redact_url(url)}",
                hint=(
                    "start it (scripts/ensure-services.sh rabbitmq, or "
                    "docker compose -f docker-compose.rabbitmq.yml up -d), or point etlctl at "
                    "yours: --amqp-url, ETLCTL_AMQP_URL or etlctl settings set amqp_url URL"
                ),
            ) from exc
        return cls(url, connection)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def connection_lost_is_an_error(self) -> Iterator[None]:
        """A broker that stops or drops us in the middle of a sync (restart, network,
        missed heartbeats) is one clear error, not a pika traceback: the sync fails and
        records why; the next sync removes the durable queues left behind."""
        try:
            yield
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            raise ServiceUnavailableError(
                f"lost the connection to RabbitMQ at {redact_url(self.url)} during the sync "
                f"({type(exc).__name__}: {exc})",
                hint="check the broker (scripts/ensure-services.sh rabbitmq), then sync again",
            ) from exc

    # --- queues ------------------------------------------------------------------------
    def declare(
        self, queues: ConnectionQueues, max_messages: int = DATA_QUEUE_MAX_MESSAGES
    ) -> None:
        with self.connection_lost_is_an_error():
            self._declare(queues, max_messages)

    def _declare(self, queues: ConnectionQueues, max_messages: int) -> None:
        self._channel.queue_declare(
            queues.data,
            durable=True,
            arguments={"x-max-length": max_messages, "x-overflow": "reject-publish"},
        )
        self._channel.queue_declare(
            queues.events, durable=True, arguments={"x-max-length": EVENTS_QUEUE_MAX_MESSAGES}
        )

    def queue_exists(self, name: str) -> bool:
        """Passive declare closes the channel when the queue is missing: use a spare one."""
        channel = self._connection.channel()
        try:
            channel.queue_declare(name, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def declare_refused(self, name: str) -> str | None:
        """Declare and delete a throwaway queue on a spare channel: None when the user may
        declare queues (what every sync does first), else the broker's reason."""
        channel = self._connection.channel()
        try:
            channel.queue_declare(name, exclusive=True, auto_delete=True)
            channel.queue_delete(name)
            return None
        except pika.exceptions.ChannelClosedByBroker as exc:
            return f"{exc.reply_code} {exc.reply_text}"
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def delete_queues(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Delete the queues that exist; returns those deleted. Safe to call twice."""
        deleted = []
        for name in names:
            if self.queue_exists(name):
                self._channel.queue_delete(name)
                deleted.append(name)
        return deleted

    # --- events ------------------------------------------------------------------------
    def events(self, queue: str, wait_seconds: float) -> Iterator[dict[str, Any] | None]:
        """Events as they arrive; None after ``wait_seconds`` without one (time to look
        around). Stops when the caller stops iterating.

        Events are small and advisory (a lost progress event costs nothing; a lost
        checkpoint event only means the next sync re-reads a little), so they are
        acknowledged on delivery.
        """
        try:
            with self.connection_lost_is_an_error():
                consumed = self._channel.consume(
                    queue, auto_ack=True, inactivity_timeout=wait_seconds
                )
                for method, _props, body in consumed:
                    if method is None:
                        yield None
                        continue
                    try:
                        event = orjson.loads(body)
                    except orjson.JSONDecodeError:
                        continue  # a connector bug must not stop the orchestrator
                    if isinstance(event, dict):
                        yield event
        finally:
            with contextlib.suppress(Exception):
                self._channel.cancel()

    def publish_event(self, queue: str, event: dict[str, Any]) -> None:
        """Used by tests and by etlctl itself to note things on a run's events queue."""
        self._channel.basic_publish("", queue, orjson.dumps(event))
