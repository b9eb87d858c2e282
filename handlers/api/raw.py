"""Reading what a request sends before its model validates it: the JSON body (size, encoding,
syntax), path parameters, and text the database cannot store."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from handlers.api.errors import bad_request, invalid_fields, too_large

INT32_MAX = 2**31 - 1
MAX_BODY_BYTES = 1024 * 1024
MAX_NESTING = 64
BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")


def clean_text_problem(value: Any, depth: int = 0) -> str | None:
    """Strings the database cannot store (NUL characters, lone surrogates), anywhere inside `value`."""
    if depth > MAX_NESTING:
        return f"is nested more than {MAX_NESTING} levels deep"
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = clean_text_problem(item, depth + 1)
        if problem:
            return problem
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


# --- bodies --------------------------------------------------------------------------------------


async def read_json(request: web.Request, *, optional: bool = False) -> dict:
    """The request's JSON object body; 400 for malformed JSON, 413 past MAX_BODY_BYTES."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large(MAX_BODY_BYTES)
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large(MAX_BODY_BYTES)
    if not raw.strip():
        if optional:
            return {}
        raise bad_request("a JSON object body is required")
    return parse_object(raw)


def parse_object(raw: bytes) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("body is not UTF-8 text") from None
    except RecursionError:
        raise bad_request("body is nested too deeply") from None
    except ValueError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object")
    return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


# --- paths ---------------------------------------------------------------------------------------


def path_int(request: web.Request, name: str) -> int | None:
    """A numeric path parameter, or None when it is out of the ids' range (so: not found)."""
    value = int(request.match_info[name])
    return value if value <= INT32_MAX else None


def path_text(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    problem = _text_problem(value)
    if problem or len(value) > 1024:
        raise invalid_fields({name: problem or "must be at most 1024 characters"}, "path")
    return value


def branch_problem(branch: str) -> str | None:
    if not BRANCH.match(branch):
        return "must be 1 to 255 letters, digits, '.', '_', '-' or '/'"
    if ".." in branch or branch.startswith(("-", "/")) or branch.endswith(("/", ".lock", ".")):
        return "is not a valid git branch name"
    return None
