"""The kubelet's part: container start-up, readiness, OOM kills with CrashLoopBackOff, and
in-place resize. Functions over one pod with the time passed in."""

from __future__ import annotations

from rlscale.env.cluster import Pod

CRASH_BACKOFF_INITIAL_S = 10.0
CRASH_BACKOFF_MAX_S = 300.0
CRASH_BACKOFF_RESET_S = 600.0  # a container that ran this long without crashing starts its back-off anew
OOM_KILLED = "OOMKilled"


def start_container(pod: Pod, now: float, startup_s: float) -> None:
    """The container starts; it becomes ready after the start-up time (pull, model load, warm-up)."""
    if pod.start_time is None:
        pod.start_time = now  # the pod's status.startTime: its first start, kept across restarts
    pod.started_at = now
    pod.ready_at = now + startup_s


def finish_startup(pod: Pod, now: float, base_memory: float) -> bool:
    """The start-up ends: ready, or OOM-killed if the model alone exceeds the memory limit."""
    if base_memory > pod.memory_limit:
        crash(pod, now, OOM_KILLED)
        return False
    pod.ready_since = now
    pod.ready_at = None
    return True


def crash(pod: Pod, now: float, reason: str) -> None:
    """The container dies; it restarts after CrashLoopBackOff (10 s, doubling, at most 5 min)."""
    ran_for = now - (pod.started_at if pod.started_at is not None else now)
    streak = 0 if ran_for >= CRASH_BACKOFF_RESET_S else pod.restarts
    if pod.ready_since is not None:
        pod.not_ready_since = now
    pod.ready_since = None
    pod.started_at = None
    pod.ready_at = None
    pod.restarts += 1
    pod.last_termination_reason = reason
    pod.restart_at = now + min(CRASH_BACKOFF_MAX_S, CRASH_BACKOFF_INITIAL_S * 2.0 ** min(streak, 10))


def memory_shrink_blocked(pod: Pod, new_limit: float, working_set: float) -> bool:
    """The kubelet does not lower a running container's memory limit below what it uses."""
    return new_limit < pod.memory_limit and pod.started_at is not None and new_limit < working_set
