"""Issue 7: property tests (hypothesis, bounded examples).

* The manifest loader and the safetensors header reader never raise anything but the
  project's own errors, on arbitrary bytes and on mutations of real inputs.
* Any single-byte change to the real MiniLM checkpoint (every file; the weights' length,
  header and data) or to a signed manifest makes ``verify`` fail: a failing report (exit 1) or a
  :class:`~manifest.errors.ManifestError` (exit 2). The only exempt manifest changes
  are those that leave the parsed document equal (insignificant whitespace).

The artifact is a tiny real checkpoint: the real MiniLM tokenizer and config files,
and a small ``model.safetensors`` written by the ``safetensors`` library.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from manifest import api
from manifest.document import Manifest
from manifest.errors import ManifestError
from manifest.formats.safetensors import HeaderError, read_header
from manifest.jsonio import JSONError, canonical_bytes
from manifest.options import Options
from manifest.signing import generate, keyid, sign

SMALL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json",
               "1_Pooling/config.json"]
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Tiny:
    """The tiny checkpoint, its signed manifest and key, and its files' original bytes."""

    def __init__(self, d: Path, manifest: bytes, key: Any, files: dict[str, bytes]):
        self.dir, self.manifest, self.key, self.files = d, manifest, key, files

    def __repr__(self) -> str:  # hypothesis prints fixtures in a falsifying example: keep it short
        return f"Tiny({self.dir})"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Tiny:
    import numpy as np
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("tiny") / "ckpt"
    for rel in SMALL_FILES:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(minilm_src / rel, d / rel)
    save_file(
        {"pooler.dense.bias": np.linspace(-1, 1, 384, dtype=np.float32), "pooler.dense.weight": np.eye(384, dtype=np.float16)[:4]},
        str(d / "model.safetensors"),
        metadata={"format": "pt"},
    )
    key = generate("ed25519")
    api.create(d, key=key, model_id="tiny/ckpt", revision="r1", options=Options(use_cache=False))
    t = Tiny(d, (d / "manifest.json").read_bytes(), key, {})
    t.files = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    report = api.verify(d, options=Options(keys=[key.public_key()], use_cache=False))
    assert report, [f.one_line() for f in report.findings]  # the baseline verifies
    assert report.facts["trusted_keyids"] == [keyid(key.public_key())]
    return t


def _verify_fails(t: Tiny, manifest: Path | None = None) -> bool:
    try:
        # fail_fast: the verdict, not the full list of findings, is the property here
        report = api.verify(t.dir, manifest, options=Options(keys=[t.key.public_key()], use_cache=False, fail_fast=True))
    except ManifestError:
        return True  # exit 2
    return not report  # exit 1


# --------------------------------------------------------------------------- mutations
@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """A few structure-blind edits of ``seed``: flips, overwrites, deletions, insertions
    of JSON-significant tokens, splices of the seed into itself, truncation."""
    b = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "splice", "truncate"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and b:
            b[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del b[i : i + draw(st.integers(1, 64))]
        elif op == "insert":
            tok = draw(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000", b"\\ud800", b"1e999", b"NaN", b"-", b"9" * 50,
                                        b"null", b"../", b"/", b"\xff", b'"size": 1, ', b'"version": 2, ', b"[" * 100]))
            b[i:i] = tok
        elif op == "splice" and b:
            j = draw(st.integers(0, len(b) - 1))
            b[i:i] = b[j : j + draw(st.integers(1, 256))]
        elif op == "truncate":
            del b[i:]
    return bytes(b)


def _loads_only_own_errors(data: bytes) -> None:
    try:
        m = Manifest.loads(data)
    except ManifestError:
        return
    m.signed_bytes()  # what was accepted can be canonicalized, hence signed or checked
    assert isinstance(m.files, dict)


def _header_only_own_errors(data: bytes) -> None:
    try:
        h = read_header(io.BytesIO(data), len(data))
    except HeaderError:
        return
    assert 8 + h.header_len <= len(data)


# --------------------------------------------------------------------------- loaders: own errors only
@QUICK
@given(st.binary(max_size=4096))
def test_manifest_loader_on_arbitrary_bytes(data: bytes) -> None:
    _loads_only_own_errors(data)


