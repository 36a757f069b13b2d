"""The stat cache: a re-verify of an unchanged checkpoint reads nothing, and no change
of a file can ever be turned into a pass by it.

Files younger than the racy-timestamp window are never trusted (that is tested with the
real window). To avoid sleeping in every test, most in-process tests set the window to
zero; the CLI tests use one copy of the real checkpoint aged once past the real window.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manifest import api, statcache
from manifest.digest import Hashed
from manifest.inventory import discover
from manifest.options import Options
from manifest.report import Report
from manifest.statcache import RACY_WINDOW_NS, StatCache, cache_dir


@pytest.fixture(scope="module")
def aged(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """A copy of the real checkpoint with a manifest, older than the racy window (read-only use)."""
    d = tmp_path_factory.mktemp("aged") / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    api.create(d, options=Options(use_cache=False))
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.2)
    return d


@pytest.fixture
def no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)


def n_files(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file() and p.name != "manifest.json")


def verify_json(cli: Callable[..., Any], d: Path, *extra: str) -> dict[str, Any]:
    r = cli("verify", d, "--json", "-q", *extra)
    assert r.code == 0, (r.out, r.err)
    return json.loads(r.out)


# ----------------------------------------------------------------------------- CLI, real window
def test_cached_reverify_names_every_trusted_file(cli: Callable[..., Any], aged: Path) -> None:
    first = verify_json(cli, aged)
    assert first["stats"]["files_hashed"] == n_files(aged)
    assert "trusted_from_cache" not in first["facts"]
    second = verify_json(cli, aged)
    assert second["stats"]["files_hashed"] == 0
    assert second["stats"]["bytes_hashed"] == 0
    assert sorted(second["facts"]["trusted_from_cache"]) == sorted(
        p.relative_to(aged).as_posix() for p in aged.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert "digests (stat cache)" in second["checked"]
    text = cli("verify", aged, "-q")
    assert text.code == 0 and "trusted from the stat cache" in text.out


def test_no_cache_rehashes_everything_and_leaves_the_cache_alone(cli: Callable[..., Any], aged: Path) -> None:
    verify_json(cli, aged)  # fill
    before = {p: p.read_bytes() for p in cache_dir().iterdir()}
    rep = verify_json(cli, aged, "--no-cache")
    assert rep["stats"]["files_hashed"] == n_files(aged)
    assert "trusted_from_cache" not in rep["facts"]
    assert {p: p.read_bytes() for p in cache_dir().iterdir()} == before


GARBAGE = {
    "empty": b"",
    "nul-bytes": b"\x00" * 100,
    "truncated-json": b'{"format": 1, "key": ',
    "deeply-nested": b"[" * 100000,
    "no-entries": b'{"format": 1}',
    "bad-entry": b'{"format": 1, "key": [], "entries": {"config.json": [1, 2, 3, 4, 5, 6, {"sha256": "zz"}]}}',
    "lone-surrogate": '{"format": 1, "entries": "\udcff"}'.encode("utf-8", "surrogatepass"),
}


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
def test_a_corrupt_cache_file_is_ignored_and_replaced(aged: Path, garbage: bytes) -> None:
    api.verify(aged)
    files = list(cache_dir().iterdir())
    assert files
    for p in files:
        p.write_bytes(garbage)
    rep = api.verify(aged)
    assert rep.ok and rep.stats["files_hashed"] == n_files(aged)
    assert api.verify(aged).stats["files_hashed"] == 0  # rewritten, usable again


def test_the_cli_says_nothing_about_a_corrupt_cache(cli: Callable[..., Any], aged: Path) -> None:
    verify_json(cli, aged)
    for p in cache_dir().iterdir():
        p.write_bytes(b"\x00garbage")
    r = cli("verify", aged, "--json", "-q")
    assert r.code == 0 and r.err == "", r.err
    assert json.loads(r.out)["stats"]["files_hashed"] == n_files(aged)


def test_an_unusable_cache_directory_is_not_an_error(cli: Callable[..., Any], aged: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    for _ in range(2):
        r = cli("verify", aged, "--json", "-q", env={"MANIFEST_CACHE_DIR": str(blocker / "sub")})
        assert r.code == 0 and r.err == ""
        assert json.loads(r.out)["stats"]["files_hashed"] == n_files(aged)


def test_the_cache_lives_outside_the_artifact(cli: Callable[..., Any], aged: Path) -> None:
    listing = sorted(p.relative_to(aged) for p in aged.rglob("*"))
    verify_json(cli, aged)
    verify_json(cli, aged)
    assert sorted(p.relative_to(aged) for p in aged.rglob("*")) == listing
    assert any(cache_dir().iterdir())


def test_default_location_is_the_user_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from platformdirs import user_cache_dir

    monkeypatch.delenv("MANIFEST_CACHE_DIR")
    assert cache_dir() == Path(user_cache_dir("model-manifest", appauthor=False)) / "statcache"
    monkeypatch.setenv("MANIFEST_CACHE_DIR", "/somewhere/else")
    assert cache_dir() == Path("/somewhere/else")


# ----------------------------------------------------------------------------- racy timestamps, real window
def test_a_just_written_file_is_not_trusted(tmp_path: Path) -> None:
    """The "racy git" case end to end: hashed within the window, so not recorded."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "w.bin").write_bytes(os.urandom(4096))
    t0 = time.time_ns()
    api.create(d)
    reps = [api.verify(d) for _ in range(2)]
    if time.time_ns() - t0 > RACY_WINDOW_NS // 2:
        pytest.skip("machine too slow to stay inside the racy window")
    for rep in reps:
        assert rep.ok
        assert "trusted_from_cache" not in rep.facts
        assert rep.stats["files_hashed"] == 1


