"""Reading what agents answer: plans, QA verdicts, completion promises; and filling prompt templates.

Pure: the caller reads ``prompts/plan.schema.json`` and the templates and passes them in.
A plan that does not validate raises :class:`PlanError` listing every problem; it never turns
into something else.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from bot.workflow import QaPolicy

JsonObject = dict[str, Any]

MAX_STEPS = 50
MAX_REASONS_CHARS = 4000
_MAX_ERROR_CHARS = 300

LOOP_DEFAULTS = {"max_iterations": 3, "when": "qa_fail"}
TRIGGER_DEFAULTS = {"when": "failed"}


class PlanError(ValueError):
    """A plan that cannot be used; ``errors`` has one readable line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = errors

    def __str__(self) -> str:
        return "invalid plan:\n" + "\n".join(f"- {error}" for error in self.errors)


@dataclass(frozen=True)
class Clarification:
    key: str
    question: str
    blocking: bool = False
    options: tuple[str, ...] = ()
    recommended: str | None = None


@dataclass(frozen=True)
class PlannedStep:
    """One step of a plan.

    ``depends_on`` is explicit after parsing (see :func:`validate_plan`). ``policy`` is the plan's
    policy object, with defaults filled in for ``loop`` and ``trigger`` (see the schema).
    """

    name: str
    prompt: str
    type: str = "code"
    qa: QaPolicy = QaPolicy.FULL
    depends_on: tuple[str, ...] = ()
    engine: str | None = None
    model: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    changes_files: bool = True  # False: a check-only step


@dataclass(frozen=True)
class Plan:
    summary: str
    steps: tuple[PlannedStep, ...]
    clarifications: tuple[Clarification, ...] = ()


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: str


# --- finding the JSON ---------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info word, content) of each fenced code block, in order (CommonMark fence rules)."""
    blocks: list[tuple[str, str]] = []
    lines = iter(text.splitlines())
    for line in lines:
        opening = _FENCE_OPEN.match(line)
        if not opening:
            continue
        fence = opening["fence"]
        body = []
        for inner in lines:
            stripped = inner.strip()
            if stripped.startswith(fence) and not stripped.lstrip(fence[0]):
                break
            body.append(inner)
        blocks.append((opening["info"].lower(), "\n".join(body)))
    return blocks


def _as_object(text: str) -> JsonObject | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def extract_json_object(text: str) -> JsonObject:
    """The JSON object an agent answered: the whole text, else the last fenced JSON block, else an
    object that ends the text on lines of its own.

    Fences tagged ``json`` count even when broken (then the error says why); untagged fences
    count only when their content is a JSON object; other languages never count.
    """
    text = (text or "").lstrip("\ufeff").strip()
    try:
        whole = json.loads(text)
    except ValueError as error:
        whole_error = error
    else:
        if isinstance(whole, dict):
            return whole
        raise PlanError([f"plan: expected a JSON object, got {_json_type(whole)}"])
    for info, content in reversed(_fenced_blocks(text)):
        if info == "json":
            return _parse_json_block(content)
        if info == "" and (found := _as_object(content)) is not None:
            return found
    if (trailing := _trailing_object(text)) is not None:
        return trailing
    hint = f" (as JSON: {whole_error})" if text.startswith("{") else ""
    raise PlanError([f"plan: no JSON object found: the message is not JSON{hint} and has no ```json block"])


def _trailing_object(text: str) -> JsonObject | None:
    """A JSON object that ends the message after some prose, starting on a line of its own."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, 0, -1):
        if lines[start].lstrip().startswith("{") and (found := _as_object("\n".join(lines[start:]))) is not None:
            return found
    return None


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _parse_json_block(content: str) -> JsonObject:
    try:
        value = json.loads(content)
    except ValueError as error:
        raise PlanError([f"plan: the last ```json block is not valid JSON: {error}"]) from None
    if not isinstance(value, dict):
        raise PlanError([f"plan: the last ```json block holds {_json_type(value)}, not an object"])
    return value


# --- validating the plan ------------------------------------------------------------------------


def parse_plan(text: str, schema: Mapping[str, Any]) -> Plan:
    """The plan in an agent's final message, validated against ``schema`` and cross-checked."""
    return validate_plan(extract_json_object(text), schema)


def validate_plan(data: Any, schema: Mapping[str, Any]) -> Plan:
    """Validate a decoded plan and build a :class:`Plan`, or raise :class:`PlanError` with all errors.

    When no step declares ``depends_on``, steps run in order: each depends on the one before.
    When any step declares it, a step without it has no dependencies.
    """
    errors = [_schema_message(error) for error in Draft202012Validator(schema).iter_errors(data)]
    steps = _step_objects(data)
    errors += _step_errors(steps) + _clarification_errors(data)
    if errors:
        raise PlanError(errors)
    return Plan(
        summary=(data.get("summary") or "").strip(),
        steps=_planned_steps(steps),
        clarifications=tuple(_clarification(item) for item in data.get("clarifications") or ()),
    )


