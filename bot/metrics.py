"""Prometheus metrics, one registry per process (made at start-up, never at import).

When several web processes serve together, each keeps its values in a file of a directory they
share (prometheus-client's multiprocess mode) and `/metrics`, whichever process answers it, sums
them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    deliveries: Counter
    jobs: Counter
    job_seconds: Histogram
    queue_depth: Gauge
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # labels -> child, looked up once

    def served(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered."""
        self._child(self.requests, method, route, str(status)).inc()
        self._child(self.request_seconds, route).observe(seconds)

    def delivered(self, forge: str, outcome: str) -> None:
        """One webhook delivery and what became of it."""
        self._child(self.deliveries, forge, outcome).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @classmethod
    def create(cls, shared: Path | None = None) -> "Metrics":
        """This process's metrics; with `shared`, those of all the web processes writing there."""
        exposed = CollectorRegistry()
        registry: CollectorRegistry | None = exposed
        if shared is not None:
            _keep_values_in(shared)
            MultiProcessCollector(exposed, path=str(shared))
            registry = None
        return cls(
            registry=exposed,
            requests=Counter(
                "agentry_http_requests", "HTTP requests served", ["method", "route", "status"], registry=registry
            ),
            request_seconds=Histogram(
                "agentry_http_request_seconds", "HTTP request latency", ["route"],
                buckets=LATENCY_BUCKETS, registry=registry,
            ),
            deliveries=Counter(
                "agentry_webhook_deliveries", "Webhook deliveries by outcome", ["forge", "outcome"], registry=registry
            ),
            jobs=Counter("agentry_jobs", "Jobs finished, by name and outcome", ["job", "outcome"], registry=registry),
            job_seconds=Histogram(
                "agentry_job_seconds", "Job duration", ["job"], buckets=JOB_BUCKETS, registry=registry
            ),
            queue_depth=Gauge("agentry_queue_depth", "Jobs waiting in the queue", registry=registry,
                              multiprocess_mode="mostrecent"),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _keep_values_in(directory: Path) -> None:
    """prometheus-client picks where values live when it is imported, from this variable; a process
    that imported it before knowing it shares its metrics is switched over here, before any metric
    is made."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
