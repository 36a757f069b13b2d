"""The stat cache: a re-verify of an unchanged checkpoint reads nothing, and no change
of a file can ever be turned into a pass by it.

Files younger than the racy-timestamp window are never trusted. The window is derived
from the kernel's writeback settings (tested against the real /proc/sys/vm values), and
tests inject it rather than wait for it: most in-process tests set it to zero, the CLI
tests use one copy of the real checkpoint aged once past a one-second window, and the
shared-mapping attack runs under a window far longer than the test.
"""

from __future__ import annotations

import contextlib
import json
import mmap
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
from manifest.statcache import WINDOW_ENV, StatCache, cache_dir

AGED_WINDOW_MS = 1000  # the window the CLI tests run under (a checkpoint is aged once past it)
LONG_WINDOW_MS = 3_600_000  # longer than any test runs: whatever a test writes is inside it


@pytest.fixture(autouse=True)
def _window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs under an injected window (the CLI children inherit it)."""
    monkeypatch.setenv(WINDOW_ENV, str(AGED_WINDOW_MS))


@pytest.fixture(scope="module")
def aged(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """A copy of the real checkpoint with a manifest, older than the injected window (read-only use)."""
    d = tmp_path_factory.mktemp("aged") / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    api.create(d, options=Options(use_cache=False))
    time.sleep(AGED_WINDOW_MS / 1000 + 0.2)
    return d


@pytest.fixture
def no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)


def n_files(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file() and p.name != "manifest.json")


def verify_json(cli: Callable[..., Any], d: Path, *extra: str) -> dict[str, Any]:
    r = cli("verify", "--no-signature", d, "--json", "-q", *extra)
    assert r.code == 0, (r.out, r.err)
    return json.loads(r.out)


# ----------------------------------------------------------------------------- CLI, aged past the window
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
    text = cli("verify", "--no-signature", aged, "-q")
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
    api.verify(aged, integrity_only=True)
    files = list(cache_dir().iterdir())
    assert files
    for p in files:
        p.write_bytes(garbage)
    rep = api.verify(aged, integrity_only=True)
    assert rep.ok and rep.stats["files_hashed"] == n_files(aged)
    assert api.verify(aged, integrity_only=True).stats["files_hashed"] == 0  # rewritten, usable again


def test_the_cli_says_nothing_about_a_corrupt_cache(cli: Callable[..., Any], aged: Path) -> None:
    verify_json(cli, aged)
    for p in cache_dir().iterdir():
        p.write_bytes(b"\x00garbage")
    r = cli("verify", "--no-signature", aged, "--json", "-q")
    assert r.code == 0 and r.err == "", r.err
    assert json.loads(r.out)["stats"]["files_hashed"] == n_files(aged)


def test_an_unusable_cache_directory_is_not_an_error(cli: Callable[..., Any], aged: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    for _ in range(2):
        r = cli("verify", "--no-signature", aged, "--json", "-q", env={"MANIFEST_CACHE_DIR": str(blocker / "sub")})
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


# ----------------------------------------------------------------------------- racy timestamps
def test_a_just_written_file_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "racy git" case end to end: hashed within the window, so not recorded."""
    monkeypatch.setenv(WINDOW_ENV, str(LONG_WINDOW_MS))
    d = tmp_path / "m"
    d.mkdir()
    (d / "w.bin").write_bytes(os.urandom(4096))
    api.create(d)
    for rep in [api.verify(d, integrity_only=True) for _ in range(2)]:
        assert rep.ok
        assert "trusted_from_cache" not in rep.facts
        assert rep.stats["files_hashed"] == 1


def _dirty_through_a_mapping(p: Path, offset: int) -> mmap.mmap:
    """Map ``p`` shared and rewrite the byte at ``offset`` with its own value: the page is
    dirty (mtime and ctime move once), the content is unchanged."""
    fd = os.open(p, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 0, mmap.MAP_SHARED)
    finally:
        os.close(fd)
    m[offset] = m[offset]
    return m


def test_an_entry_recorded_inside_the_window_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected clock and window, a real shared mapping: a digest computed less than the
    window after the file's last timestamp move is never recorded (later writes through
    the still-dirty page would not move the timestamps); from the window on, it is."""
    window = 5_000_000_000
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", window)
    p = tmp_path / "f"
    p.write_bytes(bytes(8192))
    m = _dirty_through_a_mapping(p, 10)
    try:
        info = discover(tmp_path).files["f"]
        newest = max(info.mtime_ns, info.ctime_ns)
        cache = StatCache(tmp_path / "c.json", ("k",), {})
        for started in (newest, newest + window // 2, newest + window - 1):
            cache.put(info, Hashed({"sha256": "ab" * 32}, started_ns=started))
            assert cache.get(info, ["sha256"]) is None and "f" not in cache.entries
        cache.put(info, Hashed({"sha256": "ab" * 32}, started_ns=newest + window))
        assert cache.get(info, ["sha256"]) == {"sha256": "ab" * 32}
        assert cache.get(info, ["sha256", "blake3"]) is None  # every asked algorithm must be known
        monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 2 * window)  # a longer window: the entry is young again
        assert cache.get(info, ["sha256"]) is None
    finally:
        m.close()


def test_a_write_through_a_shared_mapping_after_a_verify_is_caught(cli: Callable[..., Any], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack, with a real mmap and the real CLI: dirty a page of a signed file (same
    bytes), wait 2.5 s, verify (passes), then write a different byte through the same
    mapping. The kernel does not move mtime or ctime for the second write (the page is
    already dirty), so only the racy window keeps the cached verify from passing. The
    window is injected (one hour, longer than the test) so the outcome does not depend
    on the machine's speed or on when the kernel writes the page back."""
    monkeypatch.setenv(WINDOW_ENV, str(LONG_WINDOW_MS))
    d = tmp_path / "m"
    d.mkdir()
    (d / "weights.bin").write_bytes(os.urandom(3 * 4096))
    (d / "config.json").write_text("{}")
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    assert cli("keygen", "-o", str(tmp_path / "k")).code == 0
    assert cli("create", str(d), "--key", str(priv), "-q").code == 0
    m = _dirty_through_a_mapping(d / "weights.bin", 5000)
    try:
        time.sleep(2.5)
        first = cli("verify", str(d), "--key", str(pub), "--json", "-q")
        assert first.code == 0, first.out + first.err
        assert "weights.bin" not in json.loads(first.out)["facts"].get("trusted_from_cache", [])
        recorded = [e for f in cache_dir().glob("*.json") for e in json.loads(f.read_text()).get("entries", {})]
        assert "weights.bin" not in recorded and "config.json" not in recorded
        m[5000] = m[5000] ^ 0xFF
        m.flush()  # the bytes are in the file (msync); the timestamps still need not move
        again = cli("verify", str(d), "--key", str(pub), "--json", "-q")
        assert again.code == 1, again.out + again.err
        rep = json.loads(again.out)
        assert [f["path"] for f in rep["findings"] if f["code"] == "digest-mismatch"] == ["weights.bin"]
    finally:
        m.close()


