"""The compact-form header reader (``_compact_columns``) against the JSON parse it stands in
for: on every header it accepts, the same tensors, metadata, order and totals, or the same
error; what it declines goes to the JSON parse. Real writers' headers must take it."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifest.formats import safetensors as sf
from manifest.formats.safetensors import DTYPE_BITS, MAX_HEADER, Header, HeaderError, read_header
from manifest.jsonio import JSONError, loads_strict


def _json_path(raw: bytes, file_size: int) -> Header | tuple[str, Any, str] | str:
    """What the reader gave before the compact form: strict JSON parse, then validation."""
    try:
        doc = loads_strict(raw, max_bytes=MAX_HEADER)
    except JSONError:
        return "json"
    try:
        return sf._validate(doc, len(raw), raw, file_size)
    except HeaderError as e:
        return (e.code, e.facts.get("rule"), e.message)


def _compact_path(raw: bytes, file_size: int) -> Header | tuple[str, Any, str] | None:
    cols = sf._compact_columns(raw)
    if cols is None:
        return None
    try:
        return sf._header(len(raw), raw, file_size, *cols)
    except HeaderError as e:
        return (e.code, e.facts.get("rule"), e.message)


def _same(a: Header | tuple[str, Any, str] | str, b: Header | tuple[str, Any, str] | str) -> None:
    if isinstance(a, Header) and isinstance(b, Header):
        assert list(a.tensors.items()) == list(b.tensors.items())
        assert a.metadata == b.metadata and list(a.metadata.items()) == list(b.metadata.items())
        assert (a.header_len, a.raw, a.data_len, a.expected_size) == (b.header_len, b.raw, b.data_len, b.expected_size)
        assert list(a.dtype_totals.items()) == list(b.dtype_totals.items())
        return
    assert a == b


def _header_of(blob: bytes) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    return blob[8:8 + n]


# Names that hit every byte class the compact form treats apart: quotes, backslashes,
# controls, the entry boundary "]},\"", multi-byte UTF-8, the metadata key itself.
_NAME_BITS = ["a", "b.weight", "\"", "\\", "\\u0041", "\x01", "\x7f", "]},\"", ":", ",", "{", "é", "\U0001d518", "__metadata__", " ", "0"]
_names = st.one_of(st.sampled_from(["a", "b.weight", "model.layers.0.mlp", "é", "\U0001d518", "0", " ", "\x7f", ":", ",", "{"]),
                   st.lists(st.sampled_from(_NAME_BITS), max_size=3).map("".join))
_dtypes = st.sampled_from([*sorted(DTYPE_BITS), "f32", "F128", "BOOLEAN"])
_ints = st.one_of(st.integers(0, 9), st.integers(0, 2**64 - 1), st.sampled_from([2**64, 10**20, 10**25]))


@st.composite
def _compact_text(draw: st.DrawFn) -> tuple[bytes, int]:
    """A header written the way writers write it (mostly valid), then perhaps mutated."""
    entries = []
    pos = 0
    for i in range(draw(st.integers(0, 6))):
        dtype = draw(_dtypes)
        shape = draw(st.lists(st.one_of(st.integers(0, 4), _ints), max_size=3))
        bits = DTYPE_BITS.get(dtype, 8)
        size = -(-int(np.prod(shape, dtype=object) if shape else 1) * bits // 8)
        size = size if size < 2**66 else 0
        start = draw(st.sampled_from([pos, pos, pos, pos + 1, max(pos - 1, 0), draw(_ints)]))
        end = draw(st.sampled_from([start + size, start + size, start + size + 1, draw(_ints)]))
        name = draw(_names) + ("" if draw(st.integers(0, 5)) == 0 else f".{i}")  # mostly unique
        entries.append((name, dtype, shape, start, end))
        pos = max(pos, end)
    parts = []
    meta = draw(st.sampled_from(["none", "none", "null", "{}", "pairs", "dup"]))
    if meta == "null":
        parts.append('"__metadata__":null')
    elif meta == "{}":
        parts.append('"__metadata__":{}')
    elif meta == "pairs":
        parts.append('"__metadata__":{"format":"pt","x":"' + draw(_names).replace("\\", "").replace('"', "") + '"}')
    elif meta == "dup":
        parts.append('"__metadata__":{"a":"1","a":"2"}')
    for name, dtype, shape, start, end in entries:
        body = f'{{"dtype":"{dtype}","shape":[{",".join(map(str, shape))}],"data_offsets":[{start},{end}]}}'
        parts.append(json.dumps(name, ensure_ascii=False) + ":" + body if draw(st.booleans()) else f'"{name}":{body}')
    raw = bytearray(("{" + ",".join(parts) + "}" + " " * draw(st.integers(0, 7))).encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # a byte inserted, replaced or dropped
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        op = draw(st.sampled_from(["ins", "set", "del"]))
        ch = draw(st.sampled_from(b'{}[]",: 0123456789\\\x01\t\nAaF'))
        if op == "ins":
            raw.insert(at, ch)
        elif op == "set" and raw:
            raw[at] = ch
        elif raw:
            del raw[at]
    return bytes(raw), 8 + len(raw) + max(pos, 0)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_compact_text(), piece=st.sampled_from([1 << 21, 1, 40, 97]))
def test_the_compact_form_reads_what_the_json_parse_reads(case: tuple[bytes, int], piece: int) -> None:
    raw, size = case
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # refused before either path (read_header's UTF-8 check)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sf, "_COMPACT_PIECE", piece)  # piece boundaries anywhere: never a different answer
        got = _compact_path(raw, size)
    if got is not None:
        _same(got, _json_path(raw, size))


def test_the_generator_reaches_both_paths_and_both_outcomes() -> None:
    """The property above compares something: the compact path takes valid headers and
    headers that then break a layout rule, and declines others."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(case=_compact_text())
    def probe(case: tuple[bytes, int]) -> None:
        raw, size = case
        got = _compact_path(raw, size)
        seen.add("declined" if got is None else "header" if isinstance(got, Header) else "error")

    probe()
    assert seen == {"declined", "header", "error"}


