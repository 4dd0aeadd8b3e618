"""Kubernetes resource quantities ("250m", "1.5", "512Mi", "2G") as plain floats.

CPU is kept in cores and memory in bytes everywhere inside rlscale; these functions are the
only place that knows the string forms, so the scenario files, the controller and the
emulator agree on them.
"""

from __future__ import annotations

import math
import re

_QUANTITY = re.compile(r"^([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX_FACTOR = {  # every suffix of Kubernetes' resource.Quantity
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(value: object) -> float:
    """A Kubernetes quantity (a number or a string such as "250m" or "1Gi") as a float.

    Raises ValueError with a short reason when the value is not a quantity.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value.strip())
        if match is None or match.group(2) not in _SUFFIX_FACTOR:
            raise ValueError(f"{value!r} is not a quantity (e.g. 250m, 1.5, 512Mi, 2Gi)")
        number = float(match.group(1)) * _SUFFIX_FACTOR[match.group(2)]
    else:
        raise ValueError(f"expected a quantity, got {type(value).__name__} {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite quantity")
    return number


def format_cpu(cores: float) -> str:
    """Cores as a Kubernetes CPU quantity in millicores ("250m")."""
    return f"{round(cores * 1000)}m"


def format_memory(num_bytes: float) -> str:
    """Bytes as a Kubernetes memory quantity in MiB ("512Mi"), rounded up to whole MiB."""
    return f"{math.ceil(num_bytes / 2**20)}Mi"
