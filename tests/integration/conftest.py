"""Shared test policy and fixtures of the integration tests: real services, never mocks.

A missing service fails the run in CI (``CI=true``: CI must never go green having tested
nothing) and skips the tests that need it elsewhere; scripts/ensure-services.sh provides them.

Fixtures: ``docker_engine``, ``rabbitmq``, ``postgres_url``, ``base_image``,
``connector_images`` (the built-in images, built or refreshed once per session), and
``services`` (Docker + RabbitMQ + images: what a sync needs).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests_support import missing_service

REPO = Path(__file__).resolve().parents[2]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
LOCAL_BASE_IMAGE = "etlctl/base-python:3.11-bookworm"
PUBLIC_BASE_IMAGE = "python:3.11-slim"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_docker() -> None:
    if not docker_answers():
        missing_service("the Docker engine")


def require_rabbitmq() -> None:
    if not port_open(5672):
        missing_service("RabbitMQ on 127.0.0.1:5672")


def require_postgres() -> None:
    if not port_open(5432):
        missing_service("PostgreSQL on 127.0.0.1:5432")


def image_present(image: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    return probe.returncode == 0


def base_image_for_build() -> str:
    """$ETLCTL_BASE_IMAGE, else python:3.11-slim when present, else the debootstrap image
    (built by scripts/build-base-image.sh when needed: these machines have no registry)."""
    explicit = os.environ.get("ETLCTL_BASE_IMAGE")
    if explicit:
        return explicit
    if image_present(PUBLIC_BASE_IMAGE):
        return PUBLIC_BASE_IMAGE
    if not image_present(LOCAL_BASE_IMAGE):
        built = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-base-image.sh"), LOCAL_BASE_IMAGE],
            capture_output=True,
            text=True,
        )
        if built.returncode != 0:
            missing_service(f"a base image ({built.stderr.strip()[-300:]})")
    return LOCAL_BASE_IMAGE


@pytest.fixture(scope="session")
def docker_engine() -> None:
    require_docker()


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    require_rabbitmq()
    return AMQP_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_postgres()
    return POSTGRES_URL


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    """The base image the connector images are built on here."""
    return base_image_for_build()


@pytest.fixture(scope="session")
def connector_images(base_image: str) -> list[str]:
    """Build (or refresh) every built-in image once per session.

    Always built rather than reused when present, so tests never run stale connector code;
    Docker's layer cache makes an unchanged build take about a second.
    """
    from etlctl.runtime.images import build_images

    lines: list[str] = []
    try:
        return build_images(None, base_image, lines.append)
    except Exception as exc:  # show the build's tail: it says why
        tail = "\n".join(lines[-30:])
        pytest.fail(f"building the connector images failed: {exc}\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def services(docker_engine: None, rabbitmq: str, connector_images: list[str]) -> None:
    """Docker engine, RabbitMQ and up-to-date connector images, as a real sync needs them."""
