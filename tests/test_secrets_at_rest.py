"""Project secrets sealed in the database, the key that seals them, and a private data directory."""

import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from bot import private_files
from bot.config import Settings
from bot.models import Project
from bot.secretbox import KEY_FILE, SecretBox, SecretBoxError, read_or_create_key, seal_legacy_secrets
from tests.api_support import add

ROOT = Path(__file__).resolve().parent.parent
TOKEN_HEADER = "X-Project-Token"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def stored_secrets(deps, project_id: int) -> dict:
    async with deps.engine.connect() as connection:
        value = (await connection.execute(text("SELECT secrets FROM projects WHERE id = :id"),
                                          {"id": project_id})).scalar_one()
    return json.loads(value) if isinstance(value, str) else value


def raw_text(secrets: dict) -> str:
    return json.dumps(secrets)


async def read_project(api, project_id: int, token: str | None):
    return await api.get(f"/projects/{project_id}", headers={TOKEN_HEADER: token} if token else None)


async def test_a_created_project_stores_no_plaintext_secret(api):
    response = await api.post("/projects", {"name": "demo", "git_url": "https://example.com/demo.git",
                                            "secrets": {"api_token": "p-token-0123", "other": "hush-hush"}})
    body = await response.json()
    assert response.status == 200 and body["secrets"] == {"api_token": "[redacted]", "other": "[redacted]"}
    stored = await stored_secrets(api.deps, body["id"])
    assert set(stored) == {"api_token", "other"}
    assert all(value.startswith("fernet:") for value in stored.values())
    assert "p-token-0123" not in raw_text(stored) and "hush-hush" not in raw_text(stored)
    assert api.deps.secret_box.open(stored["api_token"]) == "p-token-0123"


async def test_the_project_token_still_opens_the_project(api):
    created = await (await api.post("/projects", {"name": "demo", "git_url": "https://example.com/demo.git",
                                                  "secrets": {"api_token": "p-token-0123"}})).json()
    assert (await read_project(api, created["id"], None)).status == 401
    assert (await read_project(api, created["id"], "p-token-wrong")).status == 401
    response = await read_project(api, created["id"], "p-token-0123")
    assert response.status == 200 and (await response.json())["secrets"] == {"api_token": "[redacted]"}


async def test_a_legacy_plaintext_row_is_sealed_at_start_up_and_still_works(api):
    legacy = await add(api.deps, Project(name="legacy", git_url="https://example.com/l.git",
                                         secrets={"api_token": "old-token", "count": 3}))
    assert (await read_project(api, legacy.id, "old-token")).status == 200
    assert await seal_legacy_secrets(api.deps.sessions, api.deps.secret_box) == 1
    stored = await stored_secrets(api.deps, legacy.id)
    assert "old-token" not in raw_text(stored) and all(value.startswith("fernet:") for value in stored.values())
    assert api.deps.secret_box.open(stored["count"]) == "3"
    assert await seal_legacy_secrets(api.deps.sessions, api.deps.secret_box) == 0
    assert await stored_secrets(api.deps, legacy.id) == stored
    assert (await read_project(api, legacy.id, "old-token")).status == 200
    assert (await read_project(api, legacy.id, "other")).status == 401


async def test_the_service_start_up_seals_legacy_rows(deps, settings):
    from bot.__main__ import build_service
    from handlers.keys import DEPS

    legacy = await add(deps, Project(name="legacy", secrets={"api_token": "old-token"}))
    app = await build_service(settings)
    try:
        stored = await stored_secrets(deps, legacy.id)
        assert stored["api_token"].startswith("fernet:")
        assert app[DEPS].secret_box.open(stored["api_token"]) == "old-token"
    finally:
        await app[DEPS].close()


def key_settings(tmp_path: Path, key: str | None = None) -> Settings:
    env = {"AGENTRY_DATA_DIR": str(tmp_path / "data"), "AGENTRY_WEBHOOK_SECRET": "x"}
    return Settings.from_env({**env, "AGENTRY_SECRET_KEY": key} if key else env)


def test_a_generated_key_file_is_0600_and_reused(tmp_path):
    first = SecretBox.load(key_settings(tmp_path))
    key_file = tmp_path / "data" / KEY_FILE
    assert mode_of(key_file) == 0o600
    written = key_file.read_text()
    sealed = first.seal("value")
    assert sealed.startswith("fernet:") and "value" not in sealed
    again = SecretBox.load(key_settings(tmp_path))
    assert again.open(sealed) == "value" and key_file.read_text() == written


def test_the_key_from_the_settings_is_used_and_no_file_is_written(tmp_path):
    key = Fernet.generate_key().decode()
    box = SecretBox.load(key_settings(tmp_path, key))
    assert not (tmp_path / "data" / KEY_FILE).exists()
    assert SecretBox.from_key(key, "test").open(box.seal("value")) == "value"


def test_a_wrong_key_fails_with_a_clear_error(tmp_path):
    sealed = SecretBox.load(key_settings(tmp_path)).seal("value")
    other = SecretBox.load(key_settings(tmp_path, Fernet.generate_key().decode()))
    with pytest.raises(SecretBoxError, match="does not open with the key from AGENTRY_SECRET_KEY.*sealed with another"):
        other.open(sealed)
    with pytest.raises(SecretBoxError, match="does not open"):
        other.seal_legacy({"api_token": sealed})


