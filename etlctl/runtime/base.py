"""The runtime interface: how the orchestrator starts, watches and removes connectors.

A runtime runs one connector (docs/connector-protocol.md) from a :class:`ConnectorLaunch`
and hands back an opaque handle. Two implementations share this interface:

* ``docker`` (:mod:`etlctl.runtime.docker`, the default): one container per connector, run
  as the host user's uid:gid, unprivileged, the run file bind-mounted read-only at
  ``/etlctl/run.json``, ``ETLCTL_RUN_FILE`` the only environment variable.
* ``local`` (:mod:`etlctl.runtime.local`): ``python -m connectors ROLE TYPE COMMAND`` as a
  subprocess in its own process group, for machines without Docker.

Lifecycle the orchestrator follows::

    runtime.preflight()                     # ServiceUnavailableError: engine unreachable
    runtime.ensure_image(image)             # ImageMissingError: image not built (docker)
    runtime.remove_leftovers(labels)        # what a killed etlctl left behind
    runtime.collect_leftovers(labels)       # the same, keeping each one's logs
    runtime.labelled(labels)                # the labels of what exists now (gc)
    handle = runtime.start(launch)
    while runtime.exit_code(handle) is None: ...
    runtime.stop(handle)                    # on timeout / Ctrl-C: SIGTERM, then SIGKILL
    text = runtime.logs(handle)             # stdout and stderr, in order
    runtime.remove(handle)                  # always, idempotent

``run_once`` covers the short commands (``spec``, ``check``): start, wait, collect stdout and
stderr separately, remove.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Inside a container the run file is always here (docs/connector-protocol.md, section 2).
CONTAINER_RUN_FILE = "/etlctl/run.json"
RUN_FILE_ENV = "ETLCTL_RUN_FILE"

# What exit_code() reports for a connector that vanished without an exit status (its
# container was removed behind our back, or its process could not be waited for).
VANISHED_EXIT_CODE = 255


@dataclass(frozen=True)
class Mount:
    """A host directory made visible to the connector at the same path."""

    host_path: str  # absolute directory on the host
    read_only: bool  # the local runtime cannot enforce this; docker mounts it ro


@dataclass(frozen=True)
class ConnectorLaunch:
    """Everything needed to start one connector of one run."""

    name: str  # unique per run, e.g. "etlctl-users-to-sqlite-<runid>-loader"
    role: str  # "extractor" | "loader"
    connector_type: str  # "csv"
    image: str  # docker image; the local runtime runs the built-in `connectors` instead
    run_file: str  # host path of the run JSON (docker mounts it read-only)
    labels: dict[str, str] = field(hash=False)  # find leftovers by these
    mounts: tuple[Mount, ...] = ()
    network: str = "host"  # "host" or a docker network name (docker only)
    command: tuple[str, ...] = ("run",)


@dataclass(frozen=True)
class Leftover:
    """A connector that a killed etlctl left behind, as it was when it was removed."""

    name: str
    labels: dict[str, str] = field(hash=False)
    exit_code: int | None  # None: it was still running (and was killed)
    logs: str


# Handles are runtime-specific (a docker Container, a local process record); callers only
# pass them back to the runtime that made them.
Handle = Any


@runtime_checkable
class Runtime(Protocol):
    """Starts connectors and cleans up after them; see the module docstring."""

    name: str

    def preflight(self) -> None:
        """Raise ServiceUnavailableError when connectors cannot be started at all."""

    def ensure_image(self, image: str) -> None:
        """Raise ImageMissingError (with a build hint) when ``image`` is not available."""

    def start(self, launch: ConnectorLaunch) -> Handle:
        """Start the connector in the background and return at once."""

    def exit_code(self, handle: Handle) -> int | None:
        """The exit code once the connector ended (128+N when killed by signal N), else None."""

    def stop(self, handle: Handle, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; no error when already ended."""

    def logs(self, handle: Handle) -> str:
        """Everything the connector wrote to stdout and stderr so far."""

    def remove(self, handle: Handle) -> None:
        """Kill if needed and free everything the connector holds; idempotent."""

    def remove_leftovers(self, labels: dict[str, str]) -> list[str]:
        """Kill and remove every connector carrying all ``labels``; return their names."""

    def collect_leftovers(self, labels: dict[str, str]) -> list[Leftover]:
        """As remove_leftovers, but hand back each one's labels, exit code and logs (read
        after it was killed, so they are complete)."""

    def labelled(self, labels: dict[str, str]) -> list[dict[str, str]]:
        """The labels of every connector (running or not) carrying all ``labels``."""

    def run_once(self, launch: ConnectorLaunch, timeout: float) -> tuple[int, str, str]:
        """Run to completion (spec, check): exit code, stdout, stderr.

        Raises SyncTimeoutError (after killing and removing it) when it takes longer than
        ``timeout`` seconds.
        """

    def stats_peak_memory(self, handle: Handle) -> int | None:
        """Peak memory in bytes seen so far, best effort (None when unknown).

        Call it while the connector runs (a benchmark polls it): an ended docker
        container reports no memory statistics.
        """


def matches_labels(candidate: dict[str, str], wanted: dict[str, str]) -> bool:
    """True when ``candidate`` carries every key of ``wanted`` with the same value."""
    return all(candidate.get(key) == value for key, value in wanted.items())


def signal_exit_code(returncode: int) -> int:
    """Map subprocess' "-N" (killed by signal N) to the shell/docker convention 128+N."""
    return 128 - returncode if returncode < 0 else returncode
