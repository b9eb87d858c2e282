"""Which of the app's webhook deliveries agentry missed, from GitHub's own record of them.

GitHub never retries a delivery that failed (agentry down, a timeout, a 5xx), but it keeps each
attempt for three days and redelivers one on request. A delivery is missed when none of its
attempts got a 2xx answer and agentry has no record of its GUID; it is asked for again once,
through its latest attempt, after a settling time so that deliveries still in flight are left alone.
Pure: the caller lists the attempts and knows which GUIDs were recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

RETENTION = timedelta(days=3)  # how long GitHub keeps deliveries to redeliver
SETTLE = timedelta(minutes=2)  # younger attempts may still be arriving


def delivered_at(attempt: Mapping[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(attempt.get("delivered_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def missed_deliveries(attempts: Iterable[Mapping[str, Any]], recorded: set[str], now: datetime) -> list[int]:
    """The ids of the attempts to redeliver: the latest attempt of each GUID none of whose
    attempts succeeded, that agentry has not recorded, and whose latest attempt has settled."""
    latest: dict[str, Mapping[str, Any]] = {}
    succeeded: set[str] = set()
    for attempt in attempts:
        guid, when = attempt.get("guid"), delivered_at(attempt)
        if not isinstance(guid, str) or when is None:
            continue
        if 200 <= int(attempt.get("status_code") or 0) < 300:
            succeeded.add(guid)
        if guid not in latest or when > delivered_at(latest[guid]):  # type: ignore[operator]
            latest[guid] = attempt
    return [int(attempt["id"]) for guid, attempt in latest.items()
            if guid not in succeeded and guid not in recorded and _settled(attempt, now)]


def _settled(attempt: Mapping[str, Any], now: datetime) -> bool:
    when = delivered_at(attempt)
    return when is not None and now - RETENTION < when <= now - SETTLE
