"""Annotations are checked: mypy over bot/, handlers/ and jobs/ with the configuration in
pyproject.toml (the pure modules strict), and no file with more errors than its line in
tests/typing_baseline.txt. The baseline only goes down: a file that has fewer errors than its line
fails the test too, with the line to write instead."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).with_name("typing_baseline.txt")
ERROR = re.compile(r"^(?P<path>[\w/.]+\.py):\d+: error: ", re.M)


def read_baseline() -> dict[str, int]:
    counts = {}
    for line in BASELINE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, count = line.split()
            counts[path] = int(count)
    return counts


def type_errors() -> tuple[Counter[str], str]:
    """Errors per file, and mypy's report."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True,
                          text=True, timeout=540)
    assert done.returncode in (0, 1), done.stderr or done.stdout  # 2: mypy itself failed
    return Counter(match["path"] for match in ERROR.finditer(done.stdout)), done.stdout


@pytest.mark.timeout(600)
def test_no_file_has_more_type_errors_than_its_baseline():
    found, report = type_errors()
    baseline = read_baseline()
    grown = sorted(path for path, count in found.items() if count > baseline.get(path, 0))
    shrunk = sorted(path for path, count in baseline.items() if found.get(path, 0) < count)
    new_errors = "\n".join(line for line in report.splitlines() if line.split(":", 1)[0] in grown)
    assert not grown, f"more type errors than {BASELINE.name} allows in {', '.join(grown)}:\n{new_errors}"
    assert not shrunk, (f"fewer type errors than {BASELINE.name} says: lower it (python -m tests.test_types "
                        "writes it as it stands):\n" + "\n".join(f"{path} {found.get(path, 0)}" for path in shrunk))


def test_the_strict_modules_are_the_pure_ones():
    from tests.test_layering import PURE_MODULES

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    [strict] = [override for override in config if override.get("disallow_untyped_defs")]
    modules = {path.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for path in PURE_MODULES}
    packages = {module.removesuffix(".*") for module in strict["module"] if module.endswith(".*")}
    modules = {module for module in modules if module.rpartition(".")[0] not in packages}
    assert sorted(strict["module"]) == sorted(modules | {f"{package}.*" for package in packages})


if __name__ == "__main__":
    counts, _ = type_errors()
    header = [line for line in BASELINE.read_text().splitlines() if line.startswith("#")]
    BASELINE.write_text("\n".join([*header, *(f"{path} {count}" for path, count in sorted(counts.items()))]) + "\n")
