"""Verifying and reading GitLab webhook deliveries (pure).

GitLab proves a delivery two ways, and either or both may be configured on a hook:

- the hook's secret token, sent verbatim in ``X-Gitlab-Token`` (no signature of the body);
- a signing token (``whsec_<base64 key>``): GitLab then signs the delivery the Standard Webhooks
  way, ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>``,
  with several space-separated signatures while a key is being rotated.

``Idempotency-Key`` (equal to ``webhook-id``) stays the same across GitLab's retries of one event,
so it is the delivery id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

GITLAB_MAX_PAYLOAD_BYTES = 25 * 1024 * 1024
SIGNATURE_TOLERANCE_SECONDS = 300
TOKEN_HEADERS = ("X-Gitlab-Token", "X-Agentry-Webhook-Token")
DELIVERY_ID_HEADERS = ("Idempotency-Key", "webhook-id", "X-Gitlab-Event-UUID")
MAX_DELIVERY_ID_CHARS = 200
SIGNING_TOKEN_PREFIX = "whsec_"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever the case of its name (aiohttp's headers already ignore case)."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def verify_gitlab_token(expected: str | None, headers: Mapping[str, str]) -> bool:
    """The delivery carries the hook's secret token. No token configured: False (the caller decides)."""
    if not expected:
        return False
    given = next((value for name in TOKEN_HEADERS if (value := header(headers, name))), None)
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def signing_key(signing_token: str) -> bytes:
    """The HMAC key of a ``whsec_`` signing token; ValueError when it is not base64."""
    encoded = signing_token.strip().removeprefix(SIGNING_TOKEN_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("the signing token is not whsec_ followed by base64") from None


def standard_webhook_signature(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_standard_webhook(
    signing_token: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """A valid ``v1`` signature among ``webhook-signature``'s, on a timestamp close to ``now``."""
    message_id = header(headers, "webhook-id")
    timestamp = header(headers, "webhook-timestamp")
    signatures = header(headers, "webhook-signature")
    if not (signing_token and message_id and timestamp and signatures):
        return False
    if not _timely(timestamp, now, tolerance_seconds):
        return False
    try:
        key = signing_key(signing_token)
    except ValueError:
        return False
    expected = standard_webhook_signature(key, message_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, given) for given in _v1_signatures(signatures))


def _timely(timestamp: str, now: float, tolerance_seconds: float) -> bool:
    try:
        sent = int(timestamp.strip())
    except ValueError:
        return False
    return abs(now - sent) <= tolerance_seconds


def _v1_signatures(header_value: str) -> list[bytes]:
    found = []
    for entry in header_value.split():
        version, _, signature = entry.partition(",")
        if version == "v1" and signature:
            found.append(signature.encode())
    return found


def gitlab_delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """``Idempotency-Key``, else ``webhook-id``, else ``X-Gitlab-Event-UUID``, else the body's sha256."""
    for name in DELIVERY_ID_HEADERS:
        value = (header(headers, name) or "").strip()
        if value:
            return value if len(value) <= MAX_DELIVERY_ID_CHARS else _sha256(value.encode())
    return _sha256(body)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
