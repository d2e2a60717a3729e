"""The catalog of connector types: specs, config validation, secrets, config parsing.

The specs live with the connectors (``connectors.registry``), shipped in the same
distribution, so etlctl reads them without Docker. Config values may be secret references
(``{"fromEnv": "VAR"}`` or ``{"fromFile": "/path"}``) that are resolved only when a sync runs.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from connectors.registry import ConnectorInfo, all_connectors, get_connector, path_fields
from etlctl.errors import ValidationError, close_match
from etlctl.models import ROLE_OF_KIND

MASK = "********"
SECRET_REF_KEYS = ("fromEnv", "fromFile")
MAX_CONFIG_FILE_BYTES = 1024 * 1024



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
    if not spec:
        return set()
    return {
        name
        for name, prop in spec.get("properties", {}).items()
        if isinstance(prop, dict) and prop.get("secret")
    }


# --- secret references --------------------------------------------------------------------
def is_secret_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in SECRET_REF_KEYS
        and isinstance(next(iter(value.values())), str)
    )


def resolve_secret_refs(config: dict[str, Any]) -> dict[str, Any]:
    """Replace references by their values; only called when a sync or check runs."""
    resolved: dict[str, Any] = {}
    for key, value in config.items():
        if not is_secret_ref(value):
            resolved[key] = value
        elif "fromEnv" in value:
            variable = value["fromEnv"]
            if variable not in os.environ:
                raise ValidationError(
                    f"config field {key!r} reads the environment variable {variable}, "
                    "which is not set",
                    hint=f"export {variable}=... before the sync",
                )
            resolved[key] = os.environ[variable]
        else:
            path = Path(value["fromFile"]).expanduser()
            try:
                resolved[key] = path.read_text().rstrip("\n")
            except OSError as exc:
                raise ValidationError(
                    f"config field {key!r} reads the file {path}: {exc.strerror}"
                ) from exc
    return resolved


def unresolved_env_refs(config: dict[str, Any]) -> list[str]:
    return [
        value["fromEnv"]
        for value in config.values()
        if is_secret_ref(value) and "fromEnv" in value and value["fromEnv"] not in os.environ
    ]


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


def validate_config(info: ConnectorInfo, config: dict[str, Any]) -> None:
    """Refuse a config that does not match the connector's spec, naming the field."""
    properties = info.spec.get("properties", {})
    candidate = copy.deepcopy(config)
    for key, value in config.items():
        if is_secret_ref(value):
            if key not in properties:
                continue  # reported as unknown by the schema below
            candidate[key] = _placeholder(properties[key])
        elif isinstance(value, dict) and set(value) & set(SECRET_REF_KEYS):
            raise ValidationError(
                f"config field {key!r}: a secret reference is {{fromEnv: VARIABLE}} or "
                "{fromFile: PATH}, with exactly one key"
            )
    import jsonschema  # here: ~35 ms to import, and a sync never validates configs

    validator = jsonschema.Draft202012Validator(info.spec)
    errors = sorted(validator.iter_errors(candidate), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(dict.fromkeys(_describe_error(e) for e in errors))
        raise ValidationError(
            f"invalid config for {info.role} type {info.type!r}: {problems}",
            hint=f"see: etlctl connectors spec {info.type}",
        )


def mask_config(config: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """A copy fit for output: secret values masked, secret references shown as they are."""
    secrets = secret_fields(spec)
    return {
        key: (MASK if key in secrets and not is_secret_ref(value) and value else value)
        for key, value in config.items()
    }


def without_masked_secrets(config: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
    """A config change minus secret fields that hold the mask: a form or a client that sends
    back what it was shown means "leave this secret as it is", never "set it to stars"."""
    secrets = secret_fields(spec)
    return {key: value for key, value in config.items() if not (key in secrets and value == MASK)}


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
    try:
        if path.stat().st_size > MAX_CONFIG_FILE_BYTES:
            raise ValidationError(f"config file {path} is larger than 1 MiB")
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read config file {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"config file {path}: invalid JSON at line {exc.lineno}: {exc.msg}"
            ) from exc
    else:
        from etlctl import yamlio  # here: PyYAML costs start-up time every command would pay

        data = yamlio.load_one(text, str(path))
    if not isinstance(data, dict):
        raise ValidationError(f"config file {path} must hold a mapping of config fields")
    return json.loads(json.dumps(data))  # plain dicts, JSON types only


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
