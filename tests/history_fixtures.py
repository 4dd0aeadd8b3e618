"""History for calibration tests: the emulator's `/metrics`, sampled in simulated time, as OpenMetrics.

`record_history` runs an emulated cluster ahead by hand and samples the emulator's collector
(the same families and labels Prometheus scrapes from it) every `scrape_s` simulated seconds,
each sample stamped with the simulated wall-clock time. The file goes to Prometheus's own
backfill (`PrometheusServer(backfill=...)`), so hours of history exist within seconds while
Prometheus, its TSDB and its PromQL are the real ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rlscale.emulator.api import ClusterApi
from rlscale.emulator.metrics import ClusterCollector
from rlscale.env.scenario import Scenario

Series = dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]]


def emulated_history(scenario: Scenario, seconds: int, *, seed: int = 0, end: float | None = None) -> ClusterApi:
    """An emulator whose run starts `seconds` before `end` (default now, on a whole minute), not yet advanced."""
    end = end if end is not None else math.floor(datetime.now(timezone.utc).timestamp() / 60) * 60
    start = datetime.fromtimestamp(end - seconds, timezone.utc)
    return ClusterApi(scenario, seed=seed, duration_s=seconds + 60, start=start)


def record_history(api: ClusterApi, seconds: int, scrape_s: int, path: Path, *, nan_cpu: bool = False) -> None:
    """Advance `api` by `seconds`, sampling its metrics every `scrape_s`; write them as OpenMetrics to `path`."""
    collector = ClusterCollector(api, nan=lambda: nan_cpu)
    series: Series = {}
    for i in range(seconds // scrape_s + 1):
        if i:
            api.advance(scrape_s)
        stamp = api.now.timestamp()
        for family in collector.collect():
            for sample in family.samples:
                by_labels = series.setdefault(sample.name, {})
                by_labels.setdefault(tuple(sorted(sample.labels.items())), []).append((stamp, float(sample.value)))
    with path.open("w") as out:
        for name, by_labels in series.items():
            out.write(f"# TYPE {name} unknown\n")
            for labels, points in by_labels.items():
                text = ",".join(f'{k}="{v}"' for k, v in labels)
                selector = f"{name}{{{text}}}" if text else name
                out.writelines(f"{selector} {_number(v)} {t:.3f}\n" for t, v in points)
        out.write("# EOF\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(value)


def arrivals_per_interval(api: ClusterApi, service: str, step_s: int, start_s: int, count: int) -> np.ndarray:
    """The emulated load: the simulator's arrivals in each interval of `step_s` from `start_s` (simulated seconds)."""
    arrivals = api.sim.service(service).arrivals
    return np.array([arrivals[start_s + i * step_s: start_s + (i + 1) * step_s].sum() for i in range(count)])
