"""Load: request-rate traces from CSV and seeded generators, as per-second rates.

Every workload answers one question: `rates(duration_s, rng)` -> the mean request rate
(requests/s) of each simulated second. The simulator draws Poisson arrivals around these rates;
randomness comes only from the generator passed in (the env's ``np_random``).

| kind          | shape                                                                 |
| ------------- | --------------------------------------------------------------------- |
| `trace`       | a CSV trace replayed with time scaling, amplitude scaling, offset, noise |
| `diurnal`     | a daily sinusoid around a mean, optionally with multiplicative noise  |
| `bursty`      | a two-state Markov-modulated Poisson process (calm / burst)           |
| `flash_crowd` | a base rate with one surge: linear rise, hold, exponential decay      |
| `ramp`        | a linear change from one rate to another                              |
| `step`        | a base rate that jumps to another at a given time                     |
| `sparse`      | long idle gaps, and bursts of random height arriving as a Poisson process |
| `on_off`      | a square wave: `on_s` at one rate, `off_s` at another                 |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rlscale.errors import UserInputError
from rlscale.validation import Reader

TRACE_HEADER = "timestamp_s,requests"


class Workload(Protocol):
    """Anything that gives the mean request rate of each second of an episode."""

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        """Requests/s for seconds 0..duration_s-1 (float64, non-negative)."""
        ...

    @property
    def peak_rps(self) -> float:
        """The nominal peak rate, used to size services and scale other traces to it."""
        ...


# --------------------------------------------------------------------------------------------
# Traces


@dataclass(frozen=True)
class Trace:
    """A request-count trace: `counts[i]` requests arrived in [i*interval_s, (i+1)*interval_s)."""

    name: str
    interval_s: float
    counts: np.ndarray

    @property
    def rates(self) -> np.ndarray:
        """Mean requests/s of each interval."""
        return self.counts / self.interval_s

    @property
    def duration_s(self) -> float:
        return len(self.counts) * self.interval_s


def load_trace(path: Path) -> Trace:
    """Read a `timestamp_s,requests` CSV (see ``shared/traces/README.md``), checking every row.

    Errors name the file and line: a missing header, a malformed, negative or non-finite value,
    timestamps that do not increase by one fixed interval, or fewer than two rows (the interval
    cannot be known).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserInputError(str(path), f"cannot read trace ({exc.strerror or exc})") from None
    if not lines or lines[0].strip().replace(" ", "") != TRACE_HEADER:
        first = lines[0].strip()[:40] if lines else "an empty file"
        raise UserInputError(f"{path}:1", f"expected the header '{TRACE_HEADER}', found {first!r}")
    timestamps: list[float] = []
    counts: list[float] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 2:
            raise UserInputError(f"{path}:{number}", f"expected 2 columns, found {len(parts)}")
        try:
            timestamp, count = float(parts[0]), float(parts[1])
        except ValueError:
            raise UserInputError(f"{path}:{number}", f"not a number in {line.strip()!r}") from None
        if not (math.isfinite(timestamp) and math.isfinite(count)):
            raise UserInputError(f"{path}:{number}", f"non-finite value in {line.strip()!r}")
        if count < 0:
            raise UserInputError(f"{path}:{number}", f"negative request count {count:g}")
        if timestamps and timestamp <= timestamps[-1]:
            raise UserInputError(
                f"{path}:{number}", f"timestamp {timestamp:g} does not increase (previous {timestamps[-1]:g})"
            )
        timestamps.append(timestamp)
        counts.append(count)
    if len(counts) < 2:
        raise UserInputError(str(path), f"a trace needs at least 2 rows to know its interval, found {len(counts)}")
    steps = np.diff(np.asarray(timestamps))
    interval = float(steps[0])
    irregular = np.flatnonzero(np.abs(steps - interval) > 1e-9 * max(interval, 1.0))
    if irregular.size:
        row = int(irregular[0]) + 3  # header + 1-based + the row after the step
        raise UserInputError(
            f"{path}:{row}", f"timestamps must advance by one fixed interval ({interval:g} s), found a step of {steps[irregular[0]]:g} s"
        )
    return Trace(name=path.stem, interval_s=interval, counts=np.asarray(counts, dtype=np.float64))


