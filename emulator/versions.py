"""Other API versions served as read-only views of the stored objects.

`autoscaling/v1` HorizontalPodAutoscalers are the `autoscaling/v2` ones with the CPU target as
`targetCPUUtilizationPercentage` (what v1 can say), as a real API server converts them; older
kubectl reads them for `describe hpa`.
"""

from __future__ import annotations

from typing import Any


def hpa_v1(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    out_spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    for metric in spec.get("metrics") or []:
        if metric.get("type") == "Resource" and metric["resource"]["name"] == "cpu":
            out_spec["targetCPUUtilizationPercentage"] = metric["resource"]["target"].get("averageUtilization")
    out_status = {k: status[k] for k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas") if k in status}
    for metric in status.get("currentMetrics") or []:
        if metric.get("type") == "Resource" and metric["resource"]["name"] == "cpu":
            out_status["currentCPUUtilizationPercentage"] = metric["resource"]["current"].get("averageUtilization")
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": obj["metadata"],
            "spec": out_spec, "status": out_status}


def hpa_v1_list(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "apiVersion": "autoscaling/v1", "items": [hpa_v1(item) for item in body["items"]]}
