"""The catalog of connector types: specs, config validation, secrets, config parsing.

The specs live with the connectors (``connectors.registry``), shipped in the same
distribution, so etlctl reads them without Docker. Config values may be secret references
(``{"fromEnv": "VAR"}`` or ``{"fromFile": "/path"}``) that are resolved only when a sync runs.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from connectors import secrets
from connectors.registry import ConnectorInfo, all_connectors, get_connector, path_fields
from connectors.secrets import MASK, SECRET_REF_KEYS, is_secret_ref
from etlctl.errors import ValidationError, close_match
from etlctl.files import not_a_regular_file
from etlctl.models import ROLE_OF_KIND

__all__ = ["MASK", "SECRET_REF_KEYS", "is_secret_ref"]  # re-exported: callers use catalog.*
MAX_CONFIG_FILE_BYTES = 1024 * 1024
# Every secret value this process has seen (resolved for a sync, validated, registered):
# the CLI's one error printer and the run logs redact them (see known_secrets()).
_SEEN_SECRETS: set[str] = set()



def connectors(role: str | None = None) -> list[ConnectorInfo]:
    found = [info for info in all_connectors() if role in (None, info.role)]
    return sorted(found, key=lambda info: (info.role, info.type))


def connector(role: str, connector_type: str) -> ConnectorInfo:
    try:
        return get_connector(role, connector_type)
    except KeyError:
        known = [info.type for info in connectors(role)]
        guess = close_match(connector_type, known)
        raise ValidationError(
            f"unknown {role} type {connector_type!r}; built-in types: {', '.join(known)}",
            hint=(f"did you mean {guess!r}? " if guess else "")
            + "see: etlctl connectors list (a custom type needs --image)",
        ) from None


def find_connector(role: str, connector_type: str) -> ConnectorInfo | None:
    try:
        return get_connector(role, connector_type)
    except KeyError:
        return None


def secret_fields(spec: dict[str, Any] | None) -> set[str]:
    return secrets.secret_fields(spec)


def spec_of(obj: Any) -> dict[str, Any] | None:
    """The spec of a stored source or loader; None for a custom image's type."""
    info = find_connector(obj.role, obj.type)
    return info.spec if info else None


def remember_secrets(config: dict[str, Any], spec: dict[str, Any] | None) -> set[str]:
    """Note the config's secret values for redaction in this process; returns them."""
    found = secrets.secret_values(config, spec)
    _SEEN_SECRETS.update(found)
    return found


def known_secrets() -> frozenset[str]:
    return frozenset(_SEEN_SECRETS)


def redact(text: str, extra: set[str] | frozenset[str] = frozenset()) -> str:
    """Text fit for a message or a log: URL passwords and every secret seen masked."""
    return secrets.redact(text, _SEEN_SECRETS | set(extra))


# --- secret references --------------------------------------------------------------------
def resolve_secret_refs(config: dict[str, Any], _prefix: str = "") -> dict[str, Any]:
    """Replace references (at any depth: a header's value may be one) by their values; only
    called when a sync or check runs."""
    resolved: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{_prefix}{name}"
        if isinstance(value, dict) and not is_secret_ref(value):
            resolved[name] = resolve_secret_refs(value, f"{key}.")
        elif not is_secret_ref(value):
            resolved[name] = value
        elif "fromEnv" in value:
            variable = value["fromEnv"]
            if variable not in os.environ:
                raise ValidationError(
                    f"config field {key!r} reads the environment variable {variable}, "
                    "which is not set",
                    hint=f"export {variable}=... before the sync",
                )
            resolved[name] = os.environ[variable]
        else:
            path = Path(value["fromFile"]).expanduser()
            try:
                resolved[name] = path.read_text().rstrip("\n")
            except OSError as exc:
                raise ValidationError(
                    f"config field {key!r} reads the file {path}: {exc.strerror}"
                ) from exc
    return resolved


def unresolved_env_refs(config: dict[str, Any]) -> list[str]:
    found = []
    for value in config.values():
        if is_secret_ref(value):
            if "fromEnv" in value and value["fromEnv"] not in os.environ:
                found.append(value["fromEnv"])
        elif isinstance(value, dict):
            found += unresolved_env_refs(value)
    return found


# --- validation ---------------------------------------------------------------------------
def _placeholder(prop: dict[str, Any]) -> Any:
    """A value of the field's type that stands in for a secret reference in validation."""
    kind = prop.get("type", "string")
    kind = kind[0] if isinstance(kind, list) else kind
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(
        kind, "secret-ref"
    )


