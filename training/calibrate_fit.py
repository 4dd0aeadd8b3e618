"""Fitting the simulator's service model to a service's history: pure functions over a `History`.

Each parameter is fitted so that the simulator's own model reproduces what was observed:

- CPU work per request: the slope of CPU per ready replica against requests/s per replica (least
  squares, one round of outlier rejection; the intercept is CPU the simulator does not model).
- Cores per request and concurrency: the simulator's steady mean latency (`ReplicaModel.answered`,
  given each interval's observed throttled share) fitted to the observed mean latency on a grid of
  (workers, cores per request) for each variation of the work in `WORK_CV_GRID`, with the CPU limit
  and the CPU work fixed: the lone-request latency gives the cores, the growth of queueing with
  utilisation and the rate where throughput saturates give the workers. A candidate whose capacity
  is below a throughput that was served is ruled out.
- The variation of the CPU work per request: where the quota binds and the history was throttled,
  the variation whose simulated throttled share of CFS periods fits the observed one (a fixed
  forward pass is throttled far less often than exponential work of the same mean); else the one
  whose latency fits best.
- Base memory and memory per request: working set per replica against the requests holding a
  worker in the fitted model (E[min(N, workers)] at each interval's rate per replica).
- Start-up time: the median of created -> ready over the replicas created in the window.

Where the history cannot identify a parameter (too few points, no variation, never saturated),
the estimate says so and carries the prior used instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rlscale.env.dynamics import ReplicaModel, replica_model, throttled_share
from rlscale.env.queueing import replica_servers, steady_state, wait_factor
from rlscale.training.calibrate_history import History

MIN_POINTS = 20  # steady intervals with traffic below which nothing is fitted
SATURATED = 0.95  # an interval whose replicas used this share of their CPU limit is at the limit
FEASIBLE = 0.95  # a replica model must serve this share of the busiest interval's rate (rates over short steps are noisy)
MAX_WORKERS = 32
CORE_GRID = np.geomspace(0.02, 4.0, 60)
UTILISATION_GRID = np.linspace(0.0, 0.99, 200)
PRIOR_STARTUP_S = 30.0
PRIOR_CORES = 1.0
PRIOR_WORK_CV = 1.0  # an exponential's: the variation a service that never showed its own is given
WORK_CV_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # the variations of CPU work per request the fit chooses among
MIN_THROTTLED = 0.02  # a history throttled less than this in every interval says nothing of the work's variation


@dataclass(frozen=True)
class Plot:
    """What a figure of the fit shows: the observations and the fitted curve."""

    x: np.ndarray
    y: np.ndarray
    x_label: str
    y_label: str
    curve_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kind: str = "scatter"  # or "histogram"


@dataclass(frozen=True)
class Estimate:
    """One fitted parameter, with how well the history pins it down."""

    name: str
    value: float
    unit: str
    method: str
    points: int
    r2: float | None = None
    residual_rms: float | None = None
    residual_max: float | None = None
    warning: str | None = None  # set when the history cannot identify it: `value` is then the prior
    note: str | None = None
    plot: Plot | None = None

    @property
    def identified(self) -> bool:
        return self.warning is None


@dataclass(frozen=True)
class LineFit:
    slope: float
    intercept: float
    r2: float
    rms: float
    max_abs: float
    used: np.ndarray  # bool mask of the points kept
    slope_se: float = 0.0  # the slope's standard error (0: fewer than 3 points or no spread in x)


def line_fit(x: np.ndarray, y: np.ndarray) -> LineFit:
    """y = slope * x + intercept by least squares, after dropping points beyond 5 robust sigmas."""
    used = np.isfinite(x) & np.isfinite(y)
    for _ in range(2):
        slope, intercept = np.polyfit(x[used], y[used], 1) if np.ptp(x[used]) > 0 else (0.0, float(np.mean(y[used])))
        residual = y - (slope * x + intercept)
        sigma = 1.4826 * float(np.median(np.abs(residual[used] - np.median(residual[used]))))
        keep = used & (np.abs(residual) <= 5 * sigma) if sigma > 0 else used
        if keep.sum() == used.sum() or keep.sum() < 3:
            break
        used = keep
    residual = (y - (slope * x + intercept))[used]
    spread = float(np.sum((y[used] - y[used].mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else 0.0
    x_spread = float(np.sum((x[used] - x[used].mean()) ** 2))
    n = int(used.sum())
    slope_se = float(np.sqrt(np.sum(residual**2) / (n - 2) / x_spread)) if n > 2 and x_spread > 0 else 0.0
    return LineFit(float(slope), float(intercept), r2, float(np.sqrt(np.mean(residual**2))), float(np.max(np.abs(residual))), used,
                   slope_se)


def below_limit(history: History, cpu_limit: float) -> tuple[History, int]:
    """The history without its intervals at the CPU limit, and how many those were: their CPU is censored by the limit
    (it says nothing of the work above it) and their latency is a backlog's, which no steady state describes."""
    with np.errstate(invalid="ignore"):
        saturated = history.steady & (history.cpu_per_replica >= SATURATED * cpu_limit)
    return dataclasses.replace(history, steady=history.steady & ~saturated), int(saturated.sum())


