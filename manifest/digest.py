"""Streaming file digests, as fast as the machine allows and never wrong.

How it reads (each choice measured, see ``docs/performance.md``):

- ``readinto`` into one reusable buffer per worker (1 MiB: it stays in L2 while
  SHA-256 runs; larger blocks measured slower). No ``mmap``: a file truncated while
  mapped kills the process with SIGBUS, and "changed while hashed" must be a finding.
- Several files at once in threads, largest first (hashlib, blake3 and xxhash release
  the GIL), so two shards keep two cores busy.
- blake3 is also multi-threaded *inside* a large file (bigger blocks, its own thread
  pool) when there are fewer files to hash than cores, so one huge shard does not
  serialize the run. With as many files as cores, one single-threaded hasher per core
  is faster (2 GB in 4 shards on 2 cores: 0.39 s against 0.53 s with both).
- At most ``size + 1`` bytes are read from a file whose expected size is ``size``: a
  file that grew is detected without reading the rest, a FIFO or an endless file cannot
  hang the run.
- The file is ``fstat``-ed before and after it is read and compared with what discovery
  saw: a size, mtime, ctime or inode change raises :class:`FileChanged`, never a pass.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any, Protocol

from .inventory import Artifact, BeneathOpener, FileInfo

BLOCK = 1 << 20  # 1 MiB: fastest for SHA-256 here (L2-resident); see docs/performance.md
BLAKE3_BLOCK = 4 << 20  # split over blake3's threads: 2 MiB each stays in L2 (16 MiB measured 2x slower)
BLAKE3_THREADED_MIN = 32 << 20  # below this a file is hashed single-threaded (a pool costs more)
MAX_WORKERS = 8
POOL_MIN_BYTES = 16 << 20  # less than this is hashed in the calling thread: a pool (and its imports) costs more
# A local file smaller than this costs more Python work (open, two fstat, read: the GIL held) than
# hashing (the GIL released): threads only contend for the GIL. Measured on 2 cores, verify of
# 4,000 x 16 KiB: 1 thread 0.17 s, 2 threads 0.36 s; 1,500 x 64 KiB: even; 400 x 256 KiB: 2 threads ahead.
THREADED_MIN_FILE = 64 << 10
BATCH_BYTES = 1 << 20  # small files are handed to the threads in batches of about this many bytes
BATCH_FILES = 256  # and at most this many files
CHUNK_SIZE = 64 << 20  # chunk digests: chosen by measurement, see docs/performance.md
CHUNK_ALGORITHM = "sha256"


def chunk_key(chunk_size: int, algorithm: str = CHUNK_ALGORITHM) -> str:
    """The pseudo-algorithm under which a file's chunk digests travel (concatenated hex,
    one digest a chunk) through :func:`hash_files` and the stat cache. Native manifests
    chunk with SHA-256; an OMS shard bundle may use its own hash (``blake2b``)."""
    return f"{algorithm}-chunks-{chunk_size}"


def parse_chunk_key(key: str) -> tuple[str, int]:
    """``(algorithm, chunk size)`` of a :func:`chunk_key`."""
    algorithm, _, size = key.rpartition("-chunks-")
    return algorithm, int(size)


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def split_chunks(joined: str, algorithm: str = CHUNK_ALGORITHM) -> list[str]:
    width = HEX_WIDTH.get(algorithm, 64)
    return [joined[i:i + width] for i in range(0, len(joined), width)]


@dataclass(frozen=True)
class Algorithm:
    name: str
    cryptographic: bool
    factory: Callable[[], Any]  # a fresh single-threaded hasher
    threaded: Callable[[], Any] | None = None  # a hasher that may use several threads itself


def _blake3() -> Any:
    import blake3  # optional speed-up, imported on use

    return blake3.blake3()


def _blake3_threaded() -> Any:
    import blake3

    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def _xxh3() -> Any:
    import xxhash

    return xxhash.xxh3_128()


ALGORITHMS: dict[str, Algorithm] = {
    "sha256": Algorithm("sha256", True, hashlib.sha256),
    "blake3": Algorithm("blake3", True, _blake3, _blake3_threaded),
    "xxh3-128": Algorithm("xxh3-128", False, _xxh3),
}
DEFAULT_ALGORITHM = "sha256"
# Hashers beyond the native manifest's algorithms, for verifying OpenSSF Model Signing
# bundles only (``model_signing`` hashes with blake2b on request); never recorded by create.
OMS_ONLY_ALGORITHMS: dict[str, Algorithm] = {"blake2b": Algorithm("blake2b", True, hashlib.blake2b)}
HASHERS: dict[str, Algorithm] = {**ALGORITHMS, **OMS_ONLY_ALGORITHMS}
HEX_WIDTH = {"sha256": 64, "blake3": 64, "blake2b": 128, "xxh3-128": 32}


class FileChanged(Exception):
    """The file's size, mtime, ctime or inode moved while (or since) it was inspected."""


