"""safetensors header reader: the 8-byte length and the JSON header only, never the data.

The rules are those of the safetensors Rust parser (0.8) that loaders use, checked
in the same order, plus a few stricter ones that are safe to add:

1. the file holds at least 8 bytes; the little-endian u64 length ``n`` is at most
   100,000,000 and ``8 + n`` fits in the file (checked before anything is read);
2. the header is UTF-8 and strict JSON (no duplicate keys, even identical ones; no
   NaN/Infinity; no lone surrogates, which serde_json refuses too);
3. the header is an object; ``__metadata__`` (optional, may be null) maps strings to
   strings; every other key is a tensor ``{"dtype", "shape", "data_offsets"}``
   (stricter: no other keys, and no array form);
4. every dtype is one of the 22 of safetensors 0.8, including the sub-byte F4, F6_E2M3
   and F6_E3M2 and the F8 variants; dims and offsets are integers in ``[0, 2**64)``;
5. sorted by offsets, tensors are contiguous from 0 (no gap, no overlap, end >= start);
6. elements times bits per element fit in 64 bits, fill whole bytes, and equal the span;
7. the last offset plus 8 plus ``n`` equals the file size exactly (``truncated`` otherwise).

A file that is not safetensors at all (an HTML error page, a Git LFS pointer, a zip or
pickle checkpoint) is recognised from its first bytes and named in the error.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, compress, repeat
from math import prod
from operator import itemgetter, le, mul, sub
from typing import Any, BinaryIO, NamedTuple

from ..jsonio import JSONError, gc_paused, loads_strict

MAX_HEADER = 100_000_000
U64_MAX = (1 << 64) - 1
SNIFF_BYTES = 512

#: Bits per element of every dtype safetensors 0.8 knows (its ``Dtype`` enum, 22 variants).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,  # MXFP4 (E2M1), two per byte
    "F6_E2M3": 6,  # MXFP6, four per three bytes
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,  # MX shared scale
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})


class HeaderError(ValueError):
    """The file is not a valid safetensors file. ``code`` is a finding code
    (``header-invalid``, ``truncated`` or ``lfs-pointer``); ``facts`` carries details
    (``expected``/``actual`` bytes, ``tensor``, ``rule``, ``header``, ``oid``, ``size``)."""

    def __init__(self, message: str, code: str = "header-invalid", **facts: Any):
        super().__init__(message)
        self.code = code
        self.facts = facts

    @property
    def message(self) -> str:
        return str(self.args[0])


class TensorInfo(NamedTuple):
    """One tensor of a header. A tuple (small and quick to build: a hostile header may
    hold over a million of them)."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Header:
    header_len: int
    raw: bytes  # the JSON header bytes, for a digest of the header
    tensors: dict[str, TensorInfo]  # in file-offset order
    metadata: dict[str, str] = field(default_factory=dict)

    @cached_property
    def data_len(self) -> int:
        return max(map(_END, self.tensors.values()), default=0)

    @property
    def expected_size(self) -> int:
        """The exact file size this header promises."""
        return 8 + self.header_len + self.data_len

    @cached_property
    def dtype_totals(self) -> dict[str, tuple[int, int]]:
        """``dtype -> (elements, bytes)`` over all tensors, in the order each dtype first
        appears in the file (computed once, with C-level passes: a header may hold a
        million tensors and several readers want these sums)."""
        ts = list(self.tensors.values())
        return _dtype_totals(list(map(_DTYPE, ts)), list(map(prod, map(_SHAPE, ts))), list(map(_START, ts)), list(map(_END, ts)))

    def bytes_by_dtype(self) -> dict[str, int]:
        return {d: self.dtype_totals[d][1] for d in sorted(self.dtype_totals)}

    @property
    def parameters(self) -> int:
        return sum(n for n, _ in self.dtype_totals.values())


_DTYPE, _SHAPE, _START, _END = (itemgetter(i) for i in range(4))


