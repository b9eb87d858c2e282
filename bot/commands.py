"""Slash-command parser for issue and merge-request comments.

Pure: no I/O, standard library only. `parse_comment` turns a comment body into
`Command`s and `CommandError`s, one per command line, in order.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from bot.engines import ENGINES
from bot.workflow import ProtocolAction

MAX_COMMANDS = 20
MAX_LINE_CHARS = 10_000

OptionValue = str | int | bool | tuple[str, ...]


@dataclass(frozen=True)
class Command:
    name: str
    text: str
    args: tuple[str, ...]
    options: Mapping[str, OptionValue] = field(hash=False)
    line: int
    index: int
    raw: str


@dataclass(frozen=True)
class CommandError:
    message: str
    name: str | None
    suggestion: str | None
    usage: str
    line: int
    index: int
    raw: str


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    permission: str
    options: tuple[str, ...] = ()
    arguments: str = "none"
    action: ProtocolAction | None = None  # carried out as this protocol action; else by its own handler


AGENT_OPTIONS = ("engine", "model")
_SPECS = (
    CommandSpec(
        "run",
        "run [--no-plan] [--engine E] [--model M] [--max-tokens N] [instructions...]",
        "Start a protocol run: plan the issue, run its steps, open a pull request (--no-plan: one step, no plan).",
        "write",
        options=("no_plan", *AGENT_OPTIONS, "max_tokens"),
        arguments="text",
    ),
    CommandSpec(
        "plan",
        "plan [--engine E] [--model M] [instructions...]",
        "Plan (or re-plan) the issue into steps without running them.",
        "write",
        options=AGENT_OPTIONS,
        arguments="text",
    ),
    CommandSpec("status", "status", "Show the protocol's state and steps.", "read"),
    CommandSpec("pause", "pause", "Pause the protocol.", "write", action=ProtocolAction.PAUSE),
    CommandSpec("resume", "resume", "Resume a paused protocol.", "write", action=ProtocolAction.RESUME),
    CommandSpec("cancel", "cancel", "Cancel the protocol.", "write", action=ProtocolAction.CANCEL),
    CommandSpec("stop", "stop [--now]", "Stop after the running step (--now: kill its agent); the pull request "
                "gets the work done so far.", "write", options=("now",)),
    CommandSpec(
        "retry",
        "retry [step]",
        "Run a step again (default: the latest).",
        "write",
        arguments="step",
    ),
    CommandSpec(
        "approve",
        "approve [step]",
        "Approve a step (default: the one waiting for approval).",
        "write",
        arguments="step",
    ),
    CommandSpec(
        "qa",
        "qa [step] [--engine E] [--model M]",
        "Run QA on a step (default: the latest).",
        "write",
        options=AGENT_OPTIONS,
        arguments="step",
    ),
    CommandSpec("open-pr", "open-pr", "Open or update the pull request now.", "write",
                action=ProtocolAction.OPEN_PR),
    CommandSpec(
        "answer",
        "answer <key> <text...>",
        "Answer a clarification question.",
        "write",
        arguments="answer",
    ),
    CommandSpec(
        "ask",
        "ask [--engine E] [--model M] <question...>",
        "Ask a read-only question; a follow-up `ask` continues the same session.",
        "write",
        options=AGENT_OPTIONS,
        arguments="question",
    ),
    CommandSpec(
        "ralph",
        "ralph [--max-iterations N] [--promise TEXT] [--feedback CMD]... "
        "[--engine E] [--model M] [--max-tokens N] <task...>",
        "Loop an agent on a task, with feedback commands, until it prints the promise.",
        "write",
        options=("max_iterations", "promise", "feedback", *AGENT_OPTIONS, "max_tokens"),
        arguments="task",
    ),
    CommandSpec(
        "help",
        "help [command]",
        "Show this help, or one command's usage.",
        "read",
        arguments="topic",
    ),
)
COMMANDS: Mapping[str, CommandSpec] = {spec.name: spec for spec in _SPECS}

ALIASES: Mapping[str, str] = {
    "open_pr": "open-pr",
    "openpr": "open-pr",
    "rerun": "retry",
}

OPTION_KINDS: Mapping[str, str] = {
    "engine": "engine",
    "model": "text",
    "promise": "text",
    "feedback": "repeatable",
    "max_tokens": "count",
    "max_iterations": "count",
    "now": "flag",
    "no_plan": "flag",
}

TOO_MANY = f"too many commands: only the first {MAX_COMMANDS} in a comment are run"

_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")
_COUNT = re.compile(r"[0-9]{1,12}")
_SHOWN_CHARS = 40


class _Invalid(Exception):
    def __init__(self, message: str, suggestion: str | None = None):
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion


# ---- public API -------------------------------------------------------------


@dataclass(frozen=True)
class Grammar:
    """How commands are written on one forge: the slash prefix, and the mention that also works as one."""

    prefix: str = "/agent"
    mention: str | None = None

    def commands_in(self, body: str, old_body: str | None = None) -> list[Command | CommandError]:
        """The commands of a new comment, or of an edited one (`old_body`: its text before) those the edit added."""
        if old_body is None:
            return parse_comment(body, prefix=self.prefix, app_slug=self.mention)
        return added_commands(old_body, body, prefix=self.prefix, app_slug=self.mention)


def parse_comment(
    body: str, *, prefix: str = "/agent", app_slug: str | None = None
) -> list[Command | CommandError]:
    results: list[Command | CommandError] = []
    lines = _command_lines(body, _triggers(prefix, app_slug))
    for index, (line, raw, trigger, rest) in enumerate(lines):
        if index == MAX_COMMANDS:
            results.append(CommandError(TOO_MANY, None, None, "", line, index, raw))
            break
        results.append(_parse_command(rest, trigger, line, index, raw))
    return results


def added_commands(
    old_body: str, new_body: str, *, prefix: str = "/agent", app_slug: str | None = None
) -> list[Command | CommandError]:
    """Commands of an edited comment that were not already in it before the edit."""
    old = parse_comment(old_body, prefix=prefix, app_slug=app_slug)
    already_seen = Counter(item.raw for item in old if not _is_overflow(item))
    old_overflowed = any(_is_overflow(item) for item in old)
    added: list[Command | CommandError] = []
    for item in parse_comment(new_body, prefix=prefix, app_slug=app_slug):
        if _is_overflow(item):
            if not old_overflowed:
                added.append(item)
        elif already_seen[item.raw] > 0:
            already_seen[item.raw] -= 1
        else:
            added.append(item)
    return added


PERMISSION_RANK = {"none": 0, "read": 1, "write": 2, "admin": 3}


def permits(actual: str, required: str) -> bool:
    """Whether a forge permission (`none` … `admin`) is at least the one required."""
    return PERMISSION_RANK.get(actual, 0) >= PERMISSION_RANK[required]


def required_permission(command: Command) -> str:
    if "max_tokens" in command.options:
        return "admin"
    return COMMANDS[command.name].permission


def help_text(prefix: str = "/agent", command: str | None = None) -> str:
    name = _canonical_name(command) if command else None
    if name:
        spec = COMMANDS[name]
        return f"`{prefix} {spec.usage}`\n\n{spec.summary}"
    rows = [f"| `{prefix} {spec.usage}` | {spec.summary} |" for spec in COMMANDS.values()]
    engines = ", ".join(f"`{engine}`" for engine in ENGINES)
    return "\n".join(
        [
            "| Command | What it does |",
            "|---|---|",
            *rows,
            "",
            f"One command per line. Engines: {engines}. "
            "Options take `--name value` or `--name=value`; quote text that has spaces.",
        ]
    )


# ---- finding command lines ----------------------------------------------------


FREE_TEXT_ARGUMENTS = ("text", "question", "task", "answer")


def _triggers(prefix: str, app_slug: str | None) -> list[str]:
    if not prefix.strip():
        raise ValueError("the command prefix must not be empty")
    triggers = [prefix.strip()]
    if app_slug:
        mention = "@" + app_slug.strip().lstrip("@")
        triggers += [mention, mention + "[bot]"]
    return triggers


HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


def _without_html_comments(body: str) -> str:
    """HTML comments (issue templates are full of them) blanked out, keeping line numbers."""
    if "<!--" not in body:
        return body
    return HTML_COMMENT.sub(lambda match: "\n" * match.group(0).count("\n"), body)


def _command_lines(body: str, triggers: list[str]) -> Iterator[tuple[int, str, str, str]]:
    """Yield (line number, stripped line, trigger, text after trigger) of each command line."""
    folded = body.lower()
    if not any(trigger.lower() in folded for trigger in triggers):  # most comments: no line to look at
        return
    may_matter = _first_characters(["```", "~~~", *triggers])
    open_fence: tuple[str, int] | None = None
    for number, line in enumerate(_split_lines(_without_html_comments(body)), start=1):
        stripped = line.strip()
        if not stripped.startswith(may_matter):
            continue
        if open_fence:
            if _closes_fence(stripped, open_fence):
                open_fence = None
        elif stripped.startswith(">"):
            continue
        elif fence := _opening_fence(stripped):
            open_fence = fence
        elif found := _match_trigger(stripped, triggers):
            trigger, rest = found
            yield number, stripped, trigger, rest


def _first_characters(starts: list[str]) -> tuple[str, ...]:
    """First characters of the lines worth a closer look; all others are skipped fast."""
    return tuple({case(start[:1]) for start in starts for case in (str.lower, str.upper)})


def _split_lines(body: str) -> list[str]:
    return body.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _opening_fence(stripped: str) -> tuple[str, int] | None:
    match = _FENCE.match(stripped)
    if not match:
        return None
    marker, info = match.groups()
    # CommonMark: a backtick fence's info string cannot hold a backtick (that is inline code).
    if marker[0] == "`" and "`" in info:
        return None
    return marker[0], len(marker)


def _closes_fence(stripped: str, fence: tuple[str, int]) -> bool:
    char, length = fence
    return len(stripped) >= length and not stripped.strip(char)


def _match_trigger(stripped: str, triggers: list[str]) -> tuple[str, str] | None:
    for trigger in triggers:
        head = stripped[: len(trigger)]
        after = stripped[len(trigger) : len(trigger) + 1]
        if head.lower() == trigger.lower() and (not after or after.isspace()):
            return trigger, stripped[len(trigger) :].strip()
    return None


# ---- parsing one command --------------------------------------------------------


def _parse_command(
    rest: str, trigger: str, line: int, index: int, raw: str
) -> Command | CommandError:
    typed, arg_text = _split_name(rest)
    if typed is None:
        return Command("help", "", (), {}, line, index, raw)
    if typed.startswith("-"):
        message = f"missing command name before `{_shown(typed)}`"
        return CommandError(message, None, None, "", line, index, raw)
    name = _canonical_name(typed)
    if name is None:
        message = f"unknown command `{_shown(typed)}`"
        return CommandError(message, typed, _closest_command(typed), "", line, index, raw)
    try:
        args, text, options = _parse_arguments(COMMANDS[name], arg_text)
    except _Invalid as invalid:
        usage = f"{trigger} {COMMANDS[name].usage}"
        return CommandError(invalid.message, typed, invalid.suggestion, usage, line, index, raw)
    return Command(name, text, args, options, line, index, raw)


def _split_name(rest: str) -> tuple[str | None, str]:
    parts = rest.split(None, 1)
    if not parts:
        return None, ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def _canonical_name(typed: str) -> str | None:
    lowered = typed.lower()
    name = ALIASES.get(lowered, lowered)
    return name if name in COMMANDS else None


def _closest_command(typed: str) -> str | None:
    known = [*COMMANDS, *ALIASES]
    close = difflib.get_close_matches(typed.lower(), known, n=1, cutoff=0.6)
    return _canonical_name(close[0]) if close else None


def _parse_arguments(
    spec: CommandSpec, arg_text: str
) -> tuple[tuple[str, ...], str, dict[str, OptionValue]]:
    tokens = _tokenize(spec.name, arg_text, lenient=spec.arguments in FREE_TEXT_ARGUMENTS)
    options, positionals = _split_options(spec, tokens)
    args, text = _ARGUMENT_PARSERS[spec.arguments](spec, positionals)
    return args, text, options


def _tokenize(name: str, arg_text: str, *, lenient: bool = False) -> list[str]:
    """Shell-style words. For free text (a task, a question) an apostrophe is prose, not a quote:
    when the text does not parse as quoted words it is taken as plain words."""
    # shlex slows down quadratically on very long words, so the length is capped first.
    if len(arg_text) > MAX_LINE_CHARS:
        raise _Invalid(f"`{name}` is too long (more than {MAX_LINE_CHARS} characters)")
    try:
        return shlex.split(arg_text, posix=True)
    except ValueError as error:
        if lenient:
            return arg_text.split()
        if "escaped" in str(error):
            raise _Invalid(f"`{name}` ends with a backslash that escapes nothing") from None
        raise _Invalid(
            f"`{name}` has an unbalanced quote; close it, or escape it with a backslash"
        ) from None


# ---- options --------------------------------------------------------------------


def _split_options(
    spec: CommandSpec, tokens: list[str]
) -> tuple[dict[str, OptionValue], list[str]]:
    options: dict[str, OptionValue] = {}
    positionals: list[str] = []
    pending = deque(tokens)
    while pending:
        token = pending.popleft()
        if token == "--":
            positionals.extend(pending)
            break
        if _looks_like_option(token):
            _add_option(spec, options, token, pending)
        else:
            positionals.append(token)
    return options, positionals


def _looks_like_option(token: str) -> bool:
    return token.startswith("--") and len(token) > 2


def _add_option(
    spec: CommandSpec, options: dict[str, OptionValue], token: str, pending: deque[str]
) -> None:
    flag, has_equals, inline_value = token[2:].partition("=")
    key = flag.lower().replace("-", "_")
    if key not in spec.options:
        raise _Invalid(_unknown_option_message(spec, flag))
    shown = _flag(key)
    if OPTION_KINDS[key] == "flag":
        if has_equals:
            raise _Invalid(f"`{shown}` takes no value")
        if key in options:
            raise _Invalid(f"`{shown}` is given more than once")
        options[key] = True
        return
    value = inline_value if has_equals else _next_value(pending)
    if not value:
        raise _Invalid(f"`{shown}` needs a value")
    converted = _convert(key, value)
    if OPTION_KINDS[key] == "repeatable":
        given = options.get(key, ())
        options[key] = (*(given if isinstance(given, tuple) else ()), str(converted))
    elif key in options:
        raise _Invalid(f"`{shown}` is given more than once")
    else:
        options[key] = converted


def _next_value(pending: deque[str]) -> str:
    if not pending or _looks_like_option(pending[0]):
        return ""
    return pending.popleft()


def _convert(key: str, value: str) -> str | int:
    kind = OPTION_KINDS[key]
    if kind == "engine":
        return _engine(value)
    if kind == "count":
        return _positive_count(key, value)
    return value


def _engine(value: str) -> str:
    engine = value.lower()
    if engine not in ENGINES:
        allowed = ", ".join(ENGINES)
        raise _Invalid(f"unknown engine `{_shown(value)}`; use one of {allowed}")
    return engine


def _positive_count(key: str, value: str) -> int:
    if not _COUNT.fullmatch(value) or int(value) == 0:
        raise _Invalid(f"`{_flag(key)}` needs a positive whole number, not `{_shown(value)}`")
    return int(value)


def _unknown_option_message(spec: CommandSpec, flag: str) -> str:
    if not spec.options:
        return f"`{spec.name}` takes no options (got `--{_shown(flag)}`)"
    known = [_flag(key) for key in spec.options]
    message = f"`{spec.name}` has no option `--{_shown(flag)}`"
    close = difflib.get_close_matches("--" + flag.lower(), known, n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean `{close[0]}`?"
    return f"{message}; its options are {', '.join(known)}"


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


# ---- positional arguments ----------------------------------------------------------


def _no_arguments(spec: CommandSpec, tokens: list[str]) -> tuple[tuple[str, ...], str]:
    if tokens:
        raise _Invalid(f"`{spec.name}` takes no arguments")
    return (), ""


def _free_text(spec: CommandSpec, tokens: list[str]) -> tuple[tuple[str, ...], str]:
    return tuple(tokens), " ".join(tokens)


def _required_text(spec: CommandSpec, tokens: list[str]) -> tuple[tuple[str, ...], str]:
    if not tokens:
        raise _Invalid(f"`{spec.name}` needs a {spec.arguments}")
    return tuple(tokens), " ".join(tokens)


def _step(spec: CommandSpec, tokens: list[str]) -> tuple[tuple[str, ...], str]:
    # A step name may have spaces, so the words are joined into one step.
    if not tokens:
        return (), ""
    step = " ".join(tokens)
    if step.isascii() and step.isdigit() and not step.strip("0"):
        raise _Invalid("steps are numbered from 1")
    return (step,), step


def _topic(spec: CommandSpec, tokens: list[str]) -> tuple[tuple[str, ...], str]:
    if not tokens:
        return (), ""
    if len(tokens) > 1:
        raise _Invalid("`help` takes at most one command name")
    name = _canonical_name(tokens[0])
    if not name:
        raise _Invalid(f"unknown command `{_shown(tokens[0])}`", _closest_command(tokens[0]))
    return (name,), name


def _answer(spec: CommandSpec, tokens: list[str]) -> tuple[tuple[str, ...], str]:
    if len(tokens) < 2:
        raise _Invalid("`answer` needs a key and a text")
    return tuple(tokens), " ".join(tokens[1:])


_ARGUMENT_PARSERS = {
    "none": _no_arguments,
    "text": _free_text,
    "question": _required_text,
    "task": _required_text,
    "step": _step,
    "topic": _topic,
    "answer": _answer,
}


# ---- small helpers ---------------------------------------------------------------


def _shown(user_text: str) -> str:
    """User text made safe to echo inside a code span, and short."""
    text = user_text.replace("`", "'")
    if len(text) > _SHOWN_CHARS:
        return text[: _SHOWN_CHARS - 1] + "…"
    return text


def _is_overflow(item: Command | CommandError) -> bool:
    return isinstance(item, CommandError) and item.message == TOO_MANY
