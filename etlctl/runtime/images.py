"""Building and listing the built-in connector images (``etlctl images``).

Two layers, both from ``dockerfiles/``:

* ``etlctl/connector-runtime:<version>`` (runtime.Dockerfile): the base image (build ARG
  ``BASE_IMAGE``, default ``python:3.11-slim``), the connectors' Python dependencies
  installed from a wheelhouse in the build context, and the ``connectors`` package;
* ``etlctl/<role>-<type>:<version>`` (``<role>-<type>.Dockerfile``): the runtime image plus
  labels and the entrypoint ``python3 -m connectors ROLE TYPE``.

``<version>`` is ``connectors.image_tag()`` (the version, unless ``$ETLCTL_IMAGE_TAG`` names
another tag), the same function the registry uses to name the image a sync runs, so a build
always produces what etlctl will look for.

The wheelhouse is downloaded on the host (containers may have no route to PyPI) by ``pip
download`` for CPython 3.11 manylinux x86-64, and cached under
``~/.cache/etlctl/wheelhouse-<hash>``: a second build needs no network. Offline hosts point
``ETLCTL_WHEELHOUSE`` at a directory of wheels prepared elsewhere (it must hold pip's wheel).

This module never imports the docker SDK: the engine is reached through
:mod:`etlctl.runtime.docker`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import connectors
from connectors import __version__, image_tag
from connectors.registry import ConnectorInfo, all_connectors
from etlctl.errors import (
    ImageMissingError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)

Progress = Callable[[str], None]

RUNTIME_DOCKERFILE = "runtime.Dockerfile"
RUNTIME_ROLE = "runtime"
# The images run CPython 3.11 on x86-64 glibc (python:3.11-slim, or Debian 12's python3).
WHEEL_PYTHON_VERSION = "3.11"
WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
WHEELHOUSE_ENV = "ETLCTL_WHEELHOUSE"
DOCKERFILES_ENV = "ETLCTL_DOCKERFILES"
# Builder output lines are passed to the progress callback indented by this prefix, so that
# a display can tell them from etlctl's own "building IMAGE" lines.
BUILDER_LINE_PREFIX = "  "
PIP_DOWNLOAD_TIMEOUT_SECONDS = 900


VERSION_LABEL = "org.opencontainers.image.version"
# A hash of the connector code and requirements an image was built from: an image of the
# same version built from other code (a checkout that moved on) is stale too.
DIGEST_LABEL = "io.etlctl.connectors-digest"


def runtime_image() -> str:
    return f"etlctl/connector-runtime:{image_tag()}"


@dataclass(frozen=True)
class ImageStatus:
    type: str  # connector type, "-" for the runtime image
    role: str  # "extractor" | "loader" | "runtime"
    image: str
    present: bool
    id: str | None = None
    size: int | None = None  # bytes
    created: str | None = None  # ISO 8601, from the engine
    stale: str | None = None  # why the image does not match this etlctl, when it does not

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- what to build ------------------------------------------------------------------------
def select_connectors(types: Iterable[str] | None) -> list[ConnectorInfo]:
    """The connectors named by ``types`` ("csv" means every role of it; "loader-csv" one);
    all of them when ``types`` is empty or None."""
    known = sorted(all_connectors(), key=lambda info: (info.role, info.type))
    wanted = [t.strip().lower() for t in (types or []) if t.strip()]
    if not wanted:
        return known
    unknown = [
        t for t in wanted if not any(t in (info.type, f"{info.role}-{info.type}") for info in known)
    ]
    if unknown:
        names = ", ".join(sorted({info.type for info in known}))
        raise ValidationError(
            f"unknown connector type: {', '.join(unknown)}; built-in types: {names}",
            hint="etlctl images list",
        )
    return [info for info in known if info.type in wanted or f"{info.role}-{info.type}" in wanted]


def dockerfiles_dir() -> Path:
    """``$ETLCTL_DOCKERFILES``, else ``dockerfiles/`` of the checkout etlctl runs from."""
    explicit = os.environ.get(DOCKERFILES_ENV)
    candidates = [Path(explicit)] if explicit else []
    candidates.append(Path(__file__).resolve().parents[2] / "dockerfiles")  # a checkout
    candidates.append(Path(sys.prefix) / "share" / "etlctl" / "dockerfiles")  # an install
    for candidate in candidates:
        if (candidate / RUNTIME_DOCKERFILE).is_file():
            return candidate
    raise NotFoundError(
        f"the connector Dockerfiles were not found (looked in {', '.join(map(str, candidates))})",
        hint=f"set {DOCKERFILES_ENV} to the dockerfiles/ directory of an etlctl checkout",
    )


def connector_dockerfile(info: ConnectorInfo) -> str:
    return f"{info.role}-{info.type}.Dockerfile"


def requirements_text() -> str:
    """The connectors' requirements (connectors/requirements.txt, which they maintain)."""
    shipped = Path(connectors.__file__).resolve().parent / "requirements.txt"
    try:
        return shipped.read_text(encoding="utf-8")
    except FileNotFoundError:
        # It is package data (pyproject.toml): missing means a broken installation. A copy
        # kept here as a fallback had already drifted from it (no requests: no http image).
        raise NotFoundError(
            f"{shipped} is missing: this etlctl installation is incomplete",
            hint="reinstall it: pip install --force-reinstall etlctl",
        ) from None


