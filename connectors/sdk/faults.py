"""Fault injection for tests only (docs/reliability.md, "The fault-injection hook").

``ETLCTL_TEST_FAULT=POINT`` or ``POINT:N`` makes a connector fail at the N-th time (default
the first) it passes POINT, one point per window of the delivery order, so that a test can
prove what each window may and may not leave behind:

=====================  ========  ==============================================================
point                  role      what happens there
=====================  ========  ==============================================================
``before_commit``      loader    exits like SIGKILL (137) with rows written but not committed
``before_finish``      loader    the same at END, before the last commit (and full_refresh swap)
``after_commit``       loader    exits 137 after a commit, before reporting or acknowledging it
``after_report``       loader    exits 137 after reporting ``checkpoint_committed``, before the ack
``exit_without_done``  loader    exits 0 at END after committing, without sending ``done``
``end_count``          extractor END announces one record more than it sent
=====================  ========  ==============================================================

The older ``ETLCTL_TEST_CRASH_AFTER_COMMIT=N`` means ``after_commit:N``.

It is read from the connector's environment, which the docker runtime never passes on (a
container gets ``ETLCTL_RUN_FILE`` only): it can act only in the local runtime or a test
harness, and is off unless set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

FAULT_ENV = "ETLCTL_TEST_FAULT"
CRASH_AFTER_COMMIT_ENV = "ETLCTL_TEST_CRASH_AFTER_COMMIT"
CRASH_EXIT_CODE = 137  # what a SIGKILLed container reports
POINTS = frozenset(
    {"before_commit", "before_finish", "after_commit", "after_report", "exit_without_done",
     "end_count"}
)

log = logging.getLogger("connectors.faults")


class Faults:
    """The one fault point armed in this process (if any), and how often it was passed."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.point: str | None = None
        self.at = 1
        self.passed = 0
        value = environ.get(FAULT_ENV, "")
        legacy = environ.get(CRASH_AFTER_COMMIT_ENV, "")
        if not value and legacy.isdigit() and int(legacy) > 0:
            value = f"after_commit:{legacy}"
        point, _, count = value.partition(":")
        if point in POINTS and (not count or (count.isdigit() and int(count) > 0)):
            self.point, self.at = point, int(count or 1)

    def reached(self, point: str) -> bool:
        """True (once) when ``point`` is the armed one and this is its N-th pass."""
        if point != self.point:
            return False
        self.passed += 1
        return self.passed == self.at

    def crash(self, point: str) -> None:
        """End the process like SIGKILL at ``point`` when armed: no cleanup, no ack, no event."""
        if self.reached(point):
            self.exit(point, CRASH_EXIT_CODE)

    def exit(self, point: str, code: int) -> None:
        log.error("fault injection: %s (pass %d), exiting with code %d", point, self.passed, code)
        logging.shutdown()
        os._exit(code)
