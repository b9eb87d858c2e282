"""What the API accepts, each request declared once: a pydantic model per body (`Body`) and per query
string (`Query`) whose fields carry their rules. The route wrapper validates with it (`Body.parse`,
`Query.parse`) and the OpenAPI document shows its JSON Schema, so the description cannot drift from
what the code accepts. A field that is wrong is named with the reason, in the `{"error", "fields"}`
shape; pydantic's error types are translated here into the API's own words.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, ClassVar, Mapping, Self

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError

from handlers.api.context import BODY, QUERY
from handlers.api.errors import invalid_fields
from handlers.api.raw import INT32_MAX, clean_text_problem
from handlers.api.resources import openapi_dialect

QUERY_INTEGER = re.compile(r"[+-]?\d{1,19}")
QUERY_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _policy(value: Any) -> Any:
    if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        return value
    raise PydanticCustomError("policy", "must be an object or a list of objects")


def only(allowed: Any, reason: str) -> AfterValidator:
    """A field whose one accepted value is `allowed` (a new row's state); `reason` says how the others come."""

    def check(value: Any) -> Any:
        if value != allowed:
            raise PydanticCustomError("only", reason)
        return value

    return AfterValidator(check)


Policy = Annotated[Any, PlainValidator(_policy),
                   WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]})]
JsonObject = dict[str, Any]


class Request(BaseModel):
    """Fields a request may send; unknown ones are ignored, types are JSON's (no coercion)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    WHERE: ClassVar[str] = "body"

    @classmethod
    def validated(cls, data: Mapping[str, Any]) -> Self:
        """The request's values (defaults filled in); 400 naming each field that is wrong and why."""
        problems: dict[str, str] = {}
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            model = None
            for error in exc.errors():
                problems.setdefault(str(error["loc"][0]), _reason(cls, error))
        for name in cls.model_fields:
            problem = None if name in problems or data.get(name) is None else clean_text_problem(data[name])
            if problem:
                problems[name] = problem
        if problems or model is None:
            raise invalid_fields(problems, cls.WHERE)
        return model

    @classmethod
    @cache
    def json_schema(cls) -> dict[str, Any]:
        """The model as an OpenAPI 3.0 object schema, enums inlined, no `null` defaults."""
        schema = cls.model_json_schema()
        definitions = schema.pop("$defs", {})
        for name, prop in schema.get("properties", {}).items():
            schema["properties"][name] = openapi_dialect(_inlined(prop, definitions))
        schema.pop("title", None)
        return schema

    @classmethod
    def property_schema(cls, name: str) -> dict[str, Any]:
        return dict(cls.json_schema()["properties"][name])


class Body(Request):
    """A JSON object body."""

    @classmethod
    def given(cls, request: web.Request) -> Self:
        """The body the route wrapper validated for this request's handler."""
        body = request[BODY]
        assert isinstance(body, cls), f"the route does not declare {cls.__name__} as its body"
        return body


class Query(Request):
    """Query parameters: an absent or empty one takes its default; integers and booleans are converted."""

    WHERE = "query"

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Self:
        converted, problems = {}, {}
        for name in cls.model_fields:
            raw = query.get(name)
            if raw is None or raw == "":
                continue
            value, problem = _converted(cls.property_schema(name).get("type"), raw)
            if problem:
                problems[name] = problem
            converted[name] = value
        if problems:
            raise invalid_fields(problems, cls.WHERE)
        return cls.validated(converted)

    @classmethod
    def given(cls, request: web.Request) -> Self:
        query = request[QUERY]
        assert isinstance(query, cls), f"the route does not declare {cls.__name__} as its query"
        return query

    @classmethod
    def parameters(cls) -> list[dict[str, Any]]:
        """The OpenAPI query parameters: one per field, never required."""
        found = []
        for name in cls.model_fields:
            schema = {key: value for key, value in cls.property_schema(name).items() if key != "nullable"}
            description = schema.get("description")
            found.append({"name": name, "in": "query", "required": False, "schema": schema,
                          **({"description": description} if description else {})})
        return found


class Paged(Query):
    """A query that pages through a list: a route that answers pages takes the cursor of the next."""

    cursor: str | None = Field(None, max_length=512,
                               description="Where the previous page ended: the X-Next-Cursor header of its response.")


def page_limit(default: int, maximum: int) -> Any:
    """The `limit` field of a list's query."""
    return Field(default, ge=1, le=maximum, description=f"How many items at most (default {default}, at most {maximum}).")


def id_filter(description: str) -> Any:
    """An id filter of a query."""
    return Field(None, ge=0, le=INT32_MAX, description=description)


def text_filter(description: str) -> Any:
    """A text filter of a query."""
    return Field(None, max_length=200, description=description)


def _converted(kind: str | None, raw: str) -> tuple[Any, str | None]:
    if kind == "integer":
        return (int(raw), None) if QUERY_INTEGER.fullmatch(raw.strip()) else (None, "must be an integer")
    if kind == "boolean":
        lowered = raw.lower()
        return (QUERY_BOOLEANS[lowered], None) if lowered in QUERY_BOOLEANS else (None, "must be true or false")
    return raw, None


def _reason(model: type[Request], error: ErrorDetails) -> str:
    """The API's words for one of pydantic's errors."""
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if error["input"] is None:
        return "must not be null"
    schema = model.property_schema(str(error["loc"][0]))
    items = [part for part in error["loc"][1:] if isinstance(part, int)]
    for _ in items:
        schema = schema.get("items", schema)
    words = _REASONS.get(kind)
    reason = words(schema) if words else error["msg"]
    return f"item {items[-1]} {reason}" if items else reason


def _length_reason(schema: dict[str, Any]) -> str:
    shortest = schema.get("minLength", 0)
    return "must not be empty" if shortest == 1 else f"must be at least {shortest} characters"


def _range_reason(schema: dict[str, Any]) -> str:
    return f"must be between {schema.get('minimum', -INT32_MAX)} and {schema.get('maximum', INT32_MAX)}"


_REASONS = {
    "string_type": lambda schema: "must be a string",
    "int_type": lambda schema: "must be an integer",
    "bool_type": lambda schema: "must be true or false",
    "dict_type": lambda schema: "must be a JSON object",
    "string_too_short": _length_reason,
    "string_too_long": lambda schema: f"must be at most {schema['maxLength']} characters",
    "string_pattern_mismatch": lambda schema: f"must match {schema['pattern']}",
    "literal_error": lambda schema: "must be one of " + ", ".join(schema["enum"]),
    "enum": lambda schema: "must be one of " + ", ".join(schema["enum"]),
    "greater_than_equal": _range_reason,
    "less_than_equal": _range_reason,
}


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    """`node` with each `$ref` to a definition (an enum) replaced by the definition itself."""
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    return {key: _inlined(value, definitions) for key, value in node.items()
            if not (key == "default" and value is None)}