def connectors_digest(requirements: str) -> str:
    """What the images are built from: the connectors package and its requirements."""
    digest = hashlib.sha256(requirements.encode("utf-8"))
    package = Path(connectors.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"} or not path.is_file():
            continue
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def stale_reason(labels: dict[str, str], current_digest: str) -> str | None:
    """Why an image built with these labels is not what this etlctl would build, or None."""
    version = labels.get(VERSION_LABEL)
    if version is not None and version != __version__:
        return f"built by etlctl {version}, this is {__version__}"
    digest = labels.get(DIGEST_LABEL)
    if digest is not None and digest != current_digest:
        return "built from other connector code than this etlctl's"
    return None


# --- the wheelhouse -----------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "etlctl"


def wheelhouse_key(requirements: str) -> str:
    """Changes whenever what would be downloaded changes."""
    material = "\n".join([requirements, WHEEL_PYTHON_VERSION, *WHEEL_PLATFORMS])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


def ensure_wheelhouse(requirements: str, progress: Progress) -> Path:
    """A directory of wheels for ``requirements`` plus pip's own wheel; cached."""
    explicit = os.environ.get(WHEELHOUSE_ENV)
    if explicit:
        return _checked_wheelhouse(Path(explicit).expanduser())
    target = cache_dir() / f"wheelhouse-{wheelhouse_key(requirements)}"
    if (target / ".complete").is_file():
        progress(f"wheelhouse: using the cached {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download into a fresh directory and rename it into place: an interrupted download
    # never looks like a complete wheelhouse.
    staging = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=target.parent))
    try:
        progress(f"wheelhouse: downloading wheels into {target}")
        _pip_download(requirements, staging)
        (staging / ".complete").touch()
        try:
            staging.rename(target)
        except OSError:  # a concurrent build finished first: use its wheelhouse
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pip_download(requirements: str, destination: Path) -> None:
    requirements_file = destination / "requirements.in"
    requirements_file.write_text(requirements, encoding="utf-8")
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "--python-version", WHEEL_PYTHON_VERSION,
        "--implementation", "cp", *platforms,
        "-d", str(destination), "-r", str(requirements_file), "pip",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise _wheel_download_failed("pip download timed out") from None
    requirements_file.unlink()
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise _wheel_download_failed(lines[-1] if lines else f"exit code {result.returncode}")


def _wheel_download_failed(reason: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"could not download the connectors' Python wheels: {reason}",
        hint=(
            "make PyPI reachable for one build (the wheelhouse is cached afterwards), or set "
            f"{WHEELHOUSE_ENV} to a directory of cp311 manylinux wheels that includes pip"
        ),
    )


def _checked_wheelhouse(directory: Path) -> Path:
    if not any(directory.glob("pip-*.whl")):
        raise NotFoundError(
            f"{WHEELHOUSE_ENV}={directory} holds no pip wheel (pip-*.whl)",
            hint=f"pip download pip -d {directory}",
        )
    return directory


# --- build contexts -----------------------------------------------------------------------
def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))


