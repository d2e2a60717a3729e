"""Options several commands share, defined once so their names, help and defaults agree.

Each returns a fresh typer.Option: typer reads the default from the function signature.
"""

from __future__ import annotations

from typing import Any

import typer

from etlctl.broker import AMQP_URL_ENV

NO_CRONTAB_ENV = "ETLCTL_NO_CRONTAB"


def runtime_option() -> Any:
    return typer.Option(
        None,
        "--runtime",
        help="docker, swarm (one-shot Swarm services, docs/scale-out.md) or local (subprocesses, "
        "no Docker); default: the runtime setting, docker.",
        show_default=False,
    )


def amqp_url_option() -> Any:
    return typer.Option(
        None,
        "--amqp-url",
        envvar=AMQP_URL_ENV,
        help="RabbitMQ URL (default: the amqp_url setting, amqp://guest:guest@127.0.0.1:5672/%2F).",
        show_default=False,
    )


def network_option() -> Any:
    return typer.Option(
        None,
        "--network",
        help="Docker network for the connectors: host (default, or the network setting) or a "
        "network name (compose).",
        show_default=False,
    )


def no_crontab_option() -> Any:
    """The `--no-crontab` escape of the commands that change schedules."""
    return typer.Option(
        False,
        "--no-crontab",
        envvar=NO_CRONTAB_ENV,
        help="Change the store only; leave the crontab alone (you manage it yourself).",
    )
