"""A single-node Docker swarm for the swarm runtime's tests, on the engine other sessions
share: joined only when the engine is in no swarm, left only by the last test process that
needed it, and only when a test process created it (a swarm the user made stays).

Several pytest processes may need the swarm at once: a state file under a lock counts them
(by pid, so a killed process does not keep the swarm forever).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from etlctl.leftovers import process_alive

STATE_FILE = Path("/tmp/etlctl-test-swarm.json")
LOCK_FILE = Path("/tmp/etlctl-test-swarm.lock")


def swarm_state() -> str:
    return subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@contextlib.contextmanager
def _locked_state() -> Iterator[dict]:
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
        except ValueError:
            state = {}
        state.setdefault("created", False)
        state["users"] = [pid for pid in state.get("users", []) if process_alive(pid)]
        yield state
        STATE_FILE.write_text(json.dumps(state))


def _network_exists(name: str) -> bool:
    return (
        subprocess.run(["docker", "network", "inspect", name], capture_output=True).returncode == 0
    )


def join_test_swarm() -> None:
    with _locked_state() as state:
        if swarm_state() != "active":
            state["gwbridge_existed"] = _network_exists("docker_gwbridge")
            subprocess.run(
                ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            state["created"] = True
        state["users"].append(os.getpid())


def leave_test_swarm() -> None:
    with _locked_state() as state:
        state["users"] = [pid for pid in state["users"] if pid != os.getpid()]
        if state["users"] or not state["created"]:
            return
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, check=True)
        state["created"] = False
        if not state.get("gwbridge_existed", True):
            # Made by `swarm init`; removing fails harmlessly while something uses it.
            subprocess.run(["docker", "network", "rm", "docker_gwbridge"], capture_output=True)


def swarm_objects(kind: str, label: str) -> list[str]:
    """Ids of the services or secrets (``kind``) carrying ``label`` (key=value)."""
    out = subprocess.run(
        ["docker", kind, "ls", "-q", "--filter", f"label={label}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def containers(label: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label={label}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()
