"""The core promises, tested in-process and fast (scripts/mutation.py runs these first).

* The digest comparison compares whole digests: a signed manifest whose recorded digest
  differs from the file's only after its 16th hex character fails verify.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from manifest import api
from manifest.document import Manifest
from manifest.options import Options
from manifest.signing import generate, keyid, sign

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> tuple[Path, Any, dict[str, Any]]:
    """A copy of the real MiniLM (not hard-linked: a link elsewhere to the same inode moves
    its ctime, which verify rightly reports as file-changed), its signed manifest's document, its key."""
    d = tmp_path_factory.mktemp("core") / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    key = generate("ed25519")
    m = api.create(d, key=key, write=False, options=Options(use_cache=False))
    return d, key, m.to_document()


def _resigned(doc: dict[str, Any], key: Any) -> Manifest:
    m = Manifest.from_document({"signatures": [], "signed": doc["signed"]})
    m.signatures = [sign(m.signed_bytes(), key)]
    return m


def _edit_hex(digest: str, at: int) -> str:
    return digest[:at] + ("0" if digest[at] != "0" else "1") + digest[at + 1 :]


@pytest.mark.parametrize("rel", ["vocab.txt", "1_Pooling/config.json", "tokenizer.json"])
@pytest.mark.parametrize("at", [16, 40, 63])
def test_a_digest_differing_only_after_its_16th_hex_character_fails(signed: tuple[Path, Any, dict[str, Any]], rel: str, at: int) -> None:
    """Re-signed with the trusted key, so the signature passes and only the full digest
    comparison can catch the edit (a comparison of a prefix would pass it)."""
    d, key, doc = signed
    doc = json.loads(json.dumps(doc))
    real = doc["signed"]["files"][rel]["sha256"]
    doc["signed"]["files"][rel]["sha256"] = edited = _edit_hex(real, at)
    assert edited[:16] == real[:16] and edited != real
    report = api.verify(d, _resigned(doc, key), options=Options(keys=[key.public_key()], use_cache=False))
    assert report.facts["trusted_keyids"] == [keyid(key.public_key())]  # the signature is good
    assert [(f.code, f.path, f.expected, f.actual) for f in report.findings if f.is_error] == [("digest-mismatch", rel, edited, real)]
    assert report.exit_status == 1


@pytest.mark.parametrize("chunk", [0, -1])
@pytest.mark.parametrize("at", [16, 63])
def test_a_chunk_digest_differing_only_after_its_16th_hex_character_fails(signed: tuple[Path, Any, dict[str, Any]], chunk: int, at: int) -> None:
    """The weights (larger than one chunk) are verified by their signed chunk digests: an
    edit in the tail of one of them, re-signed, fails on the chunk comparison alone."""
    d, key, doc = signed
    doc = json.loads(json.dumps(doc))
    chunks = doc["signed"]["chunks"]["files"][WEIGHTS]
    assert len(chunks) >= 2
    real = chunks[chunk]
    chunks[chunk] = edited = _edit_hex(real, at)
    report = api.verify(d, _resigned(doc, key), options=Options(keys=[key.public_key()], use_cache=False))
    assert report.facts["trusted_keyids"] == [keyid(key.public_key())]
    errors = [f for f in report.findings if f.is_error]
    assert [(f.code, f.path) for f in errors] == [("digest-mismatch", WEIGHTS)], [f.one_line() for f in errors]
    assert errors[0].expected["bad_chunks"] == [chunk % len(chunks)] and edited != real
    assert report.exit_status == 1


def test_the_unedited_resigned_manifest_verifies(signed: tuple[Path, Any, dict[str, Any]]) -> None:
    """The baseline of the test above: re-signing alone changes nothing."""
    d, key, doc = signed
    report = api.verify(d, _resigned(doc, key), options=Options(keys=[key.public_key()], use_cache=False))
    assert report, [f.one_line() for f in report.findings]
    assert "digests" in report.checked and report.stats["files_hashed"] == len(doc["signed"]["files"])


