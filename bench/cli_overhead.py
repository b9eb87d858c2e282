"""What agentry adds to one run of each real agent CLI.

For each installed CLI, the same one-file task against the scripted model server on loopback (one
tool call that writes a file, then a final message), alternating:

* bare: the CLI started directly with the command line and environment agentry builds (so codex
  without its own sandbox too), in a fresh home with the same config, no sandbox;
* agentry: the same run through `bot.agents.run_agent` with the bubblewrap sandbox, its egress
  proxy, the per-run home and config, line parsing, redaction and the run log.

Prints the median wall time of each and the difference, per CLI. CLIs are found on PATH and in
AGENTRY_TEST_CLI_PATH; missing ones are listed and skipped.

    python bench/cli_overhead.py [--runs 10] [--engines codex,claude]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.agents import (  # noqa: E402
    ENGINE_MODULES, AgentRequest, EngineConfig, agent_environment, install_engine_config, run_agent,
)
from bot.agents.environment import prepare_home  # noqa: E402
from bot.sandbox import BwrapSandbox  # noqa: E402
from tests.fakes.model_server import ModelServer, Say, Write  # noqa: E402
from tests.fakes.providers import scripted_provider  # noqa: E402

CLIS = ("codex", "claude", "opencode", "gemini", "aider")


def find(engine: str) -> str | None:
    path = os.pathsep.join(p for p in (os.environ.get("AGENTRY_TEST_CLI_PATH", ""), os.environ.get("PATH", "")) if p)
    return shutil.which(engine, path=path)


def engine_config(engine: str, executable: str, url: str, base: Path, sandbox) -> EngineConfig:
    provider = scripted_provider(engine, url, base)
    configs = {engine: provider.settings[key] for key in provider.settings if key.endswith("_CONFIG")}
    args = {engine: tuple(shlex.split(provider.settings[key])) for key in provider.settings if key.endswith("_ARGS")}
    return EngineConfig(bins={engine: executable}, config_files=configs, extra_args=args, sandbox=sandbox,
                        base_env={"PATH": os.environ.get("PATH", os.defpath), **provider.env},
                        home_parent=str(base / "homes"), timeout_seconds=120, idle_timeout_seconds=60)


def fresh_worktree(base: Path, number: int) -> Path:
    worktree = base / "worktrees" / str(number)
    worktree.mkdir(parents=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for argv in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run([*git, *argv], cwd=worktree, check=True)
    return worktree


async def bare_run(engine: str, config: EngineConfig, worktree: Path, base: Path) -> float:
    """The CLI itself, unsandboxed: agentry's command line and environment, its config in a fresh home."""
    module = ENGINE_MODULES[engine]
    request = AgentRequest(engine=engine, prompt="Write hello.txt.", cwd=worktree, kind="execute")
    home = Path(tempfile.mkdtemp(prefix="bare-", dir=base / "homes"))
    prepare_home(home)
    config_file = install_engine_config(module, home, config, agent_environment(config.base_env, home, {}))
    argv = module.build_command(request, config)
    argv[0] = config.bins[engine]
    env = agent_environment(config.base_env, home, module.run_env(request, home, config_file, config))
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, cwd=worktree, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    await process.wait()
    elapsed = time.perf_counter() - started
    if process.returncode != 0 or not (worktree / "hello.txt").exists():
        raise SystemExit(f"the bare {engine} run failed (exit {process.returncode})")
    return elapsed * 1000


async def agentry_run(engine: str, config: EngineConfig, worktree: Path, base: Path) -> float:
    request = AgentRequest(engine=engine, prompt="Write hello.txt.", cwd=worktree, kind="execute")
    started = time.perf_counter()
    result = await run_agent(request, config, log_path=base / "logs" / f"{worktree.name}.log")
    elapsed = time.perf_counter() - started
    if not result.ok or not (worktree / "hello.txt").exists():
        raise SystemExit(f"the agentry {engine} run failed: {result.error}")
    return elapsed * 1000


async def measure(engine: str, executable: str, runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="agentry-bench-", dir=os.environ.get("AGENTRY_BENCH_DIR")) as scratch:
        base = Path(scratch)
        (base / "homes").mkdir()
        sandbox = BwrapSandbox(runs_dir=base / "sandbox", protected=[base / "homes"])
        if problem := sandbox.problem():
            raise SystemExit(problem)
        async with ModelServer() as model:
            model.otherwise(Write("hello.txt", "hello\n"), Say("Wrote hello.txt."))
            sandboxed = engine_config(engine, executable, model.url, base, sandbox)
            times: dict[str, list[float]] = {"bare": [], "agentry": []}
            for number in range(runs):
                times["bare"].append(await bare_run(engine, sandboxed, fresh_worktree(base, 2 * number), base))
                times["agentry"].append(await agentry_run(engine, sandboxed, fresh_worktree(base, 2 * number + 1),
                                                          base))
        return statistics.median(times["bare"]), statistics.median(times["agentry"])


async def main(runs: int, engines: list[str]) -> None:
    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; {runs} alternating runs per CLI, medians")
    print(f"{'CLI':<10}{'version':<34}{'bare ms':>10}{'agentry ms':>12}{'added ms':>10}")
    for engine in engines:
        executable = find(engine)
        if executable is None:
            print(f"{engine:<10}not installed")
            continue
        version = subprocess.run([executable, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.strip().splitlines()[:1]
        bare, sandboxed = await measure(engine, executable, runs)
        print(f"{engine:<10}{(version or ['?'])[0][:32]:<34}{bare:>10.0f}{sandboxed:>12.0f}{sandboxed - bare:>10.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--engines", default=",".join(CLIS))
    options = parser.parse_args()
    logging.disable(logging.WARNING)  # the sandbox's notes of refused side traffic (opencode's plugin install)
    asyncio.run(main(options.runs, [name for name in options.engines.split(",") if name]))
