"""`predictive`: a forecast of the load, a capacity model, and a safety margin (the MPC family's baseline).

What the field runs when it wants to be ahead of the HPA (ADAPT's MPC, SageServe, Dynamo's
planner, KEDA's forecast scalers): at every decision it forecasts the request rate over the
time its decision takes to matter (one interval, one HPA sync and the start-up time), and sets
the replicas the capacity model says that rate needs at the SLO, plus a margin, as a floor: the
service's HPA keeps scaling above it between decisions (what a forecast can't see, the HPA
still reacts to every 15 s).

- **Forecast** (`forecast`): damped Holt (level and trend, exponential smoothing) on the rates
  it has observed, one value per decision interval; the forecast is the largest of the
  trend's projection over the horizon and the last observation, so it rises with a surge at
  once and falls only as the level does.
- **Capacity model**: each replica is the same M/M/c queue the simulator and the oracle use, at
  the service's observed CPU per request (smoothed; the service's nominal work until it has
  served any) and its current CPU limit; the fewest replicas whose latency quantile meets the SLO
  target at the forecast rate x (1 + margin).

Everything comes from the states it sees, so it runs live as in simulation. `margin`,
`level_smoothing`, `trend_smoothing` and the HPA's target above the floor are what tuning
chooses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rlscale.agent.oracle import replicas_needed
from rlscale.agent.policy import EpisodeContext, Policy, keep_resources
from rlscale.env.dynamics import replica_model
from rlscale.env.state import Decision, ServiceState

WORK_SMOOTHING = 0.3  # of the observed CPU per request


@dataclass(frozen=True)
class PredictiveSettings:
    margin: float = 0.2  # extra rate provisioned, as a share of the forecast
    level_smoothing: float = 0.5  # Holt's alpha
    trend_smoothing: float = 0.3  # Holt's beta (0: no trend)
    trend_damping: float = 0.9  # per interval of the horizon
    hpa_target: int = 100  # CPU target (% of the request) of the HPA that scales above the floor

    def __post_init__(self) -> None:
        if not 1 <= self.hpa_target <= 1000:
            raise ValueError(f"hpa_target must lie in [1, 1000] percent, got {self.hpa_target!r}")
        for name, low, high in (("margin", 0.0, 10.0), ("level_smoothing", 0.0, 1.0), ("trend_smoothing", 0.0, 1.0),
                                ("trend_damping", 0.0, 1.0)):
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high) or (name == "level_smoothing" and value == 0.0):
                raise ValueError(f"{name} must lie in {'(' if name == 'level_smoothing' else '['}{low:g}, {high:g}], got {value!r}")


@dataclass
class Holt:
    """Damped Holt's linear exponential smoothing of one series."""

    level: float | None = None
    trend: float = 0.0
    last: float = 0.0

    def observe(self, value: float, settings: PredictiveSettings) -> None:
        if self.level is None:
            self.level = value
        else:
            previous = self.level
            alpha, beta, phi = settings.level_smoothing, settings.trend_smoothing, settings.trend_damping
            self.level = alpha * value + (1 - alpha) * (previous + phi * self.trend)
            self.trend = beta * (self.level - previous) + (1 - beta) * phi * self.trend
        self.last = value

    def forecast(self, steps: float, settings: PredictiveSettings) -> float:
        """The largest of the last value and the damped trend's projection up to `steps` ahead."""
        if self.level is None:
            return 0.0
        phi = settings.trend_damping
        damped = steps if phi >= 1.0 else phi * (1 - phi**steps) / (1 - phi)
        return max(self.last, self.level + max(self.trend, 0.0) * damped, 0.0)


@dataclass
class _Memory:
    load: Holt = field(default_factory=Holt)
    work: float | None = None  # smoothed CPU seconds per request


class PredictivePolicy(Policy):
    def __init__(self, settings: PredictiveSettings | dict[str, PredictiveSettings] | None = None,
                 name: str = "predictive") -> None:
        self.settings = settings or PredictiveSettings()
        self.name = name

    def reset(self, context: EpisodeContext) -> None:
        super().reset(context)
        self._memory = {name: _Memory() for name in context.managed}

    def _settings(self, service: str) -> PredictiveSettings:
        if isinstance(self.settings, dict):
            return self.settings.get(service, PredictiveSettings())
        return self.settings

    def decide(self, state: ServiceState) -> Decision:
        spec = self.context.spec(state.name)
        settings = self._settings(state.name)
        memory = self._memory[state.name]
        memory.load.observe(state.load_rps, settings)
        served = state.load_rps * (1.0 - state.drop_fraction)
        if served > 0 and state.cpu_usage > 0 and state.replicas_ready > 0:
            observed = state.cpu_usage * state.replicas_ready / served
            memory.work = observed if memory.work is None else WORK_SMOOTHING * observed + (1 - WORK_SMOOTHING) * memory.work
        scenario = self.context.scenario
        horizon_s = scenario.decision_interval_s + scenario.timings.hpa_sync_period_s + spec.startup_s
        rate = memory.load.forecast(horizon_s / scenario.decision_interval_s, settings) * (1.0 + settings.margin)
        model = replica_model(
            state.cpu_limit, state.memory_limit, concurrency=spec.concurrency,
            cpu_per_request=memory.work or spec.cpu_per_request, cores_per_request=spec.cores_per_request,
            memory_per_request=spec.memory_per_request, base_memory=spec.base_memory,
        )
        replicas = replicas_needed(model, spec, rate, rate)
        floor = min(max(replicas, state.bounds.min_replicas), state.bounds.max_replicas)
        return keep_resources(state, floor, hpa_floor=True, hpa_target_utilization=settings.hpa_target)
