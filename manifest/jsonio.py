"""Strict JSON in, canonical and pretty JSON out.

``loads_strict`` is the only way this package parses untrusted JSON (manifests,
config files, safetensors headers). It refuses what ``json`` silently accepts:
duplicate keys (even identical ones), NaN/Infinity, integers of thousands of digits,
invalid UTF-8, a BOM, documents over a size cap and deep nesting.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # a manifest of ~200k files fits well below this
MAX_DEPTH = 64
MAX_INT_DIGITS = 40


class JSONError(ValueError):
    """The document is not strict JSON. The message says which rule broke."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise JSONError(f"duplicate key {k!r}")
            seen.add(k)
    return out


def _constant(name: str) -> Any:
    raise JSONError(f"{name} is not valid JSON")


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONError(f"integer of {digits} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONError(f"number {text[:20]} overflows a double")
    return value


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# An integer over MAX_INT_DIGITS digits needs a run of that many digits somewhere in the
# text: without one, the per-integer Python hook (30 000 calls for a tokenizer.json,
# two thirds of its parse time) is not needed.
_LONG_DIGITS = re.compile(rb"[0-9]{" + str(MAX_INT_DIGITS + 1).encode() + rb"}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _check_depth(data: bytes, max_depth: int) -> None:
    """Nesting bound, run on the raw bytes of a document already known to be valid JSON.

    Strings are cut out, everything but brackets dropped, then innermost ``[]``/``{}``
    pairs removed one level per pass: C-speed passes, as many as the depth, so a large
    tokenizer.json costs milliseconds (the C parser already turned pathological
    nesting into a RecursionError)."""
    skeleton = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not skeleton:
            return
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    if skeleton:
        raise JSONError(f"nesting deeper than {max_depth}")


def loads_strict(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` as strict UTF-8 JSON or raise :class:`JSONError`."""
    if len(data) > max_bytes:
        raise JSONError(f"document of {len(data)} bytes is over the {max_bytes}-byte cap")
    if data.startswith(b"\xef\xbb\xbf"):
        raise JSONError("document starts with a byte-order mark")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise JSONError(f"not UTF-8 at byte {e.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_constant,
            parse_int=_int if _LONG_DIGITS.search(data) else None,
            parse_float=_float,
        )
    except JSONError:
        raise
    except RecursionError:
        raise JSONError("nesting too deep") from None
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise JSONError(msg) from None
    _check_depth(data, max_depth)
    return value


def canonical_bytes(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical form: the exact bytes that are signed."""
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
        raise JSONError(f"cannot canonicalize: {e}") from None


def dumps_pretty(obj: Any, *, width: int = 160) -> str:
    """Stable, diffable JSON: keys sorted, 2-space indent, and any object or array
    whose compact form fits in ``width`` columns kept on one line (so a file table has
    one file per line, a tensor table one tensor per line)."""

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
