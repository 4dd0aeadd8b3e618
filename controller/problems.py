"""Why a service is handed back to its HPA: every reason code there is, and one exception type."""

from __future__ import annotations

METRICS_REASONS = ("MetricsMissing", "MetricsStale", "MetricsInvalid", "PrometheusUnavailable", "PrometheusError")
POLICY_REASONS = ("InvalidObservation", "InvalidPolicyOutput")
SWARM_REASONS = ("InvalidLabels", "OOMKilled")  # Swarm services (controller/swarm.py)
FAIL_STATIC_REASONS = (*METRICS_REASONS, "TargetMissing", "TargetInvalid", "InvalidAnnotation", "ApiErrors", *POLICY_REASONS,
                       "Paused", "HumanEdit", *SWARM_REASONS)


def reason_code(reason: str) -> str:
    """`reason`, which must be one of FAIL_STATIC_REASONS (a typo here would be a metric nobody alerts on)."""
    if reason not in FAIL_STATIC_REASONS:
        raise ValueError(f"unknown fail-static reason {reason!r}")
    return reason


class ServiceProblem(Exception):
    """This service cannot be managed now; `reason` is a short code (MetricsMissing, TargetMissing, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason_code(reason), detail
