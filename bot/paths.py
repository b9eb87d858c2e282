"""Filesystem paths a request names: absolute, and inside the directories the operator allows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote

from bot.config import Settings

ALLOWED_PATHS_VARIABLE = "AGENTRY_ALLOWED_PATHS"
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
SCP_LIKE = re.compile(r"^[^/]*:")  # host:path, or a remote helper's transport::address


class PathNotAllowed(ValueError):
    """The path is relative or outside every allowed root; the message says which roots are allowed."""


def confine(path: str, roots: Iterable[Path]) -> Path:
    """The resolved path (symlinks followed, `..` collapsed) when it lies inside one of the resolved roots."""
    if "\x00" in path:
        raise PathNotAllowed("must not contain NUL characters")
    if not Path(path).is_absolute():
        raise PathNotAllowed("must be an absolute path")
    resolved = _resolved(path)
    allowed = [_resolved(str(root)) for root in roots]
    if not any(resolved.is_relative_to(root) for root in allowed):
        listed = ", ".join(str(root) for root in allowed) or "(none)"
        raise PathNotAllowed(f"must be inside one of {listed} (the data directory and {ALLOWED_PATHS_VARIABLE}; "
                             f"add a directory to {ALLOWED_PATHS_VARIABLE} to allow it)")
    return resolved


def _resolved(path: str) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as exc:
        raise PathNotAllowed(f"cannot be resolved: {exc}") from None


def local_git_path(url: str) -> str | None:
    """The filesystem path a git URL names (a plain path or file://), or None for a remote URL."""
    if url[:7].lower() == "file://":
        host, _, path = url[7:].partition("/")
        if host.lower() not in ("", "localhost"):
            raise PathNotAllowed("a file:// URL must name a path on this machine")
        return "/" + path
    if URL_SCHEME.match(url) or SCP_LIKE.match(url):
        return None
    return url


def confine_git_url(url: str, roots: Iterable[Path]) -> None:
    """Refuses a git URL that names a local path outside the roots; a remote URL passes."""
    path = local_git_path(url)
    if path is None:
        return
    roots = tuple(roots)
    for candidate in {path, unquote(path)}:
        confine(candidate, roots)


def allowed_roots(settings: Settings) -> tuple[Path, ...]:
    return (settings.data_dir, *settings.allowed_paths)