def _path(parts: Iterable[str | int]) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    return text.lstrip(".") or "plan"


def _schema_message(error: ValidationError) -> str:
    message = error.message
    if len(message) > _MAX_ERROR_CHARS:
        message = message[: _MAX_ERROR_CHARS - 1] + "…"
    return f"{_path(error.absolute_path)}: {message}"


def _field(container: Any, key: str, kind: type) -> Any:
    """``container[key]`` when both have the expected types, else an empty ``kind``.

    Cross-checks read the data through this: wrong types are the schema's errors to report.
    """
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, kind) else kind()


def _step_objects(data: Any) -> list[JsonObject]:
    return [step if isinstance(step, dict) else {} for step in _field(data, "steps", list)]


def _name(step: JsonObject) -> str:
    name: str = _field(step, "name", str)
    return name.strip()


def _step_errors(steps: list[JsonObject]) -> list[str]:
    errors = [f"steps: {len(steps)} steps, at most {MAX_STEPS} allowed"] if len(steps) > MAX_STEPS else []
    errors += _duplicates("steps", "name", [_name(step) for step in steps], same=str.casefold)
    index_of = {_name(step): index for index, step in enumerate(steps) if _name(step)}
    for index, step in enumerate(steps):
        errors += _text_errors(index, step)
        errors += _dependency_errors(index, step, index_of)
        errors += _policy_errors(index, _field(step, "policy", dict), index_of)
    errors += _cycle_errors(_dependency_graph(steps, index_of))
    return errors


def _duplicates(array: str, key: str, values: list[str], same: Callable[[str], str] = str) -> list[str]:
    """An error for each value that was seen before in the array; empty values are not compared."""
    first_index: dict[str, int] = {}
    errors = []
    for index, value in enumerate(values):
        seen = same(value)
        if seen and seen in first_index:
            errors.append(f"{array}[{index}].{key}: {value!r} duplicates {array}[{first_index[seen]}].{key}")
        elif seen:
            first_index[seen] = index
    return errors


def _text_errors(index: int, step: JsonObject) -> list[str]:
    """Blank prompts, and names that are not one trimmed line (the schema checks types and length)."""
    errors = []
    name, prompt = _field(step, "name", str), _field(step, "prompt", str)
    if name != name.strip() or len(name.splitlines()) > 1:
        errors.append(f"steps[{index}].name: {name!r} must be one line without leading or trailing spaces")
    if prompt and not prompt.strip():
        errors.append(f"steps[{index}].prompt: must not be blank")
    return errors


def _dependency_errors(index: int, step: JsonObject, index_of: dict[str, int]) -> list[str]:
    return [
        f"steps[{index}].depends_on[{position}]: no step is named {name!r}"
        for position, name in enumerate(_field(step, "depends_on", list))
        if isinstance(name, str) and name not in index_of
    ]


def _policy_errors(index: int, policy: JsonObject, index_of: dict[str, int]) -> list[str]:
    where = f"steps[{index}].policy"
    errors = []
    back_to = _field(_field(policy, "loop", dict), "back_to", str)
    if back_to and back_to not in index_of:
        errors.append(f"{where}.loop.back_to: no step is named {back_to!r}")
    elif back_to and index_of[back_to] > index:
        errors.append(f"{where}.loop.back_to: {back_to!r} comes after this step; loops go back")
    target = _field(_field(policy, "trigger", dict), "step", str)
    if target and target not in index_of:
        errors.append(f"{where}.trigger.step: no step is named {target!r}")
    elif target and index_of[target] == index:
        errors.append(f"{where}.trigger.step: a step cannot trigger itself")
    return errors


def _declares_dependencies(steps: list[JsonObject]) -> bool:
    return any("depends_on" in step for step in steps)


def _dependencies(steps: list[JsonObject], index: int) -> tuple[str, ...]:
    """Explicit dependencies, or the previous step when the plan declares none at all."""
    if _declares_dependencies(steps):
        names = [name for name in _field(steps[index], "depends_on", list) if isinstance(name, str)]
        return tuple(dict.fromkeys(names))
    previous = _name(steps[index - 1]) if index else None
    return (previous,) if previous else ()


def _dependency_graph(steps: list[JsonObject], index_of: dict[str, int]) -> dict[str, list[str]]:
    return {
        name: [dep for dep in _dependencies(steps, index) if dep in index_of]
        for name, index in index_of.items()
    }