def _describe_error(error: Any) -> str:
    """``error`` is a jsonschema.ValidationError."""
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        field = f"{path}.{missing}" if path else missing
        return f"missing required config field {field!r}"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        names = ", ".join(repr(f"{path}.{name}" if path else name) for name in extra)
        return f"unknown config field {names}"
    field = path or "config"
    if error.validator == "type":
        return (
            f"config field {field!r} must be of type {error.validator_value}, "
            f"got {json.dumps(error.instance)[:60]}"
        )
    if error.validator in ("oneOf", "anyOf"):
        alternatives = [
            " and ".join(repr(name) for name in sub.get("required", []))
            for sub in error.validator_value
            if isinstance(sub, dict) and sub.get("required")
        ]
        if alternatives:
            where = f" in {field!r}" if path else ""
            return f"set exactly one of {' or '.join(alternatives)}{where}"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"config field {field!r} must be one of: {allowed}"
    return f"config field {field!r}: {error.message}"


def _with_placeholders(config: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Any:
    """The config with each secret reference (at any depth) replaced by a value of its
    field's type, so that the schema checks everything else."""
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    candidate = dict(config)
    for key, value in config.items():
        prop = properties.get(key, extra if isinstance(extra, dict) else None)
        if is_secret_ref(value):
            if prop is not None:  # else reported as unknown by the schema
                candidate[key] = _placeholder(prop)
        elif isinstance(value, dict) and set(value) & set(SECRET_REF_KEYS):
            raise ValidationError(
                f"config field {prefix + key!r}: a secret reference is {{fromEnv: VARIABLE}} "
                "or {fromFile: PATH}, with exactly one key"
            )
        elif isinstance(value, dict) and isinstance(prop, dict):
            candidate[key] = _with_placeholders(value, prop, f"{prefix}{key}.")
    return candidate


def validate_config(info: ConnectorInfo, config: dict[str, Any]) -> None:
    """Refuse a config that does not match the connector's spec, naming the field."""
    _refuse_unportable_numbers(config)
    remember_secrets(config, info.spec)
    candidate = _with_placeholders(config, info.spec)
    import jsonschema  # here: ~35 ms to import, and a sync never validates configs

    validator = jsonschema.Draft202012Validator(info.spec)
    errors = sorted(validator.iter_errors(candidate), key=lambda e: list(e.absolute_path))
    if errors:
        # A message may quote a value (a URL that does not match, a wrong type): redacted.
        problems = "; ".join(dict.fromkeys(redact(_describe_error(e)) for e in errors))
        raise ValidationError(
            f"invalid config for {info.role} type {info.type!r}: {problems}",
            hint=f"see: etlctl connectors spec {info.type}",
        )


def _refuse_unportable_numbers(value: Any, field: str = "") -> None:
    """Integers beyond 64 bits and non-finite floats cannot travel in the run file (JSON
    for the connectors) as they are: refuse them when the config is saved, not at sync."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_unportable_numbers(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_unportable_numbers(item, f"{field}[{index}]")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        # str() of a huge integer is slow, and refused past 4300 digits: say its size.
        shown = str(value) if value.bit_length() <= 128 else f"of {value.bit_length()} bits"
        raise ValidationError(
            f"config field {field!r}: integer {shown} does not fit in 64 bits",
            hint="use a smaller number, or a string if the connector takes one",
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(
            f"config field {field!r}: {value} is not a finite number",
            hint="use a finite number",
        )


def mask_config(config: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """A copy fit for output: secret values masked (a header's value, a URL's password
    too), secret references shown as they are."""
    return secrets.mask_config(config, spec)


def without_masked_secrets(config: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """A config change minus the secrets that hold the mask: a form or a client that sends
    back what it was shown means "leave this secret as it is", never "set it to stars"."""
    kept: dict[str, Any] = {}
    maps = secrets.secret_map_fields(spec)
    for key, value in config.items():
        if value == MASK and key in secret_fields(spec):
            continue
        if isinstance(value, str) and (f":{MASK}@" in value or f"//{MASK}@" in value):
            continue  # a URL shown with its password masked
        if key in maps and isinstance(value, dict):
            value = {name: item for name, item in value.items() if item != MASK}
        kept[key] = value
    return kept


# --- reading config from the command line and files --------------------------------------
def _coerce(raw: str, prop: dict[str, Any] | None, key: str) -> Any:
    """Turn KEY=VALUE text into the type the spec declares for KEY."""
    kind = (prop or {}).get("type", "string")
    kinds = kind if isinstance(kind, list) else [kind]
    if raw.startswith(("{", "[")) and {"object", "array"} & set(kinds):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"config field {key!r}: invalid JSON ({exc.msg})") from exc
    if "integer" in kinds:
        try:
            return int(raw)
        except ValueError:
            if len(kinds) == 1:
                raise ValidationError(
                    f"config field {key!r} must be an integer, got {raw!r}"
                ) from None
    if "number" in kinds:
        try:
            return float(raw)
        except ValueError:
            if len(kinds) == 1:
                raise ValidationError(
                    f"config field {key!r} must be a number, got {raw!r}"
                ) from None
    if "boolean" in kinds:
        lowered = raw.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        if len(kinds) == 1:
            raise ValidationError(f"config field {key!r} must be true or false, got {raw!r}")
    if "array" in kinds and "string" not in kinds:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if raw == "" and "null" in kinds:
        return None
    return raw


def parse_config_pairs(pairs: list[str], spec: dict[str, Any] | None) -> dict[str, Any]:
    """``["path=/data/x.csv", "pagination.type=page_number"]`` -> a config dict."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(
                f"--config expects KEY=VALUE, got {pair!r}",
                hint="for example: --config path=/data/users.csv",
            )
        parts = key.split(".")
        target = config
        schema = spec or {}
        for part in parts[:-1]:
            schema = schema.get("properties", {}).get(part, {})
            existing = target.setdefault(part, {})
            if not isinstance(existing, dict):
                raise ValidationError(f"--config {key!r}: {part!r} is not an object")
            target = existing
        prop = schema.get("properties", {}).get(parts[-1])
        target[parts[-1]] = _coerce(raw, prop, key)
    return config


