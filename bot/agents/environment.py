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
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in home_layout(home).values():
        Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)


def install_config(home: Path, relative: str, source: str | None, default: str | None) -> Path | None:
    """Copy the operator's config file (or write the default) to ``home/relative``."""
    if not source and default is None:
        return None
    target = home / relative
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if source:
        shutil.copyfile(source, target)
    else:
        target.write_text(default or "", encoding="utf-8")
    target.chmod(0o600)
    return target
