"""`kpa`: the Knative Pod Autoscaler in charge of the replicas (its algorithm is `rlscale.env.kpa`).

KServe's serverless mode scales with the KPA; this baseline hands each service to it, with the
concurrency target per service that tuning chooses and Knative's defaults otherwise. It runs in
simulation only: the live controller acts through HPAs.
"""

from __future__ import annotations

from typing import Mapping

from rlscale.agent.policy import Policy, keep_resources
from rlscale.env.kpa import KpaSettings
from rlscale.env.state import Decision, ServiceState


class KpaPolicy(Policy):
    def __init__(self, settings: Mapping[str, KpaSettings] | None = None, name: str = "kpa") -> None:
        self.settings = dict(settings or {})
        self.name = name

    def decide(self, state: ServiceState) -> Decision:
        settings = self.settings.get(state.name) or KpaSettings(target_concurrency=self.context.spec(state.name).concurrency)
        return keep_resources(state, None, kpa=settings)