def _dtype_totals(dtypes: list[str], numels: list[int], starts: list[int], ends: list[int]) -> dict[str, tuple[int, int]]:
    order = dict.fromkeys(dtypes)
    if len(order) == 1:
        (d,) = order
        return {d: (sum(numels), sum(ends) - sum(starts))}
    out = {}
    for d in order:  # a pass per dtype (a handful), each at C speed
        mask = list(map(d.__eq__, dtypes))
        out[d] = (sum(compress(numels, mask)), sum(compress(ends, mask)) - sum(compress(starts, mask)))
    return out


# ----------------------------------------------------------------------------- sniffing
def sniff(prefix: bytes) -> str | None:
    """Name what a file that is not safetensors looks like, from its first bytes."""
    from .lfs import parse_pointer

    if parse_pointer(prefix) is not None:
        return "a Git LFS pointer"
    if len(prefix) >= 8 and not prefix.strip(b"\0"):
        return "zeros only: space reserved by a download that never wrote the data"
    head = prefix.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (head.startswith(b"<") and b"<html" in head):
        return "HTML"
    if head.startswith(b"<?xml") or head.startswith(b"<"):
        return "XML or HTML"
    if prefix.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch checkpoint?)"
    if prefix.startswith(b"\x1f\x8b"):
        return "gzip data"
    if len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5:
        return "a pickle (a PyTorch checkpoint?)"
    if prefix.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if prefix.startswith(b"GGUF"):
        return "a GGUF file"
    if prefix.startswith(b"\x89HDF"):
        return "an HDF5 file"
    if head.startswith((b"{", b"[")):
        return "JSON text"
    if prefix and all(32 <= b < 127 or b in b"\t\r\n" for b in prefix[:64]):
        return "text"
    return None


def _not_safetensors(prefix: bytes, fallback: str, **facts: Any) -> HeaderError:
    from .lfs import parse_pointer

    ptr = parse_pointer(prefix)
    if ptr is not None:
        return HeaderError(
            f"Git LFS pointer in place of the content (oid {ptr.oid}, {ptr.size} bytes): the real file was never downloaded",
            code="lfs-pointer", oid=ptr.oid, size=ptr.size, rule="lfs-pointer",
        )
    what = sniff(prefix)
    if what is not None:
        return HeaderError(f"not a safetensors file (looks like {what})", **{**facts, "rule": "not-safetensors", "looks_like": what})
    return HeaderError(fallback, **facts)


# ----------------------------------------------------------------------------- reading
def _read_exact(fp: BinaryIO, n: int) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left > 0:
        b = fp.read(min(left, 1 << 24))
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_header(fp: BinaryIO, file_size: int) -> Header:
    """Read and validate the header of the safetensors file ``fp`` (positioned at 0)
    of ``file_size`` bytes. Raises :class:`HeaderError`; never reads tensor data."""
    head = _read_exact(fp, 8)
    if file_size < 8 or len(head) < 8:
        if head and sniff(head + _read_exact(fp, SNIFF_BYTES)) is not None:
            raise _not_safetensors(head, f"file of {file_size} bytes is too short for a safetensors header")
        raise HeaderError(
            f"file of {file_size} bytes is too short to hold the 8-byte header length (empty or cut-off download)",
            code="truncated", expected=8, actual=file_size, rule="header-too-small",
        )
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER or 8 + n > file_size:
        prefix = head + _read_exact(fp, min(SNIFF_BYTES, file_size - 8))
        too_large = n > MAX_HEADER
        if (too_large or prefix[8:9] != b"{") and (sniff(prefix) is not None):
            raise _not_safetensors(prefix, "")
        if too_large:
            raise HeaderError(f"header length {n} is over the {MAX_HEADER}-byte limit loaders accept", rule="header-too-large")
        raise HeaderError(
            f"header of {n} bytes runs past the end of the {file_size}-byte file (cut-off download)",
            code="truncated", expected=8 + n, actual=file_size, rule="header-past-end",
        )
    raw = _read_exact(fp, n)
    if len(raw) != n:
        raise HeaderError(f"file ended after {8 + len(raw)} bytes while reading an {n}-byte header", code="truncated",
                          expected=8 + n, actual=8 + len(raw), rule="header-past-end")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if sniff(head + raw[:SNIFF_BYTES]) is not None:
            raise _not_safetensors(head + raw[:SNIFF_BYTES], "") from None
        raise HeaderError(f"header is not UTF-8 (byte {e.start})", rule="utf8") from None
    with gc_paused():  # a header of a million tensors builds millions of objects and no cycle
        columns = _compact_columns(raw)
        if columns is not None:
            return _header(n, raw, file_size, *columns)
    try:
        with gc_paused():
            doc = loads_strict(raw, max_bytes=MAX_HEADER)
    except JSONError as e:
        if not raw.lstrip(b" \t\r\n").startswith(b"{"):
            prefix = head + raw[:SNIFF_BYTES]
            if len(raw) < SNIFF_BYTES:  # error path only: a peek past a tiny header
                prefix += _read_exact(fp, min(SNIFF_BYTES - len(raw), file_size - 8 - n))
            raise _not_safetensors(prefix, f"header is not valid JSON: {e}", rule="json") from None
        raise HeaderError(f"header is not valid JSON: {e}", rule="json") from None
    with gc_paused():
        return _validate(doc, n, raw, file_size)


