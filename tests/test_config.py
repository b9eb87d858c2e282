import pytest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.config import ConfigError, Settings

BASE = {"AGENTRY_WEBHOOK_SECRET": "s3cret"}


def test_defaults_follow_the_specification():
    settings = Settings.from_env(BASE)
    assert (settings.host, settings.port) == ("127.0.0.1", 8010)
    assert settings.database_url.startswith("sqlite+aiosqlite:///") and settings.database_url.endswith("/.agentry/agentry.db")
    assert settings.redis_url is None and settings.embedded_queue
    assert settings.command_prefix == "/agent"
    assert settings.default_engine == "codex"
    assert (settings.step_timeout_seconds, settings.idle_timeout_seconds) == (3600, 600)
    assert settings.token_budget_mode == "warn"
    assert settings.auto_qa_on_ci is False
    assert settings.max_concurrent_jobs == 2
    assert settings.github_api_url == "https://api.github.com"
    assert (settings.labels.run, settings.labels.plan, settings.labels.ralph) == ("agent:run", "agent:plan", "agent:ralph")
    assert not settings.github_app_configured


@pytest.mark.parametrize(
    "env, names",
    [
        ({}, "AGENTRY_WEBHOOK_SECRET"),
        ({**BASE, "AGENTRY_PORT": "http"}, "AGENTRY_PORT"),
        ({**BASE, "AGENTRY_MAX_CONCURRENT_JOBS": "0"}, "AGENTRY_MAX_CONCURRENT_JOBS"),
        ({**BASE, "AGENTRY_DEFAULT_ENGINE": "gpt"}, "AGENTRY_DEFAULT_ENGINE"),
        ({**BASE, "AGENTRY_TOKEN_BUDGET_MODE": "loose"}, "AGENTRY_TOKEN_BUDGET_MODE"),
        ({**BASE, "AGENTRY_AUTO_QA_ON_CI": "maybe"}, "AGENTRY_AUTO_QA_ON_CI"),
        ({**BASE, "AGENTRY_STEP_TIMEOUT_SECONDS": "-1"}, "AGENTRY_STEP_TIMEOUT_SECONDS"),
        ({**BASE, "AGENTRY_GITHUB_APP_ID": "1"}, "AGENTRY_GITHUB_PRIVATE_KEY"),
        ({**BASE, "AGENTRY_GITHUB_PRIVATE_KEY": "k"}, "AGENTRY_GITHUB_APP_ID"),
        ({**BASE, "AGENTRY_GITHUB_APP_ID": "1", "AGENTRY_GITHUB_PRIVATE_KEY_PATH": "/nonexistent/key.pem"},
         "AGENTRY_GITHUB_PRIVATE_KEY_PATH"),
        ({**BASE, "AGENTRY_ENGINE_COMMAND": "run 'unclosed"}, "AGENTRY_ENGINE_COMMAND"),
        ({**BASE, "AGENTRY_PORT": "99999"}, "AGENTRY_PORT"),
        ({**BASE, "AGENTRY_HOST": "999.1.1.1"}, "AGENTRY_HOST"),
        ({**BASE, "AGENTRY_HOST": "two words"}, "AGENTRY_HOST"),
        ({**BASE, "AGENTRY_DATABASE_URL": "garbage"}, "AGENTRY_DATABASE_URL"),
        ({**BASE, "AGENTRY_DATABASE_URL": "mysql://root:pw@db/agentry"}, "AGENTRY_DATABASE_URL"),
        ({**BASE, "AGENTRY_REDIS_URL": "localhost:6379"}, "AGENTRY_REDIS_URL"),
        ({**BASE, "AGENTRY_GITHUB_API_URL": "api.github.com"}, "AGENTRY_GITHUB_API_URL"),
        ({**BASE, "AGENTRY_GITLAB_URL": "ftp://gitlab.example"}, "AGENTRY_GITLAB_URL"),
        ({**BASE, "AGENTRY_GITHUB_APP_ID": "1", "AGENTRY_GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nnope"},
         "AGENTRY_GITHUB_PRIVATE_KEY"),
    ],
)
def test_a_bad_setting_names_its_variable(env, names):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert names in str(raised.value)
    assert "\n" not in str(raised.value)


def test_dev_mode_generates_a_webhook_secret():
    settings = Settings.from_env({"AGENTRY_DEV_MODE": "1"})
    assert settings.webhook_secret_generated and len(settings.webhook_secret) >= 32
    assert Settings.from_env({"AGENTRY_DEV_MODE": "1"}).webhook_secret != settings.webhook_secret


def app_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "127.0.0.1", "agentry.internal", "localhost"])
def test_hosts_that_can_be_listened_on_are_taken(value):
    assert Settings.from_env({**BASE, "AGENTRY_HOST": value}).host == value


def test_a_database_url_with_a_password_is_never_echoed():
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, "AGENTRY_DATABASE_URL": "mysql://root:hunter2@db/agentry"})
    assert "hunter2" not in str(raised.value)


def test_secrets_never_appear_in_repr():
    settings = Settings.from_env({
        **BASE, "AGENTRY_API_TOKEN": "api-tok-123", "AGENTRY_GITHUB_APP_ID": "7",
        "AGENTRY_GITHUB_PRIVATE_KEY": app_key(), "AGENTRY_GITLAB_TOKEN": "glpat-999",
    })
    text = repr(settings)
    for secret in ("s3cret", "api-tok-123", "PRIVATE KEY", "glpat-999"):
        assert secret not in text


def test_private_key_is_read_from_a_file(tmp_path):
    key = tmp_path / "app.pem"
    key.write_text(app_key())
    settings = Settings.from_env({**BASE, "AGENTRY_GITHUB_APP_ID": "7", "AGENTRY_GITHUB_PRIVATE_KEY_PATH": str(key)})
    assert settings.github_app_configured and settings.github_private_key.startswith("-----BEGIN")


def test_per_engine_settings_are_collected():
    settings = Settings.from_env({
        **BASE, "AGENTRY_CODEX_BIN": "/opt/codex", "AGENTRY_CLAUDE_ARGS": "--max-turns 5 --foo 'a b'",
        "AGENTRY_GEMINI_CONFIG": "/etc/gemini.json", "AGENTRY_ENGINE_COMMAND": "python3 agent.py --fast",
    })
    assert settings.engine_bins == {"codex": "/opt/codex"}
    assert settings.engine_args == {"claude": ("--max-turns", "5", "--foo", "a b")}
    assert settings.engine_configs == {"gemini": "/etc/gemini.json"}
    assert settings.engine_command == ("python3", "agent.py", "--fast")


def test_settings_are_frozen():
    settings = Settings.from_env(BASE)
    with pytest.raises(Exception):
        settings.port = 1


def test_the_readme_configuration_table_is_made_from_the_declared_settings():
    from pathlib import Path

    from bot.config import settings_table

    section = (Path(__file__).parent.parent / "README.md").read_text().split("## Configuration", 1)[1]
    table = section[section.index("| variable"):].split("\n\n", 1)[0]
    assert table == settings_table(), "make it again with: python -c 'from bot.config import settings_table as t; print(t())'"


def test_one_engine_list_for_the_grammar_the_settings_and_the_runners():
    from bot.agents import ENGINE_MODULES
    from bot.engines import ENGINES

    assert tuple(ENGINE_MODULES) == ENGINES
