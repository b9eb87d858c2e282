"""Shorthands for the answers a route declares in the OpenAPI document."""

from __future__ import annotations

from handlers.api.routing import Answer
from handlers.api.views import list_of, ref

TEXT_PLAIN = "text/plain"
EVENT_STREAM = "text/event-stream"


def ok(schema_name: str, description: str = "OK") -> dict[int, Answer]:
    return {200: Answer(description, ref(schema_name))}


def ok_list(schema_name: str, description: str = "OK, one page (X-Next-Cursor names the next)") -> dict[int, Answer]:
    return {200: Answer(description, list_of(schema_name))}


def created(schema_name: str) -> dict[int, Answer]:
    return {201: Answer("Created", ref(schema_name))}


def text(description: str) -> dict[int, Answer]:
    return {200: Answer(description, {"type": "string"}, TEXT_PLAIN)}


def stream(description: str) -> dict[int, Answer]:
    return {200: Answer(description, {"type": "string"}, EVENT_STREAM)}


def conflict(description: str) -> dict[int, Answer]:
    return {409: Answer(description, ref("Error"))}


def error(status: int, description: str) -> dict[int, Answer]:
    return {status: Answer(description, ref("Error"))}
