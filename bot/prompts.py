"""The prompt templates under prompts/, read once per process."""

from __future__ import annotations

import functools
import json
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@functools.cache
def template(name: str) -> str:
    return (PROMPTS_DIR / name).read_text()


@functools.cache
def plan_schema() -> dict:
    return json.loads(template("plan.schema.json"))