@QUICK
@given(st.data())
def test_manifest_loader_on_mutated_real_manifests(tiny: Tiny, data: st.DataObject) -> None:
    _loads_only_own_errors(data.draw(mutated(tiny.manifest)))


@QUICK
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=12))
def test_manifest_loader_on_wrong_shapes_in_a_real_manifest(value: Any) -> None:
    """Any JSON value in place of each part of a real manifest: never a crash."""
    doc = json.loads(Manifest(files={}, algorithms=["sha256"], ignore=[]).dumps())
    for path in (("signed",), ("signed", "files"), ("signed", "hashing"), ("signed", "model"), ("signatures",), ("signed", "weights"),
                 ("signed", "hashing", "algorithms"), ("signed", "expires"), ("signed", "created_by")):
        d = json.loads(json.dumps(doc))
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        _loads_only_own_errors(json.dumps(d).encode())


@QUICK
@given(st.binary(max_size=2048))
def test_header_reader_on_arbitrary_bytes(data: bytes) -> None:
    _header_only_own_errors(data)


@QUICK
@given(st.data())
def test_header_reader_on_mutated_real_headers(tiny: Tiny, data: st.DataObject) -> None:
    real = tiny.files["model.safetensors"]
    (n,) = struct.unpack("<Q", real[:8])
    seed = data.draw(st.sampled_from([real, real[: 8 + n], real[8 : 8 + n]]))
    _header_only_own_errors(data.draw(mutated(seed)))


