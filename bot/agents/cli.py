"""The pieces of an engine's command line: its executable, the operator's extra arguments, the prompt,
model and session as argv elements that cannot be read as options, and the options agentry decides."""

from __future__ import annotations

import re
from pathlib import Path

from .base import AgentRequest, EngineConfig


def executable(name: str, config: EngineConfig) -> str:
    """The configured path of the engine (``AGENTRY_<ENGINE>_BIN``) or its bare name."""
    return config.bins.get(name) or name


def extra_args(name: str, config: EngineConfig) -> list[str]:
    return list(config.extra_args.get(name, ()))


def prompt_argument(prompt: str) -> str:
    """The prompt as one argv element.

    A leading ``-`` would be read as an option by every CLI parser, so it gets a
    leading space; NUL bytes cannot travel in argv and are dropped.
    """
    text = prompt.replace("\0", "")
    return " " + text if text.startswith("-") else text


_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def session_argument(session_id: str) -> str:
    if not _SESSION_ID.match(session_id):
        raise ValueError(f"invalid session id: {session_id!r}")
    return session_id


def model_argument(model: str) -> str:
    if not model or model.startswith("-") or "\0" in model:
        raise ValueError(f"invalid model name: {model!r}")
    return model


def model_and_session(request: AgentRequest, model_flag: str, session_flag: str | None = None) -> list[str]:
    """The arguments naming the run's model and the session it resumes, as the CLI spells them."""
    argv = [model_flag, model_argument(request.model)] if request.model else []
    if request.session_id and session_flag:
        argv += [session_flag, session_argument(request.session_id)]
    return argv


def no_run_env(request: AgentRequest, home: Path, config_file: Path | None, config: EngineConfig) -> dict[str, str]:
    """For a CLI that needs no variables of its own."""
    return {}


def has_option(args: list[str], names: tuple[str, ...]) -> bool:
    """True if ``args`` holds one of the options, as ``--x``, ``--x=v`` or ``-x``."""
    long_names = tuple(name + "=" for name in names if name.startswith("--"))
    return any(arg in names or (long_names and arg.startswith(long_names)) for arg in args)


def without_options(args: list[str], flags: tuple[str, ...], valued: tuple[str, ...]) -> list[str]:
    """``args`` less the options agentry decides itself: ``flags`` alone, ``valued`` with their value
    (``-s X``, ``--sandbox X``, ``--sandbox=X``)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in flags or any(arg.startswith(name + "=") for name in (*flags, *valued) if name.startswith("--")):
            continue
        elif arg in valued:
            skip = True
        else:
            kept.append(arg)
    return kept


def outer_sandbox(config: EngineConfig) -> bool:
    """True when agentry's own sandbox contains the run."""
    return config.sandbox is not None and getattr(config.sandbox, "name", "none") != "none"
