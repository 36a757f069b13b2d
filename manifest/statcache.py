"""The stat cache: re-verify an unchanged checkpoint without reading it.

It maps a file's ``(path, size, mtime_ns, ctime_ns, inode, device)`` to the digests
computed when the file last had exactly that stat. It lives outside the artifact, in
the user cache directory (``MANIFEST_CACHE_DIR`` overrides it), one small JSON file per
``(command, directory, manifest identity)`` key.

What it can and cannot promise (``docs/performance.md`` has the long form):

- Any change of size, mtime, ctime, inode or device means the file is hashed again.
  ``ctime`` cannot be set from user space: writing a byte and restoring the mtime with
  ``touch -d``/``os.utime`` still moves it, so that edit is caught too.
- "Racy" timestamps: a file whose mtime or ctime is younger than :func:`racy_window_ns`
  when it is hashed is not recorded. Two reasons: a second write within the same
  timestamp tick leaves the stat unchanged (the "racy git" problem), and a write through
  a shared memory mapping (``mmap(MAP_SHARED)``) moves mtime and ctime only when it
  dirties a clean page: further writes to a page that is already dirty move nothing
  until the kernel writes the page back. The window is therefore derived from the
  kernel's writeback settings (``/proc/sys/vm/dirty_expire_centisecs`` +
  ``dirty_writeback_centisecs``) plus :data:`MARGIN_NS`; with periodic writeback off,
  or on a file system that never writes back (tmpfs, ramfs), nothing is trusted.
- It does not defend against someone who can rewrite the disk under the file system or
  set the clock back, nor against someone who can write the cache itself (your own
  account). A gate that must not trust the machine's past uses ``--no-cache``.
- A corrupt, foreign-owned or oversized cache file is ignored; the cache never raises.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .digest import Hashed
from .inventory import FileInfo

CACHE_ENV = "MANIFEST_CACHE_DIR"
CACHE_FORMAT = 1
WINDOW_ENV = "MANIFEST_CACHE_WINDOW_MS"  # replaces the derived rule (tests; see racy_window_ns)
RACY_WINDOW_NS: int | None = None  # in-process override of the same (tests); None: derive it
MARGIN_NS = 15_000_000_000  # > any timestamp granularity (FAT: 2 s) plus a late flusher
DEFAULT_WINDOW_NS = 120_000_000_000  # when the kernel's writeback settings cannot be read
VM_SETTINGS = Path("/proc/sys/vm")
MOUNTINFO = Path("/proc/self/mountinfo")
NO_WRITEBACK_FS = frozenset({"tmpfs", "ramfs", "hugetlbfs", "devtmpfs"})  # dirty pages stay dirty
MAX_ENTRIES = 200_000  # per cache file
MAX_CACHE_BYTES = 64 * 1024 * 1024  # a larger cache file is ignored
MAX_CACHE_FILES = 64  # per cache directory; the least recently written are removed
# a digest, or the chunk digests of a file verified by chunks (64 hex characters a chunk)
_HEX = re.compile(r"^(?:[0-9a-f]{32,128}|(?:[0-9a-f]{64})+)$")

Entry = tuple[int, int, int, int, int, int, dict[str, str]]  # size, mtime, ctime, ino, dev, hashed_at, digests


def cache_dir() -> Path:
    """``$MANIFEST_CACHE_DIR``, else the platform's user cache directory."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    from platformdirs import user_cache_dir  # only when no override is set

    return Path(user_cache_dir("model-manifest", appauthor=False)) / "statcache"


def manifest_identity(signed_bytes: bytes) -> str:
    """The identity a verify cache is keyed by: SHA-256 of the manifest's signed bytes."""
    return hashlib.sha256(signed_bytes).hexdigest()


