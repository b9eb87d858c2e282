"""Running AI coding agent CLIs headless in a worktree.

``run_agent`` starts one CLI (or the operator's ``command``) with the prompt as an
argument and stdin closed (the ``command`` engine reads the prompt on stdin), in a
fresh home, with an environment stripped of agentry's own secrets. It streams the
output to the run log and to ``on_line``, parses it with the engine's parser, and
kills the whole process group on the wall-clock or idle timeout.

Per-CLI knowledge (command line, output format, success rule) lives in one module
per engine; formats and rules follow the research README of the recorded CLI
output (``tests/fixtures/agent-cli-output/NOTICE``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from bot.engines import ENGINES
from bot.sandbox import Launch, NoSandbox, SandboxRequest, SandboxUnavailable
from bot.sandbox.policy import allowed_endpoints

from . import aider, claude, codex, command, gemini, opencode
from .base import (
    AgentRequest,
    AgentResult,
    EngineConfig,
    EngineNotInstalled,
    ParseOutcome,
    StreamParser,
    TokenUsage,
    strip_ansi,
)
from .environment import build_environment, install_config, prepare_home
from .process import Limits, ProcessOutcome, run_process

__all__ = [
    "ENGINES",
    "AgentRequest",
    "AgentResult",
    "EngineConfig",
    "EngineNotInstalled",
    "TokenUsage",
    "agent_environment",
    "network",
    "engine_versions",
    "install_engine_config",
    "run_agent",
]

logger = logging.getLogger(__name__)

ENGINE_MODULES: dict[str, ModuleType] = {
    "codex": codex,
    "claude": claude,
    "opencode": opencode,
    "gemini": gemini,
    "aider": aider,
    "command": command,
}
LOG_LINE_BYTES = 1024 * 1024  # longer lines are cut in the log and in on_line
PARSE_LINE_BYTES = 8 * 1024 * 1024  # longer lines are cut for the parser too
VERSION_TIMEOUT_SECONDS = 5.0
MAX_ARGUMENT_BYTES = 128 * 1024 - 1  # Linux MAX_ARG_STRLEN, less the terminating NUL

OnLine = Callable[[str], Awaitable[None] | None]


def agent_environment(
    base_env: Mapping[str, str], home: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    """The agent's environment: kept part of ``base_env``, the fresh home, quiet flags, ``extra``.

    Kept: PATH, locale, TZ, proxies, CA bundles and model-provider variables
    (``OPENAI_*``, ``ANTHROPIC_*``, ``GEMINI_*``, ``GOOGLE_*``, ``AWS_*``, ...).
    Dropped: everything else, in particular every ``AGENTRY_*`` variable and
    ``GITHUB_TOKEN``/``GH_TOKEN``/``GITLAB_TOKEN``. ``extra`` is added last, as is.
    """
    quiet = (module.QUIET_ENV for module in ENGINE_MODULES.values())
    return build_environment(base_env, home, quiet, extra)


async def run_agent(
    request: AgentRequest,
    config: EngineConfig,
    *,
    log_path: Path,
    on_line: OnLine | None = None,
    stop: asyncio.Event | None = None,
) -> AgentResult:
    """Run one agent to its end, to a limit, or until ``stop`` is set (then it and everything it
    started are killed). Raises EngineNotInstalled, ValueError (bad request)."""
    engine = engine_module(request.engine)
    argv = engine.build_command(request, config)
    argv[0] = resolve_executable(request.engine, argv[0], search_path(config))
    if (size := _longest_argument(argv)) > MAX_ARGUMENT_BYTES:
        problem = f"prompt too long for a command-line argument: {size} bytes, limit {MAX_ARGUMENT_BYTES}"
        return _failed(request.engine, problem)
    if not Path(request.cwd).is_dir():
        return _failed(request.engine, f"cannot start {request.engine}: its worktree {request.cwd} does not exist")
    home, temporary = _open_home(request, config)
    try:
        try:
            config_env = agent_environment(config.base_env, home, request.env)
            config_file = install_engine_config(engine, home, config, config_env)
        except OSError as exc:
            return _failed(request.engine, f"cannot install the {engine.NAME} config file: {exc}")
        extra = {**engine.run_env(request, home, config_file, config), **request.env}
        env = agent_environment(config.base_env, home, extra)
        contained = _sandbox_request(request, config, argv, env, home, config_file)
        try:
            async with (config.sandbox or NoSandbox()).launch(contained) as launch:
                return await _execute(engine, request, config, launch, log_path, on_line, stop or asyncio.Event())
        except SandboxUnavailable as exc:
            return _failed(request.engine, str(exc))
    finally:
        if temporary:
            shutil.rmtree(home, ignore_errors=True)


def _sandbox_request(request: AgentRequest, config: EngineConfig, argv: list[str], env: dict[str, str],
                     home: Path, config_file: Path | None) -> SandboxRequest:
    """The worktree (read-only for plan, QA and ask runs) and the home are the only writable places;
    the network reaches the provider endpoints named in the environment and the config file."""
    config_texts = [config_file.read_text(errors="replace")] if config_file is not None else []
    return SandboxRequest(command=argv, cwd=request.cwd, env=env, writable=(home,),
                          executables=tuple(Path(path) for path in operator_files(request.engine, argv, config)),
                          cwd_read_only=request.read_only, network=network(env, config, config_texts))


def network(env: Mapping[str, str], config: EngineConfig, config_texts: list[str]) -> tuple:
    """Where a sandboxed run may connect: the provider endpoints its environment and config name."""
    return allowed_endpoints(env, config_texts, config.allow_hosts)


def operator_files(engine: str, argv: list[str], config: EngineConfig) -> list[str]:
    """The executable, and for the `command` engine the files its configured command line names."""
    named = [arg for arg in config.command_line[1:] if os.path.isabs(arg) and os.path.isfile(arg)]
    return [argv[0], *(named if engine == "command" else [])]


def engine_module(name: str) -> ModuleType:
    try:
        return ENGINE_MODULES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None


def search_path(config: EngineConfig) -> str:
    return config.base_env.get("PATH") or os.defpath


def resolve_executable(engine: str, candidate: str, path: str) -> str:
    """The absolute path of ``candidate``, or EngineNotInstalled saying what to install."""
    if os.sep in candidate:
        absolute = os.path.abspath(os.path.expanduser(candidate))
        if os.path.isfile(absolute) and os.access(absolute, os.X_OK):
            return absolute
        raise EngineNotInstalled(_not_installed(engine, f" at `{candidate}`"))
    found = shutil.which(candidate, path=path)
    if found:
        return os.path.abspath(found)
    raise EngineNotInstalled(_not_installed(engine, ""))


def _not_installed(engine: str, where: str) -> str:
    hint = ENGINE_MODULES[engine].INSTALL_HINT
    if engine == "command":
        return f"the command engine's executable is not found{where}: {hint}"
    return f"{engine} is not installed{where}: `{hint}`, or set `AGENTRY_{engine.upper()}_BIN`"


def _longest_argument(argv: list[str]) -> int:
    return max(len(arg.encode("utf-8", "surrogateescape")) for arg in argv)


def _open_home(request: AgentRequest, config: EngineConfig) -> tuple[Path, bool]:
    """The run's home: ``request.home_dir`` (kept) or a fresh temp dir (deleted after)."""
    if request.home_dir is not None:
        home, temporary = Path(request.home_dir), False
    else:
        home = Path(tempfile.mkdtemp(prefix=f"agentry-{request.engine}-", dir=config.home_parent))
        temporary = True
    prepare_home(home)
    return home, temporary


