"""Every catchable signal whose default action ends the process cancels a sync the way
Ctrl-C does (cleanup runs), instead of killing etlctl with its containers left behind."""

from __future__ import annotations

import os
import signal

import pytest

from etlctl import orchestrator

# signal(7): the signals whose default action is Term or Core.
TERMINATING = {
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGABRT", "SIGFPE", "SIGSEGV", "SIGPIPE",
    "SIGALRM", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGBUS", "SIGPOLL", "SIGPROF", "SIGSYS",
    "SIGTRAP", "SIGVTALRM", "SIGXCPU", "SIGXFSZ", "SIGSTKFLT", "SIGPWR",
}
# Not for a handler to turn into a cancel: faults of the process itself (it cannot go on),
# SIGINT (KeyboardInterrupt already), SIGPIPE (Python ignores it), SIGKILL/SIGSTOP (cannot
# be caught), and signals nobody sends to a CLI (SIGPOLL, SIGSTKFLT, SIGPWR).
EXEMPT = {"SIGILL", "SIGABRT", "SIGFPE", "SIGSEGV", "SIGBUS", "SIGSYS", "SIGTRAP", "SIGINT",
          "SIGPIPE", "SIGPOLL", "SIGSTKFLT", "SIGPWR"}


def test_every_terminating_signal_cancels():
    handled = {signal.Signals(signum).name for signum in orchestrator.CANCELLING_SIGNALS}
    assert handled == TERMINATING - EXEMPT


@pytest.mark.parametrize("signum", orchestrator.CANCELLING_SIGNALS, ids=lambda s: s.name)
def test_a_cancelling_signal_raises_in_the_sync_and_the_old_handler_comes_back(signum):
    before = signal.getsignal(signum)
    restore = orchestrator._install_signal_handlers()
    try:
        with pytest.raises(orchestrator._Terminated) as raised:
            os.kill(os.getpid(), signum)  # handled before os.kill returns (main thread)
        assert raised.value.signal_name == signum.name
    finally:
        restore()
    assert signal.getsignal(signum) == before