@dataclass(frozen=True, init=False)
class Hashed:
    """One file's digests and the facts the stat cache needs to trust them later."""

    digests: dict[str, str]
    started_ns: int  # wall clock just before the first stat: the racy-timestamp guard's reference

    def __init__(self, digests: dict[str, str], started_ns: int) -> None:
        # the generated __init__ of a frozen dataclass without its object.__setattr__ a field (one a file hashed)
        d = self.__dict__
        d["digests"], d["started_ns"] = digests, started_ns


class DigestCache(Protocol):
    """What :func:`hash_files` needs from a cache (see :mod:`manifest.statcache`)."""

    def get(self, info: FileInfo, algorithms: list[str]) -> dict[str, str] | None: ...
    def put(self, info: FileInfo, hashed: Hashed) -> None: ...
    def save(self) -> None: ...


def _describe(info: FileInfo, before: os.stat_result, after: os.stat_result, total: int) -> str:
    if total != info.size:
        return f"read {total} bytes, expected {info.size}"
    if before.st_ino != info.ino or before.st_dev != info.dev:
        return "replaced by another file since it was listed"
    if before.st_size != info.size:  # a chunk read whole, of a file that grew or shrank since it was listed
        return f"size went from {info.size} to {before.st_size} bytes since it was listed"
    if after.st_size != before.st_size:
        return f"size went from {before.st_size} to {after.st_size} bytes"
    if after.st_mtime_ns != before.st_mtime_ns or before.st_mtime_ns != info.mtime_ns:
        return "modification time moved"
    return "inode change time moved (written to, or its times were reset)"


def hash_one(
    artifact: Artifact,
    info: FileInfo,
    algorithms: Iterable[str],
    on_bytes: Callable[[int], None] | None = None,
    *,
    threads: bool = True,
    opener: BeneathOpener | None = None,
) -> Hashed:
    """Digest one file with every algorithm in one streaming pass (``threads``: a large
    file may use an algorithm's own multi-threaded hasher). A :func:`chunk_key` among the
    algorithms also gives the SHA-256 of each chunk, on a second thread, in the same pass.
    ``opener`` (of ``artifact``) opens a file smaller than one block, reusing its
    directory's descriptor; else ``artifact.open_with_stat`` opens it.

    Raises :class:`FileChanged` if the file is not exactly what discovery saw for the
    whole read, and ``OSError`` if it cannot be read."""
    algs = [a for a in algorithms if a in HASHERS]
    ckey = next((a for a in algorithms if a not in HASHERS), None)
    if artifact.remote:  # an object in storage: ranged reads, version checked after (manifest.remote)
        from .remote import hash_stream

        out, chunks, started = hash_stream(artifact, info, algs, parse_chunk_key(ckey) if ckey else None, on_bytes)  # type: ignore[arg-type]
        if ckey is not None:
            out[ckey] = "".join(chunks)
        return Hashed(out, started)
    if ckey is None and info.size < BLOCK:
        return _hash_small(artifact, info, algs, on_bytes, opener)
    big = threads and info.size >= BLAKE3_THREADED_MIN
    hashers: dict[str, Any] = {}
    for a in algs:
        alg = HASHERS[a]
        hashers[a] = alg.threaded() if (big and alg.threaded is not None) else alg.factory()
    updates = [h.update for h in hashers.values()]
    limit = info.size + 1  # never read past what is expected plus one byte
    block = BLAKE3_BLOCK if big and any(HASHERS[a].threaded for a in algs) else BLOCK
    buf = bytearray(min(block, limit))
    view = memoryview(buf)
    started = time.time_ns()
    chunker = None
    if ckey is not None:
        calg, csize = parse_chunk_key(ckey)
        chunker = _Chunker(csize, 4, len(buf), HASHERS[calg].factory)
    try:
        return _read_and_hash(artifact, info, hashers, updates, limit, view, chunker, ckey, started, on_bytes)
    finally:
        if chunker is not None:
            chunker.close()


