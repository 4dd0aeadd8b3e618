"""Scenarios: node pools and services, read from YAML with precise errors.

A scenario file declares the cluster (node pools, prices, controller timings) and the services
on it. Every field is checked; an error names the file and the field
(``mix.yaml: services[2].resources.limits.memory: must be >= the request (8Gi)``) and unknown
keys are refused. `Scenario` and `ServiceSpec` are immutable: the simulator copies what it
changes at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rlscale.env.dynamics import MIN_REQUEST_SHARE
from rlscale.env.hpa import DEFAULT_TOLERANCE, HpaSpec
from rlscale.env.hpa_behavior import Behavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy
from rlscale.env.state import Bounds
from rlscale.env.workloads import Workload, workload_from_config
from rlscale.errors import UserInputError
from rlscale.validation import Reader, load_yaml_file

RESIZE_MODES = ("in_place", "rolling")
DEFAULT_SLO_BUDGET = 0.02
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
GIB = 2.0**30


@dataclass(frozen=True)
class NodePool:
    name: str
    nodes: int
    cpu: float  # allocatable cores per node
    memory: float  # allocatable bytes per node


PRICE_RULES = ("max-request-usage", "request")
PRICE_RULE_TEXT = {"max-request-usage": "max(request, usage)", "request": "request"}


@dataclass(frozen=True)
class Prices:
    """What a container's CPU and memory cost per hour, and which amount of them is billed.

    The `rule` is how OpenCost and Kubecost allocate a node's cost to containers: by default
    `max-request-usage`, each resource billed at the larger of its request and its usage (a
    container bursting above its request pays for what it takes from the node's slack); with
    `request`, at the request alone (what a reservation costs, whatever is used).
    """

    cpu_core_hour: float
    memory_gib_hour: float
    rule: str = "max-request-usage"

    @property
    def bills_usage(self) -> bool:
        return self.rule == "max-request-usage"

    def per_second(self, cpu_cores: float, memory_bytes: float) -> float:
        return (cpu_cores * self.cpu_core_hour + memory_bytes / GIB * self.memory_gib_hour) / 3600.0


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the per-step reward's terms (see `rlscale.env.reward`)."""

    cost: float = 1.0  # per replica-equivalent of cost
    slo: float = 60.0  # per interval that misses the SLO, plus per unit of excess (1 = twice the slow share allowed)
    drop: float = 60.0  # per unit of drops (1 = as many drops as the SLO allows slow requests)
    churn: float = 0.1  # per relative replica change, and per resource change


@dataclass(frozen=True)
class ClusterTimings:
    """Control-plane timings (Kubernetes' defaults unless the scenario says otherwise)."""

    hpa_sync_period_s: int = 15
    metrics_resolution_s: int = 15  # metrics-server scrape period and rate window
    metric_lag_s: int = 15  # age of the newest metrics the HPA sees at a sync
    cpu_initialization_period_s: int = 300
    initial_readiness_delay_s: int = 30
    resize_delay_s: int = 2  # an in-place resize takes effect this long after it is asked for
    # CPU limits as the kernel enforces them: a CFS quota per period of this many ms (Linux and Kubernetes use 100).
    # A request then runs at full speed until its replica has spent the period's quota. 0: a limit is a fluid share.
    cfs_period_ms: int = 0


@dataclass(frozen=True)
class ServiceSpec:
    """One inference service: its load, per-request and per-replica costs, resources, SLO, HPA."""

    name: str
    priority: int
    node_pool: str | None  # None: any pool
    workload: Workload
    # per request
    cpu_per_request: float  # core-seconds of work
    cores_per_request: float  # cores one request can use at once
    memory_per_request: float  # bytes held while a request is in a worker
    # per replica
    base_memory: float  # bytes (model weights, runtime)
    concurrency: int  # workers
    startup_s: float  # scheduling to ready: image pull, model load, warm-up
    # the pod template's resources
    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float
    initial_replicas: int
    bounds: Bounds
    slo_quantile: float
    slo_latency_s: float
    slo_budget: float  # share of decision intervals that may miss the SLO
    timeout_s: float
    hpa: HpaSpec
    resize: str  # "in_place" or "rolling"
    overhead_s: float = 0.0  # per request, latency outside the workers (network, HTTP parsing): no worker is held
    idle_cpu: float = 0.0  # cores a ready replica uses with no requests (runtime threads, polling, scrapes)
    cpu_cv: float = 1.0  # coefficient of variation of the CPU work per request (1: exponential; 0: every request alike)

    @property
    def workers_cores(self) -> float:
        """The most CPU one replica's workers can use (each busy worker uses `cores_per_request`)."""
        return self.concurrency * self.cores_per_request

    @property
    def replica_capacity_rps(self) -> float:
        """Requests/s one replica can serve at its CPU limit (what its idle CPU leaves of it)."""
        return min(self.workers_cores, max(self.cpu_limit - self.idle_cpu, MIN_REQUEST_SHARE * self.cpu_limit)) / self.cpu_per_request


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    decision_interval_s: int
    duration_s: int
    prices: Prices
    timings: ClusterTimings
    node_pools: tuple[NodePool, ...]
    services: tuple[ServiceSpec, ...]
    source: str
    reward: RewardWeights = RewardWeights()

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Loading


def shipped_scenarios() -> list[str]:
    """Names of the scenarios that ship with rlscale."""
    folder = resources.files("rlscale.scenarios")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_scenario_path(name_or_path: str) -> Path:
    """A path as given, or the shipped scenario of that name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = resources.files("rlscale.scenarios") / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    known = ", ".join(shipped_scenarios())
    raise UserInputError(name_or_path, f"no such scenario file or shipped scenario (shipped: {known})")


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = resolve_scenario_path(str(name_or_path))
    data = load_yaml_file(path)
    return scenario_from_config(Reader(data, str(path)), path.parent)


def scenario_from_config(reader: Reader, base_dir: Path) -> Scenario:
    name = reader.string("name")
    description = reader.string("description", "")
    interval = reader.number("decision_interval_s", 30, min_value=1, integer=True)
    duration = reader.number("duration_s", 6 * 3600, min_value=1, integer=True)
    prices_reader = reader.mapping("prices", required=True)
    prices = Prices(
        cpu_core_hour=prices_reader.number("cpu_core_hour", min_value=0.0),
        memory_gib_hour=prices_reader.number("memory_gib_hour", min_value=0.0),
        rule=prices_reader.string("rule", PRICE_RULES[0], choices=PRICE_RULES),
    )
    prices_reader.done()
    timings = _timings_from_config(reader.mapping("cluster"))
    reward = _reward_from_config(reader.mapping("reward"))
    pools = tuple(_node_pool_from_config(r) for r in reader.mappings("node_pools", required=True, non_empty=True))
    _refuse_duplicates(reader, "node_pools", [p.name for p in pools])
    service_readers = reader.mappings("services", required=True, non_empty=True)
    services = tuple(_service_from_config(r, base_dir, pools) for r in service_readers)
    _refuse_duplicates(reader, "services", [s.name for s in services])
    reader.done()
    if duration < interval:
        raise reader.fail("duration_s", f"must be at least one decision interval ({interval} s), got {duration}")
    return Scenario(name, description, interval, duration, prices, timings, pools, services, reader.source, reward)


def _timings_from_config(reader: Reader) -> ClusterTimings:
    defaults = ClusterTimings()
    values = {
        field: reader.number(field, getattr(defaults, field), min_value=0, integer=True)
        for field in ClusterTimings.__dataclass_fields__
    }
    reader.done()
    for field in ("hpa_sync_period_s", "metrics_resolution_s"):
        if values[field] < 1:
            raise reader.fail(field, f"must be >= 1, got {values[field]}")
    if values["metric_lag_s"] % values["metrics_resolution_s"]:
        raise reader.fail("metric_lag_s", "must be a multiple of metrics_resolution_s")
    return ClusterTimings(**values)


def _reward_from_config(reader: Reader) -> RewardWeights:
    defaults = RewardWeights()
    weights = RewardWeights(
        **{name: reader.number(name, getattr(defaults, name), min_value=0.0) for name in RewardWeights.__dataclass_fields__}
    )
    reader.done()
    return weights


def _node_pool_from_config(reader: Reader) -> NodePool:
    pool = NodePool(
        name=_dns_label(reader, "name"),
        nodes=reader.number("nodes", min_value=1, integer=True),
        cpu=reader.quantity("cpu", positive=True),
        memory=reader.quantity("memory", positive=True),
    )
    reader.done()
    return pool


def _service_from_config(reader: Reader, base_dir: Path, pools: tuple[NodePool, ...]) -> ServiceSpec:
    name = _dns_label(reader, "name")
    priority = reader.number("priority", 0, integer=True, min_value=-(2**31), max_value=10**9)
    node_pool = reader.string("node_pool", None, choices=[p.name for p in pools])
    workload = workload_from_config(reader.mapping("workload", required=True), base_dir)

    request = reader.mapping("request", required=True)
    cpu_per_request = request.quantity("cpu_seconds", positive=True)
    cores_per_request = request.quantity("cores", 1.0, positive=True)
    memory_per_request = request.quantity("memory", 0.0, min_value=0.0)
    overhead_s = request.number("overhead_s", 0.0, min_value=0.0)
    cpu_cv = request.number("cpu_cv", 1.0, min_value=0.0, max_value=4.0)
    request.done()

    replica = reader.mapping("replica", required=True)
    base_memory = replica.quantity("base_memory", min_value=0.0)
    concurrency = replica.number("concurrency", 1, min_value=1, max_value=256, integer=True)
    startup_s = replica.number("startup_s", min_value=0.0)
    idle_cpu = replica.quantity("idle_cpu", 0.0, min_value=0.0)
    replica.done()

    res = reader.mapping("resources", required=True)
    requests, limits = res.mapping("requests", required=True), res.mapping("limits", required=True)
    cpu_request = requests.quantity("cpu", positive=True)
    memory_request = requests.quantity("memory", positive=True)
    cpu_limit = limits.quantity("cpu", positive=True)
    memory_limit = limits.quantity("memory", positive=True)
    if cpu_limit < cpu_request:
        raise limits.fail("cpu", f"the limit must be >= the request ({cpu_request:g} cores)")
    if memory_limit < memory_request:
        raise limits.fail("memory", f"the limit must be >= the request ({memory_request:g} bytes)")
    requests.done()
    limits.done()
    res.done()

    initial_replicas = reader.number("replicas", min_value=0, integer=True)
    bounds = _bounds_from_config(reader.mapping("bounds", required=True), cpu_limit, memory_limit)
    if not bounds.min_replicas <= initial_replicas <= bounds.max_replicas:
        raise reader.fail(
            "replicas", f"must lie within bounds.replicas [{bounds.min_replicas}, {bounds.max_replicas}], got {initial_replicas}"
        )

    slo = reader.mapping("slo", required=True)
    slo_quantile = slo.number("quantile", min_value=0.5, max_value=0.9999)
    slo_latency = slo.number("latency_s", positive=True)
    slo_budget = slo.number("budget", DEFAULT_SLO_BUDGET, min_value=0.0, max_value=1.0)
    slo.done()
    timeout_s = reader.number("timeout_s", 30.0, positive=True)
    if timeout_s <= slo_latency:
        raise reader.fail("timeout_s", f"must exceed the SLO latency ({slo_latency:g} s)")

    hpa = hpa_spec_from_config(reader.mapping("hpa"), bounds.min_replicas, bounds.max_replicas)
    resize = reader.string("resize", "in_place", choices=RESIZE_MODES)
    reader.done()

    _check_schedulable(reader, pools, node_pool, cpu_request, memory_request, bounds.min_replicas)
    return ServiceSpec(
        name=name,
        priority=priority,
        node_pool=node_pool,
        workload=workload,
        cpu_per_request=cpu_per_request,
        cores_per_request=cores_per_request,
        memory_per_request=memory_per_request,
        base_memory=base_memory,
        concurrency=concurrency,
        startup_s=startup_s,
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        memory_request=memory_request,
        memory_limit=memory_limit,
        initial_replicas=initial_replicas,
        bounds=bounds,
        slo_quantile=slo_quantile,
        slo_latency_s=slo_latency,
        slo_budget=slo_budget,
        timeout_s=timeout_s,
        hpa=hpa,
        resize=resize,
        overhead_s=overhead_s,
        idle_cpu=idle_cpu,
        cpu_cv=cpu_cv,
    )


def hpa_spec_from_config(reader: Reader, min_replicas: int, max_replicas: int) -> HpaSpec:
    """The service's HPA; `behavior` uses the autoscaling/v2 field names, as in a manifest."""
    target = reader.number("target_cpu_utilization", 80, min_value=1, integer=True)
    tolerance = reader.number("tolerance", DEFAULT_TOLERANCE, min_value=0.0, max_value=1.0)
    behavior_reader = reader.optional_mapping("behavior")
    behavior = None if behavior_reader is None else behavior_from_config(behavior_reader)
    reader.done()
    return HpaSpec(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_cpu_utilization_percent=target,
        behavior=behavior,
        tolerances=(tolerance, tolerance),
    )


def behavior_from_config(reader: Reader) -> Behavior:
    """An ``autoscaling/v2`` behavior (camelCase fields, as in a manifest)."""
    behavior = Behavior(
        scale_up=_scaling_rules(reader.optional_mapping("scaleUp")),
        scale_down=_scaling_rules(reader.optional_mapping("scaleDown")),
    )
    reader.done()
    return behavior


def _scaling_rules(reader: Reader | None) -> ScalingRules | None:
    if reader is None:
        return None
    select = reader.string("selectPolicy", None, choices=[p.value for p in SelectPolicy])
    window = reader.number("stabilizationWindowSeconds", None, min_value=0, max_value=3600, integer=True)
    policies = None
    if reader.has("policies"):
        policies = tuple(_scaling_policy(r) for r in reader.mappings("policies", non_empty=True))
    reader.done()
    return ScalingRules(
        select_policy=None if select is None else SelectPolicy(select),
        stabilization_window_seconds=window,
        policies=policies,
    )


def _scaling_policy(reader: Reader) -> ScalingPolicy:
    policy = ScalingPolicy(
        type=PolicyType(reader.string("type", choices=[t.value for t in PolicyType])),
        value=reader.number("value", min_value=1, integer=True),
        period_seconds=reader.number("periodSeconds", min_value=1, max_value=1800, integer=True),
    )
    reader.done()
    return policy


def _bounds_from_config(reader: Reader, cpu_limit: float, memory_limit: float) -> Bounds:
    min_replicas, max_replicas = reader.pair("replicas", integer=True)
    if min_replicas < 1:
        raise reader.fail("replicas", f"the minimum must be >= 1, got {min_replicas}")
    min_cpu, max_cpu = reader.pair("cpu_limit", (cpu_limit, cpu_limit))
    min_memory, max_memory = reader.pair("memory_limit", (memory_limit, memory_limit))
    if not min_cpu <= cpu_limit <= max_cpu:
        raise reader.fail("cpu_limit", f"must contain the CPU limit ({cpu_limit:g} cores)")
    if not min_memory <= memory_limit <= max_memory:
        raise reader.fail("memory_limit", f"must contain the memory limit ({memory_limit:g} bytes)")
    reader.done()
    return Bounds(min_replicas, max_replicas, min_cpu, max_cpu, min_memory, max_memory)


def _dns_label(reader: Reader, key: str) -> str:
    value = reader.string(key)
    if not _DNS_LABEL.match(value):
        raise reader.fail(key, f"{value!r} is not a DNS-1123 label (lower-case letters, digits, '-')")
    return value


def _refuse_duplicates(reader: Reader, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise reader.fail(key, f"the name {name!r} appears twice")
        seen.add(name)


def _check_schedulable(
    reader: Reader, pools: tuple[NodePool, ...], node_pool: str | None, cpu: float, memory: float, min_replicas: int
) -> None:
    candidates = [p for p in pools if node_pool in (None, p.name)]
    if not any(cpu <= p.cpu and memory <= p.memory for p in candidates):
        raise reader.fail("resources", "the requests fit on no node of the pool: such a pod can never be scheduled")
    room = sum(p.nodes * min(int(p.cpu / cpu + 1e-9), int(p.memory / memory + 1e-9)) for p in candidates)
    if room < min_replicas:
        raise reader.fail("bounds", f"the nodes hold at most {room} pods of these requests, fewer than the minimum of "
                                    f"{min_replicas} replicas")
