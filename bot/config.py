"""Settings from the environment: one frozen object, built once at start-up."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

import jwt

ENGINES = ("codex", "claude", "opencode", "gemini", "aider", "command")
BUDGET_MODES = ("strict", "warn", "off")
SANDBOXES = ("bwrap", "none")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Labels:
    run: str = "agent:run"
    plan: str = "agent:plan"
    ralph: str = "agent:ralph"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8010
    data_dir: Path = Path(".agentry")
    database_url: str = ""
    redis_url: str | None = None
    api_token: str | None = field(default=None, repr=False)
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_generated: bool = False
    dev_mode: bool = False
    github_app_id: str | None = None
    github_private_key: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    github_app_slug: str | None = None
    gitlab_url: str = "https://gitlab.com"
    gitlab_token: str | None = field(default=None, repr=False)
    gitlab_webhook_token: str | None = field(default=None, repr=False)
    gitlab_signing_token: str | None = field(default=None, repr=False)
    gitlab_bot_username: str | None = None
    command_prefix: str = "/agent"
    labels: Labels = Labels()
    default_engine: str = "codex"
    default_model: str | None = None
    engine_command: tuple[str, ...] = ()
    engine_bins: Mapping[str, str] = field(default_factory=dict)
    engine_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    engine_configs: Mapping[str, str] = field(default_factory=dict)
    step_timeout_seconds: float = 3600.0
    idle_timeout_seconds: float = 600.0
    agent_max_retries: int = 3  # an agent CLI's retry notices in a row, with no progress, before it is stopped
    max_tokens_per_step: int | None = None
    max_tokens_per_protocol: int | None = None
    token_budget_mode: str = "warn"
    auto_qa_on_ci: bool = False
    ci_fix_attempts: int = 0
    max_concurrent_jobs: int = 2
    starts_per_user_per_hour: int = 20
    starts_per_repo_per_hour: int = 60
    git_author_name: str = "agentry[bot]"
    git_author_email: str = "agentry[bot]@users.noreply.github.com"
    log_level: str = "INFO"
    sandbox: str = "bwrap"
    sandbox_read_paths: tuple[Path, ...] = ()
    sandbox_write_paths: tuple[Path, ...] = ()
    sandbox_allow_hosts: tuple[str, ...] = ()
    secret_key: str | None = field(default=None, repr=False)
    allowed_paths: tuple[Path, ...] = ()

    @property
    def github_app_configured(self) -> bool:
        return bool(self.github_app_id and self.github_private_key)

    @property
    def embedded_queue(self) -> bool:
        return not self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        return _Reader(env).settings()


HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
WEB = ("https", "http")


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

    def words(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        try:
            return tuple(shlex.split(raw))
        except ValueError as exc:
            raise ConfigError(f"{name} is not a valid command line: {exc}") from None

    def paths(self, name: str) -> tuple[Path, ...]:
        """A colon-separated list of absolute paths."""
        raw = self.text(name)
        if raw is None:
            return ()
        paths = tuple(Path(part).expanduser() for part in raw.split(":") if part.strip())
        for path in paths:
            if not path.is_absolute():
                raise ConfigError(f"{name} must list absolute paths, got {str(path)!r}")
        return paths

    def hosts(self, name: str) -> tuple[str, ...]:
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

    def fernet_key(self) -> str | None:
        key = self.text("AGENTRY_SECRET_KEY")
        if key is None:
            return None
        try:
            if len(base64.urlsafe_b64decode(key.encode())) != 32:
                raise ValueError
        except ValueError:
            raise ConfigError("AGENTRY_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes)") from None
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

    def settings(self) -> Settings:
        dev_mode = self.flag("AGENTRY_DEV_MODE")
        data_dir = Path(self.text("AGENTRY_DATA_DIR", ".agentry")).expanduser()
        secret, generated = self.webhook_secret(dev_mode)
        app_id = self.text("AGENTRY_GITHUB_APP_ID")
        private_key = self.private_key()
        if bool(app_id) != bool(private_key):
            missing = "AGENTRY_GITHUB_PRIVATE_KEY or AGENTRY_GITHUB_PRIVATE_KEY_PATH" if app_id else "AGENTRY_GITHUB_APP_ID"
            raise ConfigError(f"{missing} is required when the other GitHub App credential is set")
        if private_key:
            _check_signing_key(private_key)
        return Settings(
            host=self.host("AGENTRY_HOST", "127.0.0.1"),
            port=self.integer("AGENTRY_PORT", 8010, minimum=0, maximum=65535),
            data_dir=data_dir,
            database_url=self.database_url(data_dir),
            redis_url=self.url("AGENTRY_REDIS_URL", None, ("redis", "rediss", "unix")),
            api_token=self.text("AGENTRY_API_TOKEN"),
            webhook_secret=secret,
            webhook_secret_generated=generated,
            dev_mode=dev_mode,
            github_app_id=app_id,
            github_private_key=private_key,
            github_api_url=(self.url("AGENTRY_GITHUB_API_URL", "https://api.github.com", WEB) or "").rstrip("/"),
            github_app_slug=self.text("AGENTRY_GITHUB_APP_SLUG"),
            gitlab_url=(self.url("AGENTRY_GITLAB_URL", "https://gitlab.com", WEB) or "").rstrip("/"),
            gitlab_token=self.text("AGENTRY_GITLAB_TOKEN"),
            gitlab_webhook_token=self.text("AGENTRY_GITLAB_WEBHOOK_TOKEN"),
            gitlab_signing_token=self.text("AGENTRY_GITLAB_SIGNING_TOKEN"),
            gitlab_bot_username=self.text("AGENTRY_GITLAB_BOT_USERNAME"),
            command_prefix=self.text("AGENTRY_COMMAND_PREFIX", "/agent"),
            labels=Labels(
                run=self.text("AGENTRY_LABEL_RUN", "agent:run"),
                plan=self.text("AGENTRY_LABEL_PLAN", "agent:plan"),
                ralph=self.text("AGENTRY_LABEL_RALPH", "agent:ralph"),
            ),
            default_engine=self.choice("AGENTRY_DEFAULT_ENGINE", "codex", ENGINES),
            default_model=self.text("AGENTRY_DEFAULT_MODEL"),
            engine_command=self.words("AGENTRY_ENGINE_COMMAND"),
            engine_bins=self.per_engine("BIN"),
            engine_args={engine: self.words(f"AGENTRY_{engine.upper()}_ARGS") for engine in self.per_engine("ARGS")},
            engine_configs=self.per_engine("CONFIG"),
            step_timeout_seconds=self.seconds("AGENTRY_STEP_TIMEOUT_SECONDS", 3600.0),
            idle_timeout_seconds=self.seconds("AGENTRY_IDLE_TIMEOUT_SECONDS", 600.0),
            agent_max_retries=self.integer("AGENTRY_AGENT_MAX_RETRIES", 3, minimum=0),
            max_tokens_per_step=self.integer("AGENTRY_MAX_TOKENS_PER_STEP", None, minimum=1),
            max_tokens_per_protocol=self.integer("AGENTRY_MAX_TOKENS_PER_PROTOCOL", None, minimum=1),
            token_budget_mode=self.choice("AGENTRY_TOKEN_BUDGET_MODE", "warn", BUDGET_MODES),
            auto_qa_on_ci=self.flag("AGENTRY_AUTO_QA_ON_CI"),
            ci_fix_attempts=self.integer("AGENTRY_CI_FIX_ATTEMPTS", 0),
            max_concurrent_jobs=self.integer("AGENTRY_MAX_CONCURRENT_JOBS", 2, minimum=1),
            starts_per_user_per_hour=self.integer("AGENTRY_STARTS_PER_USER_PER_HOUR", 20, minimum=1),
            starts_per_repo_per_hour=self.integer("AGENTRY_STARTS_PER_REPO_PER_HOUR", 60, minimum=1),
            git_author_name=self.text("AGENTRY_GIT_AUTHOR_NAME", "agentry[bot]"),
            git_author_email=self.text("AGENTRY_GIT_AUTHOR_EMAIL", "agentry[bot]@users.noreply.github.com"),
            log_level=self.choice("AGENTRY_LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
            sandbox=self.choice("AGENTRY_SANDBOX", "bwrap", SANDBOXES),
            sandbox_read_paths=self.paths("AGENTRY_SANDBOX_READ_PATHS"),
            sandbox_write_paths=self.paths("AGENTRY_SANDBOX_WRITE_PATHS"),
            sandbox_allow_hosts=self.hosts("AGENTRY_SANDBOX_ALLOW_HOSTS"),
            secret_key=self.fernet_key(),
            allowed_paths=self.paths("AGENTRY_ALLOWED_PATHS"),
        )


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"