def parse_header_bytes(data: bytes) -> Header:
    """Validate a whole in-memory safetensors file (tests, small buffers)."""
    import io

    return read_header(io.BytesIO(data), len(data))


def _uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U64_MAX


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# A lone surrogate can only come from a \u escape (the raw header is valid UTF-8): without
# one of D800-DFFF in the text, no name needs the per-name check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_INT_ONLY = frozenset({int})


_DTYPE_NAMES = frozenset(DTYPE_BITS)
_STR_ONLY = frozenset({str})
_LIST_ONLY = frozenset({list})
_DICT_ONLY = frozenset({dict})
_THREE = frozenset({3})
_TWO = frozenset({2})
_ENTRY = itemgetter("dtype", "shape", "data_offsets")
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_ABSENT = object()
_BATCH = 1 << 15  # entries checked per batch: their JSON is freed after each batch, so parse and table never both peak


_Columns = tuple[list[str], list[TensorInfo], list[int], list[int], list[str], list[int], bool]  # names, infos, starts, ends, dtypes, elements, sizes ok


def _fast_batch(batch: list[tuple[str, Any]]) -> _Columns | None:
    """The common case for a batch of entries, in C-level passes over the whole batch
    (a million tensors cost seconds one by one): every entry exactly the three keys, a
    known dtype, a list of 64-bit unsigned dims, two 64-bit unsigned offsets. ``None``
    when any entry is not (the per-entry path then names it). Also returns each entry's
    element count and whether every size is right (elements x bits = 8 x span, in 64 bits)."""
    names = list(map(_FIRST, batch))
    if "__metadata__" in names:
        return None
    vals = list(map(_SECOND, batch))
    if set(map(type, vals)) != _DICT_ONLY or set(map(len, vals)) != _THREE:
        return None
    try:
        triples = list(map(_ENTRY, vals))
    except KeyError:
        return None
    dtypes, shapes, offs = list(map(_FIRST, triples)), list(map(_SECOND, triples)), list(map(_THIRD, triples))
    if (set(map(type, dtypes)) != _STR_ONLY or not _DTYPE_NAMES.issuperset(dtypes)
            or set(map(type, shapes)) != _LIST_ONLY or set(map(type, offs)) != _LIST_ONLY or set(map(len, offs)) != _TWO):
        return None
    starts, ends = list(map(_FIRST, offs)), list(map(_SECOND, offs))
    if not (_INT_ONLY.issuperset(map(type, starts)) and _INT_ONLY.issuperset(map(type, ends))
            and min(starts) >= 0 and min(ends) >= 0 and max(starts) <= U64_MAX and max(ends) <= U64_MAX):
        return None
    dims = list(chain.from_iterable(shapes))
    if dims and not (_INT_ONLY.issuperset(map(type, dims)) and min(dims) >= 0 and max(dims) <= U64_MAX):
        return None
    numels = list(map(prod, shapes))
    sizes_ok = _sizes_ok(numels, dtypes, starts, ends)
    infos = list(map(tuple.__new__, repeat(TensorInfo), zip(dtypes, map(tuple, shapes), starts, ends, strict=True)))
    return names, infos, starts, ends, dtypes, numels, sizes_ok


