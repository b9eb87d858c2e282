"""What the agent sandbox adds to one agent run, with the `command` engine.

Runs the same trivial agent (reads its prompt, writes one file, prints a line) through
`bot.agents.run_agent` with AGENTRY_SANDBOX=none and with bubblewrap, alternating, and prints the
median and p90 wall time of each and the difference. The bubblewrap run includes everything the
sandbox does for an agent: the per-run directory, the egress proxy and its bridge, the mounts.

    python bench/sandbox_overhead.py [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.agents import AgentRequest, EngineConfig, run_agent  # noqa: E402
from bot.sandbox import BwrapSandbox, NoSandbox  # noqa: E402

AGENT = "import sys, pathlib\nsys.stdin.read()\npathlib.Path('out.txt').write_text('x')\nprint('done')\n"


async def one_run(config: EngineConfig, worktree: Path, log: Path) -> float:
    request = AgentRequest(engine="command", prompt="write out.txt", cwd=worktree, kind="execute")
    started = time.perf_counter()
    result = await run_agent(request, config, log_path=log)
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"the agent run failed: {result.error}")
    return elapsed * 1000


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="agentry-bench-") as scratch:
        base = Path(scratch)
        data = base / "data"
        (data / "homes").mkdir(parents=True)
        worktree = data / "worktrees" / "1"
        worktree.mkdir(parents=True)
        script = base / "agent.py"
        script.write_text(AGENT)
        bwrap = BwrapSandbox(runs_dir=data / "sandbox", protected=[data])
        if problem := bwrap.problem():
            raise SystemExit(problem)
        configs = {
            name: EngineConfig(command_line=(sys.executable, str(script)), sandbox=sandbox,
                               home_parent=str(data / "homes"),
                               base_env={"PATH": os.environ.get("PATH", os.defpath)})
            for name, sandbox in (("none", NoSandbox()), ("bwrap", bwrap))
        }
        times: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(3):  # warm-up
            for name, config in configs.items():
                await one_run(config, worktree, base / "run.log")
        for _ in range(runs):
            for name, config in configs.items():
                times[name].append(await one_run(config, worktree, base / "run.log"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print(f"one agent run (command engine), {runs} runs each, alternating:")
    for name, values in times.items():
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9) - 1]
        print(f"  sandbox {name:5}: median {statistics.median(values):7.1f} ms, p90 {p90:7.1f} ms")
    added = statistics.median(times["bwrap"]) - statistics.median(times["none"])
    print(f"the sandbox adds {added:.1f} ms (median) to one run")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    asyncio.run(main(parser.parse_args().runs))
