"""Spec-driven forms of the web pages: a connector's JSON Schema as form fields, and a posted
form back into a config through the CLI's own parser (``catalog.parse_config_pairs``), so a
form and ``--config KEY=VALUE`` accept exactly the same values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etlctl import catalog

FIELD_PREFIX = "config."
PRESENT_PREFIX = "present."


@dataclass(frozen=True)
class FormField:
    name: str
    input: str  # text, password, number, checkbox, select, textarea
    label: str
    description: str
    required: bool
    value: str
    options: tuple[str, ...] = ()
    secret_set: bool = False  # a secret is stored: leaving the field empty keeps it


def _kinds(prop: dict[str, Any]) -> list[str]:
    kind = prop.get("type", "string")
    return kind if isinstance(kind, list) else [kind]


def _shown(value: Any, kinds: list[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    plain_list = isinstance(value, list) and "array" in kinds and "string" not in kinds
    if plain_list and all(isinstance(item, str | int | float) for item in value):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def fields_for(spec: dict[str, Any] | None, config: dict[str, Any]) -> list[FormField]:
    """One field per property of the spec; secrets never get their value into the page."""
    if not spec:
        return []
    required = set(spec.get("required", []))
    fields = []
    for name, prop in spec.get("properties", {}).items():
        if not isinstance(prop, dict):
            continue
        kinds = _kinds(prop)
        current = config.get(name, prop.get("default"))
        if prop.get("secret"):
            reference = current if catalog.is_secret_ref(current) else None
            fields.append(
                FormField(
                    name=name,
                    input="password",
                    label=name,
                    description=prop.get("description", "")
                    + (f" (now a reference: {json.dumps(reference)})" if reference else ""),
                    required=name in required and name not in config,
                    value="",
                    secret_set=name in config,
                )
            )
            continue
        if "enum" in prop:
            kind, options = "select", tuple(str(option) for option in prop["enum"])
        elif kinds == ["boolean"]:
            kind, options = "checkbox", ()
        elif {"object"} & set(kinds) or (
            "array" in kinds and "items" in prop and prop["items"].get("type") == "object"
        ):
            kind, options = "textarea", ()
        elif set(kinds) <= {"integer", "number", "null"}:
            kind, options = "number", ()
        else:
            kind, options = "text", ()
        fields.append(
            FormField(
                name=name,
                input=kind,
                label=name,
                description=prop.get("description", ""),
                required=name in required,
                value=_shown(current, kinds),
                options=options,
            )
        )
    return fields


def config_from_form(
    kind: str,
    connector_type: str,
    form: dict[str, str],
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The posted fields as a config: typed by the spec as the CLI types --config values;
    empty fields are left out, and an empty secret field keeps the stored secret."""
    info = catalog.connector(catalog.ROLE_OF_KIND[kind], connector_type)
    properties = info.spec.get("properties", {})
    pairs = []
    for name, prop in properties.items():
        raw = form.get(FIELD_PREFIX + name)
        if _kinds(prop) == ["boolean"] and (raw is not None or PRESENT_PREFIX + name in form):
            # An unticked box posts nothing: the marker says the box was on the form.
            raw = "true" if raw in ("on", "true") else "false"
        if raw is None or raw.strip() == "":
            continue
        pairs.append(f"{name}={raw.strip()}")
    config = catalog.parse_config_pairs(pairs, info.spec)
    config = catalog.absolute_paths(kind, connector_type, config, Path.cwd())
    for name in catalog.secret_fields(info.spec):
        if name not in config and current and name in current:
            config[name] = current[name]
    return config