def test_a_malformed_key_file_names_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / KEY_FILE).write_text("not a key\n")
    with pytest.raises(SecretBoxError, match=f"{KEY_FILE} does not hold a Fernet key"):
        SecretBox.load(key_settings(tmp_path))


def test_plaintext_is_returned_as_is_and_values_are_sealed_whatever_they_look_like(tmp_path):
    box = SecretBox.load(key_settings(tmp_path))
    assert box.open("plain") == "plain"
    sealed = box.seal_all({"a": "fernet:looks-sealed", "b": 5, "c": None})
    assert box.open(sealed["a"]) == "fernet:looks-sealed" and box.open(sealed["b"]) == "5" and sealed["c"] is None


def test_processes_racing_to_create_the_key_agree_on_one(tmp_path):
    path = tmp_path / "data" / KEY_FILE
    start, keys = threading.Barrier(8), []

    def load() -> None:
        start.wait()
        keys.append(read_or_create_key(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and keys[0] == path.read_text().strip()


def test_a_key_file_still_being_written_is_waited_for(tmp_path):
    path = tmp_path / KEY_FILE
    path.touch(mode=0o600)
    key = Fernet.generate_key().decode()
    writer = threading.Timer(0.2, lambda: path.write_text(key))
    writer.start()
    started = time.monotonic()
    assert read_or_create_key(path) == key and time.monotonic() - started < 4
    writer.join()


async def test_the_api_says_so_when_the_key_does_not_open_a_project_token(api):
    foreign = SecretBox.from_key(Fernet.generate_key().decode(), "elsewhere").seal("p-token")
    row = await add(api.deps, Project(name="foreign", secrets={"api_token": foreign}))
    response = await read_project(api, row.id, "p-token")
    assert response.status == 500 and "secret key" in (await response.json())["error"]


# --- a private data directory ----------------------------------------------------------------------


@pytest.fixture
def restore_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def sqlite_settings(data_dir: Path, database: Path) -> Settings:
    return Settings.from_env({"AGENTRY_DATA_DIR": str(data_dir), "AGENTRY_WEBHOOK_SECRET": "x",
                              "AGENTRY_DATABASE_URL": f"sqlite+aiosqlite:///{database}"})


def test_start_up_makes_the_data_dir_0700_and_the_umask_0077(tmp_path, restore_umask):
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    private_files.prepare(sqlite_settings(existing, existing / "agentry.db"))
    assert mode_of(existing) == 0o700
    assert os.umask(0o077) == 0o077
    fresh = tmp_path / "fresh" / "data"
    private_files.prepare(sqlite_settings(fresh, fresh / "agentry.db"))
    assert mode_of(fresh) == 0o700


def test_the_sqlite_database_in_the_data_dir_is_0600_after_start_up(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in ("agentry.db", "agentry.db-wal"):
        (data_dir / name).touch(mode=0o644)
    private_files.private_database(sqlite_settings(data_dir, data_dir / "agentry.db"))
    assert mode_of(data_dir / "agentry.db") == 0o600 and mode_of(data_dir / "agentry.db-wal") == 0o600
    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.touch(mode=0o644)
    private_files.private_database(sqlite_settings(data_dir, elsewhere))
    assert mode_of(elsewhere) == 0o644


def test_a_private_key_file_readable_by_others_is_warned_about(tmp_path, caplog):
    key_file = tmp_path / "app.pem"
    key_file.write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="agentry"):
        assert private_files.warn_if_readable_by_others(str(key_file), "AGENTRY_GITHUB_PRIVATE_KEY_PATH")
    assert [record.getMessage() for record in caplog.records if "AGENTRY_GITHUB_PRIVATE_KEY_PATH" in
            record.getMessage()] == [caplog.records[-1].getMessage()]
    key_file.chmod(0o600)
    assert not private_files.warn_if_readable_by_others(str(key_file), "AGENTRY_GITHUB_PRIVATE_KEY_PATH")


def test_migrate_leaves_a_private_data_dir_and_database(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_DATA_DIR=str(data_dir), AGENTRY_WEBHOOK_SECRET="x")
    result = subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert mode_of(data_dir) == 0o700 and mode_of(data_dir / "agentry.db") == 0o600


def test_serve_refuses_to_start_when_the_key_does_not_open_the_stored_secrets(tmp_path):
    import sqlite3

    data_dir = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_DATA_DIR=str(data_dir), AGENTRY_WEBHOOK_SECRET="x", AGENTRY_PORT="0",
               AGENTRY_SECRET_KEY=Fernet.generate_key().decode())
    assert subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=ROOT, env=env, timeout=60).returncode == 0
    foreign = SecretBox.from_key(Fernet.generate_key().decode(), "elsewhere").seal("p-token")
    with sqlite3.connect(data_dir / "agentry.db") as connection:
        connection.execute("INSERT INTO projects (name, base_branch, active, secrets, default_models, status, "
                           "created_at, updated_at) VALUES ('p', 'main', 1, ?, '{}', 'registered', "
                           "'2024-01-01', '2024-01-01')", (json.dumps({"api_token": foreign}),))
    result = subprocess.run([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "does not open with the key from AGENTRY_SECRET_KEY" in result.stderr.strip().splitlines()[-1]
