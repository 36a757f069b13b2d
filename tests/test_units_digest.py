"""The digest engine's exact answers on small synthetic files, in-process and fast.

Written from the mutation survivors of ``manifest/digest.py`` (scripts/mutation.py runs
these for every mutant of the digest engine): what a changed file is said to be, chunk
digests whose chunks straddle the read blocks, a chunk read on its own (locally and
through fsspec's local file system, the remote path), the read cap of a last chunk, the
worker count's bounds and a failing chunk hasher. Every expected digest is computed with
hashlib on the bytes written, never read back from the tool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from manifest import digest
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


def test_a_chunk_read_alone_is_that_chunks_digest(tmp_path: Path) -> None:
    size = 2 * C + 100
    d, data = _tree(tmp_path, size)
    art = discover(d)
    info = art.files["w.bin"]
    want = _chunks(data, C)
    for k, n in enumerate([C, C, 100]):
        seen: list[int] = []
        t0 = time.time_ns()
        h = hash_chunk(art, info, k, C, seen.append)
        assert h.digests == {chunk_key(C): want[k]}
        assert t0 <= h.started_ns <= time.time_ns()
        assert sum(seen) == n and all(isinstance(x, int) and x > 0 for x in seen), (k, seen)
    assert hash_chunk(art, info, 1, C, None, "blake2b").digests == {chunk_key(C, "blake2b"): hashlib.blake2b(data[C:2 * C]).hexdigest()}


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


def test_a_remote_chunk_read_alone_is_that_chunks_digest(tmp_path: Path) -> None:
    size = 2 * C + 100
    d, data = _tree(tmp_path, size)
    art = _remote(d)
    assert art.remote
    info = art.files["w.bin"]
    want = _chunks(data, C)
    for k, n in enumerate([C, C, 100]):
        seen: list[int] = []
        t0 = time.time_ns()
        h = hash_chunk(art, info, k, C, seen.append)
        assert h.digests == {chunk_key(C): want[k]}, k
        assert t0 <= h.started_ns <= time.time_ns()
        assert sum(seen) == n, (k, seen)
    assert hash_chunk(art, info, 0, C, None, "blake2b").digests == {chunk_key(C, "blake2b"): hashlib.blake2b(data[:C]).hexdigest()}


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


# -- the worker count ------------------------------------------------------------------

@pytest.mark.parametrize("cpus,files,workers", [
    (4, 0, 1), (4, 1, 1), (4, 3, 3), (4, 100, 4), (3, 100, 3), (64, 100, MAX_WORKERS), (64, 5, 5), (None, 100, 1),
])
def test_one_worker_per_core_capped_and_never_more_than_files(monkeypatch: pytest.MonkeyPatch, cpus: int | None, files: int,
                                                                workers: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert default_workers(files) == workers