def install_engine_config(engine: ModuleType, home: Path, config: EngineConfig, env: Mapping[str, str]) -> Path | None:
    """The engine's ``HOME_FILES``, and the operator's config file (or the engine's default) in the
    run home, completed by the engine's ``complete_config(text, env)`` when it has one."""
    for relative, text in getattr(engine, "HOME_FILES", {}).items():
        install_config(home, relative, None, text)
    if engine.CONFIG_NAME is None:
        return None
    source = config.config_files.get(engine.NAME)
    installed = install_config(home, engine.CONFIG_NAME, source, engine.DEFAULT_CONFIG)
    complete = getattr(engine, "complete_config", None)
    if installed is not None and complete is not None:
        text = installed.read_text(errors="replace")
        if (completed := complete(text, env)) != text:
            installed.write_text(completed)
    return installed


async def _execute(
    engine: ModuleType,
    request: AgentRequest,
    config: EngineConfig,
    launch: Launch,
    log_path: Path,
    on_line: OnLine | None,
    stop: asyncio.Event,
) -> AgentResult:
    parser: StreamParser = engine.PARSER(config.max_final_message_chars)
    stdin_data = request.prompt.encode("utf-8") if engine.PROMPT_ON_STDIN else None
    started = time.monotonic()
    logger.info("starting %s in %s (sandbox: %s)", request.engine, request.cwd,
                (config.sandbox or NoSandbox()).name)
    with RunLog(log_path, config.max_log_bytes) as log:
        lines = LineSink(parser, log, on_line, config.redact, RetryWatch(parser, config.max_retries, stop))
        try:
            outcome = await run_process(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin_data=stdin_data,
                on_stdout=lines.stdout,
                on_stderr=lines.stderr,
                limits=_limits(config),
                stop_target=launch.stop_target,
                stop=stop,
            )
        except OSError as exc:
            return _failed(request.engine, f"cannot start {request.engine}: {exc}")
    outcome = dataclasses.replace(outcome, exit_code=launch.exit_code(outcome.exit_code))
    parsed = parser.finish(outcome.exit_code)
    outcome = dataclasses.replace(outcome, stopped=outcome.stopped and not lines.retries.gave_up)
    gave_up = lines.retries.gave_up
    return _result(request.engine, config, parsed, outcome, time.monotonic() - started, _network_note(launch), parser,
                   gave_up)


