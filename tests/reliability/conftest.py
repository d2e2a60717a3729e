"""Fixtures of the fault-injection suite (docs/reliability.md): real etlctl processes, real
Docker containers, a real RabbitMQ, real targets. Never mocks.

Service policy as in tests/integration: a missing service fails the run under ``CI=true`` and
skips elsewhere. The integration conftest's fixtures (``services``, ``postgres_url``, ...) are
reused from there, not copied.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
# tests_support (leftover_containers, leftover_queues, write_users_csv) and this suite's own
# helpers are imported by module name, as the integration tests do.
for directory in (INTEGRATION, HERE):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


def _load_integration_conftest():
    spec = importlib.util.spec_from_file_location(
        "etlctl_integration_conftest", INTEGRATION / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_conftest()
# Re-exported fixtures: pytest finds them as attributes of this conftest.
docker_engine = _integration.docker_engine
rabbitmq = _integration.rabbitmq
postgres_url = _integration.postgres_url
base_image = _integration.base_image
connector_images = _integration.connector_images
services = _integration.services
missing_service = _integration.missing_service


@pytest.fixture
def etl(tmp_path: Path, services: None):
    """An etlctl CLI over a throwaway store; see reliability_support.Etl."""
    from reliability_support import Etl

    etl = Etl(tmp_path)
    yield etl
    etl.close()

