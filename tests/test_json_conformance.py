"""JSONTestSuite (nst/JSONTestSuite, MIT, copied with its LICENSE into
``tests/assets/json-test-suite/``) against the strict loader and the manifest loader.

* every ``n_*`` file (must be rejected) is rejected with the project's own error, and
  fed to the CLI as a manifest it gives exit 2 and one line;
* every ``i_*`` file (implementation-defined) is accepted or rejected cleanly;
* every ``y_*`` file (valid JSON) parses, unless it breaks one of the loader's
  documented stricter rules (``manifest/jsonio.py``: duplicate keys, NaN/Infinity,
  integers over 40 digits, numbers overflowing a double, invalid UTF-8, a BOM, nesting
  over 64, the size cap). Which rule a file breaks is decided here independently, with
  the standard library, not by the loader under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest import jsonio
from manifest.document import Manifest
from manifest.errors import ManifestError, ManifestInvalid
from manifest.jsonio import MAX_DEPTH, MAX_INT_DIGITS, JSONError, loads_strict

SUITE = Path(__file__).resolve().parent / "assets" / "json-test-suite"
FILES = sorted((SUITE / "test_parsing").glob("*.json"))


def _names(prefix: str) -> list[str]:
    return [f.name for f in FILES if f.name.startswith(prefix)]


def _data(name: str) -> bytes:
    return (SUITE / "test_parsing" / name).read_bytes()


def test_suite_is_vendored_with_its_licence():
    assert (SUITE / "LICENSE").read_text().startswith("MIT License")
    assert len(_names("y_")) >= 90 and len(_names("n_")) >= 180 and len(_names("i_")) >= 30


# --------------------------------------------------------------------------- the oracle
def stricter_rule_broken(data: bytes) -> str | None:
    """Which documented stricter rule a valid JSON document breaks, judged with the
    standard library's own (lenient) parser; None if it breaks none."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "byte-order mark"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    found: list[str] = []

    def pairs(kv: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in kv}) != len(kv):
            found.append("duplicate key")
        return dict(kv)

    def integer(s: str) -> int:
        if len(s.lstrip("-")) > MAX_INT_DIGITS:
            found.append("integer of")
        return int(s)

    def number(s: str) -> float:
        if math.isinf(float(s)):
            found.append("overflows a double")
        return float(s)

    def constant(s: str) -> float:
        found.append("is not valid JSON")
        return float(s)

    value = json.loads(text, object_pairs_hook=pairs, parse_int=integer, parse_float=number, parse_constant=constant)
    if found:
        return found[0]
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            depth = max(depth, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return "nesting" if depth > MAX_DEPTH else None


# --------------------------------------------------------------------------- y_: must parse
@pytest.mark.parametrize("name", _names("y_"))
def test_valid_json_parses_unless_a_stricter_rule_applies(name: str) -> None:
    data = _data(name)
    rule = stricter_rule_broken(data)
    if rule is None:
        assert loads_strict(data) == json.loads(data.decode("utf-8"))
    else:
        with pytest.raises(JSONError, match=rule):
            loads_strict(data)


def test_the_stricter_rules_do_bite_on_valid_json():
    """The y_ exceptions are exactly the duplicate-key files: the oracle is not vacuous."""
    broken = {n: stricter_rule_broken(_data(n)) for n in _names("y_")}
    assert {n for n, r in broken.items() if r} == {"y_object_duplicated_key.json", "y_object_duplicated_key_and_value.json"}


# --------------------------------------------------------------------------- n_: must be rejected
@pytest.mark.parametrize("name", _names("n_"))
def test_invalid_json_is_rejected_cleanly(name: str) -> None:
    data = _data(name)
    with pytest.raises(JSONError) as e:
        loads_strict(data)
    assert "\n" not in str(e.value)
    with pytest.raises(ManifestInvalid):
        Manifest.loads(data)


# --------------------------------------------------------------------------- i_: either, cleanly
@pytest.mark.parametrize("name", _names("i_"))
def test_implementation_defined_is_accepted_or_rejected_cleanly(name: str) -> None:
    data = _data(name)
    try:
        loads_strict(data)
    except JSONError as e:
        assert "\n" not in str(e)
    with pytest.raises(ManifestError):  # none of them is a manifest
        Manifest.loads(data)


# --------------------------------------------------------------------------- through the CLI
CLI_SAMPLE = [
    *_names("n_")[::20],
    "n_structure_100000_opening_arrays.json",
    "n_structure_open_array_object.json",
    "n_string_invalid_utf8_after_escape.json",
    "n_structure_incomplete_UTF8_BOM.json",
    "i_structure_500_nested_arrays.json",
    "i_string_UTF-16LE_with_BOM.json",
    "i_number_huge_exp.json",
    "i_string_lone_second_surrogate.json",
    "y_object_duplicated_key.json",
]


def test_cli_sample_covers_each_kind():
    assert len(set(CLI_SAMPLE)) >= 15
    assert {n[:2] for n in CLI_SAMPLE} == {"n_", "i_", "y_"}


@pytest.mark.parametrize("name", sorted(set(CLI_SAMPLE)))
def test_cli_rejects_suite_file_as_manifest_in_one_line(name: str, cli, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    r = cli("verify", "--no-signature", tmp_path / "model", "-m", SUITE / "test_parsing" / name, timeout=60)
    assert r.code == 2, (r.code, r.out, r.err)
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[manifest-invalid]: "), r.err
    assert "Traceback" not in r.err


# --------------------------------------------------------------------------- duplicate keys
# Without a backslash in the text, the loader parses without a per-object hook and counts
# members (colons outside strings against the members of the parsed objects); only a
# difference, or an error, sends it to the hook. It must raise exactly when the hook-based
# parse raises, with the same message.
def hook_parse(data: bytes) -> Any:
    """The loader with the duplicate-key hook on every object (how it parsed every document)."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=jsonio._pairs, parse_constant=jsonio._constant,
                           parse_int=jsonio._int, parse_float=jsonio._float)
    except JSONError:
        raise
    except RecursionError:
        raise JSONError("nesting too deep") from None
    except (ValueError, TypeError) as e:
        raise JSONError(str(e).splitlines()[0]) from None
    jsonio._check_depth(data, MAX_DEPTH)
    return value


def outcome(parse: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(data)
    except JSONError as e:
        return "error", str(e)


def json_texts(escaped: bool, bad: bool, colon: str) -> st.SearchStrategy[str]:
    """JSON texts written by hand, so objects can repeat keys: short keys from a small
    alphabet (repeats are frequent, identical members too) holding ``:`` and brackets, and
    ``"`` or ``\\`` escapes when ``escaped``; ``bad`` adds leaves the loader refuses."""
    keys = st.text(st.sampled_from('ab:{}[], é"\\' if escaped else "ab:{}[], é"), max_size=3).map(
        lambda k: json.dumps(k, ensure_ascii=False))
    leaves = ["1", "-2", '"x"', '"a:b"', '":"', '""', "null", "true", "[]", "{}", "2.5", '"{:}"']
    if escaped:
        leaves += ['"\\":"', '"\\\\"', '"\\u003a"']
    if bad:
        leaves += ["NaN", "1e999", "1" * 41]
    return st.recursive(
        st.sampled_from(leaves),
        lambda c: st.lists(c, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(keys, c), max_size=4).map(lambda kv: "{" + ",".join(k + colon + v for k, v in kv) + "}"),
        max_leaves=30)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(st.booleans(), st.booleans(), st.sampled_from([":", ": ", " :\n\t"])).flatmap(lambda a: json_texts(*a)),
       st.sampled_from(["", " ", " x", "]", "{}"]))
def test_duplicate_keys_are_refused_exactly_as_the_per_object_hook_refuses_them(text: str, tail: str) -> None:
    data = (text + tail).encode("utf-8")
    assert outcome(loads_strict, data) == outcome(hook_parse, data)


@pytest.mark.parametrize(("data", "message"), [
    (b'{"a":1,"a":1}', "duplicate key 'a'"),
    (b'[{"a:":1},{"b":{"c":[{"c":2, "c" : 2}]}}]', "duplicate key 'c'"),
    (b'{"a":1,"b":{"a":1,"b":{"x:":1,"x:":2}}}', "duplicate key 'x:'"),
    (b'[{"a":1,"a":2}, NaN]', "duplicate key 'a'"),  # the first broken rule in parse order is named
    (b'{"a":1,"a":2,"b":NaN}', "NaN is not valid JSON"),
    (b'{"a":1,"a":2} x', "duplicate key 'a'"),
    (b'{"q\\"":1,"q\\"":2}', "duplicate key 'q\"'"),
    (b'{"a":1} x', "Extra data: line 1 column 9 (char 8)"),
])
def test_the_first_broken_rule_is_named(data: bytes, message: str) -> None:
    with pytest.raises(JSONError) as e:
        loads_strict(data)
    assert str(e.value) == message


def test_a_document_without_a_backslash_or_a_repeated_key_needs_no_per_object_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pairs: Any) -> Any:
        raise AssertionError("the per-object hook was called")

    monkeypatch.setattr(jsonio, "_pairs", refuse)
    for data in (b'{"a": {"b:": ":", "c": {"{": "}", "[": [1, [[], "[{"]], "": {"d": null}}}, "e": ":x", "f": [[[2]]]}',
                 b'[1, [[], ["{}"]], "a:b"]', b'[{"a": 1}, {}, [{"b": [{"c": {"d": 2}}]}]]', b'{"a": [[{"b": 1, "c": [{}]}]]}'):
        assert loads_strict(data) == json.loads(data)
    for hooked in (b'{"a": {"b": 1, "b": 2}}', b'[{"a": 1}, [{"b": 1, "b": 1}]]', b'{"a\\n": 1}'):
        with pytest.raises(AssertionError):
            loads_strict(hooked)
