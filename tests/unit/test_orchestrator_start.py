"""Starting the connectors: together, and every started one known to the cleanup even when
the other fails to start. A fake runtime: this is the orchestration logic alone (the real
starts are in tests/integration)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from etlctl.errors import EtlctlError
from etlctl.orchestrator import _start_connectors


class FakeRuntime:
    def __init__(self, failing_role: str | None = None) -> None:
        self.failing_role = failing_role
        # Each start waits for the other: started one after the other, they would time out.
        self.both_starting = threading.Barrier(2, timeout=5)

    def start(self, launch: Any) -> str:
        self.both_starting.wait()
        if launch.role == self.failing_role:
            raise EtlctlError(f"Docker could not start the {launch.role}")
        return f"handle of the {launch.role}"


def _session(runtime: FakeRuntime) -> SimpleNamespace:
    return SimpleNamespace(runtime=runtime, handles={}, exit_codes={})


LAUNCHES = [SimpleNamespace(role="loader"), SimpleNamespace(role="extractor")]


def test_both_connectors_start_at_once() -> None:
    session = _session(FakeRuntime())
    _start_connectors(session, LAUNCHES)
    assert session.handles == {
        "loader": "handle of the loader",
        "extractor": "handle of the extractor",
    }
    assert session.exit_codes == {"loader": None, "extractor": None}


def test_a_failed_start_is_raised_and_the_started_container_is_known() -> None:
    session = _session(FakeRuntime(failing_role="extractor"))
    with pytest.raises(EtlctlError, match="could not start the extractor"):
        _start_connectors(session, LAUNCHES)
    # The cleanup removes what is in handles: the loader that did start must be there.
    assert session.handles == {"loader": "handle of the loader"}
