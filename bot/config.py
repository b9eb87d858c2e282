"""Settings from the environment: one frozen object, built once at start-up.

Each setting is declared once, as a field of `Settings`: its type, its default, how its variable is
read and what it means. `from_env` reads the fields in order and the README's configuration table is
made from the same declarations (`settings_table`).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import jwt

from bot.commands import Grammar
from bot.engines import ENGINES

BUDGET_MODES = ("strict", "warn", "off")
SANDBOXES = ("bwrap", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
WEB = ("https", "http")
HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


Read = Callable[["_Reader", str, Any], Any]


@dataclass(frozen=True)
class Spec:
    """How one setting is read and documented. `read` None: derived from other settings in `_derive`."""

    doc: str
    read: Read | None
    shown: str
    env: str = ""


def setting(default: Any, doc: str, read: Read | None, *, shown: str = "", env: str = "", secret: bool = False) -> Any:
    """One setting: its default, what it means, how its variable is read, the default as the README shows it."""
    spec = Spec(doc=doc, read=read, shown=shown or _shown(default), env=env)
    if isinstance(default, dict):
        return field(default_factory=dict, repr=not secret, metadata={"setting": spec})
    return field(default=default, repr=not secret, metadata={"setting": spec})


def _shown(default: Any) -> str:
    if default is None or default in ((), "", {}):
        return "none"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def text(reader: _Reader, name: str, default: Any) -> Any:
    return reader.text(name, default)


def integer(minimum: int = 0, maximum: int | None = None) -> Read:
    return lambda reader, name, default: reader.integer(name, default, minimum, maximum)


def choice(allowed: tuple[str, ...]) -> Read:
    return lambda reader, name, default: reader.choice(name, default, allowed)


def url(schemes: tuple[str, ...]) -> Read:
    def read(reader: _Reader, name: str, default: Any) -> Any:
        value = reader.url(name, default, schemes)
        return value.rstrip("/") if value and schemes == WEB else value

    return read


def per_engine(suffix: str) -> Read:
    return lambda reader, name, default: reader.per_engine(suffix)


def engine_words(reader: _Reader, name: str, default: Any) -> Any:
    return {engine: reader.words(f"AGENTRY_{engine.upper()}_ARGS") for engine in reader.per_engine("ARGS")}


def upper_choice(allowed: tuple[str, ...]) -> Read:
    return lambda reader, name, default: reader.choice(name, default.lower(), allowed).upper()


def method(name: str) -> Read:
    """A `_Reader` method `(variable, default)` as a reader."""
    return lambda reader, variable, default: getattr(reader, name)(variable, default)


DEFAULT_WEB_PROCESSES_MAX = 4  # each holds its own database connections


@dataclass(frozen=True)
class Labels:
    run: str
    plan: str
    ralph: str


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "listen address", method("host"))
    port: int = setting(8010, "listen port", integer(0, 65535))
    data_dir: Path = setting(Path(".agentry"), "repositories, worktrees, run logs, the SQLite file",
                             method("directory"), shown="`./.agentry`")
    database_url: str = setting("", "SQLAlchemy URL; `postgresql+asyncpg://…` for scale", None,
                                shown="SQLite in the data dir")
    redis_url: str | None = setting(None, "arq's Redis; unset = embedded queue and worker in the web process",
                                    url(("redis", "rediss", "unix")))
    api_token: str | None = setting(None, "bearer token for the REST API; unset = no auth, with a loud warning",
                                    text, secret=True)
    dev_mode: bool = setting(False, "`1` generates a webhook secret for the run and prints it once", method("flag"))
    webhook_secret: str = setting("", "GitHub webhook secret; required unless `AGENTRY_DEV_MODE=1`", None,
                                  secret=True)
    github_app_id: str | None = setting(None, "the GitHub App's id; without app credentials GitHub side effects "
                                        "are recorded as events, not sent", text)
    github_private_key: str | None = setting(None, "the GitHub App's private key (PEM; `\\n` may stand for new "
                                             "lines), or `AGENTRY_GITHUB_PRIVATE_KEY_PATH`, a file holding it",
                                             None, secret=True)
    github_api_url: str = setting("https://api.github.com", "GitHub API base (GitHub Enterprise Server, or a "
                                  "test server)", url(WEB))
    github_app_slug: str | None = setting(None, "the app's slug: `@<slug>` mentions, and recognising its own "
                                          "comments", text)
    gitlab_url: str = setting("https://gitlab.com", "GitLab's base URL (self-managed GitLab)", url(WEB))
    gitlab_token: str | None = setting(None, "the access token agentry acts with on GitLab", text, secret=True)
    gitlab_webhook_token: str | None = setting(None, "the GitLab webhook's secret token (`X-Gitlab-Token`)", text,
                                               secret=True)
    gitlab_signing_token: str | None = setting(None, "the GitLab webhook's `whsec_…` signing token", text,
                                               secret=True)
    gitlab_bot_username: str | None = setting(None, "the GitLab account agentry writes as: its notes are never read "
                                              "as commands, and `@<name>` works as a prefix", text,
                                              shown="none (bot-looking names are still ignored)")
    command_prefix: str = setting("/agent", "slash prefix", text)
    label_run: str = setting("agent:run", "label that starts a run", text)
    label_plan: str = setting("agent:plan", "label that plans without executing", text)
    label_ralph: str = setting("agent:ralph", "label that starts a Ralph loop", text)
    default_engine: str = setting("codex", "engine when none is named", choice(ENGINES))
    default_model: str | None = setting(None, "model when none is named", text)
    engine_command: tuple[str, ...] = setting((), "the `command` engine's command line", method("words"))
    engine_bins: Mapping[str, str] = setting({}, "path of an engine's executable", per_engine("BIN"),
                                             env="AGENTRY_<ENGINE>_BIN", shown="found on `PATH`")
    engine_args: Mapping[str, tuple[str, ...]] = setting({}, "extra arguments for an engine's command line",
                                                         engine_words, env="AGENTRY_<ENGINE>_ARGS")
    engine_configs: Mapping[str, str] = setting({}, "config file copied into each run's fresh home",
                                                per_engine("CONFIG"), env="AGENTRY_<ENGINE>_CONFIG")
    step_timeout_seconds: float = setting(3600.0, "longest an agent run may take", method("seconds"))
    idle_timeout_seconds: float = setting(600.0, "longest an agent run may stay silent", method("seconds"))
    agent_max_retries: int = setting(3, "an agent CLI's own retry or reconnect notices in a row, without progress, "
                                     "before its run is stopped with the CLI's error (`0`: no limit)", integer(0))
    max_tokens_per_step: int | None = setting(None, "token budget of a step", integer(1))
    max_tokens_per_protocol: int | None = setting(None, "token budget of a protocol", integer(1))
    token_budget_mode: str = setting("warn", "what a spent budget does: `strict`, `warn`, `off`",
                                     choice(BUDGET_MODES))
    auto_qa_on_ci: bool = setting(False, "enqueue QA when CI succeeds on the branch", method("flag"))
    ci_fix_attempts: int = setting(0, "further attempts of a step when CI fails on its branch", integer(0))
    max_concurrent_jobs: int = setting(2, "agent runs at once per worker", integer(1))
    web_processes: int = setting(0, "processes serving HTTP on the port together; `0`: one per CPU core, at most "
                                 f"{DEFAULT_WEB_PROCESSES_MAX}", integer(0, 64), shown="one per core, at most "
                                 f"{DEFAULT_WEB_PROCESSES_MAX}")
    starts_per_user_per_hour: int = setting(20, "protocol starts a user may make in an hour", integer(1))
    starts_per_repo_per_hour: int = setting(60, "protocol starts a repository may have in an hour", integer(1))
    git_author_name: str = setting("agentry[bot]", "name on agentry's commits", text)
    git_author_email: str = setting("agentry[bot]@users.noreply.github.com", "e-mail on agentry's commits", text)
    log_level: str = setting("INFO", "`debug`, `info`, `warning`, `error`", upper_choice(LOG_LEVELS),
                             shown="`info`")
    sandbox: str = setting("bwrap", "`bwrap` (bubblewrap) or `none` (agents unsandboxed, loudly)", choice(SANDBOXES))
    sandbox_read_paths: tuple[Path, ...] = setting((), "colon-separated paths agents may read (a `command` "
                                                   "engine's scripts, tools)", method("paths"))
    sandbox_write_paths: tuple[Path, ...] = setting((), "colon-separated shared places agents may write (a package "
                                                    "cache)", method("paths"))
    sandbox_allow_hosts: tuple[str, ...] = setting((), "comma-separated `host`, `host:port` or `*.domain` the egress "
                                                   "proxy also allows", method("hosts"))
    secret_key: str | None = setting(None, "Fernet key for project secrets at rest", method("fernet_key"),
                                     shown="`secret.key` generated in the data dir", secret=True)
    allowed_paths: tuple[Path, ...] = setting((), "colon-separated directories API paths (`local_path`, "
                                              "`workspace_path`) may name", method("paths"), shown="the data dir only")
    webhook_secret_generated: bool = False
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)  # the process's, for agents and git

    @property
    def web_process_count(self) -> int:
        return self.web_processes or min(len(os.sched_getaffinity(0)), DEFAULT_WEB_PROCESSES_MAX)

    @property
    def labels(self) -> Labels:
        return Labels(run=self.label_run, plan=self.label_plan, ralph=self.label_ralph)

    def grammar(self, forge: str) -> Grammar:
        """How commands are written on `forge` (`github`, `gitlab`): the prefix, or a mention of agentry."""
        return Grammar(self.command_prefix, self.gitlab_bot_username if forge == "gitlab" else self.github_app_slug)

    @property
    def github_app_configured(self) -> bool:
        return bool(self.github_app_id and self.github_private_key)

    @property
    def embedded_queue(self) -> bool:
        return not self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        reader = _Reader(env)
        values = {spec_field.name: read(reader, variable_of(spec_field.name, spec), spec_field.default)
                  for spec_field, spec in declared() if (read := spec.read) is not None}
        return cls(**values, **_derive(reader, values), environment=dict(env))


def declared() -> list[tuple[Any, Spec]]:
    """Each setting's field with its `Spec`, in declaration order."""
    return [(f, f.metadata["setting"]) for f in fields(Settings) if "setting" in f.metadata]


