"""Secrets stay out of every text etlctl prints or writes: a property over every connector's
spec (its `secret: true` fields, secret header maps and URL fields, derived from the specs so
that a new connector is covered without a change here) and over the secret values themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import secrets
from connectors.registry import all_connectors
from etlctl import catalog, manifest, registry
from etlctl.store import Store

CONNECTORS = all_connectors()
# Long enough to be redacted, and marked so that a hit is never a coincidence.
secret_text = st.text(min_size=4, max_size=24).map(lambda text: f"S3CR{text}")


def url_fields(spec: dict[str, Any]) -> set[str]:
    return {
        name for name, prop in spec["properties"].items()
        if prop.get("format") == "uri" and not prop.get("secret")
    }


def planted(info: Any, secret: str) -> dict[str, Any]:
    """A config of the connector with the secret in every secret-bearing place."""
    config: dict[str, Any] = {}
    for name in secrets.secret_fields(info.spec):
        config[name] = secret
    for name in secrets.secret_map_fields(info.spec):
        config[name] = {"X-Api-Key": secret, "Authorization": f"Bearer {secret}"}
    for name in url_fields(info.spec):
        config[name] = f"https://user:{quote(secret, safe='')}@api.example.com/x"
    return config


def test_every_connector_with_a_secret_is_covered():
    """The specs say where secrets are; this suite plants one wherever they say."""
    covered = [info for info in CONNECTORS if planted(info, "S3CRx")]
    assert {(info.role, info.type) for info in covered} >= {
        ("extractor", "http"), ("extractor", "postgres"), ("loader", "postgres"),
        ("loader", "amqp"),
    }


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secret_text)
def test_masked_configs_and_redacted_text_hold_no_secret(secret):
    for info in CONNECTORS:
        config = planted(info, secret)
        if not config:
            continue
        shown = json.dumps(catalog.mask_config(config, info.spec), ensure_ascii=False)
        assert secret not in shown and quote(secret, safe="") not in shown, (info.type, shown)
        hidden = secrets.secret_values(config, info.spec)
        text = f"failed: {json.dumps(config, ensure_ascii=False)} / {secret}"
        assert secret not in secrets.redact(text, hidden), info.type


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(secret=secret_text)
def test_exports_hold_references_never_secrets_and_apply_back_unchanged(tmp_path: Path, secret):
    store = Store(tmp_path / f"{abs(hash(secret))}.json")
    for info in CONNECTORS:
        config = planted(info, secret)
        if not config:
            continue
        required = {name: _filler(info.spec["properties"][name]) for name in info.spec["required"]
                    if name not in config}
        extra = {"table": "t"} if "oneOf" in info.spec else {}
        kind = "source" if info.role == "extractor" else "loader"
        registry.add_connector_object(store, kind, f"{info.type}-x", info.type,
                                      {**required, **extra, **config})
    documents, warnings = manifest.export_documents(store.read())
    text = manifest.export_text(documents) + "\n".join(warnings)
    assert secret not in text and quote(secret, safe="") not in text
    exported = store.path.with_suffix(".yaml")
    exported.write_text(manifest.export_text(documents))
    configs = {item.name: item.config for item in store.read().list("source")}
    plan = manifest.apply(store, manifest.load([str(exported)]))
    assert not plan.changed, plan.to_json()  # the stored secrets are kept, not replaced
    assert {item.name: item.config for item in store.read().list("source")} == configs


def _filler(prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if kind == "integer":
        return 1
    if "x-path" in prop:
        return "/tmp/x"
    if prop.get("pattern", "").startswith("^[Hh]"):
        return "https://api.example.com/"
    return "x"


def test_a_header_value_may_be_a_reference_resolved_at_sync_time(monkeypatch):
    monkeypatch.setenv("API_KEY_FOR_TEST", "S3CRfromenv")
    info = next(i for i in CONNECTORS if (i.role, i.type) == ("extractor", "http"))
    config = {"url": "https://api.example.com/",
              "headers": {"X-Api-Key": {"fromEnv": "API_KEY_FOR_TEST"}}}
    catalog.validate_config(info, config)
    assert catalog.resolve_secret_refs(config)["headers"] == {"X-Api-Key": "S3CRfromenv"}
    assert catalog.mask_config(config, info.spec) == config  # a reference is not a secret


def test_urls_are_redacted_whatever_their_password_holds():
    # (A space ends a URL in free text: a password with one is redacted as a known value.)
    for password in ("p/w", "p?w", "p#w", "p@w", "p:w", "p%20w"):
        text = f"error: amqp://user:SECRET{password}@host:5672/ failed"
        assert "SECRET" not in secrets.redact(text), password


@given(password=st.text(alphabet="abcXYZ019/?#@:%", min_size=1, max_size=12))
def test_an_invalid_amqp_url_never_repeats_its_password(password):
    from etlctl.broker import check_amqp_url, redact_url
    from etlctl.errors import ValidationError

    url = f"amqp://user:S3CR{password}@127.0.0.1:5672/%2F"
    try:
        check_amqp_url(url)
    except ValidationError as exc:
        assert "S3CR" not in exc.message + (exc.hint or ""), exc.message
    assert "S3CR" not in redact_url(url)