@dataclass(frozen=True)
class TraceReplay:
    """A trace replayed onto simulated time.

    `time_scale` stretches (>1) or compresses (<1) the trace's time axis; `offset_s` starts the
    replay that far into the (scaled) trace; the replay wraps around at the end. Rates are
    multiplied by `amplitude`, or scaled so that their `peak_quantile` equals `peak_rps` when
    that is set. `noise` is the standard deviation of multiplicative Gaussian noise drawn per
    trace interval.
    """

    trace: Trace
    time_scale: float = 1.0
    amplitude: float = 1.0
    peak_rps_target: float | None = None
    peak_quantile: float = 0.99
    offset_s: float = 0.0
    noise: float = 0.0

    @property
    def scale(self) -> float:
        """The factor applied to the trace's rates (after `peak_rps` fitting, if any)."""
        if self.peak_rps_target is None:
            return self.amplitude
        reference = float(np.quantile(self.trace.rates, self.peak_quantile))
        return self.peak_rps_target / reference if reference > 0 else 0.0

    @property
    def peak_rps(self) -> float:
        return float(np.quantile(self.trace.rates, self.peak_quantile)) * self.scale

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        base = self.trace.rates * self.scale
        if self.noise > 0:
            base = base * np.maximum(0.0, 1.0 + self.noise * rng.standard_normal(base.size))
        replay_interval = self.trace.interval_s * self.time_scale
        seconds = np.arange(duration_s, dtype=np.float64) + 0.5 + self.offset_s
        index = (seconds // replay_interval).astype(np.int64) % base.size
        return base[index]


# --------------------------------------------------------------------------------------------
# Generators


@dataclass(frozen=True)
class Diurnal:
    """A daily cycle: mean * (1 + amplitude * cos(2 pi (t - peak_time) / period))."""

    mean_rps: float
    amplitude: float = 0.5
    period_s: float = 86_400.0
    peak_time_s: float = 50_400.0  # 14:00
    start_s: float = 0.0  # time of day at which the episode starts
    noise: float = 0.0  # std of multiplicative noise per minute

    @property
    def peak_rps(self) -> float:
        return self.mean_rps * (1.0 + self.amplitude)

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        t = self.start_s + np.arange(duration_s, dtype=np.float64)
        shape = 1.0 + self.amplitude * np.cos(2.0 * np.pi * (t - self.peak_time_s) / self.period_s)
        return self.mean_rps * shape * _minute_noise(duration_s, self.noise, rng)


@dataclass(frozen=True)
class Bursty:
    """A two-state MMPP: calm at `base_rps`, bursts at `burst_rps`, exponential sojourns."""

    base_rps: float
    burst_rps: float
    mean_calm_s: float = 600.0
    mean_burst_s: float = 60.0

    @property
    def peak_rps(self) -> float:
        return max(self.base_rps, self.burst_rps)

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(duration_s, dtype=np.float64)
        t = 0
        in_burst = bool(rng.random() < self.mean_burst_s / (self.mean_calm_s + self.mean_burst_s))
        while t < duration_s:
            sojourn = max(1, int(round(rng.exponential(self.mean_burst_s if in_burst else self.mean_calm_s))))
            out[t : t + sojourn] = self.burst_rps if in_burst else self.base_rps
            t += sojourn
            in_burst = not in_burst
        return out


@dataclass(frozen=True)
class FlashCrowd:
    """A base rate with one surge: linear rise to `peak_rps`, hold, exponential decay."""

    base_rps: float
    peak_rps: float
    start_s: float = 3_600.0
    rise_s: float = 120.0
    hold_s: float = 600.0
    decay_s: float = 600.0  # time constant of the decay
    jitter_s: float = 0.0  # the surge starts uniformly within +- jitter_s of start_s

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        start = self.start_s + (rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s > 0 else 0.0)
        t = np.arange(duration_s, dtype=np.float64) - start
        surge = np.where(
            t < 0,
            0.0,
            np.where(
                t < self.rise_s,
                t / max(self.rise_s, 1e-9),
                np.where(
                    t < self.rise_s + self.hold_s,
                    1.0,
                    np.exp(-(t - self.rise_s - self.hold_s) / max(self.decay_s, 1e-9)),
                ),
            ),
        )
        return self.base_rps + (self.peak_rps - self.base_rps) * surge


@dataclass(frozen=True)
class Ramp:
    """A linear change from `start_rps` to `end_rps` over [start_s, start_s + duration_s]."""

    start_rps: float
    end_rps: float
    start_s: float = 0.0
    ramp_s: float = 3_600.0

    @property
    def peak_rps(self) -> float:
        return max(self.start_rps, self.end_rps)

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(duration_s, dtype=np.float64)
        progress = np.clip((t - self.start_s) / max(self.ramp_s, 1e-9), 0.0, 1.0)
        return self.start_rps + (self.end_rps - self.start_rps) * progress


@dataclass(frozen=True)
class Step:
    """`base_rps` until `at_s`, then `step_rps`."""

    base_rps: float
    step_rps: float
    at_s: float = 1_800.0

    @property
    def peak_rps(self) -> float:
        return max(self.base_rps, self.step_rps)

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(duration_s, dtype=np.float64)
        return np.where(t < self.at_s, self.base_rps, self.step_rps)


@dataclass(frozen=True)
class Sparse:
    """Idle (at `idle_rps`, often 0) for exponential gaps of mean `mean_gap_s`; bursts between.

    Bursts start as a Poisson process (the gaps are exponential), last an exponential time of
    mean `mean_burst_s`, and each has its own height, log-uniform in [`burst_rps` / 4, `burst_rps`]:
    traffic that comes in minutes and leaves for hours (batch clients, demos, cron jobs).
    """

    burst_rps: float
    mean_gap_s: float = 3_600.0
    mean_burst_s: float = 300.0
    idle_rps: float = 0.0

    @property
    def peak_rps(self) -> float:
        return max(self.burst_rps, self.idle_rps)

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        out = np.full(duration_s, self.idle_rps, dtype=np.float64)
        t = int(round(rng.exponential(self.mean_gap_s)))
        while t < duration_s:
            length = max(1, int(round(rng.exponential(self.mean_burst_s))))
            height = self.burst_rps * float(np.exp(rng.uniform(np.log(0.25), 0.0)))
            out[t : t + length] = max(height, self.idle_rps)
            t += length + max(1, int(round(rng.exponential(self.mean_gap_s))))
        return out


@dataclass(frozen=True)
class OnOff:
    """A square wave: `on_rps` for `on_s`, then `off_rps` for `off_s`, starting `start_s` into a period."""

    on_rps: float
    off_rps: float = 0.0
    on_s: float = 600.0
    off_s: float = 1_200.0
    start_s: float = 0.0

    @property
    def peak_rps(self) -> float:
        return max(self.on_rps, self.off_rps)

    def rates(self, duration_s: int, rng: np.random.Generator) -> np.ndarray:
        phase = (np.arange(duration_s, dtype=np.float64) + self.start_s) % (self.on_s + self.off_s)
        return np.where(phase < self.on_s, self.on_rps, self.off_rps)


def _minute_noise(duration_s: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise, one Gaussian factor per minute (load noise is not per-second)."""
    if sigma <= 0:
        return np.ones(duration_s)
    factors = np.maximum(0.0, 1.0 + sigma * rng.standard_normal(duration_s // 60 + 1))
    return np.repeat(factors, 60)[:duration_s]


# --------------------------------------------------------------------------------------------
# From config


def workload_from_config(reader: Reader, base_dir: Path) -> Workload:
    """Build a workload from its scenario mapping (``kind`` plus that kind's fields)."""
    kind = reader.string("kind", choices=sorted(_BUILDERS))
    workload = _BUILDERS[kind](reader, base_dir)
    reader.done()
    return workload


def _trace_from_config(reader: Reader, base_dir: Path) -> TraceReplay:
    path = Path(reader.string("path"))
    trace = load_trace(path if path.is_absolute() else base_dir / path)
    peak = reader.number("peak_rps", None, positive=True)
    amplitude = reader.number("amplitude", 1.0, min_value=0.0)
    if peak is not None and reader.has("amplitude"):
        raise reader.fail("amplitude", "give either peak_rps or amplitude, not both")
    return TraceReplay(
        trace=trace,
        time_scale=reader.number("time_scale", 1.0, positive=True),
        amplitude=amplitude,
        peak_rps_target=peak,
        peak_quantile=reader.number("peak_quantile", 0.99, min_value=0.5, max_value=1.0),
        offset_s=reader.number("offset_s", 0.0, min_value=0.0),
        noise=reader.number("noise", 0.0, min_value=0.0, max_value=1.0),
    )


def _diurnal_from_config(reader: Reader, _: Path) -> Diurnal:
    return Diurnal(
        mean_rps=reader.number("mean_rps", positive=True),
        amplitude=reader.number("amplitude", 0.5, min_value=0.0, max_value=1.0),
        period_s=reader.number("period_s", 86_400.0, positive=True),
        peak_time_s=reader.number("peak_time_s", 50_400.0, min_value=0.0),
        start_s=reader.number("start_s", 0.0, min_value=0.0),
        noise=reader.number("noise", 0.0, min_value=0.0, max_value=1.0),
    )


def _bursty_from_config(reader: Reader, _: Path) -> Bursty:
    return Bursty(
        base_rps=reader.number("base_rps", min_value=0.0),
        burst_rps=reader.number("burst_rps", min_value=0.0),
        mean_calm_s=reader.number("mean_calm_s", 600.0, positive=True),
        mean_burst_s=reader.number("mean_burst_s", 60.0, positive=True),
    )


def _flash_crowd_from_config(reader: Reader, _: Path) -> FlashCrowd:
    return FlashCrowd(
        base_rps=reader.number("base_rps", min_value=0.0),
        peak_rps=reader.number("peak_rps", min_value=0.0),
        start_s=reader.number("start_s", 3_600.0, min_value=0.0),
        rise_s=reader.number("rise_s", 120.0, min_value=0.0),
        hold_s=reader.number("hold_s", 600.0, min_value=0.0),
        decay_s=reader.number("decay_s", 600.0, positive=True),
        jitter_s=reader.number("jitter_s", 0.0, min_value=0.0),
    )


def _ramp_from_config(reader: Reader, _: Path) -> Ramp:
    return Ramp(
        start_rps=reader.number("start_rps", min_value=0.0),
        end_rps=reader.number("end_rps", min_value=0.0),
        start_s=reader.number("start_s", 0.0, min_value=0.0),
        ramp_s=reader.number("ramp_s", 3_600.0, positive=True),
    )


def _step_from_config(reader: Reader, _: Path) -> Step:
    return Step(
        base_rps=reader.number("base_rps", min_value=0.0),
        step_rps=reader.number("step_rps", min_value=0.0),
        at_s=reader.number("at_s", 1_800.0, min_value=0.0),
    )


def _sparse_from_config(reader: Reader, _: Path) -> Sparse:
    return Sparse(
        burst_rps=reader.number("burst_rps", positive=True),
        mean_gap_s=reader.number("mean_gap_s", 3_600.0, positive=True),
        mean_burst_s=reader.number("mean_burst_s", 300.0, positive=True),
        idle_rps=reader.number("idle_rps", 0.0, min_value=0.0),
    )


def _on_off_from_config(reader: Reader, _: Path) -> OnOff:
    return OnOff(
        on_rps=reader.number("on_rps", min_value=0.0),
        off_rps=reader.number("off_rps", 0.0, min_value=0.0),
        on_s=reader.number("on_s", 600.0, positive=True),
        off_s=reader.number("off_s", 1_200.0, positive=True),
        start_s=reader.number("start_s", 0.0, min_value=0.0),
    )


_BUILDERS = {
    "trace": _trace_from_config,
    "diurnal": _diurnal_from_config,
    "bursty": _bursty_from_config,
    "flash_crowd": _flash_crowd_from_config,
    "ramp": _ramp_from_config,
    "step": _step_from_config,
    "sparse": _sparse_from_config,
    "on_off": _on_off_from_config,
}
