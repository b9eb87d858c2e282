"""Prometheus metrics, one registry per process (made at start-up, never at import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
    def create(cls) -> "Metrics":
        registry = CollectorRegistry()
        return cls(
            registry=registry,
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
            queue_depth=Gauge("agentry_queue_depth", "Jobs waiting in the queue", registry=registry),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
