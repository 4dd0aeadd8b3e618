"""The controller's configuration: one typed object, read from YAML with precise errors.

Per-service settings can also come from annotations on the service's HPA (`ANNOTATIONS`);
the config's `services` section wins over annotations, which win over the defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rlscale.controller.profiles import PROFILES
from rlscale.env.scenario import Prices
from rlscale.validation import Reader, load_yaml_file

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MODES = ("act", "dry-run", "shadow")
PLATFORMS = ("kubernetes", "swarm")
RESIZE_MODES = ("auto", "in_place", "rolling")
ANNOTATION_PREFIX = "rlscale.io/"
ORIGINAL_BOUNDS = ANNOTATION_PREFIX + "original-bounds"
PAUSED = ANNOTATION_PREFIX + "paused"
ALL_NAMESPACES = "*"
ANNOTATIONS = {
    "paused": "'true' hands the service back to its HPA at once and keeps rlscale away until removed",
    "slo-latency-seconds": "the latency target (seconds)",
    "slo-quantile": "the latency quantile the target applies to (e.g. 0.95)",
    "min-replicas": "the fewest replicas rlscale may choose (default: the HPA's minReplicas)",
    "max-replicas": "the most replicas rlscale may choose (default: the HPA's maxReplicas)",
    "cpu-limit-range": "'min,max' CPU limit rlscale may choose (default: the current limit only)",
    "memory-limit-range": "'min,max' memory limit rlscale may choose (default: the current limit only)",
    "container": "the container to size (default: the first)",
    "workers-cores": "the most CPU one replica's workers can use (concurrency x cores per request): the learned "
                     "policy's CPU limits are this, a half and a quarter (default: the top of cpu-limit-range)",
}


@dataclass(frozen=True)
class PrometheusSettings:
    url: str = "http://prometheus-server.monitoring.svc:9090"
    profile: str = "generic"
    window_s: int = 60
    staleness_s: float = 120.0  # metrics older than this are stale: fail static
    timeout_s: float = 5.0
    # the services' own metrics: a selector ({namespaces} is filled in) and the label naming the service (its HPA)
    app_selector: str = 'namespace=~"{namespaces}"'
    app_label: str = "service"
    # the containers' cAdvisor and kube-state-metrics series (grouped by namespace, pod and container)
    pod_selector: str = 'namespace=~"{namespaces}"'
    # authentication (every secret is read from a file, e.g. a mounted Secret, and never logged)
    bearer_token_file: str | None = None
    basic_auth_username: str | None = None
    basic_auth_password_file: str | None = None
    ca_file: str | None = None  # verify an https Prometheus against this CA bundle


@dataclass(frozen=True)
class GuardSettings:
    max_scale_up: float = 2.0  # at most x this many replicas in one decision
    max_scale_down: float = 0.5  # at least x this many replicas after one decision
    scale_down_cooldown_s: float = 120.0  # no scale-down this soon after a scale-up
    resource_change_interval_s: float = 600.0  # at most one resource change per service in this time


@dataclass(frozen=True)
class LeaderSettings:
    enabled: bool = True
    lease_name: str = "rlscale-controller"
    namespace: str = "rlscale-system"
    lease_duration_s: float = 15.0  # a candidate takes over after this long without seeing the Lease change
    renew_deadline_s: float = 10.0  # the holder stops acting when it could not renew for this long
    renew_period_s: float = 2.0  # how often the holder renews and candidates retry


@dataclass(frozen=True)
class ServiceOverrides:
    slo_latency_s: float | None = None
    slo_quantile: float | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpu_limit_range: tuple[float, float] | None = None
    memory_limit_range: tuple[float, float] | None = None
    workers_cores: float | None = None


@dataclass(frozen=True)
class ControllerConfig:
    namespaces: tuple[str, ...] = ("default",)  # the namespaces managed ("*": all, needs the cluster-wide overlay)
    selector: str = "rlscale.io/managed=true"  # a label selector on HPAs
    policy: str = "learned:default"  # learned:PATH or a heuristic: hpa, proportional-demand, ...
    policy_sha256: str | None = None  # pin the policy: the sha256 of its SHA256SUMS file (which covers every file)
    interval_s: float = 30.0
    mode: str = "act"
    headroom: int = 0  # upward room left to the HPA above each decision (0: pinned)
    resize: str = "auto"  # resource changes: pods/resize if the cluster has it, else the pod template
    listen_port: int = 8081  # /metrics, /healthz, /readyz
    fail_static_after_api_failures: int = 3
    api_timeout_s: float = 10.0
    write_concurrency: int = 8  # API writes in flight at once
    human_edit_cooldown_s: float = 600.0  # a service whose HPA bounds someone else changed is left alone this long
    default_slo_latency_s: float = 1.0
    default_slo_quantile: float = 0.95
    prices: Prices = Prices(cpu_core_hour=0.0316, memory_gib_hour=0.00424)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    guard: GuardSettings = field(default_factory=GuardSettings)
    leader_election: LeaderSettings = field(default_factory=LeaderSettings)
    services: dict[str, ServiceOverrides] = field(default_factory=dict)
    # Docker Swarm: the services carrying the `selector` labels, on this engine (empty: $DOCKER_HOST or the local socket)
    platform: str = "kubernetes"
    docker_host: str = ""


def load_controller_config(path: str | Path) -> ControllerConfig:
    reader = Reader(load_yaml_file(Path(path)) or {}, str(path))
    return config_from_reader(reader)


def config_from_reader(reader: Reader) -> ControllerConfig:
    d = ControllerConfig()
    prices = reader.mapping("prices")
    config = ControllerConfig(
        namespaces=_namespaces(reader, d.namespaces),
        selector=reader.string("selector", d.selector),
        policy=reader.string("policy", d.policy),
        policy_sha256=_sha256(reader, "policy_sha256"),
        interval_s=reader.number("interval_s", d.interval_s, min_value=1.0),
        mode=reader.string("mode", d.mode, choices=MODES),
        headroom=reader.number("headroom", d.headroom, min_value=0, integer=True),
        resize=reader.string("resize", d.resize, choices=RESIZE_MODES),
        listen_port=reader.number("listen_port", d.listen_port, min_value=0, max_value=65535, integer=True),
        fail_static_after_api_failures=reader.number("fail_static_after_api_failures", d.fail_static_after_api_failures,
                                                     min_value=1, integer=True),
        api_timeout_s=reader.number("api_timeout_s", d.api_timeout_s, positive=True),
        write_concurrency=reader.number("write_concurrency", d.write_concurrency, min_value=1, max_value=64, integer=True),
        human_edit_cooldown_s=reader.number("human_edit_cooldown_s", d.human_edit_cooldown_s, min_value=0.0),
        default_slo_latency_s=reader.number("default_slo_latency_s", d.default_slo_latency_s, positive=True),
        default_slo_quantile=reader.number("default_slo_quantile", d.default_slo_quantile, min_value=0.5, max_value=0.9999),
        prices=Prices(
            cpu_core_hour=prices.number("cpu_core_hour", d.prices.cpu_core_hour, min_value=0.0),
            memory_gib_hour=prices.number("memory_gib_hour", d.prices.memory_gib_hour, min_value=0.0),
        ),
        prometheus=_prometheus(reader.mapping("prometheus")),
        guard=_guard(reader.mapping("guard")),
        leader_election=_leader(reader.mapping("leader_election")),
        services={r.path.split(".")[-1]: _overrides(r) for r in _named_mappings(reader, "services")},
        platform=reader.string("platform", d.platform, choices=PLATFORMS),
        docker_host=reader.string("docker_host", d.docker_host),
    )
    prices.done()
    reader.done()
    return config


def _namespaces(reader: Reader, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = reader.strings("namespaces", default)
    valid = all(n == ALL_NAMESPACES or _DNS_LABEL.match(n) for n in raw)
    if not valid or (ALL_NAMESPACES in raw and len(raw) > 1):
        raise reader.fail("namespaces", f"expected a list of namespace names, or [\"{ALL_NAMESPACES}\"] for all, got {list(raw)!r}")
    return tuple(dict.fromkeys(raw))


def _sha256(reader: Reader, key: str) -> str | None:
    value = reader.string(key, None)
    if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise reader.fail(key, "expected 64 lowercase hex digits (the sha256 of the policy's SHA256SUMS file)")
    return value


def _named_mappings(reader: Reader, key: str) -> list[Reader]:
    section = reader.mapping(key)
    return [section.mapping(name) for name in section.keys()]  # every key is a service name


def _prometheus(reader: Reader) -> PrometheusSettings:
    d = PrometheusSettings()
    settings = PrometheusSettings(
        url=reader.string("url", d.url),
        profile=reader.string("profile", d.profile, choices=sorted(PROFILES)),
        window_s=reader.number("window_s", d.window_s, min_value=1, integer=True),
        staleness_s=reader.number("staleness_s", d.staleness_s, positive=True),
        timeout_s=reader.number("timeout_s", d.timeout_s, positive=True),
        app_selector=reader.string("app_selector", d.app_selector),
        app_label=reader.string("app_label", d.app_label),
        pod_selector=reader.string("pod_selector", d.pod_selector),
        bearer_token_file=reader.string("bearer_token_file", None),
        basic_auth_username=reader.string("basic_auth_username", None),
        basic_auth_password_file=reader.string("basic_auth_password_file", None),
        ca_file=reader.string("ca_file", None),
    )
    reader.done()
    if settings.bearer_token_file and settings.basic_auth_username:
        raise reader.fail("bearer_token_file", "use either a bearer token or basic auth, not both")
    if bool(settings.basic_auth_username) != bool(settings.basic_auth_password_file):
        raise reader.fail("basic_auth_username", "basic auth needs both basic_auth_username and basic_auth_password_file")
    if "@" in settings.url.split("//", 1)[-1].split("/", 1)[0]:
        raise reader.fail("url", "credentials do not belong in the URL: use bearer_token_file or basic_auth_password_file")
    return settings


def _guard(reader: Reader) -> GuardSettings:
    d = GuardSettings()
    settings = GuardSettings(
        max_scale_up=reader.number("max_scale_up", d.max_scale_up, min_value=1.0),
        max_scale_down=reader.number("max_scale_down", d.max_scale_down, min_value=0.0, max_value=1.0),
        scale_down_cooldown_s=reader.number("scale_down_cooldown_s", d.scale_down_cooldown_s, min_value=0.0),
        resource_change_interval_s=reader.number("resource_change_interval_s", d.resource_change_interval_s, min_value=0.0),
    )
    reader.done()
    return settings


def _leader(reader: Reader) -> LeaderSettings:
    d = LeaderSettings()
    settings = LeaderSettings(
        enabled=reader.boolean("enabled", d.enabled),
        lease_name=reader.string("lease_name", d.lease_name),
        namespace=reader.string("namespace", d.namespace),
        lease_duration_s=reader.number("lease_duration_s", d.lease_duration_s, positive=True),
        renew_deadline_s=reader.number("renew_deadline_s", d.renew_deadline_s, positive=True),
        renew_period_s=reader.number("renew_period_s", d.renew_period_s, positive=True),
    )
    reader.done()
    if settings.renew_deadline_s >= settings.lease_duration_s:
        raise reader.fail("renew_deadline_s", f"must be shorter than lease_duration_s ({settings.lease_duration_s:g})")
    if settings.renew_period_s >= settings.renew_deadline_s:
        raise reader.fail("renew_period_s", f"must be shorter than renew_deadline_s ({settings.renew_deadline_s:g})")
    return settings


def _overrides(reader: Reader) -> ServiceOverrides:
    overrides = ServiceOverrides(
        slo_latency_s=reader.number("slo_latency_s", None, positive=True),
        slo_quantile=reader.number("slo_quantile", None, min_value=0.5, max_value=0.9999),
        min_replicas=reader.number("min_replicas", None, min_value=1, integer=True),
        max_replicas=reader.number("max_replicas", None, min_value=1, integer=True),
        cpu_limit_range=reader.pair("cpu_limit_range", None),
        memory_limit_range=reader.pair("memory_limit_range", None),
        workers_cores=reader.number("workers_cores", None, positive=True),
    )
    reader.done()
    if overrides.min_replicas and overrides.max_replicas and overrides.min_replicas > overrides.max_replicas:
        raise reader.fail("min_replicas", f"must not exceed max_replicas ({overrides.max_replicas})")
    return overrides