def _cycle_errors(graph: dict[str, list[str]]) -> list[str]:
    """One error per dependency cycle, naming its steps in order (depth-first, no recursion)."""
    visiting, done = set(), set()
    errors = []
    for root in graph:
        if root in done:
            continue
        path, pending = [root], [iter(graph[root])]
        visiting.add(root)
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                finished = path.pop()
                pending.pop()
                visiting.discard(finished)
                done.add(finished)
            elif dep in visiting:
                cycle = path[path.index(dep):] + [dep]
                errors.append(f"steps.depends_on: dependency cycle {' -> '.join(cycle)}")
            elif dep not in done:
                visiting.add(dep)
                path.append(dep)
                pending.append(iter(graph[dep]))
    return errors


def _clarification_errors(data: Any) -> list[str]:
    keys = [_field(item, "key", str) for item in _field(data, "clarifications", list)]
    return _duplicates("clarifications", "key", keys)


def _planned_steps(steps: list[JsonObject]) -> tuple[PlannedStep, ...]:
    return tuple(
        PlannedStep(
            name=step["name"],
            prompt=step["prompt"].strip(),
            type=step.get("type") or "code",
            qa=QaPolicy(step.get("qa") or QaPolicy.FULL),
            changes_files=step.get("changes_files", True) is not False,
            depends_on=_dependencies(steps, index),
            engine=step.get("engine"),
            model=step.get("model"),
            policy=_policy_with_defaults(step.get("policy") or {}),
        )
        for index, step in enumerate(steps)
    )


def _policy_with_defaults(policy: JsonObject) -> JsonObject:
    filled = dict(policy)
    if "loop" in policy:
        filled["loop"] = LOOP_DEFAULTS | policy["loop"]
    if "trigger" in policy:
        filled["trigger"] = TRIGGER_DEFAULTS | policy["trigger"]
    return filled


def _clarification(item: JsonObject) -> Clarification:
    return Clarification(
        key=item["key"],
        question=item["question"].strip(),
        blocking=item.get("blocking", False),
        options=tuple(item.get("options") or ()),
        recommended=item.get("recommended"),
    )


# --- QA verdicts and completion promises --------------------------------------------------------

_VERDICT_LINE = re.compile(
    r"^[\s>#*_`]*VERDICT[*_`\s]*:[*_`\s]*(?P<word>[A-Za-z]*)[*_`]*(?P<rest>.*)$", re.IGNORECASE
)
_NO_VERDICT = "QA gave no VERDICT line"


def parse_verdict(final_message: str) -> Verdict:
    """The QA verdict: the last line that starts with ``VERDICT:`` (markdown emphasis ignored).

    Missing or neither PASS nor FAIL is a FAIL. ``reasons`` is the rest of the message.
    """
    lines = (final_message or "").splitlines()
    for number in range(len(lines) - 1, -1, -1):
        if match := _VERDICT_LINE.match(lines[number]):
            word = match["word"].upper()
            inline = match["rest"].lstrip(" :-—–.").strip()
            context = "\n".join(lines[:number] + ([inline] if inline else []) + lines[number + 1 :])
            if word in ("PASS", "FAIL"):
                return Verdict(word == "PASS", _reasons("", context))
            unclear = f"QA verdict is neither PASS nor FAIL: {lines[number].strip()!r}"
            return Verdict(False, _reasons(unclear, context))
    return Verdict(False, _reasons(_NO_VERDICT, final_message or ""))


def _reasons(headline: str, context: str) -> str:
    """``headline`` then the trimmed context, at most MAX_REASONS_CHARS in all.

    A long context keeps its end, nearest the verdict.
    """
    context = context.strip()
    separator = "\n\n" if headline and context else ""
    room = MAX_REASONS_CHARS - len(headline) - len(separator)
    if len(context) > room:
        context = "…" + context[-(room - 1) :]
    return f"{headline}{separator}{context}"


_PROMISE_TAG = re.compile(r"<promise>(.*?)</promise>", re.DOTALL)


def promise_met(final_message: str, promise: str) -> bool:
    """Whether the agent's final message states the completion promise (never for an empty one)."""
    promise = (promise or "").strip()
    message = final_message or ""
    if not promise:
        return False
    return promise in message or any(tag.strip() == promise for tag in _PROMISE_TAG.findall(message))


# --- prompt templates ---------------------------------------------------------------------------

_LEADING_COMMENT = re.compile(r"\A\s*<!--.*?-->\s*", re.DOTALL)


def render_prompt(template: str, **values: Any) -> str:
    """Fill ``$name`` placeholders (``None`` becomes empty; unknown names stay as they are).

    A leading HTML comment, where templates document their placeholders, is dropped.
    """
    body = _LEADING_COMMENT.sub("", template, count=1)
    text_values = {name: "" if value is None else str(value) for name, value in values.items()}
    return string.Template(body).safe_substitute(text_values)
