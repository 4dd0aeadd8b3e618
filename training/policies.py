"""The policies a comparison knows by name, and how each is built (tuned ones from tuning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlscale.agent.hpa_policies import HpaPolicy, HpaSetting, HpaVpaPolicy
from rlscale.agent.oracle import Oracle
from rlscale.agent.policy import Policy
from rlscale.agent.proportional import ProportionalShare
from rlscale.errors import UserInputError

POLICY_NAMES = (
    "hpa",
    "hpa-tuned",
    "hpa+vpa",
    "proportional-demand",
    "proportional-load",
    "proportional-priority",
    "oracle",
)
REFERENCE = "hpa-tuned"  # costs are also reported relative to this policy
TUNED = ("hpa-tuned", "hpa+vpa", "proportional-demand", "proportional-load", "proportional-priority")


@dataclass(frozen=True)
class PolicySpec:
    """A policy by name with its tuned settings: small, picklable, enough to build it anywhere."""

    name: str
    hpa: dict[str, HpaSetting] = field(default_factory=dict)
    fraction: float = 1.0

    def build(self) -> Policy:
        if self.name == "hpa":
            return HpaPolicy()
        if self.name == "hpa-tuned":
            return HpaPolicy(self.hpa, name="hpa-tuned")
        if self.name == "hpa+vpa":
            return HpaVpaPolicy(self.hpa)
        if self.name.startswith("proportional-"):
            return ProportionalShare(self.name.removeprefix("proportional-"), self.fraction)
        if self.name == "oracle":
            return Oracle()
        raise ValueError(f"unknown policy {self.name!r}")

    def describe(self) -> dict[str, Any]:
        if self.name in ("hpa-tuned", "hpa+vpa"):
            return {name: {"target_utilization": s.target_utilization, "scale_down_window_s": s.scale_down_window_s}
                    for name, s in self.hpa.items()}
        if self.name.startswith("proportional-"):
            return {"fraction": self.fraction}
        return {}


def parse_policy_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserInputError("--policies", "name at least one policy")
    for name in names:
        if name not in POLICY_NAMES:
            raise UserInputError("--policies", f"unknown policy {name!r} (known: {', '.join(POLICY_NAMES)})")
    return list(dict.fromkeys(names))
