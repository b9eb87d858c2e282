"""The agent sandbox: every process an agent or a repository can influence runs inside it.

``Sandbox.launch(request)`` is an async context manager that yields the command line, environment
and working directory to start; leaving it tears down what the launch set up (the egress proxy, the
per-run directory). ``BwrapSandbox`` runs the command under bubblewrap: fresh user, pid, ipc, uts,
cgroup and network namespaces, no capabilities, read-only system directories, a private /tmp, and
only the paths of the request visible; network through an allowlisting proxy. ``NoSandbox``
(``AGENTRY_SANDBOX=none``) runs the command as it is. A container backend would be a third
implementation of the same two methods.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.sandbox.policy import (
    ETC_ENTRIES,
    SYSTEM_DIRS,
    Endpoint,
    Mounts,
    bwrap_argv,
    group_text,
    install_roots,
    loopback_forwards,
    passwd_text,
    proxy_port,
)
from bot.sandbox.proxy import EgressProxy

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger("agentry.sandbox")

BRIDGE = Path(__file__).with_name("bridge.py")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


class SandboxUnavailable(Exception):
    """The sandbox cannot run here; the message says what to install or set."""


@dataclass(frozen=True)
class SandboxRequest:
    command: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    writable: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()  # besides the operator's AGENTRY_SANDBOX_READ_PATHS
    executables: tuple[Path, ...] = ()  # mounted with their install trees
    cwd_read_only: bool = False
    network: tuple[Endpoint, ...] | None = None  # None: no network at all
    etc: tuple[str, ...] = ETC_ENTRIES  # the public /etc entries it sees (those the host has)


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    denied: list[str] = field(default_factory=list)  # destinations the proxy refused
    unreachable: list[str] = field(default_factory=list)  # allowed destinations it could not reach
    status_file: Path | None = None  # where the bridge notes a death by signal
    stop_target: Callable[[int], int | None] | None = None  # the started pid -> the pid a stop signals

    def exit_code(self, code: int | None) -> int | None:
        """The command's exit code, a death by signal N as -N (as when it runs unsandboxed)."""
        if self.status_file is None or code is None or code <= 128:
            return code
        try:
            noted = self.status_file.read_text()
        except OSError:
            return code
        return -(code - 128) if noted == f"signal {code - 128}\n" else code


def sandbox_init(bwrap_pid: int) -> int | None:
    """The sandbox's pid 1 (the command, run with --as-pid-1): bubblewrap's only child."""
    try:
        children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


class Sandbox(Protocol):
    name: str

    def problem(self) -> str | None:
        """Why the sandbox cannot run here, or None."""

    def launch(self, request: SandboxRequest) -> contextlib.AbstractAsyncContextManager[Launch]:
        """The command to start for ``request``, valid until the context exits."""


class NoSandbox:
    """``AGENTRY_SANDBOX=none``: commands run as agentry's own user with full access."""

    name = "none"

    def problem(self) -> str | None:
        return None

    @contextlib.asynccontextmanager
    async def launch(self, request: SandboxRequest) -> AsyncIterator[Launch]:
        yield Launch(list(request.command), dict(request.env), request.cwd)


