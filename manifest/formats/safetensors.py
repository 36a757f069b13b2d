"""safetensors header reader (minimal first version; validation to be completed).

Reads the 8-byte little-endian header length and the JSON header only, never the
tensor data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..jsonio import JSONError, loads_strict

MAX_HEADER = 100_000_000


class HeaderError(ValueError):
    """The file is not a valid safetensors file. ``code`` is a finding code."""

    def __init__(self, message: str, code: str = "header-invalid", **facts: Any):
        super().__init__(message)
        self.code = code
        self.facts = facts


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    header_len: int
    raw: bytes  # the JSON header bytes, for a digest of the header
    tensors: dict[str, TensorInfo]  # in file-offset order
    metadata: dict[str, str]

    @property
    def data_len(self) -> int:
        return max((t.end for t in self.tensors.values()), default=0)


def read_header(fp: BinaryIO, file_size: int) -> Header:
    head = fp.read(8)
    if len(head) < 8:
        raise HeaderError(f"file of {file_size} bytes is too short for a safetensors header", code="truncated")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER:
        raise HeaderError(f"header length {n} is over the {MAX_HEADER}-byte limit")
    if 8 + n > file_size:
        raise HeaderError(f"header length {n} runs past the end of the {file_size}-byte file", code="truncated")
    raw = fp.read(n)
    try:
        doc = loads_strict(raw, max_bytes=MAX_HEADER)
    except JSONError as e:
        raise HeaderError(f"header is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise HeaderError("header is not a JSON object")
    meta = doc.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    for name, t in doc.items():
        try:
            start, end = t["data_offsets"]
            tensors[name] = TensorInfo(str(t["dtype"]), tuple(int(x) for x in t["shape"]), int(start), int(end))
        except (KeyError, TypeError, ValueError):
            raise HeaderError(f"tensor {name!r}: malformed entry") from None
    tensors = dict(sorted(tensors.items(), key=lambda kv: kv[1].start))
    return Header(n, raw, tensors, dict(meta))