# --------------------------------------------------------------------------- path rules
@pytest.mark.parametrize(("rel", "why"), [
    ("", "empty path"), ("a\x00b", "NUL byte in path"), ("a\nb", "newline in path"), ("a\rb", "newline in path"),
    ("a\\b", "backslash in path"), ("/etc/passwd", "absolute path"), ("C:evil", "drive-letter path"), ("c:/x", "drive-letter path"),
    ("\ud800", "path is not valid Unicode"), ("a/" * 2048 + "b", "path too long"), ("a/../b", "path component '..' is not allowed"),
    ("./a", "path component '.' is not allowed"), ("a//b", "path component '' is not allowed"), ("a/", "path component '' is not allowed"),
    ("x" * 256, "path component too long"), ("é" * 128, "path component too long"), ("a\x1fb", "control character in path"),
    ("a\x7fb", "control character in path"), ("a\x01", "control character in path"),
])
def test_unsafe_paths_are_named(rel: str, why: str) -> None:
    from manifest.paths import _path_problem_slow, path_problem

    assert path_problem(rel) == why
    assert _path_problem_slow(rel) == why


@pytest.mark.parametrize("rel", ["a", "1_Pooling/config.json", "x" * 255, "é" * 127, "ab:c", ("d/" * 2047) + "f", "a b/~c.d", ".hidden", "a..b"])
def test_safe_paths_pass(rel: str) -> None:
    from manifest.paths import MAX_PATH_BYTES, _path_problem_slow, path_problem

    assert len(rel.encode()) <= MAX_PATH_BYTES
    assert path_problem(rel) is None and _path_problem_slow(rel) is None


BOUNDARY_PATHS = {
    "C:": "drive-letter path", "a b": None, " ": None, "a/" * 2047 + "bb": None, "a/" * 2047 + "bbb": "path too long",
    "x" * 255: None, "x" * 256: "path component too long", "d/" + "x" * 255: None, "d/" + "x" * 256: "path component too long",
    "X": None, "/": "absolute path", "/a": "absolute path", "a/b/" + "é" * 127 + "e": None, "a/b/" + "é" * 128: "path component too long",
}


def test_both_paths_of_the_path_rules_agree_at_every_boundary() -> None:
    """path_problem answers most paths with one regex pass and hands the rest to the full
    rules: both give the same answer, at each length and character boundary."""
    from manifest.paths import _path_problem_slow, path_problem

    for rel, why in BOUNDARY_PATHS.items():
        assert path_problem(rel) == why, rel[:40]
        assert _path_problem_slow(rel) == why, rel[:40]


UNSAFE_PATHS = ["", "a\x00b", "a\nb", "a\rb", "a\\b", "/etc/passwd", "C:evil", "c:/x", "\ud800", "a/" * 2048 + "b", "a/../b", "./a",
                "a//b", "a/", "x" * 256, "\u00e9" * 128, "a\x1fb", "a\x7fb", "a\x01", "C:", "/", "\n", "a\n", "\nb", "a/\n/b", "..", "."]


def test_all_safe_says_what_path_problem_says_of_every_path() -> None:
    """The batched rules: a list passes when every path passes one by one, at every
    boundary, wherever the bad path sits in the list (the joining newline hides nothing)."""
    import random

    from manifest.paths import all_safe, path_problem

    good = ["a", "1_Pooling/config.json", "x" * 255, "\u00e9" * 127, "ab:c", ("d/" * 2047) + "f", "a b/~c.d", ".hidden", "a..b", ":a", "b/c:"]
    good += [rel for rel, why in BOUNDARY_PATHS.items() if why is None]
    assert all(path_problem(p) is None for p in good) and all_safe(good) and all_safe([]) and all_safe(["a"])
    bad = UNSAFE_PATHS + [rel for rel, why in BOUNDARY_PATHS.items() if why is not None]
    for rel in bad:
        assert path_problem(rel) is not None, rel[:40]
        for at in (0, 1, len(good)):
            assert not all_safe([*good[:at], rel, *good[at:]]), (rel[:40], at)
    assert not all_safe(["a", None]) and not all_safe(["a", b"b"])  # type: ignore[list-item]
    rng = random.Random(7)
    alphabet = ["a", "b", "/", ".", ":", "\\", "\n", "\x00", "\x1f", "\x7f", "\u00e9", "\ud800", " ", "x" * 120]
    for _ in range(3000):
        paths = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(1, 4))]
        assert all_safe(paths) == all(path_problem(p) is None for p in paths), paths


