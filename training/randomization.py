"""Domain randomization: every training episode draws a cluster, a managed service, a variant of it and its load.

The cluster and service come from a pool of scenarios (`scenarios`, default both shipped ones:
every service of each, the others running under their own HPA beside it as neighbours). The
managed service varies its CPU work per request, start-up time, worker concurrency and SLO
target, and is renamed `MANAGED` so one environment trains on all of them. The load is a
training trace (time-scaled, offset, noised, fitted to a random peak) or one of the generators
with random parameters (diurnal, bursty, flash crowd, ramp, step, sparse, on/off, flat).
Evaluation traces are never seen here: only the training part of the training traces
(`split_trace` holds the rest out for validation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlscale.env.scenario import Scenario
from rlscale.env.workloads import (Bursty, Diurnal, FlashCrowd, OnOff, Ramp, Sparse, Step, Trace, TraceReplay, Workload,
                                   load_trace)
from rlscale.training.config import RandomizationSettings
from rlscale.training.loads import MAX_REPLAY_INTERVAL_S, PEAK_QUANTILE


def split_trace(trace: Trace, validation_share: float) -> tuple[Trace, Trace]:
    """(training part, validation part): the validation part is the trace's last share."""
    cut = int(len(trace.counts) * (1.0 - validation_share))
    return (
        Trace(f"{trace.name}", trace.interval_s, trace.counts[:cut]),
        Trace(f"{trace.name}-validation", trace.interval_s, trace.counts[cut:]),
    )


def load_training_traces(folder: str | None, validation_share: float) -> tuple[list[Trace], list[Trace]]:
    """(training parts, validation parts) of every trace in `folder`; empty when there is none."""
    if folder is None or not Path(folder).is_dir():
        return [], []
    parts = [split_trace(load_trace(path), validation_share) for path in sorted(Path(folder).glob("*.csv"))]
    return [train for train, _ in parts], [validation for _, validation in parts]


def write_trace(trace: Trace, path: Path) -> None:
    """A trace as a `timestamp_s,requests` CSV (the shared traces' format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i * trace.interval_s:g},{count:g}\n" for i, count in enumerate(trace.counts))
    path.write_text("timestamp_s,requests\n" + rows)


MANAGED = "managed"  # the managed service's name in every training episode


def as_managed(scenario: Scenario, service: str) -> Scenario:
    """The scenario with `service` renamed `MANAGED` (listed first)."""
    spec = dataclasses.replace(scenario.service(service), name=MANAGED)
    return dataclasses.replace(scenario, services=(spec, *(s for s in scenario.services if s.name != service)))


@dataclass(frozen=True)
class EpisodeSampler:
    """Draws (scenario variant, workloads) for one episode; picklable for subprocess environments."""

    pool: tuple[tuple[Scenario, str], ...]  # (scenario, service to manage)
    traces: tuple[Trace, ...]
    settings: RandomizationSettings
    episode_s: int

    def __call__(self, rng: np.random.Generator) -> tuple[Scenario, dict[str, Workload]]:
        s = self.settings
        scenario, service = self.pool[int(rng.integers(len(self.pool)))]
        spec = scenario.service(service)
        slo = spec.slo_latency_s * _log_uniform(rng, s.slo_latency)
        variant = dataclasses.replace(
            spec,
            name=MANAGED,
            cpu_per_request=spec.cpu_per_request * _log_uniform(rng, s.cpu_per_request),
            startup_s=spec.startup_s * _log_uniform(rng, s.startup),
            concurrency=max(1, round(spec.concurrency * _log_uniform(rng, s.concurrency))),
            slo_latency_s=min(slo, spec.timeout_s * 0.9),
        )
        services = (variant, *(x for x in scenario.services if x.name != service))
        peak = spec.workload.peak_rps * _log_uniform(rng, s.peak_scale)
        if self.traces and rng.random() < s.trace_share:
            workload = self._trace(rng, peak)
        else:
            workload = random_generator(rng, peak, self.episode_s)
        return dataclasses.replace(scenario, services=services, duration_s=self.episode_s), {MANAGED: workload}

    def _trace(self, rng: np.random.Generator, peak: float) -> TraceReplay:
        trace = self.traces[int(rng.integers(len(self.traces)))]
        time_scale = min(1.0, MAX_REPLAY_INTERVAL_S / trace.interval_s) * _log_uniform(rng, self.settings.time_scale)
        return TraceReplay(
            trace,
            time_scale=time_scale,
            peak_rps_target=peak,
            peak_quantile=PEAK_QUANTILE,
            offset_s=float(rng.uniform(0, trace.duration_s * time_scale)),
            noise=float(rng.uniform(*self.settings.noise)),
        )


def random_generator(rng: np.random.Generator, peak: float, duration_s: int) -> Workload:
    """One of the generators, with parameters drawn around a peak rate."""
    kind = rng.choice(["diurnal", "bursty", "flash_crowd", "ramp", "step", "sparse", "on_off", "flat"])
    low = peak * float(rng.uniform(0.1, 0.6))
    if kind == "sparse":
        return Sparse(burst_rps=peak, mean_gap_s=float(rng.uniform(300, 7200)), mean_burst_s=float(rng.uniform(30, 900)))
    if kind == "on_off":
        return OnOff(on_rps=peak, off_rps=peak * float(rng.uniform(0.0, 0.3)), on_s=float(rng.uniform(60, 1800)),
                     off_s=float(rng.uniform(60, 3600)), start_s=float(rng.uniform(0, 3600)))
    if kind == "flat":
        return Step(base_rps=peak * float(rng.uniform(0.2, 1.0)), step_rps=0.0, at_s=float(duration_s))
    if kind == "diurnal":
        amplitude = float(rng.uniform(0.2, 0.8))
        return Diurnal(mean_rps=peak / (1 + amplitude), amplitude=amplitude, start_s=float(rng.uniform(0, 86_400)),
                       period_s=float(rng.choice([86_400.0, 21_600.0, 7_200.0])), noise=float(rng.uniform(0, 0.1)))
    if kind == "bursty":
        return Bursty(base_rps=low, burst_rps=peak, mean_calm_s=float(rng.uniform(120, 1800)), mean_burst_s=float(rng.uniform(30, 300)))
    if kind == "flash_crowd":
        return FlashCrowd(base_rps=low, peak_rps=peak, start_s=float(rng.uniform(0, duration_s * 0.7)),
                          rise_s=float(rng.uniform(10, 600)), hold_s=float(rng.uniform(60, 1800)), decay_s=float(rng.uniform(60, 1800)))
    if kind == "ramp":
        start, end = (low, peak) if rng.random() < 0.5 else (peak, low)
        return Ramp(start_rps=start, end_rps=end, start_s=float(rng.uniform(0, duration_s / 2)), ramp_s=float(rng.uniform(300, duration_s)))
    return Step(base_rps=low, step_rps=peak, at_s=float(rng.uniform(0, duration_s)))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low
