"""The `Policy` protocol: heuristics, the oracle and learned policies all decide the same way."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from rlscale.env.scenario import Scenario, ServiceSpec
from rlscale.env.state import Decision, ServiceState


@dataclass(frozen=True)
class EpisodeContext:
    """What a policy may know about the run it is about to decide for."""

    scenario: Scenario
    managed: tuple[str, ...]
    # The mean request rate of every second of the run, per service: only a clairvoyant
    # policy (the oracle) reads it, and only a simulated run offers it.
    future_rates: Callable[[str], np.ndarray] | None = None

    def spec(self, name: str) -> ServiceSpec:
        return self.scenario.service(name)


class Policy(ABC):
    """Decides, once per decision interval, what each managed service should get."""

    name: str = "policy"

    def reset(self, context: EpisodeContext) -> None:
        """Called before each run; policies with memory start it afresh here."""
        self.context = context

    @abstractmethod
    def decide(self, state: ServiceState) -> Decision:
        """The decision for one service from its state."""

    def decide_all(self, states: Mapping[str, ServiceState]) -> dict[str, Decision]:
        """Decisions for every managed service; policies that share a cluster override this."""
        return {name: self.decide(state) for name, state in states.items()}


def keep_resources(state: ServiceState, replicas: int | None, **handover: Any) -> Decision:
    """A decision that leaves the service's resources as they are (`handover`: the HPA or KPA settings)."""
    return Decision(
        replicas=replicas,
        cpu_request=state.cpu_request,
        cpu_limit=state.cpu_limit,
        memory_request=state.memory_request,
        memory_limit=state.memory_limit,
        **handover,
    )
