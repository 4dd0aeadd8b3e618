"""Small scenarios built in code, for the tests and the benches: one cheap service on a two-node pool
(`ONE_SERVICE`) and a lighter service for controller runs on the emulator (`SERVICE`), as raw config
dicts to change with `merge` before validation."""

from __future__ import annotations

import copy
from typing import Any


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in recursively (a None value deletes the key)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


ONE_SERVICE: dict[str, Any] = {
    "name": "test",
    "decision_interval_s": 30,
    "duration_s": 3600,
    "prices": {"cpu_core_hour": 0.03, "memory_gib_hour": 0.004},
    "node_pools": [{"name": "pool", "nodes": 2, "cpu": 16, "memory": "64Gi"}],
    "services": [
        {
            "name": "svc",
            "priority": 0,
            "workload": {"kind": "step", "base_rps": 10, "step_rps": 10, "at_s": 0},
            "request": {"cpu_seconds": 0.1, "memory": "1Mi"},
            "replica": {"base_memory": "100Mi", "concurrency": 1, "startup_s": 10},
            "resources": {"requests": {"cpu": 1, "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
            "replicas": 2,
            "bounds": {"replicas": [1, 20]},
            "slo": {"quantile": 0.95, "latency_s": 1.0},
            "timeout_s": 1000,
            "hpa": {"target_cpu_utilization": 70},
        }
    ],
}

SERVICE: dict[str, Any] = merge(ONE_SERVICE["services"][0], {
    "workload": {"kind": "step", "base_rps": 5, "step_rps": 5, "at_s": 0},
    "request": {"cpu_seconds": 0.05, "memory": "8Mi"},
    "replica": {"concurrency": 2, "base_memory": "100Mi", "startup_s": 2},
    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "replicas": 2,
    "bounds": {"replicas": [1, 20]},
    "slo": {"quantile": 0.95, "latency_s": 0.5},
})
