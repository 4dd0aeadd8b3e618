"""The emulator's `/metrics`: what a real cluster's Prometheus would scrape, with the real names.

- cAdvisor (kubelet): container_cpu_usage_seconds_total, container_cpu_cfs_periods_total,
  container_cpu_cfs_throttled_periods_total (100 ms CFS periods), container_memory_working_set_bytes;
- kube-state-metrics: Deployment replicas, pod readiness, creation and ready times, container
  requests and limits, restarts and the last termination reason (OOMKilled), HPA bounds and replicas;
- each service's own request counter and latency histogram (inference_requests_total,
  inference_request_duration_seconds).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from rlscale.emulator.api import LATENCY_BUCKETS_S, ClusterApi

NODE_POOL_SERIES_LABEL = "label_rlscale_io_node_pool"  # kube-state-metrics' name for the label rlscale.io/node-pool

CFS_PERIODS_PER_SECOND = 10  # the kernel's default cfs_period_us = 100 ms


class ClusterCollector(Collector):
    """`nan` (a fault) makes the container CPU counters NaN, as a broken exporter would; `faults` may also
    leave metric families out, hide some pods' cAdvisor series, or freeze them (values and timestamps)."""

    def __init__(self, api: ClusterApi, nan: Callable[[], bool] = lambda: False, faults: Callable[[], Any] | None = None) -> None:
        self.api = api
        self.nan = nan
        self.faults = faults
        self._frozen: dict[str, tuple[float, float, float, float, float]] = {}  # pod -> (stamp, cpu, periods, throttled, memory)

    def collect(self) -> Iterator[Metric]:
        api = self.api
        stamp = time.time()  # cAdvisor stamps its samples; a frozen exporter's samples then age
        ns = api.namespace
        pod_labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total", "Cumulative CPU time consumed (cAdvisor).", labels=pod_labels)
        periods = CounterMetricFamily("container_cpu_cfs_periods_total", "Elapsed CFS enforcement periods.", labels=pod_labels)
        throttled = CounterMetricFamily("container_cpu_cfs_throttled_periods_total", "Throttled CFS periods.", labels=pod_labels)
        memory = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set (cAdvisor).", labels=pod_labels)
        requests = GaugeMetricFamily("kube_pod_container_resource_requests", "Container requests.",
                                     labels=[*pod_labels, "node", "resource", "unit"])
        limits = GaugeMetricFamily("kube_pod_container_resource_limits", "Container limits.", labels=[*pod_labels, "node", "resource", "unit"])
        allocatable = GaugeMetricFamily("kube_node_status_allocatable", "Node allocatable resources.", labels=["node", "resource", "unit"])
        node_labels = GaugeMetricFamily("kube_node_labels", "Node labels (as --metric-labels-allowlist=nodes=[rlscale.io/node-pool]).",
                                        labels=["node", NODE_POOL_SERIES_LABEL])
        ready = GaugeMetricFamily("kube_pod_status_ready", "Pod readiness.", labels=["namespace", "pod", "condition"])
        created = GaugeMetricFamily("kube_pod_created", "Unix creation timestamp.", labels=["namespace", "pod"])
        ready_time = GaugeMetricFamily("kube_pod_status_ready_time", "Readiness achieved time in unix timestamp.", labels=["namespace", "pod"])
        base = api.base.timestamp()
        restarts = CounterMetricFamily("kube_pod_container_status_restarts_total", "Container restarts.", labels=pod_labels)
        reason = GaugeMetricFamily("kube_pod_container_status_last_terminated_reason", "Last termination reason.",
                                   labels=[*pod_labels, "reason"])
        spec_replicas = GaugeMetricFamily("kube_deployment_spec_replicas", "Desired replicas.", labels=["namespace", "deployment"])
        ready_replicas = GaugeMetricFamily("kube_deployment_status_replicas_ready", "Ready replicas.", labels=["namespace", "deployment"])
        available = GaugeMetricFamily("kube_deployment_status_replicas_available", "Available replicas.", labels=["namespace", "deployment"])
        hpa_labels = ["namespace", "horizontalpodautoscaler"]
        hpa_min = GaugeMetricFamily("kube_horizontalpodautoscaler_spec_min_replicas", "HPA minReplicas.", labels=hpa_labels)
        hpa_max = GaugeMetricFamily("kube_horizontalpodautoscaler_spec_max_replicas", "HPA maxReplicas.", labels=hpa_labels)
        hpa_desired = GaugeMetricFamily("kube_horizontalpodautoscaler_status_desired_replicas", "HPA desired replicas.", labels=hpa_labels)
        hpa_current = GaugeMetricFamily("kube_horizontalpodautoscaler_status_current_replicas", "HPA current replicas.", labels=hpa_labels)
        app_requests = CounterMetricFamily("inference_requests", "Requests answered, by status code.", labels=["namespace", "service", "code"])
        latency = HistogramMetricFamily("inference_request_duration_seconds", "Request latency of answered requests.",
                                        labels=["namespace", "service"])
        faults = self.faults() if self.faults else None
        hidden, stale = set(getattr(faults, "hidden_pods", ())), set(getattr(faults, "stale_pods", ()))
        self._frozen = {pod: sample for pod, sample in self._frozen.items() if pod in stale}
        with api.lock:
            telemetry = api.telemetry
            for svc in api.sim.services:
                name = svc.spec.name
                ready_count = 0
                for p in svc.pods:
                    labels = [ns, p.name, name]
                    is_ready = p.ready_since is not None
                    ready_count += is_ready
                    ready.add_metric([ns, p.name, "true"], float(is_ready))
                    ready.add_metric([ns, p.name, "false"], float(not is_ready))
                    created.add_metric([ns, p.name], base + max(p.created_at, -base))
                    if is_ready:
                        ready_time.add_metric([ns, p.name], base + p.ready_since)
                    node = p.node.name if p.node is not None else ""
                    requests.add_metric([*labels, node, "cpu", "core"], p.cpu_request)
                    requests.add_metric([*labels, node, "memory", "byte"], p.memory_request)
                    limits.add_metric([*labels, node, "cpu", "core"], p.cpu_limit)
                    limits.add_metric([*labels, node, "memory", "byte"], p.memory_limit)
                    restarts.add_metric(labels, float(p.restarts))
                    if p.last_termination_reason:
                        reason.add_metric([*labels, p.last_termination_reason], 1.0)
                    if p.node is None or p.name in hidden:
                        continue
                    sample = (stamp, math.nan if self.nan() else p.cpu_seconds, p.running_seconds * CFS_PERIODS_PER_SECOND,
                              p.throttled_seconds * CFS_PERIODS_PER_SECOND, p.working_set if p.started_at is not None else 0.0)
                    if p.name in stale:
                        sample = self._frozen.setdefault(p.name, sample)
                    when, cpu_seconds, period_count, throttled_count, working_set = sample
                    cpu.add_metric(labels, cpu_seconds, timestamp=when)
                    periods.add_metric(labels, period_count, timestamp=when)
                    throttled.add_metric(labels, throttled_count, timestamp=when)
                    memory.add_metric(labels, working_set, timestamp=when)
                spec_replicas.add_metric([ns, name], float(svc.replicas))
                ready_replicas.add_metric([ns, name], float(ready_count))
                available.add_metric([ns, name], float(ready_count))
                hpa_min.add_metric([ns, name], float(svc.hpa_spec.min_replicas))
                hpa_max.add_metric([ns, name], float(svc.hpa_spec.max_replicas))
                decision = svc.last_hpa_decision
                hpa_desired.add_metric([ns, name], float(decision.desired_replicas if decision else svc.replicas))
                hpa_current.add_metric([ns, name], float(svc.replicas))
                app_requests.add_metric([ns, name, "200"], telemetry.ok[name])
                app_requests.add_metric([ns, name, "503"], telemetry.failed[name])
                counts = telemetry.buckets[name]
                buckets = [(f"{bound:g}", float(count)) for bound, count in zip(LATENCY_BUCKETS_S, counts)]
                latency.add_metric([ns, name], [*buckets, ("+Inf", telemetry.ok[name])], telemetry.latency_sum[name])
            for node in api.sim.nodes:
                allocatable.add_metric([node.name, "cpu", "core"], node.cpu)
                allocatable.add_metric([node.name, "memory", "byte"], node.memory)
                node_labels.add_metric([node.name, node.pool], 1.0)
        dropped = set(getattr(faults, "drop_metrics", ()))
        yield from (family for family in (cpu, periods, throttled, memory, requests, limits, allocatable, node_labels, ready, created,
                                          ready_time, restarts, reason, spec_replicas, ready_replicas, available, hpa_min, hpa_max,
                                          hpa_desired, hpa_current, app_requests, latency) if family.name not in dropped)
