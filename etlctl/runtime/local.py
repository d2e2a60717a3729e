"""The local runtime: each connector as a subprocess on the host, for machines without Docker.

``[sys.executable, "-m", "connectors", ROLE, TYPE, COMMAND]`` with ``ETLCTL_RUN_FILE`` set to
the run file's host path: the same contract and queues as in a container. Paths in configs
are host paths in both runtimes, so mounts need nothing here (``read_only`` cannot be
enforced on a plain process; the docker runtime enforces it).

Each connector gets its own process group (so stop() reaches whatever it spawns) and one log
file, stdout and stderr interleaved as ``docker logs`` shows them.

Leftovers: every started connector is recorded in a small registry, one JSON file per
process (pid, process start time, name, labels) in ``<etlctl home>/local-runtime/`` next to
the store. ``remove_leftovers`` kills the process groups whose labels match and whose pid
still belongs to the same process (the start time from /proc guards against pid reuse), then
deletes their records (``collect_leftovers`` reads their log files first). remove() deletes
the record of a connector it cleaned up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import connectors
from etlctl.errors import ServiceUnavailableError, SyncTimeoutError
from etlctl.paths import default_store_path, ensure_private_dir, home_for
from etlctl.runtime.base import (
    RUN_FILE_ENV,
    ConnectorLaunch,
    Leftover,
    matches_labels,
    signal_exit_code,
)

KILL_WAIT_SECONDS = 5.0


def registry_dir() -> Path:
    """Where process records live: beside the store, so each etlctl home has its own."""
    return home_for(default_store_path()) / "local-runtime"


@dataclass
class LocalHandle:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    record_path: Path
    log_file: IO[bytes] | None = None
    peak_memory: int | None = field(default=None)


class LocalRuntime:
    """Runs each connector as a host subprocess (see the module docstring)."""

    name = "local"

    def preflight(self) -> None:
        if importlib.util.find_spec("connectors.sdk.entrypoint") is None:
            raise ServiceUnavailableError(
                f"the connectors package is not importable by {sys.executable}",
                hint="install etlctl with its connectors: pip install etlctl",
            )

    def ensure_image(self, image: str) -> None:
        """Images are not used: the built-in connectors run from this installation."""

    def start(self, launch: ConnectorLaunch) -> LocalHandle:
        log_dir = Path(tempfile.mkdtemp(prefix=f"{launch.name}-"))
        log_path = log_dir / "output.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed by remove()
        try:
            process = subprocess.Popen(
                connector_command(launch),
                env=connector_environment(launch.run_file),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills it whole
                close_fds=True,
            )
        except OSError:
            log_file.close()
            raise
        record_path = _write_record(launch, process.pid, log_path)
        return LocalHandle(launch.name, process, log_path, record_path, log_file)

    def exit_code(self, handle: LocalHandle) -> int | None:
        self._sample_memory(handle)
        code = handle.process.poll()
        return None if code is None else signal_exit_code(code)

    def stop(self, handle: LocalHandle, timeout: float = 5) -> None:
        if handle.process.poll() is not None:
            return
        _signal_group(handle.process.pid, signal.SIGTERM)
        try:
            handle.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(handle.process.pid, signal.SIGKILL)
            handle.process.wait(timeout=KILL_WAIT_SECONDS)

    def logs(self, handle: LocalHandle) -> str:
        try:
            return handle.log_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def remove(self, handle: LocalHandle) -> None:
        if handle.process.poll() is None:
            _signal_group(handle.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                handle.process.wait(timeout=KILL_WAIT_SECONDS)
        if handle.log_file is not None:
            handle.log_file.close()
            handle.log_file = None
        handle.log_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            handle.log_path.parent.rmdir()
        handle.record_path.unlink(missing_ok=True)

    def remove_leftovers(self, labels: dict[str, str]) -> list[str]:
        return [leftover.name for leftover in self.collect_leftovers(labels)]

    def collect_leftovers(self, labels: dict[str, str]) -> list[Leftover]:
        collected = []
        for record_path, record in _records(labels):
            pid = int(record.get("pid", 0))
            alive = pid > 0 and _start_time(pid) == record.get("start_time")
            if alive:
                _signal_group(pid, signal.SIGKILL)
            logs = ""
            log_path = Path(str(record["log_path"])) if record.get("log_path") else None
            if log_path is not None:
                with contextlib.suppress(OSError):
                    logs = log_path.read_bytes().decode("utf-8", errors="replace")
                log_path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    log_path.parent.rmdir()
            record_path.unlink(missing_ok=True)
            name = str(record.get("name", record_path.stem))
            # A process that is not ours to wait for leaves no exit status to read.
            collected.append(Leftover(name, dict(record.get("labels", {})), None, logs))
        return collected

    def labelled(self, labels: dict[str, str]) -> list[dict[str, str]]:
        return [dict(record.get("labels", {})) for _, record in _records(labels)]

    def run_once(self, launch: ConnectorLaunch, timeout: float) -> tuple[int, str, str]:
        process = subprocess.Popen(
            connector_command(launch),
            env=connector_environment(launch.run_file),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.communicate()
            raise SyncTimeoutError(f"{launch.name} did not finish within {timeout:g} s") from None
        return (
            signal_exit_code(process.returncode),
            stdout.decode("utf-8", errors="replace"),
            stderr.decode("utf-8", errors="replace"),
        )

    def stats_peak_memory(self, handle: LocalHandle) -> int | None:
        self._sample_memory(handle)
        return handle.peak_memory

    @staticmethod
    def _sample_memory(handle: LocalHandle) -> None:
        """The kernel keeps the peak RSS (VmHWM) while the process lives; remember it."""
        peak = _peak_rss(handle.process.pid)
        if peak is not None:
            handle.peak_memory = max(peak, handle.peak_memory or 0)


def connector_command(launch: ConnectorLaunch) -> list[str]:
    return [sys.executable, "-m", "connectors", launch.role, launch.connector_type, *launch.command]


def connector_environment(run_file: str) -> dict[str, str]:
    """The user's environment, plus the run file and a PYTHONPATH that makes the child
    import the very `connectors` package this etlctl uses (also from a source checkout)."""
    package_root = str(Path(connectors.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(
        part for part in (package_root, os.environ.get("PYTHONPATH", "")) if part
    )
    return {
        **os.environ,
        RUN_FILE_ENV: str(Path(run_file).absolute()),
        "PYTHONPATH": python_path,
        "PYTHONUNBUFFERED": "1",
    }


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)  # the group id is the leader's pid (start_new_session)


def _write_record(launch: ConnectorLaunch, pid: int, log_path: Path) -> Path:
    directory = ensure_private_dir(registry_dir())
    path = directory / f"{launch.name}.json"
    record = {
        "name": launch.name,
        "pid": pid,
        "start_time": _start_time(pid),
        "labels": dict(launch.labels),
        "started_at": time.time(),
        "log_path": str(log_path),  # so that a later gc can keep the logs of an orphan
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _records(labels: dict[str, str]) -> list[tuple[Path, dict[str, Any]]]:
    """The process records whose labels match, with their paths."""
    found = []
    for record_path in sorted(registry_dir().glob("*.json")):
        record = _read_record(record_path)
        if record is not None and matches_labels(record.get("labels", {}), labels):
            found.append((record_path, record))
    return found


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after it are fixed.
    return stat.rsplit(")", 1)[-1].split()[19]


def _peak_rss(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None
