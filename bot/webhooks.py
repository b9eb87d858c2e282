"""Verifying and reading webhook deliveries (pure)."""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Any
from urllib.parse import parse_qs

from pydantic_core import from_json

GITHUB_MAX_PAYLOAD_BYTES = 25 * 1024 * 1024


class InvalidPayload(ValueError):
    """The delivery is authentic but its body cannot be read; the message says why."""


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_github_signature(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not secret:
        return False
    return hmac.compare_digest(github_signature(secret, body), header.strip())


def github_json(body: bytes, content_type: str) -> bytes:
    """The JSON of a GitHub delivery: its body, or the `payload` field of a form."""
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return body
    fields = parse_qs(_decode(body))
    if "payload" not in fields:
        raise InvalidPayload("form body has no payload field")
    return fields["payload"][0].encode()


MAX_JSON_DEPTH = 200  # the parser's own limit; GitHub's and GitLab's payloads nest about 10 deep
INT64 = range(-(2**63), 2**63)
# The body with every digit as 0, e, E and + as e, and all else a space: what might hold an integer
# beyond 64 bits (19 digits) or an overflowing exponent (e000, e+000) is then a substring search.
_NUMBER_SHAPES = bytes(ord("0") if char in b"0123456789" else ord("e") if char in b"eE+" else ord(" ")
                       for char in range(256))
_MAYBE_UNSAFE_NUMBERS = (b"0" * 19, b"e000")


def read_json(body: bytes) -> dict[str, Any]:
    """A JSON object that the database can store as it is: nesting within MAX_JSON_DEPTH, no NUL
    in a string, integers within 64 bits, finite numbers; InvalidPayload says what is wrong."""
    try:
        payload = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        _decode(body)
        raise InvalidPayload(f"body is not JSON agentry reads: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("body is JSON but not an object")
    if _maybe_unsafe(body) and (problem := _unsafe_value(payload)) is not None:
        raise InvalidPayload(problem)
    return payload


def check_storable(body: bytes) -> None:
    """InvalidPayload when a JSON body holds what the database cannot store (see `read_json`); the
    body is only parsed for it when a quick look at its bytes says it might."""
    if _maybe_unsafe(body):
        read_json(body)


def storable_text(body: bytes) -> str:
    """The JSON text of a body as it is recorded: itself when `read_json` reads it, else `{}`."""
    try:
        read_json(body)
    except InvalidPayload:
        return "{}"
    return body.decode()


def _maybe_unsafe(body: bytes) -> bool:
    """Whether the body might hold what `read_json` refuses after parsing it (most bodies do not).
    JSON has no NaN or Infinity, but not every parser knows."""
    if any(_holds(body, word) for word in (b"\\u0000", b"NaN", b"Infinity")):
        return True
    shapes = body.translate(_NUMBER_SHAPES)
    return any(shape in shapes for shape in _MAYBE_UNSAFE_NUMBERS)


def _holds(body: bytes, word: bytes) -> bool:
    """`word in body`, looking only where its first byte is: that byte is rare in payloads, and
    finding one byte is many times faster than a substring search."""
    at = body.find(word[:1])
    while at != -1:
        if body.startswith(word, at):
            return True
        at = body.find(word[:1], at + 1)
    return False


def _unsafe_value(payload: dict[str, Any]) -> str | None:
    pending: list[tuple[str, object]] = [("", payload)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return f"{path or 'the body'} has a key with a NUL character"
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            return f"{path}: a string with a NUL character"
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and value not in INT64:
            return f"{path}: an integer beyond 64 bits"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{path}: a number too large to represent"
    return None


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("body is not UTF-8") from None
