"""Container runtimes: where connectors run (see :mod:`etlctl.runtime.base`).

``get_runtime("docker")``, ``get_runtime("swarm")`` or ``get_runtime("local")``. The
implementations are imported on demand so that ``--runtime local`` works where the docker
SDK is unusable, and so that commands that start no connector do not pay for importing it.
"""

from __future__ import annotations

from etlctl.errors import ValidationError
from etlctl.runtime.base import ConnectorLaunch, Handle, Mount, Runtime

RUNTIME_NAMES = ("docker", "swarm", "local")

__all__ = ["RUNTIME_NAMES", "ConnectorLaunch", "Handle", "Mount", "Runtime", "get_runtime"]


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; ValidationError for an unknown name."""
    if name == "docker":
        from etlctl.runtime.docker import DockerRuntime

        return DockerRuntime()
    if name == "swarm":
        from etlctl.runtime.swarm import SwarmRuntime

        return SwarmRuntime()
    if name == "local":
        from etlctl.runtime.local import LocalRuntime

        return LocalRuntime()
    raise ValidationError(
        f"unknown runtime {name!r}; choose from: {', '.join(RUNTIME_NAMES)}",
        hint="--runtime docker (default), --runtime swarm or --runtime local",
    )