def file_for(directory: Path, key: tuple[str, ...]) -> Path:
    name = hashlib.sha256(json.dumps(list(key)).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return directory / f"{name}.json"


def stat_of(info: FileInfo) -> tuple[int, int, int, int, int]:
    return (info.size, info.mtime_ns, info.ctime_ns, info.ino, info.dev)


def kernel_window_ns(vm: Path = VM_SETTINGS) -> int | None:
    """How long after a page of a file was dirtied the kernel may still hold it dirty,
    plus :data:`MARGIN_NS`: ``dirty_expire_centisecs`` (a dirty page's age before it
    is due) + ``dirty_writeback_centisecs`` (how often the flusher looks). ``None`` if
    periodic writeback is off (``dirty_writeback_centisecs`` = 0: no bound at all);
    :data:`DEFAULT_WINDOW_NS` if the settings cannot be read (no ``/proc``, not Linux)."""
    try:
        expire = int((vm / "dirty_expire_centisecs").read_text().strip())
        writeback = int((vm / "dirty_writeback_centisecs").read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_WINDOW_NS
    if expire < 0 or writeback < 0:
        return DEFAULT_WINDOW_NS
    if writeback == 0:
        return None
    return (expire + writeback) * 10_000_000 + MARGIN_NS


@functools.lru_cache(maxsize=1)
def _kernel_window_ns() -> int | None:
    return kernel_window_ns()


def window_override_ns() -> int | None:
    """The window set by :data:`RACY_WINDOW_NS` or ``$MANIFEST_CACHE_WINDOW_MS`` (a whole
    number of milliseconds); ``None`` if neither is set (or the variable is not a number)."""
    if RACY_WINDOW_NS is not None:
        return RACY_WINDOW_NS
    raw = os.environ.get(WINDOW_ENV, "")
    if raw.isascii() and raw.isdigit():
        return int(raw) * 1_000_000
    return None


def racy_window_ns() -> int | None:
    """How old a file's mtime and ctime must be before its content can be tied to its
    stat; ``None``: never. An override replaces the whole derived rule (also the
    file-system rule of :func:`no_writeback`)."""
    override = window_override_ns()
    return override if override is not None else _kernel_window_ns()


def mount_types(text: str) -> dict[tuple[int, int], str]:
    """``(major, minor)`` -> file-system type, from ``/proc/self/mountinfo`` text."""
    out: dict[tuple[int, int], str] = {}
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-")
            major, minor = fields[2].split(":")
            out.setdefault((int(major), int(minor)), fields[sep + 1])
        except (ValueError, IndexError):
            continue
    return out


@functools.lru_cache(maxsize=1)
def _mount_types() -> dict[tuple[int, int], str]:
    try:
        return mount_types(MOUNTINFO.read_text(errors="replace"))
    except OSError:
        return {}


def no_writeback(dev: int) -> bool:
    """Is ``dev`` a file system whose pages are never written back (tmpfs, ramfs)? A page
    dirtied through a shared mapping there stays dirty, so later writes through it never
    move the file's timestamps."""
    try:
        return _mount_types().get((os.major(dev), os.minor(dev))) in NO_WRITEBACK_FS
    except (ValueError, OverflowError, AttributeError):
        return False


def trustworthy(stat: tuple[int, int, int, int, int], hashed_at: int) -> bool:
    """Were the file's mtime and ctime older than the racy window when it was hashed, so
    that any later write (through ``write`` or a shared mapping) must move them?"""
    _size, mtime, ctime, _ino, dev = stat
    override = window_override_ns()
    window = override if override is not None else _kernel_window_ns()
    if window is None or (override is None and no_writeback(dev)):
        return False
    return ctime > 0 and mtime + window <= hashed_at and ctime + window <= hashed_at


def _parse_entry(raw: Any) -> Entry | None:
    if not isinstance(raw, list) or len(raw) != 7:
        return None
    *nums, digests = raw
    if not all(type(n) is int and n >= 0 for n in nums) or not isinstance(digests, dict):
        return None
    if not all(isinstance(a, str) and isinstance(d, str) and _HEX.match(d) for a, d in digests.items()):
        return None
    return (nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], dict(digests))


class StatCache:
    """One cache file's entries, loaded once, written back atomically when changed."""

    def __init__(self, path: Path, key: tuple[str, ...], entries: dict[str, Entry]):
        self.path = path
        self.key = key
        self.entries = entries
        self.dirty = False

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, key: tuple[str, ...]) -> StatCache | None:
        """The cache for ``key``; empty if its file is missing or unusable. ``None`` only
        if no cache directory can be determined at all. Never raises."""
        try:
            path = file_for(cache_dir(), key)
        except Exception:
            return None
        return cls(path, key, _load(path, key))

    # -- DigestCache protocol -----------------------------------------------------------
    def get(self, info: FileInfo, algorithms: list[str]) -> dict[str, str] | None:
        """The cached digests if ``info``'s stat is exactly the one they were computed
        for, and that stat was old enough to be trusted; else ``None`` (rehash)."""
        e = self.entries.get(info.path)
        if e is None or info.ctime_ns == 0:
            return None
        stat, hashed_at, digests = e[:5], e[5], e[6]
        if stat != stat_of(info) or not trustworthy(stat, hashed_at):
            return None
        if not all(a in digests for a in algorithms):
            return None
        return {a: digests[a] for a in algorithms}

    def put(self, info: FileInfo, hashed: Hashed) -> None:
        """Record digests computed from a file whose stat was ``info`` throughout."""
        stat = stat_of(info)
        old = self.entries.get(info.path)
        if not trustworthy(stat, hashed.started_ns):
            if old is not None:  # whatever was cached is stale: the file was just written
                del self.entries[info.path]
                self.dirty = True
            return
        digests = dict(old[6]) if old is not None and old[:5] == stat else {}
        digests.update(hashed.digests)
        self.entries[info.path] = (*stat, hashed.started_ns, digests)
        self.dirty = True

    def save(self) -> None:
        """Write the cache back if anything changed (atomically; errors are ignored)."""
        if self.dirty:
            self.dirty = not _store(self.path, self.key, self.entries)

    # -- create -> verify ---------------------------------------------------------------
    def save_as(self, key: tuple[str, ...], paths: list[str]) -> None:
        """Copy the entries for ``paths`` to the cache for ``key`` (after ``create``,
        the first ``verify`` of the new manifest then needs no read). Never raises."""
        try:
            target = file_for(self.path.parent, key)
        except Exception:
            return
        entries = {p: self.entries[p] for p in paths if p in self.entries}
        if entries:
            _store(target, key, entries)


