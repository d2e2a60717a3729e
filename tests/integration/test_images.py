"""The connector images: built from dockerfiles/ with a host wheelhouse, runnable by anyone."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors import __version__, image_tag
from connectors.registry import all_connectors
from etlctl.cli.images import app as images_app
from etlctl.runtime import images

pytestmark = pytest.mark.integration

DOCKERFILES = Path(__file__).resolve().parents[2] / "dockerfiles"


def docker_json(*args: str) -> object:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_every_built_in_connector_has_a_dockerfile_with_the_current_version():
    # Not a service test, but it guards the same thing: etlctl runs what the build makes.
    for info in all_connectors():
        text = (DOCKERFILES / images.connector_dockerfile(info)).read_text()
        assert f"ARG RUNTIME_IMAGE=etlctl/connector-runtime:{__version__}" in text
        assert f'"connectors", "{info.role}", "{info.type}"]' in text
        assert f'io.etlctl.role="{info.role}"' in text and f'io.etlctl.type="{info.type}"' in text
    assert "ARG BASE_IMAGE=python:3.11-slim" in (DOCKERFILES / "runtime.Dockerfile").read_text()


def test_all_images_are_built_and_labelled(connector_images):
    expected = [images.runtime_image()] + [info.image for info in all_connectors()]
    assert sorted(connector_images) == sorted(expected)
    for info in all_connectors():
        [inspected] = docker_json("image", "inspect", info.image)
        labels = inspected["Config"]["Labels"]
        assert labels["io.etlctl.protocol"] == "2"
        assert labels["io.etlctl.role"] == info.role
        assert labels["io.etlctl.type"] == info.type
        assert labels["org.opencontainers.image.version"] == __version__


def test_spec_prints_the_json_schema_as_an_unknown_uid(connector_images):
    # Containers run with the host user's uid, which has no account inside the image.
    result = subprocess.run(
        ["docker", "run", "--rm", "--user", "54321:54321", "--read-only", "--network", "none",
         f"etlctl/extractor-csv:{image_tag()}", "spec"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert spec["properties"]["path"]["x-path"] == "read"


def test_the_image_libraries_import_without_network(connector_images):
    code = "import orjson, pika, psycopg, jsonschema; print(psycopg.pq.__impl__)"
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3",
         images.runtime_image(), "-c", code],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "binary"


def test_a_second_build_is_cached_and_quick(connector_images, base_image):
    started = time.monotonic()
    lines: list[str] = []
    images.build_images(["csv"], base_image, lines.append)
    assert time.monotonic() - started < 30
    assert any("using the cached" in line for line in lines)
    assert not any("Running in" in line for line in lines), "every step should come from cache"


def test_images_list_shows_present_images(connector_images):
    result = CliRunner().invoke(images_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["image"]: row for row in json.loads(result.stdout)}
    assert rows[f"etlctl/loader-sqlite:{image_tag()}"]["present"] is True
    assert rows[images.runtime_image()]["size"] > 0


def test_an_unknown_type_is_a_usage_error():
    from etlctl.errors import ValidationError

    with pytest.raises(ValidationError, match=re.escape("unknown connector type: nope")):
        images.select_connectors(["nope"])
    assert {i.role for i in images.select_connectors(["csv"])} == {"extractor", "loader"}
    assert [i.role for i in images.select_connectors(["loader-csv"])] == ["loader"]


def test_a_missing_base_image_is_a_clear_error_before_any_build(connector_images):
    """The builder never pulls: a base image that is not on the engine is refused with exit 6
    before the build starts (Docker would otherwise ask a registry for it), nothing rebuilt."""
    from etlctl.cli.main import app

    before = docker_json("image", "inspect", images.runtime_image())[0]["Id"]
    missing = "etlctl-test/no-such-base:0"
    result = CliRunner().invoke(app, ["images", "build", "--base-image", missing, "csv"])
    assert result.exit_code == 6, result.output
    assert result.stderr.splitlines()[0] == (
        f"error: base image {missing} is not on this Docker engine, and etlctl never pulls"
    )
    assert "Traceback" not in result.output and "pull access" not in result.output
    assert docker_json("image", "inspect", images.runtime_image())[0]["Id"] == before