def variable_of(name: str, spec: Spec) -> str:
    return spec.env or f"AGENTRY_{name.upper()}"


def settings_table() -> str:
    """The README's configuration table, one row per setting."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for spec_field, spec in declared():
        rows.append(f"| `{variable_of(spec_field.name, spec)}` | {spec.doc} | {spec.shown} |")
    return "\n".join(rows)


def _derive(reader: _Reader, values: dict[str, Any]) -> dict[str, Any]:
    """The settings that depend on others: the database beside the data, the dev-mode secret, the app key."""
    secret, generated = reader.webhook_secret(values["dev_mode"])
    private_key = reader.private_key()
    app_id = values["github_app_id"]
    if bool(app_id) != bool(private_key):
        missing = "AGENTRY_GITHUB_PRIVATE_KEY or AGENTRY_GITHUB_PRIVATE_KEY_PATH" if app_id else "AGENTRY_GITHUB_APP_ID"
        raise ConfigError(f"{missing} is required when the other GitHub App credential is set")
    if private_key:
        _check_signing_key(private_key)
    return {"database_url": reader.database_url(values["data_dir"]), "webhook_secret": secret,
            "webhook_secret_generated": generated, "github_private_key": private_key}


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _redacted_url(value: str) -> str:
    """A URL as an error message may show it: without a password."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", value)[:200]


