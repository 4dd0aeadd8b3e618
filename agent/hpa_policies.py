"""The HPA family of baselines: the HPA in charge, tuned or not, and HPA + a VPA-style recommender."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from rlscale.agent.policy import EpisodeContext, Policy, keep_resources
from rlscale.agent.vpa import VpaRecommender, VpaSettings
from rlscale.env.state import Decision, ServiceState


@dataclass(frozen=True)
class HpaSetting:
    """An HPA's tunable knobs."""

    target_utilization: int  # percent of the CPU request
    scale_down_window_s: int | None = None  # None: the controller's default (300 s)
    scale_up: str | None = None  # a preset of `hpa_behavior.SCALE_UP_PRESETS` (None: as configured)
    tolerance: float | None = None  # None: as configured (the controller's 10%)

    def handover(self) -> dict[str, int | float | str | None]:
        """The Decision fields that hand the service to an HPA with these settings."""
        return {"hpa_target_utilization": self.target_utilization, "hpa_scale_down_window_s": self.scale_down_window_s,
                "hpa_scale_up": self.scale_up, "hpa_tolerance": self.tolerance}


class HpaPolicy(Policy):
    """The service's own HPA decides the replicas (nothing pinned), optionally with new settings."""

    def __init__(self, settings: Mapping[str, HpaSetting] | None = None, name: str = "hpa") -> None:
        self.settings = dict(settings or {})
        self.name = name

    def decide(self, state: ServiceState) -> Decision:
        setting = self.settings.get(state.name)
        if setting is None:
            return keep_resources(state, None)
        return keep_resources(state, None, **setting.handover())


class HpaVpaPolicy(HpaPolicy):
    """The (tuned) HPA for replicas, and a VPA-style recommender for CPU and memory.

    Requests follow the recommender, updated when a recommendation moves by more than the
    settings' threshold and not more often than their minimum interval. The memory limit keeps
    the service's limit-to-request ratio (VPA's RequestsAndLimits). The CPU limit is left as it
    is, raised only to stay above the request (RequestsOnly for CPU, as commonly deployed next
    to a CPU HPA): a limit that follows usage down throttles, and throttled usage looks smaller
    still.
    """

    def __init__(
        self, settings: Mapping[str, HpaSetting] | None = None, vpa: VpaSettings | None = None, name: str = "hpa+vpa"
    ) -> None:
        super().__init__(settings, name)
        self.vpa = vpa or VpaSettings()
        self._recommenders: dict[str, VpaRecommender] = {}
        self._last_update: dict[str, float] = {}

    def reset(self, context: EpisodeContext) -> None:
        super().reset(context)
        self._recommenders = {name: VpaRecommender(self.vpa) for name in context.managed}
        self._last_update = {}

    def decide(self, state: ServiceState) -> Decision:
        hpa = super().decide(state)
        recommender = self._recommenders[state.name]
        recommender.observe(state)
        cpu, memory = recommender.recommendation()
        last = self._last_update.get(state.name)
        due = last is None or state.time_s - last >= self.vpa.min_update_interval_s
        moved = _moved(cpu, state.cpu_request, self.vpa.update_threshold) or _moved(
            memory, state.memory_request, self.vpa.update_threshold
        )
        if not (due and moved and recommender.samples > 0):
            return hpa
        self._last_update[state.name] = state.time_s
        spec = self.context.spec(state.name)
        return Decision(
            replicas=None,
            cpu_request=cpu,
            cpu_limit=max(state.cpu_limit, cpu),
            memory_request=memory,
            memory_limit=memory * spec.memory_limit / spec.memory_request,
            hpa_target_utilization=hpa.hpa_target_utilization,
            hpa_scale_down_window_s=hpa.hpa_scale_down_window_s,
            hpa_scale_up=hpa.hpa_scale_up,
            hpa_tolerance=hpa.hpa_tolerance,
        )


def _moved(recommended: float, current: float, threshold: float) -> bool:
    return abs(recommended - current) > threshold * current
