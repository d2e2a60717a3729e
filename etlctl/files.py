"""Files etlctl writes for a user (the store, exports): through symlinks, never onto devices.

A write goes to a temp file beside the *target* of a symlink and is renamed over that target,
so the link stays a link (``os.replace`` onto the link's own path would turn it into a
regular file). Only regular files are written: a FIFO would block the command and a device
(``/dev/full``) would be replaced by a regular file, so both are refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from etlctl.errors import EtlctlError, ValidationError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def real_path(path: Path | str) -> Path:
    """The absolute path with every symlink followed (the file a write must replace)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def not_a_regular_file(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a FIFO"), else None."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # unreadable: the read or write that follows says why
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def writable_target(path: Path) -> Path:
    """The real file a write to ``path`` replaces; refused when it is not a regular file."""
    target = real_path(path)
    kind = not_a_regular_file(target)
    if kind is not None:
        shown = f"{path} (-> {target})" if target != Path(path).absolute() else str(path)
        raise ValidationError(
            f"cannot write {shown}: it is {kind}; etlctl writes only regular files",
            hint="name a regular file, or leave out --output to write to stdout",
        )
    if not target.parent.is_dir():
        raise ValidationError(f"cannot write {path}: directory {target.parent} does not exist")
    return target


def write_atomically(path: Path, data: bytes, mode: int = 0o644, fsync: bool = True) -> Path:
    """Write ``data`` to the file ``path`` names (through symlinks) all or nothing: a temp
    file beside it, fsync, rename. Returns the file written. A failed write (a full disk,
    a quota) is an error, and leaves the old file as it was."""
    target = writable_target(path)
    try:
        fd, temp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise EtlctlError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except OSError as exc:
        _unlink_quietly(temp_name)
        raise EtlctlError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(temp_name)
        raise
    return target


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
