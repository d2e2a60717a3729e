"""Defaults kept in the store: what a sync uses when its command line does not say.

Precedence for each: command-line option, then environment variable (where one exists),
then the store's settings, then the built-in default. Keeping them in the store means that
crontab entries (which carry no environment) and CI runs get the same broker and runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from etlctl.broker import DEFAULT_AMQP_URL, check_amqp_url, redact_url
from etlctl.errors import ValidationError
from etlctl.runtime import RUNTIME_NAMES
from etlctl.store import Store


def _url(value: str) -> str:
    return check_amqp_url(value, "amqp_url")


def _runtime(value: str) -> str:
    if value not in RUNTIME_NAMES:
        raise ValidationError(f"runtime must be one of {', '.join(RUNTIME_NAMES)}, got {value!r}")
    return value


def _network(value: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise ValidationError("network must be a Docker network name or host")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValidationError(f"timeout must be a number of seconds, got {value!r}") from None
    if not 0 < seconds < float("inf"):  # also refuses nan
        raise ValidationError(
            f"timeout must be a positive number of seconds, got {value!r}",
            hint="for example: etlctl settings set timeout 3600",
        )
    return seconds


DEFAULTS: dict[str, Any] = {
    "amqp_url": DEFAULT_AMQP_URL,
    "runtime": "docker",
    "network": "host",
    "timeout": 6 * 3600.0,
}
PARSERS: dict[str, Callable[[str], Any]] = {
    "amqp_url": _url,
    "runtime": _runtime,
    "network": _network,
    "timeout": _seconds,
}
KEYS = tuple(DEFAULTS)


def effective(stored: dict[str, Any], masked: bool = True) -> dict[str, Any]:
    """Every setting with its value in force (the broker password masked for output)."""
    values = {key: stored.get(key, default) for key, default in DEFAULTS.items()}
    if masked:
        values["amqp_url"] = redact_url(values["amqp_url"])
    return values


def chosen(stored: dict[str, Any], key: str, explicit: Any) -> Any:
    """The command line's value when given, else the store's setting, else the default."""
    return explicit if explicit is not None else stored.get(key, DEFAULTS[key])


def set_value(store: Store, key: str, raw: str | None) -> None:
    if key not in DEFAULTS:
        raise ValidationError(f"unknown setting {key!r}; known: {', '.join(KEYS)}")
    value = None if raw is None else PARSERS[key](raw)
    with store.transaction() as view:
        view.set_setting(key, value)
