"""Issue 14: large checkpoints.

* A valid but hostile safetensors header of hundreds of thousands of zero-size tensors is
  checked in memory proportional to the header (the parsed JSON is freed as the tensor
  table is built, and no copy of the table is made).
* ``create`` names the manifest's own cap when the tensor table (or the file table)
  cannot fit in a manifest, instead of failing on the model, and writes nothing.
* The nesting check of the strict JSON loader gives the same answer on its fast path (no
  backslash in the text) as on the general one.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifest import api
from manifest.errors import InputError
from manifest.jsonio import JSONError, _check_depth
from manifest.options import Options

ROOT = Path(__file__).resolve().parent.parent


def write_zero_size_tensors(d: Path, n: int) -> int:
    """A valid safetensors file of ``n`` zero-size F32 tensors (no data); returns the header length."""
    d.mkdir(parents=True, exist_ok=True)
    body = ("{" + ",".join(f'"t{i:07d}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(n)) + "}").encode()
    body += b" " * (-len(body) % 8)
    with open(d / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(body)))
        f.write(body)
    return len(body)


def peak_rss_of(argv: list[str], out: Path) -> tuple[int, int, str]:
    """Exit status, peak RSS in bytes (the child's own, via wait4) and output of one child process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rss = out.with_name(out.name + ".rss")
    # Through tests/peak_rss.py: a child of this (large) pytest process would report this process's RSS as its own floor.
    with open(out, "wb") as f:
        p = subprocess.run([sys.executable, str(Path(__file__).with_name("peak_rss.py")), str(rss), *argv], env=env, stdout=f,
                           stderr=subprocess.STDOUT, check=False)
    return p.returncode, int(rss.read_text()) * 1024, out.read_text(errors="replace")


def test_hostile_header_of_zero_size_tensors_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Python's own allocation count (tracemalloc: the same on every machine and load):
    the parsed JSON and the tensor table both alive, as before, peaked at 27x the header;
    freed as the table is built, 13x."""
    import tracemalloc

    from manifest.formats.safetensors import read_header

    header = write_zero_size_tensors(tmp_path / "m", 200_000)
    path = tmp_path / "m" / "model.safetensors"
    tracemalloc.start()
    try:
        with open(path, "rb") as f:
            h = read_header(f, path.stat().st_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(h.tensors) == 200_000
    assert peak < 18 * header, f"peak {peak / 1e6:.0f} MB of Python allocations for a {header / 1e6:.0f} MB header"


def test_hostile_header_of_zero_size_tensors_passes_check(tmp_path: Path) -> None:
    write_zero_size_tensors(tmp_path / "m", 300_000)
    code, _rss, out = peak_rss_of([sys.executable, "-m", "manifest", "check", str(tmp_path / "m"), "-q", "--no-cache", "--json"], tmp_path / "out.txt")
    assert code in (0, 1), out  # 1: no config.json beside the weights, which check reports
    report = json.loads(out)
    assert "safetensors-headers" in report["checked"]
    assert [f for f in report["findings"] if f.get("path") == "model.safetensors"] == []


def test_create_names_the_manifest_cap_not_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest.sections import weights

    write_zero_size_tensors(tmp_path / "m", 30_000)
    monkeypatch.setattr(weights, "MAX_DOCUMENT_BYTES", 1 << 20)
    with pytest.raises(InputError) as e:
        api.create(tmp_path / "m", options=Options(use_cache=False))
    assert e.value.code == "manifest-too-large"
    assert "30k tensors in 1 safetensors file; over the 1 MiB cap" in e.value.message
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_create_names_the_cap_for_a_file_table_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    d = tmp_path / "many"
    d.mkdir()
    for i in range(300):
        (d / f"f{i:04d}.txt").write_text(str(i))
    monkeypatch.setattr(api, "MAX_MANIFEST_BYTES", 16 << 10)
    with pytest.raises(InputError) as e:
        api.create(d, options=Options(use_cache=False))
    assert e.value.code == "manifest-too-large"
    assert "300 files; over the 16 KiB cap" in e.value.message
    assert not (d / "manifest.json").exists()
    assert cli("create", d, "-q").code == 0  # under the real cap it is written


nested = st.recursive(st.integers(0, 9) | st.text(st.sampled_from('ab[]{}"\\'), max_size=6),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(st.sampled_from("ab[]{}"), max_size=4), c, max_size=3),
                      max_leaves=40)


STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def general_path(data: bytes, limit: int) -> bool:
    """The loader's general nesting check (strings cut out by a regex that knows escapes)."""
    skeleton = re.sub(STRING, b"", data).translate(None, bytes(b for b in range(256) if b not in b"[]{}"))
    for _ in range(limit):
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    return not skeleton


def outcome(data: bytes, limit: int) -> bool:
    try:
        _check_depth(data, limit)
    except JSONError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(nested, st.integers(0, 6))
def test_nesting_check_fast_path_agrees_with_the_general_one(doc: Any, limit: int) -> None:
    data = json.dumps(doc).encode()
    assert outcome(data, limit) == general_path(data, limit)
    spaced = json.dumps(doc, indent=1).encode()
    assert outcome(spaced, limit) == general_path(data, limit)


# ----------------------------------------------------------------------------- chunk digests
ASSETS = Path(__file__).resolve().parent / "assets"
CHUNK = 64 << 10  # small chunks, so a real safetensors file of a few hundred KiB has several


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """A real checkpoint written by the safetensors library: one file of ~600 KiB in
    tensors of uneven sizes (some smaller than a chunk, some spanning several), and a
    small side file below the chunk threshold."""
    import numpy as np
    from safetensors.numpy import save_file

    d = tmp_path / "ckpt"
    d.mkdir()
    rng = np.random.default_rng(14)
    tensors = {f"model.layers.{i}.mlp.down_proj.weight": rng.standard_normal((n, 64)).astype(np.float32)
               for i, n in enumerate([50, 700, 3, 260, 1200, 90, 2])}
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "np"})
    (d / "config.json").write_text('{"model_type": "llama"}\n')
    return d


