"""Traces from CSV (and their errors) and the seeded load generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlscale.env.workloads import Bursty, Diurnal, FlashCrowd, OnOff, Ramp, Sparse, Step, TraceReplay, load_trace
from rlscale.errors import UserInputError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace_10s.csv"
    path.write_text(text)
    return path


def test_loads_a_shared_trace(shared_traces: Path) -> None:
    trace = load_trace(shared_traces / "azure_llm2024_code_10s_first70pct.csv")
    assert trace.interval_s == 10
    assert len(trace.counts) > 40_000
    assert trace.counts[:2].tolist() == [238, 268]
    assert trace.rates[0] == pytest.approx(23.8)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("time,count\n0,1\n10,2\n", ":1", "expected the header"),
        ("", ":1", "expected the header"),
        ("timestamp_s,requests\n0,1\n10,-3\n", ":3", "negative request count"),
        ("timestamp_s,requests\n0,1\n10,nan\n", ":3", "non-finite"),
        ("timestamp_s,requests\n0,1\n10,abc\n", ":3", "not a number"),
        ("timestamp_s,requests\n0,1\n10,2\n10,3\n", ":4", "does not increase"),
        ("timestamp_s,requests\n0,1\n10,2\n5,3\n", ":4", "does not increase"),
        ("timestamp_s,requests\n0,1\n10,2\n30,3\n", ":4", "fixed interval"),
        ("timestamp_s,requests\n0,1\n", "", "at least 2 rows"),
        ("timestamp_s,requests\n0,1,5\n10,2\n", ":2", "expected 2 columns"),
    ],
    ids=["wrong-header", "empty", "negative", "nan", "not-a-number", "repeated-timestamp",
         "decreasing-timestamp", "gap", "one-row", "three-columns"],
)
def test_bad_traces_are_refused_with_file_and_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserInputError) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}{where}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_trace_replay_scales_time_amplitude_and_offset(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "timestamp_s,requests\n0,100\n10,200\n20,300\n30,400\n"))
    rng = np.random.default_rng(0)
    plain = TraceReplay(trace).rates(40, rng)
    assert plain[:10].tolist() == [10.0] * 10 and plain[30:].tolist() == [40.0] * 10
    compressed = TraceReplay(trace, time_scale=0.5).rates(20, rng)  # 10 s of trace in 5 s
    assert compressed[:5].tolist() == [10.0] * 5 and compressed[15:].tolist() == [40.0] * 5
    assert TraceReplay(trace, amplitude=2.0).rates(10, rng)[0] == 20.0
    shifted = TraceReplay(trace, offset_s=30).rates(20, rng)  # starts at the last interval, then wraps
    assert shifted[:10].tolist() == [40.0] * 10 and shifted[10:].tolist() == [10.0] * 10
    fitted = TraceReplay(trace, peak_rps_target=8.0, peak_quantile=1.0)
    assert fitted.rates(40, rng).max() == pytest.approx(8.0)
    assert fitted.peak_rps == pytest.approx(8.0)


def test_trace_noise_is_seeded(tmp_path: Path) -> None:
    trace = load_trace(write(tmp_path, "timestamp_s,requests\n0,100\n10,200\n"))
    replay = TraceReplay(trace, noise=0.2)
    a = replay.rates(20, np.random.default_rng(7))
    b = replay.rates(20, np.random.default_rng(7))
    c = replay.rates(20, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, TraceReplay(trace).rates(20, np.random.default_rng(7)))


@pytest.mark.parametrize(
    "workload",
    [
        Diurnal(mean_rps=50, amplitude=0.5, noise=0.1),
        Bursty(base_rps=10, burst_rps=50),
        FlashCrowd(base_rps=5, peak_rps=50, start_s=1000, jitter_s=300),
        Ramp(start_rps=1, end_rps=10),
        Step(base_rps=1, step_rps=5),
    ],
    ids=lambda w: type(w).__name__,
)
def test_generators_are_seeded_and_non_negative(workload) -> None:
    a = workload.rates(7200, np.random.default_rng(3))
    b = workload.rates(7200, np.random.default_rng(3))
    assert a.shape == (7200,) and np.array_equal(a, b)
    assert (a >= 0).all()
    assert a.max() <= workload.peak_rps + 1e-9 or isinstance(workload, Diurnal)


def test_diurnal_cycle() -> None:
    day = Diurnal(mean_rps=40, amplitude=0.5, peak_time_s=14 * 3600).rates(86_400, np.random.default_rng(0))
    assert day.mean() == pytest.approx(40, rel=1e-3)
    assert int(day.argmax()) == 14 * 3600
    assert day.max() == pytest.approx(60) and day.min() == pytest.approx(20)


def test_bursty_spends_its_share_of_time_in_bursts() -> None:
    rates = Bursty(base_rps=10, burst_rps=50, mean_calm_s=300, mean_burst_s=100).rates(2_000_000, np.random.default_rng(1))
    assert set(np.unique(rates)) == {10.0, 50.0}
    assert (rates == 50).mean() == pytest.approx(0.25, abs=0.02)


def test_flash_crowd_shape() -> None:
    rates = FlashCrowd(base_rps=5, peak_rps=45, start_s=100, rise_s=100, hold_s=50, decay_s=10).rates(400, np.random.default_rng(0))
    assert rates[99] == 5 and rates[150] == pytest.approx(25) and rates[200:250].tolist() == [45.0] * 50
    assert rates[399] == pytest.approx(5, abs=0.01)


def test_ramp_and_step() -> None:
    ramp = Ramp(start_rps=0, end_rps=100, start_s=10, ramp_s=100).rates(200, np.random.default_rng(0))
    assert ramp[10] == 0 and ramp[60] == pytest.approx(50) and ramp[150] == 100
    step = Step(base_rps=3, step_rps=9, at_s=5).rates(10, np.random.default_rng(0))
    assert step.tolist() == [3.0] * 5 + [9.0] * 5


def test_sparse_load_is_mostly_idle_with_bursts_of_random_height() -> None:
    load = Sparse(burst_rps=100.0, mean_gap_s=1800.0, mean_burst_s=120.0)
    rates = load.rates(86_400, np.random.default_rng(3))
    busy = rates > 0
    assert 0.02 < busy.mean() < 0.2  # ~120 s of bursts per ~1920 s
    heights = np.unique(rates[busy])
    assert len(heights) > 5 and heights.min() >= 25.0 and heights.max() <= 100.0
    starts = np.flatnonzero(np.diff(busy.astype(int)) == 1)
    assert 20 < len(starts) < 80  # Poisson arrivals of bursts, ~45 a day


def test_on_off_is_a_square_wave() -> None:
    rates = OnOff(on_rps=10.0, off_rps=1.0, on_s=60.0, off_s=120.0, start_s=30.0).rates(360, np.random.default_rng(0))
    assert list(rates[:30]) == [10.0] * 30 and list(rates[30:150]) == [1.0] * 120 and list(rates[150:210]) == [10.0] * 60