def test_collisions_of_ascii_paths_are_found_as_of_any_others() -> None:
    import random

    from manifest.paths import collision_key, find_collisions

    def slow(paths: list[str]) -> list[tuple[str, str]]:
        seen: dict[str, str] = {}
        out = []
        for p in paths:
            if collision_key(p) in seen:
                out.append((seen[collision_key(p)], p))
            else:
                seen[collision_key(p)] = p
        return out

    rng = random.Random(3)
    for _ in range(2000):
        paths = list(dict.fromkeys("".join(rng.choice("aAbB/\n\u00e9\u00c9") for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(0, 6))))
        assert find_collisions(paths) == slow(paths), paths
    assert find_collisions(["a/b", "A/b", "c", "C", "a\nb", "A\nB"]) == [("a/b", "A/b"), ("c", "C"), ("a\nb", "A\nB")]
    assert find_collisions([f"d/f{i}" for i in range(100)]) == []


def test_the_hand_written_initializers_set_every_field() -> None:
    """FileInfo and FileEntry build their frozen instances without the generated __init__:
    their parameters are the fields, in order, with the same defaults, and they stay frozen."""
    import dataclasses
    import inspect

    from manifest.document import FileEntry
    from manifest.inventory import FileInfo

    for cls in (FileInfo, FileEntry):
        params = list(inspect.signature(cls).parameters.values())
        fields = dataclasses.fields(cls)
        assert [p.name for p in params] == [f.name for f in fields]
        assert [p.default for p in params] == [inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields]
    info = FileInfo("a", 1, 2, 3, 4, ctime_ns=5)
    assert vars(info) == {"path": "a", "size": 1, "mtime_ns": 2, "ino": 3, "dev": 4, "source": None, "ctime_ns": 5}
    assert info == FileInfo("a", 1, 2, 3, 4, None, 5) and hash(info) == hash(FileInfo("a", 1, 2, 3, 4, None, 5))
    assert dataclasses.replace(info, path="b").path == "b" and FileEntry("p", 1, {"sha256": "x"}).digests == {"sha256": "x"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.size = 9  # type: ignore[misc]


def test_path_rules_refuse_a_non_string() -> None:
    from manifest.paths import path_problem

    assert path_problem(None) == "empty path"  # type: ignore[arg-type]
    assert path_problem(b"a") == "empty path"  # type: ignore[arg-type]


def test_collisions_by_case_and_normalization() -> None:
    from manifest.paths import collision_key, find_collisions

    assert collision_key("Caf\u00e9") == collision_key("cafe\u0301") == "caf\u00e9"
    assert find_collisions(["a", "B", "A", "b", "c", "cafe\u0301", "Caf\u00e9", "C"]) == [("a", "A"), ("B", "b"), ("cafe\u0301", "Caf\u00e9"), ("c", "C")]
    assert find_collisions(["a", "b"]) == []


# --------------------------------------------------------------------------- findings, errors and exit codes
def test_errors_carry_their_code_and_exit_status() -> None:
    from manifest.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK, InputError, KeyError_, ManifestError, ManifestInvalid, UsageError

    assert (EXIT_OK, EXIT_FAILED, EXIT_INPUT) == (0, 1, 2)
    for cls, code in [(ManifestError, "error"), (InputError, "input-invalid"), (ManifestInvalid, "manifest-invalid"), (KeyError_, "key-invalid"),
                      (UsageError, "usage")]:
        e = cls("bad  thing\nsecond line")
        assert (e.code, e.exit_status, e.path, e.message) == (code, 2, None, "bad  thing\nsecond line")
        assert e.one_line() == f"error[{code}]: bad thing second line"
    e = InputError("cannot read", code="unreadable", path="a/b.txt")
    assert (e.code, e.path, e.one_line()) == ("unreadable", "a/b.txt", "error[unreadable]: a/b.txt: cannot read")
    assert InputError.code == "input-invalid"  # a code given to one error does not change its class
    assert ManifestError("").message == "" and ManifestError.__new__(ManifestError).message == "error"


def test_verification_failed_names_the_first_error_and_exits_1() -> None:
    from manifest.errors import VerificationFailed
    from manifest.findings import Finding
    from manifest.report import Report

    r = Report("verify", "d")
    r.add(Finding.of("cached-digest", "info only", path="x"))
    r.add(Finding.of("size-mismatch", "3 bytes, manifest says 4", path="a"))
    r.add(Finding.of("digest-mismatch", "other", path="b"))
    e = VerificationFailed(r)
    assert (e.code, e.exit_status, e.report) == ("size-mismatch", 1, r)
    assert e.message == "2 finding(s), first: error[size-mismatch]: a: 3 bytes, manifest says 4"
    empty = VerificationFailed(Report("verify", "d"))
    assert (empty.code, empty.message) == ("verification-failed", "0 finding(s)")


def test_a_report_fails_on_errors_only() -> None:
    from manifest.findings import Finding, Severity
    from manifest.report import Report

    r = Report("verify", "d", "d/manifest.json")
    assert r.ok and bool(r) and r.verdict == "pass" and r.exit_status == 0 and r.errors == []
    r.add(Finding.of("pickle-file", "a warning", path="w.bin"))
    r.add(Finding.of("cached-digest", "info", path="w.bin"))
    assert r.ok and r.exit_status == 0 and [f.severity for f in r.findings] == [Severity.WARNING, Severity.INFO]
    r.add(Finding.of("extra-file", "in the directory", path="x"))
    assert not r.ok and not bool(r) and r.verdict == "fail" and r.exit_status == 1
    assert [f.code for f in r.errors] == ["extra-file"] and r.codes() == ["pickle-file", "cached-digest", "extra-file"]
    r.mark_not_checked("digests", "skipped")
    r.mark_checked("digests")
    r.mark_not_checked("digests", "too late")  # once checked, never "not checked"
    r.mark_checked("digests")
    r.mark_not_checked("load", "first reason")
    r.mark_not_checked("load", "second reason")
    assert r.checked == ["digests"] and r.not_checked == {"load": "first reason"}
    d = r.to_dict()
    assert (d["verdict"], d["exit_status"], d["command"]) == ("fail", 1, "verify")
    assert (d["artifact"], d["manifest"], d["stopped_early"]) == ("d", "d/manifest.json", False)
    assert d["checked"] == ["digests"] and d["not_checked"] == [{"check": "load", "reason": "first reason"}]
    assert [f["code"] for f in d["findings"]] == ["pickle-file", "cached-digest", "extra-file"]


def test_findings_take_their_code_defaults() -> None:
    from manifest.findings import Finding, Severity, code_info

    f = Finding.of("digest-mismatch", "changed  a lot\nreally", path="w.bin", expected="a", actual="b")
    assert f.severity is Severity.ERROR and f.is_error and f.hint == code_info("digest-mismatch").hint
    assert f.one_line() == "error[digest-mismatch]: w.bin: changed a lot really"
    d = f.to_dict()
    assert (d["code"], d["severity"], d["path"], d["expected"], d["actual"]) == ("digest-mismatch", "error", "w.bin", "a", "b")
    w = Finding.of("pickle-file", "runs code", hint="my own fix")
    assert w.severity is Severity.WARNING and not w.is_error and w.hint == "my own fix" and w.one_line() == "warning[pickle-file]: runs code"
    assert Finding.of("cached-digest", "x", severity=Severity.ERROR).is_error  # an explicit severity wins
    assert "path" not in Finding.of("extra-file", "x").to_dict()
    with pytest.raises(ValueError, match="unregistered finding code 'no-such-code'"):
        Finding("no-such-code", "x")


# --------------------------------------------------------------------------- signatures
def test_signature_checks_name_what_failed() -> None:
    from manifest.signing import MAX_TRIES_PER_KEY, check_signatures, verify_one

    data = b'{"a":1}'
    k, other, p256 = generate("ed25519"), generate("ed25519"), generate("ecdsa-p256")
    s, t = sign(data, k), sign(data, p256)
    assert (s["alg"], t["alg"], s["keyid"]) == ("ed25519", "ecdsa-p256-sha256", keyid(k.public_key()))
    assert verify_one(k.public_key(), data, s["sig"]) and verify_one(k.public_key(), data, s["sig"], "ed25519")
    assert verify_one(p256.public_key(), data, t["sig"], "ecdsa-p256-sha256")
    assert not verify_one(k.public_key(), data, s["sig"], "ecdsa-p256-sha256")  # a declared alg must be the key's own
    assert not verify_one(k.public_key(), data + b" ", s["sig"])
    assert not verify_one(other.public_key(), data, s["sig"])
    assert not verify_one(p256.public_key(), data + b" ", t["sig"])
    assert not verify_one(k.public_key(), data, "!!notbase64")
    assert not verify_one(k.public_key(), data, s["sig"].rstrip("="))  # only the canonical base64 text counts

    ok = check_signatures(data, [s], [k.public_key(), k.public_key()])
    assert ok.trusted_keyids == [s["keyid"]] and ok.findings == []
    both = check_signatures(data, [t, s, s], [k.public_key(), p256.public_key()])
    assert both.trusted_keyids == [t["keyid"], s["keyid"]] and both.findings == []
    missing = check_signatures(data, [], [k.public_key()])
    assert missing.trusted_keyids == [] and [f.code for f in missing.findings] == ["signature-missing"]
    untrusted = check_signatures(data, [s], [other.public_key()])
    assert untrusted.trusted_keyids == [] and [f.code for f in untrusted.findings] == ["untrusted-key"]
    assert untrusted.findings[0].actual == [s["keyid"][:16]] and s["keyid"][:16] in untrusted.findings[0].message
    bad = check_signatures(data + b"x", [s], [k.public_key()])
    assert bad.trusted_keyids == [] and [(f.code, f.actual) for f in bad.findings] == [("signature-invalid", s["keyid"])]
    # a bad entry beside a good one by the same key: the key verified; the entry is only a warning, in any order
    forged = {**s, "sig": sign(b"other", k)["sig"]}
    assert check_signatures(data, [forged, s], [k.public_key()]) == check_signatures(data, [s, forged], [k.public_key()])
    beside = check_signatures(data, [forged, s], [k.public_key()])
    assert beside.trusted_keyids == [s["keyid"]]
    assert [(f.code, f.severity.value, f.actual) for f in beside.findings] == [("signature-ignored", "warning", s["keyid"])]
    # a bad entry by another given key beside a good one: one valid signature suffices
    by_other = {**sign(data + b"x", other), "keyid": keyid(other.public_key())}
    r = check_signatures(data, [s, by_other], [k.public_key(), other.public_key()])
    assert r.trusted_keyids == [s["keyid"]] and [(f.code, f.actual) for f in r.findings] == [("signature-ignored", by_other["keyid"])]
    # only bad entries by given keys: still a failure
    r = check_signatures(data, [forged, by_other], [k.public_key(), other.public_key()])
    assert r.trusted_keyids == [] and [f.code for f in r.findings] == ["signature-invalid", "signature-invalid"]
    # a flood of entries for one key: at most MAX_TRIES_PER_KEY are tried, so a good one after them is not reached
    flood = [{**s, "sig": sign(bytes([i]), k)["sig"]} for i in range(MAX_TRIES_PER_KEY)]
    r = check_signatures(data, [*flood, s], [k.public_key()])
    assert r.trusted_keyids == [] and [f.code for f in r.findings] == ["signature-invalid"]
    r = check_signatures(data, [*flood[:-1], s], [k.public_key()])
    assert r.trusted_keyids == [s["keyid"]] and [f.code for f in r.findings] == ["signature-ignored"]
    assert r.findings[0].message.startswith(f"{MAX_TRIES_PER_KEY - 1} signature entries for key {s['keyid'][:16]} do not verify")


def test_a_report_document_names_its_tool_version_stats_and_facts() -> None:
    from manifest import __version__
    from manifest.report import REPORT_VERSION, Report

    r = Report("check", "d")
    r.stats["seconds"] = 0.5
    r.facts["trusted_keyids"] = ["k"]
    d = r.to_dict()
    assert d["report_version"] == REPORT_VERSION == 1
    assert d["tool"] == {"name": "model-manifest", "version": __version__}
    assert (d["stats"], d["facts"], d["manifest"]) == ({"seconds": 0.5}, {"trusted_keyids": ["k"]}, None)


def test_a_file_changed_while_hashed_is_described_by_what_moved(tmp_path: Path) -> None:
    """Each stat difference between discovery, the open and the end of the read has its own words."""
    import dataclasses
    import os

    from manifest.digest import _describe
    from manifest.inventory import discover

    (tmp_path / "f").write_bytes(b"0123456789")
    info = discover(tmp_path).files["f"]
    st = os.stat(tmp_path / "f")

    def moved(**kw: int) -> os.stat_result:
        fields = {"st_size": st.st_size, "st_mtime_ns": st.st_mtime_ns, "st_ino": st.st_ino, "st_dev": st.st_dev}
        fields.update(kw)
        return type("S", (), fields)()  # type: ignore[return-value]

    same = moved()
    assert _describe(info, same, same, 9) == "read 9 bytes, expected 10"
    assert _describe(info, moved(st_ino=st.st_ino + 1), same, 10) == "replaced by another file since it was listed"
    assert _describe(info, moved(st_dev=st.st_dev + 1), same, 10) == "replaced by another file since it was listed"
    assert _describe(info, same, moved(st_size=11), 10) == "size went from 10 to 11 bytes"
    assert _describe(info, same, moved(st_mtime_ns=st.st_mtime_ns + 1), 10) == "modification time moved"
    assert _describe(dataclasses.replace(info, mtime_ns=info.mtime_ns - 1), same, same, 10) == "modification time moved"
    assert _describe(info, same, same, 10) == "inode change time moved (written to, or its times were reset)"


# --------------------------------------------------------------------------- safetensors header facts
def _st(entries: dict[str, Any], data_len: int) -> bytes:
    import struct

    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + bytes(data_len)


def test_the_header_reader_returns_each_tensors_exact_facts() -> None:
    """A file written by safetensors itself: every dtype, shape and data offset as written
    (the weights section and the chunk-to-tensor mapping rely on them)."""
    import numpy as np
    from safetensors.numpy import save

    from manifest.formats.safetensors import TensorInfo, parse_header_bytes

    blob = save({"a": np.zeros((2, 3), dtype=np.float32), "b": np.zeros((0, 4), dtype=np.float16), "c": np.zeros((), dtype=np.int64),
                 "d": np.zeros((5,), dtype=np.uint8)})
    h = parse_header_bytes(blob)
    written = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])  # the offsets safetensors chose (sorted by alignment)
    assert h.tensors == {k: TensorInfo(v["dtype"], tuple(v["shape"]), *v["data_offsets"]) for k, v in written.items() if k != "__metadata__"}
    assert {k: (t.dtype, t.shape, t.end - t.start) for k, t in h.tensors.items()} == {
        "a": ("F32", (2, 3), 24), "b": ("F16", (0, 4), 0), "c": ("I64", (), 8), "d": ("U8", (5,), 5)}
    assert sorted(t.start for t in h.tensors.values())[0] == 0 and h.data_len == 37 and 8 + h.header_len + h.data_len == len(blob)


