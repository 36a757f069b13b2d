"""Git LFS pointer files: a small text file left where the real content should be.

A pointer (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md) is UTF-8 text
under 1024 bytes of ``key value`` lines, starting with ``version <spec url>``:

    version https://git-lfs.github.com/spec/v1
    oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393
    size 12345

Any file can be a pointer (weights, tokenizer.json, ...), so detection looks at every
file small enough to be one, never at its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..inventory import Artifact

MAX_POINTER_BYTES = 1024
_VERSIONS = (b"version https://git-lfs.github.com/spec/", b"version https://hawser.github.com/spec/")
_OID = re.compile(r"^([a-z0-9]+):([0-9a-f]{64})$")


@dataclass(frozen=True)
class LfsPointer:
    version: str
    oid: str  # "sha256:<hex>" or None-like "" when absent
    size: int | None  # bytes of the real content

    def describe(self) -> str:
        size = f"{self.size} bytes" if self.size is not None else "unknown size"
        return f"oid {self.oid or '(none)'}, {size}"


def parse_pointer(data: bytes) -> LfsPointer | None:
    """The pointer ``data`` holds, or None when it is not a pointer. Tolerant of a
    missing oid or size (the pointer is still a pointer), strict on the first line."""
    if len(data) >= MAX_POINTER_BYTES or not data.startswith(_VERSIONS):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    version, oid, size = "", "", None
    for line in text.replace("\r\n", "\n").split("\n"):
        key, _, value = line.partition(" ")
        if key == "version":
            version = value.strip()
        elif key == "oid":
            m = _OID.match(value.strip())
            if m:
                oid = f"{m.group(1)}:{m.group(2)}"
        elif key == "size":
            v = value.strip()
            if v.isdigit() and len(v) <= 20:
                size = int(v)
    return LfsPointer(version, oid, size)


def pointer_of(art: Artifact, rel: str) -> LfsPointer | None:
    """The pointer that ``rel`` is, if it is one (memoized; reads at most 1 KiB)."""
    info = art.files.get(rel)
    if info is None or info.size >= MAX_POINTER_BYTES or info.size < len(_VERSIONS[0]):
        return None

    def compute() -> LfsPointer | None:
        try:
            with art.open(rel) as f:
                data = f.read(MAX_POINTER_BYTES)
        except OSError:
            return None
        return parse_pointer(data)

    return art.memo(("lfs-pointer", rel), compute)


def pointers(art: Artifact) -> dict[str, LfsPointer]:
    """Every file of the artifact that is an LFS pointer."""
    out: dict[str, LfsPointer] = {}
    for rel in art.files:
        p = pointer_of(art, rel)
        if p is not None:
            out[rel] = p
    return out
