"""The Docker runtime, and the only module in etlctl that imports the docker SDK.

Containers are started detached and removed by us (never ``auto_remove``: the logs and the
exit code must be read first). Each one runs as the host user's uid:gid, without
privileges or capabilities, on a read-only root filesystem with a private /tmp, never with
the Docker socket, and with exactly one environment variable, ``ETLCTL_RUN_FILE``: config
and secrets reach it only through the read-only run file (``docker inspect`` shows no
secret).

Image building for ``etlctl images`` also talks to the engine through this module
(:func:`build_image`, :func:`image_details`); :mod:`etlctl.runtime.images` prepares what is
built.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from etlctl.errors import (
    ConflictError,
    EtlctlError,
    ImageMissingError,
    ServiceUnavailableError,
    SyncTimeoutError,
)
from etlctl.runtime.base import (
    CONTAINER_RUN_FILE,
    RUN_FILE_ENV,
    VANISHED_EXIT_CODE,
    ConnectorLaunch,
    Leftover,
    matches_labels,
)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Generous: building or removing can take a while on a busy engine.
API_TIMEOUT_SECONDS = 120
RUNNING_STATES = frozenset({"created", "running", "restarting", "paused"})
# Built-in image names look like etlctl/extractor-csv:0.1.0.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
BUILT_IN_IMAGE = re.compile(r"^etlctl/(?:extractor|loader)-(?P<type>[a-z0-9_]+):")


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def engine_unreachable(reason: object = None) -> ServiceUnavailableError:
    detail = f": {reason}" if reason else ""
    return ServiceUnavailableError(
        f"Docker engine is not reachable at {docker_host()}{detail}",
        hint="start it: sudo systemctl start docker, or run scripts/ensure-services.sh docker",
    )


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Turn the SDK's connection failures into one clear ServiceUnavailableError."""
    try:
        yield
    except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout) as exc:
        raise engine_unreachable() from exc
    except docker.errors.DockerException as exc:
        if isinstance(exc, docker.errors.APIError):
            raise  # the engine answered; callers decide what the answer means
        raise engine_unreachable(_short(exc)) from exc


