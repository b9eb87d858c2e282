"""How each real agent CLI is pointed at the scripted model server: the provider variables it reads
from agentry's environment, and the agentry settings (config files, arguments) it needs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Provider:
    env: dict[str, str] = field(default_factory=dict)  # variables agentry passes on to the agent
    settings: dict[str, str] = field(default_factory=dict)  # AGENTRY_* settings


def scripted_provider(engine: str, url: str, directory: Path) -> Provider:
    """``url`` is the model server's base URL; config files are written to ``directory``."""
    if engine == "codex":
        config = directory / "codex.toml"
        config.write_text(
            'model = "gpt-5.5"\nmodel_provider = "scripted"\n[model_providers.scripted]\nname = "scripted"\n'
            f'base_url = "{url}/v1"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
            "request_max_retries = 0\nstream_max_retries = 0\n")
        return Provider({"OPENAI_API_KEY": "scripted"}, {"AGENTRY_CODEX_CONFIG": str(config)})
    if engine == "claude":
        return Provider({"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "scripted"})
    if engine == "opencode":
        config = directory / "opencode.json"
        # The operator allows every edit: read-only runs must stay read-only all the same.
        config.write_text(json.dumps({
            "model": "scripted/m", "small_model": "scripted/m", "autoupdate": False, "share": "disabled",
            "permission": {"edit": "allow", "bash": "allow"},
            "provider": {"scripted": {"npm": "@ai-sdk/anthropic", "name": "Scripted",
                                      "options": {"baseURL": f"{url}/v1", "apiKey": "scripted"},
                                      "models": {"m": {"name": "m", "tool_call": True,
                                                       "limit": {"context": 200000, "output": 8192}}}}}}))
        return Provider({}, {"AGENTRY_OPENCODE_CONFIG": str(config)})
    if engine == "gemini":
        return Provider({"GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": "scripted"})
    if engine == "aider":
        return Provider({"OPENAI_API_BASE": f"{url}/v1", "OPENAI_API_KEY": "scripted"},
                        {"AGENTRY_AIDER_ARGS": "--model openai/gpt-4o"})
    raise ValueError(f"no scripted provider for {engine}")