def test_the_window_is_derived_from_the_kernels_writeback_settings(tmp_path: Path) -> None:
    vm = tmp_path / "vm"
    vm.mkdir()
    for expire, writeback, want in [("3000", "500", 35_000_000_000 + statcache.MARGIN_NS),
                                    ("6000\n", "1000\n", 70_000_000_000 + statcache.MARGIN_NS),
                                    ("3000", "0", None),  # periodic writeback off: no bound, nothing is trusted
                                    ("-1", "500", statcache.DEFAULT_WINDOW_NS),
                                    ("lots", "500", statcache.DEFAULT_WINDOW_NS)]:
        (vm / "dirty_expire_centisecs").write_text(expire)
        (vm / "dirty_writeback_centisecs").write_text(writeback)
        assert statcache.kernel_window_ns(vm) == want, (expire, writeback)
    assert statcache.kernel_window_ns(tmp_path / "no-proc") == statcache.DEFAULT_WINDOW_NS
    assert statcache.MARGIN_NS >= 2_000_000_000  # at least any timestamp granularity (FAT)
    real = Path("/proc/sys/vm")
    if (real / "dirty_expire_centisecs").is_file():  # Linux: the real settings decide
        e, w = (int((real / n).read_text()) for n in ("dirty_expire_centisecs", "dirty_writeback_centisecs"))
        assert statcache.kernel_window_ns() == (None if w == 0 else (e + w) * 10_000_000 + statcache.MARGIN_NS)
    else:
        assert statcache.kernel_window_ns() == statcache.DEFAULT_WINDOW_NS


def test_the_window_without_an_override_is_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WINDOW_ENV)
    assert statcache.racy_window_ns() == statcache.kernel_window_ns()
    for bad in ("", "-5", "1e3", "soon", "\u0661"):
        monkeypatch.setenv(WINDOW_ENV, bad)
        assert statcache.racy_window_ns() == statcache.kernel_window_ns(), bad
    monkeypatch.setenv(WINDOW_ENV, "250")
    assert statcache.racy_window_ns() == 250_000_000
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 7)
    assert statcache.racy_window_ns() == 7


def test_a_file_system_without_writeback_is_never_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On tmpfs a page dirtied through a shared mapping is never written back, so later
    writes through it never move the timestamps: no age makes such a file trustworthy."""
    monkeypatch.delenv(WINDOW_ENV)
    (tmp_path / "f").write_bytes(b"data")
    st = (tmp_path / "f").stat()
    stat = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    late = max(st.st_mtime_ns, st.st_ctime_ns) + 10**15
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for fstype, trusted in [("ext4", True), ("tmpfs", False), ("ramfs", False), ("xfs", True)]:
        info = tmp_path / f"mountinfo-{fstype}"
        info.write_text(f"22 27 0:21 / /proc rw - proc proc rw\n27 1 {dev} / /x rw,relatime - {fstype} /dev/x rw\n")
        monkeypatch.setattr(statcache, "MOUNTINFO", info)
        statcache._mount_types.cache_clear()
        want = trusted and statcache.kernel_window_ns() is not None
        assert statcache.trustworthy(stat, late) is want, fstype
    statcache._mount_types.cache_clear()
    monkeypatch.undo()
    # the real mount table: every mount point whose top mount is tmpfs is recognised
    mounts = Path("/proc/self/mountinfo")
    if mounts.is_file():
        top = {ln.split(" ")[4]: ln.split(" - ", 1)[1].split(" ")[0] for ln in mounts.read_text().splitlines() if " - " in ln}
        for mp in [mp for mp, t in top.items() if t == "tmpfs"]:
            with contextlib.suppress(OSError):
                assert statcache.no_writeback(os.stat(mp).st_dev), mp


# ----------------------------------------------------------------------------- changes, window zero
def _cached(d: Path, *args: Any, **kw: Any) -> Report:
    if "options" not in kw:
        kw.setdefault("integrity_only", True)
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
    rep = api.verify(minilm, exhaustive=True, integrity_only=True)
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
    rep = api.verify(minilm, integrity_only=True)
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
    rep = _cached(minilm, options=Options(use_cache=False, integrity_only=True))
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
    assert api.verify(minilm, integrity_only=True).stats["files_hashed"] == n_files(minilm)
