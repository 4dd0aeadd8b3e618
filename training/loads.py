"""The loads a comparison runs on: the project's generated shapes, or real traces fitted to services.

A `LoadCase` gives, for a seed, one workload per service of a scenario. Traces of any scale
are fitted to each service: rates scaled so the trace's 99th-percentile rate equals the
service's nominal peak (its own workload's peak), and coarse traces compressed in time so one
trace interval lasts at most `MAX_REPLAY_INTERVAL_S` (an hourly trace keeps its daily shape
without taking days). A case `as_recorded` replays its trace as it is instead, at its own rates
and speed: a service's own history (`rlscale calibrate`'s held-out future) is a load of the right
size already. Seeds start long traces at successive windows; every choice is recorded in `fit`
for the comparison's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlscale.env.scenario import Scenario
from rlscale.env.workloads import Bursty, Diurnal, FlashCrowd, OnOff, Sparse, Trace, TraceReplay, Workload, load_trace
from rlscale.errors import UserInputError

MAX_REPLAY_INTERVAL_S = 60.0
PEAK_QUANTILE = 0.99
GENERATED_SHAPES = ("diurnal", "bursty", "flash-crowd", "sparse", "on-off")


@dataclass(frozen=True)
class LoadCase:
    """One load of a comparison: a generated shape, or a trace."""

    name: str
    shape: str | None = None  # a generated shape ...
    trace: Trace | None = None  # ... or a trace
    path: str | None = None
    as_recorded: bool = False  # the trace at its own rates and speed, not fitted to the service

    def duration_s(self, scenario: Scenario) -> int:
        """The run's length: the scenario's, or the replayed trace's if shorter (whole intervals)."""
        length = scenario.duration_s
        if self.trace is not None:
            length = min(length, int(self.trace.duration_s * self.time_scale))
        return length - length % scenario.decision_interval_s

    def workloads(self, scenario: Scenario, seed: int) -> dict[str, Workload]:
        """One workload per service for the run with this seed."""
        duration = self.duration_s(scenario)
        return {
            spec.name: self._replay(spec.workload.peak_rps, duration, seed)
            if self.trace is not None
            else generated(self.shape or "", spec.workload.peak_rps, duration)
            for spec in scenario.services
        }

    def _replay(self, peak_rps: float, duration_s: int, seed: int) -> TraceReplay:
        assert self.trace is not None
        scale = self.time_scale
        return TraceReplay(
            self.trace,
            time_scale=scale,
            peak_rps_target=None if self.as_recorded else peak_rps,
            peak_quantile=PEAK_QUANTILE,
            offset_s=(seed * duration_s) % (self.trace.duration_s * scale),
        )

    @property
    def time_scale(self) -> float:
        """How the trace's time axis is replayed (1: as recorded; below 1: a coarse trace compressed)."""
        assert self.trace is not None
        return 1.0 if self.as_recorded else min(1.0, MAX_REPLAY_INTERVAL_S / self.trace.interval_s)

    def describe(self, scenario: Scenario, seeds: list[int]) -> dict[str, Any]:
        """How this load was fitted to each service, for the record."""
        duration = self.duration_s(scenario)
        peaks = {s.name: s.workload.peak_rps for s in scenario.services}
        if self.trace is None:
            return {"kind": "generated", "shape": self.shape, "duration_s": duration, "peak_rps": peaks}
        return {
            "kind": "trace",
            "path": self.path,
            "interval_s": self.trace.interval_s,
            "as_recorded": self.as_recorded,
            "time_scale": self.time_scale,
            "duration_s": duration,
            "peak_quantile": PEAK_QUANTILE,
            "services": {name: {"peak_rps": peak, "scale": self._replay(peak, duration, 0).scale} for name, peak in peaks.items()},
            "offset_s": {str(seed): self._replay(1.0, duration, seed).offset_s for seed in seeds},
        }


def generated(shape: str, peak_rps: float, duration_s: int) -> Workload:
    """The project's own load shapes, sized to a service's peak rate."""
    if shape == "diurnal":
        return Diurnal(mean_rps=peak_rps / 1.6, amplitude=0.6, start_s=8 * 3600.0, noise=0.05)
    if shape == "bursty":
        return Bursty(base_rps=peak_rps / 4, burst_rps=peak_rps, mean_calm_s=900.0, mean_burst_s=120.0)
    if shape == "flash-crowd":
        return FlashCrowd(base_rps=peak_rps / 5, peak_rps=peak_rps, start_s=duration_s / 3, rise_s=120.0,
                          hold_s=900.0, decay_s=900.0, jitter_s=duration_s / 6)
    if shape == "sparse":
        return Sparse(burst_rps=peak_rps, mean_gap_s=3_600.0, mean_burst_s=300.0)
    if shape == "on-off":
        return OnOff(on_rps=peak_rps, off_rps=peak_rps / 20, on_s=600.0, off_s=1_200.0)
    raise ValueError(f"unknown shape {shape!r}")


def generated_cases() -> list[LoadCase]:
    return [LoadCase(name=shape, shape=shape) for shape in GENERATED_SHAPES]


def trace_cases(sources: list[str], scenario: Scenario, as_recorded: bool = False) -> list[LoadCase]:
    """The traces named by files and directories (every *.csv inside), checked for use."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise UserInputError(source, "no *.csv trace in this directory")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise UserInputError(source, "no such trace file or directory")
    cases = []
    for path in paths:
        trace = load_trace(path)
        case = LoadCase(name=path.stem, trace=trace, path=str(path), as_recorded=as_recorded)
        replay = trace.duration_s * case.time_scale
        if case.duration_s(scenario) < scenario.decision_interval_s:
            raise UserInputError(
                str(path), f"the trace lasts {replay:g} s once replayed, shorter than one decision interval ({scenario.decision_interval_s} s)"
            )
        cases.append(case)
    return cases

