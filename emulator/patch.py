"""The three PATCH semantics of the Kubernetes API, as pure functions over JSON values.

- `json_merge_patch`: RFC 7386 (application/merge-patch+json).
- `strategic_merge_patch`: application/strategic-merge-patch+json, for the kinds the emulator
  serves. Lists with a patch merge key merge item by item; `$patch` directives delete or
  replace; `$deleteFromPrimitiveList/<f>` and `$setElementOrder/<f>` are honoured.
  Simplification: merge keys are looked up by field name alone (upstream keys them by type),
  which is unambiguous for Deployments, Pods, HPAs, Leases and Events.
- `json_patch`: RFC 6902 (application/json-patch+json), by the `jsonpatch` library.

Nothing here mutates its inputs.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

# Patch merge keys of list fields (the `patchMergeKey` struct tags of k8s.io/api core/v1, apps/v1).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS = {"finalizers"}  # lists of strings merged as sets (patchStrategy "merge" without a key)
DELETE_FROM = "$deleteFromPrimitiveList/"
SET_ORDER = "$setElementOrder/"


class PatchError(ValueError):
    """A patch that cannot be applied; the message says what and where."""


def apply_patch(target: Any, body: Any, content_type: str) -> Any:
    if content_type == "application/json-patch+json":
        return json_patch(target, body)
    if content_type == "application/merge-patch+json":
        return json_merge_patch(target, body)
    if content_type == "application/strategic-merge-patch+json":
        return strategic_merge_patch(target, body)
    if content_type == "application/apply-patch+yaml":
        raise PatchError("server-side apply is not supported")
    raise PatchError(f"unsupported patch content type {content_type!r}")


# -- RFC 7386 --------------------------------------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# -- strategic merge -------------------------------------------------------------------------------


def strategic_merge_patch(target: Any, patch: Any, path: str = "") -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "delete":
        return None
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if "$patch" in patch:
        raise PatchError(f"{path or '<root>'}: unknown $patch directive {patch['$patch']!r}")
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders = {k[len(SET_ORDER):]: v for k, v in patch.items() if k.startswith(SET_ORDER)}
    for key, value in patch.items():
        where = f"{path}.{key}" if path else key
        if key.startswith(SET_ORDER):
            continue
        if key.startswith(DELETE_FROM):
            field = key[len(DELETE_FROM):]
            if not isinstance(value, list):
                raise PatchError(f"{where}: expected a list")
            result[field] = [item for item in result.get(field) or [] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value, where)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, where)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if field in result and isinstance(result[field], list):
            result[field] = _reorder(field, result[field], order)
    return result


def _merge_list(field: str, current: Any, patch: list[Any], where: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    existing = list(current) if isinstance(current, list) else []
    if field in SET_LISTS:
        return copy.deepcopy(existing) + [copy.deepcopy(item) for item in patch if item not in existing]
    key = MERGE_KEYS.get(field)
    if key is None:
        return copy.deepcopy(patch)  # no merge key: the list is replaced
    merged = copy.deepcopy(existing)
    for i, item in enumerate(patch):
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"{where}[{i}]: items of {field} need their merge key {key!r}")
        index = next((j for j, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(strategic_merge_patch({}, item, f"{where}[{i}]"))
        else:
            merged[index] = strategic_merge_patch(merged[index], item, f"{where}[{i}]")
    return merged


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [identity(o) for o in order]
    ranked = sorted(range(len(items)), key=lambda i: (wanted.index(identity(items[i])) if identity(items[i]) in wanted else len(wanted), i))
    return [items[i] for i in ranked]


# -- RFC 6902 --------------------------------------------------------------------------------------


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 by the `jsonpatch` library (RFC 6901 pointers by `jsonpointer`); any failure is a `PatchError`
    naming the operation."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(operations).apply(target)  # a copy: the target is left as it is
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError, IndexError) as exc:
        raise PatchError(f"JSON patch: {exc}") from None