def _read_upto(read: Callable[[int], bytes], limit: int) -> bytes:
    """``limit`` bytes through ``read``, or fewer at the end of the file: a short read (rare
    on a regular file) is read on until the end."""
    data = read(limit)
    while len(data) < limit:
        more = read(limit - len(data))
        if not more:
            break
        data += more
    return data


def _hash_small(artifact: Artifact, info: FileInfo, algs: list[str], on_bytes: Callable[[int], None] | None,
                opener: BeneathOpener | None = None) -> Hashed:
    """A file smaller than one block: one read into a fresh bytes object, no buffer or
    loop to set up (per-file overhead is what 10,000 small files cost). Through an
    ``opener``: one ``open`` beneath a directory already walked to, and ``os.read`` on
    the descriptor (no file object)."""
    started = time.time_ns()
    limit = info.size + 1  # never read past what is expected plus one byte
    if opener is not None:
        fd, before = opener.open(info.path)
        try:
            data = _read_upto(partial(os.read, fd), limit)
            after = os.fstat(fd)
        finally:
            os.close(fd)
    else:
        f, before = artifact.open_with_stat(info.path)
        with f:
            data = _read_upto(f.read, limit)
            after = os.fstat(f.fileno())
    if on_bytes is not None:
        on_bytes(len(data))
    _check_unchanged(info, before, after, len(data), info.size)
    out = {}
    for a in algs:
        h = HASHERS[a].factory()
        h.update(data)
        out[a] = h.hexdigest()
    return Hashed(out, started)


def _read_and_hash(artifact: Artifact, info: FileInfo, hashers: dict[str, Any], updates: list[Any], limit: int, view: memoryview,
                   chunker: _Chunker | None, ckey: str | None, started: int, on_bytes: Callable[[int], None] | None) -> Hashed:
    total = 0
    f, before = artifact.open_with_stat(info.path)
    with f:
        fd = f.fileno()
        if info.size > BLOCK and hasattr(os, "posix_fadvise"):
            try:  # a larger read-ahead window when the file is not in the page cache
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:  # pragma: no cover - some file systems refuse advice
                pass
        readinto = f.readinto  # type: ignore[attr-defined]
        while total < limit:
            want = limit - total
            if chunker is not None:
                i = chunker.free.get()
                if i < 0:  # the chunk thread failed (its error is set first): that error, not a short read
                    assert chunker.error is not None
                    raise chunker.error
                view = chunker.bufs[i]
            n = readinto(view if want >= len(view) else view[:want])
            if not n:
                if chunker is not None:
                    chunker.free.put(i)
                break
            chunk = view if n == len(view) else view[:n]
            for u in updates:
                u(chunk)
            if chunker is not None:
                chunker.work.put((i, n))
            total += n
            if on_bytes is not None:
                on_bytes(n)
        after = os.fstat(fd)
    _check_unchanged(info, before, after, total, info.size)
    out = {a: h.hexdigest() for a, h in hashers.items()}
    if chunker is not None and ckey is not None:
        out[ckey] = chunker.result()
    return Hashed(out, started)


def _check_unchanged(info: FileInfo, before: os.stat_result, after: os.stat_result, total: int, want: int) -> None:
    """Raise :class:`FileChanged` unless ``want`` bytes were read and the file's size, mtime,
    ctime, inode and device are the same before and after the read and as discovery saw
    them (its ctime when it recorded one)."""
    if not (
        total == want
        and before.st_size == after.st_size == info.size
        and before.st_mtime_ns == after.st_mtime_ns == info.mtime_ns
        and before.st_ino == after.st_ino == info.ino
        and before.st_dev == after.st_dev == info.dev
        and before.st_ctime_ns == after.st_ctime_ns
        and (not info.ctime_ns or before.st_ctime_ns == info.ctime_ns)
    ):
        raise FileChanged(_describe(info, before, after, total if total != want else info.size))


