"""Migrations carry what is stored forward: a database at an older revision reads the same after upgrading."""

import json
import sqlite3

from bot import db
from bot.config import sqlite_url
from bot.state import ProtocolState


def test_the_protocol_flags_leave_runtime_state_for_their_columns_and_the_rest_stays(tmp_path):
    path = tmp_path / "agentry.db"
    db.upgrade(sqlite_url(path), "0005")
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO projects (id, name, base_branch, active, secrets, default_models, status, "
                           "created_at, updated_at) VALUES (1, 'p', 'main', 1, '{}', '{}', 'ready', '2026-01-01', "
                           "'2026-01-01')")
        state = {"awaiting_merge": True, "plan_summary": "two steps", "log_url": "written by nothing"}
        connection.execute("INSERT INTO protocol_runs (id, project_id, protocol_name, status, kind, base_branch, "
                           "policy, runtime_state, check_run_completed, tokens_used, created_at, updated_at) VALUES "
                           "(1, 1, 'x', 'running', 'run', 'main', '{}', ?, 0, 0, '2026-01-01', '2026-01-01')",
                           (json.dumps(state),))
    db.upgrade(sqlite_url(path))
    with sqlite3.connect(path) as connection:
        stored, merge, answers = connection.execute(
            "SELECT runtime_state, awaiting_merge, awaiting_answers FROM protocol_runs").fetchone()
    assert (json.loads(stored), merge, answers) == ({"plan_summary": "two steps", "log_url": "written by nothing"}, 1, 0)
    assert ProtocolState.read(json.loads(stored)).shown() == {"plan_summary": "two steps"}  # what no one declares goes
