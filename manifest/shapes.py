"""The shape of a recorded section, checked against its JSON Schema when a manifest is read.

A recorded section (``signed.weights``, ``signed.tokenizer``, ...) is data from the
manifest, unsigned when no key is given. One whose shape is not what its schema in
``schemas/section-*.schema.json`` says (a list where a string belongs, ``true`` for a
byte count, a missing key) is a malformed manifest (exit 2), never compared.

``jsonschema`` is not a runtime dependency (its imports alone cost more than a whole
verify of a small checkpoint), so this is a small strict validator of the keywords the
section schemas use; any other keyword is refused when the schemas are generated (see
``scripts/gen_docs.py``), and the tests check it against ``jsonschema``.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import chain, repeat
from typing import Any

# Keywords that constrain a value; the others the schemas may hold are annotations.
KEYWORDS = frozenset({"type", "const", "enum", "required", "properties", "additionalProperties", "propertyNames", "items",
                      "prefixItems", "minItems", "maxItems", "minimum", "maximum", "minLength", "pattern", "$ref"})
_BOUNDS = frozenset({"type", "minimum", "maximum"})
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


@cache
def _pattern(p: str) -> re.Pattern[str]:
    return re.compile(p)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def problem(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: tuple[Any, ...] = ()) -> str | None:
    """The first way ``value`` breaks ``schema`` (``"tensors.x.shape[0]: ..."``), or ``None``."""
    ref = schema.get("$ref")
    if ref is not None:
        target = defs[ref.rpartition("/")[2]]
        if len(schema) == 1:  # the common case: nothing beside the $ref
            schema = target
        else:
            found = problem(value, target, defs, path)
            if found is not None:
                return found
    t = schema.get("type")
    if t == "integer" and type(value) is int and schema.keys() <= _BOUNDS:  # a count, the bulk of a section: fast
        if schema.get("minimum", value) <= value <= schema.get("maximum", value):
            return None
    if t is not None:
        kinds = [t] if isinstance(t, str) else t
        if not any(_TYPES[k](value) for k in kinds):
            return f"{_where(path) or 'the section'}: expected {' or '.join(kinds)}, found {_kind(value)}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"{_where(path)}: must be {schema['const']!r}"
    if "enum" in schema and not (value in schema["enum"] if isinstance(value, str) else any(_same(value, e) for e in schema["enum"])):
        return f"{_where(path)}: {_short(value)} is not one of the allowed values"
    if isinstance(value, dict):
        return _object(value, schema, defs, path)
    if isinstance(value, list):
        return _array(value, schema, defs, path)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{_where(path)}: too short"
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            return f"{_where(path)}: {_short(value)} is not of the form {schema['pattern']}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{_where(path)}: {value} is below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{_where(path)}: {value} is above {schema['maximum']}"
    return None


_FAST_MIN = 64  # a map this large (a tensor table) has its values checked by a compiled predicate first
_compiled: dict[int, Any] = {}
_MISSING = object()


def _predicate(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A function of a list of values that is True exactly when every one meets ``schema``,
    built from C-level passes over the whole list (``set(map(type, ...))``, ``min``/``max``,
    one column per object key), for the simple schemas of a table's rows (an object of fixed
    keys whose values are counts, strings of an enum or pattern, or arrays of counts), else
    None. Python runs per schema node, not per value: a 100k-row table is a few dozen C
    calls. A list it refuses is searched for its first bad value (:func:`_first_bad`), which
    :func:`problem` then names."""
    if set(schema) == {"$ref"}:
        return _predicate(defs[schema["$ref"].rpartition("/")[2]], defs)
    keys = set(schema) - ANNOTATIONS
    t = schema.get("type")
    if t == "integer" and keys <= _BOUNDS:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return lambda vs: not vs or (set(map(type, vs)) == {int} and (lo is None or min(vs) >= lo) and (hi is None or max(vs) <= hi))
    if (keys == {"enum"} and all(type(e) is str for e in schema["enum"])) or (t == "string" and keys == {"type", "enum"}):
        allowed = frozenset(schema["enum"])
        return lambda vs: _STR_ONLY.issuperset(map(type, vs)) and allowed.issuperset(vs)
    if t == "string" and keys <= {"type", "pattern", "minLength"}:
        rx = _pattern(schema.get("pattern", ""))
        n = schema.get("minLength", 0)
        return lambda vs: _STR_ONLY.issuperset(map(type, vs)) and min(map(len, vs), default=n) >= n and all(map(rx.search, vs))
    if t == "array" and keys <= {"type", "items"} and isinstance(schema.get("items"), dict):
        item = _predicate(schema["items"], defs)
        if item is None:
            return None
        return lambda vs: _LIST_ONLY.issuperset(map(type, vs)) and item(list(chain.from_iterable(vs)))
    if t == "object" and keys <= {"type", "required", "properties", "additionalProperties"} and schema.get("additionalProperties") is False:
        props = {k: _predicate(sub, defs) for k, sub in schema.get("properties", {}).items()}
        if any(f is None for f in props.values()):
            return None
        allowed_keys = frozenset(props)
        required = frozenset(schema.get("required", ()))

        def rows(vs: list[Any]) -> bool:
            if not (_DICT_ONLY.issuperset(map(type, vs)) and allowed_keys.issuperset(chain.from_iterable(vs))):
                return False
            for k, pred in props.items():
                col = list(map(dict.get, vs, repeat(k), repeat(_MISSING)))
                if col.count(_MISSING):
                    if k in required:
                        return False
                    col = [v for v in col if v is not _MISSING]
                if not pred(col):
                    return False
            return True

        return rows
    return None


