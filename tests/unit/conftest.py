"""Fixtures the unit tests share.

Unit tests never touch the real crontab: commands that change schedules would otherwise
install entries for throwaway stores in the crontab of whoever runs the tests.

tests/unit/test_scheduler.py replaces the crontab with an in-memory text where it needs one;
tests/integration/test_crontab.py uses the real `crontab` for a throwaway user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from etlctl.cli.main import app


@pytest.fixture(autouse=True)
def _no_crontab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETLCTL_NO_CRONTAB", "1")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "store.json"


@pytest.fixture
def cli(store_path: Path):
    """etlctl through typer's CliRunner against a throwaway store; asserts the exit code and
    that no traceback leaks (unless the test asked for one with --debug)."""
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, store: Path | None = None, stdin: str | None = None):
        result = runner.invoke(app, ["--store", str(store or store_path), *args], input=stdin)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        if "--debug" not in args:
            assert "Traceback" not in result.stdout + result.stderr
        return result

    return invoke
