"""The exact answers of the digest engine, the stat cache and the digest comparison, on
small synthetic files, in-process and fast.

Written from the mutation survivors of ``manifest/digest.py``, ``manifest/statcache.py``
and the comparison in ``manifest/api.py`` (scripts/mutation.py runs these for their
mutants): what a changed file is said to be, chunk digests whose chunks straddle the
read blocks, a chunk read on its own (locally and through fsspec's local file system,
the remote path), the read caps, short reads, a failing chunk hasher, how a job hands
files to threads; the stat cache's file name, entries, size cap and window; the damaged
ranges and tensors a chunk mismatch names, changed and unreadable files. Every expected
digest is computed with hashlib on the bytes written, never read back from the tool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import blake3
import pytest

from manifest import digest, statcache
from manifest.digest import (
    BLOCK,
    MAX_WORKERS,
    Algorithm,
    FileChanged,
    chunk_key,
    default_workers,
    hash_chunk,
    hash_file,
    hash_one,
)
from manifest.inventory import Artifact, discover

# A chunk size that is no multiple of the read block: chunks straddle the blocks.
C = BLOCK + 10


def _data(n: int) -> bytes:
    """``n`` bytes that differ from block to block (a misplaced chunk edge changes a digest)."""
    return hashlib.shake_256(b"manifest-digest-units").digest(n)


def _tree(tmp_path: Path, size: int, name: str = "w.bin") -> tuple[Path, bytes]:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    data = _data(size)
    (d / name).write_bytes(data)
    return d, data


def _chunks(data: bytes, size: int, algorithm: str = "sha256") -> list[str]:
    return [hashlib.new(algorithm, data[i:i + size]).hexdigest() for i in range(0, len(data), size)]


# -- what a changed file is said to be -------------------------------------------------

def _changed(art: Artifact, rel: str) -> str:
    with pytest.raises(FileChanged) as e:
        hash_file(art, art.files[rel], ["sha256"])
    return str(e.value)


def test_a_replaced_file_is_said_to_be_replaced(tmp_path: Path) -> None:
    d, data = _tree(tmp_path, 100)
    art = discover(d)
    (d / "new").write_bytes(data)
    os.replace(d / "new", d / "w.bin")  # a new inode, the same bytes, size and (maybe) mtime
    assert _changed(art, "w.bin") == "replaced by another file since it was listed"


def test_a_file_whose_mtime_moved_is_said_to_have_a_moved_mtime(tmp_path: Path) -> None:
    d, _ = _tree(tmp_path, 100)
    art = discover(d)
    st = os.stat(d / "w.bin")
    os.utime(d / "w.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same inode, same size
    assert _changed(art, "w.bin") == "modification time moved"


def test_a_file_whose_ctime_alone_moved_is_said_to_be_written_or_reset(tmp_path: Path) -> None:
    d, _ = _tree(tmp_path, 100)
    art = discover(d)
    info = art.files["w.bin"]
    deadline = time.monotonic() + 10
    while os.stat(d / "w.bin").st_ctime_ns == info.ctime_ns:  # chmod moves ctime only, at the clock's next tick
        assert time.monotonic() < deadline
        os.chmod(d / "w.bin", 0o644)
    assert os.stat(d / "w.bin").st_mtime_ns == info.mtime_ns
    assert _changed(art, "w.bin") == "inode change time moved (written to, or its times were reset)"


def _st(size: int, mtime: int, ino: int = 7, dev: int = 3) -> Any:
    return SimpleNamespace(st_size=size, st_mtime_ns=mtime, st_ctime_ns=5, st_ino=ino, st_dev=dev)


def test_each_change_is_described_by_the_first_fact_that_moved() -> None:
    """The size branch is reached only by a race (the file changes size between the last
    read and the second fstat): the description itself, on stat results."""
    info = digest.FileInfo("w.bin", 100, 50, 7, 3, ctime_ns=5)
    describe = digest._describe
    assert describe(info, _st(100, 50), _st(100, 50), 99) == "read 99 bytes, expected 100"
    assert describe(info, _st(100, 50, ino=8), _st(100, 50, ino=8), 100) == "replaced by another file since it was listed"
    assert describe(info, _st(100, 50, dev=4), _st(100, 50, dev=4), 100) == "replaced by another file since it was listed"
    assert describe(info, _st(100, 50), _st(104, 50), 100) == "size went from 100 to 104 bytes"
    assert describe(info, _st(96, 50), _st(96, 50), 100) == "size went from 100 to 96 bytes since it was listed"
    assert describe(info, _st(100, 50), _st(100, 51), 100) == "modification time moved"
    assert describe(info, _st(100, 49), _st(100, 49), 100) == "modification time moved"
    assert describe(info, _st(100, 50), _st(100, 50), 100) == "inode change time moved (written to, or its times were reset)"


# -- chunk digests ---------------------------------------------------------------------

def test_chunk_digests_in_one_pass_straddle_the_read_blocks(tmp_path: Path) -> None:
    """More blocks than the chunk thread has buffers (4), chunks that end inside a block."""
    size = 5 * BLOCK + 123
    d, data = _tree(tmp_path, size)
    art = discover(d)
    seen: list[int] = []
    got = hash_one(art, art.files["w.bin"], ["sha256", chunk_key(C)], seen.append).digests
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), chunk_key(C): "".join(_chunks(data, C))}
    assert sum(seen) == size


class _Failing:
    """A hasher that fails on its first buffer."""

    def update(self, _b: Any) -> None:
        raise RuntimeError("chunk hasher failed")

    def hexdigest(self) -> str:
        return "0" * 64


@pytest.mark.parametrize("blocks", [2, 9])
def test_a_failing_chunk_hasher_is_an_error_never_digests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocks: int) -> None:
    """Two blocks: the reader is done first and the result raises; nine: the reader is
    waiting for a buffer the chunk thread will never give back, and raises its error."""
    monkeypatch.setitem(digest.HASHERS, "failing", Algorithm("failing", True, _Failing))
    d, _ = _tree(tmp_path, blocks * BLOCK)
    art = discover(d)
    with pytest.raises(RuntimeError, match=r"^chunk hasher failed$"):
        hash_one(art, art.files["w.bin"], ["sha256", chunk_key(BLOCK, "failing")])


@pytest.mark.parametrize("where", ["local", "file://"])
def test_a_chunk_read_alone_is_that_chunks_digest(tmp_path: Path, where: str) -> None:
    size = 2 * C + 100
    d, data = _tree(tmp_path, size)
    art = discover(d) if where == "local" else _remote(d)
    assert art.remote == (where != "local")
    info = art.files["w.bin"]
    want = _chunks(data, C)
    for k, n in enumerate([C, C, 100]):
        seen: list[int] = []
        t0 = time.time_ns()
        h = hash_chunk(art, info, k, C, seen.append)
        assert h.digests == {chunk_key(C): want[k]}, k
        assert t0 <= h.started_ns <= time.time_ns()
        assert sum(seen) == n and all(isinstance(x, int) and x > 0 for x in seen), (k, seen)
    for k in (0, 1):
        assert hash_chunk(art, info, k, C, None, "blake2b").digests == {chunk_key(C, "blake2b"): hashlib.blake2b(data[k * C:(k + 1) * C]).hexdigest()}


def test_the_last_chunk_reads_one_byte_more_and_a_grown_file_is_changed(tmp_path: Path) -> None:
    size = 2 * C + 100
    d, _ = _tree(tmp_path, size)
    art = discover(d)
    with open(d / "w.bin", "ab") as f:
        f.write(b"more")
    seen: list[int] = []
    with pytest.raises(FileChanged) as e:
        hash_chunk(art, art.files["w.bin"], 2, C, seen.append)
    assert str(e.value) == f"read {size + 1} bytes, expected {size}"
    assert sum(seen) == 101


def test_a_chunk_of_a_shrunk_file_says_where_the_file_ended(tmp_path: Path) -> None:
    size = 2 * C + 100
    d, _ = _tree(tmp_path, size)
    art = discover(d)
    info = dataclasses.replace(art.files["w.bin"], size=size + 50)  # listed 50 bytes longer than it is
    with pytest.raises(FileChanged) as e:
        hash_chunk(art, info, 2, C)
    assert str(e.value) == f"read {size} bytes, expected {size + 50}"


# -- the remote path (fsspec's local file system through a file:// URL) -------------------

def _remote(d: Path) -> Any:
    pytest.importorskip("fsspec")
    from manifest.remote import RemoteTarget

    return RemoteTarget.open(d.as_uri()).discover([])


def test_a_remote_file_with_chunks_in_one_pass(tmp_path: Path) -> None:
    size = 2 * C + 100
    d, data = _tree(tmp_path, size)
    art = _remote(d)
    seen: list[int] = []
    t0 = time.time_ns()
    h = hash_one(art, art.files["w.bin"], ["sha256", chunk_key(C)], seen.append)
    assert h.digests == {"sha256": hashlib.sha256(data).hexdigest(), chunk_key(C): "".join(_chunks(data, C))}
    assert t0 <= h.started_ns <= time.time_ns()
    assert sum(seen) == size
    assert hash_one(art, art.files["w.bin"], ["sha256"]).digests == {"sha256": hashlib.sha256(data).hexdigest()}


# -- which hasher, which block -------------------------------------------------------------

class _Rec:
    """blake3, recording whether it was made multi-threaded and the size of each block given."""

    made: ClassVar[list[str]] = []
    blocks: ClassVar[list[int]] = []

    def __init__(self, kind: str) -> None:
        self._h = blake3.blake3(max_threads=blake3.blake3.AUTO) if kind == "threaded" else blake3.blake3()
        _Rec.made.append(kind)

    def update(self, b: Any) -> None:
        _Rec.blocks.append(len(b))
        self._h.update(b)

    def hexdigest(self) -> str:
        return str(self._h.hexdigest())


@pytest.mark.parametrize("size,threads,kind,block", [
    (digest.BLAKE3_THREADED_MIN, True, "threaded", digest.BLAKE3_BLOCK),  # a big file alone: blake3's own threads, bigger blocks
    (digest.BLAKE3_THREADED_MIN, False, "single", BLOCK),  # among as many files as cores: one thread each
    (digest.BLAKE3_THREADED_MIN - 1, True, "single", BLOCK),
    (3 * BLOCK + 5, True, "single", BLOCK),
])
def test_a_big_file_alone_is_hashed_by_blake3s_own_threads_in_bigger_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int,
                                                                            threads: bool, kind: str, block: int) -> None:
    monkeypatch.setitem(digest.HASHERS, "blake3", Algorithm("blake3", True, lambda: _Rec("single"), lambda: _Rec("threaded")))
    monkeypatch.setattr(_Rec, "made", [])
    monkeypatch.setattr(_Rec, "blocks", [])
    d = tmp_path / "m"
    d.mkdir()
    with open(d / "w.bin", "wb") as f:
        f.truncate(size)  # sparse
    art = discover(d)
    seen: list[int] = []
    got = hash_one(art, art.files["w.bin"], ["sha256", "blake3"], seen.append, threads=threads).digests
    assert got == {"sha256": hashlib.sha256(bytes(size)).hexdigest(), "blake3": blake3.blake3(bytes(size)).hexdigest()}
    assert _Rec.made == [kind]
    assert _Rec.blocks[0] == block and max(_Rec.blocks) == block and sum(_Rec.blocks) == size
    assert seen == _Rec.blocks  # read in blocks: never the whole file at once
    if threads:  # the default: a file hashed on its own may use blake3's threads
        hash_file(art, art.files["w.bin"], ["blake3"])
        assert _Rec.made[-1] == kind
    # without blake3, no hasher of its own threads: the 1 MiB block
    _Rec.blocks.clear()
    seen.clear()
    hash_one(art, art.files["w.bin"], ["sha256"], seen.append, threads=threads)
    assert seen[0] == BLOCK and max(seen) == BLOCK and sum(seen) == size


# -- the worker count ------------------------------------------------------------------

@pytest.mark.parametrize("cpus,files,workers", [
    (4, 0, 1), (4, 1, 1), (4, 3, 3), (4, 100, 4), (3, 100, 3), (64, 100, MAX_WORKERS), (64, 5, 5), (None, 100, 1),
])
def test_one_worker_per_core_capped_and_never_more_than_files(monkeypatch: pytest.MonkeyPatch, cpus: int | None, files: int,
                                                                workers: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert default_workers(files) == workers


# -- a small file (one read), and short reads ---------------------------------------------

def test_a_small_file_that_grew_reads_one_byte_more_and_is_changed(tmp_path: Path) -> None:
    d, _ = _tree(tmp_path, 100)
    art = discover(d)
    with open(d / "w.bin", "ab") as f:
        f.write(b"more")
    seen: list[int] = []
    with pytest.raises(FileChanged) as e:
        hash_file(art, art.files["w.bin"], ["sha256"], seen.append)
    assert str(e.value) == "read 101 bytes, expected 100"
    assert seen == [101]


class _ShortReads:
    """A real file whose reads return at most ``most`` bytes each (as a pipe or a network
    file system may): the engine must read on until the size it expects, or EOF. With
    ``end``, the reads end there (EOF) whatever the file's stat says."""

    def __init__(self, f: Any, most: int, end: int | None = None) -> None:
        self._f, self._most, self._left = f, most, end

    def _take(self, n: int) -> int:
        n = min(n, self._most)
        if self._left is not None:
            n = min(n, self._left)
            self._left -= n
        return n

    def read(self, n: int) -> bytes:
        k = self._take(n)
        return bytes(self._f.read(k)) if k else b""

    def readinto(self, b: Any) -> int:
        k = self._take(len(b))
        return int(self._f.readinto(b[:k])) if k else 0

    def fileno(self) -> int:
        return int(self._f.fileno())

    def __enter__(self) -> _ShortReads:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


