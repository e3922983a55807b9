"""Canonical JSON and SHA-256: the identity of states, inputs and outputs."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from typing import Any

import pytest

import tests.graphs_engine  # noqa: F401 - registers the e_ nodes
from runs.engine.errors import NotJSONError
from runs.engine.hashing import canonical_json, json_hash, normalize, sha256_hex


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, 2], "c": {"z": None, "y": True}}) == (
        '{"a":[1,2],"b":1,"c":{"y":true,"z":null}}'
    )
    assert canonical_json({"name": "café ☕"}) == '{"name":"café ☕"}'


def test_key_order_does_not_change_the_hash() -> None:
    one = {"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}}
    two = {"b": {"y": "z", "x": [1, {"q": 2, "p": 1}]}, "a": 1}
    assert list(one) != list(two)
    assert canonical_json(one) == canonical_json(two)
    assert json_hash(one) == json_hash(two)


def test_the_hash_is_sha256_of_the_canonical_text() -> None:
    value = {"b": 2, "a": "é"}
    expected = hashlib.sha256('{"a":"é","b":2}'.encode()).hexdigest()
    assert json_hash(value) == expected
    assert sha256_hex('{"a":"é","b":2}') == expected
    assert sha256_hex(b"{}") == hashlib.sha256(b"{}").hexdigest()
    assert len(expected) == 64


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"a": 1}, {"a": 2}),
        ({"a": 1}, {"a": "1"}),
        ({"a": 1}, {"a": True}),
        ({"a": None}, {}),
        ([1, 2], [2, 1]),
        ({"a": [1]}, {"a": 1}),
        ("x", "x "),
    ],
)
def test_different_json_values_hash_differently(left: Any, right: Any) -> None:
    assert json_hash(left) != json_hash(right)


def test_tuples_and_lists_are_the_same_json() -> None:
    assert canonical_json((1, 2, 3)) == canonical_json([1, 2, 3]) == "[1,2,3]"
    assert json_hash({"pair": (1, "a")}) == json_hash({"pair": [1, "a"]})
    assert json_hash([(1, 2), (3, (4,))]) == json_hash([[1, 2], [3, [4]]])


def test_normalize_gives_back_what_json_would_with_its_hash_and_byte_size() -> None:
    value, digest, size = normalize({"t": (1, (2, 3)), "s": "é"})
    assert value == {"t": [1, [2, 3]], "s": "é"}
    assert isinstance(value["t"], list) and isinstance(value["t"][1], list)
    text = '{"s":"é","t":[1,[2,3]]}'
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    assert size == len(text.encode()) == len(text) + 1  # "é" is two bytes in UTF-8


def test_normalize_returns_a_copy() -> None:
    original = {"items": [1, 2]}
    value, _, _ = normalize(original)
    value["items"].append(3)
    assert original == {"items": [1, 2]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_with_their_path(bad: float) -> None:
    with pytest.raises(NotJSONError) as info:
        canonical_json({"metrics": [1.0, {"score": bad}]})
    message = str(info.value)
    assert "$.metrics[1].score" in message
    assert repr(bad) in message
    assert "JSON cannot hold" in message
    with pytest.raises(NotJSONError):
        json_hash(bad)
    with pytest.raises(NotJSONError):
        normalize({"x": bad})


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"when": dt.datetime(2026, 1, 1)}, "$.when", "datetime"),
        ({"a": [1, {"b": {1, 2}}]}, "$.a[1].b", "set"),
        ([0, 1, b"raw"], "$[2]", "bytes"),
        ({"price": decimal.Decimal("1.5")}, "$.price", "Decimal"),
        ({"deep": {"er": {"obj": object()}}}, "$.deep.er.obj", "object"),
        (dt.date(2026, 1, 1), "$", "date"),
    ],
)
def test_a_non_json_value_is_named_by_path_and_type(value: Any, path: str, type_name: str) -> None:
    with pytest.raises(NotJSONError) as info:
        canonical_json(value, what="the state")
    message = str(info.value)
    assert message.startswith("the state is not JSON: ")
    assert f"{path} is a {type_name} " in message
    assert "which is not JSON" in message


def test_a_non_string_key_among_string_keys_is_named() -> None:
    with pytest.raises(NotJSONError) as info:
        canonical_json({"outer": {"b": 1, 2: "two"}})
    assert "$.outer has a key 2 of type int" in str(info.value)


def test_a_circular_value_is_refused_as_not_json() -> None:
    """json.dumps reports a circular reference; the path finder must not recurse forever."""
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    with pytest.raises(NotJSONError) as info:
        canonical_json({"state": loop}, what="the state")
    assert "the state is not JSON" in str(info.value)


def test_canonical_json_round_trips_through_the_standard_parser() -> None:
    value = {"z": [1, 2.5, -3, "x", None, False], "a": {"nested": {"k": "v"}}, "u": "ü\n\t\"'"}
    assert json.loads(canonical_json(value)) == value


def test_a_lone_surrogate_is_refused_with_a_clear_error() -> None:
    with pytest.raises(NotJSONError, match="the state holds text that is not valid Unicode"):
        normalize({"note": "\ud800"}, what="the state")
