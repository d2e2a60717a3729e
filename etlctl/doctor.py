"""`etlctl doctor`: everything a sync and a schedule need, checked at once.

Each check gives findings: ok, warning (works, but something is off) or error (a sync or a
scheduled firing would fail), each with the fix. The CLI renders them; ``diagnose`` is the
whole API. Checks never change anything: the only thing written is a throwaway, exclusive
queue that tells whether the broker user may declare queues.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from etlctl import catalog, scheduler, settings
from etlctl.broker import Broker, ConnectionQueues, redact_url, resolve_amqp_url
from etlctl.errors import EtlctlError, ServiceUnavailableError
from etlctl.leftovers import process_alive
from etlctl.models import RunStatus
from etlctl.paths import logs_dir
from etlctl.store import RUNS_KEPT_PER_CONNECTION, Store, StoreView

# Docker 20.10 is what the runtime is tested on (Debian 12); older engines lack options it
# passes (read-only tmpfs modes, no-new-privileges with user namespaces).
MIN_DOCKER_VERSION = (20, 10)
STORE_SIZE_WARNING_BYTES = 50 * 1024 * 1024
DISK_ERROR_BYTES = 100 * 1024 * 1024
DISK_WARNING_BYTES = 1024 * 1024 * 1024
DISK_WARNING_SHARE = 0.05


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    area: str  # store, docker, rabbitmq, images, cron, source, loader, disk
    status: Status
    message: str
    fix: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


@dataclass
class DoctorOptions:
    runtime: str | None = None  # None: the store's setting
    amqp_url: str | None = None  # None: $ETLCTL_AMQP_URL, the setting, the default
    network: str | None = None
    connectors: bool = False  # also run every source's and loader's check


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.status is Status.ERROR for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {status.value: sum(f.status is status for f in self.findings) for status in Status}


def ok(area: str, message: str) -> Finding:
    return Finding(area, Status.OK, message)


def warning(area: str, message: str, fix: str | None = None) -> Finding:
    return Finding(area, Status.WARNING, message, fix)


def error(area: str, message: str, fix: str | None = None) -> Finding:
    return Finding(area, Status.ERROR, message, fix)


def from_exception(area: str, exc: EtlctlError) -> Finding:
    return error(area, exc.message, exc.hint)


def diagnose(store: Store, options: DoctorOptions | None = None) -> Report:
    """Run every check; never raises for what it finds."""
    options = options or DoctorOptions()
    report = Report()
    report.findings += check_store(store)
    view = None
    with contextlib.suppress(EtlctlError):  # check_store said why; the rest runs on defaults
        view = store.read()
    stored = view.settings() if view else {}
    runtime = settings.chosen(stored, "runtime", options.runtime)
    network = settings.chosen(stored, "network", options.network)
    docker_up = False
    if runtime in ("docker", "swarm"):
        docker = list(check_docker(network))
        report.findings += docker
        docker_up = not any(f.status is Status.ERROR for f in docker)
        report.findings += check_images(view) if docker_up else [
            warning("images", "not checked: the Docker engine does not answer")
        ]
    else:
        report.findings.append(ok("docker", f"runtime {runtime}: Docker is not needed"))
    report.findings += check_rabbitmq(store, view, resolve_amqp_url(options.amqp_url, stored))
    report.findings += check_cron(store, view)
    if options.connectors and view is not None:
        if runtime in ("docker", "swarm") and not docker_up:
            report.findings.append(
                warning("connectors", "not checked: the Docker engine does not answer")
            )
        else:
            report.findings += check_connectors(store, view, runtime, network)
    report.findings += check_disk(store, view)
    return report


# --- the store ------------------------------------------------------------------------------
def check_store(store: Store) -> Iterator[Finding]:
    path = store.path
    if not path.exists():
        yield ok("store", f"no store at {path} yet: the first command that saves makes it")
        return
    try:
        view = store.read()
    except EtlctlError as exc:
        yield from_exception("store", exc)
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield warning(
            "store",
            f"the store {path} can be read by other users (mode {mode:04o}); it holds "
            "connection configs",
            f"chmod 600 {path}",
        )
    directory_mode = stat.S_IMODE(path.parent.stat().st_mode)
    if directory_mode & 0o077:
        yield warning(
            "store",
            f"the store's directory {path.parent} is open to other users "
            f"(mode {directory_mode:04o}); run logs and locks live there",
            f"chmod 700 {path.parent}",
        )
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        yield error(
            "store",
            f"the store {path} is not writable by this user: commands that change it and "
            "every sync will fail",
            f"check its owner and permissions: ls -l {path}",
        )
    runs = view.list_runs()
    connections = view.connections()
    size = path.stat().st_size
    summary = (
        f"{path}: {_size(size)}, {len(view.sources())} sources, {len(view.loaders())} loaders, "
        f"{len(connections)} connections, {len(runs)} runs kept (at most "
        f"{RUNS_KEPT_PER_CONNECTION} per connection)"
    )
    if size > STORE_SIZE_WARNING_BYTES:
        yield warning("store", f"{summary}: large, every command reads it whole")
    else:
        yield ok("store", summary)
    stale = [run for run in runs if run.status is RunStatus.RUNNING and not process_alive(run.pid)]
    if stale:
        yield warning(
            "store",
            f"{len(stale)} run(s) still marked running whose etlctl process is gone "
            f"({', '.join(run.id for run in stale[:3])})",
            "etlctl gc",
        )


def _size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


# --- Docker and the images ------------------------------------------------------------------
def check_docker(network: str) -> Iterator[Finding]:
    from etlctl.runtime.docker import docker_host, engine_info, network_exists

    try:
        info = engine_info()
    except ServiceUnavailableError as exc:
        yield from_exception("docker", exc)
        return
    parts = tuple(int(p) for p in info.version.split(".")[:2] if p.isdigit())
    described = f"Docker {info.version} (API {info.api_version}, {info.os}) at {docker_host()}"
    if len(parts) == 2 and parts < MIN_DOCKER_VERSION:
        yield warning(
            "docker",
            f"{described}: older than {'.'.join(map(str, MIN_DOCKER_VERSION))}, which the "
            "runtime needs",
            "upgrade the Docker engine",
        )
    else:
        yield ok("docker", described)
    if network != "host" and not network_exists(network):
        yield error(
            "docker",
            f"the network {network!r} that syncs use does not exist",
            f"docker network create {network}, or: etlctl settings set network host",
        )


def check_images(view: StoreView | None) -> list[Finding]:
    from etlctl.runtime.docker import image_details
    from etlctl.runtime.images import (
        connectors_digest,
        list_images,
        requirements_text,
        stale_reason,
    )

    used = _images_in_use(view)
    findings: list[Finding] = []
    try:
        statuses = list_images()
    except EtlctlError as exc:
        return [from_exception("images", exc)]
    missing_used = [s.image for s in statuses if not s.present and s.image in used]
    missing_unused = [s.image for s in statuses if not s.present and s.image not in used]
    stale = [s for s in statuses if s.present and s.stale]
    for image in missing_used:
        findings.append(
            error(
                "images",
                f"image {image} is missing: {', '.join(used[image])} cannot sync",
                f"etlctl images build {_build_argument(image)}",
            )
        )
    if missing_unused:
        findings.append(
            warning(
                "images",
                f"{len(missing_unused)} built-in image(s) not built (no connection uses them "
                f"yet): {', '.join(missing_unused)}",
                "etlctl images build",
            )
        )
    for status in stale:
        who = f" (used by {', '.join(used[status.image])})" if status.image in used else ""
        findings.append(
            warning(
                "images",
                f"image {status.image} is stale{who}: {status.stale}",
                f"etlctl images build {_build_argument(status.image)}",
            )
        )
    built_in = {s.image for s in statuses}
    digest = connectors_digest(requirements_text())
    for image, users in sorted(used.items()):
        if image in built_in:
            continue
        try:
            details = image_details(image)
        except EtlctlError as exc:
            return [*findings, from_exception("images", exc)]
        if details is None:
            findings.append(
                error(
                    "images",
                    f"custom image {image} is missing: {', '.join(users)} cannot sync",
                    f"docker pull {image}, or build it",
                )
            )
        elif reason := stale_reason(details.labels, digest):
            findings.append(warning("images", f"image {image} is stale: {reason}"))
    if not findings:
        present = sum(s.present for s in statuses)
        findings.append(ok("images", f"all {present} built-in images present and current"))
    return findings


def _images_in_use(view: StoreView | None) -> dict[str, list[str]]:
    """image -> the sources and loaders that run it."""
    used: dict[str, list[str]] = {}
    if view is None:
        return used
    for obj in [*view.sources(), *view.loaders()]:
        image = obj.image
        if image is None:
            info = catalog.find_connector(obj.role, obj.type)
            if info is None:
                continue
            image = info.image
        used.setdefault(image, []).append(f"{obj.kind} {obj.name}")
    return used


def _build_argument(image: str) -> str:
    """`etlctl images build` takes role-type names: etlctl/loader-sqlite:X -> loader-sqlite."""
    name = image.split("/", 1)[-1].split(":", 1)[0]
    return "" if name == "connector-runtime" else name


# --- RabbitMQ ----------------------------------------------------------------------------------
def check_rabbitmq(store: Store, view: StoreView | None, url: str) -> Iterator[Finding]:
    shown = redact_url(url)
    try:
        broker = Broker.connect(url)
    except EtlctlError as exc:
        yield from_exception("rabbitmq", exc)
        return
    with broker:
        refused = broker.declare_refused(f"etlctl.doctor.{store.id}.{os.getpid()}")
        if refused is not None:
            user = _url_user(url)
            yield error(
                "rabbitmq",
                f"RabbitMQ at {shown} refused to let user {user} declare queues ({refused}): "
                "every sync declares its queues first",
                f"rabbitmqctl set_permissions -p VHOST {user} '.*' '.*' '.*' (at least "
                "configure/write/read on ^etlctl\\.)",
            )
        else:
            yield ok("rabbitmq", f"RabbitMQ at {shown}: connected, may declare queues")
        yield from _leftover_queues(store, view, broker)


def _leftover_queues(store: Store, view: StoreView | None, broker: Broker) -> Iterator[Finding]:
    """Queues of this store's connections that no running sync owns: a killed sync's."""
    if view is None:
        return
    left: list[str] = []
    syncing = {
        run.connection for run in view.list_runs(status=RunStatus.RUNNING) if process_alive(run.pid)
    }
    for connection in view.connections():
        if connection.name in syncing:
            continue  # its queues are in use
        queues = ConnectionQueues.for_connection(connection.name, store.id)
        left += [name for name in queues.names if broker.queue_exists(name)]
    if left:
        yield warning(
            "rabbitmq",
            f"{len(left)} leftover queue(s) of killed syncs of this store: {', '.join(left)}",
            "etlctl gc",
        )


def _url_user(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    try:
        return unquote(urlsplit(url).username or "guest")
    except ValueError:
        return "?"


# --- cron ---------------------------------------------------------------------------------------
def check_cron(store: Store, view: StoreView | None) -> list[Finding]:
    scheduled = [c.name for c in view.connections() if c.scheduled] if view else []
    # Without scheduled connections cron is optional: what is missing is only a warning.
    problem = error if scheduled else warning
    needed = f" ({len(scheduled)} scheduled connection(s) need it)" if scheduled else ""
    findings: list[Finding] = []
    running = scheduler.cron_daemon_running()
    if running is False:
        findings.append(
            problem(
                "cron",
                f"no cron daemon is running{needed}: schedules never fire",
                "start it: service cron start (or scripts/ensure-services.sh cron)",
            )
        )
    elif running is None:
        findings.append(warning("cron", "cannot tell whether a cron daemon runs (no /proc)"))
    try:
        scheduler.read_crontab()
    except ServiceUnavailableError as exc:
        return [*findings, problem("cron", exc.message + needed, exc.hint)]
    refusal = scheduler.crontab_refusal()
    if refusal is not None:
        findings.append(
            problem(
                "cron",
                f"the crontab cannot be written: {refusal}{needed}",
                "allow this user in /etc/cron.allow, or pass --no-crontab and schedule yourself",
            )
        )
    infos, stale = scheduler.list_schedules(store) if view is not None else ([], [])
    for info in infos:
        if info.installed == "missing":
            findings.append(
                error(
                    "cron",
                    f"connection {info.connection} is scheduled ({info.schedule}) but has no "
                    "crontab entry: it never runs",
                    "etlctl schedule apply",
                )
            )
        elif info.installed == "outdated":
            findings.append(
                warning(
                    "cron",
                    f"the crontab entry of {info.connection} differs from what the store says "
                    "(schedule, etlctl path or image tag changed)",
                    "etlctl schedule apply",
                )
            )
    if stale:
        findings.append(
            warning(
                "cron",
                "crontab entries of this store for connections that are not scheduled "
                f"(foreign to it now): {', '.join(stale)}",
                "etlctl schedule apply (removes them)",
            )
        )
    if not findings:
        findings.append(
            ok(
                "cron",
                f"cron daemon running, crontab writable; {len(infos)} scheduled "
                "connection(s), all installed",
            )
        )
    return findings


# --- connectors ------------------------------------------------------------------------------
def check_connectors(
    store: Store, view: StoreView, runtime: str, network: str
) -> Iterator[Finding]:
    from etlctl.orchestrator import check_connector

    for obj in [*view.sources(), *view.loaders()]:
        try:
            result = check_connector(store, obj.kind, obj.name, runtime, network)
        except EtlctlError as exc:
            yield error(obj.kind, f"{obj.kind} {obj.name}: {exc.message}", exc.hint)
            continue
        if result.ok:
            yield ok(obj.kind, f"{obj.kind} {obj.name} ({obj.type}): check passed")
        else:
            yield error(
                obj.kind,
                f"{obj.kind} {obj.name} ({obj.type}): {result.message}",
                f"etlctl {obj.kind} update {obj.name} --config ..., then: "
                f"etlctl {obj.kind} check {obj.name}",
            )


# --- disk space ------------------------------------------------------------------------------
def check_disk(store: Store, view: StoreView | None) -> Iterator[Finding]:
    places: dict[str, list[str]] = {str(logs_dir(store.path)): ["run logs"]}
    for path, what in _target_paths(view):
        places.setdefault(path, []).append(what)
    # One line per filesystem, naming everything that lives on it.
    filesystems: dict[int, tuple[Path, list[str]]] = {}
    for place, whats in places.items():
        existing = _existing_ancestor(Path(place))
        try:
            device = existing.stat().st_dev
        except OSError as exc:
            yield warning("disk", f"cannot look at {place}: {exc.strerror}")
            continue
        filesystems.setdefault(device, (existing, []))[1].extend(whats)
    for where, whats in filesystems.values():
        try:
            usage = shutil.disk_usage(where)
        except OSError as exc:
            yield warning("disk", f"cannot look at {where}: {exc.strerror}")
            continue
        free, share = usage.free, usage.free / usage.total if usage.total else 0.0
        described = f"{_size(free)} free of {_size(usage.total)} at {where} ({', '.join(whats)})"
        if free < DISK_ERROR_BYTES:
            yield error("disk", f"only {described}", f"free some space in {where}")
        elif free < DISK_WARNING_BYTES or share < DISK_WARNING_SHARE:
            yield warning("disk", f"little space: {described}", f"free some space in {where}")
        else:
            yield ok("disk", described)


def _target_paths(view: StoreView | None) -> Iterable[tuple[str, str]]:
    """The directories loaders write to (their config's x-path "write" fields)."""
    if view is None:
        return
    for loader in view.loaders():
        info = catalog.find_connector(loader.role, loader.type)
        if info is None:
            continue
        for name, prop in info.spec.get("properties", {}).items():
            value = loader.config.get(name)
            if isinstance(prop, dict) and prop.get("x-path") == "write" and isinstance(value, str):
                yield str(Path(value).expanduser().parent), f"loader {loader.name}"


def _existing_ancestor(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path("/")
