"""What the flow tests share: a bare git remote and an agent script for the `command` engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

AGENT = r'''
import json, os, signal, sys
from pathlib import Path

prompt = sys.stdin.read()
kind = os.environ["AGENTRY_STEP_KIND"]
state = Path(STATE_DIR)
if kind == "plan":
    print("Here is the plan:")
    print("```json")
    print(json.dumps({"summary": "Add a greeting to the project", "steps": [
        {"name": "Write greeting", "prompt": "Create GREETING.md saying hello", "qa": "full"},
        {"name": "Link it", "prompt": "Mention GREETING.md in the README", "qa": "light"},
    ]}))
    print("```")
elif kind == "execute":
    if "Create GREETING.md" in prompt:
        Path("GREETING.md").write_text("Hello from the agent!\n")
        print("Wrote GREETING.md")
    else:
        marker = state / "killed-once"
        if os.environ.get("KILL_ONCE_MARKER_IGNORED") is None and KILL_ONCE and not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        with open("README.md", "a") as readme:
            readme.write("\nSee GREETING.md.\n")
        print("Linked the greeting from the README")
elif kind == "qa":
    print("The change does what the step asks.")
    print("VERDICT: PASS")
'''


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def agent_script(tmp_path: Path, *, kill_once: bool = False) -> Path:
    state = tmp_path / "agent-state"
    state.mkdir(exist_ok=True)
    script = tmp_path / "agent.py"
    script.write_text(AGENT.replace("STATE_DIR", repr(str(state))).replace("KILL_ONCE", repr(kill_once)))
    return script