def usable(history: History) -> np.ndarray:
    """Intervals to fit on: steady replicas, traffic, CPU and memory known, few failures."""
    with np.errstate(invalid="ignore", divide="ignore"):
        failing = np.where(history.requests_rps > 0, history.errors_rps / history.requests_rps, 0.0) > 0.01
    return (history.steady & (history.requests_rps > 0) & np.isfinite(history.cpu_per_replica)
            & np.isfinite(history.memory_per_replica) & ~failing)


# -- CPU -----------------------------------------------------------------------------------------


def fit_cpu(history: History) -> tuple[Estimate, Estimate]:
    """(CPU work per request, idle CPU per replica): the slope and intercept of CPU on the rate, per replica."""
    mask = usable(history)
    x, y = history.rate_per_replica[mask], history.cpu_per_replica[mask]
    plot = Plot(x, y, "requests/s per replica", "CPU per replica (cores)")
    if x.size < 2:
        raise ValueError("no interval to fit CPU on")
    ratio = float(np.sum(y) / np.sum(x))
    if x.size < MIN_POINTS or np.ptp(x) < 0.2 * float(np.mean(x)):
        why = (f"the rate per replica hardly varied ({x.size} intervals, {np.min(x):.3g}..{np.max(x):.3g} requests/s): CPU work "
               "is the mean ratio, idle CPU cannot be told apart")
        return (Estimate("cpu_per_request", ratio, "core-seconds", "mean CPU over mean rate", int(x.size), warning=why,
                         plot=_with_line(plot, ratio, 0.0)),
                Estimate("idle_cpu", 0.0, "cores", "prior", int(x.size), warning=why))
    fit = line_fit(x, y)
    if fit.slope <= 0:
        why = "CPU does not grow with the rate: the mean ratio is used"
        return (Estimate("cpu_per_request", ratio, "core-seconds", "mean CPU over mean rate", int(fit.used.sum()), fit.r2, fit.rms,
                         fit.max_abs, warning=why, plot=_with_line(plot, ratio, 0.0)),
                Estimate("idle_cpu", 0.0, "cores", "prior", int(fit.used.sum()), warning=why))
    idle = max(0.0, fit.intercept)
    note = f"{idle / np.mean(y):.0%} of the mean CPU use is idle CPU" if idle > 0 else None
    return (Estimate("cpu_per_request", fit.slope, "core-seconds", "slope of CPU per replica on requests/s per replica (least squares)",
                     int(fit.used.sum()), fit.r2, fit.rms, fit.max_abs, plot=_with_line(plot, fit.slope, fit.intercept)),
            Estimate("idle_cpu", idle, "cores", "intercept of the same fit (CPU at no load), at least 0", int(fit.used.sum()),
                     fit.r2, fit.rms, fit.max_abs, note=note))


def _with_line(plot: Plot, slope: float, intercept: float) -> Plot:
    xs = np.linspace(0.0, float(np.max(plot.x)) * 1.05 if plot.x.size else 1.0, 50)
    return Plot(plot.x, plot.y, plot.x_label, plot.y_label, xs, slope * xs + intercept)


