"""Checks a running service: /health is ok, a signed webhook is accepted and its job runs."""

import argparse
import hashlib
import hmac
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

PAYLOAD = Path(__file__).resolve().parent.parent / "tests/fixtures/github-webhooks/installation/created.payload.json"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def wait_for(what: str, check, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"smoke: timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    secret = wait_for("the generated webhook secret", lambda: _secret(args.log))
    health = json.loads(wait_for("/health", lambda: get(f"{base}/health")))
    assert health["status"] == "ok", health
    body = PAYLOAD.read_bytes()
    request = urllib.request.Request(f"{base}/webhooks/github", data=body, method="POST", headers={
        "X-GitHub-Event": "installation", "X-GitHub-Delivery": "smoke-1", "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    })
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202, response.status
    job_done = 'agentry_jobs_total{job="handle_installation_job",outcome="ok"} 1.0'
    wait_for("the webhook's job", lambda: job_done in get(f"{base}/metrics"), seconds=30)
    print("smoke: /health ok, signed webhook accepted and processed")


def _secret(log: Path) -> str | None:
    match = re.search(r"webhook secret for this run: (\w+)", log.read_text())
    return match.group(1) if match else None


if __name__ == "__main__":
    main()
