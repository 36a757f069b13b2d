"""Strict JSON in, canonical and pretty JSON out.

``loads_strict`` is the only way this package parses untrusted JSON (manifests,
config files, safetensors headers). It refuses what ``json`` silently accepts:
duplicate keys (even identical ones), NaN/Infinity, integers of thousands of digits,
invalid UTF-8, a BOM, documents over a size cap and deep nesting.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain, compress, filterfalse, repeat
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

import rfc8785

from . import _entry

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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing a large document builds millions of
    objects and no cycle, and every collection the allocations trigger would scan them
    all again (a 1.4M-tensor header parsed 3x slower with it running).

    What the pause built is then moved out of the young generation without a scan: left
    there, the first collection after the pause would walk all of it, then the next
    generations again (4.65 s of collections in a 100k-tensor verify under load, 0.04 s
    with this; the young generation's count does not tell: objects freed during the pause
    count against those built). ``gc.freeze`` moves every tracked object to the permanent
    generation at no cost per object; when nothing was frozen before (a library caller), ``gc.unfreeze``
    puts them all in the oldest generation, where they would have ended up anyway; in the
    command, which freezes its imports (``_entry``), they stay frozen. Acyclic objects are
    still freed by reference counting either way. The command is asked first:
    ``gc.get_freeze_count`` walks the whole permanent generation (24 ms for 2M objects, and
    a 100k-tensor verify freezes about that many)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            frozen = _entry.STATE["frozen"] or gc.get_freeze_count()
            gc.freeze()
            if not frozen:
                gc.unfreeze()
            gc.enable()


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_QUOTED = re.compile(rb'"[^"]*"')
# Where integers of many digits can be, seen in one C-level pass over the raw text. An
# integer token is a run of digits that follows ":", "[" or "," (or starts the document),
# with only whitespace and a minus sign between. Digits become "0", those three
# characters ",", whitespace and "-" are deleted and everything else becomes " ": an
# integer token of n digits or more then shows as "," and n zeros, or n zeros at the
# start, and a plain substring search finds it (10x faster than a regex). Digits inside
# strings can only look like one (a string holding ": 1234567890123456"): the slower path,
# never a wrong answer.
_NUMBER_SHAPE = bytes(48 if 48 <= b <= 57 else 44 if b in b":[," else 32 for b in range(256))
_NUMBER_DROP = b" \t\n\r-"


def _int_token(shape: bytes, digits: int) -> bool:
    """``shape`` (the text through ``_NUMBER_SHAPE``) may hold an integer token of
    ``digits`` digits or more; False means it surely does not."""
    run = b"0" * digits
    return shape.startswith(run) or b"," + run in shape


_KEEP = b'[]{}":'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[]{}:")
_NOT_SKELETON = bytes(b for b in range(256) if b not in _KEEP)


def _structure(data: bytes) -> bytes:
    """The brackets and colons of ``data`` (valid JSON) that stand outside its strings, in
    order: C-level passes. Without a backslash in the text, strings are cut out of the
    skeleton of brackets, colons and quotes (a fraction of the size): an empty ``""``
    there is a string without brackets or colons, or the boundary between two strings."""
    if b"\\" in data:
        return _STRING.sub(b"", data).translate(None, _NOT_STRUCTURE)
    skeleton = data.translate(None, _NOT_SKELETON).replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = _QUOTED.sub(b"", skeleton)
    return skeleton


def _check_depth(data: bytes, max_depth: int, brackets: bytes | None = None) -> None:
    """Nesting bound, run on the raw bytes of a document already known to be valid JSON
    (``brackets``: its brackets outside strings, when already at hand).

    Everything but the brackets outside strings is dropped, then innermost ``[]``/``{}``
    pairs removed one level per pass: C-speed passes, as many as the depth, so a large
    tokenizer.json costs milliseconds (the C parser already turned pathological
    nesting into a RecursionError)."""
    skeleton = _structure(data).translate(None, b":") if brackets is None else brackets
    for _ in range(max_depth):
        if not skeleton:
            return
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    if skeleton:
        raise JSONError(f"nesting deeper than {max_depth}")


_UNPARSED = object()
_JSON_CONTAINERS = frozenset({dict, list})
_is_dict = dict.__instancecheck__


def _members(value: Any, objects: int) -> int:
    """The number of members of the objects in ``value`` (parsed JSON), level by level with
    C-level passes over all the containers of a level; it stops once it has seen
    ``objects`` objects (all that the text holds: the members of a table's rows are not
    searched). Objects it does not reach only make the count smaller."""
    n = seen = 0
    level = [value] if type(value) in _JSON_CONTAINERS else []
    while level:
        dicts = list(filter(_is_dict, level))
        n += sum(map(len, dicts))
        seen += len(dicts)
        if seen >= objects:
            break
        items = list(chain.from_iterable(map(dict.values, dicts)))
        if len(dicts) != len(level):
            items.extend(chain.from_iterable(filterfalse(_is_dict, level)))
        level = list(compress(items, map(_JSON_CONTAINERS.__contains__, map(type, items))))
    return n


# What can make the C encoder's canonical text differ from RFC 8785's, or fail, seen in
# the raw text: a character outside the BMP (a 4-byte UTF-8 sequence, or a surrogate-pair
# escape), a lone surrogate escape (no canonical form at all) and an integer token of 16
# digits or more (2**53 has 16; a hex digest's run of 16 decimal digits is inside a string
# and does not count). Floats are seen by the parse hook. So the canonical bytes of a
# plain document cannot fail, and may be written when first needed.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_BELOW_F0 = bytes(range(0xF0))
_SAFE_DIGITS = 16


def loads_strict(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH,
                 facts: dict[str, Any] | None = None) -> Any:
    """Parse ``data`` as strict UTF-8 JSON or raise :class:`JSONError`.

    ``facts``, when given, receives ``plain``: True when the document holds no float, no
    integer of 16 digits or more, no character outside the BMP and no surrogate escape, so
    that ``canonical_bytes(part, plain=True)`` of any part of it needs no walk to know it,
    and cannot fail."""
    if len(data) > max_bytes:
        raise JSONError(f"document of {len(data)} bytes is over the {max_bytes}-byte cap")
    if data.startswith(b"\xef\xbb\xbf"):
        raise JSONError("document starts with a byte-order mark")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise JSONError(f"not UTF-8 at byte {e.start}") from None
    shape = data.translate(_NUMBER_SHAPE, _NUMBER_DROP)
    floats = 0

    def on_float(t: str) -> float:
        nonlocal floats
        floats += 1
        return _float(t)

    hooks: dict[str, Any] = {
        "parse_constant": _constant,
        "parse_int": _int if _int_token(shape, MAX_INT_DIGITS + 1) else None,
        "parse_float": _float if facts is None else on_float,
    }
    value: Any = _UNPARSED
    parsed = brackets = None
    if b"\\" not in data:
        # Duplicate keys without a Python call per object: the members in the text (its
        # colons outside strings) against those of the parsed objects, where a repeated key
        # leaves one. Any difference, and any error, goes to the parse below, which names
        # the first broken rule as it always did.
        structure = _structure(data)
        brackets = structure.translate(None, b":")
        try:
            with gc_paused():
                parsed = json.loads(text, **hooks)
                if structure.count(b":") == _members(parsed, brackets.count(b"{")):
                    value = parsed
        except (ValueError, TypeError, RecursionError):  # JSONError too
            pass
    if value is _UNPARSED:
        parsed = None  # not held while the document is parsed again
        try:
            with gc_paused():
                value = json.loads(text, object_pairs_hook=_pairs, **hooks)
        except JSONError:
            raise
        except RecursionError:
            raise JSONError("nesting too deep") from None
        except (ValueError, TypeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise JSONError(msg) from None
    _check_depth(data, max_depth, brackets)
    if facts is not None:
        facts["plain"] = (not floats and not _int_token(shape, _SAFE_DIGITS) and not data.translate(None, _BELOW_F0)
                          and (b"\\u" not in data or _SURROGATE_ESCAPE.search(data) is None))
    return value


# ----------------------------------------------------------------------------- canonical
# RFC 8785 and the C encoder with sorted keys, compact separators and ensure_ascii=False
# write the same bytes for the same JSON data except in four places, each checked before
# the C encoder's text is used:
# - keys are sorted by UTF-16 code units (RFC 8785) or by code points (Python): the two
#   orders differ only when a key holds a character outside the BMP;
# - numbers: RFC 8785 writes ECMAScript's shortest double form (``1e+16`` is
#   ``10000000000000000``, ``1.0`` is ``1``) and refuses integers beyond 2**53 - 1, which
#   Python writes as they are;
# - lone surrogates: RFC 8785 refuses them; the encoder passes them on, and they fail to
#   encode as UTF-8;
# - types: RFC 8785 refuses keys that are not strings; the encoder turns 1, True or None
#   keys into strings.
# String escaping is the same (``\"``, ``\\``, ``\b\f\n\r\t``, other controls as
# ``\u00xx`` in lower case, and U+2028/U+2029 and DEL as themselves), and so are ``true``,
# ``false``, ``null`` and integers within 2**53. tests/test_canonical.py checks byte
# equality with ``rfc8785`` on generated documents and on each of these edge cases.
_SAFE_INT = (1 << 53) - 1
_NON_BMP = re.compile("[\U00010000-\U0010FFFF]")
_STR_ONLY = frozenset({str})
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


_SCALARS = frozenset({str, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})
_PLAIN_TYPES = _SCALARS | _CONTAINERS | {int}


_is_int = int.__instancecheck__


def _objects_and_members(level: list[Any], kinds: set[type]) -> tuple[list[Any], list[Any]]:
    """The objects among ``level`` (containers only; ``kinds`` holds at least their types)
    and the members of all of them chained into one list (an object's values, an array's
    items), in C-level passes: a level-by-level walk takes its next level from these."""
    if dict not in kinds:
        return [], list(chain.from_iterable(level))
    dicts = level if len(kinds) == 1 else list(filter(_is_dict, level))
    members = list(chain.from_iterable(map(dict.values, dicts)))
    if len(dicts) != len(level):
        members.extend(chain.from_iterable(filterfalse(_is_dict, level)))
    return dicts, members


def _plain(obj: Any) -> bool:
    """True when ``obj`` is JSON data whose canonical form the C encoder writes: containers
    of exactly dict/list/tuple, string keys within the BMP, integers within 2**53, strings,
    booleans and null; no float anywhere. ``obj`` is acyclic (the encoder refused a cycle).

    The walk goes level by level, each level in C-level passes over all its containers at
    once (the keys and members of every container chained into one list, the set of their
    types, the min and max of the integers), so a table of a million small rows costs a
    few passes per level, not calls per row."""
    t = type(obj)
    if t not in _CONTAINERS:
        return t in _SCALARS or (t is int and -_SAFE_INT <= obj <= _SAFE_INT)
    level: list[Any] = [obj]
    try:
        while True:
            kinds = set(map(type, level))  # each exactly dict, list or tuple, checked a level up
            dicts, members = _objects_and_members(level, kinds)
            if dicts:
                keys = list(chain.from_iterable(dicts))
                if not _STR_ONLY.issuperset(map(type, keys)):
                    return False
                joined = "".join(keys)
                if not joined.isascii() and _NON_BMP.search(joined):
                    return False
            kinds = set(map(type, members))
            if kinds <= _SCALARS:
                return True
            if not kinds <= _PLAIN_TYPES:
                return False  # a float, or a type JSON does not have
            if int in kinds:
                ints = members if len(kinds) == 1 else list(filter(_is_int, members))  # bools too: 0 and 1
                if min(ints) < -_SAFE_INT or max(ints) > _SAFE_INT:
                    return False
            if kinds.isdisjoint(_CONTAINERS):
                return True
            level = list(compress(members, map(_CONTAINERS.__contains__, map(type, members))))
    except TypeError:
        return False


def fast_canonical(obj: Any, *, plain: bool = False) -> bytes | None:
    """The RFC 8785 bytes of ``obj`` written by the C encoder, or None when ``obj`` holds
    something on which the two differ (a float, an integer beyond 2**53, a key outside
    the BMP or not a string, a lone surrogate, a type other than JSON's)."""
    try:
        text = _CANONICAL(obj)  # first: it refuses a cyclic document, which _plain would walk forever
    except (ValueError, TypeError, RecursionError):
        return None
    if not plain and not _plain(obj):
        return None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return None


def canonical_bytes(obj: Any, *, plain: bool = False) -> bytes:
    """RFC 8785 (JCS) canonical form: the exact bytes that are signed.

    The C encoder writes them (:func:`fast_canonical`) unless the document holds what
    it would write differently; then ``rfc8785`` does. ``plain``: ``obj`` is (part of) a
    document :func:`loads_strict` found plain, so the type walk is not needed."""
    with gc_paused():
        fast = fast_canonical(obj, plain=plain)
    if fast is not None:
        return fast
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
        raise JSONError(f"cannot canonicalize: {e}") from None


# ----------------------------------------------------------------------------- pretty


def _leaf_encoder() -> tuple[Any, Any]:
    """The compact ``", "`` / ``": "`` form of one value, sorted keys, by the C encoder
    (called directly: ``JSONEncoder.encode`` builds a new C encoder on every call), and
    the same of each value of a list, in C-level passes."""
    fallback = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": "), allow_nan=False).encode
    try:
        from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

        if c_make_encoder is None:
            return fallback, lambda vals: list(map(fallback, vals))

        def default(o: Any) -> Any:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

        enc = c_make_encoder(None, default, encode_basestring, None, ": ", ", ", True, False, False)
        if "".join(enc({"b": [1, "\u00e9"], "a": None}, 0)) != '{"a": null, "b": [1, "\u00e9"]}':  # pragma: no cover
            return fallback, lambda vals: list(map(fallback, vals))
    except (ImportError, TypeError):  # pragma: no cover - another Python's encoder
        return fallback, lambda vals: list(map(fallback, vals))
    return (lambda o: "".join(enc(o, 0))), (lambda vals: list(map("".join, map(enc, vals, repeat(0)))))


