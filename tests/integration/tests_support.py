"""Helpers the integration tests share: what a sync leaves behind, and test data."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest


def ci_requested(value: str | None) -> bool:
    """CI systems spell "on" many ways (GitHub and GitLab: ``true``; others ``1``, ``True``,
    ``yes``); a missing service must never hide behind a spelling."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


IN_CI = ci_requested(os.environ.get("CI"))


def missing_service(what: str, fix: str = "bash scripts/ensure-services.sh") -> None:
    """Fail in CI (it must never go green having tested nothing), skip elsewhere; the
    message names what fixes it."""
    message = f"{what} is not available (run: {fix})"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def leftover_containers(connection: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=io.etlctl.connection={connection}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def leftover_queues(connection: str, store_id: str | None = None) -> list[str]:
    """Queues of the connection; of one store only when ``store_id`` is given (other test
    sessions on this broker use the same connection names)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=True
    ).stdout
    prefix = f"etlctl.{connection}." + (f"{store_id}." if store_id else "")
    return [line for line in out.split() if line.startswith(prefix)]


def write_users_csv(path: Path, rows: int, start: int = 1) -> None:
    """id, updated_at, name, amount, active, note (every fifth note empty, i.e. NULL)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "updated_at", "name", "amount", "active", "note"])
        for i in range(start, start + rows):
            writer.writerow(
                [
                    i,
                    f"2024-05-01T{i % 24:02d}:00:00",
                    f"user {i}",
                    f"{i * 1.5:.2f}",
                    "true" if i % 2 else "false",
                    "" if i % 5 == 0 else f"n{i}",
                ]
            )
