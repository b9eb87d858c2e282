"""Project secrets at rest: each value sealed with Fernet under the operator's key.

The key is AGENTRY_SECRET_KEY, or else `<data_dir>/secret.key`, made (mode 0600) the first time it is needed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import col, select

from bot import db
from bot.config import Settings
from bot.models import Project

log = logging.getLogger("agentry.secrets")

SEALED_PREFIX = "fernet:"
KEY_FILE = "secret.key"
KEY_VARIABLE = "AGENTRY_SECRET_KEY"
KEY_WAIT_SECONDS = 5.0


class SecretBoxError(Exception):
    """The key is malformed, or is not the key a value was sealed with; the message says where it came from."""


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


@dataclass(frozen=True)
class SecretBox:
    fernet: Fernet
    source: str

    @classmethod
    def load(cls, settings: Settings) -> "SecretBox":
        if settings.secret_key:
            return cls.from_key(settings.secret_key, KEY_VARIABLE)
        path = Path(settings.data_dir) / KEY_FILE
        try:
            key = read_or_create_key(path)
        except OSError as exc:
            raise SecretBoxError(f"{path} cannot be read or created ({exc.strerror}); or set {KEY_VARIABLE}") from None
        return cls.from_key(key, str(path))

    @classmethod
    def from_key(cls, key: str, source: str) -> "SecretBox":
        try:
            return cls(Fernet(key.strip().encode()), source)
        except ValueError:
            raise SecretBoxError(f"{source} does not hold a Fernet key (32 url-safe base64-encoded bytes)") from None

    def seal(self, value: str) -> str:
        return SEALED_PREFIX + self.fernet.encrypt(value.encode("utf-8", "surrogatepass")).decode("ascii")

    def open(self, value: str) -> str:
        """The clear text of a sealed value; a value without the prefix is legacy plaintext, returned as is."""
        if not is_sealed(value):
            return value
        try:
            return self.fernet.decrypt(value[len(SEALED_PREFIX):].encode("ascii")).decode("utf-8", "surrogatepass")
        except (InvalidToken, UnicodeError):
            raise SecretBoxError(
                f"a project secret does not open with the key from {self.source}: it was sealed with another key "
                f"(set {KEY_VARIABLE} to the key that sealed it)") from None

    def seal_all(self, secrets: Mapping[str, Any]) -> dict[str, Any]:
        """Every value sealed, whatever it looks like (what a request sends is clear text)."""
        return {str(key): _sealed(self, value) for key, value in secrets.items()}

    def seal_legacy(self, secrets: Mapping[str, Any]) -> dict[str, Any]:
        """Plaintext values sealed; sealed ones checked to open with this key and kept."""
        for value in secrets.values():
            if is_sealed(value):
                self.open(value)
        return {key: value if is_sealed(value) else _sealed(self, value) for key, value in secrets.items()}


def _sealed(box: SecretBox, value: Any) -> Any:
    if value is None:
        return None
    return box.seal(value if isinstance(value, str) else json.dumps(value))


def read_or_create_key(path: Path) -> str:
    """The key in `path`; a new one written there (0600, exclusively) when there is none yet."""
    if not path.exists():
        created = _create_key(path)
        if created is not None:
            return created
    return _written_key(path)


def _create_key(path: Path) -> str | None:
    """A new key in a new file, or None when another process created the file first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
        file.flush()
        os.fsync(file.fileno())
    log.info("generated a secret key for project secrets", extra={"path": str(path)})
    return key.decode("ascii")


def _written_key(path: Path) -> str:
    """The key in the file, once a process that has just created it has finished writing it."""
    deadline = time.monotonic() + KEY_WAIT_SECONDS
    while not (text := path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


async def seal_legacy_secrets(sessions: db.Sessions, box: SecretBox) -> int:
    """Seals the plaintext secret values of every project; the number of projects changed."""
    changed = 0
    async with sessions() as session:
        for project in (await session.exec(select(Project).order_by(col(Project.id)))).all():
            sealed = box.seal_legacy(project.secrets or {})
            if sealed != (project.secrets or {}):
                project.secrets = sealed
                session.add(project)
                changed += 1
        await session.commit()
    if changed:
        log.info("sealed the plaintext secrets of existing projects", extra={"projects": changed})
    return changed
