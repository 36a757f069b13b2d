"""The section cache: re-check an unchanged checkpoint's headers and side files without
parsing them again.

The sections (weights headers, tokenizer, config and their consistency) read only files
of the artifact, and what they report is a pure function of those files' contents, of
the manifest's recorded section, of a few options and of this tool's code. So when none
of those changed, their result is the same: the cache stores each section's result (its
findings, its checked / not-checked marks and its facts, in order) under a key made of

- the tool's code identity (version, and the size and mtime of every module of the
  installed package, so an edited or upgraded tool never reuses an old result);
- the section's name, the command, the recorded section (canonical JSON) and the options
  the section reads (:meth:`Section.cache_key`; ``None`` means "never cache": the
  requirements and hub sections read the environment and the Hugging Face cache, and the
  memory check reads the machine's free memory);
- the stat identity ``(path, size, mtime_ns, ctime_ns, inode, device)`` of **every**
  file of the artifact, so any change to any file, an added or a removed file is a miss.

It makes the promises of the digest stat cache (:mod:`manifest.statcache`), with the
same racy-timestamp rule: a result is stored, and later reused, only if every file's mtime
and ctime were older than the racy window (:func:`~manifest.statcache.racy_window_ns`:
the kernel's writeback delay plus a margin) at the moment the sections started reading.
It lives beside the digest cache, it is skipped by ``--no-cache``, a
corrupt or foreign-owned cache file is ignored, and it never raises.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from . import __version__
from .findings import Finding, Severity
from .inventory import Artifact
from .report import Report
from .statcache import cache_dir, file_for, read_doc, stat_of, trustworthy, write_doc

Ops = list[list[Any]]  # ["f", finding dict] | ["c", check] | ["n", check, reason]

@functools.lru_cache(maxsize=1)
def code_identity() -> str:
    """This tool's identity: its version and the (path, size, mtime) of every module."""
    return tree_identity(Path(__file__).resolve().parent, __version__)


def tree_identity(pkg: Path, version: str) -> str:
    """SHA-256 over ``version`` and the (path, size, mtime) of every ``.py`` file under ``pkg``."""
    h = hashlib.sha256(version.encode())
    todo = [pkg]
    while todo:
        d = todo.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(".py") and e.is_file():
                st = e.stat()
                h.update(f"{os.path.relpath(e.path, pkg)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
            elif e.is_dir() and e.name != "__pycache__":
                todo.append(Path(e.path))
    return h.hexdigest()


class Recorder(Report):
    """A report that logs what a section does to it, in order, so it can be replayed."""

    def __init__(self, command: str):
        super().__init__(command, "")
        self.ops: Ops = []

    def mark_checked(self, check: str) -> None:
        self.ops.append(["c", check])

    def mark_not_checked(self, check: str, reason: str) -> None:
        self.ops.append(["n", check, reason])

    def add(self, finding: Finding) -> None:
        self.ops.append(["f", finding.to_dict()])


def finding_from(d: dict[str, Any]) -> Finding:
    """A finding back from its ``to_dict`` form; ValueError/TypeError/KeyError if it is not one."""
    if not isinstance(d["message"], str) or not all(isinstance(d.get(k), (str, type(None))) for k in ("path", "hint")):
        raise TypeError("not a finding")
    items = d.get("items")
    if items is not None and not (isinstance(items, list) and all(isinstance(i, str) for i in items)):
        raise TypeError("not a finding")
    if not all(isinstance(d.get(k), (str, type(None))) for k in ("id", "caused_by")):
        raise TypeError("not a finding")
    return Finding(d["code"], d["message"], path=d.get("path"), expected=d.get("expected"), actual=d.get("actual"),
                   hint=d.get("hint"), severity=Severity(d["severity"]), items=tuple(items) if items is not None else None,
                   id=d.get("id"), caused_by=d.get("caused_by"))


class SectionCache:
    """One directory's cached section results for one command. Never raises."""

    def __init__(self, path: Path, key: tuple[str, ...], files_id: str, fresh: bool, entries: dict[str, Any],
                 stats: list[tuple[int, int, int, int, int]] | None = None, started: int = 0):
        self.path = path
        self.key = key
        self.files_id = files_id
        self.fresh = fresh  # every file old enough for its content to be tied to its stat
        self.stats = stats or []
        self.started = started
        self.entries = entries
        self.hits: list[str] = []
        self.dirty = False

    @classmethod
    def open(cls, art: Artifact, command: str) -> SectionCache | None:
        try:
            started = time.time_ns()
            stats = sorted((p, *stat_of(i)) for p, i in art.files.items())
            file_stats = [stat_of(i) for i in art.files.values()]
            fresh = all(trustworthy(s, started) for s in file_stats)
            files_id = hashlib.sha256(json.dumps(stats).encode("utf-8", "surrogatepass")).hexdigest()
            key = ("sections", command, os.path.realpath(art.root))
            path = file_for(cache_dir(), key)
            doc = read_doc(path, key)
            entries = doc.get("entries") if doc is not None else None
            return cls(path, key, files_id, fresh, entries if isinstance(entries, dict) else {},
                       file_stats, started)
        except Exception:
            return None

    def _id(self, name: str, section_key: list[Any], recorded: Any) -> str:
        blob = json.dumps([code_identity(), self.files_id, name, section_key, recorded], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, name: str, section_key: list[Any], recorded: Any) -> tuple[Ops, dict[str, Any]] | None:
        try:
            e = self.entries.get(name)
            if not isinstance(e, dict) or e.get("id") != self._id(name, section_key, recorded):
                return None
            ops, facts, at = e.get("ops"), e.get("facts"), e.get("at")
            if not isinstance(ops, list) or not isinstance(facts, dict) or type(at) is not int:
                return None
            if not all(trustworthy(s, at) for s in self.stats):  # the window may have grown since
                return None
            for op in ops:  # validate before anything is replayed
                if op[0] == "f":
                    finding_from(op[1])
                elif not (op[0] in ("c", "n") and all(isinstance(x, str) for x in op[1:]) and len(op) == (2 if op[0] == "c" else 3)):
                    return None
        except Exception:
            return None
        self.hits.append(name)
        return ops, facts

    def put(self, name: str, section_key: list[Any], recorded: Any, ops: Ops, facts: dict[str, Any]) -> None:
        if not self.fresh:
            return
        try:
            entry = {"id": self._id(name, section_key, recorded), "ops": ops, "facts": facts, "at": self.started}
            json.dumps(entry)  # only JSON-able results are cached
        except Exception:
            return
        self.entries[name] = entry
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            self.dirty = not write_doc(self.path, self.key, {"entries": self.entries})