def load_config_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML file holding one mapping of config fields."""
    kind = not_a_regular_file(path)
    if kind is not None and kind != "a directory":  # a FIFO would block the read
        raise ValidationError(f"cannot read config file {path}: it is {kind}")
    try:
        if path.stat().st_size > MAX_CONFIG_FILE_BYTES:
            raise ValidationError(f"config file {path} is larger than 1 MiB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"offset {exc.start})",
            hint="save it as UTF-8",
        ) from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"config file {path}: invalid JSON at line {exc.lineno}: {exc.msg}"
            ) from exc
        except ValueError as exc:  # an integer of more than 4300 digits
            raise ValidationError(f"config file {path}: invalid JSON: {exc}") from None
    else:
        from etlctl import yamlio  # here: PyYAML costs start-up time every command would pay

        data = yamlio.load_one(text, str(path))
    if not isinstance(data, dict):
        raise ValidationError(f"config file {path} must hold a mapping of config fields")
    try:
        return json.loads(json.dumps(data, default=_json_scalar))  # plain JSON types only
    except TypeError as exc:
        raise ValidationError(f"config file {path}: {exc}") from None


def _json_scalar(value: Any) -> Any:
    """YAML values JSON has no type for: dates become ISO text (what the user wrote)."""
    if isinstance(value, datetime.date):  # datetime.datetime included
        return value.isoformat()
    raise TypeError(f"a value of type {type(value).__name__} is not allowed in a config")


def _absolute(value: str, base_dir: Path) -> str:
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(base_dir / expanded)


def absolute_paths(
    kind: str, connector_type: str, config: dict[str, Any], base_dir: Path
) -> dict[str, Any]:
    """Make the config's file path fields and ``fromFile`` references absolute.

    The store must hold absolute paths: syncs run from cron and CI in other directories.
    Relative paths resolve against ``base_dir``: the current directory on the command line,
    the manifest's directory in manifests (as people reading them expect).
    """
    info = find_connector(ROLE_OF_KIND[kind], connector_type)
    paths = path_fields(info.spec) if info else {}
    resolved = dict(config)
    for key, value in config.items():
        if key in paths and isinstance(value, str) and value:
            resolved[key] = _absolute(value, base_dir)
        elif is_secret_ref(value) and "fromFile" in value:
            resolved[key] = {"fromFile": _absolute(value["fromFile"], base_dir)}
    return resolved


def merge_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested merge; a value of None in overrides removes the key (``--unset``)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif (
            isinstance(value, dict)
            and isinstance(merged.get(key), dict)
            and not is_secret_ref(value)
        ):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged
