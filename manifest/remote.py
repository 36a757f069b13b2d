"""Remote targets: an artifact in object storage (``s3://``, ``gs://``, ``file://``, any
fsspec URL), read through fsspec and its backends (s3fs, gcsfs, ...).

This is the storage boundary only: discovery lists the prefix (sizes and each object's
version, e.g. its ETag or generation, come from the listing), and every read is a range
read. The format readers, sections, comparisons and the report are the local path's.

- Headers before download: the readers ask for what they need (8 bytes then the
  safetensors header, a pointer's first KiB, a JSON side file whole), so a truncated
  file, a Git LFS pointer or a broken header is rejected having read a few KB of it.
  Every byte read is counted (``facts.bytes_read``).
- Digests stream in fixed-size blocks, a bounded number in flight per file (memory is
  ``workers x (in-flight + 1) x block``: the reads in flight and the block being hashed), chunk by chunk when the manifest has chunk digests.
  After a file (or chunk) is read, its version is asked again: if it moved since the
  listing, the result is :class:`~manifest.digest.FileChanged`, never a pass.
- No stat cache: an object's digest is always computed from its bytes.

fsspec is imported here, on first use, and nowhere on the local path.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .errors import InputError, UsageError
from .findings import Finding
from .inventory import MAX_SMALL_FILE, Artifact, FileInfo, ancestors, is_ignored
from .paths import find_collisions, is_url, path_problem

READ_BLOCK = 8 << 20  # one ranged GET of a digest stream
IN_FLIGHT = 4  # ranged GETs in flight per stream: memory per stream <= (IN_FLIGHT + 1) * READ_BLOCK
# The field that names one version of an object, the first one present: S3 ETag, Azure etag,
# GCS generation, HfFileSystem blob_id; else (a local file system) mtime and inode. One field
# only: a listing and a HEAD state others differently (S3 LastModified in ms vs. seconds,
# VersionId absent vs. None), which must not read as a change.
_VERSION_KEYS = ("ETag", "etag", "generation", "blob_id")
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}

# A test seam: called as hook(artifact, rel, start) after each digest block is fetched.
_after_block: Callable[[RemoteArtifact, str, int], None] | None = None


def _version(info: Mapping[str, Any]) -> str:
    """The version of one object as its listing or ``info`` states it ("" when the
    backend states none: then only the size is compared)."""
    for k in _VERSION_KEYS:
        if info.get(k) not in (None, ""):
            return f"{k}={info[k]}"
    if info.get("mtime") is not None:
        return f"mtime={info['mtime']};ino={info.get('ino')}"
    return ""


def _os_error(e: BaseException) -> OSError:
    if isinstance(e, OSError):
        return e
    return OSError(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """``--storage-options JSON``: a JSON object of backend options."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"--storage-options is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise UsageError("--storage-options must be a JSON object, e.g. '{\"anon\": true}'")
    return value