def read_doc(path: Path, key: tuple[str, ...]) -> dict[str, Any] | None:
    """A cache file's document if it is ours, of this format and for ``key``; else None.
    Never raises (corrupt JSON, deep nesting, bad UTF-8, someone else's file)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
                return None  # someone else's cache is no evidence
            data = f.read(MAX_CACHE_BYTES + 1)
        if len(data) > MAX_CACHE_BYTES:
            return None
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("key") != list(key):
            return None
        return doc
    except Exception:
        return None


def _load(path: Path, key: tuple[str, ...]) -> dict[str, Entry]:
    doc = read_doc(path, key)
    raw = doc.get("entries") if doc is not None else None
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Entry] = {}
    for p, e in list(raw.items())[:MAX_ENTRIES]:
        parsed = _parse_entry(e)
        if isinstance(p, str) and parsed is not None:
            out[p] = parsed
    return out


def _store(path: Path, key: tuple[str, ...], entries: dict[str, Entry]) -> bool:
    if len(entries) > MAX_ENTRIES:
        entries = dict(list(entries.items())[-MAX_ENTRIES:])
    return write_doc(path, key, {"entries": {p: [*e[:6], e[6]] for p, e in entries.items()}})


def write_doc(path: Path, key: tuple[str, ...], body: dict[str, Any]) -> bool:
    """Write ``body`` (plus format and key) to ``path`` atomically; False on any error."""
    doc = {"format": CACHE_FORMAT, "key": list(key), **body}
    tmp = None
    try:
        import tempfile  # only when writing

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".statcache.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        os.replace(tmp, path)
        tmp = None
        _prune(path.parent)
        return True
    except Exception:
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _prune(directory: Path) -> None:
    """Keep at most :data:`MAX_CACHE_FILES` cache files (the most recently written)."""
    try:
        files = [e for e in os.scandir(directory) if e.name.endswith(".json") and e.is_file(follow_symlinks=False)]
        if len(files) <= MAX_CACHE_FILES:
            return
        files.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
        for e in files[: len(files) - MAX_CACHE_FILES]:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
    except OSError:
        pass
