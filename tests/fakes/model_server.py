"""A scripted model provider on 127.0.0.1 for the real agent CLIs.

It speaks the four wire APIs the CLIs call: OpenAI Responses (codex), OpenAI Chat Completions
(aider, opencode's openai-compatible provider), Anthropic Messages (claude, opencode) and the
Gemini API as gemini-cli calls it, streamed as server-sent events.

A test scripts what the "model" does with rules: the first rule whose ``contains`` text is in the
latest prompt answers it with its actions, in order. The server holds no conversation state: the
number of tool results in the request since the prompt says which action comes next, which also
holds across resumed sessions. Actions:

* ``Write(path, content)``: a file-writing tool call, in the shape of the tools the request offers
  (codex's ``apply_patch``, claude's ``Write``, opencode's ``write``, gemini's ``write_file``); for
  aider, which edits with text blocks, a SEARCH/REPLACE block in the answer;
* ``Shell(command)``: a shell tool call;
* ``Say(text)``: the final message;
* ``Fail(status, message)``: an HTTP error; ``Hang()``: accept and never answer.

Requests that offer no tools (titles, routing, commit messages) get a short plain answer. Every
request is kept in ``requests`` so tests can assert on what each CLI sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shlex
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Union

from aiohttp import web

from tests.fakes.loopback import LoopbackServer


@dataclass(frozen=True)
class Write:
    path: str  # relative to the agent's working directory
    content: str


@dataclass(frozen=True)
class Shell:
    command: str


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Fail:
    status: int = 500
    message: str = "The model is overloaded"


@dataclass(frozen=True)
class Hang:
    pass


Action = Union[Write, Shell, Say, Fail, Hang]
ToolAction = (Write, Shell)


@dataclass(frozen=True)
class Rule:
    contains: str
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Usage:
    input: int = 120
    output: int = 30
    cached: int = 20


@dataclass
class Seen:
    """One request as it arrived."""

    api: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    prompt: str
    answered: str = ""


@dataclass
class Conversation:
    """What the server needs from one request, whatever its wire format."""

    prompt: str  # the latest user message that is not a tool result
    tool_results: int  # tool results since that message
    # (the rules are matched against the prompt, then against every user message)
    tools: tuple[str, ...]  # names of the tools offered
    cwd: str | None  # the agent's working directory, as its system prompt states it
    wants_json: bool = False
    all_text: str = ""


WORKDIR_PATTERNS = (
    re.compile(r"[Ww]orking directory:\s*(/\S+)"),
    re.compile(r"<cwd>\s*(/[^<\s]+)\s*</cwd>"),
    re.compile(r"current working directory[^/\n]*?(/[^\s'\"`<>]+)", re.IGNORECASE),
)


def _text_of(value: Any) -> str:
    """Every string under ``text``/``input_text``/``content`` keys, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        parts = [value[key] for key in ("text",) if isinstance(value.get(key), str)]
        parts += [_text_of(value[key]) for key in ("content", "parts") if key in value]
        return "\n".join(parts)
    return ""


def _working_directory(*texts: str) -> str | None:
    for text in texts:
        for pattern in WORKDIR_PATTERNS:
            if match := pattern.search(text):
                return match.group(1).rstrip(".,;:")
    return None