def filesystem(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The fsspec file system for ``url`` and the path in it (one-line errors when the
    backend is not installed or the URL is not understood)."""
    scheme = url.split("://", 1)[0].lower()
    extra = EXTRAS.get(scheme)
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{url}: remote targets need fsspec: pip install 'model-manifest[{extra or 's3'}]'") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as e:
        how = f"pip install 'model-manifest[{extra}]'" if extra else f"install the fsspec backend for {scheme}://"
        raise UsageError(f"{url}: no storage backend for {scheme}:// ({e.name or e}); {how}") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"{url}: cannot open ({' '.join(str(e).split())[:200]})") from None
    return fs, path.rstrip("/")


@dataclass(frozen=True)
class RemoteInfo(FileInfo):
    """A listed object: its size and the version it had when listed."""

    version: str = ""


@dataclass
class RemoteArtifact(Artifact):
    """An artifact under a prefix of an fsspec file system. ``open`` gives a file that
    reads by ranges; :meth:`blocks` streams a byte range for the digest engine."""

    fs: Any = None
    base: str = ""  # the prefix, as a path of ``fs``
    url: str = ""
    bytes_read: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    remote = True

    def full(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def count(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n
            self.requests += 1

    def add_reads(self, n: int, requests: int) -> None:
        """Count reads made for this artifact elsewhere (a Ray worker hashing its units)."""
        with self._lock:
            self.bytes_read += n
            self.requests += requests

    def fetch(self, rel: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``rel``: one ranged read."""
        if end <= start:
            return b""
        try:
            data = self.fs.cat_file(self.full(rel), start=start, end=end)
        except Exception as e:
            raise _os_error(e) from None
        self.count(len(data))
        return bytes(data)

    def open(self, rel: str) -> Any:
        return RangeFile(self, rel, self.files[rel].size)

    def open_with_stat(self, rel: str) -> Any:  # pragma: no cover - the digest engine reads remote files by blocks()
        raise OSError(f"{rel}: a remote object has no local descriptor")

    def read_bytes(self, rel: str, cap: int = MAX_SMALL_FILE) -> bytes:
        info = self.files[rel]
        if info.size > cap:
            raise InputError(f"{rel} is {info.size} bytes, over the {cap}-byte cap for this kind of file", path=rel)
        return self.fetch(rel, 0, info.size)

    # -- digests -----------------------------------------------------------------
    def check_version(self, info: FileInfo) -> None:
        """Raise :class:`FileChanged` when the object is no longer the one listed."""
        from .digest import FileChanged

        path = self.full(info.path)
        try:
            self.fs.invalidate_cache(path)
            now = self.fs.info(path)
        except FileNotFoundError:
            raise FileChanged("deleted since it was listed") from None
        except Exception as e:
            raise _os_error(e) from None
        size = now.get("size")
        if size != info.size:
            raise FileChanged(f"size went from {info.size} to {size} bytes since it was listed")
        version = _version(now)
        want = getattr(info, "version", "")
        if version != want:
            raise FileChanged(f"replaced since it was listed ({_short(want)} -> {_short(version)})")

    def blocks(self, info: FileInfo, start: int, length: int, on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
        """Bytes ``[start, start + length)`` of a file in order, in blocks of
        :data:`READ_BLOCK`, with at most :data:`IN_FLIGHT` ranged reads in flight."""
        from concurrent.futures import ThreadPoolExecutor

        ranges = [(s, min(s + READ_BLOCK, start + length)) for s in range(start, start + length, READ_BLOCK)]
        if not ranges:
            return
        with ThreadPoolExecutor(max_workers=min(IN_FLIGHT, len(ranges)), thread_name_prefix="manifest-get") as ex:
            pending: list[Any] = []
            it = iter(ranges)
            try:
                for s, e in it:
                    pending.append((s, ex.submit(self.fetch, info.path, s, e)))
                    if len(pending) >= IN_FLIGHT:
                        break
                while pending:
                    s, fut = pending.pop(0)
                    data = fut.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.append((nxt[0], ex.submit(self.fetch, info.path, *nxt)))
                    if _after_block is not None:
                        _after_block(self, info.path, s)
                    if on_bytes is not None:
                        on_bytes(len(data))
                    yield data
            finally:
                for _, fut in pending:
                    fut.cancel()


def _short(version: str) -> str:
    return version if len(version) <= 60 else version[:57] + "..."


class RangeFile:
    """A read-only file over ranged reads: each ``read(n)`` is one request for what is
    asked, nothing more (no read-ahead: what the readers need is what is fetched)."""

    def __init__(self, art: RemoteArtifact, rel: str, size: int):
        self._art, self._rel, self._size, self._pos = art, rel, size, 0

    def read(self, n: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        data = self._art.fetch(self._rel, self._pos, end)
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos if whence == 1 else self._size + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> RangeFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def hash_stream(art: RemoteArtifact, info: FileInfo, algorithms: list[str], chunk: tuple[str, int] | None,
                on_bytes: Callable[[int], None] | None, start: int = 0, length: int | None = None) -> tuple[dict[str, str], list[str], int]:
    """Digest ``[start, start + length)`` of a remote file with ``algorithms`` and, with
    ``chunk`` (algorithm, chunk size), the digest of each chunk; then check the object's
    version. Returns the digests, the chunk digests and the wall-clock start (ns)."""
    from .digest import HASHERS, FileChanged

    started = time.time_ns()
    length = info.size - start if length is None else length
    hashers = {a: HASHERS[a].factory() for a in algorithms}
    chunks: list[str] = []
    chunk_factory = HASHERS[chunk[0]].factory if chunk else None
    chunk_size = chunk[1] if chunk else 0
    ch = chunk_factory() if chunk_factory is not None else None
    filled = 0
    total = 0
    try:
        for data in art.blocks(info, start, length, on_bytes):
            view = memoryview(data)
            for h in hashers.values():
                h.update(view)
            if ch is not None and chunk_factory is not None:
                pos = 0
                while pos < len(view):
                    take = min(len(view) - pos, chunk_size - filled)
                    ch.update(view[pos:pos + take])
                    filled += take
                    pos += take
                    if filled == chunk_size:
                        chunks.append(ch.hexdigest())
                        ch, filled = chunk_factory(), 0
            total += len(data)
    except OSError:
        art.check_version(info)  # a read that failed because the object moved (e.g. shrank) is file-changed
        raise
    if ch is not None and filled:
        chunks.append(ch.hexdigest())
    if total != length:
        raise FileChanged(f"read {start + total} bytes, expected {start + length}")
    art.check_version(info)
    return {a: h.hexdigest() for a, h in hashers.items()}, chunks, started


# ----------------------------------------------------------------------------- the target
@dataclass
class RemoteTarget:
    """A resolved remote target: the URL, its file system and the prefix in it."""

    url: str
    fs: Any
    base: str
    storage_options: dict[str, Any]
    _art: RemoteArtifact | None = None
    extra_bytes: int = 0  # read outside the artifact (the manifest)

    @classmethod
    def open(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> RemoteTarget:
        fs, base = filesystem(url, storage_options)
        return cls(url.rstrip("/"), fs, base, dict(storage_options or {}))

    @property
    def protocol(self) -> str:
        p = self.fs.protocol
        return p[0] if isinstance(p, (tuple, list)) else str(p)

    def rel_of(self, url: str) -> str | None:
        """``url`` relative to the prefix, when it lies below it."""
        if is_url(url):
            if not url.startswith(self.url + "/"):
                return None
            return url[len(self.url) + 1:]
        return None

    def discover(self, ignore: list[str] | tuple[str, ...]) -> RemoteArtifact:
        """List every object below the prefix (sizes and versions from the listing)."""
        try:
            self.fs.invalidate_cache(self.base)
            listing = self.fs.find(self.base, detail=True, withdirs=True)
        except Exception as e:
            raise InputError(f"cannot list {self.url}: {' '.join(str(_os_error(e)).split())[:200]}", code="unreadable") from None
        ignore_t = tuple(ignore)
        files: dict[str, FileInfo] = {}
        problems: list[Finding] = []
        marked_dirs: list[str] = []
        prefix = self.base + "/"
        links: list[str] = []  # symlinks (file://): never followed, nor anything listed below one
        for name, entry in sorted(listing.items()):
            if name == self.base or not name.startswith(prefix) or name == prefix:
                continue
            rel = name[len(prefix):]
            kind = entry.get("type")
            if any(rel.startswith(link + "/") for link in links):
                continue
            if entry.get("islink"):
                links.append(rel)
                if not is_ignored(rel, ignore_t) and path_problem(rel) is None:
                    problems.append(Finding.of("unsupported-file", "symlink; it is never followed (only regular files are fingerprinted)", path=rel))
                continue
            if kind == "directory" or (rel.endswith("/") and not entry.get("size")):
                d = rel.rstrip("/")
                if d and path_problem(d) is None and not is_ignored(d + "/", ignore_t):  # a directory rule; an exact rule names one file
                    marked_dirs.append(d)
                continue
            if is_ignored(rel, ignore_t):
                continue
            why = path_problem(rel)
            if why is not None:
                shown = rel.encode("unicode_escape").decode("ascii")
                problems.append(Finding.of("unsafe-path", f"object key: {why}; the object is not read", path=shown))
                continue
            if kind not in (None, "file"):
                problems.append(Finding.of("unsupported-file", f"not a regular file ({kind}: a FIFO, socket or device); it is never opened", path=rel))
                continue
            files[rel] = RemoteInfo(rel, int(entry.get("size") or 0), 0, 0, 0, version=_version(entry))
        if not files and not problems:
            raise InputError(f"{self.url}: no objects under this prefix (or it cannot be listed)", code="unreadable")
        for a, b in find_collisions(list(files)):
            problems.append(Finding.of("path-collision", f"collides with {a} on case-insensitive or normalizing file systems", path=b))
        dirs = sorted(ancestors(files) | {d for d in marked_dirs if not any(d == i.rstrip("/") for i in ignore_t)})
        art = RemoteArtifact(root=PurePosixPath(self.base), files=dict(sorted(files.items())), problems=problems,  # type: ignore[arg-type]
                             dirs=dirs, ignore=ignore_t, fs=self.fs, base=self.base, url=self.url)
        self._art = art
        return art

    def read_manifest(self, url: str | None, cap: int) -> tuple[bytes, str]:
        """The manifest at ``url`` (default: ``manifest.json`` in the prefix), capped."""
        from .inventory import DEFAULT_MANIFEST_NAME

        where = url or f"{self.url}/{DEFAULT_MANIFEST_NAME}"
        fs, path = (self.fs, f"{self.base}/{DEFAULT_MANIFEST_NAME}") if url is None else filesystem(url, self.storage_options)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise InputError(f"manifest {where} not found (create one with: manifest create DIR, and upload it)", code="manifest-invalid") from None
        except Exception as e:
            raise InputError(f"cannot read manifest {where}: {_os_error(e)}", code="unreadable") from None
        if info.get("type") not in (None, "file"):
            raise InputError(f"manifest {where} is not a file", code="manifest-invalid")
        if (info.get("size") or 0) > cap:
            raise InputError(f"manifest {where} is over the {cap}-byte cap", code="manifest-invalid")
        try:
            data = bytes(fs.cat_file(path, start=0, end=cap + 1))
        except Exception as e:
            raise InputError(f"cannot read manifest {where}: {_os_error(e)}", code="unreadable") from None
        self.extra_bytes += len(data)
        if len(data) > cap:
            raise InputError(f"manifest {where} is over the {cap}-byte cap", code="manifest-invalid")
        return data, where

    @property
    def bytes_read(self) -> int:
        return self.extra_bytes + (self._art.bytes_read if self._art is not None else 0)

    def facts(self) -> dict[str, Any]:
        return {"kind": "remote", "url": self.url, "protocol": self.protocol}