def _sizes_ok(numels: list[int], dtypes: list[str], starts: list[int], ends: list[int]) -> bool:
    """Rule 6 for every entry at once: elements x bits fit in 64 bits and equal 8 x the
    span (False leaves ``_check_layout`` to name the first entry that breaks it)."""
    nbits = list(map(mul, numels, map(DTYPE_BITS.__getitem__, dtypes)))
    return max(nbits, default=0) <= U64_MAX and nbits == list(map(mul, map(sub, ends, starts), repeat(8)))


def _validate(doc: Any, n: int, raw: bytes, file_size: int) -> Header:
    if not isinstance(doc, dict):
        raise HeaderError(f"header is a JSON {type(doc).__name__}, not an object", rule="json-object")
    meta: dict[str, str] = {}
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    # A valid __metadata__ (writers put it first) is taken out before the batches, so that
    # the batch holding it can take the fast path too; any other goes through the per-entry
    # path, which names what is wrong with it in its place.
    md = doc.get("__metadata__", _ABSENT)
    if md is not _ABSENT and not surrogates and (md is None or (type(md) is dict and _STR_ONLY.issuperset(map(type, md.values())))):
        if md:
            meta.update(md)
        del doc["__metadata__"]
    # The parsed header is taken apart as it is read: each batch's JSON objects are freed
    # once its TensorInfos exist, so the two never both hold a million tensors.
    items: list[Any] = list(doc.items())
    doc.clear()

    def batches() -> Iterator[_Columns]:
        for lo in range(0, len(items), _BATCH):
            hi = min(lo + _BATCH, len(items))
            batch = items[lo:hi]
            items[lo:hi] = repeat(None, hi - lo)
            fast = None if surrogates else _fast_batch(batch)
            yield _slow_batch(batch, meta, surrogates) if fast is None else fast

    columns = _gather(batches())
    items.clear()
    assert columns is not None  # every batch gives columns or raises
    return _header(n, raw, file_size, meta, *columns)


def _gather(parts: Iterable[_Columns | None]) -> _Columns | None:
    """The columns of the parts joined, each part freed once taken; ``None`` at the first
    part that is ``None``."""
    names: list[str] = []
    infos: list[TensorInfo] = []
    starts: list[int] = []
    ends: list[int] = []
    dtypes: list[str] = []
    numels: list[int] = []
    sizes_ok = True
    for part in parts:
        if part is None:
            return None
        names += part[0]
        infos += part[1]
        starts += part[2]
        ends += part[3]
        dtypes += part[4]
        numels += part[5]
        sizes_ok = sizes_ok and part[6]
        del part
    return names, infos, starts, ends, dtypes, numels, sizes_ok


