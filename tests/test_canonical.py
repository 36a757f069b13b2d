"""Canonical JSON: the C-encoder fast path writes exactly the bytes ``rfc8785`` writes,
and the pretty printer keeps the layout of the manifest.

* on generated documents (any JSON value, keys and strings drawn with control
  characters, U+2028/U+2029, DEL, characters outside the BMP and lone surrogates;
  integers on both sides of 2**53; floats), :func:`canonical_bytes` equals
  ``rfc8785.dumps`` or both refuse;
* the fast path is taken for every document without a float, a big integer or a
  non-BMP key (so the equality above is not the fallback comparing with itself), and
  each known difference between the two encoders sends a document to the fallback;
* pretty text parses back to the same document, and is laid out as the reference
  printer below lays it out (the layout every manifest so far was written in).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest import jsonio
from manifest.document import Manifest
from manifest.jsonio import JSONError, _plain, canonical_bytes, dumps_pretty, fast_canonical, loads_strict

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EDGE_CHARS = ["\x00", "\x07", "\x08", "\x0c", "\x1f", "\x7f", '"', "\\", "/", "\u2028", "\u2029", "\u00e9", "\ue000", "\uffff",
              "\U00010000", "\U0001f600", "\U0010ffff"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
BIG = [2**53 - 1, 2**53, -(2**53 - 1), -(2**53), 2**63, -(2**64)]


def chars(surrogates: bool) -> st.SearchStrategy[str]:
    pool = [st.characters(max_codepoint=0x7F), st.characters(blacklist_categories=("Cs",)), st.sampled_from(EDGE_CHARS)]
    if surrogates:
        pool.append(st.sampled_from(SURROGATES))
    return st.one_of(*pool)


def documents(*, floats: bool, surrogates: bool, big: bool) -> st.SearchStrategy[Any]:
    text = st.text(chars(surrogates), max_size=6)
    ints = st.integers(-(2**53 - 1), 2**53 - 1) | (st.sampled_from(BIG) if big else st.nothing())
    scalars = st.none() | st.booleans() | ints | text
    if floats:
        scalars = scalars | st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(text, c, max_size=5), max_leaves=30)


def rfc(obj: Any) -> bytes | None:
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        return None


def ours(obj: Any) -> bytes | None:
    try:
        return canonical_bytes(obj)
    except JSONError:
        return None


@SETTINGS
@given(documents(floats=True, surrogates=True, big=True))
def test_canonical_bytes_equal_rfc8785_on_any_document(doc: Any) -> None:
    assert ours(doc) == rfc(doc)
    fast = fast_canonical(doc)
    assert fast is None or fast == rfc(doc)


def _non_bmp_key(doc: Any) -> bool:
    stack = [doc]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if any(max(map(ord, k), default=0) > 0xFFFF for k in o):
                return True
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


@SETTINGS
@given(documents(floats=False, surrogates=False, big=False))
def test_fast_path_writes_every_document_without_floats_or_non_bmp_keys(doc: Any) -> None:
    fast = fast_canonical(doc)
    if _non_bmp_key(doc):
        assert fast is None or fast == rfc8785.dumps(doc)
    else:
        assert fast is not None
        assert fast == rfc8785.dumps(doc)


@pytest.mark.parametrize("doc", [
    {"\U0001f600": 1, "\ue000": 2},  # UTF-16 puts the surrogate pair first, code points put U+E000 first
    {"a": {"\U00010000x": 1, "\uffff": 2}},
    [1.0], {"x": 1e16}, [1e-7], [0.1], [-0.0], [5e-324], [1.7976931348623157e308],  # ECMAScript number forms
    [2**53], [-(2**53)], {"n": 2**63},  # beyond the integers a double holds: rfc8785 refuses
    {1: "a"}, {True: 1}, {None: 1}, {"a": {2.5: 1}},  # keys that are not strings: rfc8785 refuses, json would convert
    ["\ud800"], {"\udfff": 1}, {"k": ["a\udc00b"]},  # lone surrogates: refused by both
    [float("nan")], [float("inf")],
    [b"bytes"], {"s": {1, 2}},
])
def test_each_difference_goes_to_the_fallback(doc: Any) -> None:
    assert fast_canonical(doc) is None
    assert ours(doc) == rfc(doc)


@pytest.mark.parametrize("doc", [
    {"s": "".join(EDGE_CHARS[:13])},  # every escape RFC 8785 and the C encoder share, and the characters neither escapes
    {"".join(EDGE_CHARS[:13]): [True, False, None, 0, -1, 2**53 - 1, -(2**53 - 1)]},
    {"b": 1, "a": 2, "\u00e9": 3, "A": 4, "\uffff": 5, "": 6},
    ("tuple", ["list"], {}, [], ""),
])
def test_fast_path_on_edge_cases_that_need_no_fallback(doc: Any) -> None:
    fast = fast_canonical(doc)
    assert fast is not None
    assert fast == rfc8785.dumps(doc)


def test_a_cyclic_document_is_refused_not_walked_forever() -> None:
    doc: list[Any] = []
    doc.append(doc)
    assert fast_canonical(doc) is None


def reference_plain(o: Any) -> bool:
    """What ``_plain`` decides, written the slow and obvious way (recursively)."""
    t = type(o)
    if t is dict:
        return (all(type(k) is str and all(ord(c) <= 0xFFFF for c in k) for k in o)
                and all(reference_plain(v) for v in o.values()))
    if t is list or t is tuple:
        return all(reference_plain(v) for v in o)
    if t is int:
        return -(2**53 - 1) <= o <= 2**53 - 1
    return t in (str, bool, type(None))


near_limits = st.integers(2**53 - 3, 2**53 + 3) | st.integers(-(2**53) - 3, -(2**53) + 3) | st.integers(-1000, 1000)
any_keys = st.text(chars(False), max_size=4) | st.integers(-3, 3) | st.booleans() | st.none() | st.floats(allow_nan=False) | st.just(("t",))
plain_candidates = st.recursive(
    st.none() | st.booleans() | near_limits | st.floats() | st.text(chars(False), max_size=4) | st.just(b"x") | st.just({1}),
    lambda c: st.lists(c, max_size=4) | st.lists(c, max_size=4).map(tuple)
    | st.dictionaries(st.text(chars(False), max_size=4), c, max_size=4) | st.dictionaries(any_keys, c, max_size=3),
    max_leaves=40)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_candidates)
def test_the_level_walk_decides_as_the_recursive_one(doc: Any) -> None:
    assert _plain(doc) == reference_plain(doc)
    assert _plain([doc, {"k": doc}]) == reference_plain(doc)  # the same on a level shared with other containers


@pytest.mark.parametrize("doc", [
    {"\U0001f600": 1}, {"a": {"\U00010000x": 1}}, {"a": "\U0001f600"}, [1.0], {"x": [0, 1e16]}, [2**53 - 1, -(2**53 - 1)], [2**53],
    [-(2**53)], {"n": [True, 2**63]}, [True, False, 1, 0], {1: "a"}, {True: 1}, {None: 1}, {"a": {2.5: 1}}, [b"bytes"], {"s": {1, 2}},
    ("tuple", ["list"], {}, [], ""), [[[[[[]]]]]], [[[[[[1.5]]]]]], {"a": [{"b": [{"c": 2**60}]}]}, [{}, [], ()], 7, 2**53, 1.5, None, "s",
    type("D", (dict,), {})(), [type("L", (list,), {})()], [type("I", (int,), {})(1)], {"": {"": {"": None}}},
    {"files": {f"f{i}": {"sha256": "ab" * 32, "size": i} for i in range(2000)}},
    {"files": {**{f"f{i}": {"sha256": "ab" * 32, "size": i} for i in range(2000)}, "last": {"size": 2**53}}},
])
def test_the_level_walk_on_edge_cases(doc: Any) -> None:
    assert _plain(doc) == reference_plain(doc)


# ----------------------------------------------------------------------------- pretty
def reference_pretty(obj: Any, width: int = 160) -> str:
    """The manifest layout, written the slow and obvious way."""

    def compact(o: Any) -> str:
        return json.dumps(o, sort_keys=True, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)

    def render(o: Any, indent: int) -> str:
        if not isinstance(o, (dict, list)) or not o:
            return compact(o)
        flat = compact(o)
        if len(flat) + indent <= width and indent > 0:
            return flat
        pad = " " * (indent + 2)
        if isinstance(o, dict):
            items = [f"{pad}{compact(k)}: {render(o[k], indent + 2)}" for k in sorted(o)]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        items = [pad + render(v, indent + 2) for v in o]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"

    return render(obj, 0) + "\n"


wide_text = st.text(chars(False), max_size=40)
pretty_docs = st.recursive(st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False) | wide_text,
                           lambda c: st.lists(c, max_size=6) | st.dictionaries(wide_text, c, max_size=6), max_leaves=60)


@SETTINGS
@given(pretty_docs, st.sampled_from([20, 60, 160]))
def test_pretty_text_round_trips_and_keeps_the_layout(doc: Any, width: int) -> None:
    text = dumps_pretty(doc, width=width)
    assert text == reference_pretty(doc, width)
    assert json.loads(text) == doc
    assert canonical_bytes(loads_strict(text.encode())) == canonical_bytes(doc)


def test_pretty_text_of_a_real_manifest_is_the_reference_layout(minilm_src: Any, tmp_path: Any) -> None:
    from manifest import api
    from manifest.options import Options

    m = api.create(minilm_src, write=False, options=Options(use_cache=False))
    text = m.dumps()
    assert text == reference_pretty(m.to_document())
    assert Manifest.loads(text.encode()).signed_payload() == m.signed_bytes()


@pytest.mark.parametrize("value", ["\udfff", "\ud800", "a\udfffb"])
def test_a_lone_surrogate_never_reaches_a_written_manifest(value: str) -> None:
    """A lone surrogate is written into the text as it is (the standard encoder's
    ``ensure_ascii=False``) and then fails to encode as UTF-8: it never reaches a file."""
    with pytest.raises((JSONError, UnicodeEncodeError)):
        dumps_pretty({"a": value, "b": [value]}).encode("utf-8")


@SETTINGS
@given(documents(floats=True, surrogates=True, big=True), st.booleans())
def test_a_document_the_parser_calls_plain_needs_no_walk(doc: Any, ascii_only: bool) -> None:
    """``loads_strict`` says a document is plain only when the type walk would agree, so
    ``canonical_bytes(..., plain=True)`` on it still equals rfc8785 (or both refuse)."""
    try:
        data = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be written as UTF-8 text
        data = json.dumps(doc, ensure_ascii=True).encode("utf-8")
    facts: dict[str, Any] = {}
    try:
        parsed = loads_strict(data, facts=facts)
    except JSONError:
        return
    if facts["plain"]:
        assert _plain(parsed)
        try:
            got: bytes | None = canonical_bytes(parsed, plain=True)
        except JSONError:
            got = None
        assert got == rfc(parsed)


# ----------------------------------------------------------------------------- the plain fact
def _plain_fact(data: bytes) -> bool:
    facts: dict[str, Any] = {}
    loads_strict(data, facts=facts)
    return bool(facts["plain"])


def test_digit_runs_inside_strings_leave_a_document_plain() -> None:
    """A hex digest often holds 16 decimal digits in a row: only integer tokens count."""
    doc = {"files": {"12345678901234567890.dat": {"sha256": "ab12345678901234567890cd" * 2, "size": 4096}},
           "n": [1, -2, 999999999999999], "s": "0000000000000000000000000000000000000000000000"}
    for layout in ({}, {"indent": 2}, {"separators": (",", ":")}):
        assert _plain_fact(json.dumps(doc, **layout).encode())


@pytest.mark.parametrize("data", [
    b"1234567890123456", b" \n-1234567890123456\t", b"[1234567890123456]", b"[1, -1234567890123456]",
    b'{"a":1234567890123456}', b'{"a" :\n\t -1234567890123456}', b"[\n  1,\n  12345678901234567890\n]",
    b'{"a": [{"b": [0, 99999999999999999999]}]}', b'{"a": "x", "b":  \r\n9007199254740993}', b'["1", 1000000000000000 ]',
])
def test_an_integer_of_16_digits_anywhere_makes_a_document_not_plain(data: bytes) -> None:
    assert not _plain_fact(data)


@pytest.mark.parametrize("data", [b'{"a" :\n\t -%s}', b"[0,%s]", b"[\r\n%s]", b" %s ", b'{"s": "x", "t":%s}'])
def test_an_integer_over_the_digit_cap_is_refused_wherever_it_stands(data: bytes) -> None:
    with pytest.raises(JSONError, match="integer of 41 digits"):
        loads_strict(data % (b"1" * 41))
    assert loads_strict(b'["%s", %s]' % (b"1" * 41, b"1" * 40)) == ["1" * 41, int("1" * 40)]


_LAYOUTS = [{}, {"indent": 2}, {"separators": (",", ":")}, {"indent": "\t", "separators": (" ,", " : ")}]


@SETTINGS
@given(st.recursive(st.integers(-999, 999) | st.integers(-(10**17), 10**17) | st.text("0123456789abcdef", max_size=40)
                    | st.text("0123456789", min_size=16, max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text("0123456789abcdef", max_size=20), c, max_size=4),
                    max_leaves=20),
       st.sampled_from(_LAYOUTS))
def test_the_plain_fact_counts_integer_tokens_only(doc: Any, layout: dict[str, Any]) -> None:
    """Strings of digits and letters (no ``:``, ``[`` or ``,`` to look like a token's
    start) never make a document non-plain; an integer of 16 digits or more always does."""
    ints: list[int] = []
    stack = [doc]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
        elif isinstance(o, int):
            ints.append(o)
    assert _plain_fact(json.dumps(doc, **layout).encode()) == all(abs(i) < 10**15 for i in ints)


def previous_pretty(obj: Any, width: int = 160) -> str:
    """``dumps_pretty`` as it rendered every member one by one, each container first
    bounded from below by ``_wider_than``: the reference for byte equality, and for the
    error raised on what it refuses."""
    from json.encoder import encode_basestring  # type: ignore[attr-defined]

    def render(o: Any, indent: int) -> str:
        t = type(o)
        if not (t is dict or t is list or t is tuple) or not o:
            return jsonio._leaf(o)
        if indent > 0 and not jsonio._wider_than(o, width - indent):
            flat = jsonio._leaf(o)
            if len(flat) + indent <= width:
                return flat
        pad = " " * indent
        inner = pad + "  "
        if t is dict:
            if not all(type(k) is str for k in o):
                raise JSONError("cannot pretty-print: an object key that is not a string")
            items = [inner + encode_basestring(k) + ": " + render(o[k], indent + 2) for k in sorted(o)]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        return "[\n" + ",\n".join([inner + render(v, indent + 2) for v in o]) + "\n" + pad + "]"

    return render(obj, 0) + "\n"


def pretty_outcome(printer: Any, doc: Any, width: int) -> tuple[Any, ...]:
    try:
        return ("text", printer(doc, width=width))
    except Exception as e:  # the type and message are what is compared
        return ("error", type(e), str(e))


class Sub(dict):  # type: ignore[type-arg]
    pass


odd_scalars = (st.floats() | st.integers() | st.just(b"x") | st.just(Sub(a=1)) | st.just(Sub()) | st.just({1, 2})
               | st.text(chars(True), max_size=3))
any_keyed = st.dictionaries(st.text(max_size=2) | st.integers(0, 3) | st.none() | st.booleans(), st.integers(0, 9), max_size=3)
table_rows = (st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "BF16", "I64"]), "shape": st.lists(st.integers(0, 10**6), max_size=6)})
              | st.fixed_dictionaries({"dtype": st.just("F32"), "shape": st.lists(any_keyed | odd_scalars, max_size=2)})
              | st.lists(st.integers(0, 99), max_size=12) | any_keyed)
pretty_any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False) | wide_text | odd_scalars,
    lambda c: st.lists(c, max_size=8) | st.lists(c, max_size=5).map(tuple) | st.dictionaries(wide_text, c, max_size=8)
    | st.dictionaries(st.text("abcdefghij._0123456789", max_size=30), table_rows, min_size=jsonio._TOGETHER - 1, max_size=jsonio._TOGETHER + 2)
    | st.lists(table_rows | c, min_size=jsonio._TOGETHER - 1, max_size=jsonio._TOGETHER + 2) | any_keyed,
    max_leaves=30)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pretty_any, st.sampled_from([4, 12, 24, 40, 60, 160]))
def test_pretty_text_is_the_one_by_one_printers_byte_for_byte(doc: Any, width: int) -> None:
    """Written together or one by one, the members come out the same, and what is refused
    is refused with the same error."""
    assert pretty_outcome(dumps_pretty, doc, width) == pretty_outcome(previous_pretty, doc, width)
    table = {"files": [{"path": "m.safetensors", "tensors": doc if isinstance(doc, dict) else {"t": doc}}]}
    assert pretty_outcome(dumps_pretty, table, width) == pretty_outcome(previous_pretty, table, width)


@pytest.mark.parametrize("width", [30, 60, 160])
def test_a_large_tensor_table_is_the_one_by_one_printers_byte_for_byte(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = {f"model.layers.{i}.mlp.experts.{i % 7}.weight": {"dtype": "F32", "shape": [i % 5 + 1, 4] * (i % 13)} for i in range(3000)}
    rows["x" * 200] = {"dtype": "F32", "shape": list(range(100))}  # a row wider than any line
    doc = {"signed": {"weights": {"files": [{"path": "model.safetensors", "tensors": rows}]}, "files": {"a": {"size": 1}}}}
    together: list[int] = []
    leaves = jsonio._leaves
    monkeypatch.setattr(jsonio, "_leaves", lambda values: together.append(len(values)) or leaves(values))
    assert dumps_pretty(doc, width=width) == previous_pretty(doc, width=width) == reference_pretty(doc, width)
    assert len(rows) in together  # the rows were written together


ROW = {"dtype": "F32", "shape": [2, 4]}


@pytest.mark.parametrize("odd", [
    {1: 2}, {None: "a"}, {True: 1}, {"a": {2: 1}}, [float("nan")], {"s": {1}}, [[b"x"]], Sub(a=1), [Sub()], ["\udfff"], ("t", ("u",)),
    {"dtype": "F32", "shape": list(range(60))},
])
@pytest.mark.parametrize("width", [20, 160])
def test_an_odd_row_in_a_table_is_printed_or_refused_as_one_by_one(odd: Any, width: int) -> None:
    for at in ("a", "m", "z"):
        doc = {"t": {**{k: ROW for k in "bcdefghijklmnopqrstuvwxy"}, at: odd}}
        assert pretty_outcome(dumps_pretty, doc, width) == pretty_outcome(previous_pretty, doc, width)
        seq = [ROW] * jsonio._TOGETHER + [odd, ROW]
        assert pretty_outcome(dumps_pretty, {"l": seq}, width) == pretty_outcome(previous_pretty, {"l": seq}, width)
