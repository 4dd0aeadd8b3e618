"""The policies a comparison knows by name, and how each is built (tuned ones from tuning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlscale.agent.hpa_policies import HpaPolicy, HpaSetting, HpaVpaPolicy
from rlscale.agent.learned import LearnedPolicy, load_exported, resolve_policy_path, shipped_model
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
LEARNED_PREFIX = "learned:"  # learned:PATH or learned:NAME of a shipped policy
REFERENCE = "hpa-tuned"  # costs are also reported relative to this policy
TUNED = ("hpa-tuned", "hpa+vpa", "proportional-demand", "proportional-load", "proportional-priority")


@dataclass(frozen=True)
class PolicySpec:
    """A policy by name with its tuned settings: small, picklable, enough to build it anywhere."""

    name: str
    hpa: dict[str, HpaSetting] = field(default_factory=dict)
    fraction: float = 1.0
    path: str | None = None  # of a learned policy

    def build(self) -> Policy:
        if self.path is not None:
            return LearnedPolicy.load(self.path, name=self.name)
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


def default_policy_names() -> list[str]:
    """Every baseline, and the shipped learned policy when there is one."""
    return [*([f"{LEARNED_PREFIX}default"] if shipped_model("default") else []), *POLICY_NAMES]


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
        elif name in POLICY_NAMES:
            specs.append(PolicySpec(name))
        else:
            known = ", ".join([*POLICY_NAMES, f"{LEARNED_PREFIX}PATH"])
            raise UserInputError("--policies", f"unknown policy {name!r} (known: {known})")
    return specs
