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