def test_the_window_is_measured_from_when_the_hash_started(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    info = discover(tmp_path).files["f"]
    newest = max(info.mtime_ns, info.ctime_ns)
    cache = StatCache(tmp_path / "c.json", ("k",), {})
    cache.put(info, Hashed({"sha256": "ab" * 32}, started_ns=newest + RACY_WINDOW_NS - 1))
    assert cache.get(info, ["sha256"]) is None
    cache.put(info, Hashed({"sha256": "ab" * 32}, started_ns=newest + RACY_WINDOW_NS))
    assert cache.get(info, ["sha256"]) == {"sha256": "ab" * 32}
    assert cache.get(info, ["sha256", "blake3"]) is None  # every asked algorithm must be known


# ----------------------------------------------------------------------------- changes, window zero
def _cached(d: Path, *args: Any, **kw: Any) -> Report:
    rep = api.verify(d, *args, **kw)
    assert rep.ok, rep.findings
    return rep


def test_create_fills_the_cache_for_the_first_verify(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    rep = _cached(minilm)
    assert rep.stats["files_hashed"] == 0
    assert len(rep.facts["trusted_from_cache"]) == n_files(minilm)


def test_an_mtime_change_forces_a_rehash(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    p = minilm / "config.json"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    rep = _cached(minilm)
    assert "config.json" not in rep.facts["trusted_from_cache"]
    assert rep.stats["files_hashed"] == 1
    assert _cached(minilm).stats["files_hashed"] == 0  # recorded again


def test_a_size_change_is_never_trusted(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    with open(minilm / "vocab.txt", "ab") as f:
        f.write(b"extra\n")
    rep = api.verify(minilm, exhaustive=True)
    assert not rep.ok
    assert "size-mismatch" in rep.codes()
    assert "vocab.txt" not in rep.facts.get("trusted_from_cache", [])


def test_a_flipped_byte_with_restored_mtime_is_caught(no_window: None, minilm: Path) -> None:
    """Same size, same mtime (restored with utime): the inode change time still moves,
    and it is part of the key, so the file is rehashed and the flip found."""
    api.create(minilm)
    assert _cached(minilm).stats["files_hashed"] == 0
    p = minilm / "model.safetensors"
    st = p.stat()
    time.sleep(0.03)  # let a coarse-grained clock tick
    with open(p, "r+b") as f:
        f.seek(st.st_size - 100)
        b = f.read(1)
        f.seek(st.st_size - 100)
        f.write(bytes([b[0] ^ 0x01]))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (p.stat().st_size, p.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    rep = api.verify(minilm)
    assert not rep.ok
    assert [f.path for f in rep.findings if f.code == "digest-mismatch"] == ["model.safetensors"]
    assert "model.safetensors" not in rep.facts["trusted_from_cache"]


def test_a_replaced_file_with_the_same_bytes_and_mtime_is_rehashed(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    p = minilm / "tokenizer.json"
    st = p.stat()
    tmp = minilm / "tokenizer.json.new"
    shutil.copyfile(p, tmp)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)  # new inode
    rep = _cached(minilm)
    assert "tokenizer.json" not in rep.facts["trusted_from_cache"]
    assert rep.stats["files_hashed"] == 1


def test_the_cache_is_keyed_by_the_manifest(no_window: None, minilm: Path, tmp_path: Path) -> None:
    api.create(minilm)
    assert _cached(minilm).stats["files_hashed"] == 0
    other = tmp_path / "other.json"
    api.create(minilm, output=other, model_id="org/other", options=Options(use_cache=False))
    rep = _cached(minilm, other)
    assert rep.stats["files_hashed"] == n_files(minilm)
    assert _cached(minilm, other).stats["files_hashed"] == 0


def test_no_cache_in_the_api(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    rep = _cached(minilm, options=Options(use_cache=False))
    assert rep.stats["files_hashed"] == n_files(minilm)
    assert "trusted_from_cache" not in rep.facts


# ----------------------------------------------------------------------------- bounds and ownership
def test_the_number_of_cache_files_is_bounded(no_window: None, minilm: Path) -> None:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    for i in range(statcache.MAX_CACHE_FILES + 10):
        (d / f"{i:040x}.json").write_text("{}")
        os.utime(d / f"{i:040x}.json", (i + 1, i + 1))
    api.create(minilm)
    names = {p.name for p in d.iterdir()}
    assert len(names) == statcache.MAX_CACHE_FILES
    assert f"{0:040x}.json" not in names  # the oldest went first
    assert f"{statcache.MAX_CACHE_FILES + 9:040x}.json" in names
    assert _cached(minilm).stats["files_hashed"] == 0  # the ones just written were kept


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_a_cache_file_owned_by_someone_else_is_ignored(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    for p in cache_dir().iterdir():
        os.chown(p, 12345, 12345)
    assert api.verify(minilm).stats["files_hashed"] == n_files(minilm)
