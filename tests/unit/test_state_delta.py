"""State deltas round-trip exactly and stay small when little changes."""

from __future__ import annotations

import json

import pytest

from runs.engine.delta import apply, diff
from runs.engine.hashing import json_hash

CASES = [
    ({"a": 1}, {"a": 2}),
    ({"a": 1, "b": 2}, {"a": 1}),
    ({"a": 1}, {"a": 1, "c": {"d": [1, 2]}}),
    ({"log": [1, 2]}, {"log": [1, 2, 3, 4]}),
    ({"log": [1, 2, 3]}, {"log": [1, 3]}),
    ({"n": {"deep": {"x": 1, "y": [1]}}}, {"n": {"deep": {"x": 1, "y": [1, {"z": None}]}}}),
    ({"a": 1}, {"a": 1.0}),
    ({"a": True}, {"a": 1}),
    ([1, 2], [1, 2, 3]),
    ([1, 2], {"now": "a dict"}),
    (None, {"a": 1}),
    ({"a": "x"}, {"a": "x"}),
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_apply_of_diff_gives_back_the_new_state_exactly(old: object, new: object) -> None:
    ops = diff(old, new)
    rebuilt = apply(old, ops)
    assert json_hash(rebuilt) == json_hash(new)
    assert json.dumps(rebuilt, sort_keys=True) == json.dumps(new, sort_keys=True)


def test_apply_does_not_mutate_its_input_unless_asked() -> None:
    old = {"log": [1], "x": {"y": 1}}
    apply(old, diff(old, {"log": [1, 2], "x": {"y": 2}}))
    assert old == {"log": [1], "x": {"y": 1}}


def test_a_small_change_to_a_large_state_gives_a_small_delta() -> None:
    big = {"docs": ["x" * 1000 for _ in range(100)], "counter": 0, "log": []}
    changed = {**big, "counter": 1, "log": ["step 1 did a small thing"]}
    ops = diff(big, changed)
    assert len(json.dumps(ops)) < 200
    assert len(json.dumps(big)) > 100_000
