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

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
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

    @property
    def data_len(self) -> int:
        return max((t.end for t in self.tensors.values()), default=0)

    @property
    def expected_size(self) -> int:
        """The exact file size this header promises."""
        return 8 + self.header_len + self.data_len

    def bytes_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors.values():
            out[t.dtype] = out.get(t.dtype, 0) + t.nbytes
        return dict(sorted(out.items()))

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())


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
    try:
        with gc_paused():  # a header of a million tensors builds millions of objects and no cycle
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


def _validate(doc: Any, n: int, raw: bytes, file_size: int) -> Header:
    if not isinstance(doc, dict):
        raise HeaderError(f"header is a JSON {type(doc).__name__}, not an object", rule="json-object")
    meta: dict[str, str] = {}
    entries: list[tuple[str, TensorInfo]] = []
    append = entries.append
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    bits_of = DTYPE_BITS
    # The parsed header is taken apart as it is read: each entry's JSON objects are freed
    # once its TensorInfo exists, so the two never both hold a million tensors.
    items = list(doc.items())
    doc.clear()
    for i, (name, t) in enumerate(items):
        items[i] = None  # type: ignore[call-overload]
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
            meta = dict(t)
            continue
        # The common case, checked with C-level calls: exactly the three keys, a known
        # dtype, a list of 64-bit unsigned dims, two 64-bit unsigned offsets.
        if type(t) is dict and t.keys() == TENSOR_KEYS:
            dtype, shape, offs = t["dtype"], t["shape"], t["data_offsets"]
            if (type(dtype) is str and dtype in bits_of and type(shape) is list and type(offs) is list and len(offs) == 2
                    and _INT_ONLY.issuperset(map(type, offs)) and 0 <= min(offs) and max(offs) <= U64_MAX
                    and (not shape or (_INT_ONLY.issuperset(map(type, shape)) and 0 <= min(shape) and max(shape) <= U64_MAX))):
                append((name, TensorInfo(dtype, tuple(shape), offs[0], offs[1])))
                continue
        append((name, _tensor(name, t)))  # raises with the precise rule
    del items
    entries.sort(key=lambda kv: (kv[1].start, kv[1].end))
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
    header = Header(n, raw, dict(entries), meta)
    if header.expected_size != file_size:
        diff = file_size - header.expected_size
        how = f"{-diff} bytes short" if diff < 0 else f"{diff} bytes of trailing data"
        raise HeaderError(
            f"file is {file_size} bytes but its header promises {header.expected_size} ({how}: "
            f"{'interrupted or cut-off download' if diff < 0 else 'corrupted or appended file'})",
            code="truncated", expected=header.expected_size, actual=file_size, rule="coverage", header=header,
        )
    return header


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
