"""Known secret values, replaced in any text before it is stored, shown on a forge or put in a prompt. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MIN_LENGTH = 8  # shorter values would redact ordinary words
MARK = "[redacted]"
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_PEM_LINE = re.compile(r"^[A-Za-z0-9+/=]{16,}$")


class Redactor:
    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str | None) -> None:
        fresh = {value for value in values if value and len(value) >= MIN_LENGTH} - self._values
        if fresh:
            self._values |= fresh
            self._pattern = None

    def add_private_key(self, pem: str | None) -> None:
        """Each base64 line of a PEM key, so no part of it survives."""
        if pem:
            self.add(pem.strip(), *(line.strip() for line in pem.splitlines() if _PEM_LINE.match(line.strip())))

    def add_secret_variables(self, env: Mapping[str, str]) -> None:
        """Values of variables whose names say they hold a secret (``*_API_KEY``, ``*_TOKEN``, ...)."""
        self.add(*(value for name, value in env.items() if _SECRET_NAME.search(name)))

    def __call__(self, text: str) -> str:
        if not self._values or not text:
            return text
        if self._pattern is None:
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))
        return self._pattern.sub(MARK, text)