# -- latency: cores per request, workers and overhead --------------------------------------------


def _wait_curves() -> np.ndarray:
    """[servers - 1, u] -> the mean wait x mu of an M/M/c queue at utilisation u (Erlang C / (c mu - lam))."""
    curves = np.empty((MAX_WORKERS, UTILISATION_GRID.size))
    for s in range(1, MAX_WORKERS + 1):
        for j, u in enumerate(UTILISATION_GRID):
            state = steady_state(s, 1.0, u * s)
            curves[s - 1, j] = state.wait_probability / state.theta
    return curves


_CURVES: np.ndarray | None = None


def mean_latency(model: ReplicaModel, rates: np.ndarray, throttled: np.ndarray | None = None) -> np.ndarray:
    """The simulator's steady mean latency of a replica at these rates (`ReplicaModel.answered`): the overhead,
    then under CFS the `throttled` share (default: the model's own) at the limit's rate, the rest at full speed."""
    global _CURVES
    if _CURVES is None:
        _CURVES = _wait_curves()
    factor = wait_factor(model.work_cv)

    def response(servers: int, mu: float) -> np.ndarray:
        u = np.clip(rates / (servers * mu), 0.0, UTILISATION_GRID[-1])
        return 1.0 / mu + factor * np.interp(u, UTILISATION_GRID, _CURVES[servers - 1]) / mu

    limited = response(model.servers, model.mu)
    if model.quota_requests is None:
        return model.overhead_s + limited
    share = predicted_throttled(model, rates) if throttled is None else np.clip(throttled, 0.0, 1.0)
    return model.overhead_s + share * limited + (1.0 - share) * response(model.workers, model.service_mu)


def predicted_throttled(model: ReplicaModel, rates: np.ndarray) -> np.ndarray:
    """The simulator's throttled share of CFS periods at these rates per replica (0 where the quota never binds)."""
    if model.quota_requests is None:
        return np.zeros(rates.size)
    served = np.minimum(rates, 0.999 * model.capacity)
    return np.array([throttled_share(model, steady_state(model.servers, model.mu, float(r)), float(r)) for r in served])


def _model(cpu_limit: float, workers: int, cpu_per_request: float, cores: float, cfs_period_s: float, overhead_s: float = 0.0,
           work_cv: float = 1.0) -> ReplicaModel:
    return replica_model(cpu_limit, math.inf, concurrency=workers, cpu_per_request=cpu_per_request, cores_per_request=cores,
                         memory_per_request=0.0, base_memory=0.0, overhead_s=overhead_s, cfs_period_s=cfs_period_s, work_cv=work_cv)


@dataclass(frozen=True)
class QueueFit:
    workers: Estimate
    cores: Estimate
    overhead: Estimate
    work_cv: Estimate
    loss_by_workers: np.ndarray  # best loss for each worker count (index 0: one worker)


def _overhead(observed: np.ndarray, predicted: np.ndarray) -> float:
    """The constant added to every answer that best fits (relative least squares), between 0 and the fastest answer."""
    weights = 1.0 / observed**2
    return float(np.clip(np.sum((observed - predicted) * weights) / np.sum(weights), 0.0, np.min(observed)))


@dataclass(frozen=True)
class _Search:
    """The best cores per worker count for one variation of the work, and their losses."""

    losses: np.ndarray  # index 0: one worker
    cores: dict[int, float]

    @property
    def loss(self) -> float:
        return float(np.min(self.losses))

    @property
    def chosen(self) -> int:
        return int(np.flatnonzero(self.losses <= self.loss * 1.01 + 1e-12)[0]) + 1  # the fewest workers that fit as well


