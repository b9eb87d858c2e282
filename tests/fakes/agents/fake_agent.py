"""A fake agent CLI, run as a real process by the agent runner tests.

Tests install it under a CLI's name (``codex``, ``claude``, ...) with
:func:`tests.fakes.agents.install_fake`; its behaviour comes from a JSON scenario:

* ``record``: path where it writes its argv, environment, cwd, what it read on
  stdin, and the files of its HOME
* ``version``: printed for ``--version`` (``version_hang``: sleep instead)
* ``files``: ``{relative path: content}`` written in its cwd (the agent's edit)
* ``stdout_file`` / ``stdout_lines`` / ``stderr_file`` / ``stderr_lines``: output
* ``huge_line_bytes``: one line of that many bytes printed first
* ``exit_code``
* ``mode``: ``hang`` (start a child and a grandchild, write their pids to
  ``pid_file``, then sleep), ``spam`` (print forever) or ``repeat`` (print
  ``repeat_stdout`` / ``repeat_stderr`` every ``repeat_delay`` seconds, forever)
* ``ignore_term``: ignore SIGTERM (inherited by the children)
"""

import json
import os
import signal
import subprocess
import sys
import time

CHILD = (
    "import subprocess, sys, time\n"
    "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]])\n"
    "with open(sys.argv[1] + '.tmp', 'w') as f: f.write(str(grandchild.pid))\n"
    "import os; os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "time.sleep(600)\n"
)


def main(scenario_path):
    with open(scenario_path) as f:
        scenario = json.load(f)
    if scenario.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--version" in sys.argv[1:]:
        if scenario.get("version_hang"):
            time.sleep(600)
        print(scenario.get("version", "fake 0.0.0"), flush=True)
        return 0
    stdin_text = sys.stdin.read() if sys.stdin is not None else ""
    if scenario.get("record"):
        record(scenario["record"], stdin_text)
    for name, content in scenario.get("files", {}).items():
        with open(name, "w") as f:
            f.write(content)
    if scenario.get("huge_line_bytes"):
        write_huge_line(scenario["huge_line_bytes"])
    print_output(scenario)
    mode = scenario.get("mode")
    if mode == "hang":
        hang(scenario["pid_file"])
    elif mode == "spam":
        spam()
    elif mode == "repeat":
        repeat(scenario)
    return scenario.get("exit_code", 0)


def record(path, stdin_text):
    home = os.environ.get("HOME", "")
    data = {
        "argv": sys.argv[1:],
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "stdin": stdin_text,
        "home_files": home_files(home),
    }
    with open(path, "w") as f:
        json.dump(data, f)


def home_files(home):
    found = {}
    for root, _dirs, files in os.walk(home):
        for name in files:
            full = os.path.join(root, name)
            with open(full, errors="replace") as f:
                found[os.path.relpath(full, home)] = f.read(100_000)
    return found


def write_huge_line(size):
    chunk = b"x" * (1024 * 1024)
    left = size
    while left > 0:
        sys.stdout.buffer.write(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def print_output(scenario):
    stdout = list(scenario.get("stdout_lines", []))
    stderr = list(scenario.get("stderr_lines", []))
    if scenario.get("stderr_file"):
        stderr = read_lines(scenario["stderr_file"]) + stderr
    if scenario.get("stdout_file"):
        stdout = read_lines(scenario["stdout_file"]) + stdout
    for line in stderr:
        print(line, file=sys.stderr, flush=True)
    for line in stdout:
        print(line, flush=True)


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def hang(pid_file):
    grandchild_file = pid_file + ".grandchild"
    child = subprocess.Popen([sys.executable, "-c", CHILD, grandchild_file])
    while not os.path.exists(grandchild_file):
        time.sleep(0.01)
    with open(grandchild_file) as f:
        grandchild = int(f.read())
    with open(pid_file + ".tmp", "w") as f:
        json.dump({"agent": os.getpid(), "child": child.pid, "grandchild": grandchild}, f)
    os.replace(pid_file + ".tmp", pid_file)
    print("working...", flush=True)
    time.sleep(600)


def spam():
    line = "still working " * 8
    while True:
        print(line, flush=False)


def repeat(scenario):
    while True:
        for line in scenario.get("repeat_stderr", []):
            print(line, file=sys.stderr, flush=True)
        for line in scenario.get("repeat_stdout", []):
            print(line, flush=True)
        time.sleep(scenario.get("repeat_delay", 0.1))


if __name__ == "__main__":
    sys.exit(main(SCENARIO))  # noqa: F821 - SCENARIO is set by the launcher
