"""Which values of a connector config are secret, and keeping them out of text.

Shared by etlctl (masking, exports, error messages, run logs) and the connectors (their
logs and error events), so both sides agree on one definition. A value is secret when:

* its top-level field is marked ``"secret": true`` in the spec (a password, a token);
* it is a value of a map whose ``additionalProperties`` is marked secret (http ``headers``);
* it is the ``user:password@`` part of a URL, in any string field of any connector;
* the connector has no spec (a custom image) and the field's name looks secret
  (``password``, ``token``, ``api_key``, ...).

Cheap to import (no third-party library): etlctl's commands load it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

MASK = "********"
REDACTED = "***"
# Shorter values are not redacted from free text: a two-character password would mangle
# every log line it happens to appear in (and guards nothing anyone could not guess).
MIN_REDACTED_LENGTH = 4
SECRET_REF_KEYS = ("fromEnv", "fromFile")
LIKELY_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api_?key|private_?key|credential", re.IGNORECASE
)
# scheme://USERINFO@ : up to the last '@' of the word, so that a password holding '/', '?',
# '#' or '@' (which a URL parser would split elsewhere) is still covered.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>`]*)@")

Path = tuple[str, ...]


def is_secret_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in SECRET_REF_KEYS
        and isinstance(next(iter(value.values())), str)
    )


def url_userinfo(value: Any) -> str | None:
    """The ``user:password`` of a URL-looking string (None when it has none)."""
    if not isinstance(value, str):
        return None
    found = _URL_USERINFO.match(value.strip())
    return found.group("userinfo") if found and found.group("userinfo") else None


def _mask_userinfo(userinfo: str, mask: str) -> str:
    """``user:pw`` -> ``user:MASK``; a bare ``token`` (GitHub style) -> ``MASK``."""
    user, sep, _ = userinfo.partition(":")
    return f"{user}:{mask}" if sep and "/" not in user else mask


def mask_url(value: str, mask: str = MASK) -> str:
    return _URL_USERINFO.sub(
        lambda m: f"{m.group('scheme')}{_mask_userinfo(m.group('userinfo'), mask)}@", value
    )


# --- where the secrets of a config are ------------------------------------------------------
def _secret_map(prop: Any) -> bool:
    extra = prop.get("additionalProperties") if isinstance(prop, dict) else None
    return isinstance(extra, dict) and extra.get("secret") is True


def secret_fields(spec: dict[str, Any] | None) -> set[str]:
    """Top-level fields whose whole value is secret."""
    if not spec:
        return set()
    return {
        name
        for name, prop in spec.get("properties", {}).items()
        if isinstance(prop, dict) and prop.get("secret") is True
    }


def secret_map_fields(spec: dict[str, Any] | None) -> set[str]:
    """Top-level map fields whose values are secret (http ``headers``)."""
    if not spec:
        return set()
    return {name for name, prop in spec.get("properties", {}).items() if _secret_map(prop)}


def _whole_secrets(config: dict[str, Any], spec: dict[str, Any] | None) -> set[str]:
    """Fields secret as a whole; without a spec (a custom image), by their names."""
    if spec:
        return secret_fields(spec)
    return {key for key in config if LIKELY_SECRET_NAME.search(key)}


def secret_paths(config: dict[str, Any], spec: dict[str, Any] | None) -> list[Path]:
    """Where the config holds a plain secret (references are not secrets): ``("password",)``,
    ``("headers", "X-Api-Key")``, ``("url",)`` for a URL with a user:password."""
    whole = _whole_secrets(config, spec)
    maps = secret_map_fields(spec)
    found: list[Path] = []
    for key, value in config.items():
        if value in (None, "") or is_secret_ref(value):
            continue
        if key in whole:
            found.append((key,))
        elif key in maps and isinstance(value, dict):
            found += [
                (key, name) for name, item in value.items()
                if item not in (None, "") and not is_secret_ref(item)
            ]
        else:
            found += [(key, *path) for path in _urls_with_userinfo(value)]
    return found


def _urls_with_userinfo(value: Any, path: Path = ()) -> Iterator[Path]:
    if url_userinfo(value):
        yield path
    elif isinstance(value, dict) and not is_secret_ref(value):
        for key, item in value.items():
            yield from _urls_with_userinfo(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _urls_with_userinfo(item, (*path, str(index)))


def get_path(config: Any, path: Path) -> Any:
    for step in path:
        config = config[int(step)] if isinstance(config, list) else config[step]
    return config


def replace_paths(config: dict[str, Any], paths: Iterable[Path], new: Any) -> dict[str, Any]:
    """A deep copy of config with the value at each path replaced by ``new(path, value)``."""
    import copy

    result = copy.deepcopy(config)
    for path in paths:
        parent = get_path(result, path[:-1])
        key: Any = int(path[-1]) if isinstance(parent, list) else path[-1]
        parent[key] = new(path, parent[key])
    return result


def mask_config(config: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """A copy fit for output: secrets masked, URLs keep all but their password, references
    shown as they are."""

    whole = _whole_secrets(config, spec)

    def masked(path: Path, value: Any) -> Any:
        if path[0] not in whole and url_userinfo(value):
            return mask_url(value)
        return MASK

    return replace_paths(config, secret_paths(config, spec), masked)


def secret_values(config: dict[str, Any], spec: dict[str, Any] | None) -> set[str]:
    """The strings that must never appear in text about this config: each secret value, and
    of a URL its user:password, password and their decoded forms."""
    values: set[str] = set()
    for path in secret_paths(config, spec):
        value = get_path(config, path)
        values |= _forms(str(value) if not isinstance(value, str) else value)
        for found in _URL_USERINFO.finditer(value if isinstance(value, str) else ""):
            userinfo = found.group("userinfo")
            user, sep, password = userinfo.partition(":")
            values |= _forms(password) if sep else _forms(user)
            values |= _forms(userinfo)
    return {value for value in values if len(value) >= MIN_REDACTED_LENGTH}


def _forms(value: str) -> set[str]:
    return {value, unquote(value)}


def redact(text: str, secrets: Iterable[str] = (), urls: bool = True) -> str:
    """The text with every known secret value replaced by ***, and (``urls``) the password
    of any URL in it."""
    if urls:
        text = mask_url(text, REDACTED)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_REDACTED_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return text
