"""What syncs leave behind when etlctl cannot clean up (SIGKILL, a crash, a power cut), and
removing it: containers or local processes, queues, run files (they hold the config's
secrets), runs left ``running``, and the logs of what is removed.

The per-connection lock (etlctl/locks.py) is also the leftover detector: whoever holds it is
the only sync of that connection, so anything labelled with the connection that exists at
that moment is an orphan of a killed run, and any run still marked ``running`` is stale.

Everything a sync creates carries the store's id (containers: ``io.etlctl.store``; queues:
in their name; run files: in a directory beside the store), so ``gc`` finds it whether or
not the connection that made it still exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors import secrets
from connectors.registry import path_fields
from etlctl import catalog
from etlctl.broker import Broker, ConnectionQueues, resolve_amqp_url
from etlctl.errors import ConflictError, EtlctlError
from etlctl.locks import connection_lock
from etlctl.models import RunStatus, utcnow
from etlctl.paths import ensure_private_dir, home_for, logs_dir
from etlctl.runtime import Runtime, get_runtime
from etlctl.runtime.base import ConnectorLaunch, Leftover, Mount
from etlctl.store import Store

MANAGED_LABEL = "io.etlctl.managed"
CONNECTION_LABEL = "io.etlctl.connection"
STORE_LABEL = "io.etlctl.store"
RUN_LABEL = "io.etlctl.run"
ROLE_LABEL = "io.etlctl.role"
CHECK_LABEL = "io.etlctl.check"
PID_LABEL = "io.etlctl.pid"
CHECK_DIR_PREFIX = "check-"
CLEANUP_TIMEOUT_SECONDS = 120


# --- run files ----------------------------------------------------------------------------
def run_files_dir(store_path: Path) -> Path:
    """Beside the store (not in /tmp): so that gc finds what a killed run left, and only
    this store's."""
    return home_for(store_path) / "run-files"


def new_run_files_dir(store: Store, run_id: str) -> Path:
    """A private directory for one run's files, named after the run."""
    directory = ensure_private_dir(run_files_dir(store.path)) / run_id
    directory.mkdir(mode=0o700)
    return directory


def new_check_files_dir(store: Store) -> Path:
    """A private directory for one `check`; its name carries the pid that owns it."""
    root = ensure_private_dir(run_files_dir(store.path))
    return Path(tempfile.mkdtemp(prefix=f"{CHECK_DIR_PREFIX}{os.getpid()}-", dir=root))


def process_alive(pid: int | None) -> bool:
    """Whether a process of this pid runs (one of another user counts: it cannot be signalled,
    but it is there)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_pid(name: str) -> int | None:
    digits = name.removeprefix(CHECK_DIR_PREFIX).split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def sweep_run_files(store: Store) -> list[str]:
    """Remove the run files of every run that is not running, and of checks whose process
    is gone. Listed before the store is read: a directory seen here belongs to a run that
    was recorded before it, so a run starting meanwhile is seen as running, never swept."""
    root = run_files_dir(store.path)
    entries = sorted(root.iterdir()) if root.is_dir() else []
    view = store.read()
    removed = []
    for entry in entries:
        if entry.name.startswith(CHECK_DIR_PREFIX):
            pid = _check_pid(entry.name)
            if pid is not None and process_alive(pid):
                continue
        else:
            run = view.find_run(entry.name)
            if run is not None and run.status is RunStatus.RUNNING:
                continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(f"run files of {entry.name}")
    return removed + _sweep_legacy_run_files(store)


def _sweep_legacy_run_files(store: Store) -> list[str]:
    """Versions before 0.2 kept run files in $TMPDIR/etlctl-<connection>-*: remove those of
    this store's runs that are over (other stores' and unknown ones are left alone)."""
    view = store.read()
    removed = []
    for directory in Path(tempfile.gettempdir()).glob("etlctl-*"):
        if directory.name.startswith("etlctl-check-") or not directory.is_dir():
            continue
        with contextlib.suppress(OSError):
            if directory.stat().st_uid != os.getuid():
                continue
            for run_file in directory.glob("*.json"):
                with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                    run_id = json.loads(run_file.read_bytes())["run"]["id"]
                    run = view.find_run(run_id)
                    if run is not None and run.status is not RunStatus.RUNNING:
                        shutil.rmtree(directory, ignore_errors=True)
                        removed.append(f"run files of {run_id}")
                break
    return removed


# --- the logs of removed connectors ---------------------------------------------------------
def log_section(role: str, exit_code: int | None, logs: str) -> str:
    """One connector's part of a run log (`etlctl logs RUN`)."""
    return f"===== {role} (exit code {exit_code}) =====\n{logs.rstrip()}\n"


