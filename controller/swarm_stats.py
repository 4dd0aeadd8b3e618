"""Container CPU, throttling and memory from the Engine API's stats, as rates over the interval.

The Engine API gives cumulative counters per container (CPU nanoseconds, CFS periods and
throttled periods) and the current memory. Each container's last sample is kept, so a rate
covers the time since the previous observation (as Prometheus' `rate()` over cAdvisor does);
a container seen for the first time is read once without `one-shot`, which makes the engine
take two samples about a second apart, so it has a rate at once. The calls for all containers
go out in parallel; one that fails is that container's `ApiFailure`, and one that has gone away
(pruned with its task) has no reading at all.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from rlscale.controller.api_errors import ApiFailure

GONE = object()  # the container went away with its task


@dataclass(frozen=True)
class Sample:
    read_at: float  # the engine's timestamp of the sample (seconds)
    cpu_ns: int
    periods: int
    throttled_periods: int


@dataclass(frozen=True)
class ContainerUsage:
    """One container over the window since its previous sample."""

    cpu_cores: float
    periods: float  # CFS periods elapsed in the window
    throttled_periods: float
    memory_working_set: float
    window_s: float


def engine_time(text: str) -> float:
    """Seconds since the epoch of an Engine API timestamp (RFC 3339 with nanoseconds)."""
    head, _, fraction = text.rstrip("Z").partition(".")
    zone = ""
    for sign in ("+", "-"):
        if sign in fraction:
            fraction, _, offset = fraction.partition(sign)
            zone = sign + offset
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]:0<6}{zone or '+00:00'}").timestamp()


def _sample(cpu_stats: dict[str, Any], read: str) -> Sample | None:
    usage = (cpu_stats or {}).get("cpu_usage") or {}
    if "total_usage" not in usage or read.startswith("0001-"):  # an empty pre-sample reads as the year 1
        return None
    throttling = cpu_stats.get("throttling_data") or {}
    return Sample(engine_time(read), int(usage["total_usage"]), int(throttling.get("periods", 0)),
                  int(throttling.get("throttled_periods", 0)))


def working_set(memory: dict[str, Any]) -> float:
    """Usage less inactive page cache: what cAdvisor (and the OOM killer's view) calls the working set."""
    stats = memory.get("stats") or {}
    inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    return float(max(0, int(memory.get("usage", 0)) - int(inactive)))


class ContainerStats:
    def __init__(self, api: Any, call: Callable[[Callable[[], Any]], Any], workers: int = 8) -> None:
        self.api, self.call = api, call  # `call`: the Engine API call, with its retries
        self.previous: dict[str, Sample] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rlscale-stats")

    def read(self, container_ids: list[str]) -> dict[str, ContainerUsage | ApiFailure | None]:
        """Usage per container still there (None: no rate yet), or the failure to read it."""
        found = {c: usage for c, usage in zip(container_ids, self.pool.map(self._one, container_ids)) if usage is not GONE}
        for gone in set(self.previous) - set(found):
            del self.previous[gone]
        return found  # type: ignore[return-value]

    def close(self) -> None:
        self.pool.shutdown(wait=False)

    def _one(self, container_id: str) -> Any:
        known = self.previous.get(container_id)
        try:
            stats = self.call(lambda: self.api.stats(container_id, stream=False, one_shot=known is not None))
        except ApiFailure as failure:
            return GONE if failure.gone else failure
        now = _sample(stats.get("cpu_stats"), stats.get("read", ""))
        if now is None:
            return None
        before = known or _sample(stats.get("precpu_stats"), stats.get("preread", ""))
        self.previous[container_id] = now
        if before is None or now.read_at <= before.read_at or now.cpu_ns < before.cpu_ns:
            return None
        window = now.read_at - before.read_at
        return ContainerUsage(
            cpu_cores=(now.cpu_ns - before.cpu_ns) / 1e9 / window,
            periods=float(now.periods - before.periods),
            throttled_periods=float(now.throttled_periods - before.throttled_periods),
            memory_working_set=working_set(stats.get("memory_stats") or {}),
            window_s=window,
        )
