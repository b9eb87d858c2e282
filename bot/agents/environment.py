"""The agent process environment and its fresh per-run home."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

# Variables kept from the service environment, by exact name.
KEPT_NAMES = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "CLOUD_ML_REGION",
})
# Variables kept by prefix: locale and model provider settings.
KEPT_PREFIXES = (
    "LC_",
    "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "VERTEX_", "AZURE_OPENAI_",
    "OPENROUTER_", "MISTRAL_", "DEEPSEEK_", "GROQ_", "OLLAMA_", "AWS_",
    "CLAUDE_CODE_USE_",  # CLAUDE_CODE_USE_BEDROCK / _VERTEX select the provider
)
# Never passed, even when a prefix above would match.
DROPPED_NAMES = frozenset({"GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN"})
DROPPED_PREFIX = "AGENTRY_"


def home_layout(home: Path) -> dict[str, str]:
    """HOME, XDG dirs, CODEX_HOME and CLAUDE_CONFIG_DIR, all under ``home``."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "CODEX_HOME": str(home / ".codex"),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
    }


def is_kept(name: str) -> bool:
    if name.startswith(DROPPED_PREFIX) or name in DROPPED_NAMES:
        return False
    return name in KEPT_NAMES or name.startswith(KEPT_PREFIXES)


def build_environment(
    base_env: Mapping[str, str],
    home: Path,
    quiet_env: Iterable[Mapping[str, str]],
    extra: Mapping[str, str],
) -> dict[str, str]:
    env = {name: value for name, value in base_env.items() if is_kept(name)}
    env.setdefault("PATH", os.defpath)
    env.update(home_layout(home))
    for flags in quiet_env:
        env.update(flags)
    env.update(extra)
    return env


def prepare_home(home: Path) -> None:
    """Creates the home and its layout. A home kept across runs was the agent's to change, so a
    symlink or file where a directory belongs is removed first rather than followed."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in home_layout(home).values():
        safe_directory(home, Path(path).relative_to(home))


def safe_directory(home: Path, relative: Path) -> Path:
    current = home
    for part in relative.parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
        current.mkdir(mode=0o700, exist_ok=True)
    return current


def install_config(home: Path, relative: str, source: str | None, default: str | None) -> Path | None:
    """Copy the operator's config file (or write the default) to ``home/relative``, never through a link."""
    if not source and default is None:
        return None
    target = safe_directory(home, Path(relative).parent) / Path(relative).name
    data = Path(source).read_bytes() if source else (default or "").encode("utf-8")
    if target.is_symlink() or target.is_dir():
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return target
