"""Verifying and reading webhook deliveries (pure)."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs

GITHUB_MAX_PAYLOAD_BYTES = 25 * 1024 * 1024


class InvalidPayload(ValueError):
    """The delivery is authentic but its body cannot be read; the message says why."""


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_github_signature(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not secret:
        return False
    return hmac.compare_digest(github_signature(secret, body), header.strip())


def parse_github_body(body: bytes, content_type: str) -> dict:
    """GitHub sends JSON, or a form with the JSON in its `payload` field."""
    text = _decode(body)
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(text)
        if "payload" not in fields:
            raise InvalidPayload("form body has no payload field")
        text = fields["payload"][0]
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(payload, dict):
        raise InvalidPayload("body is JSON but not an object")
    return payload


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("body is not UTF-8") from None