def test_real_writers_headers_take_the_compact_form(minilm_src: Path, tmp_path: Path) -> None:
    blob = safetensors.numpy.save({"b": np.zeros(4, np.int64), "a.weight": np.zeros((2, 3), np.float32), "e": np.zeros((0, 5), np.float16)},
                                  metadata={"format": "pt", "note": "x"})
    with open(minilm_src / "model.safetensors", "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        real = f.read(n)
    for raw, size in [(_header_of(blob), len(blob)), (real, (minilm_src / "model.safetensors").stat().st_size)]:
        assert sf._compact_columns(raw) is not None
        _same(_compact_path(raw, size), _json_path(raw, size))
    # and read_header takes it: the JSON parse is never called
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sf, "loads_strict", lambda *a, **k: pytest.fail("the JSON parse ran on a compact header"))
        with open(path, "rb") as f:
            h = read_header(f, len(blob))
    assert list(h.tensors) == ["b", "a.weight", "e"] and h.metadata == {"format": "pt", "note": "x"}


def test_a_large_header_is_read_piece_by_piece_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = {f"model.layers.{i}.w": ("BF16", (3, 5)) for i in range(5000)}
    blob_head = sf.build(tensors, {"format": "pt"})
    raw = _header_of(blob_head)
    size = 8 + len(raw) + 5000 * 30
    whole = _compact_path(raw, size)
    monkeypatch.setattr(sf, "_COMPACT_PIECE", 333)
    pieces = _compact_path(raw, size)
    assert isinstance(whole, Header) and isinstance(pieces, Header)
    _same(whole, pieces)
    _same(whole, _json_path(raw, size))


@pytest.mark.parametrize("raw", [
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',  # repeated name
    b'{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',  # repeated metadata key
    b'{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}',  # a leading zero
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',  # "{" between entries
    b'{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',  # no comma
    b'{"a\x01":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',  # a raw control character
    b'{"__metadata__":{"k":"v"},"__metadata__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}x}',
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,123456789012345678901]}}',  # 21 digits
    b'{}',
])
def test_what_the_compact_form_does_not_vouch_for_goes_to_the_json_parse(raw: bytes) -> None:
    assert sf._compact_columns(raw) is None


@pytest.mark.parametrize("pad", [b"", b" " * 7, b" " * 63, b" " * 64, b" " * 65, b"\n\t\r " * 40])
def test_trailing_whitespace_of_any_length_is_stripped_as_json_does(pad: bytes) -> None:
    raw = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + pad
    got = _compact_path(raw, 8 + len(raw) + 4)
    assert isinstance(got, Header)
    _same(got, _json_path(raw, 8 + len(raw) + 4))