def _header(n: int, raw: bytes, file_size: int, meta: dict[str, str], names: list[str], infos: list[TensorInfo], starts: list[int],
            ends: list[int], dtypes: list[str], numels: list[int], sizes_ok: bool) -> Header:
    """The header from its columns (rules 3-4 already checked): the layout rules 5-7."""
    # Contiguous from 0 in the order written (what writers do): then that is the
    # file-offset order too, with no sort. Else sort by (start, end), stable.
    if starts and starts[0] == 0 and starts[1:] == ends[:-1] and all(map(le, starts, ends)):
        ordered = True
    else:
        perm = sorted(range(len(starts)), key=list(zip(starts, ends, strict=True)).__getitem__)
        names, infos = list(map(names.__getitem__, perm)), list(map(infos.__getitem__, perm))
        starts, ends = list(map(starts.__getitem__, perm)), list(map(ends.__getitem__, perm))
        dtypes, numels = list(map(dtypes.__getitem__, perm)), list(map(numels.__getitem__, perm))
        del perm
        ordered = not starts or (starts[0] == 0 and starts[1:] == ends[:-1] and all(map(le, starts, ends)))
    if not (ordered and sizes_ok):
        _check_layout(list(zip(names, infos, strict=True)))  # raises the first rule broken, in file-offset order
    header = Header(n, raw, dict(zip(names, infos, strict=True)), meta)
    header.__dict__["data_len"] = ends[-1] if ends else 0  # cached_property slots, known here at no cost
    header.__dict__["dtype_totals"] = _dtype_totals(dtypes, numels, starts, ends)
    del names, infos, starts, ends, dtypes, numels
    if header.expected_size != file_size:
        diff = file_size - header.expected_size
        how = f"{-diff} bytes short" if diff < 0 else f"{diff} bytes of trailing data"
        raise HeaderError(
            f"file is {file_size} bytes but its header promises {header.expected_size} ({how}: "
            f"{'interrupted or cut-off download' if diff < 0 else 'corrupted or appended file'})",
            code="truncated", expected=header.expected_size, actual=file_size, rule="coverage", header=header,
        )
    return header


# The compact form every safetensors writer emits (serde_json, no whitespace, keys in the
# order dtype, shape, data_offsets), matched by a regular expression instead of parsed: a
# JSON parse builds a dict, two lists and three strings a tensor (4 s for 1.4M tensors), the
# match only the strings it captures (1 s). It accepts a subset of strict JSON exactly: a
# string without escapes is any run of bytes but '"', '\\' and the controls 00-1F (the
# header is valid UTF-8, checked first); an integer is 0 or 1-20 digits without a leading
# zero. Anything else (whitespace, escapes, other key orders, a float) declines, and the
# JSON parse decides as before.
_S = rb'[^"\\\x00-\x1f]*'
_N = rb"(?:0|[1-9][0-9]{0,19})"
_COMPACT_ENTRY = re.compile(rb'([{,])"(' + _S + rb')":\{"dtype":"([A-Z0-9_]{1,16})","shape":\[((?:' + _N + rb"(?:," + _N
                            + rb')*)?)\],"data_offsets":\[(' + _N + rb"),(" + _N + rb")\]\}")
_COMPACT_FIXED = len(b'{"":{"dtype":"","shape":[],"data_offsets":[,]}')  # an entry's bytes beside its captures
_COMPACT_META = re.compile(rb'\{"__metadata__":(null|\{(?:"' + _S + rb'":"' + _S + rb'"(?:,"' + _S + rb'":"' + _S + rb'")*)?\})')
_COMPACT_PIECE = 1 << 21  # bytes matched at a time: the captures of a piece are converted, then freed
_DTYPE_OF = {d.encode(): d for d in DTYPE_BITS}
_WHITESPACE = b" \t\n\r"


def _compact_columns(raw: bytes) -> tuple[dict[str, str], list[str], list[TensorInfo], list[int], list[int], list[str], list[int], bool] | None:
    """``(metadata, *columns)`` of a header in the compact form (rules 2-4 hold: the same
    columns as the JSON parse and ``_fast_batch`` give), or ``None`` when it is not in
    that form or breaks a rule: the JSON path then parses it and names what is wrong."""
    tail = raw[-64:]  # writers pad the header with spaces to 8 bytes: strip them without copying the header
    kept = len(tail.rstrip(_WHITESPACE))
    end = len(raw) - len(tail) + kept if kept or len(raw) <= 64 else len(raw.rstrip(_WHITESPACE))
    if raw[:1] != b"{" or raw[end - 1:end] != b"}" or end < 3:
        return None
    meta: dict[str, str] = {}
    pos, lead = 0, b"{"
    m = _COMPACT_META.match(raw)
    if m is not None:
        if m.group(1) != b"null":
            meta = json.loads(m.group(1))
            if len(meta) != m.group(1).count(b'":"'):  # a repeated key (strings hold no quote)
                return None
        pos, lead = m.end(), b","
        if pos == end - 1:  # metadata alone
            return meta, [], [], [], [], [], [], True
    stop = end - 1  # the closing brace

    def pieces() -> Iterator[_Columns | None]:
        p, sep = pos, lead
        while p < stop:
            cut = raw.find(b']},"', min(p + _COMPACT_PIECE, stop)) + 2  # the comma before an entry, if it is one
            cut = stop if cut < 2 or cut > stop else cut
            yield _compact_piece(raw, p, cut, sep)
            p, sep = cut, b","

    columns = _gather(pieces())
    if columns is None:
        return None
    names = set(columns[0])  # one pass over the names for both checks
    if len(names) != len(columns[0]) or "__metadata__" in names:
        return None  # a repeated key, or a tensor named like the metadata (the JSON path refuses them)
    return meta, *columns