class _Chunker:
    """Chunk digests of the blocks one reader hands over, on a thread of their own: the
    reader keeps the whole-file hash, this thread the chunk hashes, both over the same
    buffers (one read of the file). A buffer goes back to the reader once hashed here."""

    def __init__(self, chunk_size: int, nbufs: int, block: int, factory: Callable[[], Any] = hashlib.sha256):
        from _queue import SimpleQueue  # the C queue: no import of queue/heapq

        self.chunk_size = chunk_size
        self.factory = factory
        self.bufs = [memoryview(bytearray(block)) for _ in range(nbufs)]
        self.free: Any = SimpleQueue()
        self.work: Any = SimpleQueue()
        for i in range(nbufs):
            self.free.put(i)
        self.digests: list[str] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="manifest-chunks", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        h = self.factory()
        filled = 0
        size = self.chunk_size
        try:
            while True:
                i, n = self.work.get()
                if i is None:
                    break
                view = self.bufs[i][:n]
                pos = 0
                while pos < n:
                    take = min(n - pos, size - filled)
                    h.update(view[pos:pos + take])
                    filled += take
                    pos += take
                    if filled == size:
                        self.digests.append(h.hexdigest())
                        h = self.factory()
                        filled = 0
                self.free.put(i)
            if filled:
                self.digests.append(h.hexdigest())
        except BaseException as e:  # hashlib does not fail on a buffer; if a hasher did, the reader raises this
            self.error = e
            self.free.put(-1)

    def close(self) -> None:
        if self.thread.is_alive():
            self.work.put((None, 0))
            self.thread.join()

    def result(self) -> str:
        self.close()
        if self.error is not None:
            raise self.error
        return "".join(self.digests)


def hash_chunk(artifact: Artifact, info: FileInfo, index: int, chunk_size: int, on_bytes: Callable[[int], None] | None = None,
               algorithm: str = CHUNK_ALGORITHM) -> Hashed:
    """The digest (SHA-256 unless ``algorithm`` says otherwise) of chunk ``index`` of one
    file (``{chunk_key: hex}``), read with its
    own descriptor so that every core can take a chunk of the same file. The file's stat
    is checked against discovery before and after, as for a whole file; the last chunk
    reads one byte more, so a file that grew is detected."""
    start = index * chunk_size
    want = min(chunk_size, info.size - start)
    if artifact.remote:
        from .remote import hash_stream

        _, chunks, started_ns = hash_stream(artifact, info, [], (algorithm, chunk_size), on_bytes, start, want)  # type: ignore[arg-type]
        return Hashed({chunk_key(chunk_size, algorithm): "".join(chunks)}, started_ns)
    last = start + want >= info.size
    limit = want + 1 if last else want
    h = HASHERS[algorithm].factory()
    buf = bytearray(min(BLOCK, limit))
    view = memoryview(buf)
    total = 0
    started = time.time_ns()
    f, before = artifact.open_with_stat(info.path)
    with f:
        fd = f.fileno()
        f.seek(start)
        readinto = f.readinto  # type: ignore[attr-defined]
        while total < limit:
            left = limit - total
            n = readinto(view if left >= len(buf) else view[:left])
            if not n:
                break
            h.update(view if n == len(buf) else view[:n])
            total += n
            if on_bytes is not None:
                on_bytes(n)
        after = os.fstat(fd)
    # in the file's offsets, as a whole file's read says it: "read 3001 bytes, expected 3000"
    _check_unchanged(info, before, after, start + total, start + want)
    return Hashed({chunk_key(chunk_size, algorithm): h.hexdigest()}, started)


def hash_file(
    artifact: Artifact, info: FileInfo, algorithms: Iterable[str], on_bytes: Callable[[int], None] | None = None
) -> dict[str, str]:
    """Digest one file; ``{algorithm: hex digest}``. Raises :class:`FileChanged`."""
    return hash_one(artifact, info, algorithms, on_bytes).digests


@dataclass(frozen=True)
class Unit:
    """One work unit of the digest engine, as plain data another process can run: a whole
    file (``index`` None, with ``algorithms``; a :func:`chunk_key` among them adds chunk
    digests) or chunk ``index`` of a file verified by chunks (``chunk_size``, ``chunk_algorithm``)."""

    info: FileInfo
    index: int | None
    algorithms: tuple[str, ...] = ()
    chunk_size: int = 0
    chunk_algorithm: str = CHUNK_ALGORITHM


