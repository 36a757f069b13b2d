"""Path rules: what a manifest path may be, so that nothing in a manifest can make
``verify`` read outside the artifact directory."""

from __future__ import annotations

import unicodedata

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255


def path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a safe relative POSIX path, or ``None`` if it is."""
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


def collision_key(rel: str) -> str:
    """Two paths with the same key collide on a case-insensitive or
    normalizing file system (macOS, Windows)."""
    return unicodedata.normalize("NFC", rel).casefold()


def find_collisions(paths: list[str]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for p in paths:
        k = collision_key(p)
        if k in seen:
            out.append((seen[k], p))
        else:
            seen[k] = p
    return out
