"""Every built-in connector keeps the protocol's promises about its spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from connectors import image_tag
from connectors.registry import all_connectors, get_connector, path_fields
from connectors.secrets import secret_fields

CONNECTORS = all_connectors()
IDS = [f"{info.role}-{info.type}" for info in CONNECTORS]
SECRET_WORDS = ("password", "token", "secret", "api_key")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("info", CONNECTORS, ids=IDS)
def test_spec_is_valid_json_schema(info):
    jsonschema.Draft202012Validator.check_schema(info.spec)
    assert info.spec["type"] == "object"
    assert info.spec["additionalProperties"] is False
    assert set(info.spec["required"]) <= set(info.spec["properties"])
    for name, prop in info.spec["properties"].items():
        assert prop.get("description"), f"{name} has no description"


@pytest.mark.parametrize("info", CONNECTORS, ids=IDS)
def test_secret_looking_fields_are_marked(info):
    for name in info.spec["properties"]:
        if any(word in name for word in SECRET_WORDS):
            assert name in secret_fields(info.spec), f"{name} should be secret"


@pytest.mark.parametrize("info", CONNECTORS, ids=IDS)
def test_path_fields_match_the_role(info):
    expected = "read" if info.role == "extractor" else "write"
    assert set(path_fields(info.spec).values()) <= {expected}


@pytest.mark.parametrize("info", CONNECTORS, ids=IDS)
def test_identity(info):
    assert info.image == f"etlctl/{info.role}-{info.type}:{image_tag()}"
    assert set(info.modes) <= {"full_refresh", "incremental", "dedup"}
    assert get_connector(info.role, info.type) is info


@pytest.mark.parametrize("info", CONNECTORS, ids=IDS)
def test_spec_command_prints_the_registry_spec(info):
    result = subprocess.run(
        [sys.executable, "-m", "connectors", info.role, info.type, "spec"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )
    assert json.loads(result.stdout) == info.spec


def test_unknown_connector_and_usage_exit_2():
    for args in (["loader", "nope", "spec"], ["loader", "sqlite"], ["loader", "sqlite", "x"]):
        result = subprocess.run([sys.executable, "-m", "connectors", *args],
                                capture_output=True, text=True, cwd=REPO, timeout=60)
        assert result.returncode == 2


def test_registry_import_is_light():
    code = (
        "import sys, connectors.registry as r; r.all_connectors();"
        "print([m for m in ('pika', 'orjson', 'psycopg') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_get_connector_raises_key_error():
    with pytest.raises(KeyError):
        get_connector("extractor", "nope")
