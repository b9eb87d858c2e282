"""Request validation with field-by-field errors, and the JSON Schemas the OpenAPI document shows.

A `Field` both checks a value from a JSON body or a query string and describes itself as JSON
Schema, so the description cannot drift from what the code accepts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from aiohttp import web

from handlers.api.errors import bad_request, invalid_fields, too_large

INT32_MAX = 2**31 - 1
MAX_BODY_BYTES = 1024 * 1024
MAX_TEXT = 65_536
MAX_NESTING = 64
BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")

STRING, INTEGER, BOOLEAN, OBJECT, ANY, POLICY = "string", "integer", "boolean", "object", "any", "policy"


@dataclass(frozen=True)
class Field:
    """One field of a body (or one query parameter) and the rules it follows."""

    name: str
    kind: str = STRING
    required: bool = False
    default: Any = None
    nullable: bool = True
    minimum: int | None = None
    maximum: int | None = None
    min_length: int = 0
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    description: str = ""

    def schema(self) -> dict:
        schema = {**self._type_schema(), **({"description": self.description} if self.description else {})}
        if self.default is not None:
            schema["default"] = self.default
        if self.nullable and not self.required and self.kind != ANY:
            schema["nullable"] = True
        return schema

    def _type_schema(self) -> dict:
        if self.kind == INTEGER:
            return _without_none({"type": "integer", "minimum": self.minimum, "maximum": self.maximum})
        if self.kind == BOOLEAN:
            return {"type": "boolean"}
        if self.kind == OBJECT:
            return {"type": "object"}
        if self.kind == POLICY:
            return {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}
        if self.kind == ANY:
            return {}
        schema = {"type": "string", "minLength": self.min_length or None, "maxLength": self.max_length,
                  "pattern": self.pattern, "enum": list(self.choices) or None}
        return _without_none(schema)

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None."""
        if value is None:
            return None if self.nullable and not self.required else "must not be null"
        problem = _KIND_CHECKS[self.kind](self, value)
        return problem or clean_text_problem(value)


def _check_string(field: Field, value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) < field.min_length:
        return "must not be empty" if field.min_length == 1 else f"must be at least {field.min_length} characters"
    if field.max_length is not None and len(value) > field.max_length:
        return f"must be at most {field.max_length} characters"
    if field.choices and value not in field.choices:
        return "must be one of " + ", ".join(field.choices)
    if field.pattern and not re.search(field.pattern, value):
        return f"must match {field.pattern}"
    return None


def _check_integer(field: Field, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    low = field.minimum if field.minimum is not None else -INT32_MAX
    high = field.maximum if field.maximum is not None else INT32_MAX
    return None if low <= value <= high else f"must be between {low} and {high}"


def _check_boolean(field: Field, value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _check_object(field: Field, value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


def _check_policy(field: Field, value: Any) -> str | None:
    if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        return None
    return "must be an object or a list of objects"


_KIND_CHECKS = {STRING: _check_string, INTEGER: _check_integer, BOOLEAN: _check_boolean, OBJECT: _check_object,
                POLICY: _check_policy, ANY: lambda field, value: None}


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


def _without_none(schema: dict) -> dict:
    return {key: value for key, value in schema.items() if value is not None}


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


def validate(fields: tuple[Field, ...], data: Mapping[str, Any], where: str = "body") -> dict:
    """The fields' values (defaults filled in); 400 naming each field that is wrong and why."""
    values, problems = {}, {}
    for field in fields:
        if field.name not in data or (data[field.name] is None and field.nullable and not field.required):
            if field.required:
                problems[field.name] = "is required"
            values[field.name] = field.default
            continue
        problem = field.check(data[field.name])
        if problem:
            problems[field.name] = problem
        values[field.name] = data[field.name]
    if problems:
        raise invalid_fields(problems, where)
    return values


def body_schema(fields: tuple[Field, ...]) -> dict:
    schema = {"type": "object", "properties": {field.name: field.schema() for field in fields}}
    required = [field.name for field in fields if field.required]
    return {**schema, "required": required} if required else schema


# --- query strings -------------------------------------------------------------------------------


def parse_query(request: web.Request, params: tuple[Field, ...]) -> dict:
    """Query parameters converted to their kinds; 400 naming each one that is wrong."""
    converted, problems = {}, {}
    for param in params:
        raw = request.query.get(param.name)
        if raw is None or raw == "":
            converted[param.name] = param.default
            continue
        value, problem = _convert(param, raw)
        problem = problem or param.check(value)
        if problem:
            problems[param.name] = problem
        converted[param.name] = value
    if problems:
        raise invalid_fields(problems, "query")
    return converted


def _convert(param: Field, raw: str) -> tuple[Any, str | None]:
    if param.kind == INTEGER:
        if not re.fullmatch(r"[+-]?\d{1,19}", raw.strip()):
            return None, "must be an integer"
        return int(raw), None
    if param.kind == BOOLEAN:
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0"):
            return None, "must be true or false"
        return lowered in ("true", "1"), None
    return raw, None


def limit_param(default: int, maximum: int) -> Field:
    return Field("limit", INTEGER, default=default, minimum=1, maximum=maximum, nullable=False,
                 description=f"How many items at most (default {default}, at most {maximum}).")


CURSOR = Field("cursor", STRING, max_length=512, nullable=False,
               description="Where the previous page ended: the X-Next-Cursor header of its response.")


def id_param(name: str, description: str) -> Field:
    return Field(name, INTEGER, minimum=0, maximum=INT32_MAX, nullable=False, description=description)


def text_param(name: str, description: str, choices: tuple[str, ...] = ()) -> Field:
    return Field(name, STRING, max_length=200, choices=choices, nullable=False, description=description)


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