def _limits(config: EngineConfig) -> Limits:
    return Limits(
        timeout_seconds=config.timeout_seconds,
        idle_timeout_seconds=config.idle_timeout_seconds,
        kill_grace_seconds=config.kill_grace_seconds,
        line_bytes=PARSE_LINE_BYTES,
    )


class RunLog:
    """The run log: every output line appended and flushed, up to ``max_bytes`` in all."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.written = 0
        self.full = False

    def __enter__(self) -> RunLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "ab")  # noqa: SIM115 - closed in __exit__
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(self, text: str) -> None:
        if self.full:
            return
        data = text.encode("utf-8", "replace") + b"\n"
        if self.max_bytes > 0 and self.written + len(data) > self.max_bytes:
            self.full = True
            data = b"[agentry: log limit reached, further output is not logged]\n"
        self.file.write(data)
        self.file.flush()
        self.written += len(data)


class RetryWatch:
    """Counts the CLI's retry notices since its last progress; past ``limit`` it sets ``gave_up``."""

    def __init__(self, parser: StreamParser, limit: int, stop: asyncio.Event | None = None) -> None:
        self.parser = parser
        self.limit = limit
        self.stop = stop or asyncio.Event()  # set to end the run
        self.gave_up = False
        self.seen = 0  # notices when progress was last seen
        self.progress = 0

    def check(self, retries_before: int) -> bool:
        """After one line: whether it showed progress (a retry notice does not)."""
        if self.parser.progress != self.progress:
            self.progress, self.seen = self.parser.progress, len(self.parser.retries)
        notices = len(self.parser.retries)
        if self.limit > 0 and notices - self.seen > self.limit:
            self.gave_up = True
            self.stop.set()
        return notices == retries_before


class LineSink:
    """Routes each output line, without terminal escapes, to the parser, the run log and ``on_line``."""

    def __init__(self, parser: StreamParser, log: RunLog, on_line: OnLine | None,
                 redact: Callable[[str], str] = str, retries: RetryWatch | None = None) -> None:
        self.parser = parser
        self.log = log
        self.on_line = on_line
        self.redact = redact
        self.retries = retries or RetryWatch(parser, 0)
        self.callback_failed = False

    async def stdout(self, raw: bytes, dropped: int) -> bool:
        before = len(self.parser.retries)
        self.parser.feed(self.redact(strip_ansi(raw.decode("utf-8", "replace"))))
        await self._show(raw, dropped)
        return self.retries.check(before)

    async def stderr(self, raw: bytes, dropped: int) -> bool:
        before = len(self.parser.retries)
        self.parser.feed_stderr(self.redact(strip_ansi(raw.decode("utf-8", "replace"))))
        await self._show(raw, dropped)
        return self.retries.check(before)

    async def _show(self, raw: bytes, dropped: int) -> None:
        text = self.redact(strip_ansi(_display_line(raw, dropped)))
        self.log.write(text)
        if self.on_line is not None:
            await self._call_on_line(text)

    async def _call_on_line(self, text: str) -> None:
        try:
            outcome = self.on_line(text)  # type: ignore[misc]
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # noqa: BLE001 - a broken listener must not break the run
            if not self.callback_failed:
                logger.exception("on_line callback failed; the run goes on")
            self.callback_failed = True


def _display_line(raw: bytes, dropped: int) -> str:
    """The line as logged: at most LOG_LINE_BYTES, with a note of what was cut."""
    cut = max(len(raw) - LOG_LINE_BYTES, 0) + dropped
    text = raw[:LOG_LINE_BYTES].decode("utf-8", "replace")
    return f"{text}[agentry: {cut} more bytes of this line not shown]" if cut else text