def _search(rates: np.ndarray, observed: np.ndarray, throttled: np.ndarray, cpu_per_request: float, cpu_limit: float,
            cfs_period_s: float, work_cv: float) -> _Search:
    """Every worker count's best cores per request by the mean latency (with the observed throttled share)."""
    peak = float(np.max(rates))

    def loss(workers: int, cores: float) -> float:
        model = _model(cpu_limit, workers, cpu_per_request, cores, cfs_period_s, work_cv=work_cv)
        return math.inf if model.capacity < peak * FEASIBLE else _latency_loss(model, rates, observed, throttled)

    best: dict[int, tuple[float, float]] = {}
    for workers in range(1, MAX_WORKERS + 1):
        found = min((loss(workers, float(k)), float(k)) for k in CORE_GRID)
        if math.isfinite(found[0]):
            best[workers] = _refined(lambda k: loss(workers, k), found[1])
    if not best:  # the fitted CPU work says the busiest interval served more than the limit allows: noise at a short step
        peak = min(peak, 0.99 * cpu_limit / cpu_per_request)
        best = {w: _refined(lambda k: loss(w, k), cpu_limit / w) for w in range(1, MAX_WORKERS + 1)}
    return _Search(np.array([best[w][0] if w in best else np.inf for w in range(1, MAX_WORKERS + 1)]), {w: c for w, (_, c) in best.items()})


def _latency_loss(model: ReplicaModel, rates: np.ndarray, observed: np.ndarray, throttled: np.ndarray) -> float:
    """Relative squared error of the simulated mean latency (given the observed throttled share), after the best overhead."""
    predicted = mean_latency(model, rates, throttled)
    return float(np.mean(((observed - _overhead(observed, predicted) - predicted) / observed) ** 2))


def _fit_work_cv(rates: np.ndarray, throttled: np.ndarray, cpu_per_request: float, cpu_limit: float, cfs_period_s: float,
                 candidates: dict[float, tuple[int, float, float]]) -> Estimate:
    """The work's variation among `candidates` (variation -> its workers, cores and latency loss): by the throttled
    share where the quota binds and the history shows throttling, else by the latency."""
    by_latency = min(candidates, key=lambda cv: candidates[cv][2])
    errors = {}
    for cv, (workers, cores, _) in candidates.items():
        model = _model(cpu_limit, workers, cpu_per_request, cores, cfs_period_s, work_cv=cv)
        if model.quota_requests is not None:
            errors[cv] = float(np.mean((predicted_throttled(model, rates) - throttled) ** 2))
    if errors and float(np.max(throttled)) >= MIN_THROTTLED:
        cv = min(errors, key=errors.__getitem__)
        spread = float(np.sum((throttled - throttled.mean()) ** 2))
        r2 = 1.0 - errors[cv] * throttled.size / spread if spread > 0 else None
        return Estimate("work_cv", cv, "", "the variation (of the grid) whose simulated throttled share of CFS periods fits the "
                        "observed (least squares)", int(rates.size), r2, math.sqrt(errors[cv]))
    if float(np.max(rates)) * cpu_per_request < 0.5 * cpu_limit:
        return Estimate("work_cv", PRIOR_WORK_CV, "", "prior", int(rates.size), warning="the service never neared its limit and was "
                        "never throttled: its work's variation cannot be told (an exponential's is used)")
    return Estimate("work_cv", by_latency, "", "the variation (of the grid) whose simulated mean latency fits best", int(rates.size))


