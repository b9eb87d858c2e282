"""Fake agent executables for the agent runner tests."""

import json
import sys
from pathlib import Path

FAKE_AGENT = Path(__file__).with_name("fake_agent.py")


def install_fake(bin_dir: Path, name: str, scenario: dict) -> Path:
    """Write an executable ``bin_dir/name`` that behaves as ``scenario`` says (see fake_agent)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scenario_path = bin_dir / f"{name}.scenario.json"
    scenario_path.write_text(json.dumps(scenario))
    executable = bin_dir / name
    executable.write_text(
        f"#!{sys.executable}\n"
        "import runpy\n"
        f"runpy.run_path({str(FAKE_AGENT)!r}, "
        f"init_globals={{'SCENARIO': {str(scenario_path)!r}}}, run_name='__main__')\n"
    )
    executable.chmod(0o755)
    return executable
