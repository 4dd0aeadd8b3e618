"""The three Kubernetes patch semantics: RFC 7386, RFC 6902 and strategic merge."""

from __future__ import annotations

import copy

import pytest

from rlscale.emulator.patch import PatchError, apply_patch, json_merge_patch, json_patch, strategic_merge_patch


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386, appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386(target, patch, expected) -> None:
    before = copy.deepcopy(target)
    assert json_merge_patch(target, patch) == expected
    assert target == before


DOC = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8, "baz": {"qux": "hello"}}


@pytest.mark.parametrize(
    ("target", "operations", "expected"),
    [  # RFC 6902, appendix A
        ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
        ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
        ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
        ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
        ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo", "foo": "bar"}),
        ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
         [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
         {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
         {"foo": ["all", "cows", "eat", "grass"]}),
        ({"baz": "qux", "foo": ["a", 2, "c"]}, [{"op": "test", "path": "/baz", "value": "qux"},
                                                 {"op": "test", "path": "/foo/1", "value": 2}], {"baz": "qux", "foo": ["a", 2, "c"]}),
        ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}], {"foo": "bar", "child": {"grandchild": {}}}),
        ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}], {"foo": ["bar", ["abc", "def"]]}),
        ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
        (DOC, [{"op": "copy", "from": "/a~1b", "path": "/m~0n"}], {**DOC, "m~n": 1}),
        ({"foo": "bar"}, [{"op": "add", "path": "", "value": {"x": 1}}], {"x": 1}),
    ],
)
def test_json_patch_rfc6902(target, operations, expected) -> None:
    before = copy.deepcopy(target)
    assert json_patch(target, operations) == expected
    assert target == before


@pytest.mark.parametrize(
    ("target", "operations", "message"),
    [
        ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "is not equal to tested value bar"),
        ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "member 'baz' not found"),
        ({"foo": "bar"}, [{"op": "remove", "path": "/nope"}], "non-existent object 'nope'"),
        ({"foo": [1]}, [{"op": "add", "path": "/foo/5", "value": 1}], "outside of list"),
        ({"foo": [1]}, [{"op": "add", "path": "/foo/01", "value": 1}], "'01' is not a valid sequence index"),
        ({"foo": 1}, [{"op": "frobnicate", "path": "/foo"}], "Unknown operation 'frobnicate'"),
        ({"foo": 1}, [{"op": "add", "path": "foo", "value": 1}], "must start with /"),
        ({"foo": 1}, [{"op": "replace", "path": "/foo"}], "does not contain a 'value'"),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}], "into their own children"),
        ({"a": 1}, {"op": "add"}, "list of operations"),
    ],
    ids=["failed-test", "missing-parent", "remove-missing", "index-out-of-range", "leading-zero", "unknown-op",
         "pointer-without-slash", "missing-value", "move-into-child", "not-a-list"],
)
def test_json_patch_errors(target, operations, message) -> None:
    with pytest.raises(PatchError, match=message):
        json_patch(target, operations)


POD_SPEC = {
    "containers": [
        {"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ],
    "tolerations": [{"key": "a", "operator": "Exists"}],
    "finalizers": ["x", "y"],
}


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        ({"containers": [{"name": "app", "resources": {"requests": {"cpu": "250m"}}}]},
         lambda r: r["containers"][0]["resources"]["requests"] == {"cpu": "250m", "memory": "64Mi"}
         and r["containers"][0]["image"] == "app:1" and r["containers"][1] == POD_SPEC["containers"][1]),
        ({"containers": [{"name": "new", "image": "n:1"}]},
         lambda r: [c["name"] for c in r["containers"]] == ["app", "sidecar", "new"]),
        ({"containers": [{"name": "sidecar", "$patch": "delete"}]},
         lambda r: [c["name"] for c in r["containers"]] == ["app"]),
        ({"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]},
         lambda r: r["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]),
        ({"tolerations": [{"key": "b", "operator": "Exists"}]},
         lambda r: r["tolerations"] == [{"key": "b", "operator": "Exists"}]),
        ({"finalizers": ["y", "z"]}, lambda r: r["finalizers"] == ["x", "y", "z"]),
        ({"$deleteFromPrimitiveList/finalizers": ["x"]}, lambda r: r["finalizers"] == ["y"]),
        ({"containers": [{"name": "app", "resources": {"$patch": "replace", "limits": {"cpu": "1"}}}]},
         lambda r: r["containers"][0]["resources"] == {"limits": {"cpu": "1"}}),
        ({"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]},
         lambda r: r["containers"] == [{"name": "only", "image": "o:1"}]),
        ({"tolerations": None}, lambda r: "tolerations" not in r),
        ({"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}], "containers": [{"name": "app", "image": "app:2"}]},
         lambda r: [c["name"] for c in r["containers"]] == ["sidecar", "app"] and r["containers"][1]["image"] == "app:2"),
    ],
    ids=["one-container-resources", "add-container", "delete-container", "env-by-name", "no-key-list-replaced",
         "finalizers-union", "delete-from-primitive-list", "replace-a-map", "replace-a-list", "null-deletes", "element-order"],
)
def test_strategic_merge(patch, check) -> None:
    before = copy.deepcopy(POD_SPEC)
    result = strategic_merge_patch(POD_SPEC, patch)
    assert check(result), result
    assert POD_SPEC == before


def test_hpa_metrics_and_conditions() -> None:
    hpa = {"spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]},
           "status": {"conditions": [{"type": "AbleToScale", "status": "True"}, {"type": "ScalingActive", "status": "True"}]}}
    result = strategic_merge_patch(hpa, {"spec": {"metrics": [{"type": "Pods"}]},
                                         "status": {"conditions": [{"type": "ScalingActive", "status": "False"}]}})
    assert result["spec"]["metrics"] == [{"type": "Pods"}]  # no merge key: replaced wholesale
    assert result["status"]["conditions"] == [{"type": "AbleToScale", "status": "True"}, {"type": "ScalingActive", "status": "False"}]


def test_strategic_merge_needs_the_merge_key() -> None:
    with pytest.raises(PatchError, match="merge key 'name'"):
        strategic_merge_patch(POD_SPEC, {"containers": [{"image": "x"}]})


def test_dispatch_by_content_type() -> None:
    assert apply_patch({"a": 1}, {"a": 2}, "application/merge-patch+json") == {"a": 2}
    assert apply_patch({"a": 1}, [{"op": "remove", "path": "/a"}], "application/json-patch+json") == {}
    with pytest.raises(PatchError, match="server-side apply"):
        apply_patch({}, {}, "application/apply-patch+yaml")
    with pytest.raises(PatchError, match="unsupported"):
        apply_patch({}, {}, "text/plain")
