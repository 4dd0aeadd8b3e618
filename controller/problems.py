"""Why a service is handed back to its HPA: one exception type, and every reason code there is."""

from __future__ import annotations


class ServiceProblem(Exception):
    """This service cannot be managed now; `reason` is a short code (MetricsMissing, TargetMissing, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


METRICS_REASONS = ("MetricsMissing", "MetricsStale", "MetricsInvalid", "PrometheusUnavailable", "PrometheusError")
POLICY_REASONS = ("InvalidObservation", "InvalidPolicyOutput")
FAIL_STATIC_REASONS = (*METRICS_REASONS, "TargetMissing", "TargetInvalid", "InvalidAnnotation", "ApiErrors", *POLICY_REASONS,
                       "Paused", "HumanEdit")
