"""What agentry writes is its own: umask 0077, a 0700 data directory, a 0600 SQLite database."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from bot.config import Settings

log = logging.getLogger("agentry")

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH
PRIVATE_KEY_PATH_VARIABLE = "AGENTRY_GITHUB_PRIVATE_KEY_PATH"
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def prepare(settings: Settings) -> None:
    """Start-up, before anything is written: the umask, the data directory, a warning for a shared key file."""
    os.umask(PRIVATE_UMASK)
    private_dir(settings.data_dir)
    warn_if_readable_by_others(settings.environment.get(PRIVATE_KEY_PATH_VARIABLE), PRIVATE_KEY_PATH_VARIABLE)


def private_dir(path: Path) -> None:
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)


def private_database(settings: Settings) -> None:
    """The SQLite database file (and its journal files) 0600, when it lies in the data directory."""
    path = sqlite_path(settings.database_url)
    if path is None or not path.resolve().is_relative_to(settings.data_dir.resolve()):
        return
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.chmod(PRIVATE_FILE_MODE)


def sqlite_path(database_url: str) -> Path | None:
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split(":///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def warn_if_readable_by_others(path: str | None, variable: str) -> bool:
    """Logs one warning naming `variable` when the file it names is readable by group or others."""
    if not path:
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if not mode & READABLE_BY_OTHERS:
        return False
    log.warning(f"{variable} names a file that group or others can read: chmod 600 it", extra={"path": path})
    return True
