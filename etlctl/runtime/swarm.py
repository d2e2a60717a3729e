"""The Swarm runtime: each connector as a one-shot Docker Swarm service (docs/scale-out.md).

A service per connector, in mode ``replicated`` with one replica and restart condition
``none``: its single task runs once. (Not ``replicated-job``: on the Docker 20.10 that
Debian ships, removing a running job service leaves its container running, moby#44312.)
The task runs with the same isolation as the docker runtime: the host user's uid:gid, a
read-only root with a private /tmp, every capability dropped, never the Docker socket, and
``ETLCTL_RUN_FILE`` as its only environment variable.

The run file travels as a **Docker secret**, created per connector and removed with its
service: the task sees it at ``/etlctl/run.json`` (owned by its uid, mode 0400), while
``docker service inspect`` shows only the secret's id and name. Services and secrets carry
the run's labels, so a later sync or ``etlctl gc`` finds what a killed etlctl left.

Exit codes come from the task's ``Status.ContainerStatus.ExitCode``; a task the swarm
rejected (a missing image) fails at once with the swarm's reason in the logs. Logs are read
through ``docker service logs`` (stdout and stderr apart), so they work for a task on any
node. The image is referenced by its local id when this node has it: the task then starts
without asking a registry.

This module talks to the engine through :mod:`etlctl.runtime.docker`'s client (the only
docker SDK user) and errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import docker.types
from docker.models.services import Service

from etlctl.errors import EtlctlError, ServiceUnavailableError, SyncTimeoutError
from etlctl.runtime.base import (
    CONTAINER_RUN_FILE,
    RUN_FILE_ENV,
    VANISHED_EXIT_CODE,
    ConnectorLaunch,
    Leftover,
    matches_labels,
)
from etlctl.runtime.docker import DockerRuntime, client, engine_errors

# Swarm names: a service name is a DNS label (63 characters), a secret name 64.
MAX_NAME_LENGTH = 63
# Task states before the container ends (swarmkit's TaskState, lower-cased by the API).
PENDING_STATES = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
     "running"}
)  # fmt: skip
# What a task that never got a container reports: docker run's "the daemon could not run it".
NOT_STARTED_EXIT_CODE = 125
# Swarm secrets hold at most 500 KB; a run file is a few KB.
MAX_SECRET_BYTES = 500 * 1024
POLL_SECONDS = 0.25
# How long stop() waits for the swarm to shut a task down before giving up on waiting.
SHUTDOWN_WAIT_SECONDS = 30.0


def swarm_name(name: str) -> str:
    """``name`` made short enough for a service and a secret, still unique (a hash tail)."""
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME_LENGTH - len(digest) - 1].rstrip('-_.')}-{digest}"


@dataclass
class SwarmHandle:
    service: Service
    name: str
    secret_id: str
    # Why the swarm gave up on the task without running it (a missing image), for logs().
    task_error: str | None = None
    peak_memory: int | None = field(default=None)


class SwarmRuntime:
    """Runs each connector as a one-shot Swarm service (see the module docstring)."""

    name = "swarm"

    def preflight(self) -> None:
        with engine_errors():
            info = client().info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise ServiceUnavailableError(
                "this Docker engine is not part of a swarm",
                hint="docker swarm init (see docs/scale-out.md), or use --runtime docker",
            )
        if not swarm.get("ControlAvailable"):
            raise ServiceUnavailableError(
                "this Docker engine is a swarm worker; services can only be created on a manager",
                hint="run etlctl on a manager node, or point DOCKER_HOST at one",
            )

    def ensure_image(self, image: str) -> None:
        DockerRuntime().ensure_image(image)

    def start(self, launch: ConnectorLaunch) -> SwarmHandle:
        name = swarm_name(launch.name)
        data = Path(launch.run_file).read_bytes()
        if len(data) > MAX_SECRET_BYTES:
            raise EtlctlError(
                f"the run file of {launch.name} is {len(data)} bytes; a swarm secret holds at "
                f"most {MAX_SECRET_BYTES}",
                hint="use --runtime docker for connectors with very large configs",
            )
        with engine_errors():
            try:
                secret = client().secrets.create(name=name, data=data, labels=dict(launch.labels))
            except docker.errors.APIError as exc:
                raise _start_error(launch, exc) from None
            try:
                service = client().services.create(**service_options(launch, name, secret.id))
            except docker.errors.APIError as exc:
                with contextlib.suppress(docker.errors.APIError):
                    secret.remove()
                raise _start_error(launch, exc) from None
        return SwarmHandle(service=service, name=name, secret_id=secret.id)

    def exit_code(self, handle: SwarmHandle) -> int | None:
        task = _task(handle.service)
        if task is _GONE:
            return VANISHED_EXIT_CODE
        if task is None:
            return None  # not scheduled yet
        code, error = task_outcome(task)
        if error:
            handle.task_error = error
        return code

    def stop(self, handle: SwarmHandle, timeout: float = 5) -> None:
        """Scale the service to zero: the swarm stops the task (SIGTERM, then SIGKILL after
        the service's stop grace period) on whichever node runs it; wait for that."""
        if self.exit_code(handle) is not None:
            return
        with engine_errors(), contextlib.suppress(docker.errors.NotFound):
            handle.service.scale(0)
        deadline = time.monotonic() + max(timeout, 0) + SHUTDOWN_WAIT_SECONDS
        while time.monotonic() < deadline and self.exit_code(handle) is None:
            time.sleep(POLL_SECONDS)

    def logs(self, handle: SwarmHandle) -> str:
        text = _service_output(handle.service, stdout=True, stderr=True)
        if handle.task_error:
            text += f"swarm ERROR the task did not run: {handle.task_error}\n"
        return text

    def remove(self, handle: SwarmHandle) -> None:
        _remove_service(handle.service)
        _remove_secret(handle.secret_id)

    def remove_leftovers(self, labels: dict[str, str]) -> list[str]:
        return [leftover.name for leftover in self.collect_leftovers(labels)]

    def collect_leftovers(self, labels: dict[str, str]) -> list[Leftover]:
        collected = []
        for service in _labelled_services(labels):
            task = _task(service)
            code = None
            if isinstance(task, dict):
                code, _ = task_outcome(task)
            if code is None:
                # Still running: stop it first, so that the logs read below are complete.
                handle = SwarmHandle(service=service, name=service.name, secret_id="")
                self.stop(handle, timeout=0)
            logs = _service_output(service, stdout=True, stderr=True)
            _remove_service(service)
            service_labels = dict(service.attrs.get("Spec", {}).get("Labels") or {})
            collected.append(Leftover(service.name, service_labels, code, logs))
        # Secrets whose service was never created (etlctl killed between the two) or is gone.
        for secret in _labelled_secrets(labels):
            _remove_secret(secret.id)
        return collected

    def labelled(self, labels: dict[str, str]) -> list[dict[str, str]]:
        found = [dict(s.attrs["Spec"].get("Labels") or {}) for s in _labelled_services(labels)]
        found += [dict(s.attrs["Spec"].get("Labels") or {}) for s in _labelled_secrets(labels)]
        return found

    def run_once(self, launch: ConnectorLaunch, timeout: float) -> tuple[int, str, str]:
        handle = self.start(launch)
        try:
            deadline = time.monotonic() + timeout
            while (code := self.exit_code(handle)) is None:
                if time.monotonic() > deadline:
                    raise SyncTimeoutError(f"{launch.name} did not finish within {timeout:g} s")
                time.sleep(POLL_SECONDS)
            stdout = _service_output(handle.service, stdout=True, stderr=False)
            stderr = _service_output(handle.service, stdout=False, stderr=True)
            if handle.task_error:
                stderr += f"the swarm did not run the task: {handle.task_error}\n"
            return code, stdout, stderr
        finally:
            self.remove(handle)

    def stats_peak_memory(self, handle: SwarmHandle) -> int | None:
        """Unknown: the task may run on another node, whose statistics the manager lacks."""
        return None


def service_options(launch: ConnectorLaunch, name: str, secret_id: str) -> dict[str, Any]:
    """The keyword arguments of ``services.create`` that enforce the isolation rules."""
    uid, gid = os.getuid(), os.getgid()
    mounts = [
        docker.types.Mount(
            target=mount.host_path, source=mount.host_path, type="bind",
            read_only=mount.read_only,
        )
        for mount in launch.mounts
    ]  # fmt: skip
    # Connectors may need scratch space; 1777 so that any uid can use it.
    mounts.append(docker.types.Mount(target="/tmp", source=None, type="tmpfs", tmpfs_mode=0o1777))
    secret = docker.types.SecretReference(
        secret_id, name, filename=CONTAINER_RUN_FILE, uid=str(uid), gid=str(gid), mode=0o400
    )
    return {
        "image": _image_reference(launch.image),
        "args": list(launch.command),  # the image's entrypoint stays
        "name": name,
        "labels": dict(launch.labels),
        "container_labels": dict(launch.labels),
        "user": f"{uid}:{gid}",
        # The only variable: a path. Values would be visible in `docker service inspect`.
        "env": [f"{RUN_FILE_ENV}={CONTAINER_RUN_FILE}"],
        "mounts": mounts,
        "secrets": [secret],
        "read_only": True,
        "cap_drop": ["ALL"],
        "mode": docker.types.ServiceMode("replicated", replicas=1),
        "restart_policy": docker.types.RestartPolicy(condition="none"),
        # A cancelled connector is killed at once, as with the docker runtime: a graceful
        # stop would give a loader time to commit a load the run no longer owns.
        "stop_grace_period": 0,
        "networks": [launch.network],
    }


def _image_reference(image: str) -> str:
    """The local image's id when this node has it: a tag makes every node ask a registry
    first (and wait for it to fail where there is none); an id is used as it is."""
    with engine_errors(), contextlib.suppress(docker.errors.ImageNotFound):
        return str(client().images.get(image).id)
    return image


def _start_error(launch: ConnectorLaunch, exc: docker.errors.APIError) -> EtlctlError:
    reason = exc.explanation or str(exc)
    if exc.status_code == 409:
        return EtlctlError(
            f"a swarm service or secret named {swarm_name(launch.name)} exists already",
            hint="remove leftovers: etlctl gc --runtime swarm",
        )
    return EtlctlError(f"the swarm could not start {launch.name}: {reason}")


_GONE: dict[str, Any] = {}


def _task(service: Service) -> dict[str, Any] | None:
    """The service's one task (the newest, should there be more), None before the swarm
    made it, ``_GONE`` when the service no longer exists."""
    with engine_errors():
        try:
            tasks = service.tasks()
        except docker.errors.NotFound:
            return _GONE
    if not tasks:
        return None
    return max(tasks, key=lambda task: (task.get("Version") or {}).get("Index", 0))


def task_outcome(task: dict[str, Any]) -> tuple[int | None, str | None]:
    """(exit code or None while it runs, the swarm's error when it ran no container)."""
    status = task.get("Status") or {}
    state = str(status.get("State", "")).lower()
    if state in PENDING_STATES:
        return None, None
    container_status = status.get("ContainerStatus") or {}
    exit_code = container_status.get("ExitCode")
    if state == "complete":
        return int(exit_code or 0), None
    if container_status.get("ContainerID") and isinstance(exit_code, int):
        return exit_code, None
    reason = status.get("Err") or status.get("Message") or state
    if state in {"shutdown", "orphaned", "remove"}:
        return VANISHED_EXIT_CODE, str(reason)
    return NOT_STARTED_EXIT_CODE, str(reason)  # rejected, failed before a container


def _service_output(service: Service, *, stdout: bool, stderr: bool) -> str:
    with engine_errors():
        try:
            chunks = service.logs(stdout=stdout, stderr=stderr, follow=False)
            raw = b"".join(chunks)
        except docker.errors.NotFound:
            return ""
    return raw.decode("utf-8", errors="replace")


def _labelled_services(labels: dict[str, str]) -> list[Service]:
    filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
    with engine_errors():
        found = client().services.list(filters=filters)
    return [s for s in found if matches_labels(s.attrs["Spec"].get("Labels") or {}, labels)]


def _labelled_secrets(labels: dict[str, str]) -> list[Any]:
    filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
    with engine_errors():
        found = client().secrets.list(filters=filters)
    return [s for s in found if matches_labels(s.attrs["Spec"].get("Labels") or {}, labels)]


def _remove_service(service: Service) -> None:
    with engine_errors(), contextlib.suppress(docker.errors.NotFound):
        service.remove()


def _remove_secret(secret_id: str) -> None:
    if not secret_id:
        return
    with engine_errors(), contextlib.suppress(docker.errors.NotFound):
        client().api.remove_secret(secret_id)
