"""Which missed webhook deliveries to ask GitHub for again (bot/recovery.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from bot.recovery import missed_deliveries

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def attempt(id_, guid, minutes_ago, status):
    when = (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    return {"id": id_, "guid": guid, "delivered_at": when, "status_code": status, "event": "issue_comment"}


@pytest.mark.parametrize(
    "attempts, recorded, expected",
    [
        ([attempt(1, "a", 30, 0)], set(), [1]),  # agentry was down: no answer at all
        ([attempt(1, "a", 30, 502)], set(), [1]),
        ([attempt(1, "a", 30, 202)], set(), []),  # answered, so recorded
        ([attempt(1, "a", 30, 504)], {"a"}, []),  # recorded, then the answer timed out
        ([attempt(1, "a", 30, 0), attempt(2, "a", 20, 0)], set(), [2]),  # the latest attempt is asked again
        ([attempt(1, "a", 30, 0), attempt(2, "a", 20, 202)], set(), []),  # a redelivery got through
        ([attempt(1, "a", 1, 0)], set(), []),  # may still be in flight
        ([attempt(1, "a", 60 * 24 * 3 + 5, 0)], set(), []),  # past GitHub's retention
        ([attempt(1, "a", 30, 0), attempt(2, "b", 30, 202), attempt(3, "c", 40, 500)], {"x"}, [1, 3]),
        ([{"id": 9, "guid": None, "delivered_at": "x"}], set(), []),
    ],
)
def test_missed_deliveries(attempts, recorded, expected):
    assert missed_deliveries(attempts, recorded, NOW) == expected