def _check_signing_key(pem: str) -> None:
    """The GitHub App key reads as a private key and signs an app JWT, or start-up stops here."""
    try:
        jwt.encode({"iss": "check", "iat": 0, "exp": 60}, pem, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        raise ConfigError("AGENTRY_GITHUB_PRIVATE_KEY (or _PATH) does not read as the app's RSA private key "
                          "in PEM form, so no app JWT can be signed with it") from None


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def directory(self, name: str, default: Path) -> Path:
        return Path(self.text(name) or default).expanduser()

    def integer(self, name: str, default: int | None, minimum: int = 0, maximum: int | None = None) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {value}")
        return value

    def host(self, name: str, default: str) -> str:
        value = self.text(name, default) or default
        if _is_ip(value) or HOST_NAME.fullmatch(value) and not re.fullmatch(r"[0-9.]+", value):
            return value
        raise ConfigError(f"{name} must be an IP address or a host name, got {value!r}")

    def url(self, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
        value = self.text(name, default)
        if value is None:
            return None
        parsed = urlsplit(value)
        if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
            raise ConfigError(f"{name} must be a URL starting {' or '.join(s + '://' for s in schemes)}, "
                              f"got {_redacted_url(value)!r}")
        return value

    def database_url(self, data_dir: Path) -> str:
        value = self.text("AGENTRY_DATABASE_URL")
        if value is None:
            return sqlite_url(data_dir / "agentry.db")
        scheme = value.partition("://")[0]
        if scheme not in DATABASE_SCHEMES or "://" not in value:
            raise ConfigError("AGENTRY_DATABASE_URL must start sqlite+aiosqlite:/// or postgresql+asyncpg://, "
                              f"got {_redacted_url(value)!r}")
        return value

    def seconds(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {raw}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.env.get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.text(name) or default).lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def words(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        try:
            return tuple(shlex.split(raw))
        except ValueError as exc:
            raise ConfigError(f"{name} is not a valid command line: {exc}") from None

    def paths(self, name: str, default: tuple[Path, ...] = ()) -> tuple[Path, ...]:
        """A colon-separated list of absolute paths."""
        raw = self.text(name)
        if raw is None:
            return ()
        paths = tuple(Path(part).expanduser() for part in raw.split(":") if part.strip())
        for path in paths:
            if not path.is_absolute():
                raise ConfigError(f"{name} must list absolute paths, got {str(path)!r}")
        return paths

    def hosts(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A comma-separated list of `host` or `host:port` entries (`*.domain` allowed)."""
        raw = self.text(name)
        if raw is None:
            return ()
        entries = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        for entry in entries:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if not re.fullmatch(r"(\*\.)?[a-z0-9._-]+|\[[0-9a-f:]+\]", host or entry) or (port and not port.isdigit()):
                raise ConfigError(f"{name} entries must be host or host:port, got {entry!r}")
        return entries

    def fernet_key(self, name: str, default: str | None = None) -> str | None:
        key = self.text(name)
        if key is None:
            return None
        try:
            if len(base64.urlsafe_b64decode(key.encode())) != 32:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{name} must be a Fernet key (32 url-safe base64-encoded bytes)") from None
        return key

    def private_key(self) -> str | None:
        key = self.text("AGENTRY_GITHUB_PRIVATE_KEY")
        path = self.text("AGENTRY_GITHUB_PRIVATE_KEY_PATH")
        if key:
            return key.replace("\\n", "\n")
        if path:
            try:
                return Path(path).read_text()
            except OSError as exc:
                raise ConfigError(f"AGENTRY_GITHUB_PRIVATE_KEY_PATH cannot be read: {exc.strerror}") from None
        return None

    def webhook_secret(self, dev_mode: bool) -> tuple[str, bool]:
        secret = self.text("AGENTRY_WEBHOOK_SECRET")
        if secret:
            return secret, False
        if not dev_mode:
            raise ConfigError(
                "AGENTRY_WEBHOOK_SECRET is required (set AGENTRY_DEV_MODE=1 to run locally with a generated one)"
            )
        return secrets.token_hex(20), True

    def per_engine(self, suffix: str) -> dict[str, str]:
        found = {}
        for engine in ENGINES:
            value = self.text(f"AGENTRY_{engine.upper()}_{suffix}")
            if value:
                found[engine] = value
        return found



def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"
