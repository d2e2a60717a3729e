"""Publishes each record as a JSON message to an exchange and routing key on RabbitMQ.

Messages are persistent, ``mandatory`` (a message no queue receives is an error, not a silent
loss) and published with publisher confirms: a batch counts as written only when the broker
confirmed every message of it, and the SDK acknowledges the data queue only after that.

A message stream has no transactions: delivery is **at least once**. A loader that dies
between publishing a batch and acknowledging it publishes that batch again when restarted;
every message carries a stable ``message_id`` (``<run_id>:<record number>``) so that
consumers can drop repeats. ``full_refresh`` publishes the whole snapshot again, and
``incremental`` the new records; ``dedup`` is refused (a stream cannot be deduplicated).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pika
import pika.exceptions

from connectors.sdk import ConfigError, ConnectorError, Loader, LoadMark, Schema
from connectors.sdk.wire import json_numbers

PERSISTENT = pika.DeliveryMode.Persistent


def broker_parameters(config: dict[str, Any]) -> pika.URLParameters:
    """Connection parameters from ``url`` or from host/port/user/password/vhost."""
    url = config.get("url")
    if not url:
        credentials = quote(config["user"], safe="") + ":" + quote(
            config.get("password") or "", safe=""
        )
        url = (
            f"amqp://{credentials}@{config['host']}:{config['port']}/"
            f"{quote(config['vhost'], safe='')}"
        )
    try:
        return pika.URLParameters(url)
    except Exception:  # the message could quote the URL and its password
        raise ConfigError("url is not a valid amqp:// URL") from None


class AmqpLoader(Loader):
    modes = ("full_refresh", "incremental")
    target_name = "a JSON message"  # no NaN or infinities (Loader.non_finite)

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.exchange: str = config["exchange"]
        self.routing_key: str = config["routing_key"]
        self.parameters = broker_parameters(config)
        self.connection: pika.BlockingConnection | None = None
        self.channel: Any = None
        self.stream = ""

    # --- check -----------------------------------------------------------------------------
    def check(self) -> None:
        self._connect()
        if self.exchange:
            try:
                self.channel.exchange_declare(self.exchange, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                raise ConfigError(f"exchange {self.exchange!r} does not exist") from None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LoadMark:
        self._connect()
        return LoadMark()  # nothing to resume from: the stream keeps no marks (at least once)

    def begin(self, schema: Schema) -> None:
        self.stream = schema.stream

    def add_columns(self, columns: list[Any]) -> None:
        """JSON messages carry their keys: nothing to do."""

    def write_batch(self, columns: list[str], rows: list[list[Any]]) -> None:
        offset = self.batch_rejects.offset
        rows = json_numbers(self.column_types(), columns, rows)
        for index, row in enumerate(rows):
            body = orjson.dumps(dict(zip(columns, row, strict=True)))
            number = (kept[index] if (kept := self.batch_rejects.kept) else index) + 1
            self._publish(body, f"{self.context.run_id}:{offset + number}")
        # Confirms are synchronous: every basic_publish above returned after the broker's ack.

    def commit(self, mark: LoadMark) -> None:
        """Everything written is confirmed already; keep the connection's heartbeats served."""
        if self.connection is not None:
            self.connection.process_data_events(time_limit=0)

    def close(self, failed: bool) -> None:
        if self.connection is not None:
            try:
                if self.connection.is_open:
                    self.connection.close()
            except Exception:  # closing after a failure must not hide the failure
                pass
            self.connection = None

    # --- helpers -----------------------------------------------------------------------------
    def _connect(self) -> None:
        where = f"{self.parameters.host}:{self.parameters.port}"
        try:
            self.connection = pika.BlockingConnection(self.parameters)
        except pika.exceptions.AMQPError as exc:
            raise ConnectorError(
                f"cannot connect to the target RabbitMQ at {where}: {type(exc).__name__}"
            ) from None
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def _publish(self, body: bytes, message_id: str) -> None:
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            message_id=message_id,
            type="record",
            headers={"run_id": self.context.run_id, "stream": self.stream,
                     "mode": self.context.sync.mode},
        )
        try:
            self.channel.basic_publish(
                exchange=self.exchange, routing_key=self.routing_key, body=body,
                properties=properties, mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            raise ConnectorError(
                f"no queue receives messages sent to exchange {self.exchange!r} with routing "
                f"key {self.routing_key!r}: bind a queue first"
            ) from None
        except pika.exceptions.NackError:
            raise ConnectorError("the target broker refused a message (nack)") from None
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise ConnectorError(
                f"the target broker closed the channel: {exc.reply_text}"
            ) from None