_STR_ONLY = frozenset({str})
_LIST_ONLY = frozenset({list})
_DICT_ONLY = frozenset({dict})


def _first_bad(values: list[Any], pred: Any) -> int:
    """The index of the first value ``pred`` refuses, in a list it refuses: halves searched
    with the same C-level passes (about twice the list's work, not a Python call a value)."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(values[lo:mid]):
            lo = mid
        else:
            hi = mid
    return lo


def _object(value: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any], path: tuple[Any, ...]) -> str | None:
    for k in schema.get("required", ()):
        if k not in value:
            return f"{_where(path) or 'the section'}: {k!r} is missing"
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    names = schema.get("propertyNames")
    if isinstance(extra, dict) and names is None and not props and len(value) >= _FAST_MIN:
        key = id(extra)
        if key not in _compiled:
            _compiled[key] = (_predicate(extra, defs), extra)  # the schema is kept alive with its id
        pred = _compiled[key][0]
        if pred is not None:
            values = list(value.values())
            if pred(values):
                return None
            bad = list(value)[_first_bad(values, pred)]
            return problem(value[bad], extra, defs, (*path, bad))
    for k, v in value.items():
        if names is not None:
            found = problem(k, names, defs, (*path, k))
            if found is not None:
                return found
        sub = props.get(k)
        if sub is None:
            if extra is False:
                return f"{_where(path) or 'the section'}: unknown key {_short(k)}"
            if extra is True:
                continue
            sub = extra
        found = problem(v, sub, defs, (*path, k))
        if found is not None:
            return found
    return None


def _array(value: list[Any], schema: dict[str, Any], defs: dict[str, Any], path: tuple[Any, ...]) -> str | None:
    if len(value) < schema.get("minItems", 0):
        return f"{_where(path)}: fewer than {schema['minItems']} items"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{_where(path)}: more than {schema['maxItems']} items"
    prefix = schema.get("prefixItems", [])
    for i, v in enumerate(value):
        sub = prefix[i] if i < len(prefix) else schema.get("items")
        if sub is not None:
            found = problem(v, sub, defs, (*path, i))
            if found is not None:
                return found
    return None


def _kind(v: Any) -> str:
    for k in ("boolean", "null", "integer", "number", "string", "array", "object"):
        if _TYPES[k](v):
            return k
    return type(v).__name__  # pragma: no cover - only JSON values reach here


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def section_problem(name: str, value: Any) -> str | None:
    """Why the recorded section ``name`` is malformed, or ``None`` (also for a section
    that has no schema: it is kept verbatim and reported as not checked)."""
    from ._section_schemas import SCHEMAS

    schema = SCHEMAS.get(name)
    if schema is None:
        return None
    return problem(value, schema, schema.get("$defs", {}))
