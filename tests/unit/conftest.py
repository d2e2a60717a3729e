"""Unit tests never touch the real crontab: commands that change schedules would otherwise
install entries for throwaway stores in the crontab of whoever runs the tests.

tests/unit/test_scheduler.py replaces the crontab with an in-memory text where it needs one;
tests/integration/test_crontab.py uses the real `crontab` for a throwaway user.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_crontab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETLCTL_NO_CRONTAB", "1")