_leaf, _leaves = _leaf_encoder()


def _wider_than(o: Any, budget: int) -> bool:
    """True when the compact form of ``o`` is surely longer than ``budget`` characters
    (a lower bound, given up as soon as it is over: a 100k-entry table is not encoded
    only to learn that it does not fit on a line)."""
    n = 0
    stack = [o]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is dict:
            n += 2 * len(x)
            for k, v in x.items():
                n += len(k) + 3
                if n > budget:
                    return True
                stack.append(v)
        elif t is list or t is tuple:
            n += 2 * len(x)
            if n > budget:
                return True
            stack.extend(x)
        elif t is str:
            n += len(x) + 2
        else:
            n += 1
        if n > budget:
            return True
    return False


_TOGETHER = 16  # fewer members (a document's upper levels, where tables sit) go one by one
_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
_SHALLOW_TYPES = _LEAF_TYPES | _CONTAINERS


def _shallow(values: list[Any] | tuple[Any, ...]) -> bool:
    """Each of ``values`` is a JSON scalar, or a container whose members are scalars or
    containers of scalars, all keys strings: C-level passes over the two levels below
    (the members of all containers of a level chained into one list). Writing such a
    value's compact form costs about its size, and were it too wide for a line, each of
    its members would be written again at most twice."""
    kinds = set(map(type, values))
    if not kinds <= _SHALLOW_TYPES:
        return False
    level: Any = values
    for allowed in (_SHALLOW_TYPES, _LEAF_TYPES):
        if kinds.isdisjoint(_CONTAINERS):
            return True
        if not kinds <= _CONTAINERS:
            level = list(compress(level, map(_CONTAINERS.__contains__, map(type, level))))
        dicts, members = _objects_and_members(level, kinds)
        if dicts and not _STR_ONLY.issuperset(map(type, chain.from_iterable(dicts))):
            return False
        kinds = set(map(type, members))
        if not kinds <= allowed:
            return False
        level = members
    return True


