"""The statuses of the rows that are not protocols or steps (those are `bot.workflow`'s): one enum
each, used as the column's type, so a status is written and compared in one spelling.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class ProjectStatus(StrEnum):
    REGISTERED = "registered"  # known, its repository not yet cloned
    READY = "ready"
    SETUP_FAILED = "setup_failed"


class RunStatus(StrEnum):
    """A run (`codex_runs`): one attempt of a job, with its log."""

    QUEUED = "queued"  # waiting for an agent slot
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_RUN_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class JobStatus(StrEnum):
    """A job in the durable queue (`queued_jobs`)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# The words of the reference's queue API (RQ's), for the same states.
JOB_STATUS_WORDS: Mapping[JobStatus, str] = MappingProxyType({
    JobStatus.QUEUED: "queued", JobStatus.RUNNING: "started", JobStatus.DONE: "finished", JobStatus.FAILED: "failed",
})


class DeliveryStatus(StrEnum):
    """A webhook delivery, as recorded at intake."""

    ACCEPTED = "accepted"  # it asked for work: its jobs were queued with it
    IGNORED = "ignored"  # nothing in it for agentry
    INVALID = "invalid"  # refused at intake; a redelivery replaces it

    @classmethod
    def of(cls, jobs: object) -> DeliveryStatus:
        """A delivery that asked for work (it has jobs) is accepted, else ignored."""
        return cls.ACCEPTED if jobs else cls.IGNORED


class ClarificationStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
