"""Reading YAML/JSON config files with precise, one-line errors.

`Reader` walks one mapping of a parsed file, remembers the path it is at
(``services[1].resources.limits.cpu``), converts and checks each value, and refuses keys it was
never asked for, so a typo in a config file is an error that names the file and the field
rather than a silently ignored setting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from rlscale.errors import UserInputError
from rlscale.quantity import parse_quantity

_REQUIRED = object()


def load_yaml_file(path: Path) -> Any:
    """Parse a YAML file; unreadable or malformed files become a UserInputError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(str(path), f"cannot read file ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UserInputError(where, f"invalid YAML: {problem}") from None


class Reader:
    """One mapping of a config file: typed accessors that check values and track the path."""

    def __init__(self, data: Any, source: str, path: str = "") -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            raise UserInputError(self._where(None), f"expected a mapping, got {_kind(data)}")
        self._data: dict[str, Any] = data
        self._read: set[str] = set()

    # -- locating ---------------------------------------------------------------------------

    def _where(self, key: str | None) -> str:
        field = self.path if key is None else (f"{self.path}.{key}" if self.path else key)
        return f"{self.source}: {field}" if field else self.source

    def fail(self, key: str | None, what: str) -> UserInputError:
        """An error about `key` of this mapping (or the mapping itself when key is None)."""
        return UserInputError(self._where(key), what)

    def has(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> list[str]:
        """The keys present, for mappings keyed by user-chosen names."""
        return [str(k) for k in self._data]

    def _raw(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self._data and self._data[key] is not None:
            return self._data[key]
        if default is _REQUIRED:
            raise self.fail(key, "is required")
        return default

    # -- typed values -----------------------------------------------------------------------

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        min_value: float | None = None,
        max_value: float | None = None,
        positive: bool = False,
        integer: bool = False,
    ) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {_kind(value)}")
        return self._check_range(key, value, min_value, max_value, positive, integer)

    def quantity(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        min_value: float | None = None,
        positive: bool = False,
    ) -> Any:
        """A Kubernetes quantity ("250m", "1Gi" or a plain number) as a float."""
        value = self._raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        try:
            number = parse_quantity(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        return self._check_range(key, number, min_value, None, positive, False)

    def _check_range(
        self,
        key: str,
        value: float,
        min_value: float | None,
        max_value: float | None,
        positive: bool,
        integer: bool,
    ) -> Any:
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        if integer and value != int(value):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value!r}")
        if min_value is not None and value < min_value:
            raise self.fail(key, f"must be >= {min_value:g}, got {value!r}")
        if max_value is not None and value > max_value:
            raise self.fail(key, f"must be <= {max_value:g}, got {value!r}")
        return int(value) if integer else value

    def string(self, key: str, default: Any = _REQUIRED, *, choices: Sequence[str] | None = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_kind(value)}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def mapping(self, key: str, *, required: bool = False) -> "Reader":
        """The nested mapping at `key` (an empty one when absent and not required)."""
        value = self._raw(key, _REQUIRED if required else {})
        return Reader(value, self.source, self._child(key))

    def optional_mapping(self, key: str) -> "Reader | None":
        value = self._raw(key, None)
        return None if value is None else Reader(value, self.source, self._child(key))

    def mappings(self, key: str, *, required: bool = False, non_empty: bool = False) -> list["Reader"]:
        """The list of mappings at `key`, each with its index in the path."""
        value = self._raw(key, _REQUIRED if required else [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_kind(value)}")
        if non_empty and not value:
            raise self.fail(key, "must not be empty")
        return [Reader(item, self.source, f"{self._child(key)}[{i}]") for i, item in enumerate(value)]

    def pair(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        integer: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> Any:
        """A ``[min, max]`` pair of quantities (or of whole numbers) with min <= max.

        Quantities must be positive unless `min_value` is given.
        """
        raw = self._raw(key, default)
        if raw is default and default is not _REQUIRED:
            return raw
        if not isinstance(raw, list) or len(raw) != 2:
            raise self.fail(key, f"expected [min, max], got {_kind(raw)}")
        items = Reader({"min": raw[0], "max": raw[1]}, self.source, self._child(key))
        if integer:
            low, high = items.number("min", integer=True), items.number("max", integer=True)
        else:
            positive = min_value is None
            low = items.quantity("min", positive=positive, min_value=min_value)
            high = items.quantity("max", positive=positive, min_value=min_value)
        if max_value is not None and high > max_value:
            raise self.fail(key, f"max must be <= {max_value:g}, got {raw[1]!r}")
        if low > high:
            raise self.fail(key, f"min > max ({raw[0]} > {raw[1]})")
        return low, high

    def int_list(self, key: str, default: Any = _REQUIRED, *, min_value: int = 1, max_value: int = 2**31) -> Any:
        """A non-empty list of whole numbers within [min_value, max_value]."""
        raw = self._raw(key, default)
        if raw is default and default is not _REQUIRED:
            return raw
        valid = isinstance(raw, list) and raw and all(
            isinstance(v, int) and not isinstance(v, bool) and min_value <= v <= max_value for v in raw
        )
        if not valid:
            raise self.fail(key, f"expected a list of whole numbers in [{min_value}, {max_value}], got {_kind(raw)}")
        return tuple(raw)

    def strings(self, key: str, default: Any = _REQUIRED) -> Any:
        """A non-empty list of strings."""
        raw = self._raw(key, default)
        if raw is default and default is not _REQUIRED:
            return raw
        if not (isinstance(raw, list) and raw and all(isinstance(v, str) and v for v in raw)):
            raise self.fail(key, f"expected a non-empty list of non-empty strings, got {_kind(raw)}")
        return tuple(raw)

    def _child(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def done(self) -> None:
        """Refuse keys nobody read: they are typos or settings this version does not have."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            allowed = ", ".join(sorted(self._read)) or "none"
            raise self.fail(unknown[0], f"unknown key (allowed here: {allowed})")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
