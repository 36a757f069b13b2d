"""The core promises on small synthetic artifacts, in-process and fast.

scripts/mutation.py runs these for every mutant of the modules that carry the promises
(the digest comparison, discovery, the finding mapping, the stat cache key), so each test
builds its own few-kilobyte tree: no checkpoint copy. What they assert is computed
independently (hashlib, the byte positions written), never read back from the tool.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from manifest import api
from manifest.document import Manifest
from manifest.errors import InputError
from manifest.findings import Finding, Severity, examples, group_repeats
from manifest.formats.safetensors import build, parse_header_bytes
from manifest.inventory import (
    DEFAULT_IGNORE,
    Artifact,
    BeneathOpener,
    FileInfo,
    ancestors,
    discover,
    empty_dirs,
    is_ignored,
    is_within,
    literal_rel,
    unaccounted_dirs,
)
from manifest.options import Options

CHUNK = 4096  # the smallest chunk size a manifest document accepts
WEIGHTS = "model.safetensors"
TENSORS = {"alpha": ("F32", (16, 64)), "beta": ("F32", (40, 64)), "gamma": ("F32", (64,)), "delta": ("F32", (130, 64))}


def _weights() -> bytes:
    head = build(TENSORS)
    n = sum(4 * (s[0] * (s[1] if len(s) > 1 else 1)) for _, s in TENSORS.values())
    return head + bytes((i * 7 + 3) % 251 for i in range(n))


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A small checkpoint: weights over several chunks (the last one short), side files,
    a nested directory and an empty one."""
    d = tmp_path / "m"
    (d / "sub" / "deep").mkdir(parents=True)
    (d / "empty").mkdir()
    (d / WEIGHTS).write_bytes(_weights())
    (d / "config.json").write_text('{"model_type": "bert"}')
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (d / "sub" / "a.txt").write_text("a")
    (d / "sub" / "deep" / "b.txt").write_text("bb")
    return d


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _opts(**kw: Any) -> Options:
    kw.setdefault("use_cache", False)
    kw.setdefault("integrity_only", True)
    return Options(**kw)


def _create(d: Path, **kw: Any) -> Manifest:
    return api.create(d, write=False, options=_opts(chunk_size=CHUNK, **kw))


def _errors(rep: Any) -> list[Finding]:
    return [f for f in rep.findings if f.is_error]


def _flip(p: Path, at: int) -> None:
    """Change one byte, keeping text text (bit 0: a letter stays a letter, a digit a digit)."""
    with open(p, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))


def _mismatches(rep: Any) -> list[Finding]:
    return [f for f in rep.findings if f.code == "digest-mismatch"]


def _from_doc(doc: dict[str, Any]) -> Manifest:
    return Manifest.from_document(json.loads(json.dumps(doc)))


def _table_doc(files: dict[str, Any], algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, Any]:
    signed = {"_type": "model-manifest", "version": 1, "created_by": {"name": "t", "version": "1"}, "created_at": "2026-01-01T00:00:00Z",
              "hashing": {"algorithms": list(algorithms), "ignore": []}, "files": files}
    return {"signed": signed, "signatures": []}


def _table_outcome(doc: dict[str, Any]) -> Any:
    try:
        m = _from_doc(doc)
    except Exception as e:  # the outcome compared is the error itself
        return (type(e).__name__, str(e))
    return m.files, [(f.code, f.path, f.message) for f in m.rejected]


def _good_entry(i: int, algorithms: tuple[str, ...]) -> dict[str, Any]:
    return {"size": i, **{a: hashlib.sha256(f"{a}{i}".encode()).hexdigest()[: {"xxh3-128": 32}.get(a, 64)] for a in algorithms}}


BAD_ENTRIES: dict[str, tuple[str, Any]] = {
    "negative size": ("w/x.bin", {"size": -1}), "boolean size": ("w/x.bin", {"size": True}), "float size": ("w/x.bin", {"size": 1.5}),
    "text size": ("w/x.bin", {"size": "1"}), "no size": ("w/x.bin", {"size": None}),
    "unknown key": ("w/x.bin", {"extra": 1}), "uppercase": ("w/x.bin", {"sha256": "A" * 64}), "short": ("w/x.bin", {"sha256": "a" * 63}),
    "long": ("w/x.bin", {"sha256": "a" * 65}), "number": ("w/x.bin", {"sha256": 5}), "not hex": ("w/x.bin", {"sha256": "g" * 64}),
    "no digest": ("w/x.bin", {"sha256": None}), "newline": ("w/x.bin", {"sha256": "a" * 63 + "\n"}), "list": ("w/x.bin", []),
    "climbs": ("../x.bin", {}), "backslash": ("a\\b.bin", {}), "second algorithm short": ("w/x.bin", {"blake3": "b" * 63}),
}