def write_run_log(path: Path, header: str, sections: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(header + "\n".join(sections))
    os.chmod(path, 0o600)


def _run_secrets(store: Store, run_id: str) -> set[str]:
    """The secret values a dead run's connectors were given (from its run files, which gc
    has not removed yet) and the plain ones in the store: what their logs must not show."""
    found: set[str] = set()
    for obj in [*store.read().sources(), *store.read().loaders()]:
        found |= secrets.secret_values(obj.config, catalog.spec_of(obj))
    for run_file in (run_files_dir(store.path) / run_id).glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            document = json.loads(run_file.read_bytes())
            info = catalog.find_connector(document["role"], document["connector_type"])
            found |= secrets.secret_values(document["config"], info.spec if info else None)
            found |= secrets.secret_values({"url": document["broker"]["url"]}, None)
    return found


def _keep_logs(store: Store, connection: str, leftovers: list[Leftover]) -> None:
    """Write what orphans logged to their run's log file, so that `etlctl logs RUN` shows
    what the run did (maybe millions of rows) although etlctl was killed before it could."""
    by_run: dict[str, list[Leftover]] = {}
    for leftover in leftovers:
        if RUN_LABEL in leftover.labels:
            by_run.setdefault(leftover.labels[RUN_LABEL], []).append(leftover)
    if not by_run:
        return
    view = store.read()
    for run_id, found in by_run.items():
        run = view.find_run(run_id)
        path = Path(
            run.log_path
            if run is not None and run.log_path
            else logs_dir(store.path) / connection / f"{run_id}.log"
        )
        header = (
            f"run {run_id} of connection {connection} (its etlctl process ended without "
            f"cleaning up; these logs were kept when its connectors were removed at "
            f"{utcnow():%Y-%m-%d %H:%M:%S} UTC)\n"
        )
        hidden = _run_secrets(store, run_id)
        sections = [
            catalog.redact(
                log_section(
                    leftover.labels.get(ROLE_LABEL, leftover.name),
                    leftover.exit_code if leftover.exit_code is not None else "unknown: killed",
                    leftover.logs,
                ),
                hidden,
            )
            for leftover in sorted(found, key=lambda item: item.labels.get(ROLE_LABEL, ""))
        ]
        with contextlib.suppress(OSError):
            write_run_log(path, header, sections)


# --- removing leftovers ---------------------------------------------------------------------
def remove_leftovers(
    store: Store,
    connection: str,
    runtime: Runtime,
    broker: Broker,
    problems: list[str] | None = None,
) -> list[str]:
    """With the connection's lock held, anything of a previous run is an orphan.

    With ``problems`` (gc), the target is cleaned too: the loader of each stale run removes
    what it left there (a full refresh's staging table); what could not be is appended to
    ``problems``. A sync does not need it: its own loader starts a fresh staging copy."""
    leftovers = runtime.collect_leftovers(
        {MANAGED_LABEL: "true", STORE_LABEL: store.id, CONNECTION_LABEL: connection}
    )
    _keep_logs(store, connection, leftovers)
    removed = [leftover.name for leftover in leftovers]
    removed += broker.delete_queues(ConnectionQueues.for_connection(connection, store.id).names)
    stale: list[str] = []
    with store.transaction() as view:
        for run in view.list_runs(connection, RunStatus.RUNNING):
            run.status = RunStatus.FAILED
            run.ended_at = utcnow()
            run.error = (
                f"the etlctl process (pid {run.pid}) ended without finishing this run; "
                "its containers and queues were removed later"
            )
            view.save_run(run)
            removed.append(run.id)
            stale.append(run.id)
    if problems is not None:
        for run_id in stale:
            removed += _clean_target(store, runtime, run_id, problems)
    return removed


def _clean_target(store: Store, runtime: Runtime, run_id: str, problems: list[str]) -> list[str]:
    """Run the loader's ``cleanup`` command with the dead run's own loader run file (the
    config it had, whatever became of the loader since): it drops the staging table or
    temporary file a killed full refresh left in the target."""
    run_file = run_files_dir(store.path) / run_id / "loader.json"
    try:
        document = json.loads(run_file.read_bytes())
    except (OSError, ValueError):
        return []  # killed before its run files were written, or already swept
    info = catalog.find_connector("loader", str(document.get("connector_type")))
    if info is None:
        return []  # a custom image: its leftovers are its own business
    launch = ConnectorLaunch(
        name=f"etlctl-cleanup-{run_id.replace('_', '-').lower()}",
        role="loader",
        connector_type=info.type,
        image=info.image,
        run_file=str(run_file),
        labels={MANAGED_LABEL: "true", STORE_LABEL: store.id, RUN_LABEL: run_id,
                PID_LABEL: str(os.getpid())},
        mounts=_write_mounts(info.spec, document.get("config") or {}),
        command=("cleanup",),
    )
    try:
        code, stdout, stderr = runtime.run_once(launch, CLEANUP_TIMEOUT_SECONDS)
        answer = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    except (EtlctlError, ValueError) as exc:
        code, answer, stderr = -1, {"message": str(exc)}, ""
    if code == 0 and answer.get("status") == "ok":
        return [str(item) for item in answer.get("removed", [])]
    reason = answer.get("message") or (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
    problems.append(
        catalog.redact(f"could not clean the target of run {run_id}: {reason}",
                       _run_secrets(store, run_id))
    )
    return []


def _write_mounts(spec: dict[str, Any], config: dict[str, Any]) -> tuple[Mount, ...]:
    """The directories of the loader's path fields (it writes there), at the same path."""
    mounts = []
    for name in path_fields(spec):
        value = config.get(name)
        if isinstance(value, str) and value and Path(value).parent.is_dir():
            mounts.append(Mount(host_path=os.path.normpath(Path(value).parent), read_only=False))
    return tuple(dict.fromkeys(mounts))


def _remove_dead_checks(store: Store, runtime: Runtime) -> list[str]:
    """Containers of `source/loader check` commands whose etlctl process is gone."""
    removed = []
    for labels in runtime.labelled({MANAGED_LABEL: "true", STORE_LABEL: store.id}):
        if CHECK_LABEL not in labels:
            continue
        pid = labels.get(PID_LABEL, "")
        if pid.isdigit() and process_alive(int(pid)):
            continue
        wanted = {MANAGED_LABEL: "true", STORE_LABEL: store.id, CHECK_LABEL: labels[CHECK_LABEL]}
        if pid:
            wanted[PID_LABEL] = pid
        removed += runtime.remove_leftovers(wanted)
    return removed


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # syncing now: left alone
    problems: list[str] = field(default_factory=list)  # what could not be cleaned


def collect_garbage(
    store: Store, runtime_name: str = "docker", amqp_url: str | None = None
) -> GcReport:
    """Remove what killed syncs of this store left behind, for every connection not syncing
    right now, whether or not it still exists: its containers (keeping their logs), its
    queues, its run files; mark its stale runs failed."""
    view = store.read()
    runtime = get_runtime(runtime_name)
    runtime.preflight()
    # Every connection something of this store may belong to: the ones that exist, the ones
    # with a run left running, the ones named by a labelled container.
    names = {connection.name for connection in view.connections()}
    names |= {run.connection for run in view.list_runs(status=RunStatus.RUNNING)}
    for labels in runtime.labelled({MANAGED_LABEL: "true", STORE_LABEL: store.id}):
        if CONNECTION_LABEL in labels:
            names.add(labels[CONNECTION_LABEL])
    report = GcReport()
    with Broker.connect(resolve_amqp_url(amqp_url, view.settings())) as broker:
        for name in sorted(names):
            try:
                with connection_lock(store, name):
                    report.removed += remove_leftovers(
                        store, name, runtime, broker, report.problems
                    )
            except ConflictError:
                report.busy.append(name)
    report.removed += _remove_dead_checks(store, runtime)
    report.removed += sweep_run_files(store)
    return report
