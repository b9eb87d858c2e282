"""Reading a CodeMachine workspace into a protocol run: its template and one step per main agent.

A workspace holds `.codemachine/` with `template.json` and `config/`:

- `main.agents.js`: the workflow's agents, in order: `{id, name, description, promptPath, engineId,
  model, moduleId}`; each becomes a step `NN-<id>` whose prompt is the agent's prompt file.
- `sub.agents.js`: helper agents (kept in the template, not steps).
- `modules.js`: behaviours: `{id, behavior: {type: "loop", action: "stepBack", stepBack, maxIterations,
  skip}}` or `{id, behavior: {type: "trigger", triggerAgentId}, targetAgentId}`. A module belongs to
  the agents naming it in `moduleId`, and to the agent it targets.
- `placeholders.js`: values the prompts refer to (kept in the template).

The config files are JavaScript modules (`module.exports = …`, `export default …`) holding object
literals; they are read with a small literal parser (comments, unquoted keys, single quotes,
trailing commas, `const` names, `path.join`/`path.resolve`), never executed. Module policies become
agentry's step policy (`loop.back_to`, `trigger.step`), with the originals under `codemachine`.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.models import Project, ProtocolRun, StepRun
from bot.protocols import steps_of

MAX_PROMPT_BYTES = 256 * 1024
MAX_CONFIG_BYTES = 2 * 1024 * 1024
MAX_STEPS = 200


class ConfigError(ValueError):
    """The workspace's CodeMachine configuration is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Agent:
    id: str
    prompt_path: str
    name: str | None = None
    description: str | None = None
    engine_id: str | None = None
    model: str | None = None
    module_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Module:
    module_id: str
    behavior: str
    action: str | None = None
    max_iterations: int | None = None
    step_back: int | None = None
    skip_steps: tuple[int, ...] = ()
    trigger_agent_id: str | None = None
    target_agent_id: str | None = None
    conditions: tuple = ()


@dataclass(frozen=True)
class Config:
    root: Path  # the .codemachine directory (or the workspace when it has none)
    main_agents: tuple[Agent, ...]
    sub_agents: tuple[Agent, ...] = ()
    modules: tuple[Module, ...] = ()
    placeholders: dict = field(default_factory=dict)
    template: dict = field(default_factory=dict)

    def template_config(self) -> dict:
        return {
            "source": "codemachine",
            "main_agents": [asdict(agent) for agent in self.main_agents],
            "sub_agents": [asdict(agent) for agent in self.sub_agents],
            "modules": [asdict(module) for module in self.modules],
            "placeholders": self.placeholders,
            "template": self.template,
        }


# --- reading the workspace -----------------------------------------------------------------------


def load(workspace: Path) -> Config:
    workspace = Path(workspace)
    if not workspace.is_dir():
        raise ConfigError(f"workspace {workspace} is not a directory")
    root = workspace / ".codemachine" if (workspace / ".codemachine").is_dir() else workspace
    config_dir = root / "config"
    main_agents = _agents(_read_js(config_dir / "main.agents.js"), "main")
    if not main_agents:
        raise ConfigError(f"{config_dir / 'main.agents.js'} defines no main agents")
    modules = _modules(_read_js(config_dir / "modules.js"))
    placeholders = _read_js(config_dir / "placeholders.js") or {}
    template = _read_json(root / "template.json")
    return Config(root=root, main_agents=main_agents, sub_agents=_agents(_read_js(config_dir / "sub.agents.js"), "sub"),
                  modules=modules, placeholders=placeholders if isinstance(placeholders, dict) else {},
                  template=template)


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path.name} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}") from None


def _read_js(path: Path) -> Any:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return parse_js_module(text, dirname=str(path.parent))
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None


def _read_json(path: Path) -> dict:
    text = _read_text(path)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path.name} must hold a JSON object")
    return value


