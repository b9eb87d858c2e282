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



async def test_a_large_payload_is_stored_whole_and_compressed_with_lz4_on_postgresql(database_url):
    """pglz cost more CPU per stored webhook than everything else PostgreSQL did for it."""
    from sqlalchemy import text

    from bot.delivery_tables import delivery_tables
    from bot.models import IncomingDelivery
    from bot.statuses import DeliveryStatus
    from tests.conftest import FIXTURES

    body = (FIXTURES / "github-webhooks/issue_comment/created.payload.json").read_text()
    engine = db.make_engine(database_url)
    tables = delivery_tables(engine, database_url)
    try:
        await tables.record([(IncomingDelivery(delivery_id="large", forge="github", event="issue_comment",
                                               status=DeliveryStatus.IGNORED, payload_json=body), [])])
        async with engine.connect() as connection:
            stored = (await connection.execute(text("SELECT CAST(payload AS TEXT) FROM webhook_deliveries"))).scalar_one()
            method = None if db.is_sqlite(database_url) else (await connection.execute(text(
                "SELECT CAST(attcompression AS TEXT) FROM pg_attribute WHERE attrelid = 'webhook_deliveries'::regclass "
                "AND attname = 'payload'"))).scalar_one()
    finally:
        await tables.close()
        await engine.dispose()
    assert json.loads(stored) == json.loads(body)
    assert method == (None if db.is_sqlite(database_url) else "l")
