"""A service's settings from the `rlscale.io/*` annotations on its HPA, checked one by one.

Pure: annotations (and the config's per-service overrides, which win) in, `ServiceSettings`
out, or `InvalidAnnotation` naming the annotation and what is wrong with it, so that one
badly annotated HPA fails static alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from rlscale.controller.config import ANNOTATION_PREFIX, ORIGINAL_BOUNDS, PAUSED, ServiceOverrides
from rlscale.quantity import parse_quantity


T = TypeVar("T")
D = TypeVar("D")


class InvalidAnnotation(ValueError):
    reason = "InvalidAnnotation"


@dataclass(frozen=True)
class ServiceSettings:
    container: str | None  # None: the first container
    slo_latency_s: float
    slo_quantile: float
    min_replicas: int | None  # None: the HPA's original bound
    max_replicas: int | None
    cpu_limit_range: tuple[float, float] | None  # None: the current limit only
    memory_limit_range: tuple[float, float] | None
    paused: bool
    workers_cores: float | None = None  # None: unknown (the codec's CPU levels follow the bounds)


def read_setting(annotations: Mapping[str, str], key: str, parse: Callable[[str], T], default: D) -> T | D:
    """The `rlscale.io/<key>` annotation (or Swarm label) parsed, `default` without one; `InvalidAnnotation` naming it."""
    text = annotations.get(ANNOTATION_PREFIX + key)
    if text is None:
        return default
    try:
        return parse(text.strip())
    except ValueError as exc:
        raise InvalidAnnotation(f"{ANNOTATION_PREFIX}{key}: {exc} (got {text!r})") from None


def service_settings(annotations: Mapping[str, str], overrides: ServiceOverrides | None, default_slo_latency_s: float,
                     default_slo_quantile: float) -> ServiceSettings:
    """The settings of one service; `InvalidAnnotation` for the first annotation that is wrong."""

    def read(key: str, field: str, parse, default):  # type: ignore[no-untyped-def]
        override = getattr(overrides, field, None) if overrides else None
        return override if override is not None else read_setting(annotations, key, parse, default)

    settings = ServiceSettings(
        container=read("container", "container", _name, None),
        slo_latency_s=read("slo-latency-seconds", "slo_latency_s", _positive, default_slo_latency_s),
        slo_quantile=read("slo-quantile", "slo_quantile", _quantile, default_slo_quantile),
        min_replicas=read("min-replicas", "min_replicas", _replicas, None),
        max_replicas=read("max-replicas", "max_replicas", _replicas, None),
        cpu_limit_range=read("cpu-limit-range", "cpu_limit_range", _range, None),
        memory_limit_range=read("memory-limit-range", "memory_limit_range", _range, None),
        paused=_paused(annotations.get(PAUSED)),
        workers_cores=read("workers-cores", "workers_cores", _cores, None),
    )
    if settings.min_replicas is not None and settings.max_replicas is not None and settings.min_replicas > settings.max_replicas:
        raise InvalidAnnotation(f"{ANNOTATION_PREFIX}min-replicas ({settings.min_replicas}) exceeds "
                                f"{ANNOTATION_PREFIX}max-replicas ({settings.max_replicas})")
    return settings


def original_setting(annotations: Mapping[str, str], cpu_target: int | None) -> tuple[int, int, int | None] | None:
    """The HPA setting saved in the original-bounds annotation (None when there is none): its bounds and CPU target
    (`cpu_target`, the HPA's own, when the annotation predates saving it)."""
    text = annotations.get(ORIGINAL_BOUNDS)
    if text is None:
        return None
    try:
        saved = json.loads(text)
        low, high = saved["minReplicas"], saved["maxReplicas"]
        target = saved.get("cpuUtilization", cpu_target)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidAnnotation(f'{ORIGINAL_BOUNDS}: expected {{"minReplicas": N, "maxReplicas": M, "cpuUtilization": P}}, '
                                f'got {text!r}') from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (low, high)) or low > high:
        raise InvalidAnnotation(f"{ORIGINAL_BOUNDS}: needs whole numbers 1 <= minReplicas <= maxReplicas, got {text!r}")
    if target is not None and (not isinstance(target, int) or isinstance(target, bool) or target < 1):
        raise InvalidAnnotation(f"{ORIGINAL_BOUNDS}: cpuUtilization must be a whole percentage >= 1 or null, got {text!r}")
    return low, high, target


def _name(text: str) -> str:
    if not text:
        raise ValueError("a container name is required")
    return text


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _cores(text: str) -> float:
    value = parse_quantity(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a CPU quantity > 0 (e.g. 1 or 500m)")
    return value


def _quantile(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise ValueError("must be strictly between 0 and 1")
    return value


def whole_number(least: int) -> Callable[[str], int]:
    """A parser of whole numbers >= `least`."""

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise ValueError(f"must be a whole number >= {least}")
        return int(text)

    return parse


_replicas = whole_number(1)


def _range(text: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError("expected 'min,max' (e.g. 50m,1 or 64Mi,512Mi)")
    low, high = (parse_quantity(p) for p in parts)
    if not all(math.isfinite(v) and v > 0 for v in (low, high)):
        raise ValueError("quantities must be positive and finite")
    if low > high:
        raise ValueError("min exceeds max")
    return low, high


def _paused(text: str | None) -> bool:
    if text is None:
        return False
    if text.strip().lower() not in ("true", "false"):
        raise InvalidAnnotation(f"{PAUSED}: expected 'true' or 'false', got {text!r}")
    return text.strip().lower() == "true"