class ModelServer(LoopbackServer):
    """Use as ``async with ModelServer() as model:``; ``model.url`` is the base URL."""

    def __init__(self, usage: Usage | None = None) -> None:
        self.rules: list[Rule] = []
        self.default: tuple[Action, ...] = (Say("Done."),)
        self.usage = usage or Usage()
        self.requests: list[Seen] = []
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()

    def on(self, contains: str, *actions: Action) -> None:
        """Answers prompts holding ``contains`` with ``actions`` (later rules for the same text win)."""
        self.rules.insert(0, Rule(contains, tuple(actions)))

    def otherwise(self, *actions: Action) -> None:
        self.default = tuple(actions)

    def seen(self, api: str | None = None) -> list[Seen]:
        return [request for request in self.requests if api is None or request.api == api]

    async def close(self) -> None:
        self._closing.set()
        await super().close()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/{tail:.*}", self._get)
        app.router.add_post("/{tail:.*}", self._post)
        return app

    async def _get(self, request: web.Request) -> web.Response:
        if request.path.endswith("/models"):
            return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        return web.json_response({"ok": True})

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        path = request.path
        if path.endswith("/count_tokens") or path.endswith(":countTokens"):
            return web.json_response({"input_tokens": self.usage.input, "totalTokens": self.usage.input})
        api, conversation = _conversation(path, body)
        seen = Seen(api, path, dict(request.headers), body, conversation.prompt)
        self.requests.append(seen)
        action = self._next_action(conversation)
        seen.answered = type(action).__name__
        if isinstance(action, Fail):
            return web.json_response(_error_body(api, action), status=action.status)
        if isinstance(action, Hang):
            await self._closing.wait()
            return web.Response(status=503)
        writer = WRITERS[api](self, request, body, conversation)
        return await writer.answer(action)

    def _next_action(self, conversation: Conversation) -> Action:
        if not conversation.tools:
            return Say(_side_answer(conversation))
        actions = self._actions_for(conversation.prompt, conversation.all_text)
        if "aider" in conversation.tools:
            return _aider_answer(actions, conversation.tool_results)
        return actions[min(conversation.tool_results, len(actions) - 1)]

    def _actions_for(self, prompt: str, everything: str) -> tuple[Action, ...]:
        for text in (prompt, everything):
            for rule in self.rules:
                if rule.contains in text:
                    return rule.actions
        return self.default

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"


def _side_answer(conversation: Conversation) -> str:
    if conversation.wants_json:
        # gemini-cli's router and next-speaker checks ask for JSON
        return json.dumps({"complexity_reasoning": "a small change", "complexity_score": 1,
                           "reasoning": "the answer is complete", "next_speaker": "user"})
    return "Scripted title"


def _aider_answer(actions: tuple[Action, ...], done: int) -> Action:
    """aider applies edits written as SEARCH/REPLACE blocks in the answer's text."""
    blocks = [f"{a.path}\n```\n<<<<<<< SEARCH\n=======\n{a.content.rstrip(chr(10))}\n>>>>>>> REPLACE\n```\n"
              for a in actions if isinstance(a, Write)]
    final = next((a for a in actions if not isinstance(a, ToolAction)), Say("Done."))
    if isinstance(final, Say):
        return Say("\n".join([*blocks, final.text]))
    return final


def _error_body(api: str, action: Fail) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": action.message}}
    if api == "gemini":
        return {"error": {"code": action.status, "message": action.message, "status": "UNAVAILABLE"}}
    return {"error": {"message": action.message, "type": "server_error", "code": str(action.status)}}


# -- reading the four request formats -------------------------------------------------------------

def _conversation(path: str, body: dict[str, Any]) -> tuple[str, Conversation]:
    if path.endswith("/responses"):
        return "responses", _responses_conversation(body)
    if path.endswith("/chat/completions"):
        return "chat", _chat_conversation(body)
    if path.endswith("/messages"):
        return "anthropic", _anthropic_conversation(body)
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini", _gemini_conversation(body)
    raise web.HTTPNotFound(text=f"the scripted model server has no route {path}")


def _responses_conversation(body: dict[str, Any]) -> Conversation:
    items = [item for item in body.get("input") or [] if isinstance(item, dict)]
    prompt_at = max((i for i, item in enumerate(items) if item.get("role") == "user"), default=-1)
    results = sum(1 for item in items[prompt_at + 1:]
                  if item.get("type") in ("function_call_output", "custom_tool_call_output"))
    tools = tuple(tool.get("name", "") for tool in body.get("tools") or [] if isinstance(tool, dict))
    texts = [_text_of(item.get("content")) for item in items]
    prompt = texts[prompt_at] if prompt_at >= 0 else ""
    return Conversation(prompt, results, tools, _working_directory(*texts, str(body.get("instructions", ""))),
                        all_text="\n".join(texts))


