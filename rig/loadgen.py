"""An open-loop load generator: Poisson arrivals at a time-varying rate, latency measured by the client.

Arrivals are a Poisson process whose rate is constant within each second (`rates[i]` requests/s
in second i): each second's count is Poisson, its arrival times uniform within it. Every request
is sent at its arrival time whatever the earlier ones are doing (open loop: a slow server does
not slow the offered load), on its own connection (so the kernel spreads connections across the
replicas sharing the port). Latency is measured from the *scheduled* arrival, so a late send
(the client itself falling behind) counts against the server as it would for a real user.
Bounded: at most `max_requests` requests, `max_in_flight` at once (more are counted as not
sent), and nothing after `max_seconds`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

import numpy as np

NOT_SENT = -1  # the in-flight cap was reached
CONNECTION_ERROR = 0  # refused, reset, or timed out


def arrival_times(rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Send offsets (seconds from the start) of a piecewise-constant-rate Poisson process."""
    counts = rng.poisson(np.maximum(rates, 0.0))
    starts = np.repeat(np.arange(len(rates), dtype=np.float64), counts)
    return np.sort(starts + rng.random(starts.size))


@dataclass
class LoadReport:
    """One record per request: scheduled send offset, latency (s) and status (HTTP code, 0, -1)."""

    scheduled_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    wall_s: float

    def window(self, start_s: float, end_s: float) -> "LoadReport":
        mask = (self.scheduled_s >= start_s) & (self.scheduled_s < end_s)
        return LoadReport(self.scheduled_s[mask], self.latency_s[mask], self.status[mask], end_s - start_s)

    def throughput(self, start_s: float, end_s: float) -> float:
        """Answered requests/s that completed within [start_s, end_s) (whenever they were sent)."""
        done = self.scheduled_s + self.latency_s
        return float(np.count_nonzero((self.status == 200) & (done >= start_s) & (done < end_s)) / (end_s - start_s))

    def figures(self) -> dict[str, float]:
        """Requests, answered (200), errors, and latency quantiles of the answered requests."""
        ok = self.status == 200
        latency = self.latency_s[ok]
        quantile = (lambda q: float(np.quantile(latency, q))) if latency.size else (lambda q: float("nan"))
        return {"requests": float(self.status.size), "ok": float(ok.sum()), "errors": float((~ok).sum()),
                "rps": float(self.status.size / self.wall_s) if self.wall_s > 0 else 0.0,
                "p50_s": quantile(0.5), "p95_s": quantile(0.95), "p99_s": quantile(0.99)}


async def _request(host: str, port: int, timeout_s: float) -> int:
    async def exchange() -> int:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /infer HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            await reader.read()  # to the end: HTTP/1.0 closes after the response
            return int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else CONNECTION_ERROR
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(exchange(), timeout_s)
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        return CONNECTION_ERROR


async def _run(host: str, port: int, offsets: np.ndarray, max_in_flight: int, timeout_s: float, max_seconds: float,
               progress: Callable[[float, int, int], None] | None) -> LoadReport:
    n = offsets.size
    latency = np.full(n, np.nan)
    status = np.full(n, NOT_SENT, dtype=np.int64)
    in_flight = 0
    tasks: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int) -> None:
        nonlocal in_flight
        try:
            status[i] = await _request(host, port, timeout_s)
            latency[i] = loop.time() - start - offsets[i]
        finally:
            in_flight -= 1

    next_report = 1.0
    for i, offset in enumerate(offsets):
        if offset > max_seconds:
            break
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if progress is not None and offset >= next_report:
            progress(offset, i, in_flight)
            next_report = float(np.floor(offset)) + 1.0
        if in_flight >= max_in_flight:
            continue
        in_flight += 1
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 1)
    sent = offsets <= max_seconds
    return LoadReport(offsets[sent], latency[sent], status[sent], loop.time() - start)


def run_load(host: str, port: int, rates: np.ndarray, *, seed: int = 0, max_requests: int = 100_000,
             max_seconds: float | None = None, max_in_flight: int = 256, timeout_s: float = 10.0,
             progress: Callable[[float, int, int], None] | None = None) -> LoadReport:
    """Offer `rates` (requests/s, one value per second) to http://host:port/infer; every request's outcome."""
    offsets = arrival_times(np.asarray(rates, dtype=np.float64), np.random.default_rng(seed))[:max_requests]
    limit = float(len(rates)) if max_seconds is None else min(float(len(rates)), max_seconds)
    return asyncio.run(_run(host, port, offsets, max_in_flight, timeout_s, limit, progress))