def _short(exc: BaseException) -> str:
    """The first line of an SDK error, without the long URL prefixes it carries."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


_clients: dict[str, docker.DockerClient] = {}


def client() -> docker.DockerClient:
    """A client for the engine in DOCKER_HOST (default: the local socket), made once."""
    host = docker_host()
    if host not in _clients:
        with engine_errors():
            _clients[host] = docker.from_env(timeout=API_TIMEOUT_SECONDS)
    return _clients[host]


def missing_image_hint(image: str) -> str:
    built_in = BUILT_IN_IMAGE.match(image)
    if built_in:
        return f"build it: etlctl images build {built_in.group('type')}"
    return f"build or pull it: docker pull {image}"


@dataclass
class DockerHandle:
    """A started container; ``peak_memory`` is the highest usage seen by stats polls."""

    container: Container
    name: str
    peak_memory: int | None = None


class DockerRuntime:
    """Runs each connector as a Docker container (see the module docstring)."""

    name = "docker"

    def preflight(self) -> None:
        with engine_errors():
            client().ping()

    def ensure_image(self, image: str) -> None:
        with engine_errors():
            try:
                client().images.get(image)
            except docker.errors.ImageNotFound:
                raise ImageMissingError(
                    f"image {image} is missing", hint=missing_image_hint(image)
                ) from None

    def start(self, launch: ConnectorLaunch) -> DockerHandle:
        with engine_errors():
            try:
                container = client().containers.run(
                    launch.image, list(launch.command), detach=True, **container_options(launch)
                )
            except docker.errors.ImageNotFound:
                raise ImageMissingError(
                    f"image {launch.image} is missing", hint=missing_image_hint(launch.image)
                ) from None
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise ConflictError(
                        f"a container named {launch.name} exists already",
                        hint="remove leftovers: etlctl gc",
                    ) from None
                # run() creates, then starts: a start that fails (an unknown network, a
                # mount) leaves a created container that nothing else would remove.
                with contextlib.suppress(docker.errors.APIError):
                    _remove_container(client().containers.get(launch.name))
                raise EtlctlError(
                    f"Docker could not start {launch.name}: {exc.explanation or _short(exc)}"
                ) from None
        return DockerHandle(container=container, name=launch.name)

    def exit_code(self, handle: DockerHandle) -> int | None:
        with engine_errors():
            try:
                handle.container.reload()
            except docker.errors.NotFound:
                return VANISHED_EXIT_CODE
        if handle.container.status in RUNNING_STATES:
            return None
        return int(handle.container.attrs["State"]["ExitCode"])

    def stop(self, handle: DockerHandle, timeout: float = 5) -> None:
        with engine_errors(), contextlib.suppress(docker.errors.NotFound):
            handle.container.stop(timeout=max(0, round(timeout)))

    def logs(self, handle: DockerHandle) -> str:
        return self._output(handle.container, stdout=True, stderr=True)

    def remove(self, handle: DockerHandle) -> None:
        _remove_container(handle.container)

    def remove_leftovers(self, labels: dict[str, str]) -> list[str]:
        removed = []
        for container in self._labelled_containers(labels):
            _remove_container(container)
            removed.append(container.name)
        return removed

    def collect_leftovers(self, labels: dict[str, str]) -> list[Leftover]:
        collected = []
        for container in self._labelled_containers(labels):
            code: int | None = None
            if container.status in RUNNING_STATES:
                with engine_errors(), contextlib.suppress(docker.errors.APIError):
                    container.kill()  # first, so that the logs read below are complete
            else:
                code = int(container.attrs["State"]["ExitCode"])
            logs = self._output(container, stdout=True, stderr=True)
            _remove_container(container)
            collected.append(Leftover(container.name, dict(container.labels), code, logs))
        return collected

    def labelled(self, labels: dict[str, str]) -> list[dict[str, str]]:
        return [dict(container.labels) for container in self._labelled_containers(labels)]

    @staticmethod
    def _labelled_containers(labels: dict[str, str]) -> list[Container]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with engine_errors():
            found = client().containers.list(all=True, filters=filters)
        # Belt and braces over the filter.
        return [container for container in found if matches_labels(container.labels, labels)]

    def run_once(self, launch: ConnectorLaunch, timeout: float) -> tuple[int, str, str]:
        handle = self.start(launch)
        try:
            try:
                with engine_errors():
                    result = handle.container.wait(timeout=timeout)
            except ServiceUnavailableError as exc:
                # wait() reports its timeout as a requests ReadTimeout / ConnectionError.
                if self.exit_code(handle) is None:
                    raise SyncTimeoutError(
                        f"{launch.name} did not finish within {timeout:g} s"
                    ) from exc
                raise
            code = int(result.get("StatusCode", VANISHED_EXIT_CODE))
            stdout = self._output(handle.container, stdout=True, stderr=False)
            stderr = self._output(handle.container, stdout=False, stderr=True)
            return code, stdout, stderr
        finally:
            self.remove(handle)

    def stats_peak_memory(self, handle: DockerHandle) -> int | None:
        try:
            with engine_errors():
                stats = handle.container.stats(stream=False, one_shot=True)
        except (EtlctlError, docker.errors.APIError):
            return handle.peak_memory
        memory = stats.get("memory_stats") or {}
        # cgroup v1 reports the peak itself (max_usage); v2 only the current usage.
        seen = memory.get("max_usage") or memory.get("usage")
        if isinstance(seen, int):
            handle.peak_memory = max(seen, handle.peak_memory or 0)
        return handle.peak_memory

    @staticmethod
    def _output(container: Container, *, stdout: bool, stderr: bool) -> str:
        with engine_errors():
            try:
                raw = container.logs(stdout=stdout, stderr=stderr)
            except docker.errors.NotFound:
                return ""
        return raw.decode("utf-8", errors="replace")


def container_options(launch: ConnectorLaunch) -> dict[str, Any]:
    """The keyword arguments of ``containers.run`` that enforce the isolation rules."""
    volumes = {launch.run_file: {"bind": CONTAINER_RUN_FILE, "mode": "ro"}}
    for mount in launch.mounts:
        mode = "ro" if mount.read_only else "rw"
        volumes[mount.host_path] = {"bind": mount.host_path, "mode": mode}
    network = {"network_mode": "host"} if launch.network == "host" else {"network": launch.network}
    return {
        "name": launch.name,
        "labels": dict(launch.labels),
        "user": f"{os.getuid()}:{os.getgid()}",
        # The only variable: a path. Values would be visible in `docker inspect`.
        "environment": {RUN_FILE_ENV: CONTAINER_RUN_FILE},
        "volumes": volumes,
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        # Connectors may need scratch space; 1777 so that any uid can use it.
        "tmpfs": {"/tmp": "rw,nosuid,nodev,mode=1777"},
        **network,
    }


def _remove_container(container: Container) -> None:
    """Kill and remove; a container that is gone or already being removed is fine."""
    with engine_errors():
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise


# --- images -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageDetails:
    id: str
    size: int
    created: str
    labels: dict[str, str] = field(default_factory=dict)


def image_details(image: str) -> ImageDetails | None:
    """The local image's id, size and creation time, or None when it is not present."""
    with engine_errors():
        try:
            found = client().images.get(image)
        except docker.errors.ImageNotFound:
            return None
    return ImageDetails(
        id=found.short_id.removeprefix("sha256:"),
        size=int(found.attrs.get("Size", 0)),
        created=str(found.attrs.get("Created", "")),
        labels=dict((found.attrs.get("Config") or {}).get("Labels") or {}),
    )


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    os: str


