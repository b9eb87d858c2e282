"""The audit log: one JSON line per accepted write and per denied command, secrets redacted.

Lines go to `<data dir>/audit.log`, appended under a lock so threads and tasks never interleave.
Values under secret-sounding keys are replaced, and token-like strings are masked wherever they
appear in the body (GitHub and GitLab tokens, API keys, Slack tokens, bearer headers, private keys,
long hex or base64 runs).
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REDACTED = "[redacted]"
MAX_DEPTH = 20
SECRET_KEY_WORDS = ("token", "secret", "password", "passwd", "authorization", "cookie", "credential")
KNOWN_TOKENS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\bgh[pousr]_[A-Za-z0-9]{16,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{16,}"
    r"|\bglpat-[A-Za-z0-9_-]{16,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{8,}"
    r"|\b[Bb]earer\s+[A-Za-z0-9._~+/=-]+",
    re.DOTALL,
)
LONG_RUNS = re.compile(r"\b[0-9a-fA-F]{32,}\b|[A-Za-z0-9+/_-]{40,}={0,2}")


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_KEY_WORDS) or lowered.endswith("key")


def mask_tokens(text: str, *, long_runs: bool = True) -> str:
    text = KNOWN_TOKENS.sub(REDACTED, text)
    return LONG_RUNS.sub(REDACTED, text) if long_runs else text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secret keys' values and token-like strings replaced."""
    if depth > MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {str(key): REDACTED if is_secret_key(str(key)) else redact(item, depth + 1)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, depth + 1) for item in value]
    if isinstance(value, str):
        return mask_tokens(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return mask_tokens(str(value))


class AuditLog:
    """Appends audit records to `<data_dir>/audit.log`."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / "audit.log"
        self._lock = threading.Lock()

    def write(self, *, action: str, outcome: str, actor: str | None, request_id: str | None = None,
              path: str | None = None, ids: dict | None = None, body: object = None,
              reason: str | None = None) -> None:
        if outcome not in ("accepted", "denied"):
            raise ValueError(f"outcome must be accepted or denied, got {outcome!r}")
        record = {
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "action": action,
            "outcome": outcome,
            "actor": actor,
            "request_id": request_id,
            "path": mask_tokens(path, long_runs=False) if path else path,
            "ids": {str(key): mask_tokens(item, long_runs=False) if isinstance(item, str) else item
                    for key, item in (ids or {}).items()},
            "body": redact(body),
            "reason": mask_tokens(reason, long_runs=False) if reason else reason,
        }
        self._append(json.dumps(record, default=str, ensure_ascii=False) + "\n")

    def _append(self, line: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)

    def read(self) -> list[dict]:
        """Every record so far (for tests and tools)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
