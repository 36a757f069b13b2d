"""The streaming digest engine: known answers, worker independence, change detection,
and the ``size + 1`` read cap."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
import xxhash

from manifest.digest import BLAKE3_THREADED_MIN, BLOCK, FileChanged, hash_file, hash_files, hash_one
from manifest.inventory import discover

# Sizes around every boundary the reader has: empty, one byte, one block and its
# neighbours, and a file big enough for the multi-threaded blake3 path with a ragged tail.
SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "block-1.bin": BLOCK - 1,
    "block.bin": BLOCK,
    "block+1.bin": BLOCK + 1,
    "sub/big.bin": BLAKE3_THREADED_MIN + 3 * BLOCK + 12345,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digest")
    seed = os.urandom(1 << 20)
    for rel, size in SIZES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        reps = size // len(seed) + 1
        p.write_bytes((seed * reps)[:size])
    return root


def reference(data: bytes) -> dict[str, str]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake3": blake3.blake3(data).hexdigest(),
        "xxh3-128": xxhash.xxh3_128(data).hexdigest(),
    }


ALL = ["sha256", "blake3", "xxh3-128"]


def test_known_answers_for_the_empty_input(tmp_path: Path) -> None:
    """Published test vectors, not just agreement with the same libraries."""
    (tmp_path / "e").write_bytes(b"")
    art = discover(tmp_path)
    got = hash_file(art, art.files["e"], ALL)
    assert got["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert got["blake3"] == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert got["xxh3-128"] == "99aa06d3014798d86001c324468d497f"


def test_every_algorithm_matches_a_whole_buffer_digest(files: Path) -> None:
    art = discover(files)
    assert set(art.files) == set(SIZES)
    results = {info.path: res for info, res, _ in hash_files(art, list(art.files.values()), ALL)}
    for rel in SIZES:
        assert results[rel] == reference((files / rel).read_bytes()), rel


@pytest.mark.parametrize("threads", [True, False])
def test_the_threaded_and_single_threaded_blake3_paths_agree(files: Path, threads: bool) -> None:
    """A big file alone is hashed with blake3's own threads; among as many files as
    cores, single-threaded. Both must give the reference digest."""
    art = discover(files)
    got = hash_one(art, art.files["sub/big.bin"], ALL, threads=threads).digests
    assert got == reference((files / "sub/big.bin").read_bytes())


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_worker_count_does_not_change_digests(files: Path, workers: int) -> None:
    art = discover(files)
    infos = list(art.files.values())
    serial = {i.path: r for i, r, _ in hash_files(art, infos, ["sha256", "blake3"], workers=1)}
    got = {i.path: r for i, r, _ in hash_files(art, infos, ["sha256", "blake3"], workers=workers)}
    assert got == serial
    assert all(isinstance(v, dict) for v in got.values())


def test_files_are_hashed_largest_first_and_progress_counts_every_byte(files: Path) -> None:
    art = discover(files)
    seen: list[int] = []
    order = [i.path for i, _, _ in hash_files(art, list(art.files.values()), ["sha256"], workers=2, on_bytes=seen.append)]
    assert order == sorted(SIZES, key=lambda p: (-SIZES[p], p))
    assert sum(seen) == sum(SIZES.values())


def test_never_reads_past_size_plus_one(tmp_path: Path) -> None:
    """A file that grew after discovery: the reader stops one byte past the expected
    size (it never streams the rest) and the file is reported as changed."""
    p = tmp_path / "grew.bin"
    p.write_bytes(b"x" * (3 * BLOCK))
    art = discover(tmp_path)
    info = dataclasses.replace(art.files["grew.bin"], size=BLOCK + 10)
    read: list[int] = []
    with pytest.raises(FileChanged):
        hash_file(art, info, ["sha256"], on_bytes=read.append)
    assert sum(read) == BLOCK + 11


def test_a_file_shorter_than_expected_is_changed(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    art = discover(tmp_path)
    info = dataclasses.replace(art.files["f"], size=4)
    with pytest.raises(FileChanged, match="read 3 bytes, expected 4"):
        hash_file(art, info, ["sha256"])


def _writer_during_read(path: Path, action: str) -> Callable[[int], None]:
    """An ``on_bytes`` callback that changes the file after the first block was read
    (``workers=1`` runs it on the reading thread, so the timing is exact)."""
    done = []

    def cb(_n: int) -> None:
        if done:
            return
        done.append(1)
        st = path.stat()
        if action == "append":
            with open(path, "ab") as f:
                f.write(b"more")
        elif action == "overwrite-restore-mtime":
            with open(path, "r+b") as f:
                f.seek(5)
                f.write(b"Z")
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only ctime moves

    return cb


@pytest.mark.parametrize("action", ["append", "overwrite-restore-mtime"])
def test_a_file_changed_while_hashed_is_reported_not_passed(tmp_path: Path, action: str) -> None:
    p = tmp_path / "w.bin"
    p.write_bytes(os.urandom(4 * BLOCK))
    time.sleep(0.03)  # let a coarse-grained clock tick, so the change below is visible in ctime
    art = discover(tmp_path)
    out = list(hash_files(art, list(art.files.values()), ["sha256"], workers=1, on_bytes=_writer_during_read(p, action)))
    assert len(out) == 1
    _info, res, cached = out[0]
    assert isinstance(res, FileChanged), res
    assert not cached


def test_a_file_replaced_after_discovery_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "r.bin"
    p.write_bytes(b"same content")
    art = discover(tmp_path)
    tmp = tmp_path / "r.new"
    tmp.write_bytes(b"same content")
    os.replace(tmp, p)  # new inode, identical bytes
    with pytest.raises(FileChanged, match="replaced"):
        hash_file(art, art.files["r.bin"], ["sha256"])


def test_unreadable_and_vanished_files_are_yielded_as_errors(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    art = discover(tmp_path)
    (tmp_path / "b").unlink()
    got = {i.path: r for i, r, _ in hash_files(art, list(art.files.values()), ["sha256"], workers=2)}
    assert got["a"] == {"sha256": hashlib.sha256(b"a").hexdigest()}
    assert isinstance(got["b"], FileNotFoundError)


def test_xxh3_alone_cannot_be_signed(tmp_path: Path, keypair: tuple[Path, Path], cli: Callable[..., Any]) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"weights")
    r = cli("create", tmp_path / "m", "--hash", "xxh3-128", "--key", keypair[0])
    assert r.code == 2, r
    assert "error[usage]" in r.err and "xxh3" in r.err
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_an_unsigned_xxh3_manifest_verifies_and_says_what_it_guarantees(tmp_path: Path, cli: Callable[..., Any]) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "w.bin").write_bytes(b"weights")
    assert cli("create", d, "--hash", "xxh3-128", "-q").code == 0
    r = cli("verify", "--no-signature", d, "--json", "-q", "--no-cache")
    assert r.code == 0, r
    rep = json.loads(r.out)
    assert "non-cryptographic" in rep["facts"]["digest_guarantee"]
    (d / "w.bin").write_bytes(b"weightz")
    r = cli("verify", "--no-signature", d, "--json", "-q", "--no-cache")
    assert r.code == 1 and "digest-mismatch" in r.out


def test_blake3_manifest_round_trip_and_subset_selection(tmp_path: Path, cli: Callable[..., Any]) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "w.bin").write_bytes(os.urandom(3 * BLOCK + 7))
    assert cli("create", d, "--hash", "sha256", "--hash", "blake3", "-q").code == 0
    for h in ("sha256", "blake3"):
        r = cli("verify", "--no-signature", d, "--hash", h, "--json", "-q", "--no-cache")
        assert r.code == 0, r
        assert f'"{h}"' in r.out
    r = cli("verify", "--no-signature", d, "--hash", "xxh3-128", "-q", "--no-cache")
    assert r.code == 2 and "records no xxh3-128" in r.err


def test_a_job_hashes_in_the_background_and_stops_within_a_block_when_closed(tmp_path: Path) -> None:
    """verify and create start the digests before the cheap checks and close the job
    when a cheap check fails: the workers must already be reading when hash_files
    returns, and must stop at the next block boundary once closed.

    Deterministic: each worker is held (in its progress callback) after its first block
    until close() has begun, so no machine is fast enough to finish the files first."""
    import threading

    size = 64 * BLOCK
    for name in ("a.bin", "b.bin"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)  # sparse: reading it costs no disk
    art = discover(tmp_path)
    read: list[int] = []
    started, closing = threading.Event(), threading.Event()

    def on_bytes(n: int) -> None:
        read.append(n)
        started.set()
        assert closing.wait(60), "close() never began"

    job = hash_files(art, list(art.files.values()), ["sha256"], workers=2, on_bytes=on_bytes)
    assert started.wait(60), "no worker started before the job was iterated"  # nobody iterates the job: the threads run on their own
    closer = threading.Thread(target=job.close)
    closer.start()
    deadline = time.monotonic() + 60
    while not job._stop.is_set():  # close() has told the workers to stop (then it waits for them)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    closing.set()
    closer.join(60)
    assert not closer.is_alive(), "close() did not return"
    done = sum(read)
    assert len(read) <= 2 and done <= 2 * BLOCK, read  # each worker read one block, then stopped at the next boundary
    job.close()  # idempotent
    assert sum(read) == done  # nothing is read after close() returned
    assert list(job) == []  # a closed job yields nothing


def test_the_pool_keeps_order_and_never_hangs_on_a_raising_task() -> None:
    from manifest.digest import _OrderedPool

    def fn(i: Any) -> Any:
        if i == 3:
            raise KeyError("boom")
        time.sleep(0.001 * (7 - i))  # later items finish first
        return i * 10

    pool = _OrderedPool(fn, list(range(8)), 3)  # type: ignore[arg-type]
    out = list(pool)
    pool.shutdown()
    assert out[:3] == [0, 10, 20] and out[4:] == [40, 50, 60, 70]
    assert isinstance(out[3], KeyError)


class _HereRunner:
    """A :class:`~manifest.digest.UnitRunner` that hashes each unit in this process, in order
    (what a Ray worker does with its units, without Ray); ``lose_at``: the iterator raises
    there, as a runner whose worker was lost."""

    def __init__(self, lose_at: int | None = None) -> None:
        self.units: list[Any] = []
        self.closed = False
        self.lose_at = lose_at

    def start(self, artifact: Any, units: list[Any]) -> Any:
        from manifest.digest import hash_unit

        self.units = list(units)

        def results() -> Any:
            for i, u in enumerate(units):
                if i == self.lose_at:
                    raise RuntimeError("the worker was lost")
                try:
                    yield hash_unit(artifact, u, threads=False)
                except Exception as e:
                    yield e

        return results()

    def close(self) -> None:
        self.closed = True


def test_a_unit_runner_is_given_every_file_and_chunk_and_gives_what_the_threads_give(files: Path) -> None:
    from manifest.digest import chunk_key

    art = discover(files)
    infos = list(art.files.values())
    big, csize = "sub/big.bin", 8 << 20
    chunked = {big: csize}
    threads = {i.path: r for i, r, _ in hash_files(art, infos, ["sha256"], workers=2, chunked=chunked)}
    runner = _HereRunner()
    got = {i.path: r for i, r, _ in hash_files(art, infos, ["sha256"], chunked=chunked, runner=runner)}
    assert got == threads
    n = -(-SIZES[big] // csize)
    others = sorted((p for p in SIZES if p != big), key=lambda p: (-SIZES[p], p))
    assert [(u.info.path, u.index) for u in runner.units] == [(big, k) for k in range(n)] + [(p, None) for p in others]
    data = (files / big).read_bytes()
    assert got[big] == {chunk_key(csize): "".join(hashlib.sha256(data[k * csize:(k + 1) * csize]).hexdigest() for k in range(n))}
    assert runner.closed


def test_a_runner_that_cannot_run_a_unit_ends_the_job_with_its_error(files: Path) -> None:
    """Not a file's error (that is a result): the job stops, the runner is closed."""
    art = discover(files)
    runner = _HereRunner(lose_at=1)
    job = hash_files(art, list(art.files.values()), ["sha256"], runner=runner)
    with pytest.raises(RuntimeError, match="the worker was lost"):
        list(job)
    assert runner.closed
