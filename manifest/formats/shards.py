"""Shard indexes (``*.safetensors.index.json``, ``*.bin.index.json``) against their shards.

An index is ``{"metadata": {"total_size": N, ...}, "weight_map": {tensor: shard file}}``;
shard names are relative to the index's directory. Loaders trust it blindly: a stale
index loads silently with tensors missing or from the wrong shard. The rules:

- every shard the index lists exists;
- every tensor in ``weight_map`` is in the shard named, and every tensor of every shard
  (listed, or named like a sibling ``<prefix>-NNNNN-of-MMMMM``) is in ``weight_map``;
- no tensor is in two shards;
- ``total_size`` equals the tensor bytes of the shards.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..jsonio import JSONError, loads_strict
from . import INDEX_SUFFIXES
from .safetensors import Header

_SHARD_RE = re.compile(r"^(?P<prefix>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})(?P<ext>\.[A-Za-z0-9_.]+)$")


class IndexError_(ValueError):
    """The index file itself is malformed."""


@dataclass(frozen=True)
class ShardIndex:
    path: str  # relative path of the index file
    weight_map: dict[str, str]  # tensor -> shard path relative to the artifact root
    total_size: int | None
    shard_ext: str  # ".safetensors" or ".bin"

    @property
    def shards(self) -> list[str]:
        return sorted(set(self.weight_map.values()))


@dataclass(frozen=True)
class Problem:
    message: str
    path: str
    expected: object = None
    actual: object = None
    #: transformers still loads every tensor (it reads all listed shards whole and ignores
    #: where weight_map says each tensor is); loaders that trust weight_map do not
    loads_anyway: bool = False


def is_index(rel: str) -> bool:
    return rel.endswith(INDEX_SUFFIXES)


def parse_index(rel: str, data: bytes) -> ShardIndex:
    """Parse an index file's bytes strictly; raises :class:`IndexError_`."""
    try:
        doc = loads_strict(data)
    except JSONError as e:
        raise IndexError_(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise IndexError_("not a JSON object")
    wm = doc.get("weight_map")
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise IndexError_('"weight_map" must map tensor names to shard file names')
    meta = doc.get("metadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise IndexError_('"metadata" must be an object')
    total = meta.get("total_size")
    if isinstance(total, float) and total.is_integer():
        total = int(total)  # some writers emit 1234.0
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise IndexError_('"metadata.total_size" must be a non-negative integer')
    base = posixpath.dirname(rel)
    resolved: dict[str, str] = {}
    for tensor, shard in wm.items():
        if not shard or shard.startswith("/") or "\\" in shard or "\x00" in shard or ".." in shard.split("/"):
            raise IndexError_(f"shard name {shard!r} for tensor {tensor!r} is not a plain relative file name")
        resolved[tensor] = posixpath.join(base, shard) if base else shard
    ext = ".safetensors" if rel.endswith(".safetensors.index.json") else "." + rel[: -len(".index.json")].rsplit(".", 1)[-1]
    return ShardIndex(rel, resolved, total, ext)


def siblings(index: ShardIndex, files: list[str]) -> list[str]:
    """Files next to the index named like its shards (``model-00003-of-00005.safetensors``)."""
    prefixes = set()
    for s in index.shards:
        m = _SHARD_RE.match(posixpath.basename(s))
        if m:
            prefixes.add((posixpath.dirname(s), m.group("prefix"), m.group("ext")))
    out = []
    for f in files:
        m = _SHARD_RE.match(posixpath.basename(f))
        if m and (posixpath.dirname(f), m.group("prefix"), m.group("ext")) in prefixes:
            out.append(f)
    return sorted(out)


def check_index(
    index: ShardIndex,
    files: dict[str, int],
    header_of: Callable[[str], Header | None],
    *,
    limit: int = 20,
) -> list[Problem]:
    """Compare ``index`` with the shards. ``files`` maps every artifact path to its size;
    ``header_of(path)`` gives a shard's parsed header, or None when it does not parse
    (its own finding says why; its tensors are then not compared)."""
    out: list[Problem] = []
    p = index.path
    listed = index.shards
    missing = [s for s in listed if s not in files]
    for s in missing:
        n = sum(1 for v in index.weight_map.values() if v == s)
        out.append(Problem(f"shard {s} is listed for {n} tensor(s) but is missing", p, expected=s))
    unlisted = [s for s in siblings(index, list(files)) if s not in listed]
    shards = [s for s in listed if s in files] + unlisted
    if index.shard_ext != ".safetensors":
        # Pickle shards cannot be read without unpickling: only existence is checked.
        return out
    owner: dict[str, str] = {}
    total = 0
    all_parsed = not missing
    tensor_problems: list[Problem] = []
    for s in shards:
        h = header_of(s)
        if h is None:
            all_parsed = False
            continue
        total += h.data_len
        for name in h.tensors:
            if name in owner:
                tensor_problems.append(Problem(f"tensor {name!r} is in two shards: {owner[name]} and {s}", p,
                                               expected=owner[name], actual=s))
                continue
            owner[name] = s
            mapped = index.weight_map.get(name)
            if mapped is None:
                if s in unlisted:
                    tensor_problems.append(Problem(f"tensor {name!r} of the unlisted shard {s} is not in weight_map "
                                                   "(loaders never open that shard, and the tensor is initialized at random)", p, actual=s))
                else:
                    tensor_problems.append(Problem(f"tensor {name!r} of its shard {s} is not in weight_map (transformers still loads it "
                                                   "from the listed shard; loaders that follow weight_map drop it)", p, actual=s,
                                                   loads_anyway=True))
            elif mapped != s:
                tensor_problems.append(Problem(f"weight_map puts tensor {name!r} in {mapped}, but it is in {s}", p,
                                               expected=mapped, actual=s, loads_anyway=mapped in files))
    for name, s in index.weight_map.items():
        if s in files and header_of(s) is not None and name not in owner:
            tensor_problems.append(Problem(f"weight_map lists tensor {name!r} in {s}, but no shard holds it", p, expected=s,
                                           loads_anyway=True))
    if len(tensor_problems) > limit:
        more = len(tensor_problems) - limit
        rest = all(x.loads_anyway for x in tensor_problems[limit:])
        tensor_problems = [*tensor_problems[:limit],
                           Problem(f"... and {more} more tensor disagreement(s) between index and shards", p, loads_anyway=rest)]
    out.extend(tensor_problems)
    if index.total_size is not None and all_parsed and index.total_size != total:
        file_total = sum(files[s] for s in shards)
        if index.total_size != file_total:
            out.append(Problem(f"metadata.total_size is {index.total_size}, but the shards hold {total} bytes of tensors",
                               p, expected=index.total_size, actual=total, loads_anyway=True))
    return out
