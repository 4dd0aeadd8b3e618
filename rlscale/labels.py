"""Kubernetes label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) as predicates over labels.

Used by the controller's caches (which match locally what they list once) and by the
emulator's API (which filters lists and watches). A malformed selector is a `ValueError`.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

Labels = Mapping[str, str]
_REQUIREMENT = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def selector(text: str | None) -> Callable[[Labels], bool]:
    """The predicate for a selector string; the empty selector matches everything."""
    if not text or not text.strip():
        return lambda labels: True
    checks: list[Callable[[Labels], bool]] = []
    for part in _split(text):
        match = _REQUIREMENT.match(part)
        if match is None:
            raise ValueError(f"unable to parse requirement: {part!r}")
        negate, key, op, value, set_op, values = match.groups()
        if op in ("=", "=="):
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif set_op:
            options = {v.strip() for v in values.split(",") if v.strip()}
            checks.append(lambda labels, k=key, o=options, keep=set_op == "in": (labels.get(k) in o) == keep)
        else:
            checks.append(lambda labels, k=key, absent=bool(negate): (k in labels) != absent)
    return lambda labels: all(check(labels) for check in checks)


def match_labels(required: Labels, labels: Labels) -> bool:
    """Whether `labels` has every key=value of a `matchLabels` map (an empty map matches nothing: no pods)."""
    return bool(required) and all(labels.get(k) == v for k, v in required.items())


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]