def _result(
    engine: str, config: EngineConfig, parsed: ParseOutcome, outcome: ProcessOutcome, duration: float,
    network_note: str = "", parser: StreamParser | None = None, gave_up: bool = False,
) -> AgentResult:
    stopped = outcome.timed_out or outcome.idle_timed_out or outcome.stopped or gave_up
    ok = parsed.ok and not stopped
    error = None if ok else _error(config, parsed, outcome, parser, gave_up)
    if error is not None and network_note:
        error += f" ({network_note})"
    return AgentResult(
        ok=ok,
        engine=engine,
        exit_code=outcome.exit_code,
        final_message=parsed.final_message,
        session_id=parsed.session_id,
        usage=parsed.usage,
        cost_usd=parsed.cost_usd,
        error=strip_ansi(error) if error else None,
        timed_out=outcome.timed_out,
        idle_timed_out=outcome.idle_timed_out,
        duration_seconds=round(duration, 3),
        output_bytes=outcome.output_bytes,
        gave_up_retrying=gave_up,
        stopped=outcome.stopped,
    )


def _error(config: EngineConfig, parsed: ParseOutcome, outcome: ProcessOutcome, parser: StreamParser | None,
           gave_up: bool = False) -> str | None:
    """Why the run failed, with the cause the CLI gave: its retry notice, error or last stderr lines."""
    last_retry = parser.retries[-1] if parser is not None and parser.retries else None
    if gave_up and last_retry:
        return f"{config.max_retries} retries without progress; the CLI's last error: {last_retry}"
    if outcome.stopped:
        return "stopped on request"
    cause = last_retry or (parser.tail() if parser is not None else "") or parsed.error
    if outcome.timed_out:
        return _with_cause(f"killed: still running after {config.timeout_seconds:g} s (wall-clock timeout)", cause)
    if outcome.idle_timed_out:
        silence = "no progress, only retry notices," if last_retry else "no output"
        return _with_cause(f"killed: {silence} for {config.idle_timeout_seconds:g} s (idle timeout)", cause)
    return parsed.error or f"exit code {outcome.exit_code}"


def _network_note(launch: Launch) -> str:
    """What the sandbox saw go wrong on the network: hosts it refused, endpoints it could not reach."""
    notes = []
    if launch.unreachable:
        notes.append(f"the sandbox could not reach {', '.join(dict.fromkeys(launch.unreachable))}")
    if launch.denied:
        notes.append(f"the sandbox refused connections to {', '.join(dict.fromkeys(launch.denied))}; "
                     "AGENTRY_SANDBOX_ALLOW_HOSTS allows more hosts")
    return "; ".join(notes)


def _with_cause(reason: str, cause: str | None) -> str:
    return f"{reason}; last from the CLI: {cause}" if cause else reason


def _failed(engine: str, error: str) -> AgentResult:
    return AgentResult(
        ok=False,
        engine=engine,
        exit_code=None,
        final_message="",
        session_id=None,
        usage=TokenUsage(),
        cost_usd=None,
        error=error,
    )


def engine_versions(config: EngineConfig) -> list[dict]:
    """``[{"engine", "installed", "path", "version"}]`` for every engine (``<bin> --version``, 5 s each).

    Blocking; the engines are probed in parallel threads. The ``command`` engine
    is only looked up, never run.
    """
    with ThreadPoolExecutor(max_workers=len(ENGINES)) as pool:
        return list(pool.map(lambda name: _engine_version(name, config), ENGINES))


def _engine_version(name: str, config: EngineConfig) -> dict:
    try:
        path = resolve_executable(name, _executable_name(name, config), search_path(config))
    except EngineNotInstalled:
        return {"engine": name, "installed": False, "path": None, "version": None}
    version = None if name == "command" else _read_version(path, config)
    return {"engine": name, "installed": True, "path": path, "version": version}


def _executable_name(name: str, config: EngineConfig) -> str:
    if name == "command":
        if not config.command_line:
            raise EngineNotInstalled(_not_installed(name, ""))
        return config.command_line[0]
    return config.bins.get(name) or name


def _read_version(path: str, config: EngineConfig) -> str | None:
    with tempfile.TemporaryDirectory(prefix="agentry-version-", dir=config.home_parent) as home:
        prepare_home(Path(home))
        env = agent_environment(config.base_env, Path(home), {})
        try:
            proc = subprocess.Popen(
                [path, "--version"],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError:
            return None
        output = _communicate(proc)
    text = output.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else None


def _communicate(proc: subprocess.Popen) -> bytes:
    try:
        output, _ = proc.communicate(timeout=VERSION_TIMEOUT_SECONDS)
        return output or b""
    except subprocess.TimeoutExpired:
        return b""
    finally:
        _kill_group(proc.pid)
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