@dataclasses.dataclass
class _ShortArtifact(Artifact):
    most: int = 7
    end: int | None = None

    def open_with_stat(self, rel: str) -> Any:
        f, st = super().open_with_stat(rel)
        return _ShortReads(f, self.most, self.end), st


@pytest.mark.parametrize("size", [0, 1, 100, BLOCK + 5])
def test_short_reads_are_read_on_to_the_expected_size(tmp_path: Path, size: int) -> None:
    d, data = _tree(tmp_path, size)
    base = discover(d)
    art = _ShortArtifact(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, most=7 if size < 1000 else 65537)
    seen: list[int] = []
    got = hash_file(art, art.files["w.bin"], ["sha256", "blake3"], seen.append)
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "blake3": blake3.blake3(data).hexdigest()}
    assert sum(seen) == size
    with open(d / "w.bin", "ab") as f:
        f.write(b"grown by more than one read")
    with pytest.raises(FileChanged) as e:
        hash_file(art, art.files["w.bin"], ["sha256"])
    assert str(e.value) == f"read {size + 1} bytes, expected {size}"


# -- a hashing job: the cache, chunks, batches and threads ----------------------------------

class _Cache:
    """A digest cache that answers for the paths it is given and records what it is told."""

    def __init__(self, answers: dict[str, dict[str, str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, list[str]]] = []
        self.put_: list[tuple[str, Any]] = []
        self.saved = 0

    def get(self, info: Any, algorithms: list[str]) -> dict[str, str] | None:
        self.asked.append((info.path, list(algorithms)))
        return self.answers.get(info.path)

    def put(self, info: Any, hashed: Any) -> None:
        self.put_.append((info.path, hashed))

    def save(self) -> None:
        self.saved += 1


def _files(tmp_path: Path, sizes: dict[str, int]) -> tuple[Path, dict[str, bytes]]:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    out = {}
    for rel, n in sizes.items():
        out[rel] = _data(n + len(rel))[len(rel):]
        (d / rel).write_bytes(out[rel])
    return d, out


def test_cached_files_come_first_unread_and_only_hashed_ones_are_put(tmp_path: Path) -> None:
    d, data = _files(tmp_path, {"a.bin": 3 * C, "b.txt": 10, "c.txt": 20, "gone.txt": 5})
    art = discover(d)
    (d / "gone.txt").unlink()
    cache = _Cache({"c.txt": {"sha256": "cached"}})
    seen: list[int] = []
    t0 = time.time_ns()
    got = list(digest.hash_files(art, list(art.files.values()), ["sha256"], cache=cache, on_bytes=seen.append, chunk_size=C))
    assert [(i.path, cached) for i, _, cached in got] == [("c.txt", True), ("a.bin", False), ("b.txt", False), ("gone.txt", False)]
    res = {i.path: r for i, r, _ in got}
    assert res["c.txt"] == {"sha256": "cached"}
    assert res["a.bin"] == {"sha256": hashlib.sha256(data["a.bin"]).hexdigest(), chunk_key(C): "".join(_chunks(data["a.bin"], C))}
    assert res["b.txt"] == {"sha256": hashlib.sha256(data["b.txt"]).hexdigest()}
    assert isinstance(res["gone.txt"], FileNotFoundError)
    # a file over one chunk is asked for with its chunk key; the others with the algorithms alone
    assert sorted(cache.asked) == [("a.bin", ["sha256", chunk_key(C)]), ("b.txt", ["sha256"]), ("c.txt", ["sha256"]), ("gone.txt", ["sha256"])]
    assert [(p, h.digests) for p, h in cache.put_] == [("a.bin", res["a.bin"]), ("b.txt", res["b.txt"])]
    assert all(t0 <= h.started_ns <= time.time_ns() for _, h in cache.put_)
    assert cache.saved == 1
    assert sum(seen) == 3 * C + 10 + 20  # the cached file counts as done, the vanished one read nothing


def test_chunks_are_added_only_over_one_chunk_and_only_beside_sha256(tmp_path: Path) -> None:
    d, data = _files(tmp_path, {"big.bin": C + 1, "edge.bin": C})
    art = discover(d)
    res = {i.path: r for i, r, _ in digest.hash_files(art, list(art.files.values()), ["sha256", "blake3"], chunk_size=C)}
    assert res["big.bin"] == {"sha256": hashlib.sha256(data["big.bin"]).hexdigest(), "blake3": blake3.blake3(data["big.bin"]).hexdigest(),
                              chunk_key(C): "".join(_chunks(data["big.bin"], C))}
    assert set(res["edge.bin"]) == {"sha256", "blake3"}  # type: ignore[arg-type]
    res = {i.path: r for i, r, _ in digest.hash_files(art, list(art.files.values()), ["blake3"], chunk_size=C)}
    assert set(res["big.bin"]) == {"blake3"}  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("algorithm", ["sha256", "blake2b"])
def test_files_verified_by_chunks_are_one_task_a_chunk_gathered_in_order(tmp_path: Path, workers: int, algorithm: str) -> None:
    sizes = {"big.bin": 3 * C + 7, "mid.bin": 2 * C, "small.txt": 50, "short.bin": 2 * C + 9}
    d, data = _files(tmp_path, sizes)
    art = discover(d)
    infos = dict(art.files)
    infos["short.bin"] = dataclasses.replace(infos["short.bin"], size=2 * C + 19)  # listed 10 bytes longer: its last chunk is short
    chunked = {"big.bin": C, "mid.bin": C, "short.bin": C}
    cache = _Cache({})
    seen: list[int] = []
    got = list(digest.hash_files(art, sorted(infos.values(), key=lambda i: i.path), ["sha256"], workers=workers, cache=cache,
                                 on_bytes=seen.append, chunked=chunked, chunk_algorithm=algorithm))
    key = chunk_key(C, algorithm)
    assert [i.path for i, _, _ in got] == ["big.bin", "short.bin", "mid.bin", "small.txt"]  # largest first
    res = {i.path: r for i, r, _ in got}
    assert res["big.bin"] == {key: "".join(_chunks(data["big.bin"], C, algorithm))}
    assert res["mid.bin"] == {key: "".join(_chunks(data["mid.bin"], C, algorithm))}
    assert res["small.txt"] == {"sha256": hashlib.sha256(data["small.txt"]).hexdigest()}
    # its first chunk is read whole: the file's size tells the change
    assert isinstance(res["short.bin"], FileChanged) and str(res["short.bin"]) == f"size went from {2 * C + 19} to {2 * C + 9} bytes since it was listed"
    assert [p for p, _ in cache.put_] == ["big.bin", "mid.bin", "small.txt"]
    assert sorted(cache.asked) == [("big.bin", [key]), ("mid.bin", [key]), ("short.bin", [key]), ("small.txt", ["sha256"])]
    assert sum(seen) == sum(sizes.values())


def _threads_of(tmp_path: Path, sizes: dict[str, int], workers: int | None = None) -> tuple[dict[str, str], Any]:
    """Which thread read each file (the progress callback runs on the reading thread)."""
    d = tmp_path / "t"
    d.mkdir(parents=True)
    for rel, n in sizes.items():
        with open(d / rel, "wb") as f:
            f.truncate(n)  # sparse: no disk
    art = discover(d)
    import threading

    by: dict[str, str] = {}
    current: dict[str, str] = {}

    class Art(type(art)):  # type: ignore[misc]
        def open_with_stat(self, rel: str) -> Any:
            current[threading.current_thread().name] = rel
            return super().open_with_stat(rel)

    art2 = Art(**{f.name: getattr(art, f.name) for f in dataclasses.fields(art)})

    def on_bytes(_n: int) -> None:
        name = threading.current_thread().name
        by[current[name]] = name

    job = digest.hash_files(art2, list(art2.files.values()), ["sha256"], on_bytes=on_bytes, workers=workers)
    got = {i.path: r for i, r, _ in job}
    assert got == {rel: {"sha256": hashlib.sha256(bytes(n)).hexdigest()} for rel, n in sizes.items()}
    return by, job


def test_small_jobs_and_small_files_are_hashed_in_the_calling_thread(tmp_path: Path) -> None:
    main = __import__("threading").current_thread().name
    small = digest.THREADED_MIN_FILE - 1
    # many files under 64 KiB, together over the pool's minimum: still no thread
    n = digest.POOL_MIN_BYTES // small + 2
    by, job = _threads_of(tmp_path, {f"s{i:04}.bin": small for i in range(n)})
    assert set(by.values()) == {main} and job._pool is None


def test_a_job_over_the_pool_minimum_is_hashed_by_the_workers_in_batches(tmp_path: Path) -> None:
    main = __import__("threading").current_thread().name
    mib = 1 << 20
    sizes = {"big.bin": digest.POOL_MIN_BYTES, **{f"k{i:03}.bin": 300 << 10 for i in range(7)}, **{f"t{i:03}.bin": 10 for i in range(300)}}
    by, job = _threads_of(tmp_path, sizes, workers=2)
    assert main not in set(by.values()) and set(by.values()) <= {"manifest-hash-0", "manifest-hash-1"}
    batches = [[(t[0].path, t[1]) for t in b] for b in job._pool._items]
    # largest first; files under 1 MiB share a batch up to about 1 MiB and at most 256 files
    assert batches[0] == [("big.bin", None)]
    ks = [f"k{i:03}.bin" for i in range(7)]
    ts = [f"t{i:03}.bin" for i in range(300)]
    assert batches[1:] == [[(p, None) for p in ks[0:3]], [(p, None) for p in ks[3:6]], [(p, None) for p in [ks[6], *ts[:255]]],
                           [(p, None) for p in ts[255:]]]
    assert 3 * (300 << 10) <= mib < 4 * (300 << 10)
    assert len(job._pool._threads) == 2


def test_a_pool_never_has_more_threads_than_batches_or_workers(tmp_path: Path) -> None:
    _, job = _threads_of(tmp_path, {"a.bin": digest.POOL_MIN_BYTES, "b.bin": digest.THREADED_MIN_FILE}, workers=8)
    assert len(job._pool._threads) == 2
    _, job = _threads_of(tmp_path / "x", {"a.bin": digest.POOL_MIN_BYTES, "b.bin": 5, "c.bin": 5}, workers=1)
    assert [t.name for t in job._pool._threads] == ["manifest-hash-0"]


def test_a_directory_swapped_for_a_link_within_a_batch_is_read_where_discovery_saw_it(tmp_path: Path) -> None:
    """Small files of one batch are opened through one descriptor of their directory.
    Swapped for a symlink after that descriptor was taken, the directory's next file of
    the batch is still read from the original directory (the very file discovery listed,
    its stat checked as always), never from the link's target; the next walk to the
    directory (after another one) refuses the link."""
    d = tmp_path / "m"
    (d / "d").mkdir(parents=True)
    (d / "e").mkdir()
    content = {"d/a.bin": b"aaa", "d/b.bin": b"bbb", "e/c.bin": b"cc", "d/z.bin": b"z"}  # hashed largest first: a, b, c, z
    for rel, data in content.items():
        (d / rel).write_bytes(data)
    art = discover(d)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a.bin", "b.bin", "z.bin"):
        (other / name).write_bytes(b"evil")
    swapped: list[int] = []

    def on_bytes(_n: int) -> None:
        if not swapped:  # after d/a.bin is read
            os.rename(d / "d", tmp_path / "moved")
            os.symlink(other, d / "d")
            swapped.append(1)

    job = digest.hash_files(art, list(art.files.values()), ["sha256"], on_bytes=on_bytes)
    got = {i.path: r for i, r, _ in job}
    assert job._pool is None and list(got) == ["d/a.bin", "d/b.bin", "e/c.bin", "d/z.bin"]
    for rel in ("d/a.bin", "d/b.bin", "e/c.bin"):
        assert got[rel] == {"sha256": hashlib.sha256(content[rel]).hexdigest()}
    assert isinstance(got["d/z.bin"], NotADirectoryError)


def test_a_pool_opens_each_batch_through_its_own_opener_and_closes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the hashing threads too, a plain local artifact's small files are opened through
    one BeneathOpener a batch (a descriptor of each directory it enters), every descriptor
    closed when its batch is done; every file's digest is its own."""
    d = tmp_path / "m"
    (d / "big").mkdir(parents=True)
    with open(d / "big" / "w.bin", "wb") as f:
        f.truncate(digest.POOL_MIN_BYTES)  # sparse: no disk
    content = {f"d{k}/f{i:03}.txt": f"{k}-{i}".encode() * (i + 1) for k in range(3) for i in range(120)}
    for rel, data in content.items():
        (d / rel).parent.mkdir(exist_ok=True)
        (d / rel).write_bytes(data)
    art = discover(d)
    from manifest import inventory

    made: list[Any] = []

    class Opener(inventory.BeneathOpener):
        __slots__ = ()

        def __init__(self, artifact: Artifact) -> None:
            super().__init__(artifact)
            made.append(self)

    monkeypatch.setattr(digest, "BeneathOpener", Opener)
    job = digest.hash_files(art, list(art.files.values()), ["sha256"], workers=2)
    got = {i.path: r for i, r, _ in job}
    assert job._pool is not None and len(job._pool._threads) == 2
    assert got == {"big/w.bin": {"sha256": hashlib.sha256(bytes(digest.POOL_MIN_BYTES)).hexdigest()},
                   **{rel: {"sha256": hashlib.sha256(data).hexdigest()} for rel, data in content.items()}}
    assert len(made) == len(job._pool._items) == 3  # the big file's batch, then 360 small files in batches of at most 256
    assert all(op._dfd == -1 for op in made)


def test_short_reads_through_an_opener_are_read_on_to_the_expected_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"s0.bin": 0, "s1.bin": 1, "s100.bin": 100, "s5000.bin": 5000}
    d, _ = _files(tmp_path, sizes)
    art = discover(d)
    real_read = os.read
    calls: list[int] = []

    def short(fd: int, n: int) -> bytes:
        calls.append(n)
        return real_read(fd, min(n, 7))

    monkeypatch.setattr(os, "read", short)
    got = {i.path: r for i, r, _ in digest.hash_files(art, list(art.files.values()), ["sha256"])}
    assert got == {p: {"sha256": hashlib.sha256((d / p).read_bytes()).hexdigest()} for p in sizes}
    assert len(calls) == sum(max(1, -(-n // 7)) + 1 for n in sizes.values())  # 7 bytes a read, then the read that finds the end
    with open(d / "s100.bin", "ab") as f:
        f.write(b"grown by more than one read")
    got = {i.path: r for i, r, _ in digest.hash_files(art, [art.files["s100.bin"]], ["sha256"])}
    assert isinstance(got["s100.bin"], FileChanged) and str(got["s100.bin"]) == "read 101 bytes, expected 100"


def test_a_closed_job_yields_nothing_and_saves_the_cache_once(tmp_path: Path) -> None:
    d, _ = _files(tmp_path, {"a.txt": 5})
    art = discover(d)
    cache = _Cache({})
    job = digest.hash_files(art, list(art.files.values()), ["sha256"], cache=cache)
    job.close()
    job.close()
    assert list(job) == [] and cache.saved == 1 and cache.put_ == []


# -- the stat cache: its file, its entries, the window -----------------------------------------

KEY = ("verify", "/m", "id")


def _doc(entries: dict[str, Any]) -> bytes:
    return json.dumps({"format": statcache.CACHE_FORMAT, "key": list(KEY), "entries": entries}).encode()


def test_the_cache_files_name_is_the_keys_sha256_even_for_an_undecodable_path(tmp_path: Path) -> None:
    key = ("verify", "/m/\udcff", "id")  # a directory name with a byte that is not UTF-8 (os.fsdecode's surrogate)
    want = hashlib.sha256(b'["verify", "/m/\\udcff", "id"]').hexdigest()  # JSON escapes it: the text hashed is ASCII
    assert statcache.file_for(tmp_path, key) == tmp_path / f"{want[:40]}.json"
    assert statcache.file_for(tmp_path, KEY) == tmp_path / f"{hashlib.sha256(json.dumps(list(KEY)).encode()).hexdigest()[:40]}.json"


@pytest.mark.parametrize("raw", [5, None, "1234567", [10, 1, 2, 7, 3, 5, 9, {"sha256": "ab" * 32}]])
def test_an_entry_that_is_no_seven_item_list_is_dropped(raw: Any) -> None:
    assert statcache._parse_entry(raw) is None


def test_malformed_entries_are_dropped_when_loading_and_never_written_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)
    good = [10, 1_000, 2_000, 7, 3, 5_000, {"sha256": "ab" * 32}]
    path = tmp_path / "c.json"
    path.write_bytes(_doc({"w.bin": good, "bad": [1, 2], "worse": {"x": 1}}))
    assert statcache._load(path, KEY) == {"w.bin": (10, 1_000, 2_000, 7, 3, 5_000, {"sha256": "ab" * 32})}
    c = statcache.StatCache(path, KEY, statcache._load(path, KEY))
    c.put(dataclasses.replace(_finfo(), path="new.bin"), digest.Hashed({"sha256": "cd" * 32}, 9_000))
    c.save()
    assert not c.dirty and sorted(json.loads(path.read_text())["entries"]) == ["new.bin", "w.bin"]


def _finfo(**kw: Any) -> Any:
    base = {"path": "w.bin", "size": 10, "mtime_ns": 1_000, "ino": 7, "dev": 3, "ctime_ns": 2_000}
    return digest.FileInfo(**{**base, **kw})


def test_a_cache_with_nothing_new_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(statcache.CACHE_ENV, str(tmp_path / "cache"))
    c = statcache.StatCache.open(KEY)
    assert c is not None and not c.dirty
    c.save()
    assert not (tmp_path / "cache").exists()


def test_a_ctime_of_one_nanosecond_is_a_ctime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only a ctime of 0 means "unknown" (never trusted)."""
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 100)
    assert statcache.trustworthy((10, 1, 1, 7, 3), 101) is True
    assert statcache.trustworthy((10, 1, 0, 7, 3), 101) is False
    c = statcache.StatCache(tmp_path / "c.json", KEY, {"w.bin": (10, 1, 1, 7, 3, 101, {"sha256": "ab" * 32})})
    assert c.get(_finfo(mtime_ns=1, ctime_ns=1), ["sha256"]) == {"sha256": "ab" * 32}


@pytest.mark.parametrize("expire,writeback,window", [
    ("0", "500", 500 * 10_000_000 + statcache.MARGIN_NS),
    ("3000", "500", 3500 * 10_000_000 + statcache.MARGIN_NS),
    ("3000", "0", None),
    ("-1", "500", statcache.DEFAULT_WINDOW_NS),
    ("3000", "-1", statcache.DEFAULT_WINDOW_NS),
])
def test_the_kernel_window_from_its_settings(tmp_path: Path, expire: str, writeback: str, window: int | None) -> None:
    (tmp_path / "dirty_expire_centisecs").write_text(expire + "\n")
    (tmp_path / "dirty_writeback_centisecs").write_text(writeback + "\n")
    assert statcache.kernel_window_ns(tmp_path) == window


def test_a_device_number_the_os_cannot_split_is_not_a_no_writeback_file_system() -> None:
    assert statcache.no_writeback(-1) is False
    assert statcache.no_writeback(1 << 70) is False


def test_a_cache_file_that_is_a_link_or_someone_elses_is_no_evidence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real.json"
    real.write_bytes(_doc({}))
    assert statcache.read_doc(real, KEY) == json.loads(_doc({}))
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert statcache.read_doc(link, KEY) is None  # never followed
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
    assert statcache.read_doc(real, KEY) is None


def test_a_cache_file_over_the_cap_is_ignored_having_read_one_byte_past_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(statcache, "MAX_CACHE_BYTES", 200)
    body = _doc({})
    exact = tmp_path / "exact.json"
    exact.write_bytes(body + b" " * (200 - len(body)))
    assert statcache.read_doc(exact, KEY) == json.loads(body)
    exact.write_bytes(body + b" " * (201 - len(body)))
    assert statcache.read_doc(exact, KEY) is None
    # a pipe that never ends: the read stops one byte past the cap (an unbounded read would never return)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)  # a writer that stays: reading to EOF would block
    try:
        os.write(wfd, body + b" " * 300)
        out: list[Any] = []
        t = threading.Thread(target=lambda: out.append(statcache.read_doc(fifo, KEY)), daemon=True)
        t.start()
        t.join(60)
        assert out == [None]
    finally:
        os.close(wfd)
        t.join(60)


@pytest.mark.parametrize("files,workers,kinds", [(1, None, ["threaded"]), (2, 2, ["single", "single"]), (2, 1, ["threaded", "threaded"])])
def test_blake3s_own_threads_only_when_the_files_at_once_leave_cores_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int,
                                                                         workers: int | None, kinds: list[str]) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setitem(digest.HASHERS, "blake3", Algorithm("blake3", True, lambda: _Rec("single"), lambda: _Rec("threaded")))
    monkeypatch.setattr(_Rec, "made", [])
    monkeypatch.setattr(_Rec, "blocks", [])
    d = tmp_path / "m"
    d.mkdir()
    for i in range(files):
        with open(d / f"w{i}.bin", "wb") as f:
            f.truncate(digest.BLAKE3_THREADED_MIN)
    art = discover(d)
    got = [r for _, r, _ in digest.hash_files(art, list(art.files.values()), ["blake3"], workers=workers)]
    assert got == [{"blake3": blake3.blake3(bytes(digest.BLAKE3_THREADED_MIN)).hexdigest()}] * files
    assert _Rec.made == kinds


def test_the_pool_starts_at_its_minimum_of_bytes_in_files_of_64_kib_or_more(tmp_path: Path) -> None:
    edge = digest.THREADED_MIN_FILE
    _, job = _threads_of(tmp_path / "a", {"a.bin": digest.POOL_MIN_BYTES - edge, "b.bin": edge})
    assert job._pool is not None  # exactly the minimum, the 64 KiB file counted
    _, job = _threads_of(tmp_path / "b", {"a.bin": digest.POOL_MIN_BYTES - edge, "b.bin": edge - 1})
    assert job._pool is None


def test_a_file_verified_by_chunks_started_when_its_first_chunk_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat cache trusts a file by the wall clock when hashing it began: the earliest chunk's."""
    d, data = _files(tmp_path, {"w.bin": 3 * C})
    art = discover(d)
    clock = iter(range(1_000, 2_000))
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    cache = _Cache({})
    got = list(digest.hash_files(art, list(art.files.values()), ["sha256"], workers=1, cache=cache, chunked={"w.bin": C}))
    assert got[0][1] == {chunk_key(C): "".join(_chunks(data["w.bin"], C))}
    assert [(p, h.started_ns) for p, h in cache.put_] == [("w.bin", 1_000)]


# -- the comparison's words: damaged ranges and the tensors in them (manifest/api.py) ---------------

ONE = chunk_key(1)  # a chunk a byte: any byte range can be damaged exactly
T = [f"t{i}" for i in range(7)]  # seven tensors of 16 bytes each, in file order


def _damaged(tmp_path: Path, rel: str, bad: list[int]) -> tuple[Any, Any, list[Any]]:
    """_chunk_mismatch on ``rel`` whose chunks ``bad`` (one byte each) differ."""
    from manifest import api
    from manifest.options import Options
    from manifest.report import Report

    art = discover(tmp_path / "m")
    n = art.files[rel].size
    want = {ONE: "a" * 64 * n}
    got = {ONE: "".join("b" * 64 if k in set(bad) else "a" * 64 for k in range(n))}
    report, into = Report("verify", "m"), []  # type: ignore[var-annotated]
    api._chunk_mismatch(art, rel, 1, got, want, "the manifest", Options(), report, into)
    return art, report, into


@pytest.fixture
def st(tmp_path: Path) -> int:
    """``m/w.safetensors`` with seven 16-byte tensors; the offset of their data."""
    from manifest.formats.safetensors import build

    head = build({t: ("F32", (4,)) for t in T})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.safetensors").write_bytes(head + _data(7 * 16))
    return len(head)


@pytest.mark.parametrize("first,last,named", [
    (0, 5, ": tensors t0, t1, t2, t3, t4"),  # five: all named
    (0, 6, ": tensors t0, t1, t2, t3, t4 and 1 more"),
    (2, 3, ": tensors t2"),
    (None, 7, ": the safetensors header; tensors t0, t1, t2, t3, t4 and 2 more"),  # from byte 0
])
def test_a_mismatch_names_the_header_and_up_to_five_tensors(tmp_path: Path, st: int, first: int | None, last: int, named: str) -> None:
    start = 0 if first is None else st + 16 * first
    end = st + 16 * last
    _, report, (f,) = _damaged(tmp_path, "w.safetensors", list(range(start, end)))
    size = st + 7 * 16
    assert f.message == f"bytes {start}-{end} differ ({end - start} of {size} chunks){named}"
    assert f.expected["tensors"] == T[first or 0:last] and f.expected["header"] is (first is None)
    assert report.findings == []  # collected to be grouped, not emitted


def test_a_mismatch_outside_any_tensor_names_none(tmp_path: Path, st: int) -> None:
    _, _, (f,) = _damaged(tmp_path, "w.safetensors", [st + 7 * 16 - 1])  # the last byte: t6
    assert f.message.endswith(": tensors t6")
    (tmp_path / "m" / "w.bin").write_bytes(bytes(40))
    _, _, (f,) = _damaged(tmp_path, "w.bin", [3, 4])
    assert f.message == "bytes 3-5 differ (2 of 40 chunks)"
    assert f.expected == {"chunk_size": 1, "chunks": 40, "bad_chunks": [3, 4], "byte_ranges": [[3, 4]], "tensors": [], "header": False}


@pytest.mark.parametrize("runs", [4, 10])
def test_many_damaged_ranges_show_three_and_ask_for_eight(tmp_path: Path, runs: int) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(bytes(40))
    bad = list(range(0, 2 * runs, 2))
    _, _, (f,) = _damaged(tmp_path, "w.bin", bad)
    assert f.message == f"bytes 0-1, 2-3, 4-5 and {runs - 3} more ranges differ ({runs} of 40 chunks)"
    asked = ",".join(f"{k}-{k}" for k in bad[:8])
    assert f.hint == (f"download the file again, or fetch only the damaged bytes with an HTTP Range request (Range: bytes={asked}; "
                      "e.g. curl -L -r 0-0 URL) and write them back at the same offsets")
    assert f.expected["byte_ranges"] == [[k, k] for k in bad]


def test_under_fail_fast_a_chunk_mismatch_stops_the_run_at_once(tmp_path: Path) -> None:
    from manifest import api

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(bytes(40))
    art = discover(tmp_path / "m")
    from manifest.options import Options
    from manifest.report import Report

    report, into = Report("verify", "m"), []  # type: ignore[var-annotated]
    got = {ONE: "".join("b" * 64 if k == 7 else "a" * 64 for k in range(40))}
    with pytest.raises(api._Stop):
        api._chunk_mismatch(art, "w.bin", 1, got, {ONE: "a" * 64 * 40}, "the manifest", Options(fail_fast=True), report, into)
    assert [f.path for f in report.findings] == ["w.bin"] and report.stopped_early and into == []


def _small_tree(tmp_path: Path) -> tuple[Path, Any]:
    from manifest import api
    from manifest.options import Options

    d = tmp_path / "m"
    d.mkdir()
    for k in range(4):
        (d / f"f{k}.txt").write_bytes(_data(100 * (k + 1)))
    return d, api.create(d, write=False, options=Options(use_cache=False, integrity_only=True))


def test_a_known_digest_that_differs_stops_a_fail_fast_run(tmp_path: Path) -> None:
    from manifest import api
    from manifest.options import Options

    d, m = _small_tree(tmp_path)
    rep = api.verify(d, m, options=Options(use_cache=False, integrity_only=True, fail_fast=True, known_digests={"f1.txt": {"sha256": "0" * 64}}))
    assert [(f.code, f.path, f.actual) for f in rep.findings if f.is_error] == [("digest-mismatch", "f1.txt", "0" * 64)]
    assert rep.stopped_early and rep.exit_status == 1


def test_the_progress_bar_counts_the_bytes_to_read_and_the_workers_asked_for_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import api
    from manifest.options import Options

    d, m = _small_tree(tmp_path)
    bars: list[Any] = []

    class Bar:
        def __init__(self, total: int, desc: str) -> None:
            self.total, self.desc, self.done, self.closed = total, desc, 0, False
            bars.append(self)

        def update(self, n: int) -> None:
            self.done += n

        def close(self) -> None:
            self.closed = True

    asked: list[Any] = []
    real = api.hash_files

    def spy(*a: Any, **kw: Any) -> Any:
        asked.append(kw["workers"])
        return real(*a, **kw)

    monkeypatch.setattr(api, "_progress", lambda opts, total, desc: Bar(total, desc))
    monkeypatch.setattr(api, "hash_files", spy)
    known = {"f0.txt": {"sha256": hashlib.sha256((d / "f0.txt").read_bytes()).hexdigest()}}
    rep = api.verify(d, m, options=Options(use_cache=False, integrity_only=True, workers=3, known_digests=known))
    assert rep.exit_status == 0
    (bar,) = [b for b in bars if b.desc == "verifying"]
    assert (bar.total, bar.done, bar.closed) == (200 + 300 + 400, 200 + 300 + 400, True)
    assert asked == [3]


def test_a_changed_and_a_vanished_file_are_findings_and_the_comparison_goes_on(tmp_path: Path) -> None:
    from manifest import api
    from manifest.options import Options
    from manifest.report import Report

    d, _ = _small_tree(tmp_path)
    art = discover(d)
    with open(d / "f3.txt", "ab") as f:  # 400 bytes, hashed first
        f.write(b"more")
    (d / "f2.txt").unlink()  # 300 bytes, hashed second
    (d / "f1.txt").unlink()
    os.mkfifo(d / "f1.txt")  # 200 bytes, hashed third: now a FIFO, never read
    expected = {p: {"sha256": p[1] * 64} for p in ("f3.txt", "f2.txt", "f1.txt", "f0.txt")}  # f0 hashed last: still compared
    report = Report("verify", str(d))
    api._verify_digests(art, expected, sorted(expected), ["sha256"], Options(use_cache=False), report, cache_key=("k",), source="the manifest")
    assert [(f.code, f.path, f.message) for f in report.findings] == [
        ("file-changed", "f3.txt", "changed while it was read (read 401 bytes, expected 400); not verified"),
        ("unreadable", "f2.txt", "cannot read: No such file or directory"),
        ("unreadable", "f1.txt", "cannot read: f1.txt is no longer a regular file"),
        ("digest-mismatch", "f0.txt", f"sha256 is {hashlib.sha256((d / 'f0.txt').read_bytes()).hexdigest()[:16]}..., the manifest says 0000000000000000..."),
    ]
    assert report.stats["files_hashed"] == 4 and report.stats["bytes_hashed"] == 100


@pytest.mark.parametrize("n", [1, 4])
def test_the_file_set_findings_in_words_one_by_one_and_grouped(tmp_path: Path, n: int) -> None:
    from manifest import api
    from manifest.options import Options
    from manifest.report import Report

    d = tmp_path / "m"
    d.mkdir()
    (d / "a.txt").write_text("a")
    for k in range(n):
        (d / f"x{k}.txt").write_text("x")
        (d / f"s{k}").mkdir()
    art = discover(d)
    listed = {"a.txt": {}, **{f"g{k}.txt": {} for k in range(n)}}
    report = Report("verify", str(d))
    api._check_file_set(art, listed, "the manifest", Options(), report, directories=[f"e{k}" for k in range(n)])
    got = [(f.code, f.path, f.message, f.items) for f in report.findings]
    if n == 1:
        assert got == [
            ("missing-file", "g0.txt", "listed in the manifest but not in the directory", None),
            ("extra-file", "x0.txt", "in the directory but not in the manifest", None),
            ("missing-directory", "e0", "an empty directory recorded in the manifest is not in the directory", None),
            ("extra-directory", "s0", "a directory no file of the manifest lies in (loaders match directory names too)", None),
        ]
    else:
        assert [(c, m, i) for c, _, m, i in got] == [
            ("missing-file", "4 files listed in the manifest are not in the directory: g0.txt, g1.txt, g2.txt, ...",
             ("g0.txt", "g1.txt", "g2.txt", "g3.txt")),
            ("extra-file", "4 files in the directory are not in the manifest: x0.txt, x1.txt, x2.txt, ...",
             ("x0.txt", "x1.txt", "x2.txt", "x3.txt")),
            ("missing-directory", "4 empty directories recorded in the manifest are not in the directory: e0, e1, e2, ...",
             ("e0", "e1", "e2", "e3")),
            ("extra-directory", "4 directories hold no file of the manifest: s0, s1, s2, ...", ("s0", "s1", "s2", "s3")),
        ]
    assert report.checked == ["file-set"]


class _Section:
    """A section whose comparison fails on the recorded data's shape."""

    name = "weights"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.seen: Any = None

    def compare(self, art: Any, recorded: Any, opts: Any, report: Any) -> Any:
        self.seen = (art, recorded, opts, report)
        if isinstance(recorded, dict):
            raise self.error
        yield from ()


def test_a_recorded_section_of_the_wrong_shape_is_manifest_invalid_in_words() -> None:
    from manifest import api
    from manifest.errors import ManifestInvalid
    from manifest.options import Options
    from manifest.report import Report

    opts, report = Options(), Report("verify", "m")
    for error, words in [(TypeError("'int' object is not iterable"), "TypeError: 'int' object is not iterable"),
                         (KeyError("bytes"), "KeyError: 'bytes'")]:
        with pytest.raises(ManifestInvalid) as e:
            api._compare_section(_Section(error), "art", {"x": 1}, opts, report)  # type: ignore[arg-type]
        assert str(e.value) == f"the manifest's weights section is malformed ({words})"
        assert e.value.code == "manifest-invalid"
    s = _Section(TypeError())
    assert api._compare_section(s, "art", [], opts, report) == []  # type: ignore[arg-type]
    assert s.seen == ("art", [], opts, report)


def test_a_chunk_mismatch_stops_a_fail_fast_verify(tmp_path: Path) -> None:
    from manifest import api
    from manifest.options import Options

    d, _ = _small_tree(tmp_path)
    (d / "w.bin").write_bytes(_data(3 * 4096))
    m = api.create(d, write=False, options=Options(use_cache=False, integrity_only=True, chunk_size=4096))
    assert list(m.chunks) == ["w.bin"]
    with open(d / "w.bin", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00" if _data(3 * 4096)[5000] else b"\x01")
    rep = api.verify(d, m, options=Options(use_cache=False, integrity_only=True, fail_fast=True))
    assert [(f.code, f.path, f.expected["bad_chunks"]) for f in rep.findings if f.is_error] == [("digest-mismatch", "w.bin", [1])]  # type: ignore[index]
    assert rep.stopped_early and rep.exit_status == 1


class _HereRunner:
    """A unit runner that hashes each unit in this process, in order (a Ray worker's work, without Ray)."""

    def __init__(self) -> None:
        self.units: list[Any] = []
        self.closed = 0

    def start(self, artifact: Any, units: list[Any]) -> Any:
        self.units = list(units)
        return (digest.hash_unit(artifact, u, threads=False) for u in units)

    def close(self) -> None:
        self.closed += 1


def test_a_runner_gets_each_unit_as_data_and_its_bytes_count_as_each_arrives(tmp_path: Path) -> None:
    d, data = _files(tmp_path, {"big.bin": 2 * C + 9, "mid.bin": C + 1, "a.txt": 30})
    art = discover(d)
    runner = _HereRunner()
    seen: list[int] = []
    cache = _Cache({})
    got = [(i.path, r) for i, r, _ in digest.hash_files(art, list(art.files.values()), ["sha256"], cache=cache, on_bytes=seen.append,
                                                        chunk_size=C, chunked={"big.bin": C}, chunk_algorithm="blake2b", runner=runner)]
    assert got == [("big.bin", {chunk_key(C, "blake2b"): "".join(_chunks(data["big.bin"], C, "blake2b"))}),
                   ("mid.bin", {"sha256": hashlib.sha256(data["mid.bin"]).hexdigest(), chunk_key(C): "".join(_chunks(data["mid.bin"], C))}),
                   ("a.txt", {"sha256": hashlib.sha256(data["a.txt"]).hexdigest()})]
    assert [(u.info.path, u.index, u.algorithms, u.chunk_size, u.chunk_algorithm) for u in runner.units] == [
        ("big.bin", 0, (), C, "blake2b"), ("big.bin", 1, (), C, "blake2b"), ("big.bin", 2, (), C, "blake2b"),
        ("mid.bin", None, ("sha256", chunk_key(C)), 0, "sha256"), ("a.txt", None, ("sha256",), 0, "sha256")]
    assert seen == [C, C, 9, C + 1, 30]  # a chunk counts its own length, the last one short
    assert runner.closed == 1 and cache.saved == 1 and [p for p, _ in cache.put_] == ["big.bin", "mid.bin", "a.txt"]


def test_verify_hands_its_digests_to_the_runner_it_is_given(tmp_path: Path) -> None:
    from manifest import api
    from manifest.options import Options

    d, m = _small_tree(tmp_path)
    runner = _HereRunner()
    rep = api.verify(d, m, options=Options(use_cache=False, integrity_only=True, hash_runner=runner))
    assert rep.exit_status == 0
    assert sorted(u.info.path for u in runner.units) == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"] and runner.closed == 1


def test_a_unit_is_hashed_as_its_file_or_chunk_with_progress_and_blake3_threads_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(digest.HASHERS, "blake3", Algorithm("blake3", True, lambda: _Rec("single"), lambda: _Rec("threaded")))
    monkeypatch.setattr(_Rec, "made", [])
    monkeypatch.setattr(_Rec, "blocks", [])
    size = digest.BLAKE3_THREADED_MIN
    d = tmp_path / "m"
    d.mkdir()
    with open(d / "w.bin", "wb") as f:
        f.truncate(size)
    art = discover(d)
    info = art.files["w.bin"]
    whole = digest.Unit(info, None, ("blake3",))
    for kw, kind in [({}, "threaded"), ({"threads": True}, "threaded"), ({"threads": False}, "single")]:
        seen: list[int] = []
        assert digest.hash_unit(art, whole, seen.append, **kw).digests == {"blake3": blake3.blake3(bytes(size)).hexdigest()}
        assert _Rec.made[-1] == kind and sum(seen) == size, kw
    seen = []
    h = digest.hash_unit(art, digest.Unit(info, 1, (), C, "blake2b"), seen.append)
    assert h.digests == {chunk_key(C, "blake2b"): hashlib.blake2b(bytes(C)).hexdigest()} and sum(seen) == C


@pytest.mark.parametrize("size", [100, 3 * BLOCK + 5])
def test_reads_that_end_before_the_size_the_stat_says_are_a_changed_file_never_a_digest(tmp_path: Path, size: int) -> None:
    """A file system that returns less than the file's stat says (the stat itself unchanged)."""
    d, _ = _tree(tmp_path, size)
    base = discover(d)
    art = _ShortArtifact(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, most=65537, end=size // 2)
    with pytest.raises(FileChanged) as e:
        hash_file(art, art.files["w.bin"], ["sha256"])
    assert str(e.value) == f"read {size // 2} bytes, expected {size}"


def _full(size: int = 100, mtime: int = 50, ctime: int = 5, ino: int = 7, dev: int = 3) -> Any:
    return SimpleNamespace(st_size=size, st_mtime_ns=mtime, st_ctime_ns=ctime, st_ino=ino, st_dev=dev)


@pytest.mark.parametrize("before,after,total", [
    (_full(), _full(), 99),  # a short read, the stat unchanged
    (_full(), _full(ctime=6), 100),  # written during the read (only ctime moved)
    (_full(), _full(size=104), 100),
    (_full(ino=8), _full(ino=8), 100),  # replaced since listed: the same ctime by chance
    (_full(dev=4), _full(dev=4), 100),
    (_full(mtime=49), _full(mtime=49), 100),
    (_full(size=96), _full(size=96), 100),
    (_full(ctime=6), _full(ctime=6), 100),  # written since listed, mtime restored
])
def test_any_moved_fact_or_a_short_read_is_a_change(before: Any, after: Any, total: int) -> None:
    info = digest.FileInfo("w.bin", 100, 50, 7, 3, ctime_ns=5)
    with pytest.raises(FileChanged):
        digest._check_unchanged(info, before, after, total, 100)


def test_the_same_facts_throughout_are_no_change() -> None:
    info = digest.FileInfo("w.bin", 100, 50, 7, 3, ctime_ns=5)
    digest._check_unchanged(info, _full(), _full(), 100, 100)
    digest._check_unchanged(info, _full(), _full(), 40, 40)  # a chunk of the file: its own length
    digest._check_unchanged(dataclasses.replace(info, ctime_ns=0), _full(ctime=9), _full(ctime=9), 100, 100)  # no ctime listed
