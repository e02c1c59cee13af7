"""``parse_json``: the one reader of request bodies refuses what the store cannot keep.

Each refusal names the JSON path of the value, so a client knows what to fix.
"""

from __future__ import annotations

import pytest

from statefleet.api.jsonbody import MAX_DEPTH, InvalidJson, parse_json


def refused(raw: bytes) -> InvalidJson:
    with pytest.raises(InvalidJson) as caught:
        parse_json(raw)
    assert caught.value.status_code == 400
    return caught.value


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"spec": {"context": {"x": 18446744073709551616}}}', "spec.context.x"),
        (b'{"payload": {"n": -9223372036854775809}}', "payload.n"),
        (b'{"inputs": [{}, {"big": 1' + b"0" * 40 + b"}]}", "inputs[1].big"),
        (b'{"payload": {"x": NaN}}', "payload.x"),
        (b'{"output": [1, Infinity]}', "output[1]"),
        (b'{"output": {"a b": -Infinity}}', 'output["a b"]'),
        (b'{"input": {"f": 1e400}}', "input.f"),
        (b'{"type": "\\ud800"}', "type"),
    ],
)
def test_values_the_store_cannot_keep_are_refused_with_their_path(raw: bytes, path: str) -> None:
    error = refused(raw)
    assert error.path == path
    assert str(error.detail).startswith(f"{path}: ")


def test_the_64_bit_edges_and_long_floats_are_kept() -> None:
    raw = b'{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1' + b"0" * 30 + b".5}"
    assert parse_json(raw) == {"a": 2**64 - 1, "b": -(2**63), "c": 1e30}
    assert parse_json(b'{"id": "12345678901234567890123"}') == {"id": "12345678901234567890123"}


def test_nesting_is_bounded() -> None:
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    error = refused(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert error.path.startswith("[0]")
    assert "deeper" in refused(b"[" * 5000 + b"]" * 5000).message


def test_text_that_is_not_json_is_refused_at_the_root() -> None:
    for raw in (b"{", b"\xff\xfe", b"{'a': 1}"):
        assert refused(raw).path == ""


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[{" * (MAX_DEPTH * 2) + '\\"'
    assert parse_json(b'{"note": "%s"}' % text.encode()) == {"note": text.replace("\\", "")}


def test_a_wide_batch_is_not_deep() -> None:
    body = b'{"inputs": [%s]}' % b", ".join(b'{"n": [%d, {"k": []}]}' % i for i in range(5000))
    assert len(parse_json(body)["inputs"]) == 5000