def hash_unit(artifact: Artifact, unit: Unit, on_bytes: Callable[[int], None] | None = None, *, threads: bool = True) -> Hashed:
    """Hash one :class:`Unit` (:func:`hash_chunk` or :func:`hash_one`); raises as they do."""
    if unit.index is not None:
        return hash_chunk(artifact, unit.info, unit.index, unit.chunk_size, on_bytes, unit.chunk_algorithm)
    return hash_one(artifact, unit.info, unit.algorithms, on_bytes, threads=threads)


class UnitRunner(Protocol):
    """Runs a job's units somewhere other than this process's threads (e.g. as Ray tasks,
    :mod:`manifest.rayunits`). ``start`` takes every unit at once and yields, in the order
    given, each unit's :class:`Hashed` or the exception hashing it raised (``OSError``,
    :class:`FileChanged`): those become findings. An exception raised *by the iterator*
    (the unit could not be run at all, e.g. its worker was lost) ends the job and
    propagates to the caller. ``close`` stops what is still running (idempotent)."""

    def start(self, artifact: Artifact, units: list[Unit]) -> Iterator[Hashed | Exception]: ...
    def close(self) -> None: ...


def default_workers(n_files: int) -> int:
    """One worker per core (capped), never more than there are files."""
    return max(1, min(n_files, os.cpu_count() or 1, MAX_WORKERS))


class _Cancelled(Exception):
    """Internal: the run stopped; a worker abandons its file between two blocks."""


def hash_files(
    artifact: Artifact,
    infos: list[FileInfo],
    algorithms: list[str],
    *,
    workers: int | None = None,
    cache: DigestCache | None = None,
    on_bytes: Callable[[int], None] | None = None,
    chunk_size: int | None = None,
    chunked: dict[str, int] | None = None,
    chunk_algorithm: str = CHUNK_ALGORITHM,
    runner: UnitRunner | None = None,
) -> HashJob:
    """Start hashing ``infos`` now; iterate the job for ``(info, digests or error, from_cache)``.

    Files the cache vouches for come first (no read at all); the rest are hashed by
    ``workers`` threads, largest first (longest-processing-time-first keeps every core
    busy until the end), and yielded in that deterministic order. Errors are yielded,
    not raised: :class:`FileChanged` or ``OSError``. The threads start at once, so the
    caller can do cheap work meanwhile and :meth:`HashJob.close` the job if that work
    decides the outcome (the workers then stop within one block).

    Chunk digests (``{chunk_key(size): concatenated hex}`` beside the others):
    ``chunk_size`` adds them for every file larger than one chunk when SHA-256 is among
    ``algorithms`` (``create``: both in one read); ``chunked`` (path -> chunk size) hashes
    those files by chunks only, each chunk a task of its own, so that every core works on
    one big file (``verify``), with ``chunk_algorithm`` (SHA-256 unless an OMS shard
    bundle names another).

    ``runner`` (a :class:`UnitRunner`) runs the units (whole files and chunks) instead of
    this process's threads; the cache, the order and the results are the same."""
    return HashJob(artifact, infos, algorithms, workers=workers, cache=cache, on_bytes=on_bytes, chunk_size=chunk_size, chunked=chunked,
                   chunk_algorithm=chunk_algorithm, runner=runner)


class _OrderedPool:
    """``map(fn, items)`` on ``n`` threads, results in order; items are taken in order.

    What ``ThreadPoolExecutor.map`` does, minus what this needs none of (futures,
    ``logging``, ``queue``: about 7 ms of imports before the first byte is hashed).
    ``fn`` should not raise (an exception becomes its result)."""

    def __init__(self, fn: Callable[[Any], Any], items: list[Any], n: int):
        self._fn, self._items = fn, items
        self._results: list[Any] = [None] * len(items)
        self._done = [threading.Event() for _ in items]
        self._next = 0
        self._stopped = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"manifest-hash-{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                i = self._next
                if self._stopped or i >= len(self._items):
                    return
                self._next = i + 1
            try:
                self._results[i] = self._fn(self._items[i])
            except BaseException as e:  # fn must not raise; if it does, the consumer must not wait forever
                self._results[i] = e if isinstance(e, Exception) else RuntimeError(f"hashing thread stopped: {e!r}")
            finally:
                self._done[i].set()

    def __iter__(self) -> Iterator[Any]:
        for i, done in enumerate(self._done):
            done.wait()
            res = self._results[i]
            assert res is not None
            yield res

    def shutdown(self) -> None:
        """Start no new item, wait for the running ones (``fn`` must notice the stop)."""
        with self._lock:
            self._stopped = True
        for t in self._threads:
            t.join()


