"""Where etlctl keeps its files: the store, and beside it run logs and locks."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "ETLCTL_STORE"


def default_store_path() -> Path:
    """``$ETLCTL_STORE``, else ``$XDG_DATA_HOME/etlctl/store.json``, else ~/.local/share."""
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser().absolute() / "etlctl" / "store.json"


def home_for(store_path: Path) -> Path:
    """The directory that holds the store and everything etlctl writes beside it."""
    return store_path.parent


def logs_dir(store_path: Path) -> Path:
    return home_for(store_path) / "logs"


def locks_dir(store_path: Path) -> Path:
    return home_for(store_path) / "locks"


def ensure_private_dir(path: Path) -> Path:
    """Create a directory readable only by its owner (logs and run files may name hosts)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
