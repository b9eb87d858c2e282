"""What a sandbox lets through: the egress allowlist and the bubblewrap command line. Pure."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SANDBOX_UID = 1000
PROXY_PORT = 3128
DEFAULT_PORTS = (443, 80)
# The model providers' own API hosts, reachable whatever the operator configured.
PROVIDER_HOSTS = (
    "api.openai.com", "chatgpt.com", "auth.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com", "cloudcode-pa.googleapis.com", "oauth2.googleapis.com",
    "openrouter.ai", "models.dev",
)
# Provider variables that name an endpoint (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, OLLAMA_HOST, ...).
ENDPOINT_SUFFIXES = ("_BASE_URL", "_API_BASE", "_API_URL", "_ENDPOINT", "_HOST")
_URL = re.compile(r"""https?://[^\s"'<>`]+""", re.IGNORECASE)
# /etc entries a program may need and that hold no secret of the host.
ETC_ENTRIES = (
    "ssl", "ca-certificates", "ca-certificates.conf", "pki", "alternatives", "ld.so.cache", "ld.so.conf",
    "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "hosts", "host.conf", "mime.types", "protocols",
    "services", "os-release", "debian_version", "terminfo", "inputrc", "locale.alias", "locale.conf",
    "gai.conf", "xdg", "bash.bashrc", "profile",
)
# What agentry's own git in a worktree needs (no network, no config, C locale): each bind mount
# costs bubblewrap about 0.2 ms.
GIT_ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf")
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Endpoint:
    """An allowed destination: a host (or ``*.domain``) and a port (None: 443 and 80)."""

    host: str
    port: int | None = None

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    @property
    def literal_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def loopback(self) -> bool:
        ip = self.literal_ip
        return self.host == "localhost" or bool(ip and ip.is_loopback)

    def allows(self, host: str, port: int) -> bool:
        host = normal_host(host)
        if port not in (DEFAULT_PORTS if self.port is None else (self.port,)):
            return False
        if self.wildcard:
            return host.endswith(self.host[1:]) and host != self.host[2:]
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def parse_entry(entry: str) -> Endpoint:
    """``host``, ``host:port``, ``*.domain``, ``[::1]:8080``."""
    text = entry.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return Endpoint(host, int(rest[1:]) if rest.startswith(":") else None)
    if text.count(":") == 1:
        host, port = text.split(":")
        return Endpoint(normal_host(host), int(port))
    return Endpoint(normal_host(text))


def endpoint_of_url(url: str) -> Endpoint | None:
    """The exact host and port a URL connects to; None when it names no host."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # OLLAMA_HOST style: host:port
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return Endpoint(normal_host(parts.hostname), port or (443 if parts.scheme == "https" else 80))


def urls_in(text: str) -> list[str]:
    return [match.rstrip(".,;)]}") for match in _URL.findall(text)]


def allowed_endpoints(
    env: Mapping[str, str], config_texts: Iterable[str], extra: Iterable[str]
) -> tuple[Endpoint, ...]:
    """The provider endpoints named in the agent's environment and config files, the providers'
    default hosts, and the operator's extra entries."""
    found: list[Endpoint] = [Endpoint(host, 443) for host in PROVIDER_HOSTS]
    for name, value in env.items():
        if name.endswith(ENDPOINT_SUFFIXES) and (endpoint := endpoint_of_url(value)):
            found.append(endpoint)
    for text in config_texts:
        found += [endpoint for url in urls_in(text) if (endpoint := endpoint_of_url(url))]
    found += [parse_entry(entry) for entry in extra]
    return tuple(dict.fromkeys(found))


def first_allowing(endpoints: Iterable[Endpoint], host: str, port: int) -> Endpoint | None:
    return next((endpoint for endpoint in endpoints if endpoint.allows(host, port)), None)


def loopback_forwards(endpoints: Iterable[Endpoint]) -> list[tuple[str, int]]:
    """Allowed endpoints on the host's loopback, served at the same address inside the sandbox."""
    forwards = []
    for endpoint in endpoints:
        if endpoint.loopback and endpoint.port is not None:
            forwards.append(("127.0.0.1" if endpoint.host == "localhost" else endpoint.host, endpoint.port))
    return list(dict.fromkeys(forwards))


def proxy_port(forwards: Sequence[tuple[str, int]]) -> int:
    taken = {port for _, port in forwards}
    port = PROXY_PORT
    while port in taken:
        port += 1
    return port


# The bubblewrap command line


@dataclass(frozen=True)
class Mounts:
    """Host paths shown inside the sandbox at the same place."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    files: tuple[tuple[Path, str], ...] = ()  # (host file, place inside), read-only


def bwrap_argv(
    bwrap: str, command: Sequence[str], *, cwd: Path, mounts: Mounts, system: Sequence[tuple[str, str]],
    etc: Sequence[str],
) -> list[str]:
    """``system``: (kind, name) for each top-level system dir: ("dir", "usr") or ("symlink:usr/bin", "bin")."""
    argv = [
        bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "agentry-sandbox",
        "--as-pid-1",  # the command is the namespace's init: a stop's SIGTERM reaches it, its exit ends all
    ]
    for kind, name in system:
        if kind == "dir":
            argv += ["--ro-bind", f"/{name}", f"/{name}"]
        else:
            argv += ["--symlink", kind.removeprefix("symlink:"), f"/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run"]
    for entry in etc:
        argv += ["--ro-bind", f"/etc/{entry}", f"/etc/{entry}"]
    for host_file, inside in mounts.files:
        argv += ["--ro-bind", str(host_file), inside]
    for path in mounts.read_only:
        argv += ["--ro-bind", str(path), str(path)]
    for path in mounts.writable:
        argv += ["--bind", str(path), str(path)]
    return [*argv, "--chdir", str(cwd), "--", *command]


def passwd_text(home: Path) -> str:
    return (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"agent:x:{SANDBOX_UID}:{SANDBOX_UID}:agentry sandbox:{home}:/bin/sh\n"
            f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")


def group_text() -> str:
    return f"root:x:0:\nagent:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"


def install_roots(paths: Iterable[Path], protected: Iterable[Path]) -> list[Path]:
    """What to mount for each executable: the outermost ``node_modules`` holding it (an npm package
    finds its platform binary in a sibling package), else its install prefix (``<prefix>/bin/x`` ->
    ``<prefix>``, else its directory); the file alone when that would hold a protected path or is ``/``."""
    guarded = [Path(path) for path in protected]
    roots: list[Path] = []
    for path in paths:
        parent = path.parent
        root = parent.parent if parent.name in ("bin", "sbin") else parent
        if "node_modules" in path.parts:
            root = Path(*path.parts[:path.parts.index("node_modules") + 1])
        unsafe = root == Path("/") or any(guard.is_relative_to(root) for guard in guarded)
        roots.append(path if unsafe else root)
    return list(dict.fromkeys(roots))