def _compact_piece(raw: bytes, pos: int, cut: int, lead: bytes) -> _Columns | None:
    """The columns of the entries in ``raw[pos:cut]``, the first preceded by ``lead``, or
    ``None`` unless they tile it exactly in the compact form with rules 3-4 kept."""
    rows = _COMPACT_ENTRY.findall(raw, pos, cut)
    if not rows:
        return None
    seps, nb, db, sb, ab, bb = map(list, zip(*rows, strict=True))
    del rows
    # the matches tile the piece exactly (they do not overlap: equal lengths leave no gap)
    if sum(map(len, nb)) + sum(map(len, db)) + sum(map(len, sb)) + sum(map(len, ab)) + sum(map(len, bb)) + _COMPACT_FIXED * len(nb) != cut - pos:
        return None
    if seps[0] != lead or seps.count(b"{") != (lead == b"{"):  # "{" before the first entry only
        return None
    if not _DTYPE_OF.keys() >= set(db):
        return None
    dts = list(map(_DTYPE_OF.__getitem__, db))
    shape_of = dict.fromkeys(sb)
    numel_of = {}
    for k in shape_of:
        dims = tuple(map(int, k.split(b","))) if k else ()
        if dims and max(dims) > U64_MAX:
            return None
        shape_of[k] = dims
        numel_of[k] = prod(dims)
    b = list(map(int, bb))
    # contiguous entries (what writers write) start where the one before ends: one conversion
    a = [int(ab[0]), *b[:-1]] if ab[1:] == bb[:-1] else list(map(int, ab))
    if max(a) > U64_MAX or max(b) > U64_MAX:
        return None
    numels = list(map(numel_of.__getitem__, sb))
    sizes_ok = _sizes_ok(numels, dts, a, b)
    infos = list(map(tuple.__new__, repeat(TensorInfo), zip(dts, map(shape_of.__getitem__, sb), a, b, strict=True)))
    return list(map(bytes.decode, nb)), infos, a, b, dts, numels, sizes_ok


def _slow_batch(batch: list[tuple[str, Any]], meta: dict[str, str], surrogates: bool) -> _Columns:
    """Entry by entry: ``__metadata__`` (into ``meta``), lone surrogates in names, and
    the precise rule an entry breaks (raised)."""
    names: list[str] = []
    infos: list[TensorInfo] = []
    for name, t in batch:
        if surrogates and _has_surrogate(name):
            raise HeaderError(f"key {name.encode('utf-8', 'backslashreplace').decode()!r} holds a lone surrogate", rule="unicode")
        if name == "__metadata__":
            if t is None:
                continue
            if not isinstance(t, dict):
                raise HeaderError("__metadata__ must map strings to strings", rule="metadata", tensor=name)
            for k, v in t.items():
                if not isinstance(v, str):
                    raise HeaderError(f"__metadata__[{k!r}] is a {type(v).__name__}, not a string", rule="metadata")
                if _has_surrogate(k) or _has_surrogate(v):
                    raise HeaderError(f"__metadata__[{k!r}] holds a lone surrogate", rule="unicode")
            meta.update(t)
            continue
        names.append(name)
        infos.append(_tensor(name, t))
    numels = list(map(prod, map(_SHAPE, infos)))
    dtypes, starts, ends = list(map(_DTYPE, infos)), list(map(_START, infos)), list(map(_END, infos))
    return names, infos, starts, ends, dtypes, numels, _sizes_ok(numels, dtypes, starts, ends)