@pytest.mark.parametrize("algorithms", [("sha256",), ("sha256", "blake3"), ("sha256", "md5")])
def test_the_file_table_read_in_columns_is_the_one_read_entry_by_entry(algorithms: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import document

    files = {f"d{i % 3}/f{i:03}.bin": _good_entry(i, algorithms) for i in range(40)}
    fast = _table_outcome(_table_doc(files, algorithms))
    assert list(fast[0]) == list(files) and all(e.size == files[p]["size"] for p, e in fast[0].items())
    usable = [a for a in algorithms if a != "md5"]
    assert all(e.digests == {a: files[p][a] for a in usable} and e.path == p for p, e in fast[0].items())
    monkeypatch.setattr(document, "_plain_file_entries", lambda *a: None)
    assert _table_outcome(_table_doc(files, algorithms)) == fast


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_bad_entry_among_good_ones_is_refused_as_it_is_alone(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The column checks accept a table only when each entry passes on its own: any bad
    entry, anywhere, gives the entry-by-entry answer (the error naming it, or the path refused)."""
    from manifest import document

    algorithms = ("sha256", "blake3")
    files = {f"d/f{i:03}.bin": _good_entry(i, algorithms) for i in range(30)}
    path, change = BAD_ENTRIES[case]
    items = list(files.items())
    items.insert(15, (path, change if isinstance(change, list) else {**_good_entry(7, algorithms), **change}))
    doc = _table_doc(dict(items), algorithms)
    fast = _table_outcome(doc)
    monkeypatch.setattr(document, "_plain_file_entries", lambda *a: None)
    assert _table_outcome(doc) == fast
    if case in ("climbs", "backslash"):
        assert [c for c, _, _ in fast[1]] == ["unsafe-path"] and path not in fast[0] and len(fast[0]) == 30
    else:
        assert fast[0] == "ManifestInvalid" and repr(path) in fast[1]


def test_a_digest_ending_in_a_newline_is_refused_in_the_file_table_and_the_chunk_list(tiny: Path) -> None:
    from manifest.errors import ManifestInvalid

    doc = _create(tiny).to_document()
    entry = doc["signed"]["files"]["vocab.txt"]
    entry["sha256"] = entry["sha256"][:63] + "\n"
    with pytest.raises(ManifestInvalid, match=r"file entry 'vocab\.txt': sha256 must be 64 lowercase hex digits"):
        _from_doc(doc)
    doc = _create(tiny).to_document()
    chunks = doc["signed"]["chunks"]["files"][WEIGHTS]
    chunks[0] = chunks[0][:63] + "\n"
    with pytest.raises(ManifestInvalid, match="chunks of"):
        _from_doc(doc)


def test_two_bad_digest_lengths_that_add_up_are_refused() -> None:
    files = {f"f{i}": _good_entry(i, ("sha256",)) for i in range(4)}
    files["f1"]["sha256"] += "a"
    files["f2"]["sha256"] = files["f2"]["sha256"][:-1]
    assert _table_outcome(_table_doc(files)) == ("ManifestInvalid", "file entry 'f1': sha256 must be 64 lowercase hex digits")


# -- the digest comparison ------------------------------------------------------------------------


def test_a_clean_tiny_checkpoint_verifies_by_chunks_and_whole_files(tiny: Path) -> None:
    m = _create(tiny)
    size = (tiny / WEIGHTS).stat().st_size
    assert m.chunk_size == CHUNK and list(m.chunks) == [WEIGHTS]
    data = (tiny / WEIGHTS).read_bytes()
    assert m.chunks[WEIGHTS] == [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, size, CHUNK)]
    assert size % CHUNK and len(m.chunks[WEIGHTS]) == -(-size // CHUNK)  # the last chunk is short
    rep = api.verify(tiny, m, options=_opts())
    assert rep.exit_status == 0 and _errors(rep) == []
    assert "digests" in rep.checked and "file-set" in rep.checked
    files = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file())
    assert rep.stats["files_hashed"] == len(files) and rep.stats["files_by_chunks"] == 1
    assert rep.stats["bytes_hashed"] == sum((tiny / f).stat().st_size for f in files)
    assert rep.stats["algorithms"] == ["sha256"]


def test_a_renamed_file_is_missing_and_extra_though_the_count_is_the_same(tiny: Path) -> None:
    m = _create(tiny)
    os.rename(tiny / "sub" / "a.txt", tiny / "sub" / "A.txt")
    rep = api.verify(tiny, m, options=_opts())
    assert [(f.code, f.path) for f in _errors(rep)] == [("missing-file", "sub/a.txt"), ("extra-file", "sub/A.txt")]


@pytest.mark.parametrize("algorithms", [["sha256"], ["blake3"], ["sha256", "blake3"]])
def test_a_changed_small_file_is_named_whatever_digests_are_compared(tiny: Path, algorithms: list[str]) -> None:
    """Digests equal to the manifest's skip the per-algorithm comparison; a file whose
    digests differ (all compared, or the subset asked for) is still named."""
    m = _create(tiny, algorithms=["sha256", "blake3"])
    assert api.verify(tiny, m, options=_opts(algorithms=algorithms)).exit_status == 0
    _flip(tiny / "sub" / "deep" / "b.txt", 1)
    rep = api.verify(tiny, m, options=_opts(algorithms=algorithms))
    assert [(f.code, f.path) for f in _errors(rep)] == [("digest-mismatch", "sub/deep/b.txt")]


@pytest.mark.parametrize("where", ["header", "first", "boundary", "last"])
def test_a_changed_byte_names_its_chunk_range_and_tensors(tiny: Path, where: str) -> None:
    m = _create(tiny)
    p = tiny / WEIGHTS
    size = p.stat().st_size
    base = 8 + parse_header_bytes(p.read_bytes()).header_len
    at = {"header": 20, "first": base + 5, "boundary": 2 * CHUNK - 1, "last": size - 1}[where]
    edits = [at, at + 1] if where == "boundary" else [at]  # the boundary edit spans two chunks
    for e in edits:
        _flip(p, e)
    rep = api.verify(tiny, m, options=_opts(exhaustive=True))  # a header edit fails the header check first
    (f,) = _mismatches(rep)
    try:  # the tensors are named from the file's own (live) header
        live = parse_header_bytes(p.read_bytes()).tensors
    except ValueError:
        live = {}
    assert (f.code, f.path, rep.exit_status) == ("digest-mismatch", WEIGHTS, 1)
    bad = sorted({e // CHUNK for e in edits})
    lo, hi = bad[0] * CHUNK, min((bad[-1] + 1) * CHUNK, size) - 1
    tensors = [n for n, t in live.items() if base + t.start <= hi and base + t.end > lo]
    assert tensors or where == "header"
    assert f.expected == {"chunk_size": CHUNK, "chunks": len(m.chunks[WEIGHTS]), "bad_chunks": bad,
                          "byte_ranges": [[lo, hi]], "tensors": tensors, "header": lo < base}
    assert f"{len(bad)} of {len(m.chunks[WEIGHTS])} chunks" in f.message
    assert f"Range: bytes={lo}-{hi}" in (f.hint or "") and f"-r {lo}-{hi} " in (f.hint or "")
    if lo < base:
        assert "the safetensors header" in f.message
    for t in tensors:
        assert t in f.message


def test_separate_damaged_chunks_are_separate_ranges(tiny: Path) -> None:
    m = _create(tiny)
    p = tiny / WEIGHTS
    n = len(m.chunks[WEIGHTS])
    assert n >= 5
    size = p.stat().st_size
    for k in (0, 2, 3, n - 1):
        _flip(p, min(k * CHUNK + CHUNK - 10, size - 1))  # past the header, in the data
    (f,) = _errors(api.verify(tiny, m, options=_opts()))
    assert f.expected["bad_chunks"] == [0, 2, 3, n - 1]
    assert f.expected["byte_ranges"] == [[0, CHUNK - 1], [2 * CHUNK, 4 * CHUNK - 1], [(n - 1) * CHUNK, size - 1]]
    shown = ", ".join(api._in_units(a, b + 1) for a, b in f.expected["byte_ranges"])  # three ranges: all shown, no "more"
    assert f.message.startswith(f"bytes {shown} differ (4 of {n} chunks)") and "KiB" in f.message
    assert f"Range: bytes=0-{CHUNK - 1},{2 * CHUNK}-{4 * CHUNK - 1},{(n - 1) * CHUNK}-{size - 1};" in (f.hint or "")


def test_more_than_three_ranges_are_counted(tiny: Path) -> None:
    m = _create(tiny)
    n = len(m.chunks[WEIGHTS])
    for k in range(0, n, 2):
        _flip(tiny / WEIGHTS, k * CHUNK + CHUNK - 1)
    (f,) = _errors(api.verify(tiny, m, options=_opts()))
    runs = len(range(0, n, 2))
    assert runs > 3 and f"and {runs - 3} more ranges" in f.message
    assert len(f.expected["byte_ranges"]) == runs


@pytest.mark.parametrize("rel", ["vocab.txt", "sub/deep/b.txt"])
def test_a_changed_small_file_is_a_digest_mismatch_with_both_digests(tiny: Path, rel: str) -> None:
    m = _create(tiny)
    want = _sha(tiny / rel)
    _flip(tiny / rel, 0)
    rep = api.verify(tiny, m, options=_opts(exhaustive=True))
    assert [(f.code, f.path, f.expected, f.actual) for f in _mismatches(rep)] == [("digest-mismatch", rel, want, _sha(tiny / rel))]
    assert f"{_sha(tiny / rel)[:16]}..., manifest says {want[:16]}..." in _mismatches(rep)[0].message
    assert rep.exit_status == 1


def test_every_recorded_algorithm_is_compared(tiny: Path) -> None:
    """A digest of the second algorithm alone differs: still a mismatch (blake3 recorded too)."""
    pytest.importorskip("blake3")
    m = _create(tiny, algorithms=["sha256", "blake3"])
    doc = m.to_document()
    real = doc["signed"]["files"]["vocab.txt"]["blake3"]
    doc["signed"]["files"]["vocab.txt"]["blake3"] = real[:-1] + ("0" if real[-1] != "0" else "1")
    rep = api.verify(tiny, _from_doc(doc), options=_opts())
    assert [(f.code, f.path, f.actual) for f in _errors(rep)] == [("digest-mismatch", "vocab.txt", real)]
    assert _errors(rep)[0].message.startswith("blake3 is ")


def test_many_changed_files_are_one_grouped_finding_naming_each(tiny: Path) -> None:
    rels = [f"n{k}.txt" for k in range(4)]
    for r in rels:
        (tiny / r).write_text(r)
    m = _create(tiny)
    for r in rels:
        _flip(tiny / r, 0)
    (f,) = _errors(api.verify(tiny, m, options=_opts()))
    assert f.code == "digest-mismatch" and sorted(f.items or ()) == rels
    assert f.message.startswith("4 files' content differs from manifest")
    # fail-fast: the first mismatch alone, and the run says it stopped early
    rep = api.verify(tiny, m, options=_opts(fail_fast=True))
    assert len(_errors(rep)) == 1 and _errors(rep)[0].items is None and rep.stopped_early


def test_a_digest_the_caller_already_knows_is_compared_not_read(tiny: Path) -> None:
    """``known_digests`` (a staged Git LFS pointer's oid) stands for the file's digest."""
    m = _create(tiny)
    good = {"vocab.txt": {"sha256": _sha(tiny / "vocab.txt")}}
    rep = api.verify(tiny, m, options=_opts(known_digests=good))
    assert rep.exit_status == 0 and rep.stats["files_from_known_digests"] == 1
    assert rep.stats["files_hashed"] == len(m.files) - 1
    bad = {"vocab.txt": {"sha256": "0" * 64}}
    rep = api.verify(tiny, m, options=_opts(known_digests=bad))
    (f,) = _errors(rep)
    assert (f.code, f.path, f.actual) == ("digest-mismatch", "vocab.txt", "0" * 64)
    assert "staged Git LFS pointer" in f.message


def test_the_file_set_names_missing_extra_and_directories(tiny: Path) -> None:
    m = _create(tiny)
    assert m.directories == ["empty"]
    (tiny / "sub" / "a.txt").unlink()
    (tiny / "new.txt").write_text("x")
    (tiny / "empty").rmdir()
    (tiny / "stray").mkdir()
    rep = api.verify(tiny, m, options=_opts())
    got = sorted((f.code, f.path) for f in _errors(rep))
    assert got == [("extra-directory", "stray"), ("extra-file", "new.txt"), ("missing-directory", "empty"), ("missing-file", "sub/a.txt")]
    assert rep.exit_status == 1


def test_many_missing_files_are_grouped(tiny: Path) -> None:
    for k in range(5):
        (tiny / f"x{k}.txt").write_text(str(k))
    m = _create(tiny)
    for k in range(5):
        (tiny / f"x{k}.txt").unlink()
    (f,) = _errors(api.verify(tiny, m, options=_opts()))
    assert f.code == "missing-file" and f.items == tuple(f"x{k}.txt" for k in range(5))
    assert f.message.startswith("5 files listed in the manifest are not in the directory: x0.txt, x1.txt, x2.txt, ...")


def test_the_stat_cache_answers_for_unchanged_files_only(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import statcache

    monkeypatch.setenv(statcache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)
    m = api.create(tiny, write=False, options=Options(chunk_size=CHUNK, integrity_only=True))
    rep = api.verify(tiny, m, options=Options(integrity_only=True))
    # every file, the weights verified by chunks too (their cache entry holds every chunk digest)
    assert rep.exit_status == 0 and rep.stats["files_hashed"] == 0 and rep.stats["files_by_chunks"] == 1
    assert sorted(rep.facts["trusted_from_cache"]) == sorted(m.files) and rep.stats["files_from_cache"] == len(m.files)
    assert "digests (stat cache)" in rep.checked
    os.utime(tiny / "vocab.txt", ns=(1, 1))
    rep = api.verify(tiny, m, options=Options(integrity_only=True))
    assert rep.stats["files_hashed"] == 1 and "vocab.txt" not in rep.facts["trusted_from_cache"]
    assert rep.stats["bytes_hashed"] == (tiny / "vocab.txt").stat().st_size


# -- discovery --------------------------------------------------------------------------------------


def test_discovery_lists_regular_files_sorted_with_their_stat(tiny: Path) -> None:
    art = discover(tiny)
    want = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file())
    assert list(art.files) == want == art.paths() and art.problems == []
    assert art.dirs == ["empty", "sub", "sub/deep"]
    for rel, info in art.files.items():
        st = os.lstat(tiny / rel)
        assert (info.path, info.size, info.mtime_ns, info.ino, info.dev, info.ctime_ns, info.source) == (
            rel, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns, None)
        assert info.stat_key() == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    assert "vocab.txt" in art and "nope" not in art
    assert art.with_suffix(".txt", ".json") == ["config.json", "sub/a.txt", "sub/deep/b.txt", "vocab.txt"]
    assert empty_dirs(art) == ["empty"]


def test_discovery_ignores_the_roots_git_dir_and_the_manifest_only(tiny: Path) -> None:
    (tiny / ".git").mkdir()
    (tiny / ".git" / "HEAD").write_text("ref")
    (tiny / "sub" / ".git").mkdir()
    (tiny / "sub" / ".git" / "x").write_text("x")
    (tiny / "manifest.json").write_text("{}")
    (tiny / "sub" / "manifest.json").write_text("{}")
    art = discover(tiny)
    assert ".git/HEAD" not in art and "manifest.json" not in art and ".git" not in art.dirs
    assert "sub/.git/x" in art and "sub/manifest.json" in art and "sub/.git" in art.dirs
    assert is_ignored(".git/a/b", DEFAULT_IGNORE) and not is_ignored("a/.git/b", DEFAULT_IGNORE)
    assert not is_ignored("x", ["/"]) and is_ignored("a/b", ["a/b"]) and not is_ignored("a/bc", ["a/b"])
    assert not is_ignored("a/b", ["a/b/"]) and is_ignored("a/b/c", ["a/b/"])


@pytest.mark.parametrize("rules", [DEFAULT_IGNORE, ("a/b/", "a/x", "x", "/", "a/b"), ("a/", "b/c/d", "c/"), ("x/", "y"), ()])
def test_discovery_leaves_out_exactly_what_the_ignore_rules_name(tmp_path: Path, rules: tuple[str, ...]) -> None:
    """Discovery applies the rules a directory at a time; what it keeps is what is_ignored
    keeps, file by file and directory by directory (a directory rule prunes the walk)."""
    d = tmp_path / "t"
    for rel in ("x", "y", "a/x", "a/b/c", "a/b/d/e", "a/bc/f", "b/c/d", "b/c/e", "c/x", ".git/HEAD", "s/.git/h", "x2/y", "manifest.json"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(rel)
    (d / "empty").mkdir()
    art = discover(d, ignore=rules)
    files, dirs = [], []
    for top, dnames, fnames in os.walk(d):
        rel_top = Path(top).relative_to(d).as_posix()
        rel_top = "" if rel_top == "." else rel_top + "/"
        if rel_top and any(is_ignored(rel_top[:i + 1], rules) for i in range(len(rel_top)) if rel_top[i] == "/"):
            dnames[:] = []
            continue
        dirs += [rel_top + n for n in dnames if not is_ignored(rel_top + n + "/", rules)]
        files += [rel_top + n for n in fnames if not is_ignored(rel_top + n, rules)]
    assert sorted(art.files) == sorted(files) and art.dirs == sorted(dirs)


def test_every_non_regular_entry_is_a_finding_and_never_a_file(tiny: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("o")
    os.symlink("vocab.txt", tiny / "inside-link")
    os.symlink(outside, tiny / "out-link")
    os.symlink("nowhere", tiny / "dangling")
    os.symlink("loop", tiny / "loop")
    os.symlink("sub", tiny / "dir-link")
    os.mkfifo(tiny / "fifo")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(tiny / "sock"))
    except OSError:  # the path is too long for AF_UNIX
        pass
    (tiny / "A.txt").write_text("1")
    (tiny / "a.txt").write_text("2")
    art = discover(tiny)
    s.close()
    codes = {f.path: f.code for f in art.problems}
    assert codes["inside-link"] == "unsupported-file" and codes["dir-link"] == "unsupported-file"
    assert codes["out-link"] == "unsafe-path" and codes["loop"] == "unsafe-path"
    assert codes["fifo"] == "unsupported-file"
    assert codes["a.txt"] == "path-collision"
    assert "dangling" in codes
    for p in ("inside-link", "out-link", "dangling", "loop", "dir-link", "fifo", "sock"):
        assert p not in art.files
    msg = {f.path: f.message for f in art.problems}
    assert msg["loop"] == "symlink loop (to loop); not followed"
    assert msg["out-link"] == f"symlink points outside the directory (to {outside}); it is not followed"
    assert msg["inside-link"] == "symlink (to vocab.txt); only regular files are fingerprinted"
    assert msg["fifo"] == "FIFO; it is never opened"
    assert msg["a.txt"] == "collides with A.txt on case-insensitive or normalizing file systems"
    assert art.ignore == DEFAULT_IGNORE and discover(tiny, ignore=["vocab.txt"]).ignore == ("vocab.txt",)


def test_links_into_the_allowed_store_are_followed_and_others_refused(tmp_path: Path) -> None:
    store, snap = tmp_path / "blobs", tmp_path / "snap"
    store.mkdir()
    snap.mkdir()
    (store / "b1").write_bytes(b"12345")
    (tmp_path / "elsewhere").write_bytes(b"x")
    os.symlink(store / "b1", snap / "ok")
    os.symlink(tmp_path / "elsewhere", snap / "out")
    os.symlink(store / "missing", snap / "gone")
    os.symlink(store, snap / "dirlink")
    art = discover(snap, follow_links_into=store)
    st = os.stat(store / "b1")
    assert art.files["ok"] == FileInfo("ok", 5, st.st_mtime_ns, st.st_ino, st.st_dev, source=str(store / "b1"), ctime_ns=st.st_ctime_ns)
    assert sorted(art.files) == ["ok"]
    assert {f.path: f.code for f in art.problems} == {"out": "unsafe-path", "gone": "unsafe-path", "dirlink": "unsafe-path"}
    assert {f.path: f.message for f in art.problems}["gone"] == "symlink is dangling or loops; it is not followed"
    assert {f.path: f.message for f in art.problems}["out"] == "symlink points outside the allowed blob store; it is not followed"
    with art.open("ok") as f:
        assert f.read() == b"12345"
    os.unlink(store / "b1")
    os.mkfifo(store / "b1")  # a blob swapped for a FIFO: refused, never a blocked open
    with pytest.raises(InputError, match="no longer a regular file"):
        art.open("ok")


def test_unsafe_names_are_refused_unread(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "ok").write_text("x")
    (d / "new\nline").write_text("x")
    (d / "bad\\dir").mkdir()
    (d / "bad\\dir" / "inner").write_text("x")
    art = discover(d)
    assert list(art.files) == ["ok"] and art.dirs == []
    shown = {f.path: (f.code, f.message) for f in art.problems}
    assert shown["new\\nline"][0] == "unsafe-path" and "newline" in shown["new\\nline"][1]
    assert shown["bad\\\\dir"] == ("unsafe-path", "directory: backslash in path; nothing below it is read")
    assert shown["bad\\\\dir/inner"] == ("unsafe-path", "backslash in path; the file is not read")
    assert len(art.problems) == 3
    (d / "ok2" / "x\\y" / "z\\w").mkdir(parents=True)  # a bad name below a good one is named; below a bad one it is not
    assert {f.path for f in discover(d).problems if f.message.startswith("directory:")} == {"bad\\\\dir", "ok2/x\\\\y"}


def test_a_root_that_is_not_a_readable_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read directory") as e:
        discover(tmp_path / "nope")
    assert e.value.code == "unreadable"
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a directory") as e:
        discover(tmp_path / "f")
    assert e.value.code == "unreadable"


def test_reading_side_files_is_capped_and_memoized(tiny: Path) -> None:
    art = discover(tiny)
    assert art.read_bytes("vocab.txt") == (tiny / "vocab.txt").read_bytes()
    n = art.files["vocab.txt"].size
    assert art.read_bytes("vocab.txt", cap=n) == (tiny / "vocab.txt").read_bytes()
    with pytest.raises(InputError, match=f"{n} bytes, over the {n - 1}-byte cap") as e:
        art.read_bytes("vocab.txt", cap=n - 1)
    assert e.value.path == "vocab.txt"
    with pytest.raises(InputError, match="over the 5-byte cap"):
        art.read_json("config.json", cap=5)
    first = art.read_json("config.json")
    assert first == {"model_type": "bert"} and art.read_json("config.json") is first
    (tiny / "config.json").write_text('{"model_type": "gpt2"}')  # memoized: read once per run
    assert art.read_json("config.json") is first
    calls = []
    assert art.memo("k", lambda: calls.append(1) or 7) == 7 and art.memo("k", lambda: calls.append(1) or 8) == 7 and calls == [1]
    with pytest.raises(Exception) as e1:
        art.read_json("vocab.txt")
    with pytest.raises(Exception) as e2:
        art.read_json("vocab.txt")
    assert e1.value is e2.value


def test_a_file_grown_past_the_cap_while_read_is_refused(tiny: Path) -> None:
    art = discover(tiny)
    n = art.files["vocab.txt"].size
    with open(tiny / "vocab.txt", "ab") as f:
        f.write(b"more")
    with pytest.raises(InputError, match="grew past the") as e:
        art.read_bytes("vocab.txt", cap=n)
    assert e.value.path == "vocab.txt"


def test_a_directory_swapped_for_a_link_after_discovery_is_not_followed(tiny: Path, tmp_path: Path) -> None:
    art = discover(tiny)
    other = tmp_path / "other"
    (other / "deep").mkdir(parents=True)
    (other / "deep" / "b.txt").write_text("evil")
    os.rename(tiny / "sub", tmp_path / "moved")
    os.symlink(other, tiny / "sub")
    with pytest.raises(NotADirectoryError):  # O_DIRECTORY | O_NOFOLLOW on a link: ENOTDIR (verify: unreadable)
        art.open("sub/deep/b.txt")
    os.unlink(tiny / "vocab.txt")
    os.symlink(other / "deep" / "b.txt", tiny / "vocab.txt")
    with pytest.raises(InputError, match=r"vocab\.txt became a symlink after discovery") as e:
        art.open("vocab.txt")
    assert (e.value.code, e.value.path) == ("unsafe-path", "vocab.txt")


def test_an_opener_walks_to_each_directory_once_and_refuses_what_open_refuses(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    art = discover(tiny)
    (tiny / "sub" / "c.txt").write_text("c")  # not listed: an opener opens only what discovery listed
    opened: list[str] = []
    real_open = os.open

    def counting(path: Any, flags: int, *a: Any, **k: Any) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", counting)
    with BeneathOpener(art) as op:
        for rel in ("sub/a.txt", "sub/a.txt", "sub/deep/b.txt", "vocab.txt", "config.json"):
            fd, st = op.open(rel)
            try:
                assert os.read(fd, 100) == (tiny / rel).read_bytes() and st.st_ino == art.files[rel].ino
            finally:
                os.close(fd)
        with pytest.raises(KeyError):
            op.open("sub/c.txt")
    root = str(tiny)
    # the root and "sub" once for both sub/a.txt; root, sub, deep for b.txt; the root once for both root files
    assert opened == [root, "sub", "a.txt", "a.txt", root, "sub", "deep", "b.txt", root, "vocab.txt", "config.json"]
    assert op._dfd == -1  # closed on leaving the block
    os.unlink(tiny / "vocab.txt")
    os.mkfifo(tiny / "vocab.txt")
    os.unlink(tiny / "config.json")
    os.symlink(tiny / "sub" / "a.txt", tiny / "config.json")
    with BeneathOpener(art) as op:
        with pytest.raises(InputError, match="no longer a regular file"):
            op.open("vocab.txt")
        with pytest.raises(InputError, match=r"config\.json became a symlink after discovery") as e:
            op.open("config.json")
        assert (e.value.code, e.value.path) == ("unsafe-path", "config.json")


def test_an_opener_keeps_reading_the_directory_it_walked_to_never_a_link_put_in_its_place(tiny: Path, tmp_path: Path) -> None:
    """A directory swapped for a symlink after the opener walked to it: files of that
    directory opened next through the kept descriptor are entries of the original
    directory (the very files discovery listed), never the link's target; the next walk
    to it, after another directory, is refused as Artifact.open refuses it."""
    art = discover(tiny)
    (tiny / "sub" / "x.txt").write_text("x")
    art = discover(tiny)
    other = tmp_path / "other"
    (other / "deep").mkdir(parents=True)
    (other / "a.txt").write_text("evil a")
    (other / "x.txt").write_text("evil x")
    with BeneathOpener(art) as op:
        fd, _ = op.open("sub/a.txt")
        os.close(fd)
        os.rename(tiny / "sub", tmp_path / "moved")
        os.symlink(other, tiny / "sub")
        fd, st = op.open("sub/x.txt")
        try:
            assert os.read(fd, 100) == b"x" and st.st_ino == art.files["sub/x.txt"].ino
        finally:
            os.close(fd)
        fd, _ = op.open("vocab.txt")
        os.close(fd)
        with pytest.raises(NotADirectoryError):
            op.open("sub/a.txt")
        with pytest.raises(NotADirectoryError):
            op.open("sub/deep/b.txt")


def test_a_file_replaced_by_a_fifo_is_refused_without_blocking(tiny: Path) -> None:
    art = discover(tiny)
    os.unlink(tiny / "vocab.txt")
    os.mkfifo(tiny / "vocab.txt")
    with pytest.raises(InputError, match="no longer a regular file") as e:
        art.open("vocab.txt")
    assert (e.value.code, e.value.path) == ("unsupported-file", "vocab.txt")


def test_path_helpers() -> None:
    assert is_within("/a/b", "/a/b") and is_within("/a/b/c", "/a/b") and is_within("/a/b/c", "/a/b/")
    assert not is_within("/a/bc", "/a/b") and not is_within("/a", "/a/b")
    assert ancestors(["a/b/c", "a/b/d", "x", "e/f"]) == {"a", "a/b", "e"}
    assert ancestors(["a/b/c/d", "a/x"]) == {"a", "a/b", "a/b/c"}
    assert unaccounted_dirs(["a", "a/b", "c", "d", "e/f"], ["a/b/x"], ["d", "e/f"]) == ["c"]


def test_literal_rel_names_the_path_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    assert literal_rel(root / "manifest.json", root) == "manifest.json"
    assert literal_rel(root / "sub" / "m.json", root) == "sub/m.json"
    assert literal_rel(root, root) is None and literal_rel(tmp_path / "x.json", root) is None
    assert literal_rel(tmp_path / "rr" / "m.json", root) is None
    (tmp_path / "far" / "away").mkdir(parents=True)
    os.symlink(tmp_path / "far" / "away", root / "link")
    assert literal_rel(root / "link" / ".." / "m.json", root) is None  # climbs through a symlinked dir
    assert literal_rel(root / "nodir" / "m.json", root) is None
    monkeypatch.chdir(root)
    assert literal_rel("m.json", ".") == "m.json" and literal_rel("sub/m.json", root) == "sub/m.json"


def test_an_artifact_opens_only_what_discovery_listed(tiny: Path) -> None:
    art = Artifact(root=tiny, files={})
    with pytest.raises(KeyError):
        art.open("vocab.txt")
    art = discover(tiny)
    f, st = art.open_with_stat("sub/deep/b.txt")
    with f:
        assert f.read() == b"bb" and st.st_ino == os.stat(tiny / "sub/deep/b.txt").st_ino
    info = art.files["sub/a.txt"]
    assert isinstance(info, FileInfo) and info.source is None


# -- the finding mapping ------------------------------------------------------------------------------


def test_examples_name_the_first_few_and_mark_the_rest() -> None:
    assert examples(["a", "b", "c"]) == "a, b, c"
    assert examples(["a", "b", "c", "d"]) == "a, b, c, ..."
    assert examples(["a", "b"], n=1) == "a, ..."
    assert examples(["a"], quote=True) == "'a'"
    assert examples([]) == ""


def _f(path: str, code: str = "missing-file", **kw: Any) -> Finding:
    return Finding.of(code, "m", path=path, **kw)


def test_repeats_group_from_four_in_place_of_the_first() -> None:
    three = [_f(f"p{k}") for k in range(3)]
    assert group_repeats(three, lambda f: f.code, lambda fs, items: "x") == three
    head, tail = _f("head", "extra-file"), _f("tail", "missing-directory")
    four = [_f(f"p{k}", expected=1, actual=k) for k in range(4)]
    seen: list[Any] = []
    out = group_repeats([head, *four, tail], lambda f: f.code, lambda fs, items: seen.append((fs, items)) or "grouped")
    assert [g.path for g in out] == ["head", None, "tail"]
    g = out[1]
    assert (g.code, g.message, g.items, g.expected, g.actual, g.severity) == ("missing-file", "grouped", ("p0", "p1", "p2", "p3"), 1, None,
                                                                               Severity.ERROR)
    assert seen == [(four, ("p0", "p1", "p2", "p3"))]
    same = [_f("same", actual=k) for k in range(4)]
    assert group_repeats(same, lambda f: f.code, lambda fs, items: "g")[0].path == "same"


def test_repeats_with_no_key_or_different_keys_stay_apart() -> None:
    fs = [_f(f"p{k}") for k in range(5)]
    assert group_repeats(fs, lambda f: None, lambda fs, items: "x") == fs
    mixed = [_f(f"p{k}", actual=k % 2) for k in range(6)]
    out = group_repeats(mixed, lambda f: f.actual, lambda fs, items: "x")
    assert out == [mixed[k] for k in (0, 2, 4, 1, 3, 5)]  # two keys of three each: under four, none grouped (each key's together)
    out = group_repeats(mixed, lambda f: f.actual, lambda fs, items: "x", min_count=3)
    assert [g.items for g in out] == [("p0", "p2", "p4"), ("p1", "p3", "p5")]
    out = group_repeats(fs, lambda f: 1, lambda fs, items: "x", subject=lambda f: f.path.upper())  # type: ignore[union-attr]
    assert out[0].items == ("P0", "P1", "P2", "P3", "P4")
    warn = [_f(f"w{k}", severity=Severity.WARNING) for k in range(2)] + [_f(f"e{k}") for k in range(2)]
    assert group_repeats(warn, lambda f: 1, lambda fs, items: "x") == warn  # a severity is part of the key
    codes = [_f(f"a{k}") for k in range(2)] + [_f(f"b{k}", "extra-file") for k in range(2)]
    assert group_repeats(codes, lambda f: 1, lambda fs, items: "x") == codes  # so is the code


# -- keys and signatures --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256", "p256", "ecdsa"])
def test_a_written_key_pair_loads_back_and_signs(tmp_path: Path, kind: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from manifest.signing import alg_of, check_signatures, generate, keyid, load_private_key, load_public_key, sign, write_keypair

    key = generate(kind)
    want = ed25519.Ed25519PrivateKey if kind == "ed25519" else ec.EllipticCurvePrivateKey
    assert isinstance(key, want)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert isinstance(key.curve, ec.SECP256R1)
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    write_keypair(key, priv, pub)
    assert (os.stat(priv).st_mode & 0o777, os.stat(pub).st_mode & 0o777) == (0o600, 0o644)
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----") and pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded, public = load_private_key(priv), load_public_key(pub)
    assert keyid(loaded.public_key()) == keyid(public) == keyid(key.public_key())
    assert alg_of(loaded) == alg_of(public) == ("ed25519" if kind == "ed25519" else "ecdsa-p256-sha256")
    s = sign(b"data", loaded)
    assert check_signatures(b"data", [s], [public]).trusted_keyids == [keyid(public)]


def test_an_unknown_key_type_is_a_usage_error() -> None:
    from manifest.errors import UsageError
    from manifest.signing import generate

    with pytest.raises(UsageError, match="unknown key type 'rsa'"):
        generate("rsa")


def test_an_encrypted_key_needs_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest.signing import PASSPHRASE_ENV, generate, keyid, load_private_key, write_keypair

    key = generate()
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    write_keypair(key, priv, pub, passphrase=b"s3cret")
    assert b"ENCRYPTED" in priv.read_bytes()
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(InputError, match=f"is encrypted: set {PASSPHRASE_ENV}") as e:
        load_private_key(priv)
    assert e.value.code == "key-invalid"
    assert keyid(load_private_key(priv, b"s3cret").public_key()) == keyid(key.public_key())
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    assert keyid(load_private_key(priv).public_key()) == keyid(key.public_key())
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(InputError, match="is not a usable PEM private key") as e:
        load_private_key(priv)
    assert e.value.code == "key-invalid"


def test_unusable_key_files_are_key_invalid(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from manifest.signing import MAX_KEY_FILE, generate, load_private_key, load_public_key, write_keypair

    key = generate()
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    write_keypair(key, priv, pub)
    with pytest.raises(InputError, match=r"is not a PEM public key \(this looks like a private key: pass the public key\)") as e:
        load_public_key(priv)
    assert e.value.code == "key-invalid"
    with pytest.raises(InputError, match="is not a usable PEM private key") as e:
        load_private_key(pub)
    assert e.value.code == "key-invalid"
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a key\n")
    with pytest.raises(InputError, match=r"is not a PEM public key \(") as e:
        load_public_key(junk)
    assert "looks like a private key" not in str(e.value)
    big = tmp_path / "big"
    big.write_bytes(pub.read_bytes() + b"\n" * MAX_KEY_FILE)
    with pytest.raises(InputError, match="cap") as e:
        load_public_key(big)
    assert e.value.code == "key-invalid"
    with pytest.raises(InputError) as e:
        load_public_key(tmp_path / "missing")
    assert (e.value.code, str(e.value)) == ("key-invalid", f"key {tmp_path / 'missing'} not found")
    # the parser's own reason, first line
    for load, lib, path in ((load_public_key, serialization.load_pem_public_key, junk),
                            (load_private_key, lambda d: serialization.load_pem_private_key(d, None), junk)):
        try:
            lib(path.read_bytes())  # type: ignore[operator]
        except ValueError as err:
            reason = str(err).splitlines()[0]
        with pytest.raises(InputError) as e:
            load(path)  # type: ignore[operator]
        assert str(e.value).endswith(f" ({reason})") and str(path) in str(e.value)
    k1 = ec.generate_private_key(ec.SECP256K1())  # a curve no signature scheme here uses
    (tmp_path / "k1.pem").write_bytes(k1.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "k1.pub").write_bytes(k1.public_key().public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    for load, name in ((load_private_key, "k1.pem"), (load_public_key, "k1.pub")):
        with pytest.raises(InputError) as e:
            load(tmp_path / name)  # type: ignore[operator]
        assert e.value.code == "key-invalid"
        assert str(e.value).startswith(f"{tmp_path / name}: a ECDSA on secp256k1 key is not supported (only ")


def test_a_key_pair_never_overwrites_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    from manifest.errors import UsageError
    from manifest.signing import generate, write_keypair

    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    pub.write_text("mine")
    with pytest.raises(UsageError, match="exists; refusing to overwrite a key"):
        write_keypair(generate(), priv, pub)
    assert not priv.exists() and pub.read_text() == "mine"
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.pem")
    with pytest.raises(InputError) as e:
        write_keypair(generate(), tmp_path / "link.pem", tmp_path / "l.pub")
    assert str(e.value).startswith(f"{tmp_path / 'link.pem'}: ") and str(e.value).endswith("; nothing was written")
    assert e.value.code == "write-refused" and not (tmp_path / "elsewhere").exists() and not (tmp_path / "l.pub").exists()
    with pytest.raises(InputError, match="no such directory") as e:
        write_keypair(generate(), tmp_path / "k2.pem", tmp_path / "nodir" / "k2.pub")
    assert e.value.code == "write-failed" and not (tmp_path / "k2.pem").exists()
    (tmp_path / "ro").mkdir()
    os.mkfifo(tmp_path / "ro" / "x.pub")
    with pytest.raises(InputError) as e:
        write_keypair(generate(), tmp_path / "ro" / "x.pem", tmp_path / "ro" / "x.pub")
    assert e.value.code == "write-refused" and not (tmp_path / "ro" / "x.pem").exists()


def test_key_ids_differ_per_key_and_are_sha256_of_the_public_key() -> None:
    from cryptography.hazmat.primitives import serialization

    from manifest.signing import generate, keyid

    a, b = generate(), generate("ecdsa-p256")
    der = a.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keyid(a.public_key()) == hashlib.sha256(der).hexdigest() != keyid(b.public_key())


def test_ignored_and_invalid_entries_are_counted_per_key() -> None:
    from manifest.signing import check_signatures, generate, keyid, sign

    data = b"payload"
    k, j = generate(), generate()
    good = sign(data, k)
    bad1, bad2 = ({**good, "sig": sign(x, k)["sig"]} for x in (b"1", b"2"))
    r = check_signatures(data, [bad1, good, bad2], [k.public_key()])
    assert r.trusted_keyids == [keyid(k.public_key())]
    (f,) = r.findings
    assert f.code == "signature-ignored" and f.message.startswith(f"2 signature entries for key {keyid(k.public_key())[:16]} do not verify;")
    r = check_signatures(data, [bad1, good], [k.public_key()])
    assert r.findings[0].message.startswith(f"1 signature entry for key {keyid(k.public_key())[:16]} does not verify;")
    r = check_signatures(data, [bad1, bad2], [k.public_key()])
    assert [(f.code, f.actual) for f in r.findings] == [("signature-invalid", keyid(k.public_key()))]
    assert f"signature by trusted key {keyid(k.public_key())[:16]} does not verify" in r.findings[0].message
    # entries without a keyid, alg or sig are never trusted and never crash
    r = check_signatures(data, [{}, {"keyid": keyid(k.public_key())}, {"keyid": keyid(k.public_key()), "sig": good["sig"], "alg": "ecdsa-p256-sha256"}],
                         [k.public_key()])
    assert r.trusted_keyids == [] and [f.code for f in r.findings] == ["signature-invalid"]
    # signed by two unknown keys: named, sorted, 16 characters each
    r = check_signatures(data, [sign(data, j), {"keyid": "f" * 64, "sig": "AA=="}], [k.public_key()])
    want = sorted([keyid(j.public_key())[:16], "f" * 16])
    assert [(f.code, f.actual) for f in r.findings] == [("untrusted-key", want)] and ", ".join(want) in r.findings[0].message
    # the same good entry twice, by two given keys: each trusted once, in entry order
    g2 = sign(data, j)
    r = check_signatures(data, [g2, good, g2, good], [k.public_key(), j.public_key()])
    assert r.trusted_keyids == [keyid(j.public_key()), keyid(k.public_key())] and r.findings == []


# -- the stat cache key -------------------------------------------------------------------------------


def _info(**kw: Any) -> FileInfo:
    base = {"path": "w.bin", "size": 10, "mtime_ns": 1_000, "ino": 7, "dev": 3, "ctime_ns": 2_000}
    return FileInfo(**{**base, **kw})


def test_a_cached_digest_answers_only_for_the_exact_stat_it_was_computed_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import statcache
    from manifest.digest import Hashed

    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 100)
    info = _info()
    assert statcache.stat_of(info) == (10, 1_000, 2_000, 7, 3)
    c = statcache.StatCache(tmp_path / "c.json", ("k",), {})
    c.put(info, Hashed({"sha256": "ab" * 32}, started_ns=2_100))  # both times exactly one window old
    assert c.dirty and c.get(info, ["sha256"]) == {"sha256": "ab" * 32}
    assert c.get(info, []) == {}
    for field, value in [("size", 11), ("mtime_ns", 1_001), ("ctime_ns", 2_001), ("ino", 8), ("dev", 4), ("path", "other")]:
        assert c.get(_info(**{field: value}), ["sha256"]) is None, field
    assert c.get(_info(ctime_ns=0), ["sha256"]) is None  # no ctime known: never trusted
    # a second algorithm for the same stat is added to the entry; a new stat replaces it
    c.put(info, Hashed({"blake3": "cd" * 32}, started_ns=5_000))
    assert c.get(info, ["sha256", "blake3"]) == {"sha256": "ab" * 32, "blake3": "cd" * 32}
    moved = _info(mtime_ns=3_000, ctime_ns=3_000)
    c.put(moved, Hashed({"blake3": "ef" * 32}, started_ns=5_000))
    assert c.get(moved, ["blake3"]) == {"blake3": "ef" * 32} and c.get(moved, ["sha256"]) is None
    # hashed too soon after a timestamp moved: not recorded, and the old entry is dropped
    c.dirty = False
    young = _info(mtime_ns=4_950, ctime_ns=4_950)
    c.put(young, Hashed({"sha256": "ab" * 32}, started_ns=5_000))
    assert "w.bin" not in c.entries and c.dirty
    c.dirty = False
    c.put(young, Hashed({"sha256": "ab" * 32}, started_ns=5_000))
    assert not c.dirty  # nothing to drop


@pytest.mark.parametrize("mtime,ctime,hashed,trusted", [
    (1_000, 1_000, 1_100, True), (1_000, 1_000, 1_099, False), (1_001, 1_000, 1_100, False), (1_000, 1_001, 1_100, False),
    (1_000, 0, 5_000, False)])
def test_trust_needs_both_times_a_window_old(monkeypatch: pytest.MonkeyPatch, mtime: int, ctime: int, hashed: int, trusted: bool) -> None:
    from manifest import statcache

    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 100)
    assert statcache.trustworthy((1, mtime, ctime, 1, 1), hashed) is trusted


def test_the_cache_file_is_keyed_by_every_part_of_the_key(tmp_path: Path) -> None:
    from manifest import statcache

    keys = [("verify", "/a", "x"), ("verify", "/a", "y"), ("verify", "/b", "x"), ("create", "/a", "x"), ("verify", "/a")]
    files = [statcache.file_for(tmp_path, k) for k in keys]
    assert len(set(files)) == len(keys) and all(f.parent == tmp_path and f.suffix == ".json" for f in files)
    assert statcache.file_for(tmp_path, keys[0]) == files[0]
    assert statcache.manifest_identity(b"abc") == hashlib.sha256(b"abc").hexdigest() != statcache.manifest_identity(b"abd")


def test_a_saved_cache_loads_back_for_its_key_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import statcache
    from manifest.digest import Hashed

    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 100)
    monkeypatch.setenv(statcache.CACHE_ENV, str(tmp_path / "cache"))
    key = ("verify", "/x", "id")
    c = statcache.StatCache.open(key)
    assert c is not None and c.entries == {} and c.path == statcache.file_for(tmp_path / "cache", key)
    chunks = "ab" * 32 * 3  # three chunk digests
    c.put(_info(), Hashed({"sha256": "ab" * 32, "sha256-chunks-4096": chunks}, started_ns=10_000))
    c.put(_info(path="b"), Hashed({"sha256": "cd" * 32}, started_ns=10_000))
    c.save()
    assert not c.dirty
    again = statcache.StatCache.open(key)
    assert again is not None and again.entries == c.entries
    assert again.get(_info(), ["sha256-chunks-4096"]) == {"sha256-chunks-4096": chunks}
    other = statcache.StatCache.open(("verify", "/x", "other"))
    assert other is not None and other.entries == {}
    c.save_as(("verify", "/y", "id"), ["b", "missing"])
    copied = statcache.StatCache.open(("verify", "/y", "id"))
    assert copied is not None and list(copied.entries) == ["b"] and copied.entries["b"] == c.entries["b"]
    # a document of another format or key is no evidence
    doc = json.loads(c.path.read_text())
    for bad in ({**doc, "format": 2}, {**doc, "key": ["verify", "/x", "other"]}, [doc], {**doc, "entries": []}):
        c.path.write_text(json.dumps(bad))
        assert statcache._load(c.path, key) == {}
    c.path.write_text(json.dumps(doc))
    assert statcache._load(c.path, key) == c.entries


@pytest.mark.parametrize("raw", [
    [10, 1, 2, 7, 3, 5],  # six fields
    [10, 1, 2, 7, 3, 5, {"sha256": "ab" * 32}, 0],
    [10, -1, 2, 7, 3, 5, {"sha256": "ab" * 32}],
    [10, 1.0, 2, 7, 3, 5, {"sha256": "ab" * 32}],
    [10, True, 2, 7, 3, 5, {"sha256": "ab" * 32}],
    [10, 1, 2, 7, 3, 5, ["ab" * 32]],
    [10, 1, 2, 7, 3, 5, {"sha256": "AB" * 32}],
    [10, 1, 2, 7, 3, 5, {"sha256": "ab" * 15}],
    [10, 1, 2, 7, 3, 5, {"sha256": "ab" * 64 + "a"}],
    [10, 1, 2, 7, 3, 5, {"sha256": 5}],
    {"size": 10},
])
def test_a_malformed_cache_entry_is_dropped(raw: Any) -> None:
    from manifest import statcache

    assert statcache._parse_entry(raw) is None


def test_well_formed_cache_entries_parse() -> None:
    from manifest import statcache

    for digest in ("ab" * 16, "ab" * 64, "ab" * 32 * 5):
        assert statcache._parse_entry([10, 0, 2, 7, 3, 5, {"d": digest}]) == (10, 0, 2, 7, 3, 5, {"d": digest})


def test_the_mount_table_names_each_devices_first_file_system() -> None:
    from manifest import statcache

    text = ("22 27 0:21 / /proc rw - proc proc rw\n"
            "bad line\n"
            "28 27 8:1 / / rw - ext4 /dev/sda1 rw\n"
            "29 27 8:1 / /again rw - xfs /dev/sda1 rw\n"
            "30 27 0:40 / /tmp rw,nosuid - tmpfs tmpfs rw\n"
            "31 27 x:y / /odd rw - ext4 /dev/odd rw\n")
    assert statcache.mount_types(text) == {(0, 21): "proc", (8, 1): "ext4", (0, 40): "tmpfs"}


def test_a_key_file_is_created_with_its_mode_not_chmod_ed_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The private key is never readable by others, not even between create and chmod."""
    from manifest.signing import generate, write_keypair

    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    old = os.umask(0o022)
    try:
        write_keypair(generate(), tmp_path / "k.pem", tmp_path / "k.pub")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "k.pem").st_mode & 0o777, os.stat(tmp_path / "k.pub").st_mode & 0o777) == (0o600, 0o644)


def _inject_at_open(monkeypatch: pytest.MonkeyPatch, target: Path, before: Any) -> None:
    """Run ``before()`` right before the key writer opens ``target`` (a deterministic race)."""
    real = os.open

    def fake(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if Path(os.fsdecode(path)) == target and flags & os.O_CREAT:
            before()
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", fake)


def test_a_public_key_path_that_appears_while_writing_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest.signing import generate, write_keypair

    priv, pub, victim = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "victim"
    _inject_at_open(monkeypatch, pub, lambda: os.symlink(victim, pub))
    with pytest.raises(InputError) as e:
        write_keypair(generate(), priv, pub)
    assert (e.value.code, str(e.value)) == ("write-refused", f"{pub}: appeared while the key was written; nothing was written")
    assert not victim.exists() and not priv.exists() and os.path.islink(pub)


@pytest.mark.parametrize("named", [True, False])
def test_a_failed_key_write_removes_what_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: bool) -> None:
    import errno

    from manifest.signing import generate, write_keypair

    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"

    def fail() -> None:
        if named:
            raise OSError(errno.ENOSPC, "No space left on device", str(pub))
        raise OSError(errno.ENOSPC, "No space left on device")

    _inject_at_open(monkeypatch, pub, fail)
    with pytest.raises(InputError) as e:
        write_keypair(generate(), priv, pub)
    shown = pub if named else priv
    assert (e.value.code, str(e.value)) == ("write-failed", f"cannot write {shown}: No space left on device; nothing was written")
    assert not priv.exists() and not pub.exists()


def test_signature_entries_are_deduplicated_and_bounded_per_key() -> None:
    from manifest.signing import MAX_TRIES_PER_KEY, check_signatures, generate, keyid, sign

    data = b"payload"
    k, j = generate(), generate()
    kid = keyid(k.public_key())
    good = sign(data, k)
    bad = {**good, "sig": sign(b"other", k)["sig"]}
    # a repeated entry is tried once, and the entries after it still are
    r = check_signatures(data, [bad, bad, good], [k.public_key()])
    assert r.trusted_keyids == [kid] and r.findings[0].message.startswith(f"1 signature entry for key {kid[:16]} does not verify;")
    assert r.findings[0].message.endswith("ignored, since a given key's signature does")
    nosig = {"keyid": kid}
    r = check_signatures(data, [nosig, nosig, good], [k.public_key()])
    assert r.trusted_keyids == [kid] and r.findings[0].message.startswith("1 signature entry")
    # the bound is per key: a flood for one key does not stop another key's entry
    flood = [{**good, "sig": sign(bytes([i]), k)["sig"]} for i in range(MAX_TRIES_PER_KEY)]
    r = check_signatures(data, [*flood, sign(data, j)], [k.public_key(), j.public_key()])
    assert r.trusted_keyids == [keyid(j.public_key())]
    # an entry with no keyid among unknown signers is named as ""
    r = check_signatures(data, [{"sig": "AA=="}, sign(data, j)], [k.public_key()])
    assert [(f.code, f.actual) for f in r.findings] == [("untrusted-key", ["", keyid(j.public_key())[:16]])]
    r = check_signatures(data, [], [k.public_key()])
    assert [(f.code, f.message) for f in r.findings] == [("signature-missing", "a trust anchor was given but the manifest is not signed")]


def test_only_the_canonical_base64_text_of_a_signature_verifies() -> None:
    import base64

    from manifest.signing import generate, sign, verify_one

    k = generate()
    s = sign(b"data", k)["sig"]
    assert s.endswith("==") and verify_one(k.public_key(), b"data", s)
    raw = base64.b64decode(s)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    others = [s[:-3] + c + "==" for c in alphabet if c != s[-3]]
    same = [o for o in others if base64.b64decode(o) == raw]
    assert len(same) == 15  # 4 padding bits of the last character: 15 other texts of the same bytes
    for o in same:
        assert not verify_one(k.public_key(), b"data", o)
    assert not verify_one(k.public_key(), b"data", s[:10] + "\n" + s[10:])  # a character outside the alphabet


def test_a_report_keeps_every_finding_it_is_given_and_says_integrity_only() -> None:
    from manifest.report import Report

    rep = Report("verify", "/m", integrity_only=True)
    fs = [_f("a"), _f("b", "extra-file")]
    rep.extend(iter(fs))
    assert rep.findings == fs and rep.codes() == ["missing-file", "extra-file"] and rep.exit_status == 1
    assert rep.to_dict()["integrity_only"] is True and Report("check", "/m").to_dict()["integrity_only"] is False


def test_all_codes_is_the_registry_as_a_copy() -> None:
    from manifest.findings import all_codes, code_info

    codes = all_codes()
    assert codes["digest-mismatch"] is code_info("digest-mismatch") and codes["digest-mismatch"].severity is Severity.ERROR
    assert len(codes) > 50
    codes.clear()
    assert all_codes()["digest-mismatch"] is code_info("digest-mismatch")


def test_a_group_keeps_what_every_member_shares_and_the_first_members_other_fields() -> None:
    same = [_f(f"p{k}", expected=1, actual=2, hint=f"h{k}") for k in range(4)]
    (g,) = group_repeats(same, lambda f: f.code, lambda fs, items: "g")
    assert (g.expected, g.actual, g.hint, g.path) == (1, 2, "h0", None)
    differ = [_f(f"p{k}", expected=k, actual=2) for k in range(4)]
    (g,) = group_repeats(differ, lambda f: f.code, lambda fs, items: "g")
    assert (g.expected, g.actual) == (None, 2)
    unnamed = [Finding.of("signature-invalid", "x") for _ in range(4)]
    (g,) = group_repeats(unnamed, lambda f: f.code, lambda fs, items: "g")
    assert g.items == ("", "", "", "")


@pytest.mark.parametrize("rel", ["a", "config.json", "sub/deep/w.bin", "é/ü.txt", "a" * 255, "/".join(["b" * 255] * 3),
                                 "/".join(["c" * 255] * 15 + ["d" * 128, "e" * 127]), "ab:c", "x/.hidden/y", ".."+"a"])
def test_a_safe_path_is_answered_by_the_fast_path(monkeypatch: pytest.MonkeyPatch, rel: str) -> None:
    """Discovery and the manifest loader ask once per file (20,000-file trees): a safe
    path never takes the rule-by-rule path."""
    from manifest import paths

    assert len(rel.encode()) <= paths.MAX_PATH_BYTES and (len(rel) != 4096 or len(rel.encode()) == paths.MAX_PATH_BYTES)
    assert paths._path_problem_slow(rel) is None

    def slow(rel: str) -> str | None:
        raise AssertionError(f"slow path taken for {rel!r}")

    monkeypatch.setattr(paths, "_path_problem_slow", slow)
    assert paths.path_problem(rel) is None


def test_links_inside_the_model_itself_are_followed_only_to_its_regular_files(tmp_path: Path) -> None:
    """``follow_links_into`` the root (verify --oms --allow-symlinks)."""
    d = tmp_path / "m"
    (d / "blobs").mkdir(parents=True)
    (d / "blobs" / "w").write_bytes(b"weights")
    (tmp_path / "outside").write_bytes(b"x")
    os.symlink("blobs/w", d / "link")
    os.symlink(tmp_path / "outside", d / "out")
    os.symlink("blobs", d / "dirlink")
    os.symlink("nowhere", d / "gone")
    art = discover(d, follow_links_into=d)
    assert sorted(art.files) == ["blobs/w", "link"] and art.files["link"].source == str(d / "blobs" / "w")
    assert art.files["link"].ino == os.stat(d / "blobs" / "w").st_ino
    got = {f.path: (f.code, f.message) for f in art.problems}
    assert got == {
        "out": ("unsafe-path", f"symlink points outside the model directory (to {tmp_path / 'outside'}); it is not followed"),
        "dirlink": ("unsupported-file", "symlink to a directory (to blobs); only links to regular files are followed"),
        "gone": ("unsafe-path", "symlink is dangling or loops; it is not followed"),
    }


def test_entries_that_cannot_be_listed_or_stat_ed_are_unreadable_findings(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected failures (the suite runs as root, to whom every mode bit is open)."""
    import errno

    real_scandir, real_lstat = os.scandir, os.lstat

    def scandir(path: Any) -> Any:
        if os.fspath(path) == str(tiny / "sub"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def lstat(path: Any, *a: Any, **k: Any) -> Any:
        if os.fspath(path) == str(tiny / "config.json"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_lstat(path, *a, **k)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "lstat", lstat)
    art = discover(tiny)
    assert [(f.code, f.path, f.message) for f in art.problems] == [
        ("unreadable", "config.json", "cannot stat: Permission denied"),
        ("unreadable", "sub", "cannot list directory: Permission denied")]
    assert list(art.files) == ["model.safetensors", "vocab.txt"]  # the entries after them are still listed
    monkeypatch.setattr(os, "scandir", lambda p: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied")))
    assert [(f.path, f.message) for f in discover(tiny).problems] == [(".", "cannot list directory: Permission denied")]
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(InputError) as e:
        discover(tiny)
    assert (e.value.code, str(e.value)) == ("unreadable", f"cannot read directory {tiny}: permission denied")


# -- the comparison's parts, called directly ----------------------------------------------------------


def test_byte_ranges_are_shown_in_the_unit_of_their_end() -> None:
    assert api._in_units(0, 1023) == "0-1023"
    assert api._in_units(512, 1024) == "0.50-1.00 KiB"
    assert api._in_units(1 << 20, (1 << 20) + (1 << 19)) == "1.00-1.50 MiB"
    assert api._in_units((1 << 20) - 1, 1 << 20) == "1.00-1.00 MiB"
    assert api._in_units(1 << 30, 3 << 29) == "1.00-1.50 GiB"
    assert api._in_units(0, (1 << 30) - 1) == "0.00-1024.00 MiB"
    assert api._in_units(0, (1 << 20) - 1) == "0.00-1024.00 KiB"


def test_damaged_ranges_name_the_header_and_the_tensors_they_touch(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    tensors = {"a": ("F32", (4,)), "empty": ("F32", (0,)), "b": ("F32", (4,))}
    head = build(tensors)
    (d / WEIGHTS).write_bytes(head + bytes(32))
    (d / "other.bin").write_bytes(bytes(64))
    art = discover(d)
    h = parse_header_bytes(head + bytes(32))
    base = 8 + h.header_len
    assert (h.tensors["a"].start, h.tensors["a"].end, h.tensors["b"].start) == (0, 16, 16)
    cases = {
        (base - 1, base): (True, []),
        (base, base + 1): (False, ["a"]),
        (base + 15, base + 16): (False, ["a"]),
        (base + 16, base + 17): (False, ["b"]),  # the empty tensor at offset 16 holds no byte
        (0, base + 32): (True, ["a", "b"]),
    }
    for r, want in cases.items():
        assert api.damaged_tensors(art, WEIGHTS, [r]) == want, r
    assert api.damaged_tensors(art, "other.bin", [(0, 1)]) == (False, [])
    (d / WEIGHTS).write_bytes(b"\xff" * 64)  # the live header no longer parses: the header is what is damaged
    art = discover(d)
    assert api.damaged_tensors(art, WEIGHTS, [(40, 41)]) == (True, [])
    assert api.damaged_tensors(art, WEIGHTS, []) == (False, [])


def test_chunks_in_another_hash_are_compared_in_its_width(tiny: Path) -> None:
    """An OMS shard bundle's chunk digests (blake2b: 128 hex characters a chunk)."""
    from manifest.digest import chunk_key
    from manifest.report import Report

    data = (tiny / WEIGHTS).read_bytes()
    key = chunk_key(CHUNK, "blake2b")
    expected: dict[str, dict[str, str]] = {p: {"sha256": _sha(tiny / p)} for p in discover(tiny).files}
    expected[WEIGHTS] = {key: "".join(hashlib.blake2b(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK))}
    _flip(tiny / WEIGHTS, CHUNK + 100)
    _flip(tiny / "vocab.txt", 0)
    art = discover(tiny)
    rep = Report("verify", str(tiny))
    api._verify_digests(art, expected, sorted(art.files), ["sha256"], _opts(), rep, cache_key=("t",), source="the OMS bundle",
                        chunked={WEIGHTS: CHUNK}, chunk_algorithm="blake2b")
    got = {f.path: f for f in rep.findings}
    assert sorted(got) == [WEIGHTS, "vocab.txt"] and all(f.code == "digest-mismatch" for f in got.values())
    assert got[WEIGHTS].expected["bad_chunks"] == [1] and got[WEIGHTS].expected["chunks"] == -(-len(data) // CHUNK)
    assert got["vocab.txt"].expected == expected["vocab.txt"]["sha256"] and "the OMS bundle says" in got["vocab.txt"].message
    assert rep.stats["files_by_chunks"] == 1 and rep.stats["files_hashed"] == len(art.files) and "digests" in rep.checked


@pytest.mark.parametrize("at", [16, 40, 63])
def test_a_recorded_digest_differing_only_after_its_16th_hex_character_fails(tiny: Path, at: int) -> None:
    """The small-tree twin of test_core's test on the real checkpoint: only a comparison of
    whole digests catches it (one of a prefix passes it)."""
    m = _create(tiny)
    doc = m.to_document()
    real = doc["signed"]["files"]["vocab.txt"]["sha256"]
    edited = real[:at] + ("0" if real[at] != "0" else "1") + real[at + 1:]
    doc["signed"]["files"]["vocab.txt"]["sha256"] = edited
    rep = api.verify(tiny, _from_doc(doc), options=_opts())
    assert [(f.code, f.path, f.expected, f.actual) for f in _errors(rep)] == [("digest-mismatch", "vocab.txt", edited, real)]


@pytest.mark.parametrize("chunk", [0, -1])
@pytest.mark.parametrize("at", [16, 63])
def test_a_recorded_chunk_digest_differing_only_after_its_16th_hex_character_fails(tiny: Path, chunk: int, at: int) -> None:
    m = _create(tiny)
    doc = m.to_document()
    chunks = doc["signed"]["chunks"]["files"][WEIGHTS]
    real = chunks[chunk]
    chunks[chunk] = real[:at] + ("0" if real[at] != "0" else "1") + real[at + 1:]
    rep = api.verify(tiny, _from_doc(doc), options=_opts())
    (f,) = _errors(rep)
    assert (f.code, f.path, f.expected["bad_chunks"]) == ("digest-mismatch", WEIGHTS, [chunk % len(chunks)])


# -- the safetensors header reader --------------------------------------------------------------------


def _st(entries: dict[str, Any], data_len: int) -> bytes:
    import struct

    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + bytes(data_len)


def test_header_totals_add_up_per_dtype() -> None:
    h = parse_header_bytes(_st({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                                "b": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]},
                                "c": {"dtype": "I8", "shape": [5], "data_offsets": [40, 45]}}, 45))
    assert h.bytes_by_dtype() == {"F32": 40, "I8": 5} and list(h.bytes_by_dtype()) == ["F32", "I8"]
    assert h.parameters == 6 + 4 + 5 and h.data_len == 45 and h.expected_size == 8 + h.header_len + 45
    assert h.tensors["a"].numel == 6 and h.tensors["a"].nbytes == 24


@pytest.mark.parametrize("entry,rule", [
    ({"dtype": "U8", "shape": [0], "data_offsets": [0, -1]}, "offsets"),  # a zero dimension is fine: the offsets are named
    ({"dtype": "U8", "shape": [2**64 - 1], "data_offsets": [0, 2**64]}, "offsets"),  # the largest u64 dimension is fine
    ({"dtype": "U8", "shape": [2**64], "data_offsets": [0, 0]}, "shape"),
    ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}, "offsets"),
    ({"dtype": "U8", "shape": 1, "data_offsets": [0, 1]}, "shape"),
    ({"dtype": "U8", "shape": [1], "data_offsets": "0,1"}, "offsets"),
    ({"dtype": "U8", "shape": [1], "data_offsets": 5}, "offsets"),
    ({"dtype": "F33", "shape": [1], "data_offsets": [0, 1]}, "dtype"),
    ({"dtype": 5, "shape": [1], "data_offsets": [0, 1]}, "dtype"),
])
def test_a_malformed_entry_names_the_first_broken_field(entry: dict[str, Any], rule: str) -> None:
    from manifest.formats.safetensors import HeaderError

    with pytest.raises(HeaderError) as e:
        parse_header_bytes(_st({"t": entry}, 0))
    assert (e.value.facts["rule"], e.value.facts["tensor"]) == (rule, "t")