def offsets(path: Path) -> tuple[int, dict[str, tuple[int, int]]]:
    """The data start and each tensor's [start, end) in the file, read with json and struct
    (independently of the tool's reader)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return 8 + n, {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1]) for k, v in header.items()}


def test_chunk_digests_equal_an_independent_hashlib_computation(shards: Path) -> None:
    import hashlib

    m = api.create(shards, options=Options(use_cache=False, chunk_size=CHUNK))
    data = (shards / "model.safetensors").read_bytes()
    assert len(data) > 4 * CHUNK
    want = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
    assert m.chunk_size == CHUNK and m.chunks == {"model.safetensors": want}
    assert m.files["model.safetensors"].digests["sha256"] == hashlib.sha256(data).hexdigest()  # the whole-file digest stays
    doc = json.loads((shards / "manifest.json").read_text())
    assert doc["signed"]["minor_version"] == 1
    assert doc["signed"]["chunks"] == {"algorithm": "sha256", "size": CHUNK, "files": {"model.safetensors": want}}
    report = api.verify(shards, options=Options(use_cache=False, integrity_only=True))
    assert report and report.stats["files_by_chunks"] == 1


@pytest.mark.parametrize("where", ["first", "middle", "last", "header"])
def test_a_flipped_byte_is_located_to_its_chunk_and_the_tensors_in_it(shards: Path, where: str) -> None:
    import random

    api.create(shards, options=Options(use_cache=False, chunk_size=CHUNK))
    path = shards / "model.safetensors"
    size = path.stat().st_size
    count = -(-size // CHUNK)
    k = {"first": 0, "middle": count // 2, "last": count - 1, "header": 0}[where]
    lo, hi = k * CHUNK, min((k + 1) * CHUNK, size)
    data_start, spans = offsets(path)
    at = random.Random(where).randrange(max(lo, data_start) if where != "header" else 8, hi if where != "header" else data_start)
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))
    # --exhaustive: a changed header fails a cheaper check first, and is still located
    report = api.verify(shards, options=Options(use_cache=False, integrity_only=True, exhaustive=True))
    found = [f for f in report.findings if f.code == "digest-mismatch"]
    assert len(found) == 1 and found[0].path == "model.safetensors"
    facts = found[0].expected
    assert facts["bad_chunks"] == [k] and facts["chunks"] == count
    assert facts["byte_ranges"] == [[lo, hi - 1]]
    assert facts["header"] is (lo < data_start)
    if where == "header":  # the header no longer parses: its bytes are named, tensors cannot be
        assert "the safetensors header" in found[0].message
        return
    assert facts["tensors"] == [n for n, (s, e) in sorted(spans.items(), key=lambda kv: kv[1]) if e > s and s < hi and e > lo]
    assert f"(1 of {count} chunks)" in found[0].message
    assert f"Range: bytes={lo}-{hi - 1}" in (found[0].hint or "")
    if facts["tensors"]:
        assert "tensors " + ", ".join(facts["tensors"][:5]) in found[0].message


def test_two_damaged_ranges_are_both_named(shards: Path) -> None:
    api.create(shards, options=Options(use_cache=False, chunk_size=CHUNK))
    path = shards / "model.safetensors"
    with open(path, "r+b") as f:
        for at in (CHUNK + 5, 3 * CHUNK + 5, 4 * CHUNK + 5):
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 1]))
    report = api.verify(shards, options=Options(use_cache=False, integrity_only=True))
    (f,) = [f for f in report.findings if f.code == "digest-mismatch"]
    assert f.expected["bad_chunks"] == [1, 3, 4]
    assert f.expected["byte_ranges"] == [[CHUNK, 2 * CHUNK - 1], [3 * CHUNK, 5 * CHUNK - 1]]


def test_chunk_digests_come_through_the_stat_cache_and_still_catch_a_change(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import statcache

    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)  # trust files written just now (tmp may be tmpfs)
    api.create(shards, options=Options(chunk_size=CHUNK))
    first = api.verify(shards, options=Options(integrity_only=True))
    assert first and first.stats.get("files_from_cache")
    path = shards / "model.safetensors"
    with open(path, "r+b") as f:
        f.seek(2 * CHUNK)
        f.write(b"\0\0\0\0")
    os.utime(path, ns=(1, 1))
    again = api.verify(shards, options=Options(integrity_only=True))
    assert [f.expected["bad_chunks"] for f in again.findings if f.code == "digest-mismatch"] == [[2]]


def test_an_old_format_manifest_still_verifies() -> None:
    """tests/assets/manifest-1.0: a manifest written (and signed) before chunk digests
    existed (no minor_version, no chunks), with the files it describes."""
    from manifest.document import Manifest
    from manifest.signing import load_public_key

    d = ASSETS / "manifest-1.0"
    raw = (d / "manifest.json").read_bytes()
    assert b"minor_version" not in raw and b"chunks" not in raw
    m = Manifest.loads(raw)
    assert m.minor_version is None and m.chunks == {}
    assert m.signed_bytes() == m.signed_payload()  # rebuilt without the new members: the signed bytes are unchanged
    report = api.verify(d / "model", d / "manifest.json", options=Options(use_cache=False, keys=[load_public_key(d / "publisher.pub.pem")]))
    assert report, [f.one_line() for f in report.findings]
    assert "signature" in report.checked and "digests" in report.checked


def _signed_with_chunks(shards: Path) -> dict[str, Any]:
    api.create(shards, options=Options(use_cache=False, chunk_size=CHUNK))
    return json.loads((shards / "manifest.json").read_text())


@pytest.mark.parametrize("change", ["one digest fewer", "one digest more", "unlisted file", "size changed", "bad hex", "other algorithm",
                                    "tiny chunks", "extra key"])
def test_a_chunk_list_that_does_not_cover_the_file_exactly_is_refused(shards: Path, change: str) -> None:
    from manifest.document import Manifest
    from manifest.errors import ManifestInvalid

    doc = _signed_with_chunks(shards)
    c = doc["signed"]["chunks"]
    digests = c["files"]["model.safetensors"]
    if change == "one digest fewer":
        digests.pop()
    elif change == "one digest more":
        digests.append(digests[-1])
    elif change == "unlisted file":
        c["files"]["nope.bin"] = digests[:1]
    elif change == "size changed":
        c["size"] *= 2
    elif change == "bad hex":
        digests[0] = digests[0].upper()
    elif change == "other algorithm":
        c["algorithm"] = "md5"
    elif change == "tiny chunks":
        c["size"] = 16
    else:
        c["extra"] = 1
    with pytest.raises(ManifestInvalid):
        Manifest.from_document(doc)


# ----------------------------------------------------------------------------- many files
@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["a", "é", "/", ".", "..", "\\", ":", "\x00", "\n", "\x1f", "\x7f", " ", "\ud800", "\U0001f600"]), max_size=10).map("".join)
       | st.sampled_from(["x" * 256, "d/" + "y" * 256, "z" * 4097, "c:/x", "/abs", "a//b", "a/", "./a"]))
def test_the_quick_path_check_names_the_same_problem_as_the_rules(path: str) -> None:
    from manifest.paths import _path_problem_slow, path_problem

    assert path_problem(path) == _path_problem_slow(path)


def test_many_small_files_hash_in_batches_to_the_same_digests(tmp_path: Path) -> None:
    """Small files go to the threads in batches: every file still gets its own digest, in
    the job's order, equal to hashlib's; a large file among them is hashed on its own."""
    import hashlib

    from manifest.digest import BATCH_FILES, hash_files
    from manifest.inventory import discover

    d = tmp_path / "many"
    d.mkdir()
    want = {}
    for i in range(BATCH_FILES * 3 + 7):
        data = os.urandom(i % 5000)
        (d / f"f{i:04d}.dat").write_bytes(data)
        want[f"f{i:04d}.dat"] = hashlib.sha256(data).hexdigest()
    big = os.urandom(20 << 20)
    (d / "big.dat").write_bytes(big)
    want["big.dat"] = hashlib.sha256(big).hexdigest()
    art = discover(d)
    job = hash_files(art, list(art.files.values()), ["sha256"], workers=2)
    got = [(info.path, res["sha256"]) for info, res, _ in job]  # type: ignore[index]
    assert dict(got) == want
    assert [p for p, _ in got] == [i.path for i in sorted(art.files.values(), key=lambda i: (-i.size, i.path))]


# ----------------------------------------------------------------------------- section shapes
tensor_rows = st.dictionaries(st.sampled_from(["dtype", "shape", "extra"]),
                              st.sampled_from(["F32", "BF16", "Q4", "", None, True, 0, -1, 2**64]) | st.lists(
                                  st.sampled_from([0, 1, 4096, -1, True, 1.5, "2"]), max_size=3), max_size=3)


@settings(max_examples=500, deadline=None)
@given(st.lists(tensor_rows, min_size=1, max_size=3), st.integers(0, 2))
def test_a_large_tensor_table_is_judged_as_the_generic_walk_judges_it(rows: list[Any], where: int) -> None:
    """The compiled check of a big map's rows accepts exactly what the schema walk accepts,
    and a refused table names the same first problem."""
    from manifest._section_schemas import SCHEMAS
    from manifest.shapes import _FAST_MIN, problem, section_problem

    schema = SCHEMAS["weights"]
    good = {"dtype": "F32", "shape": [2, 4]}
    tensors = {f"t{i}": dict(good) for i in range(_FAST_MIN + 10)}
    for i, row in enumerate(rows):
        tensors[f"t{where * 20 + i}"] = row
    section = {"version": 1, "totals": {"files": 1, "tensors": 1, "parameters": 0, "bytes": 0, "bytes_by_dtype": {}},
               "files": [{"path": "m.safetensors", "header_sha256": "0" * 64, "header_len": 8, "parameters": 0, "bytes_by_dtype": {},
                          "tensors": tensors}]}
    row_schema = schema["$defs"]["file"]["properties"]["tensors"]["additionalProperties"]
    first_bad = next((k for k, v in tensors.items() if problem(v, row_schema, schema["$defs"], ("files", 0, "tensors", k)) is not None), None)
    got = section_problem("weights", section)
    if first_bad is None:
        assert got is None
    else:
        assert got == problem(tensors[first_bad], row_schema, schema["$defs"], ("files", 0, "tensors", first_bad))