def dumps_pretty(obj: Any, *, width: int = 160) -> str:
    """Stable, diffable JSON: keys sorted, 2-space indent, and any object or array
    whose compact form fits in ``width`` columns kept on one line (so a file table has
    one file per line, a tensor table one tensor per line).

    The layout is the standard encoder's (``json.dumps(indent=2)``: ``",\\n"`` between
    members, ``": "`` after a key, ``{}``/``[]`` when empty); every value on one line, and
    every key, is written by the C encoder. Only the indented skeleton is joined here:
    the standard encoder's own indenting walk is pure Python, a generator call per member.

    The members of a container are written together when all are shallow (a tensor
    table's rows, a file table's): each row's compact form in one C-level pass, and only
    those longer than a line laid out one by one. Other members go one by one, a
    container first bounded from below by :func:`_wider_than`, so that a large table is
    not encoded again at every level above it."""
    key = encode_basestring

    def render(o: Any, indent: int) -> str:
        t = type(o)
        if not (t is dict or t is list or t is tuple) or not o:
            return _leaf(o)
        if indent > 0 and not _wider_than(o, width - indent):
            flat = _leaf(o)
            if len(flat) + indent <= width:
                return flat
        pad = " " * indent
        inner = pad + "  "
        if t is dict:
            if not _STR_ONLY.issuperset(map(type, o)):
                raise JSONError("cannot pretty-print: an object key that is not a string")
            keys = sorted(o)
            lines = members(list(o.values()) if keys == list(o) else list(map(o.__getitem__, keys)), indent + 2)
            between = ",\n" + inner
            return "{\n" + inner + "".join(chain.from_iterable(zip(map(key, keys), repeat(": "), lines, repeat(between))))[:-len(between)] + "\n" + pad + "}"
        return "[\n" + inner + (",\n" + inner).join(members(o, indent + 2)) + "\n" + pad + "]"

    def members(values: list[Any] | tuple[Any, ...], indent: int) -> list[str]:
        """``render(v, indent)`` of each of ``values``."""
        if len(values) < _TOGETHER or not _shallow(values):
            return [render(v, indent) for v in values]
        try:
            lines = _leaves(values)
        except (TypeError, ValueError):  # named as the one-by-one rendering names it
            return [render(v, indent) for v in values]
        limit = width - indent
        if max(map(len, lines)) > limit:
            for i in compress(range(len(lines)), map(limit.__lt__, map(len, lines))):
                lines[i] = render(values[i], indent)
        return lines

    with gc_paused():
        return render(obj, 0) + "\n"
