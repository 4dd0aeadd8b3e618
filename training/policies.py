"""The one policy registry: every policy by name, what it is, and how it is built (tuned ones from tuning).

| policy                  | what decides                                                    | tuned | live | needs the future |
| ----------------------- | --------------------------------------------------------------- | ----- | ---- | ---------------- |
| `hpa`                   | the service's HPA as configured                                  |       | yes  |                  |
| `hpa-tuned`             | the HPA, with target, windows, scale-up and tolerance tuned      | yes   | yes  |                  |
| `hpa+vpa`               | the tuned HPA, and a VPA-style recommender for requests          | yes   | yes  |                  |
| `predictive`            | a load forecast, the queueing capacity model and a margin        | yes   | yes  |                  |
| `kpa`                   | Knative's Pod Autoscaler on concurrency                          | yes   |      |                  |
| `proportional-demand`   | a share of the cluster by request rate                           | yes   |      |                  |
| `proportional-load`     | a share of the cluster by CPU used                               | yes   |      |                  |
| `proportional-priority` | a share of the cluster by priority                               | yes   |      |                  |
| `oracle`                | the cheapest plan meeting the SLO, knowing the future           |       |      | yes              |
| `learned:PATH`          | an exported PPO policy (`learned:default` is the shipped one)    |       | yes  |                  |

`bound`, the physical lower bound, is not a policy: every comparison reports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlscale.agent.hpa_policies import HpaPolicy, HpaVpaPolicy
from rlscale.agent.kpa_policy import KpaPolicy
from rlscale.agent.learned import LearnedPolicy, load_exported, resolve_policy_path, shipped_model
from rlscale.agent.oracle import Oracle
from rlscale.agent.policy import Policy
from rlscale.agent.predictive import PredictivePolicy
from rlscale.agent.proportional import ProportionalShare
from rlscale.errors import UserInputError


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    tuned: bool = False  # has knobs that tuning chooses on training loads
    live: bool = False  # the controller can run it
    clairvoyant: bool = False  # reads the future: simulation only


REGISTRY: dict[str, PolicyInfo] = {
    info.name: info
    for info in (
        PolicyInfo("hpa", live=True),
        PolicyInfo("hpa-tuned", tuned=True, live=True),
        PolicyInfo("hpa+vpa", tuned=True, live=True),
        PolicyInfo("predictive", tuned=True, live=True),
        PolicyInfo("kpa", tuned=True),
        PolicyInfo("proportional-demand", tuned=True),
        PolicyInfo("proportional-load", tuned=True),
        PolicyInfo("proportional-priority", tuned=True),
        PolicyInfo("oracle", clairvoyant=True),
    )
}
POLICY_NAMES = tuple(REGISTRY)
LEARNED_PREFIX = "learned:"  # learned:PATH or learned:NAME of a shipped policy
REFERENCE = "hpa-tuned"  # costs are also reported relative to this policy
TUNED = tuple(name for name, info in REGISTRY.items() if info.tuned)
HPA_FAMILY = ("hpa-tuned", "hpa+vpa")
PER_SERVICE = (*HPA_FAMILY, "predictive", "kpa")  # tuned service by service (the others: one shared fraction)


@dataclass(frozen=True)
class PolicySpec:
    """A policy by name with its tuned settings: small, picklable, enough to build it anywhere.

    `settings` maps each service to its tuned knobs (an `HpaSetting`, `PredictiveSettings` or
    `KpaSettings`); `fraction` is the proportional shares' knob; `path` a learned policy's folder.
    """

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    fraction: float = 1.0
    path: str | None = None

    def build(self) -> Policy:
        if self.path is not None:
            return LearnedPolicy.load(self.path, name=self.name)
        builders = {
            "hpa": lambda: HpaPolicy(),
            "hpa-tuned": lambda: HpaPolicy(self.settings, name="hpa-tuned"),
            "hpa+vpa": lambda: HpaVpaPolicy(self.settings),
            "predictive": lambda: PredictivePolicy(dict(self.settings)),
            "kpa": lambda: KpaPolicy(self.settings),
            "oracle": lambda: Oracle(),
        }
        if self.name in builders:
            return builders[self.name]()
        if self.name.startswith("hpa@"):  # one point of the HPA frontier
            return HpaPolicy(self.settings, name=self.name)
        if self.name.startswith("proportional-"):
            return ProportionalShare(self.name.removeprefix("proportional-"), self.fraction)
        raise ValueError(f"unknown policy {self.name!r}")

    def describe(self) -> dict[str, Any]:
        """The tuned settings as plain data (for JSON and reports)."""
        if self.name in PER_SERVICE:
            return {service: dataclasses.asdict(setting) for service, setting in self.settings.items()}
        if self.name.startswith("proportional-"):
            return {"fraction": self.fraction}
        return {}


COINCIDE_ALONE = ("proportional-load", "proportional-priority")  # with one service, every share is the whole cluster


def default_policy_names(services: int = 2) -> list[str]:
    """Every baseline, and the shipped learned policy when there is one.

    On a one-service scenario the three proportional formulas give the same share (all of it),
    so only `proportional-demand` runs.
    """
    names = [name for name in POLICY_NAMES if services > 1 or name not in COINCIDE_ALONE]
    return [*([f"{LEARNED_PREFIX}default"] if shipped_model("default") else []), *names]


def parse_policy_names(text: str) -> list[PolicySpec]:
    """The policies named on the command line; a learned policy is loaded (and checked) now."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UserInputError("--policies", "name at least one policy")
    specs = []
    for name in names:
        if name.startswith(LEARNED_PREFIX):
            path = resolve_policy_path(name.removeprefix(LEARNED_PREFIX))
            if path is None:
                raise UserInputError("--policies", f"{name}: no such policy directory or shipped policy")
            load_exported(path)  # refuse a broken policy before any run starts
            specs.append(PolicySpec(name, path=str(path)))
        elif name in REGISTRY:
            specs.append(PolicySpec(name))
        else:
            known = ", ".join([*POLICY_NAMES, f"{LEARNED_PREFIX}PATH"])
            raise UserInputError("--policies", f"unknown policy {name!r} (known: {known})")
    return specs
