"""The answers' component schemas by name, for the routes' declarations, and the times cursors carry."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from handlers.api.resources import components


@cache
def schemas() -> dict[str, dict[str, Any]]:
    return components()


def ref(name: str) -> dict:
    if name not in schemas():
        raise KeyError(f"no schema named {name}")
    return {"$ref": f"#/components/schemas/{name}"}


def list_of(name: str) -> dict:
    return {"type": "array", "items": ref(name)}


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
