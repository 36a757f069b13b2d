"""Path rules: what a manifest path may be, so that nothing in a manifest can make
``verify`` read outside the artifact directory."""

from __future__ import annotations

import re
import unicodedata

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255


# Every character path_problem refuses anywhere in a path: controls, DEL and backslash.
_REFUSED_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_REFUSED_PARTS = frozenset({"", ".", ".."})


def path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a safe relative POSIX path, or ``None`` if it is.

    A path that passes every rule is recognised with a few C-level tests (discovery and
    the manifest loader ask once per file); any other takes the rules one by one, which
    name the first broken one."""
    if type(rel) is str and rel and not _REFUSED_CHARS.search(rel) and rel[0] != "/" and rel[1:2] != ":":
        try:
            n = len(rel.encode("utf-8"))
        except UnicodeEncodeError:
            n = -1
        if 0 <= n <= MAX_PATH_BYTES:
            parts = rel.split("/")
            if _REFUSED_PARTS.isdisjoint(parts) and (n <= MAX_COMPONENT_BYTES or all(len(p.encode()) <= MAX_COMPONENT_BYTES for p in parts)):
                return None
    return _path_problem_slow(rel)


# all_safe: the same rules over many paths joined by newlines (a newline is refused in a
# path, so a separator cannot hide a bad one). The refused characters are looked for in
# the UTF-8 bytes, where a character below 0x80 is that byte and any other is bytes of
# 0x80 and above: deleting the refused bytes (the joining newline aside) changes the length.
_REFUSED_BYTES = bytes(b for b in range(0x20) if b != 0x0A) + b"\x7f\\"
_REFUSED_PARTS_BYTES = frozenset({b"", b".", b".."})


def all_safe(paths: list[str]) -> bool:
    """True when every one of ``paths`` passes :func:`path_problem`, checked in a few
    C-level passes over all of them at once (discovery and the manifest loader ask for
    10,000 paths at a time). False says only that one may not: ask :func:`path_problem`
    of each for which and why."""
    if not paths:
        return True
    try:
        joined = "\n".join(paths)
        encoded = joined.encode("utf-8")
    except (TypeError, UnicodeEncodeError):  # not a string, or a lone surrogate
        return False
    if (
        joined.count("\n") != len(paths) - 1
        or len(encoded.translate(None, _REFUSED_BYTES)) != len(encoded)
        or encoded.startswith(b"/")
        or b"\n/" in encoded
        or (":" in joined and any(p[1:2] == ":" for p in paths))  # a drive letter
    ):
        return False
    if len(encoded) > MAX_PATH_BYTES and max(map(len, encoded.split(b"\n"))) > MAX_PATH_BYTES:
        return False
    parts = encoded.replace(b"\n", b"/").split(b"/")
    return _REFUSED_PARTS_BYTES.isdisjoint(parts) and (len(encoded) <= MAX_COMPONENT_BYTES or max(map(len, parts)) <= MAX_COMPONENT_BYTES)


def _path_problem_slow(rel: str) -> str | None:
    if not isinstance(rel, str) or rel == "":
        return "empty path"
    if "\x00" in rel:
        return "NUL byte in path"
    if any(c in rel for c in "\n\r"):
        return "newline in path"
    if "\\" in rel:
        return "backslash in path"
    if rel.startswith("/"):
        return "absolute path"
    if len(rel) >= 2 and rel[1] == ":":
        return "drive-letter path"
    try:
        encoded = rel.encode("utf-8")
    except UnicodeEncodeError:
        return "path is not valid Unicode"
    if len(encoded) > MAX_PATH_BYTES:
        return "path too long"
    for part in rel.split("/"):
        if part in ("", ".", ".."):
            return f"path component {part!r} is not allowed"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return "path component too long"
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in part):
            return "control character in path"
    return None


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(target: object) -> bool:
    """``scheme://...`` (``s3://bucket/prefix``, ``file:///...``): a target for fsspec, not a local path."""
    return isinstance(target, str) and bool(_URL.match(target))


def collision_key(rel: str) -> str:
    """Two paths with the same key collide on a case-insensitive or
    normalizing file system (macOS, Windows)."""
    return unicodedata.normalize("NFC", rel).casefold()


def find_collisions(paths: list[str]) -> list[tuple[str, str]]:
    """The pairs ``(first, later)`` of ``paths`` with the same :func:`collision_key`."""
    joined = "\n".join(paths)
    if joined.isascii() and joined.count("\n") == len(paths) - 1:
        # NFC leaves ASCII as it is and casefold() is lower() on it: no two keys alike, no pair
        if len(set(joined.lower().split("\n"))) == len(paths):
            return []
    seen: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for p in paths:
        k = collision_key(p)
        if k in seen:
            out.append((seen[k], p))
        else:
            seen[k] = p
    return out