def test_a_tensor_entry_missing_keys_names_them_all() -> None:
    from manifest.formats.safetensors import HeaderError

    with pytest.raises(HeaderError) as e:
        parse_header_bytes(_st({"t": {"dtype": "U8"}}, 0))
    assert str(e.value.message) == "tensor 't': missing data_offsets, shape"


def test_a_bad_dtype_or_shape_is_named_in_words() -> None:
    from manifest.formats.safetensors import DTYPE_BITS, HeaderError

    for dtype, shown in (("F33", "'F33'"), (5, "'int'")):
        with pytest.raises(HeaderError) as e:
            parse_header_bytes(_st({"t": {"dtype": dtype, "shape": [1], "data_offsets": [0, 1]}}, 1))
        assert e.value.message == f"tensor 't': unknown dtype {shown} (safetensors 0.8 knows {', '.join(DTYPE_BITS)})"
    with pytest.raises(HeaderError) as e:
        parse_header_bytes(_st({"t": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, 1))
    assert e.value.message == "tensor 't': shape must be a list of non-negative 64-bit integers"


def test_a_url_target_is_told_from_a_local_path() -> None:
    from manifest.paths import is_url

    assert is_url("s3://bucket/prefix") and is_url("file:///tmp/m") and is_url("gs://b/m")
    assert not is_url("models/m") and not is_url("/abs/m") and not is_url("C:/m") and not is_url(Path("s3://x"))
