from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_harness import Queues, Sync, broker_available, new_queues


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    if broker_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672 (run scripts/ensure-services.sh)")
    pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")


@pytest.fixture
def queues(rabbitmq: None) -> Iterator[Queues]:
    made = new_queues()
    yield made
    made.delete()


@pytest.fixture
def make_sync(tmp_path: Path, queues: Queues):
    def make(source_type: str, source_config: dict, loader_type: str, loader_config: dict,
             **options) -> Sync:
        return Sync(tmp_path, queues, source_type, source_config, loader_type, loader_config,
                    **options)

    return make