def _agents(raw: Any, kind: str) -> tuple[Agent, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{kind} agents must be a list")
    return tuple(_agent(entry, kind) for entry in raw)


def _agent(entry: Any, kind: str) -> Agent:
    if not isinstance(entry, dict):
        raise ConfigError(f"each {kind} agent must be an object")
    agent_id = str(entry.get("id") or entry.get("agentId") or "").strip()
    prompt = entry.get("promptPath") or entry.get("prompt") or entry.get("path")
    if not agent_id:
        raise ConfigError(f"a {kind} agent has no id")
    if not isinstance(prompt, str) or not prompt:
        raise ConfigError(f"{kind} agent {agent_id} has no promptPath")
    modules = entry.get("moduleId") or entry.get("module_id") or entry.get("module") or ()
    return Agent(id=agent_id, prompt_path=prompt, name=_text(entry.get("name")),
                 description=_text(entry.get("description")), engine_id=_text(entry.get("engineId") or entry.get("engine")),
                 model=_text(entry.get("model")),
                 module_ids=(modules,) if isinstance(modules, str) else tuple(str(item) for item in modules))


def _modules(raw: Any) -> tuple[Module, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ConfigError("modules must be a list of objects")
    return tuple(_module(entry) for entry in raw)


def _module(entry: dict) -> Module:
    behavior = entry.get("behavior") if isinstance(entry.get("behavior"), dict) else {}
    kind = behavior.get("type") or (entry.get("behavior") if isinstance(entry.get("behavior"), str) else "unknown")
    skip = behavior.get("skip") or behavior.get("skipSteps") or []
    conditions = behavior.get("conditions") or entry.get("conditions") or []
    condition = behavior.get("condition") or entry.get("condition")
    return Module(
        module_id=str(entry.get("id") or entry.get("module_id") or entry.get("name") or "(unnamed)"),
        behavior=str(kind).lower(),
        action=_text(behavior.get("action") or entry.get("action")),
        max_iterations=_integer(behavior.get("maxIterations") or behavior.get("max_iterations")),
        step_back=_integer(behavior.get("stepBack") or behavior.get("step_back")),
        skip_steps=tuple(int(item) for item in skip if isinstance(item, (int, float))) if isinstance(skip, list) else (),
        trigger_agent_id=_text(behavior.get("triggerAgentId") or behavior.get("trigger_agent_id")),
        target_agent_id=_text(behavior.get("targetAgentId") or entry.get("targetAgentId") or entry.get("target_agent_id")),
        conditions=tuple(conditions if isinstance(conditions, list) else []) + ((condition,) if condition else ()),
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _integer(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- steps ---------------------------------------------------------------------------------------


def step_name(index: int, agent: Agent) -> str:
    return f"{index:02d}-{agent.id}"


def step_type(agent: Agent) -> str:
    words = agent.id.lower()
    for kind, hints in (("qa", ("qa", "review", "test", "verify", "check")), ("plan", ("plan", "arch", "spec")),
                        ("docs", ("doc",))):
        if any(hint in words for hint in hints):
            return kind
    return "code"


def modules_of(agent: Agent, modules: tuple[Module, ...]) -> list[Module]:
    """The modules a main agent carries: those it names, and those that target it."""
    return [module for module in modules
            if module.module_id in agent.module_ids or module.target_agent_id == agent.id
            or (module.behavior == "trigger" and module.trigger_agent_id == agent.id)]


def step_policy(index: int, agent: Agent, config: Config) -> dict:
    """agentry's policy for the agent's step: the first loop and trigger it can express, and the originals."""
    attached = modules_of(agent, config.modules)
    policy: dict = {"codemachine": [asdict(module) for module in attached]} if attached else {}
    for module in attached:
        if module.behavior == "loop" and "loop" not in policy:
            policy["loop"] = _loop(index, module, config)
        elif module.behavior == "trigger" and "trigger" not in policy:
            target = _trigger_target(agent, module, config)
            if target is not None:
                policy["trigger"] = {"step": target, "when": "completed"}
    return policy


def _loop(index: int, module: Module, config: Config) -> dict:
    target = max(index - max(module.step_back or 1, 1), 0)
    while target in module.skip_steps and target > 0:
        target -= 1
    iterations = min(max(module.max_iterations or 3, 1), 20)
    return {"back_to": step_name(target, config.main_agents[target]), "max_iterations": iterations, "when": "qa_fail"}


def _trigger_target(agent: Agent, module: Module, config: Config) -> str | None:
    wanted = module.trigger_agent_id or module.target_agent_id
    for index, other in enumerate(config.main_agents):
        if other.id == wanted and other.id != agent.id:
            return step_name(index, other)
    return None


def read_prompt(config: Config, agent: Agent) -> str:
    """The agent's prompt file, which must lie inside the workspace."""
    workspace = config.root.parent if config.root.name == ".codemachine" else config.root
    candidates = [Path(agent.prompt_path)] if Path(agent.prompt_path).is_absolute() else [
        config.root / agent.prompt_path, workspace / agent.prompt_path]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not resolved.is_relative_to(workspace.resolve()):
            raise ConfigError(f"agent {agent.id}: prompt {agent.prompt_path} is outside the workspace")
        if resolved.is_file():
            if resolved.stat().st_size > MAX_PROMPT_BYTES:
                raise ConfigError(f"agent {agent.id}: prompt {agent.prompt_path} is larger than {MAX_PROMPT_BYTES} bytes")
            return resolved.read_text(encoding="utf-8", errors="replace")
    raise ConfigError(f"agent {agent.id}: prompt file {agent.prompt_path} not found")


def planned_steps(config: Config) -> list[dict]:
    """The step rows (without protocol) for the main agents, each depending on the one before."""
    if len(config.main_agents) > MAX_STEPS:
        raise ConfigError(f"{len(config.main_agents)} main agents; at most {MAX_STEPS} become steps")
    rows = []
    for index, agent in enumerate(config.main_agents):
        rows.append({
            "step_index": index, "step_name": step_name(index, agent), "step_type": step_type(agent),
            "engine_id": agent.engine_id, "model": agent.model, "prompt": read_prompt(config, agent),
            "qa_policy": "skip", "policy": step_policy(index, agent, config),
            "depends_on": [step_name(index - 1, config.main_agents[index - 1])] if index else [],
            "summary": agent.description or agent.name,
        })
    return rows


async def import_codemachine(session: AsyncSession, project: Project, protocol: ProtocolRun,
                             workspace: Path) -> list[StepRun]:
    """Stores the workspace's template on the protocol and adds a step per main agent (not committed).

    Raises ConfigError, changing nothing, when the configuration cannot be used. The caller moves the
    protocol on (plan_succeeded) and commits."""
    config = await asyncio.to_thread(load, workspace)
    rows = await asyncio.to_thread(planned_steps, config)
    existing = {step.step_name for step in await steps_of(session, protocol.id)}
    protocol.template_config = config.template_config()
    protocol.template_source = config.template
    session.add(protocol)
    steps = [StepRun(protocol_run_id=protocol.id, **row) for row in rows if row["step_name"] not in existing]
    session.add_all(steps)
    await session.flush()
    await store.record_event(session, "codemachine_imported",
                             f"Imported CodeMachine workspace with {len(steps)} step(s).", project_id=project.id,
                             protocol_run_id=protocol.id,
                             meta={"workspace": str(workspace), "steps_created": len(steps), "template": config.template})
    return steps


# --- JavaScript object literals ------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`$]*`)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>=>|[{}\[\]():,;.=])
""", re.VERBOSE | re.DOTALL)
_KEYWORDS = {"true": True, "false": False, "null": None, "undefined": None}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConfigError(f"unexpected {text[position:position + 20]!r}")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    if token[0] == "`":
        return token[1:-1]
    if token[0] == "'":
        token = '"' + token[1:-1].replace('\\"', '"').replace('\\\'', "'").replace('"', '\\"') + '"'
    return json.loads(token)


class _Parser:
    def __init__(self, text: str, dirname: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0
        self.names: dict[str, Any] = {"__dirname": dirname}

    def peek(self, offset: int = 0) -> tuple[str, str]:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else ("end", "")

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if expected is not None and token[1] != expected:
            raise ConfigError(f"expected {expected!r}, found {token[1] or 'the end'!r}")
        self.index += 1
        return token

    def module(self) -> Any:
        exported = None
        while self.peek()[0] != "end":
            exported = self.statement(exported)
        return exported

    def statement(self, exported: Any) -> Any:
        kind, word = self.peek()
        if word in ("const", "let", "var"):
            self.take()
            name = self.take()[1]
            self.take("=")
            self.names[name] = self.value()
        elif word == "export" and self.peek(1)[1] == "default":
            self.index += 2
            exported = self.value()
        elif word == "module" and self.peek(1)[1] == "." and self.peek(2)[1] == "exports":
            self.index += 3
            self.take("=")
            exported = self.value()
        elif kind in ("name", "punct") and word not in (";",):
            self.value()  # an expression statement, e.g. a bare require()
        if self.peek()[1] == ";":
            self.take()
        return exported

    def value(self) -> Any:
        kind, word = self.take()
        if word == "{":
            return self.object()
        if word == "[":
            return self.array()
        if kind == "string":
            return _unquote(word)
        if kind == "number":
            return float(word) if any(mark in word for mark in ".eE") else int(word)
        if kind == "name":
            return self.named(word)
        raise ConfigError(f"unexpected {word!r}")

    def object(self) -> dict:
        found = {}
        while self.peek()[1] != "}":
            kind, key = self.take()
            if kind not in ("name", "string", "number"):
                raise ConfigError(f"unexpected {key!r} in an object")
            key = _unquote(key) if kind == "string" else key
            if self.peek()[1] in (",", "}"):
                found[key] = self.named(key)  # shorthand {name}
            else:
                self.take(":")
                found[key] = self.value()
            if self.peek()[1] == ",":
                self.take()
        self.take("}")
        return found

    def array(self) -> list:
        items = []
        while self.peek()[1] != "]":
            items.append(self.value())
            if self.peek()[1] == ",":
                self.take()
        self.take("]")
        return items

    def named(self, word: str) -> Any:
        if word in _KEYWORDS:
            return _KEYWORDS[word]
        path = [word]
        while self.peek()[1] == ".":
            self.take()
            path.append(self.take()[1])
        if self.peek()[1] == "(":
            return self.call(".".join(path), self.arguments())
        if len(path) == 1 and word in self.names:
            return self.names[word]
        raise ConfigError(f"{'.'.join(path)} is not a value the importer can read")

    def arguments(self) -> list:
        self.take("(")
        found = []
        while self.peek()[1] != ")":
            found.append(self.value())
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return found

    @staticmethod
    def call(function: str, arguments: list) -> Any:
        if function == "require":
            return None
        if function in ("path.join", "path.resolve", "join", "resolve"):
            if not all(isinstance(argument, str) for argument in arguments):
                raise ConfigError(f"{function} takes strings here")
            return posixpath.normpath(posixpath.join(*arguments)) if arguments else "."
        raise ConfigError(f"{function}() is not something the importer evaluates")


def parse_js_module(text: str, dirname: str = ".") -> Any:
    """The value a config module exports (or the literal the file holds), without running it."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return json.loads(stripped.rstrip(";"))
        except ValueError:
            pass
    parser = _Parser(text, dirname)
    if parser.peek()[1] in ("[", "{"):
        return parser.value()
    return parser.module()
