"""The sandbox's pure rules: the egress allowlist, loopback forwards, install trees, the bubblewrap
command line, and redaction of known secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.redact import MARK, Redactor
from bot.sandbox.policy import (
    PROVIDER_HOSTS,
    Endpoint,
    Mounts,
    allowed_endpoints,
    bwrap_argv,
    endpoint_of_url,
    install_roots,
    loopback_forwards,
    parse_entry,
    proxy_port,
    urls_in,
)


@pytest.mark.parametrize(("entry", "expected"), [
    ("example.com", Endpoint("example.com")),
    ("Example.COM:8443", Endpoint("example.com", 8443)),
    ("*.corp.example", Endpoint("*.corp.example")),
    ("127.0.0.1:11434", Endpoint("127.0.0.1", 11434)),
    ("[::1]:8080", Endpoint("::1", 8080)),
    ("localhost:1234", Endpoint("localhost", 1234)),
])
def test_allowlist_entries(entry, expected):
    assert parse_entry(entry) == expected


@pytest.mark.parametrize(("endpoint", "host", "port", "allowed"), [
    (Endpoint("example.com"), "example.com", 443, True),
    (Endpoint("example.com"), "EXAMPLE.com.", 80, True),
    (Endpoint("example.com"), "example.com", 22, False),
    (Endpoint("example.com", 8443), "example.com", 8443, True),
    (Endpoint("example.com", 8443), "example.com", 443, False),
    (Endpoint("example.com"), "evil-example.com", 443, False),
    (Endpoint("example.com"), "example.com.evil.net", 443, False),
    (Endpoint("*.corp.example"), "git.corp.example", 443, True),
    (Endpoint("*.corp.example"), "corp.example", 443, False),
    (Endpoint("*.corp.example"), "evilcorp.example", 443, False),
    (Endpoint("127.0.0.1", 11434), "127.0.0.1", 11434, True),
    (Endpoint("127.0.0.1", 11434), "127.0.0.1", 6379, False),
])
def test_endpoint_matching(endpoint, host, port, allowed):
    assert endpoint.allows(host, port) is allowed


@pytest.mark.parametrize(("url", "expected"), [
    ("https://api.example.com/v1", Endpoint("api.example.com", 443)),
    ("http://127.0.0.1:11434", Endpoint("127.0.0.1", 11434)),
    ("http://[::1]:9000/x", Endpoint("::1", 9000)),
    ("127.0.0.1:11434", Endpoint("127.0.0.1", 11434)),  # OLLAMA_HOST style
    ("ftp://example.com", None),
    ("https://", None),
    ("http://host:notaport/", None),
])
def test_endpoint_of_url(url, expected):
    assert endpoint_of_url(url) == expected


def test_allowed_endpoints_come_from_provider_variables_config_files_defaults_and_the_operator():
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:4010/v1", "ANTHROPIC_BASE_URL": "https://gw.example.org",
           "OLLAMA_HOST": "127.0.0.1:11434", "OPENAI_API_KEY": "https://not-an-endpoint.example"}
    config = 'model_provider = "local"\n[model_providers.local]\nbase_url = "http://10.1.2.3:8000/v1"\n'
    found = allowed_endpoints(env, [config], ["pypi.org", "*.corp.example:8443"])
    assert Endpoint("127.0.0.1", 4010) in found
    assert Endpoint("gw.example.org", 443) in found
    assert Endpoint("127.0.0.1", 11434) in found
    assert Endpoint("10.1.2.3", 8000) in found
    assert Endpoint("pypi.org") in found and Endpoint("*.corp.example", 8443) in found
    assert all(Endpoint(host, 443) in found for host in PROVIDER_HOSTS)
    assert Endpoint("not-an-endpoint.example", 443) not in found  # a key is not an endpoint


def test_urls_in_config_text():
    text = '{"provider": {"x": {"options": {"baseURL": "http://127.0.0.1:9/v1"}}}, "see": "(https://a.example/b)."}'
    assert urls_in(text) == ["http://127.0.0.1:9/v1", "https://a.example/b"]


def test_loopback_endpoints_are_forwarded_at_the_same_address_and_the_proxy_port_avoids_them():
    endpoints = [Endpoint("127.0.0.1", 3128), Endpoint("localhost", 11434), Endpoint("api.openai.com", 443),
                 Endpoint("::1", 8080), Endpoint("127.0.0.1")]
    forwards = loopback_forwards(endpoints)
    assert forwards == [("127.0.0.1", 3128), ("127.0.0.1", 11434), ("::1", 8080)]
    assert proxy_port(forwards) == 3129


@pytest.mark.parametrize(("executable", "expected"), [
    ("/opt/tools/bin/codex", "/opt/tools"),
    ("/opt/aider-venv/bin/aider", "/opt/aider-venv"),
    ("/opt/agent/run-agent", "/opt/agent"),
    ("/srv/data/bin/agent", "/srv/data/bin/agent"),  # the prefix holds the data dir: the file alone
    ("/home/agentry/bin/x", "/home/agentry/bin/x"),  # the prefix is the user's home
    ("/bin/tool", "/bin/tool"),  # the prefix would be /
])
def test_install_roots(executable, expected):
    protected = [Path("/srv/data/agentry"), Path("/home/agentry")]
    assert install_roots([Path(executable)], protected) == [Path(expected)]


def test_bwrap_command_line_isolates_and_mounts_only_what_it_is_given():
    mounts = Mounts(read_only=(Path("/opt/tools"),), writable=(Path("/data/worktrees/7"), Path("/data/homes/h")),
                    files=((Path("/data/sandbox/r/passwd"), "/etc/passwd"),))
    argv = bwrap_argv("bwrap", ["codex", "exec", "--json"], cwd=Path("/data/worktrees/7"), mounts=mounts,
                      system=[("dir", "usr"), ("symlink:usr/bin", "bin")], etc=["ssl", "hosts"])
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                 "--die-with-parent", "--new-session", "--disable-userns"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--uid") + 1] == "1000"
    pairs = [tuple(argv[i:i + 3]) for i in range(len(argv) - 2)]
    assert ("--ro-bind", "/usr", "/usr") in pairs and ("--symlink", "usr/bin", "/bin") in pairs
    assert ("--ro-bind", "/etc/ssl", "/etc/ssl") in pairs
    assert ("--ro-bind", "/data/sandbox/r/passwd", "/etc/passwd") in pairs
    assert ("--ro-bind", "/opt/tools", "/opt/tools") in pairs
    assert ("--bind", "/data/worktrees/7", "/data/worktrees/7") in pairs
    assert ("--tmpfs", "/tmp") in [tuple(argv[i:i + 2]) for i in range(len(argv) - 1)]
    assert argv[argv.index("--chdir") + 1] == "/data/worktrees/7"
    assert argv[argv.index("--") + 1:] == ["codex", "exec", "--json"]
    assert "/data" not in [argv[i + 1] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind")]


# Redaction

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw\n" \
      "7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh\n" \
      "-----END RSA PRIVATE KEY-----\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("token ghs_abcdefghijklmnop in a line", f"token {MARK} in a line"),
    ("ghs_abcdefghijklmnopghs_abcdefghijklmnop", MARK * 2),
    ("the webhook secret is s3cret-webhook-value.", f"the webhook secret is {MARK}."),
    ("nothing to hide", "nothing to hide"),
    ("short", "short"),  # values under 8 characters are never registered
    ("7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh", MARK),
])
def test_redaction(text, expected):
    redactor = Redactor(["ghs_abcdefghijklmnop", "s3cret-webhook-value", "short"])
    redactor.add_private_key(PEM)
    assert redactor(text) == expected


def test_secret_variables_are_registered_by_their_names():
    redactor = Redactor()
    redactor.add_secret_variables({"OPENAI_API_KEY": "sk-test-1234567890", "ANTHROPIC_AUTH_TOKEN": "tok-abcdefgh12",
                                   "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "DB_PASSWORD": "hunter2hunter2"})
    assert redactor("sk-test-1234567890 tok-abcdefgh12 hunter2hunter2 http://127.0.0.1:9/v1") == \
        f"{MARK} {MARK} {MARK} http://127.0.0.1:9/v1"
