"""What a webhook handler is given: the settings it decides with, and where its jobs go."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.config import Settings
from bot.queue import Job


@dataclass
class Intake:
    settings: Settings
    delivery_id: str
    jobs: list[Job] = field(default_factory=list)

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job)


def is_bot(user: dict | None, app_slug: str | None = None) -> bool:
    if not user:
        return True
    login = user.get("login", "")
    if user.get("type") == "Bot" or login.endswith("[bot]"):
        return True
    return bool(app_slug) and login.lower() == f"{app_slug.lower()}[bot]"