def fit_queue(history: History, cpu_per_request: float, cpu_limit: float, cfs_period_s: float) -> QueueFit:
    """Workers, cores per request, overhead and the work's variation that make the simulator fit the observed mean
    latency (given the observed throttled share) and, where the quota binds, the observed throttled share.

    `cpu_limit` is the CPU the requests have: the limit less the replica's idle CPU."""
    mask = usable(history) & np.isfinite(history.latency_mean_s) & (history.latency_mean_s > 0)
    rates, observed = history.rate_per_replica[mask], history.latency_mean_s[mask]
    throttled = np.nan_to_num(history.throttled_fraction[mask], nan=0.0)
    utilisation = rates * cpu_per_request / cpu_limit
    plot = Plot(utilisation, observed, "CPU utilisation of the limit (requests/s x CPU work / limit)", "mean latency (s)")
    if rates.size < MIN_POINTS:
        why = f"only {rates.size} steady intervals with latency: the prior is used"
        return QueueFit(Estimate("concurrency", max(1, math.ceil(cpu_limit / PRIOR_CORES - 1e-9)), "workers", "prior", int(rates.size),
                                 warning=why, plot=plot),
                        Estimate("cores_per_request", PRIOR_CORES, "cores", "prior", int(rates.size), warning=why),
                        Estimate("overhead_s", 0.0, "s", "prior", int(rates.size), warning=why),
                        Estimate("work_cv", PRIOR_WORK_CV, "", "prior", int(rates.size), warning=why), np.zeros(0))
    peak = float(np.max(rates))
    searches = {cv: _search(rates, observed, throttled, cpu_per_request, cpu_limit, cfs_period_s, cv) for cv in WORK_CV_GRID}
    variation = _fit_work_cv(rates, throttled, cpu_per_request, cpu_limit, cfs_period_s,
                             {cv: (s.chosen, s.cores[s.chosen], s.loss) for cv, s in searches.items()})
    search = searches[variation.value]
    losses, lowest = search.losses, search.loss
    chosen, cores = search.chosen, search.cores[search.chosen]
    cores_warning = None
    if cores >= cpu_limit * 0.95:  # how much faster than the limit a lone request could run, the history cannot tell
        cores = max(cpu_limit, PRIOR_CORES)
        cores_warning = (f"a lone request already gets the whole limit ({cpu_limit:.3g} cores for requests), so its speed and the "
                         f"overhead outside the workers trade off: {cores:.3g} cores is used (at least one: a single-threaded request)")
        variation = _fit_work_cv(rates, throttled, cpu_per_request, cpu_limit, cfs_period_s, {
            cv: (chosen, cores, _latency_loss(_model(cpu_limit, chosen, cpu_per_request, cores, cfs_period_s, work_cv=cv), rates, observed,
                                              throttled)) for cv in WORK_CV_GRID})
    work_cv = variation.value
    model = _model(cpu_limit, chosen, cpu_per_request, cores, cfs_period_s, work_cv=work_cv)
    overhead = _overhead(observed, mean_latency(model, rates))
    model = _model(cpu_limit, chosen, cpu_per_request, cores, cfs_period_s, overhead, work_cv)
    predicted = mean_latency(model, rates)
    residual = observed - predicted
    spread = float(np.sum((observed - observed.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else 0.0
    rms, worst = float(np.sqrt(np.mean(residual**2))), float(np.max(np.abs(residual)))
    full = model.capacity * cpu_per_request / cpu_limit  # the utilisation of the limit at the replica's capacity
    curve_u = np.linspace(0.0, min(0.97 * full, max(float(np.max(utilisation)) * 1.5, 0.5 * full)), 60)
    curve = Plot(plot.x, plot.y, plot.x_label, plot.y_label, curve_u, mean_latency(model, curve_u * cpu_limit / cpu_per_request))
    saturation = peak / model.capacity
    warning = None
    if saturation < 0.5:
        warning = (f"the busiest interval used {saturation:.0%} of a replica's capacity ({peak:.3g} of {model.capacity:.3g} requests/s): "
                   "throughput never neared saturation, so the workers are a guess from mild queueing")
    elif chosen > 1 and losses[chosen - 2] < lowest * 1.2:
        warning = f"{chosen - 1} worker(s) fit almost as well (loss {losses[chosen - 2]:.3g} against {lowest:.3g})"
    note = None
    if chosen * cores >= cpu_limit * 0.95:
        note = (f"the CPU limit ({cpu_limit:g} cores) is used up by {chosen} worker(s) of {cores:.3g} cores: more workers would "
                "share it, and cannot be told apart from the latency (they would hold more memory)")
    model_text = f"{'CFS quota' if cfs_period_s else 'fluid'} limit"
    return QueueFit(
        Estimate("concurrency", chosen, "workers", f"the fewest workers whose simulated mean latency ({model_text}) fits the observed "
                 "(relative least squares)", int(rates.size), r2, rms, worst, warning=warning, note=note, plot=curve),
        Estimate("cores_per_request", cores, "cores", f"CPU work over the fitted service time of a request ({1000 / model.service_mu:.3g} ms)",
                 int(rates.size), warning=cores_warning),
        Estimate("overhead_s", overhead, "s", "the constant part of the mean latency, outside the workers (network, parsing)",
                 int(rates.size), r2, rms, worst),
        variation, losses)


def _refined(loss: Callable[[float], float], around: float) -> tuple[float, float]:
    """(loss, cores): a golden-section search in log-cores between the grid's neighbours of `around`."""
    ratio = float(CORE_GRID[1] / CORE_GRID[0])
    low, high = math.log(around / ratio), math.log(around * ratio)
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(25):
        a, b = high - golden * (high - low), low + golden * (high - low)
        if loss(math.exp(a)) <= loss(math.exp(b)):
            high = b
        else:
            low = a
    cores = math.exp((low + high) / 2)
    return min((loss(cores), cores), (loss(around), around))


# -- memory --------------------------------------------------------------------------------------


def busy_workers(rates: np.ndarray, cpu_per_request: float, cpu_limit: float, workers: int, cores: float) -> np.ndarray:
    """Requests holding a worker (and its memory) in the simulator's model, per replica, at these rates."""
    servers, mu = replica_servers(cpu_limit, workers, cpu_per_request, cores)
    capacity = servers * mu
    out = np.empty(rates.size)
    for i, rate in enumerate(rates):
        out[i] = workers if rate >= capacity else steady_state(servers, mu, float(rate)).mean_busy_workers(workers)
    return out


def fit_memory(history: History, cpu_per_request: float, cpu_limit: float, workers: int, cores: float) -> tuple[Estimate, Estimate]:
    mask = usable(history)
    rates, memory = history.rate_per_replica[mask], history.memory_per_replica[mask]
    busy = busy_workers(rates, cpu_per_request, cpu_limit, workers, cores)
    plot = Plot(busy, memory / 2**20, "requests in workers per replica (model)", "working set per replica (MiB)")
    if busy.size < MIN_POINTS or np.ptp(busy) < 0.05:
        base = float(np.median(memory))
        why = f"the requests in workers hardly varied ({busy.size} intervals, {np.min(busy):.2f}..{np.max(busy):.2f})"
        return (Estimate("base_memory", base, "bytes", "median working set", int(busy.size), note=why, plot=_with_line(plot, 0.0, base / 2**20)),
                Estimate("memory_per_request", 0.0, "bytes", "prior", int(busy.size), warning=f"{why}: memory per request is taken as 0"))
    fit = line_fit(busy, memory)
    base, per_request = fit.intercept, fit.slope
    warning = None
    if abs(per_request) < 2 * fit.slope_se:  # within noise of no slope: the history does not show memory per request
        warning = (f"the working set does not move with the requests in workers (slope {per_request / 2**20:.3g} ± "
                   f"{fit.slope_se / 2**20:.2g} MiB, R² {fit.r2:.2f}): memory per request is taken as 0")
        per_request, base = 0.0, float(np.median(memory))
    elif per_request < 0:
        warning, per_request, base = "the working set shrinks with the requests in flight: memory per request is taken as 0", 0.0, float(np.median(memory))
    line = _with_line(plot, per_request / 2**20, base / 2**20)
    return (Estimate("base_memory", base, "bytes", "intercept of working set on requests in workers (least squares)", int(fit.used.sum()),
                     fit.r2, fit.rms, fit.max_abs, plot=line),
            Estimate("memory_per_request", per_request, "bytes", "slope of working set on requests in workers (least squares)",
                     int(fit.used.sum()), fit.r2, fit.rms, fit.max_abs, warning=warning))


# -- start-up ------------------------------------------------------------------------------------


def fit_startup(samples: list[float], source: str) -> Estimate:
    values = np.asarray(samples, dtype=float)
    plot = Plot(values, values, "created -> ready (s)", "replicas", kind="histogram")
    if values.size == 0:
        return Estimate("startup_s", PRIOR_STARTUP_S, "s", "prior", 0,
                        warning=f"no replica was created and became ready in the window ({source}): the prior is used")
    median = float(np.median(values))
    spread = values - median
    warning = None
    if values.size < 3:
        warning = f"only {values.size} start-up(s) seen: the median of so few is a rough guide"
    return Estimate("startup_s", median, "s", f"median of created -> ready over {values.size} replicas ({source})", int(values.size),
                    residual_rms=float(np.sqrt(np.mean(spread**2))), residual_max=float(np.max(np.abs(spread))), warning=warning, plot=plot)