def _chat_conversation(body: dict[str, Any]) -> Conversation:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    prompt_at = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    results = sum(1 for m in messages[prompt_at + 1:] if m.get("role") == "tool")
    prompt = _text_of(messages[prompt_at].get("content")) if prompt_at >= 0 else ""
    tools = tuple(_as_dict(tool.get("function")).get("name", "") for tool in body.get("tools") or [])
    if not tools and body.get("stream"):
        tools = ("aider",)  # aider's main loop: edits come as text blocks, not tool calls
        results = 0
    texts = [_text_of(m.get("content")) for m in messages]
    return Conversation(prompt, results, tools, _working_directory(*texts), all_text="\n".join(texts))


def _anthropic_conversation(body: dict[str, Any]) -> Conversation:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]

    def is_result(message: dict[str, Any]) -> bool:
        content = message.get("content")
        return isinstance(content, list) and any(_as_dict(b).get("type") == "tool_result" for b in content)

    prompt_at = max((i for i, m in enumerate(messages) if m.get("role") == "user" and not is_result(m)), default=-1)
    results = sum(1 for m in messages[prompt_at + 1:] if m.get("role") == "user" and is_result(m))
    tools = tuple(_as_dict(tool).get("name", "") for tool in body.get("tools") or [])
    prompt = _text_of(messages[prompt_at].get("content")) if prompt_at >= 0 else ""
    system = _text_of(body.get("system"))
    texts = [_text_of(m.get("content")) for m in messages]
    return Conversation(prompt, results, tools, _working_directory(system, *texts), all_text="\n".join(texts))


def _gemini_conversation(body: dict[str, Any]) -> Conversation:
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]

    def is_result(content: dict[str, Any]) -> bool:
        return any("functionResponse" in _as_dict(part) for part in content.get("parts") or [])

    prompt_at = max((i for i, c in enumerate(contents) if c.get("role") == "user" and not is_result(c)), default=-1)
    results = sum(1 for c in contents[prompt_at + 1:] if is_result(c))
    tools = tuple(_as_dict(declaration).get("name", "") for tool in body.get("tools") or []
                  for declaration in _as_dict(tool).get("functionDeclarations") or [])
    prompt = _text_of(contents[prompt_at]) if prompt_at >= 0 else ""
    system = _text_of(body.get("systemInstruction"))
    wants_json = _as_dict(body.get("generationConfig")).get("responseMimeType") == "application/json"
    texts = [_text_of(c) for c in contents]
    return Conversation(prompt, results, tools, _working_directory(system, *texts), wants_json, "\n".join(texts))


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _absolute(conversation: Conversation, path: str) -> str:
    if path.startswith("/") or not conversation.cwd:
        return path
    return f"{conversation.cwd.rstrip('/')}/{path}"


def _shell_write(action: Write) -> str:
    return f"printf %s {shlex.quote(action.content)} > {shlex.quote(action.path)}"


# -- writing the four answer formats --------------------------------------------------------------

class Writer:
    """Streams one answer in a wire format; subclasses render tool calls and text."""

    def __init__(self, server: ModelServer, request: web.Request, body: dict[str, Any],
                 conversation: Conversation) -> None:
        self.server = server
        self.request = request
        self.body = body
        self.conversation = conversation
        self.model = str(body.get("model") or "scripted")

    async def answer(self, action: Action) -> web.StreamResponse:
        if not self.body.get("stream", True) and self.allows_plain_json():
            return web.json_response(self.whole(action))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(self.request)
        async for event in self.events(action):
            await response.write(event.encode())
        await response.write_eof()
        return response

    def allows_plain_json(self) -> bool:
        return True

    def whole(self, action: Action) -> dict[str, Any]:
        raise NotImplementedError

    def events(self, action: Action) -> AsyncIterator[str]:
        raise NotImplementedError


