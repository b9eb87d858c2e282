"""What the benchmarks share: waiting for the service, and percentiles."""

from __future__ import annotations

import asyncio

import aiohttp


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def wait_healthy(http: aiohttp.ClientSession, base: str, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        try:
            async with http.get(f"{base}/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("service did not become healthy")
