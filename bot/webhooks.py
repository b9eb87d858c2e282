"""Verifying and reading webhook deliveries (pure)."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
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


def parse_github_body(body: bytes, content_type: str) -> dict[str, Any]:
    """GitHub sends JSON, or a form with the JSON in its `payload` field."""
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return read_json(body)
    fields = parse_qs(_decode(body))
    if "payload" not in fields:
        raise InvalidPayload("form body has no payload field")
    return read_json(fields["payload"][0].encode())


MAX_JSON_DEPTH = 200  # the parser's own limit; GitHub's and GitLab's payloads nest about 10 deep
INT64 = range(-(2**63), 2**63)
_MAYBE_UNSAFE = re.compile(rb"\\u0000|\d{19}|[eE]\+?\d{3}")


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
    if _MAYBE_UNSAFE.search(body) and (problem := _unsafe_value(payload)) is not None:
        raise InvalidPayload(problem)
    return payload


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