def test_header_integers_are_unsigned_64_bit() -> None:
    from manifest.formats.safetensors import HeaderError, parse_header_bytes

    ok = parse_header_bytes(_st({"z": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}, 0))
    assert ok.tensors["z"] == ("U8", (0,), 0, 0)  # zero is a valid dimension and offset
    for bad in ([-1], [True], [1.0], [2**64]):
        with pytest.raises(HeaderError) as e:
            parse_header_bytes(_st({"z": {"dtype": "U8", "shape": bad, "data_offsets": [0, 0]}}, 0))
        assert e.value.facts["rule"] in ("shape", "overflow"), (bad, e.value.facts)
    with pytest.raises(HeaderError) as e:
        parse_header_bytes(_st({"z": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}, 1))
    assert e.value.facts["rule"] == "offsets"
    big = parse_header_bytes(_st({"z": {"dtype": "U8", "shape": [2**64 - 1, 0], "data_offsets": [0, 0]}}, 0))
    assert big.tensors["z"].shape == (2**64 - 1, 0)  # the largest u64 dimension, zero elements


def test_a_malformed_tensor_entry_names_the_tensor() -> None:
    from manifest.formats.safetensors import HeaderError, parse_header_bytes

    for entry, words in [([1], "entry is a JSON list, not an object"), ({"dtype": "U8", "shape": [1]}, "missing data_offsets"),
                         ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 1, "y": 2}, "unknown keys x, y")]:
        with pytest.raises(HeaderError) as e:
            parse_header_bytes(_st({"w.bias": entry}, 1))
        assert e.value.facts == {"rule": "tensor-entry", "tensor": "w.bias"} or e.value.facts.get("tensor") == "w.bias", e.value.facts
        assert f"tensor 'w.bias': {words}" in e.value.message, e.value.message


def test_a_finding_document_holds_exactly_what_is_set() -> None:
    from manifest.findings import Finding, Severity

    f = Finding("tensor-mismatch", "3 tensors changed", path="m.safetensors", expected=[1], actual=[2], hint="fix it", severity=Severity.ERROR,
                items=("a", "b", "c"), id="c1", caused_by="c0")
    assert f.to_dict() == {"code": "tensor-mismatch", "severity": "error", "message": "3 tensors changed", "path": "m.safetensors", "expected": [1],
                           "actual": [2], "hint": "fix it", "items": ["a", "b", "c"], "count": 3, "id": "c1", "caused_by": "c0"}
    assert Finding("extra-file", "x").to_dict() == {"code": "extra-file", "severity": "error", "message": "x"}
