"""Streaming file digests.

Files are read in large blocks (never whole), at most ``size + 1`` bytes each, and
stat'ed before and after: a file that changes while it is read is reported, never
passed. Several files are hashed at once in threads (hashlib and blake3 release the GIL).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from .inventory import Artifact, FileInfo

BLOCK = 1 << 20  # 1 MiB


@dataclass(frozen=True)
class Algorithm:
    name: str
    cryptographic: bool
    factory: Callable[[], Any]


def _blake3() -> Any:
    import blake3  # noqa: PLC0415 - optional, imported on use

    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def _xxh3() -> Any:
    import xxhash  # noqa: PLC0415

    return xxhash.xxh3_128()


ALGORITHMS: dict[str, Algorithm] = {
    "sha256": Algorithm("sha256", True, hashlib.sha256),
    "blake3": Algorithm("blake3", True, _blake3),
    "xxh3-128": Algorithm("xxh3-128", False, _xxh3),
}
DEFAULT_ALGORITHM = "sha256"


class FileChanged(Exception):
    """The file's size or mtime moved while it was read."""


class DigestCache(Protocol):
    def get(self, info: FileInfo, algorithm: str) -> str | None: ...
    def put(self, info: FileInfo, algorithm: str, digest: str) -> None: ...


def hash_file(artifact: Artifact, info: FileInfo, algorithms: Iterable[str], on_bytes: Callable[[int], None] | None = None) -> dict[str, str]:
    """Digest one file with every algorithm in one pass. Raises :class:`FileChanged`."""
    hashers = {a: ALGORITHMS[a].factory() for a in algorithms}
    updates = [h.update for h in hashers.values()]
    limit = info.size + 1  # never read past what the manifest expects plus one byte
    buf = bytearray(min(BLOCK, max(limit, 1)))
    view = memoryview(buf)
    total = 0
    with artifact.open(info.path) as f:
        before = os.fstat(f.fileno())
        readinto = f.readinto  # type: ignore[attr-defined]
        while total < limit:
            want = min(len(buf), limit - total)
            n = readinto(view[:want])
            if not n:
                break
            chunk = view[:n]
            for u in updates:
                u(chunk)
            total += n
            if on_bytes is not None:
                on_bytes(n)
        after = os.fstat(f.fileno())
    if (
        total != info.size
        or before.st_size != after.st_size
        or before.st_mtime_ns != after.st_mtime_ns
        or after.st_size != info.size
    ):
        raise FileChanged(f"read {total} bytes, expected {info.size}; size {before.st_size}->{after.st_size}")
    return {a: h.hexdigest() for a, h in hashers.items()}


def hash_files(
    artifact: Artifact,
    infos: list[FileInfo],
    algorithms: list[str],
    *,
    workers: int | None = None,
    cache: DigestCache | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[tuple[FileInfo, dict[str, str] | Exception, bool]]:
    """Yield ``(info, digests or error, from_cache)`` for each file, largest first."""
    todo: list[FileInfo] = []
    for info in infos:
        if cache is not None:
            got = {a: cache.get(info, a) for a in algorithms}
            if all(got.values()):
                yield info, {a: v for a, v in got.items() if v}, True
                continue
        todo.append(info)
    todo.sort(key=lambda i: -i.size)
    n = workers or min(len(todo), os.cpu_count() or 1, 8) or 1

    def work(info: FileInfo) -> dict[str, str] | Exception:
        try:
            return hash_file(artifact, info, algorithms, on_bytes)
        except (OSError, FileChanged) as e:
            return e

    if n <= 1:
        results: Iterable[dict[str, str] | Exception] = map(work, todo)
    else:
        pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="manifest-hash")
        results = pool.map(work, todo)
    try:
        for info, res in zip(todo, results):
            if cache is not None and isinstance(res, dict):
                for a, d in res.items():
                    cache.put(info, a, d)
            yield info, res, False
    finally:
        if n > 1:
            pool.shutdown(wait=True, cancel_futures=True)
