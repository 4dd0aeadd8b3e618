"""PromQL templates per inference server: how to read the services' load and latency.

Every query reads all managed services at once and groups by labels, so one control loop
costs a handful of queries however many services there are. `{app}` is the selector of the
services' own metrics (the managed namespaces), `{by}` the grouping (`by (namespace,
service)`: `app_label` names the label whose value is the service's HPA name; on Swarm
`by (service)`, the Swarm service's name), `{pods}` the
selector of the containers' cAdvisor and kube-state-metrics series (grouped by namespace,
pod and container, and matched to each Deployment's own pods by the controller), `{window}`
the rate window. A profile
names the request counter, the error counter, and a latency histogram or (for servers that
export only a mean) a pair of latency counters.
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
        requests="sum {by} (rate(inference_requests_total{{{app}}}[{window}]))",
        errors='sum {by} (rate(inference_requests_total{{{app},code=~"5.."}}[{window}]))',
        latency_histogram="inference_request_duration_seconds",
        description="inference_requests_total{code} and the inference_request_duration_seconds histogram",
    ),
    "vllm": Profile(
        requests="sum {by} (rate(vllm:request_success_total{{{app}}}[{window}]))",
        errors=None,
        latency_histogram="vllm:e2e_request_latency_seconds",
        description="vLLM's OpenAI server: vllm:request_success_total, vllm:e2e_request_latency_seconds",
    ),
    "kserve": Profile(
        requests="sum {by} (rate(request_predict_seconds_count{{{app}}}[{window}]))",
        errors=None,
        latency_histogram="request_predict_seconds",
        description="KServe model servers: the request_predict_seconds histogram",
    ),
    "triton": Profile(
        requests='sum {by} (rate({{__name__=~"nv_inference_request_(success|failure)",{app}}}[{window}]))',
        errors="sum {by} (rate(nv_inference_request_failure{{{app}}}[{window}]))",
        latency_histogram=None,
        latency_mean=("sum {by} (rate(nv_inference_request_duration_us{{{app}}}[{window}])) / "
                      "sum {by} (rate(nv_inference_request_success{{{app}}}[{window}])) / 1e6"),
        description="NVIDIA Triton: nv_inference_request_success/failure, nv_inference_request_duration_us (a mean)",
    ),
    "torchserve": Profile(
        requests="sum {by} (rate(ts_inference_requests_total{{{app}}}[{window}]))",
        errors=None,
        latency_histogram=None,
        latency_mean=("sum {by} (rate(ts_inference_latency_microseconds{{{app}}}[{window}])) / "
                      "sum {by} (rate(ts_inference_requests_total{{{app}}}[{window}])) / 1e6"),
        description="TorchServe: ts_inference_requests_total, ts_inference_latency_microseconds (a mean)",
    ),
}

# What every cluster has, per container: cAdvisor and kube-state-metrics.
CPU_USAGE = "sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{{{pods}}}[{window}]))"
CFS_PERIODS = "sum by (namespace, pod, container) (rate(container_cpu_cfs_periods_total{{{pods}}}[{window}]))"
CFS_THROTTLED = "sum by (namespace, pod, container) (rate(container_cpu_cfs_throttled_periods_total{{{pods}}}[{window}]))"
MEMORY = "max by (namespace, pod, container) (container_memory_working_set_bytes{{{pods}}})"
OOM_KILLS = ("sum by (namespace, pod, container) (increase(kube_pod_container_status_restarts_total{{{pods}}}[{window}]) "
             'and on (namespace, pod, container) kube_pod_container_status_last_terminated_reason{{{pods},reason="OOMKilled"}})')
SAMPLE_AGE = "time() - max by (namespace, pod, container) (timestamp(container_cpu_usage_seconds_total{{{pods}}}))"
NODE_CPU_FREE = ('sum(kube_node_status_allocatable{resource="cpu"}) - '
                 'sum(kube_pod_container_resource_requests{resource="cpu",node!=""})')