def engine_info() -> EngineInfo:
    """The engine's version (ServiceUnavailableError when it does not answer)."""
    with engine_errors():
        found = client().version()
    return EngineInfo(
        version=str(found.get("Version", "?")),
        api_version=str(found.get("ApiVersion", "?")),
        os=f"{found.get('Os', '?')}/{found.get('Arch', '?')}",
    )


def network_exists(name: str) -> bool:
    with engine_errors():
        try:
            client().networks.get(name)
        except docker.errors.NotFound:
            return False
    return True


def build_image(
    context: IO[bytes],
    dockerfile: str,
    tag: str,
    buildargs: dict[str, str],
    progress: Callable[[str], None],
    labels: dict[str, str] | None = None,
) -> str:
    """Build ``tag`` from a tar build context, streaming the builder's lines to ``progress``.

    Returns the image id. Raises EtlctlError with the builder's message when the build fails.
    """
    image_id = ""
    with engine_errors():
        stream = client().api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=dockerfile,
            tag=tag,
            buildargs=buildargs,
            labels=labels or {},
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,  # a local base image must not be replaced by (or fail on) a pull
        )
        for chunk in stream:
            if "error" in chunk:
                raise EtlctlError(
                    f"building {tag} failed: {str(chunk['error']).strip()}",
                    hint=_build_error_hint(str(chunk["error"])),
                )
            # A chunk may hold several lines, some wrapped in colour escapes (stderr).
            for line in ANSI_ESCAPE.sub("", str(chunk.get("stream", ""))).splitlines():
                if line.strip():
                    progress(line.rstrip())
            image_id = chunk.get("aux", {}).get("ID", image_id)
    return image_id


def _build_error_hint(message: str) -> str | None:
    if "pull access denied" in message or "manifest" in message or "dial tcp" in message:
        return (
            "the base image could not be pulled; on hosts without a registry build one with "
            "scripts/build-base-image.sh and pass --base-image etlctl/base-python:3.11-bookworm"
        )
    return None
