"""What the route wrapper stores on a request for the handlers (typed request keys)."""

from __future__ import annotations

from aiohttp import web


def _key(name: str, kind: type):
    maker = getattr(web, "RequestKey", None)  # aiohttp >= 3.13; plain strings before
    return maker(name, kind) if maker else name


REQUEST_ID = _key("api_request_id", str)
ACTOR = _key("api_actor", str)
QUERY = _key("api_query", object)  # a requests.Query
BODY = _key("api_body", object)  # a requests.Body
RAW_BODY = _key("api_raw_body", dict)
AUDIT_IDS = _key("api_audit_ids", dict)