def _add_tree(archive: tarfile.TarFile, source: Path, name: str) -> None:
    """Add a directory with normalized owner, modes and times.

    World-readable modes matter: containers run as the host user. Fixed times keep the
    context byte-identical between builds, so Docker's layer cache hits.
    """
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if "__pycache__" in relative.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        if path.is_dir():
            info = tarfile.TarInfo(f"{name}/{relative}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            archive.addfile(info)
        elif path.is_file():
            _add_bytes(archive, f"{name}/{relative}", path.read_bytes())


def runtime_context(dockerfiles: Path, wheelhouse: Path, requirements: str) -> IO[bytes]:
    """The runtime image's build context: Dockerfile, wheels/, connectors/."""
    context = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    with tarfile.open(fileobj=context, mode="w") as archive:
        _add_bytes(archive, RUNTIME_DOCKERFILE, (dockerfiles / RUNTIME_DOCKERFILE).read_bytes())
        for wheel in sorted(wheelhouse.glob("*.whl")):
            _add_bytes(archive, f"wheels/{wheel.name}", wheel.read_bytes())
        _add_bytes(archive, "wheels/requirements.txt", requirements.encode("utf-8"))
        _add_tree(archive, Path(connectors.__file__).resolve().parent, "connectors")
    context.seek(0)
    return context


def dockerfile_context(dockerfiles: Path, dockerfile: str) -> IO[bytes]:
    """A connector image needs nothing but its Dockerfile."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        _add_bytes(archive, dockerfile, (dockerfiles / dockerfile).read_bytes())
    context.seek(0)
    return context


# --- the two commands ---------------------------------------------------------------------
def build_images(types: list[str] | None, base_image: str | None, progress: Progress) -> list[str]:
    """Build the runtime image, then the selected connector images; return their tags.

    ``base_image`` None keeps runtime.Dockerfile's default (python:3.11-slim).
    Builder output goes to ``progress`` indented by BUILDER_LINE_PREFIX.
    """
    from etlctl.runtime.docker import DockerRuntime, build_image

    selected = select_connectors(types)
    dockerfiles = dockerfiles_dir()
    missing = [connector_dockerfile(i) for i in selected
               if not (dockerfiles / connector_dockerfile(i)).is_file()]  # fmt: skip
    if missing:
        raise NotFoundError(f"missing Dockerfiles in {dockerfiles}: {', '.join(missing)}")
    DockerRuntime().preflight()
    _require_local_base_image(base_image or default_base_image(dockerfiles))

    requirements = requirements_text()
    wheelhouse = ensure_wheelhouse(requirements, progress)
    labels = {VERSION_LABEL: __version__, DIGEST_LABEL: connectors_digest(requirements)}
    builder_progress = _indented(progress)
    total = len(selected) + 1

    progress(f"building {runtime_image()} [1/{total}]")
    base_args = {"BASE_IMAGE": base_image} if base_image else {}
    with runtime_context(dockerfiles, wheelhouse, requirements) as context:
        build_image(
            context, RUNTIME_DOCKERFILE, runtime_image(), base_args, builder_progress, labels
        )
    built = [runtime_image()]
    for number, info in enumerate(selected, start=2):
        progress(f"building {info.image} [{number}/{total}]")
        dockerfile = connector_dockerfile(info)
        build_image(
            dockerfile_context(dockerfiles, dockerfile),
            dockerfile,
            info.image,
            {"RUNTIME_IMAGE": runtime_image()},
            builder_progress,
            labels,
        )
        built.append(info.image)
    return built


def default_base_image(dockerfiles: Path) -> str:
    """The ``ARG BASE_IMAGE=...`` default of runtime.Dockerfile."""
    text = (dockerfiles / RUNTIME_DOCKERFILE).read_text(encoding="utf-8")
    found = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)
    if found is None:
        raise NotFoundError(f"{RUNTIME_DOCKERFILE} declares no default BASE_IMAGE")
    return found.group(1)


def _require_local_base_image(base_image: str) -> None:
    """The builder never pulls: a missing base image would make Docker ask a registry for it
    anyway (and fail slowly, or offline). Refuse it before the build, exit 6."""
    from etlctl.runtime.docker import image_details

    if image_details(base_image) is None:
        raise ImageMissingError(
            f"base image {base_image} is not on this Docker engine, and etlctl never pulls",
            hint=f"docker pull {base_image} (with a registry), or build one without: "
            "scripts/build-base-image.sh, then --base-image etlctl/base-python:3.11-bookworm",
        )


def list_images() -> list[ImageStatus]:
    """The runtime image and every built-in connector image, present or missing."""
    from etlctl.runtime.docker import DockerRuntime, image_details

    DockerRuntime().preflight()
    wanted = [("-", RUNTIME_ROLE, runtime_image())] + [
        (info.type, info.role, info.image) for info in select_connectors(None)
    ]
    digest = connectors_digest(requirements_text())
    statuses = []
    for connector_type, role, image in wanted:
        details = image_details(image)
        statuses.append(
            ImageStatus(
                type=connector_type,
                role=role,
                image=image,
                present=details is not None,
                id=details.id if details else None,
                size=details.size if details else None,
                created=details.created if details else None,
                stale=stale_reason(details.labels, digest) if details else None,
            )
        )
    return statuses


def _indented(progress: Progress) -> Progress:
    def forward(line: str) -> None:
        progress(BUILDER_LINE_PREFIX + line)

    return forward