def _sse(kind: str | None, data: dict[str, Any]) -> str:
    head = f"event: {kind}\n" if kind else ""
    return f"{head}data: {json.dumps(data)}\n\n"


class ResponsesWriter(Writer):
    def allows_plain_json(self) -> bool:
        return False

    async def events(self, action: Action) -> AsyncIterator[str]:
        response_id = self.server.next_id("resp")
        yield _sse("response.created", {"type": "response.created", "response": {"id": response_id}})
        item = self._item(action)
        yield _sse("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                 "item": item})
        usage = self.server.usage
        yield _sse("response.completed", {"type": "response.completed", "response": {
            "id": response_id, "output": [],
            "usage": {"input_tokens": usage.input, "input_tokens_details": {"cached_tokens": usage.cached},
                      "output_tokens": usage.output, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": usage.input + usage.output}}})

    def _item(self, action: Action) -> dict[str, Any]:
        call_id = self.server.next_id("call")
        tools = self.conversation.tools
        if isinstance(action, Write) and "apply_patch" in tools:
            lines = "".join(f"+{line}\n" for line in action.content.splitlines())
            patch = f"*** Begin Patch\n*** Add File: {action.path}\n{lines}*** End Patch\n"
            return {"type": "custom_tool_call", "name": "apply_patch", "call_id": call_id, "input": patch}
        if isinstance(action, ToolAction):
            command = action.command if isinstance(action, Shell) else _shell_write(action)
            name = "exec_command" if "exec_command" in tools else "shell"
            arguments = {"cmd": command} if name == "exec_command" else {"command": ["bash", "-lc", command]}
            return {"type": "function_call", "name": name, "call_id": call_id, "arguments": json.dumps(arguments)}
        text = action.text if isinstance(action, Say) else ""
        return {"type": "message", "role": "assistant", "id": self.server.next_id("msg"),
                "content": [{"type": "output_text", "text": text, "annotations": []}]}


class ChatWriter(Writer):
    def whole(self, action: Action) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": action.text if isinstance(action, Say) else None}
        if isinstance(action, ToolAction):
            message["tool_calls"] = [self._call(action)]
        return {"id": self.server.next_id("chatcmpl"), "object": "chat.completion", "created": 0, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self._finish(action)}],
                "usage": self._usage()}

    async def events(self, action: Action) -> AsyncIterator[str]:
        chunk_id = self.server.next_id("chatcmpl")

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return _sse(None, {"id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        if isinstance(action, ToolAction):
            yield chunk({"role": "assistant", "tool_calls": [{"index": 0, **self._call(action)}]})
        else:
            yield chunk({"role": "assistant", "content": action.text if isinstance(action, Say) else ""})
        yield chunk({}, self._finish(action), usage=self._usage())
        yield "data: [DONE]\n\n"

    def _call(self, action: Action) -> dict[str, Any]:
        if isinstance(action, Write) and "write" in self.conversation.tools:
            name, arguments = "write", {"filePath": _absolute(self.conversation, action.path),
                                        "content": action.content}
        else:
            command = action.command if isinstance(action, Shell) else _shell_write(action)  # type: ignore[arg-type]
            name, arguments = "bash", {"command": command, "description": "scripted command"}
        return {"id": self.server.next_id("call"), "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}

    def _finish(self, action: Action) -> str:
        return "tool_calls" if isinstance(action, ToolAction) else "stop"

    def _usage(self) -> dict[str, int]:
        usage = self.server.usage
        return {"prompt_tokens": usage.input, "completion_tokens": usage.output,
                "total_tokens": usage.input + usage.output}


class AnthropicWriter(Writer):
    def whole(self, action: Action) -> dict[str, Any]:
        return {**self._message(), "content": [self._block(action)], "stop_reason": self._stop(action),
                "usage": self._usage(self.server.usage.output)}

    async def events(self, action: Action) -> AsyncIterator[str]:
        yield _sse("message_start", {"type": "message_start",
                                     "message": {**self._message(), "content": [], "stop_reason": None,
                                                 "usage": self._usage(1)}})
        block = self._block(action)
        if block["type"] == "tool_use":
            yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {**block, "input": {}}})
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        else:
            yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}})
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": block["text"]}})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield _sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": self._stop(action), "stop_sequence": None},
                                     "usage": {"output_tokens": self.server.usage.output}})
        yield _sse("message_stop", {"type": "message_stop"})

    def _message(self) -> dict[str, Any]:
        return {"id": self.server.next_id("msg"), "type": "message", "role": "assistant", "model": self.model,
                "stop_sequence": None}

    def _usage(self, output: int) -> dict[str, int]:
        usage = self.server.usage
        return {"input_tokens": usage.input - usage.cached, "output_tokens": output,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": usage.cached}

    def _block(self, action: Action) -> dict[str, Any]:
        tools = self.conversation.tools
        if isinstance(action, Write) and ("Write" in tools or "write" in tools):
            if "Write" in tools:
                name, arguments = "Write", {"file_path": _absolute(self.conversation, action.path),
                                            "content": action.content}
            else:
                name, arguments = "write", {"filePath": _absolute(self.conversation, action.path),
                                            "content": action.content}
            return {"type": "tool_use", "id": self.server.next_id("toolu"), "name": name, "input": arguments}
        if isinstance(action, ToolAction):
            command = action.command if isinstance(action, Shell) else _shell_write(action)
            name = "Bash" if "Bash" in tools else "bash"
            return {"type": "tool_use", "id": self.server.next_id("toolu"), "name": name,
                    "input": {"command": command, "description": "scripted command"}}
        return {"type": "text", "text": action.text if isinstance(action, Say) else ""}

    def _stop(self, action: Action) -> str:
        return "tool_use" if isinstance(action, ToolAction) else "end_turn"


class GeminiWriter(Writer):
    def allows_plain_json(self) -> bool:
        return ":generateContent" in self.request.path

    async def answer(self, action: Action) -> web.StreamResponse:
        if self.allows_plain_json():
            return web.json_response(self.whole(action))
        return await super().answer(action)

    def whole(self, action: Action) -> dict[str, Any]:
        usage = self.server.usage
        return {"candidates": [{"content": {"role": "model", "parts": [self._part(action)]}, "finishReason": "STOP",
                                "index": 0}],
                "usageMetadata": {"promptTokenCount": usage.input, "candidatesTokenCount": usage.output,
                                  "cachedContentTokenCount": usage.cached,
                                  "totalTokenCount": usage.input + usage.output},
                "modelVersion": self.model}

    async def events(self, action: Action) -> AsyncIterator[str]:
        yield f"data: {json.dumps(self.whole(action))}\r\n\r\n"

    def _part(self, action: Action) -> dict[str, Any]:
        tools = self.conversation.tools
        if isinstance(action, Write) and "write_file" in tools:
            return {"functionCall": {"name": "write_file", "args": {
                "file_path": _absolute(self.conversation, action.path), "content": action.content}}}
        if isinstance(action, ToolAction):
            command = action.command if isinstance(action, Shell) else _shell_write(action)
            return {"functionCall": {"name": "run_shell_command",
                                     "args": {"command": command, "description": "scripted command"}}}
        return {"text": action.text if isinstance(action, Say) else ""}


WRITERS: dict[str, Callable[..., Writer]] = {
    "responses": ResponsesWriter,
    "chat": ChatWriter,
    "anthropic": AnthropicWriter,
    "gemini": GeminiWriter,
}


def write_file(path: str, content: str, then: str = "Done.") -> tuple[Action, ...]:
    """The commonest script: write one file, then finish with ``then``."""
    return (Write(path, content), Say(then))


__all__ = ["Fail", "Hang", "ModelServer", "Say", "Shell", "Usage", "Write", "write_file"]