class BwrapSandbox:
    name = "bwrap"

    def __init__(self, *, runs_dir: Path, protected: Iterable[Path], read_paths: Iterable[Path] = (),
                 write_paths: Iterable[Path] = (), bwrap: str | None = None) -> None:
        self.runs_dir = runs_dir
        self.protected = tuple(Path(path).resolve() for path in protected)
        self.read_paths = tuple(read_paths)
        self.write_paths = tuple(write_paths)
        self.bwrap = bwrap or shutil.which("bwrap")
        self._problem: str | None | bool = False  # False: not checked yet

    def problem(self) -> str | None:
        if self._problem is False:
            self._problem = self._check()
        return self._problem  # type: ignore[return-value]

    def _check(self) -> str | None:
        if not self.bwrap:
            return f"bubblewrap is not installed: {INSTALL_HINT}, or set AGENTRY_SANDBOX=none to run agents unsandboxed"
        argv = self._argv(["true"], Path("/"), Mounts())
        try:
            done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap cannot start: {exc}"
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip()[-300:]
            return (f"bubblewrap cannot create its namespaces here ({reason}); allow unprivileged user "
                    "namespaces, or set AGENTRY_SANDBOX=none to run agents unsandboxed")
        return None

    @contextlib.asynccontextmanager
    async def launch(self, request: SandboxRequest) -> AsyncIterator[Launch]:
        if (problem := self.problem()) is not None:
            raise SandboxUnavailable(problem)
        run_dir = self._run_dir()
        proxy = None
        try:
            env = {**request.env, "TMPDIR": "/tmp"}
            command = list(request.command)
            files = self._identity_files(run_dir, Path(env.get("HOME", "/tmp")))
            read_only = [*self.read_paths, *request.read_only, *self._install_trees(request.executables)]
            if request.network is not None:
                proxy, command, proxy_env = await self._network(run_dir, request.network, command)
                env = {**{name: value for name, value in env.items() if name.upper() != "NO_PROXY"}, **proxy_env}
                read_only += [BRIDGE, Path(sys.base_prefix)]
                files.append((run_dir / "proxy.sock", str(run_dir / "proxy.sock")))
                (run_dir / "exit-status").touch()
            writable = [*self.write_paths, *request.writable]
            if request.network is not None:
                writable.append(run_dir / "exit-status")
            (read_only if request.cwd_read_only else writable).append(request.cwd)
            mounts = Mounts(tuple(_existing(read_only)), tuple(_existing(writable)), tuple(files))
            yield Launch(self._argv(command, request.cwd, mounts, request.etc), env, run_dir,
                         proxy.denied if proxy is not None else [],
                         proxy.unreachable if proxy is not None else [],
                         run_dir / "exit-status" if request.network is not None else None, sandbox_init)
        finally:
            if proxy is not None:
                await proxy.close()
            shutil.rmtree(run_dir, ignore_errors=True)

    def _argv(self, command: Sequence[str], cwd: Path, mounts: Mounts, etc: Sequence[str] = ETC_ENTRIES) -> list[str]:
        return bwrap_argv(self.bwrap or "bwrap", command, cwd=cwd, mounts=mounts, system=_system_dirs(),
                          etc=_etc_entries(etc))

    def _run_dir(self) -> Path:
        self.runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir = self.runs_dir / secrets.token_hex(8)
        run_dir.mkdir(mode=0o700)
        return run_dir

    def _identity_files(self, run_dir: Path, home: Path) -> list[tuple[Path, str]]:
        (run_dir / "passwd").write_text(passwd_text(home))
        (run_dir / "group").write_text(group_text())
        return [(run_dir / "passwd", "/etc/passwd"), (run_dir / "group", "/etc/group")]

    async def _network(self, run_dir: Path, endpoints: tuple[Endpoint, ...], command: list[str]
                       ) -> tuple[EgressProxy, list[str], dict[str, str]]:
        proxy = EgressProxy(endpoints, run_dir / "proxy.sock")
        await proxy.start()
        forwards = loopback_forwards(endpoints)
        port = proxy_port(forwards)
        bridge = [os.path.realpath(sys.executable), "-I", "-S", str(BRIDGE), str(run_dir / "proxy.sock"), str(port),
                  *(f"[{host}]:{p}" if ":" in host else f"{host}:{p}" for host, p in forwards), "--"]
        url = f"http://127.0.0.1:{port}"
        env = {name: url for name in PROXY_VARIABLES}
        env["NODE_USE_ENV_PROXY"] = "1"
        return proxy, [*bridge, *command], env

    def _install_trees(self, executables: Iterable[Path]) -> list[Path]:
        found: list[Path] = []
        for executable in executables:
            found += [executable, Path(os.path.realpath(executable))]
            found += _interpreters(Path(os.path.realpath(executable)))
        visible = [path for path in found if not path.is_relative_to("/usr")]
        return install_roots(visible, self.protected)


def _existing(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(Path(path) for path in paths if os.path.lexists(path)))


def _system_dirs() -> list[tuple[str, str]]:
    found = [("dir", "usr")]
    for name in SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            found.append((f"symlink:{os.readlink(path)}", name))
        elif path.is_dir():
            found.append(("dir", name))
    return found


def _etc_entries(wanted: Sequence[str]) -> list[str]:
    return [entry for entry in wanted if os.path.lexists(f"/etc/{entry}")]


def _interpreters(script: Path) -> list[Path]:
    """The interpreter of a ``#!`` script (through ``/usr/bin/env`` too), found on PATH."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    words = first[2:].decode(errors="replace").split()
    if not words:
        return []
    program = words[1] if Path(words[0]).name == "env" and len(words) > 1 else words[0]
    found = shutil.which(program)
    if not found:
        return []
    return [Path(found), Path(os.path.realpath(found))]


def make_sandbox(settings: Settings) -> Sandbox:
    if settings.sandbox == "none":
        return NoSandbox()
    data_dir = settings.data_dir.resolve()
    return BwrapSandbox(runs_dir=data_dir / "sandbox", protected=(data_dir, Path.home()),
                        read_paths=settings.sandbox_read_paths, write_paths=settings.sandbox_write_paths)
