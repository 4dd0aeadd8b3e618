"""Where a sweep's jobs run: local processes (the default), or a Ray cluster when asked.

A sweep (the runs of `compare`, the tuning grid, training seeds) is a list of independent jobs,
each a picklable call `fn(item)`. An executor runs them and returns their results in the order of
the items, calling `on_done()` once per finished job (progress bars count those), and fails with
the first job's error that fails (its exception, with a note naming the job), cancelling the rest:
never a hang on a lost job.

- `LocalPool(workers)`: a process pool on this machine (in this process with one worker);
- `RayCluster(address)`: tasks on a Ray cluster (`pip install 'rlscale[ray]'`): an address
  (`ray://host:10001`, `host:6379`, `auto`), or `local` for an embedded one-machine cluster;
  the function and shared data are put in the object store once, not sent with every job.

Results do not depend on where a job ran: a job draws only from its own seed.
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, TypeVar, Union

from rlscale.errors import UserInputError

T = TypeVar("T")
R = TypeVar("R")
RAY_ENV = "RAY_ADDRESS"
LOCAL = "local"
CONNECT_TIMEOUT_S = 5.0
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # an embedded cluster's object store: jobs share a scenario, not data sets


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T], on_done: Callable[[], None] | None = None,
            label: Callable[[T], str] = repr) -> list[R]:
        """`[fn(item) for item in items]`, run wherever this executor runs jobs."""
        ...


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def _failed(exc: BaseException, label: str) -> BaseException:
    exc.add_note(f"(in the job {label})")
    return exc


@dataclass(frozen=True)
class LocalPool:
    workers: int

    def map(self, fn: Callable[[T], R], items: Sequence[T], on_done: Callable[[], None] | None = None,
            label: Callable[[T], str] = repr) -> list[R]:
        results: list[R] = []
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                try:
                    results.append(fn(item))
                except Exception as exc:
                    raise _failed(exc, label(item))
                if on_done is not None:
                    on_done()
            return results
        with ProcessPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for item, future in zip(items, futures):
                    if future.exception() is not None:  # waits for this job; the first failure in order fails the run
                        raise _failed(future.exception(), label(item))
                    results.append(future.result())
                    if on_done is not None:
                        on_done()
            finally:
                for future in futures:
                    future.cancel()
        return results


def _apply(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


@dataclass(frozen=True)
class RayCluster:
    address: str  # a Ray address, or "local" for an embedded cluster
    cpus: int | None = None  # an embedded cluster's CPUs (default: this machine's)
    cpus_per_job: float = 1.0

    def map(self, fn: Callable[[T], R], items: Sequence[T], on_done: Callable[[], None] | None = None,
            label: Callable[[T], str] = repr) -> list[R]:
        ray = self.connect()
        remote = ray.remote(num_cpus=self.cpus_per_job, max_retries=0)(_apply)
        fn_ref = ray.put(fn)
        index = {remote.remote(fn_ref, item): i for i, item in enumerate(items)}
        results: dict[int, Any] = {}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        results[index[ref]] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the job's own exception, raised on the worker
                        raise _failed(exc.as_instanceof_cause(), label(items[index[ref]])) from None
                    except ray.exceptions.RayError as exc:  # a worker or node lost: the job cannot finish
                        raise _failed(RuntimeError(f"Ray could not run the job: {exc}"), label(items[index[ref]])) from None
                    if on_done is not None:
                        on_done()
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return [results[i] for i in range(len(items))]

    def connect(self) -> Any:
        """The `ray` module, connected to this cluster (started, when embedded)."""
        try:
            import ray
        except ImportError:
            raise UserInputError("--ray", "running on Ray needs the ray extra: pip install 'rlscale[ray]'") from None
        if not ray.is_initialized():
            settings: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
            try:
                if self.address == LOCAL:
                    ray.init(address=LOCAL, num_cpus=self.cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **settings)
                else:
                    _check_reachable(self.address)
                    ray.init(address=self.address, **settings)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserInputError("--ray", f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        return ray


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nothing answers on (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or an address Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserInputError("--ray", f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


Workers = Union[int, Executor]


def executor_for(workers: Workers) -> Executor:
    """An executor as given, or a number of local processes."""
    return LocalPool(workers) if isinstance(workers, int) else workers


def choose(ray: str | None, jobs: int | None, cpus_per_job: float = 1.0, local_jobs: int | None = None) -> Executor:
    """What the CLI runs a sweep on: `--ray ADDRESS` (or `$RAY_ADDRESS`), else `--jobs` local processes
    (default `local_jobs`, else the CPUs available)."""
    address = ray or os.environ.get(RAY_ENV) or None
    if address is None:
        return LocalPool(jobs or local_jobs or default_workers())
    if jobs is not None and address != LOCAL:
        raise UserInputError("--jobs", "a Ray cluster runs as many jobs at once as it has CPUs: pass --ray or --jobs, not both")
    return RayCluster(address, cpus=jobs if address == LOCAL else None, cpus_per_job=cpus_per_job)