def _counted(results: Iterator[Hashed | Exception], units: list[Unit], on_bytes: Callable[[int], None] | None) -> Iterator[Hashed | Exception]:
    """A runner's results, each unit's bytes reported to ``on_bytes`` (progress) as it arrives."""
    for unit, res in zip(units, results, strict=False):
        if on_bytes is not None:
            info = unit.info
            on_bytes(info.size if unit.index is None else min(unit.chunk_size, info.size - unit.index * unit.chunk_size))
        yield res


class HashJob:
    """A running :func:`hash_files`: iterate it once, or close it (both idempotent)."""

    def __init__(self, artifact: Artifact, infos: list[FileInfo], algorithms: list[str], *, workers: int | None,
                 cache: DigestCache | None, on_bytes: Callable[[int], None] | None,
                 chunk_size: int | None = None, chunked: dict[str, int] | None = None, chunk_algorithm: str = CHUNK_ALGORITHM,
                 runner: UnitRunner | None = None):
        self._cache = cache
        self._on_bytes = on_bytes
        self.cached: list[tuple[FileInfo, dict[str, str]]] = []
        chunked = chunked or {}
        # The algorithms of the files that are not hashed with just ``algorithms``.
        algs_of: dict[str, list[str]] = {}
        csize = chunk_size or 0
        whole_chunks = csize > 0 and CHUNK_ALGORITHM in algorithms
        if cache is None and not chunked and not whole_chunks:
            todo = list(infos)  # every file hashed, with ``algorithms``
        else:
            todo = []
            for info in infos:
                if info.path in chunked:
                    algs = algs_of[info.path] = [chunk_key(chunked[info.path], chunk_algorithm)]
                elif whole_chunks and info.size > csize:
                    algs = algs_of[info.path] = [*algorithms, chunk_key(csize)]
                else:
                    algs = algorithms
                got = cache.get(info, algs) if cache is not None else None
                if got is not None:
                    self.cached.append((info, got))
                else:
                    todo.append(info)
        todo.sort(key=attrgetter("path"))
        todo.sort(key=attrgetter("size"), reverse=True)  # largest first, by path among equals (the sort is stable)
        self.todo = todo
        # A task is a whole file (index None) or one chunk of a file verified by chunks;
        # the chunks of a file are consecutive, so results can be gathered in order.
        tasks: list[tuple[FileInfo, int | None]] = []
        for info in todo:
            if info.path in chunked:
                tasks.extend((info, k) for k in range(chunk_count(info.size, chunked[info.path])))
            else:
                tasks.append((info, None))
        self._tasks = tasks
        self._chunked = chunked
        self._chunk_algorithm = chunk_algorithm
        n = workers if workers and workers > 0 else default_workers(len(tasks))
        # Intra-file threads only when the files hashed at once cannot keep every core busy.
        inner_threads = min(n, len(tasks)) < (os.cpu_count() or 1)
        self._stop = threading.Event()  # set when the consumer goes away (Ctrl-C, --fail-fast): workers quit within one block
        self._closed = False

        def progress(k: int) -> None:
            if self._stop.is_set():
                raise _Cancelled
            if on_bytes is not None:
                on_bytes(k)

        # A small file hashed with just these (no chunk key among them) is what hash_one hands to _hash_small.
        plain = algorithms if all(a in HASHERS for a in algorithms) else None

        report: Callable[[int], None] | None = progress  # what the hashers call with each block's size

        def work(task: tuple[FileInfo, int | None], opener: BeneathOpener | None) -> Hashed | Exception:
            info, index = task
            try:
                if opener is not None and plain is not None and index is None and info.size < BLOCK and info.path not in algs_of:
                    return _hash_small(artifact, info, plain, report, opener)
                if index is not None:
                    return hash_chunk(artifact, info, index, chunked[info.path], report, chunk_algorithm)
                return hash_one(artifact, info, algs_of.get(info.path, algorithms), report, threads=inner_threads, opener=opener)
            except Exception as e:  # OSError, FileChanged, or InputError (the file became a link)
                return e

        # A local artifact read the standard way: each batch of small files is opened through
        # one BeneathOpener (its directory walked to once, not once a file), closed after it.
        direct = not artifact.remote and type(artifact).open_with_stat is Artifact.open_with_stat

        def work_batch(batch: list[tuple[FileInfo, int | None]], guard: bool = True) -> list[Hashed | Exception]:
            out: list[Hashed | Exception] = []
            opener = BeneathOpener(artifact) if direct else None
            try:
                for t in batch:
                    if not guard:  # in the calling thread: Ctrl-C propagates
                        out.append(work(t, opener))
                        continue
                    try:
                        out.append(work(t, opener))
                    except BaseException as e:  # work does not raise; if it did, every file still gets a result
                        out.append(e if isinstance(e, Exception) else RuntimeError(f"hashing thread stopped: {e!r}"))
            finally:
                if opener is not None:
                    opener.close()
            return out

        self._pool: Any = None
        self._runner = runner
        self._results: Iterator[Hashed | Exception]
        # Threads pay off for bytes the hashers read with the GIL released: large local files,
        # and any remote object (its reads wait on the network, not the GIL).
        threaded_bytes = sum(i.size for i in todo if artifact.remote or i.size >= THREADED_MIN_FILE or i.path in chunked)
        if runner is not None and tasks:
            units = [Unit(info, None, tuple(algs_of.get(info.path, algorithms))) if k is None else Unit(info, k, (), chunked[info.path], chunk_algorithm)
                     for info, k in tasks]
            self._results = _counted(runner.start(artifact, units), units, on_bytes)
            return
        # Small files are hashed in batches (about BATCH_BYTES, at most BATCH_FILES files): on
        # threads, handing out work and waiting for it costs per batch, not per file; and a
        # batch opens its files through one BeneathOpener.
        batches: list[list[tuple[FileInfo, int | None]]] = []
        size = 0
        for t in tasks:
            small = t[1] is None and t[0].size < BATCH_BYTES
            if small and batches and size + t[0].size <= BATCH_BYTES and len(batches[-1]) < BATCH_FILES and batches[-1][-1][1] is None:
                batches[-1].append(t)
                size += t[0].size
            else:
                batches.append([t])
                size = t[0].size if small else BATCH_BYTES
        if threaded_bytes < POOL_MIN_BYTES:  # hashed while iterated, in this thread
            report = on_bytes  # nothing to stop: a file is hashed only when the consumer asks for it
            self._results = itertools.chain.from_iterable(work_batch(b, False) for b in batches)
        else:
            self._pool = _OrderedPool(work_batch, batches, min(n, len(batches)))
            self._results = itertools.chain.from_iterable(self._pool)

    def __iter__(self) -> Iterator[tuple[FileInfo, dict[str, str] | Exception, bool]]:
        if self._closed:
            return  # a stopped job has nothing to say (its files were abandoned, not unreadable)
        try:
            for info, got in self.cached:
                if self._on_bytes is not None:
                    self._on_bytes(info.size)
                yield info, got, True
            results = zip(self._tasks, self._results, strict=True)
            for (info, index), first in results:
                res = first
                if index is not None:  # the first chunk of a file verified by chunks: gather the rest
                    size = self._chunked[info.path]
                    parts = [first] + [r for _, r in itertools.islice(results, chunk_count(info.size, size) - 1)]
                    err = next((r for r in parts if not isinstance(r, Hashed)), None)
                    if err is None:
                        key = chunk_key(size, self._chunk_algorithm)
                        hashed = [r for r in parts if isinstance(r, Hashed)]
                        res = Hashed({key: "".join(r.digests[key] for r in hashed)}, min(r.started_ns for r in hashed))
                    else:
                        res = err
                if isinstance(res, Hashed):
                    if self._cache is not None:
                        self._cache.put(info, res)
                    yield info, res.digests, False
                else:
                    yield info, res, False
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (within one block), wait for them, save the cache."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown()
        if self._runner is not None:
            self._runner.close()
        if self._cache is not None:
            self._cache.save()
