"""The section cache: an unchanged checkpoint's headers and side files are not parsed
again, and no change to any file (nor to the tool, the manifest or an option the
result depends on) can make a stale result be reused.

Most tests set the racy-timestamp window to zero (as tests/test_statcache.py does) so
they need not sleep; the others inject a window (the kernel's default one is about a
minute), so no outcome depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from manifest import api, sectioncache, statcache
from manifest.options import Options
from manifest.report import Report
from manifest.statcache import cache_dir

CACHED = ["weights", "tokenizer", "config"]  # requirements and hub read outside the artifact: never cached


@pytest.fixture
def no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)


def comparable(rep: Report) -> dict[str, Any]:
    """The report without what legitimately differs between a cold and a cached run."""
    d = rep.to_dict()
    d.pop("stats")
    for k in ("sections_from_cache", "trusted_from_cache"):
        d["facts"].pop(k, None)
    d["checked"] = [c for c in d["checked"] if c != "digests (stat cache)"]
    return d


def flip_token(d: Path) -> None:
    """Rename one vocabulary entry of tokenizer.json in place: same size, mtime restored
    (the inode change time still moves)."""
    p = d / "tokenizer.json"
    st = p.stat()
    data = p.read_bytes()
    assert b'"hello":' in data
    time.sleep(0.02)
    p.write_bytes(data.replace(b'"hello":', b'"hellp":', 1))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns


def test_an_unchanged_checkpoint_reuses_the_results_and_reports_the_same(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    flip_token(minilm)  # findings to carry through the cache
    cold = api.verify(minilm, exhaustive=True, integrity_only=True)
    assert "sections_from_cache" not in cold.facts
    assert {"tokenizer-mismatch", "digest-mismatch"} <= set(cold.codes())
    warm = api.verify(minilm, exhaustive=True, integrity_only=True)
    assert warm.facts["sections_from_cache"] == CACHED
    assert comparable(warm) == comparable(cold)
    assert comparable(api.verify(minilm, exhaustive=True, use_cache=False, integrity_only=True)) == comparable(cold)


def test_findings_keep_their_details_through_the_cache(no_window: None, tokcls: Path) -> None:
    """A changed label map: message, expected, actual and hint all survive the round trip."""
    api.create(tokcls)
    cfg = json.loads((tokcls / "config.json").read_text())
    first = next(iter(cfg["id2label"]))
    cfg["id2label"][first] = "RENAMED"
    (tokcls / "config.json").write_text(json.dumps(cfg, indent=2))
    cold = api.verify(tokcls, integrity_only=True)
    warm = api.verify(tokcls, integrity_only=True)
    assert warm.facts["sections_from_cache"] == CACHED
    assert [f.to_dict() for f in warm.findings] == [f.to_dict() for f in cold.findings]
    assert any(f.code == "label-map-mismatch" and f.expected and f.hint for f in warm.findings)


def test_an_edit_with_the_same_size_and_mtime_is_seen(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    assert api.verify(minilm, integrity_only=True).ok
    assert api.verify(minilm, integrity_only=True).facts["sections_from_cache"] == CACHED
    flip_token(minilm)
    rep = api.verify(minilm, exhaustive=True, integrity_only=True)
    assert "sections_from_cache" not in rep.facts
    assert {"tokenizer-mismatch", "digest-mismatch"} <= set(rep.codes())


@pytest.mark.parametrize("change", ["add", "remove", "touch"])
def test_any_file_change_invalidates_every_section(no_window: None, minilm: Path, change: str) -> None:
    """The key holds every file's stat: even a file no section reads (README.md) is a miss."""
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    if change == "add":
        (minilm / "notes.txt").write_text("x")
    elif change == "remove":
        (minilm / "README.md").unlink()
    else:
        st = (minilm / "README.md").stat()
        os.utime(minilm / "README.md", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert "sections_from_cache" not in api.verify(minilm, integrity_only=True).facts


def test_the_recorded_section_is_part_of_the_key(no_window: None, minilm: Path, tmp_path: Path) -> None:
    """The same files against another manifest (here: another model's tokenizer record) are compared afresh."""
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    m = json.loads((minilm / "manifest.json").read_text())
    m["signed"]["tokenizer"]["fingerprint"] = "sha256:" + "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(m))
    rep = api.verify(minilm, other, integrity_only=True)
    assert rep.facts["sections_from_cache"] == ["weights", "config"]
    assert "tokenizer-mismatch" in rep.codes()


def test_options_the_result_depends_on_are_part_of_the_key(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    rep = api.verify(minilm, memory_limit=1000, integrity_only=True)
    assert "weights" not in rep.facts["sections_from_cache"]
    assert "memory-insufficient" in rep.codes()
    assert "memory-insufficient" in api.verify(minilm, memory_limit=1000, integrity_only=True).codes()  # now from the cache
    assert "weights" in api.verify(minilm, memory_limit=1000, integrity_only=True).facts["sections_from_cache"]
    # --check-memory reads the machine's free memory: never cached
    for _ in range(2):
        assert "weights" not in api.verify(minilm, check_memory=True, integrity_only=True).facts.get("sections_from_cache", [])


def test_check_and_verify_keep_separate_results(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    c1 = api.check(minilm)
    assert "sections_from_cache" not in c1.facts  # verify's results (with compare) are not check's
    c2 = api.check(minilm)
    assert c2.facts["sections_from_cache"] == CACHED
    assert comparable(c2) == comparable(c1)


def test_no_cache_neither_reads_nor_writes(no_window: None, minilm: Path) -> None:
    api.create(minilm)
    for _ in range(2):
        assert "sections_from_cache" not in api.verify(minilm, use_cache=False, integrity_only=True).facts
    assert not list(cache_dir().glob("*.json")) or all("sections" not in p.read_text() for p in cache_dir().glob("*.json"))


def test_a_new_version_of_the_tool_does_not_reuse_results(no_window: None, minilm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    monkeypatch.setattr(sectioncache, "code_identity", lambda: "another build of the tool")
    assert "sections_from_cache" not in api.verify(minilm, integrity_only=True).facts


def test_the_code_identity_follows_the_package_sources(tmp_path: Path) -> None:
    """Any edited, added or upgraded module (here: of a copy of the package) changes it."""
    import shutil

    pkg = tmp_path / "manifest"
    shutil.copytree(Path(sectioncache.__file__).resolve().parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    ident = sectioncache.tree_identity(pkg, "0.1.0")
    assert ident == sectioncache.tree_identity(pkg, "0.1.0")
    assert sectioncache.tree_identity(pkg, "0.1.1") != ident
    st = (pkg / "formats" / "tokenizer.py").stat()
    os.utime(pkg / "formats" / "tokenizer.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert sectioncache.tree_identity(pkg, "0.1.0") != ident
    os.utime(pkg / "formats" / "tokenizer.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sectioncache.tree_identity(pkg, "0.1.0") == ident
    (pkg / "sections" / "extra.py").write_text("")
    assert sectioncache.tree_identity(pkg, "0.1.0") != ident
    assert sectioncache.code_identity() == sectioncache.tree_identity(Path(sectioncache.__file__).resolve().parent, sectioncache.__version__)


def test_freshly_written_files_are_not_cached(minilm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written less than the window ago are not tied to their stat yet (the window
    is injected: one hour, longer than the test, so a slow machine cannot leave it)."""
    monkeypatch.setenv(statcache.WINDOW_ENV, "3600000")
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    assert "sections_from_cache" not in api.verify(minilm, integrity_only=True).facts
    assert not [p for p in cache_dir().glob("*.json") if '"sections"' in p.read_text()]


def test_a_result_stored_under_a_shorter_window_is_not_reused_under_a_longer_one(
        minilm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The moment a result was recorded is kept with it and checked again on reuse."""
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    assert api.verify(minilm, integrity_only=True).facts["sections_from_cache"] == CACHED
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 3_600_000_000_000)
    assert "sections_from_cache" not in api.verify(minilm, integrity_only=True).facts


@pytest.mark.parametrize("garbage", [
    b"not json",
    b'{"format": 1}',
    "wrong shape",
    "unregistered code",
    "message not text",
    "bad op",
])
def test_a_corrupt_or_forged_cache_file_is_ignored(no_window: None, minilm: Path, garbage: Any) -> None:
    api.create(minilm)
    cold = api.verify(minilm, integrity_only=True)
    files = [p for p in cache_dir().glob("*.json") if '"sections"' in p.read_text()]
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    if isinstance(garbage, bytes):
        files[0].write_bytes(garbage)
    else:
        e = doc["entries"]["tokenizer"]
        if garbage == "wrong shape":
            e["ops"] = {"f": 1}
        elif garbage == "unregistered code":
            e["ops"] = [["f", {"code": "all-good", "severity": "info", "message": "x"}]]
        elif garbage == "message not text":
            e["ops"] = [["f", {"code": "tokenizer-mismatch", "severity": "error", "message": ["x"], "path": 3}]]
        else:
            e["ops"] = [["c"]]
        files[0].write_text(json.dumps(doc))
    rep = api.verify(minilm, integrity_only=True)
    assert "tokenizer" not in rep.facts.get("sections_from_cache", [])
    assert comparable(rep) == comparable(cold)


def test_a_fully_cached_verify_imports_no_format_reader(minilm: Path, tmp_path: Path) -> None:
    """The point of the cache for start-up: the tokenizer, config and safetensors readers
    are not even imported when every cacheable section is served from it."""
    env = {**os.environ, "MANIFEST_CACHE_DIR": str(tmp_path / "cache"), statcache.WINDOW_ENV: "1000"}
    code = ("import sys; from manifest import api; r = api.verify(sys.argv[1], integrity_only=True); "
            "print(r.ok, r.facts.get('sections_from_cache'), sorted(m for m in sys.modules if m.startswith('manifest.formats.')))")
    api.create(minilm, options=Options(use_cache=False))
    time.sleep(1.1)
    outs = [subprocess.run([sys.executable, "-c", code, str(minilm)], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert "manifest.formats.tokenizer" in outs[0]
    assert outs[1].split(" ", 1)[0] == "True"
    assert "['weights', 'tokenizer', 'config']" in outs[1]
    readers = outs[1].rsplit("[", 1)[1]
    for heavy in ("tokenizer", "safetensors", "shards", "pickle_scan"):
        assert f"manifest.formats.{heavy}'" not in readers, outs[1]


def test_a_cached_report_validates_against_the_report_schema(no_window: None, minilm: Path) -> None:
    import jsonschema

    from manifest.sections import all_sections

    schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    api.create(minilm)
    api.verify(minilm, integrity_only=True)
    rep = api.verify(minilm, integrity_only=True).to_dict()
    assert rep["facts"]["sections_from_cache"] == CACHED
    assert list(v.iter_errors(rep)) == []
    # the schema names exactly the sections that can be cached (with default options)
    enum = schema["properties"]["facts"]["properties"]["sections_from_cache"]["items"]["enum"]
    assert enum == [s.name for s in all_sections() if s.cache_key(Options()) is not None] == CACHED
    rep["facts"]["sections_from_cache"] = "weights"
    assert list(v.iter_errors(rep)) != []