def _check_layout(entries: list[tuple[str, TensorInfo]]) -> None:
    """Rules 5 and 6 tensor by tensor, in file-offset order: raise the first one broken."""
    pos = 0
    prev = None
    for name, t in entries:
        if t.end < t.start:
            raise HeaderError(f"tensor {name!r}: data_offsets [{t.start}, {t.end}] end before they start", rule="offsets", tensor=name)
        if t.start > pos:
            raise HeaderError(f"tensor {name!r}: gap of {t.start - pos} bytes before its data (offsets must be contiguous from 0)",
                              rule="offsets-gap", tensor=name)
        if t.start < pos:
            raise HeaderError(f"tensor {name!r}: data [{t.start}, {t.end}] overlaps tensor {prev!r}", rule="offsets-overlap", tensor=name)
        numel = prod(t.shape)
        nbits = numel * DTYPE_BITS[t.dtype]
        if numel > U64_MAX or nbits > U64_MAX:
            raise HeaderError(f"tensor {name!r}: shape {list(t.shape)} of {t.dtype} overflows 64-bit size arithmetic",
                              rule="overflow", tensor=name)
        if nbits % 8:
            raise HeaderError(f"tensor {name!r}: {numel} {t.dtype} elements ({nbits} bits) do not fill whole bytes",
                              rule="sub-byte", tensor=name)
        if nbits // 8 != t.end - t.start:
            raise HeaderError(
                f"tensor {name!r}: shape {list(t.shape)} of {t.dtype} needs {nbits // 8} bytes, data_offsets span {t.end - t.start}",
                rule="size", tensor=name,
            )
        pos = t.end
        prev = name
    raise AssertionError("unreachable: the fast layout check failed but no rule is broken")  # pragma: no cover


def _tensor(name: str, t: Any) -> TensorInfo:
    if not isinstance(t, dict):
        raise HeaderError(f"tensor {name!r}: entry is a JSON {type(t).__name__}, not an object", rule="tensor-entry", tensor=name)
    missing = TENSOR_KEYS - set(t)
    if missing:
        raise HeaderError(f"tensor {name!r}: missing {', '.join(sorted(missing))}", rule="tensor-entry", tensor=name)
    extra = set(t) - TENSOR_KEYS
    if extra:
        raise HeaderError(f"tensor {name!r}: unknown keys {', '.join(sorted(extra))}", rule="tensor-entry", tensor=name)
    dtype, shape, offs = t["dtype"], t["shape"], t["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        shown = dtype if isinstance(dtype, str) else type(dtype).__name__
        raise HeaderError(f"tensor {name!r}: unknown dtype {shown!r} (safetensors 0.8 knows {', '.join(DTYPE_BITS)})",
                          rule="dtype", tensor=name)
    if not isinstance(shape, list) or not all(_uint(d) for d in shape):
        raise HeaderError(f"tensor {name!r}: shape must be a list of non-negative 64-bit integers", rule="shape", tensor=name)
    if not isinstance(offs, list) or len(offs) != 2 or not all(_uint(o) for o in offs):
        raise HeaderError(f"tensor {name!r}: data_offsets must be two non-negative 64-bit integers", rule="offsets", tensor=name)
    return TensorInfo(dtype, tuple(shape), offs[0], offs[1])


def build(
    tensors: Mapping[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str] | None = None, *, order: list[str] | None = None
) -> bytes:
    """The header part (8-byte length + JSON, space-padded to 8) of a valid file with
    these tensors laid out contiguously; the data (zeros) is not included. For tests
    and benchmarks."""
    import json

    doc: dict[str, Any] = {}
    if metadata is not None:
        doc["__metadata__"] = metadata
    pos = 0
    for name in order or list(tensors):
        dtype, shape = tensors[name]
        numel = 1
        for d in shape:
            numel *= d
        size = numel * DTYPE_BITS[dtype] // 8
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + size]}
        pos += size
    body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body
