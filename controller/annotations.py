"""A service's settings from the `rlscale.io/*` annotations on its HPA, checked one by one.

Pure: annotations (and the config's per-service overrides, which win) in, `ServiceSettings`
out, or `InvalidAnnotation` naming the annotation and what is wrong with it, so that one
badly annotated HPA fails static alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping

from rlscale.controller.config import ANNOTATION_PREFIX, ORIGINAL_BOUNDS, PAUSED, ServiceOverrides
from rlscale.quantity import parse_quantity


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


def service_settings(annotations: Mapping[str, str], overrides: ServiceOverrides | None, default_slo_latency_s: float,
                     default_slo_quantile: float) -> ServiceSettings:
    """The settings of one service; `InvalidAnnotation` for the first annotation that is wrong."""

    def read(key: str, field: str, parse, default):  # type: ignore[no-untyped-def]
        override = getattr(overrides, field, None) if overrides else None
        if override is not None:
            return override
        text = annotations.get(ANNOTATION_PREFIX + key)
        if text is None:
            return default
        try:
            return parse(text.strip())
        except ValueError as exc:
            raise InvalidAnnotation(f"{ANNOTATION_PREFIX}{key}: {exc} (got {text!r})") from None

    settings = ServiceSettings(
        container=read("container", "container", _name, None),
        slo_latency_s=read("slo-latency-seconds", "slo_latency_s", _positive, default_slo_latency_s),
        slo_quantile=read("slo-quantile", "slo_quantile", _quantile, default_slo_quantile),
        min_replicas=read("min-replicas", "min_replicas", _replicas, None),
        max_replicas=read("max-replicas", "max_replicas", _replicas, None),
        cpu_limit_range=read("cpu-limit-range", "cpu_limit_range", _range, None),
        memory_limit_range=read("memory-limit-range", "memory_limit_range", _range, None),
        paused=_paused(annotations.get(PAUSED)),
    )
    if settings.min_replicas is not None and settings.max_replicas is not None and settings.min_replicas > settings.max_replicas:
        raise InvalidAnnotation(f"{ANNOTATION_PREFIX}min-replicas ({settings.min_replicas}) exceeds "
                                f"{ANNOTATION_PREFIX}max-replicas ({settings.max_replicas})")
    return settings


def original_bounds(annotations: Mapping[str, str]) -> tuple[int, int] | None:
    """The bounds saved in the original-bounds annotation (None when there is none)."""
    text = annotations.get(ORIGINAL_BOUNDS)
    if text is None:
        return None
    try:
        saved = json.loads(text)
        low, high = saved["minReplicas"], saved["maxReplicas"]
    except (ValueError, TypeError, KeyError):
        raise InvalidAnnotation(f'{ORIGINAL_BOUNDS}: expected {{"minReplicas": N, "maxReplicas": M}}, got {text!r}') from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (low, high)) or low > high:
        raise InvalidAnnotation(f"{ORIGINAL_BOUNDS}: needs whole numbers 1 <= minReplicas <= maxReplicas, got {text!r}")
    return low, high


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


def _quantile(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise ValueError("must be strictly between 0 and 1")
    return value


def _replicas(text: str) -> int:
    if not text.isdigit():
        raise ValueError("must be a whole number >= 1")
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number >= 1")
    return value


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
