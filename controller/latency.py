"""Latency figures from what Prometheus returns: the share of requests slower than a target, by linear
interpolation inside a histogram bucket (as PromQL's histogram_quantile interpolates), and the exponential
tail for servers that export only a mean."""

from __future__ import annotations

import math
from typing import Iterable


def bracketing(bounds: Iterable[str], targets: Iterable[float]) -> list[str]:
    """Of a histogram's `le` bounds (as exported), those each target falls between, and +Inf: all `slower_than` needs."""
    ordered = sorted((float(le), le) for le in set(bounds))
    needed = {le for value, le in ordered if math.isinf(value)}
    for target in targets:
        below = [le for value, le in ordered if value < target]
        above = [le for value, le in ordered if value >= target]
        needed.update(below[-1:] + above[:1])
    return sorted(needed, key=float)


def slower_than(buckets: list[tuple[float, float]], limit: float) -> float:
    """The share of requests slower than `limit` from cumulative bucket rates (upper bound, rate); 0 with none.
    Only the bounds around `limit` and +Inf are needed."""
    points = sorted(buckets)
    if not points or points[-1][1] <= 0:
        return 0.0
    total = points[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in points:
        if bound >= limit:
            if math.isinf(bound):
                return max(0.0, 1.0 - previous_count / total)
            share = (limit - previous_bound) / (bound - previous_bound) if bound > previous_bound else 1.0
            return max(0.0, 1.0 - (previous_count + share * (count - previous_count)) / total)
        previous_bound, previous_count = bound, count
    return 0.0


def exponential_figures(mean: float, quantile: float, slo_s: float) -> tuple[float, float]:
    """(quantile, share slower than `slo_s`) for servers that export only a mean, assuming
    exponential latency (an M/M/1-like tail)."""
    if mean <= 0:
        return 0.0, 0.0
    return mean * math.log(1.0 / (1.0 - quantile)), math.exp(-slo_s / mean)
