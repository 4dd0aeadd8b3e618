"""PromQL templates per inference server: how to read a service's load and latency.

A profile names the request counter, the error counter and either a latency histogram or a
pair of latency counters (sum and count, for servers that export only a mean). Templates
are filled with `{app}` (the selector of the service's own metrics), `{pods}` (the selector
of its containers' cAdvisor series) and `{window}`. Container CPU and memory come from
cAdvisor and kube-state-metrics, whatever the server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    requests: str  # requests/s answered (any status)
    errors: str | None  # requests/s that failed (None: the server does not count failures)
    latency_histogram: str | None  # a histogram's base name: its _bucket series are read
    latency_mean: str | None = None  # seconds: for servers without a latency histogram
    description: str = ""


PROFILES: dict[str, Profile] = {
    "generic": Profile(
        requests="sum(rate(inference_requests_total{{{app}}}[{window}]))",
        errors='sum(rate(inference_requests_total{{{app},code=~"5.."}}[{window}]))',
        latency_histogram="inference_request_duration_seconds",
        description="inference_requests_total{code} and the inference_request_duration_seconds histogram",
    ),
    "vllm": Profile(
        requests="sum(rate(vllm:request_success_total{{{app}}}[{window}]))",
        errors=None,
        latency_histogram="vllm:e2e_request_latency_seconds",
        description="vLLM's OpenAI server: vllm:request_success_total, vllm:e2e_request_latency_seconds",
    ),
    "kserve": Profile(
        requests="sum(rate(request_predict_seconds_count{{{app}}}[{window}]))",
        errors=None,
        latency_histogram="request_predict_seconds",
        description="KServe model servers: the request_predict_seconds histogram",
    ),
    "triton": Profile(
        requests="sum(rate(nv_inference_request_success{{{app}}}[{window}])) + sum(rate(nv_inference_request_failure{{{app}}}[{window}]))",
        errors="sum(rate(nv_inference_request_failure{{{app}}}[{window}]))",
        latency_histogram=None,
        latency_mean="sum(rate(nv_inference_request_duration_us{{{app}}}[{window}])) / sum(rate(nv_inference_request_success{{{app}}}[{window}])) / 1e6",
        description="NVIDIA Triton: nv_inference_request_success/failure, nv_inference_request_duration_us (a mean)",
    ),
    "torchserve": Profile(
        requests="sum(rate(ts_inference_requests_total{{{app}}}[{window}]))",
        errors=None,
        latency_histogram=None,
        latency_mean="sum(rate(ts_inference_latency_microseconds{{{app}}}[{window}])) / sum(rate(ts_inference_requests_total{{{app}}}[{window}])) / 1e6",
        description="TorchServe: ts_inference_requests_total, ts_inference_latency_microseconds (a mean)",
    ),
}

# What every cluster has: cAdvisor and kube-state-metrics.
CPU_USAGE = "sum(rate(container_cpu_usage_seconds_total{{{pods}}}[{window}]))"
THROTTLED = ("sum(rate(container_cpu_cfs_throttled_periods_total{{{pods}}}[{window}])) / "
             "sum(rate(container_cpu_cfs_periods_total{{{pods}}}[{window}]))")
MEMORY = "avg(container_memory_working_set_bytes{{{pods}}})"
OOM_KILLS = ("sum(increase(kube_pod_container_status_restarts_total{{{pods}}}[{window}]) "
             'and on (pod, container) kube_pod_container_status_last_terminated_reason{{{pods},reason="OOMKilled"}})')
FRESHNESS = "time() - max(timestamp(container_cpu_usage_seconds_total{{{pods}}}))"
NODE_CPU_FREE = ('sum(kube_node_status_allocatable{resource="cpu"}) - '
                 'sum(kube_pod_container_resource_requests{resource="cpu",node!=""})')