# --------------------------------------------------------------------------- any byte change fails verify
@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Tiny:
    """The real MiniLM checkpoint (a private copy: its bytes are changed one at a time), signed."""
    d = tmp_path_factory.mktemp("real") / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    key = generate("ed25519")
    api.create(d, key=key, options=Options(use_cache=False))
    files = {p.relative_to(d).as_posix(): b"" for p in sorted(d.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    assert "model.safetensors" in files and len(files) >= 10
    return Tiny(d, (d / "manifest.json").read_bytes(), key, files)


@st.composite
def real_offset(draw: st.DrawFn, t: Tiny) -> tuple[str, int]:
    """A file of the real checkpoint and a byte of it: the weights' 8-byte length, JSON
    header and tensor data (its first and last bytes among them), or any side file."""
    rel = draw(st.sampled_from(sorted(t.files)), label="file")
    size = (t.dir / rel).stat().st_size
    if rel != "model.safetensors":
        return rel, draw(st.integers(0, size - 1), label="offset")
    with open(t.dir / rel, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    region = draw(st.sampled_from(["length", "header", "data", "edges"]), label="region")
    lo, hi = {"length": (0, 7), "header": (8, 8 + n - 1), "data": (8 + n, size - 1), "edges": (8 + n, 8 + n)}[region]
    if region == "edges":
        return rel, draw(st.sampled_from([8 + n - 1, 8 + n, size - 1]), label="offset")
    return rel, draw(st.integers(lo, hi), label="offset")


@SLOW
@given(st.data())
def test_any_single_byte_change_to_the_real_checkpoint_fails_verify(real: Tiny, data: st.DataObject) -> None:
    """One byte of the real MiniLM checkpoint (weights' header and data, tokenizer, config
    and every other file) changed in place: verify with the trusted key fails."""
    rel, offset = data.draw(real_offset(real), label="where")
    new = data.draw(st.integers(0, 255), label="byte")
    with open(real.dir / rel, "r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        assume(new != old)
        f.seek(offset)
        f.write(bytes([new]))
    try:
        assert _verify_fails(real), f"{rel}[{offset}] = {new:#04x} still verifies"
    finally:
        with open(real.dir / rel, "r+b") as f:
            f.seek(offset)
            f.write(bytes([old]))


@SLOW
@given(st.data())
def test_any_single_byte_change_to_the_signed_manifest_fails_verify(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory,
                                                                     data: st.DataObject) -> None:
    original = tiny.manifest
    offset = data.draw(st.integers(0, len(original) - 1), label="offset")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[offset]), label="byte")
    changed = original[:offset] + bytes([new]) + original[offset + 1 :]
    try:
        same = json.loads(changed) == json.loads(original)
    except ValueError:
        same = False
    assume(not same)  # e.g. a space turned into a tab between tokens: the same document
    p = tmp_path_factory.mktemp("m") / "manifest.json"
    p.write_bytes(changed)
    assert _verify_fails(tiny, p), f"manifest[{offset}] = {new:#04x} still verifies"


def _section_paths(doc: dict[str, Any], sections: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Every key path (first items of lists only) inside the recorded sections."""
    out: list[tuple[Any, ...]] = []

    def walk(v: Any, p: tuple[Any, ...]) -> None:
        out.append(p)
        if isinstance(v, dict):
            for k, c in list(v.items())[:16]:
                walk(c, (*p, k))
        elif isinstance(v, list) and v:
            walk(v[0], (*p, 0))

    for sec in sections:
        if sec in doc["signed"]:
            walk(doc["signed"][sec], (sec,))
    return out


WRONG = st.sampled_from([None, 0, -1, 10**30, "x", "", True, 1.5, [], [1], {}, {"a": 1}, [[]], {"": None}])


def _section_validator(section: str) -> Any:
    """The independent oracle: jsonschema with the section's schema from schemas/."""
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / f"section-{section}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("section", ["weights", "tokenizer", "config", "requirements"])
@SLOW
@given(data=st.data())
def test_wrong_shapes_in_recorded_sections_are_manifest_invalid(tiny: Tiny, section: str, data: st.DataObject) -> None:
    """A recorded section is data from the manifest (unsigned, when no --key is given).
    Any edit that breaks its JSON Schema (schemas/section-*.schema.json, checked with
    jsonschema) makes the manifest ``manifest-invalid`` (exit 2), signed or not; an edit
    the schema allows gives a report or a one-line error, never a crash."""
    doc = json.loads(tiny.manifest)
    doc["signatures"] = []
    if data.draw(st.booleans(), label="stale fingerprints"):
        # Make the recorded fingerprints disagree too, so compare() goes down its "what
        # changed" paths, which read more of the recorded section.
        for sec in ("weights", "tokenizer", "config"):
            for k, v in list(doc["signed"].get(sec, {}).items()):
                if isinstance(v, str) and len(v) >= 16:
                    doc["signed"][sec][k] = v[:-4] + "0000"
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = _section_paths(doc, (section,))
        shallow = [p for p in paths if len(p) <= 2]  # the keys a compare() reads first: drawn more often
        path = data.draw(st.sampled_from(shallow) | st.sampled_from(paths), label="path")
        node: Any = doc["signed"]
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = copy.deepcopy(data.draw(WRONG, label="value"))  # never share (or nest) one sampled object
    schema_valid = _section_validator(section).is_valid(doc["signed"][section])
    signed = data.draw(st.booleans(), label="signed")
    keys = []
    if signed:  # re-signed with the trusted key: the signature passes, the shape alone must decide
        try:
            doc["signatures"] = [sign(canonical_bytes(doc["signed"]), tiny.key)]
            keys = [tiny.key.public_key()]
        except JSONError:  # 10**30 cannot be signed (nor read: see the loader's own checks)
            pass
    try:
        report = api.verify(tiny.dir, Manifest.from_document(doc), options=Options(keys=keys, use_cache=False))
    except ManifestError as e:
        if not schema_valid:
            assert e.code == "manifest-invalid", e.one_line()
        return
    assert schema_valid, f"a {section} section that breaks its schema was compared: {[f.one_line() for f in report.findings]}"


@pytest.mark.parametrize("section", ["weights", "tokenizer", "config", "requirements"])
@QUICK
@given(data=st.data())
def test_the_section_shape_check_agrees_with_jsonschema(tiny: Tiny, section: str, data: st.DataObject) -> None:
    """manifest/shapes.py (the runtime check, no jsonschema import) says what jsonschema
    says of the same edited section, on the same schema."""
    from manifest.shapes import section_problem

    value = json.loads(tiny.manifest)["signed"][section]
    holder = {section: value}
    for _ in range(data.draw(st.integers(0, 3), label="edits")):
        paths = _section_paths({"signed": holder}, (section,))
        path = data.draw(st.sampled_from(paths), label="path")
        node: Any = holder
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = copy.deepcopy(data.draw(WRONG | st.sampled_from([2, "F16", "BF17", "a" * 64, "sha256:" + "0" * 64, [0, "x", True]]),
                                                 label="value"))
    found = section_problem(section, holder[section])
    assert (found is None) == _section_validator(section).is_valid(holder[section]), found


def test_wrong_typed_recorded_values_named_in_the_audit_are_manifest_invalid(tiny: Tiny) -> None:
    """The edits that used to verify as PASS, signed with the trusted key."""
    for section, path, value in [("requirements", ("requires", 0, "requirement"), []), ("tokenizer", ("added_count",), "x"),
                                 ("weights", ("totals", "bytes"), True), ("weights", ("files", 0, "header_len"), "1"),
                                 ("config", ("architectures",), "BertModel"), ("tokenizer", ("lowercase",), 1)]:
        doc = json.loads(tiny.manifest)
        node = doc["signed"][section]
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        doc["signatures"] = [sign(canonical_bytes(doc["signed"]), tiny.key)]
        with pytest.raises(ManifestError) as e:
            api.verify(tiny.dir, Manifest.from_document(doc), options=Options(keys=[tiny.key.public_key()], use_cache=False))
        assert e.value.code == "manifest-invalid" and section in str(e.value), (section, path, e.value.one_line())


def test_tokenizer_compare_survives_a_wrong_special_token_id(tiny: Tiny) -> None:
    """A stale fingerprint and a special token id of null: a one-line manifest-invalid, not a crash."""
    doc = json.loads(tiny.manifest)
    doc["signatures"] = []
    tok = doc["signed"]["tokenizer"]
    tok["fingerprint"] = tok["fingerprint"][:-4] + "0000"
    tok["special"] = {name: None for name in tok.get("special") or {"[CLS]": 0}}
    try:
        api.verify(tiny.dir, Manifest.from_document(doc), options=Options(integrity_only=True, use_cache=False))
    except ManifestError as e:
        assert e.code == "manifest-invalid"
    else:
        pytest.fail("a malformed tokenizer section passed")


def test_byte_changes_that_matter_most_fail_verify(tiny: Tiny, tmp_path: Path) -> None:
    """The changes a random search could miss, made on purpose: the last base64
    character of the signature (padding bits), the signature's alg, one digest nibble."""
    doc = json.loads(tiny.manifest)
    sig = doc["signatures"][0]["sig"]
    variants = []
    last = sig.rstrip("=")
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/":
        if c != last[-1]:
            variants.append(tiny.manifest.replace(sig.encode(), (last[:-1] + c + sig[len(last):]).encode()))
    variants.append(tiny.manifest.replace(b'"ed25519"', b'"ecdsa-p256-sha256"'))
    entry = doc["signed"]["files"]["vocab.txt"]["sha256"]
    variants.append(tiny.manifest.replace(entry.encode(), (entry[:-1] + ("0" if entry[-1] != "0" else "1")).encode()))
    for i, v in enumerate(variants):
        assert v != tiny.manifest
        p = tmp_path / f"v{i}.json"
        p.write_bytes(v)
        assert _verify_fails(tiny, p), f"variant {i} still verifies"


def test_fuzz_script_runs_and_reports(tmp_path: Path) -> None:
    """The long fuzzer (scripts/fuzz.py) stays runnable: a short hypothesis-engine run of
    both targets writes its summary and finds nothing."""
    import subprocess
    import sys

    out = tmp_path / "fuzz.json"
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, str(root / "scripts" / "fuzz.py"), "--engine", "hypothesis", "--runs", "100", "--seconds", "60",
                        "--workdir", str(tmp_path / "w"), "--out", str(out)], capture_output=True, text=True, timeout=300, check=False,
                       cwd=tmp_path)  # hypothesis writes its caches into .hypothesis/ of the working directory
    assert p.returncode == 0, p.stdout + p.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["target"] for r in results] == ["header", "manifest"]
    assert all(r["inputs"] >= 100 and r["crashes"] == [] for r in results), results
