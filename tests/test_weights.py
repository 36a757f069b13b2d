"""The weights section end to end: tensor table in the manifest, header diagnoses,
shard indexes, LFS pointers, pickle imports and memory, through the API and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from safetensors_corpus import HTML_PAGE, LFS_OID, LFS_POINTER

from manifest import api
from manifest.findings import Severity, code_info
from manifest.formats.lfs import LfsPointer, parse_pointer
from manifest.formats.pickle_scan import PickleScanError, scan_file
from manifest.inventory import discover
from manifest.options import Options
from manifest.report import Report
from manifest.sections.weights import WeightsSection, tensor_table

ROOT = Path(__file__).resolve().parent.parent
MODEL = "model.safetensors"


def codes(report: Report, group: str | None = "weights") -> list[str]:
    return [f.code for f in report.findings if group is None or code_info(f.code).group == group]


def only(report: Report, code: str) -> Any:
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, [f.one_line() for f in report.findings]
    return found[0]


def rewrite_header(path: Path, edit: Any) -> None:
    """Edit a safetensors header in place, keeping its byte length (so the file size
    stays the same and only the header can reveal the change)."""
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        doc = json.loads(f.read(n))
        edit(doc)
        new = json.dumps(doc, separators=(",", ":")).encode()
        assert len(new) <= n, "edit made the header longer"
        f.seek(8)
        f.write(new + b" " * (n - len(new)))


def run_json(cli: Any, *args: str) -> tuple[int, dict[str, Any]]:
    r = cli(*args, "--json", "-q")
    assert r.out, r.err
    return r.code, json.loads(r.out)


def json_codes(doc: dict[str, Any]) -> list[str]:
    return [f["code"] for f in doc["findings"]]


# ----------------------------------------------------------------------------- interface
def test_tensor_table_merges_headers_and_is_memoized(minilm_src: Path) -> None:
    art = discover(minilm_src)
    table = tensor_table(art)
    with safe_open(str(minilm_src / MODEL), framework="np") as f:
        keys = set(f.keys())
        shape = tuple(f.get_slice("embeddings.word_embeddings.weight").get_shape())
    assert set(table) == keys
    assert table["embeddings.word_embeddings.weight"].shape == shape == (30522, 384)
    assert table["embeddings.word_embeddings.weight"].dtype == "F32"
    assert tensor_table(art) is table


def test_record_has_every_tensor_a_header_digest_and_totals(minilm_src: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    rec = WeightsSection().record(discover(minilm_src), Options())
    assert rec is not None
    schema = json.loads((ROOT / "schemas" / "section-weights.schema.json").read_text())
    jsonschema.validate(rec, schema)
    assert [e["path"] for e in rec["files"]] == [MODEL]
    entry = rec["files"][0]
    raw = (minilm_src / MODEL).read_bytes()[:8 + entry["header_len"] + 8]
    (n,) = struct.unpack("<Q", raw[:8])
    assert entry["header_sha256"] == hashlib.sha256(raw[8 : 8 + n]).hexdigest()
    with safe_open(str(minilm_src / MODEL), framework="np") as f:
        for name in f.keys():
            sl = f.get_slice(name)
            assert entry["tensors"][name] == {"dtype": sl.get_dtype(), "shape": list(sl.get_shape())}
        count = len(list(f.keys()))
    assert len(entry["tensors"]) == count == rec["totals"]["tensors"]
    params = sum(int(np.prod(t["shape"])) for t in entry["tensors"].values())
    assert rec["totals"]["parameters"] == params == entry["parameters"]
    assert sum(rec["totals"]["bytes_by_dtype"].values()) == rec["totals"]["bytes"] == (minilm_src / MODEL).stat().st_size - 8 - n


def test_manifest_shows_one_tensor_per_line(minilm: Path) -> None:
    api.create(minilm)
    lines = (minilm / "manifest.json").read_text().splitlines()
    hits = [ln for ln in lines if '"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [30522, 384]}' in ln]
    assert len(hits) == 1


# ----------------------------------------------------------------------------- verify
def test_truncated_download_is_rejected_without_hashing(minilm: Path, cli: Any) -> None:
    api.create(minilm)
    size = (minilm / MODEL).stat().st_size
    os.truncate(minilm / MODEL, size - 1000)
    code, doc = run_json(cli, "verify", "--no-signature", str(minilm))
    assert code == 1
    assert {"truncated", "size-mismatch"} <= set(json_codes(doc))
    trunc = next(f for f in doc["findings"] if f["code"] == "truncated")
    assert trunc["expected"] == size and trunc["actual"] == size - 1000 and trunc["path"] == MODEL
    assert "digests" in {n["check"] for n in doc["not_checked"]}
    assert "bytes_hashed" not in doc["stats"]


def test_transposed_shape_with_the_same_byte_count_is_caught(minilm: Path, cli: Any) -> None:
    api.create(minilm)
    name = "embeddings.token_type_embeddings.weight"
    rewrite_header(minilm / MODEL, lambda d: d[name].__setitem__("shape", d[name]["shape"][::-1]))
    code, doc = run_json(cli, "verify", "--no-signature", str(minilm))
    assert code == 1
    # same size; only the header tells (and the config's type_vocab_size no longer fits the rows)
    assert sorted(json_codes(doc)) == ["shape-config-mismatch", "tensor-mismatch"]
    f = next(x for x in doc["findings"] if x["code"] == "tensor-mismatch")
    assert f["expected"] == [2, 384] and f["actual"] == [384, 2] and "transposed" in f["message"]


def test_renamed_tensor_and_changed_dtype_are_caught(minilm: Path) -> None:
    api.create(minilm)

    def edit(d: dict[str, Any]) -> None:
        d["pooler.dense.bia2"] = d.pop("pooler.dense.bias")
        d["embeddings.LayerNorm.bias"]["dtype"] = "I32"

    rewrite_header(minilm / MODEL, edit)
    report = api.verify(minilm, integrity_only=True)
    msgs = [f.message for f in report.findings if f.code == "tensor-mismatch"]
    assert any("'pooler.dense.bias' was renamed to 'pooler.dense.bia2'" in m for m in msgs), msgs
    assert any("'embeddings.LayerNorm.bias' changed dtype: F32 -> I32" in m for m in msgs), msgs
    assert not report


def test_unchanged_checkpoint_verifies_and_reports_load_bytes(minilm: Path) -> None:
    api.create(minilm)
    report = api.verify(minilm, integrity_only=True)
    assert report, [f.one_line() for f in report.findings]
    assert "tensor-table" in report.checked and "safetensors-headers" in report.checked
    w = report.facts["weights"]
    assert w["bytes_by_dtype"] == {"F32": 90852864, "I64": 4096} and w["load_bytes"] == 90856960


def test_malformed_weights_section_is_an_input_error(minilm: Path, cli: Any) -> None:
    api.create(minilm)
    doc = json.loads((minilm / "manifest.json").read_text())
    doc["signed"]["weights"]["files"][0]["tensors"] = "nope"
    (minilm / "manifest.json").write_text(json.dumps(doc))
    r = cli("verify", "--no-signature", str(minilm), "-q")
    assert r.code == 2 and r.err.count("\n") == 1 and "manifest-invalid" in r.err and "Traceback" not in r.err


def test_create_refuses_to_fingerprint_a_broken_weight_file(minilm: Path, cli: Any) -> None:
    os.truncate(minilm / MODEL, (minilm / MODEL).stat().st_size - 10)
    r = cli("create", str(minilm), "-q")
    assert r.code == 2 and "error[truncated]" in r.err and "Traceback" not in r.err
    assert not (minilm / "manifest.json").exists()


# ----------------------------------------------------------------------------- check
def test_lfs_pointer_in_place_of_weights(minilm: Path, cli: Any) -> None:
    api.create(minilm)
    (minilm / MODEL).write_bytes(LFS_POINTER)
    code, doc = run_json(cli, "check", str(minilm))
    assert code == 1
    ours = [f for f in doc["findings"] if f.get("path") == MODEL]
    assert [f["code"] for f in ours] == ["lfs-pointer"]  # named once, not also as a bad header
    assert ours[0]["expected"] == {"oid": f"sha256:{LFS_OID}", "size": 90868376}
    assert LFS_OID in ours[0]["message"]
    code, doc = run_json(cli, "verify", "--no-signature", str(minilm))
    assert code == 1 and {"lfs-pointer", "size-mismatch"} <= set(json_codes(doc))
    assert "digests" in {n["check"] for n in doc["not_checked"]}  # rejected without hashing


def test_lfs_pointer_is_found_in_any_file(minilm: Path) -> None:
    (minilm / "vocab.txt").write_bytes(LFS_POINTER)
    report = api.check(minilm)
    assert any(f.code == "lfs-pointer" and f.path == "vocab.txt" for f in report.findings)


def test_html_page_instead_of_weights(minilm: Path, cli: Any) -> None:
    (minilm / MODEL).write_bytes(HTML_PAGE)
    code, doc = run_json(cli, "check", str(minilm))
    assert code == 1
    f = next(f for f in doc["findings"] if f.get("path") == MODEL)
    assert f["code"] == "header-invalid" and f["message"] == "not a safetensors file (looks like HTML)"


def test_header_rule_is_named_with_the_tensor(minilm: Path) -> None:
    rewrite_header(minilm / MODEL, lambda d: d["pooler.dense.bias"].__setitem__("dtype", "F16"))
    f = only(api.check(minilm), "header-invalid")
    assert "'pooler.dense.bias'" in f.message and "F16" in f.message and f.path == MODEL


# ----------------------------------------------------------------------------- shards
@pytest.fixture(scope="session")
def sharded_src(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """The real MiniLM checkpoint re-saved as two shards with an index, as save_pretrained does."""
    dst = tmp_path_factory.mktemp("sharded") / "minilm"
    shutil.copytree(minilm_src, dst, ignore=shutil.ignore_patterns("__pycache__", MODEL))
    tensors = load_file(str(minilm_src / MODEL))
    names = sorted(tensors)
    half = len(names) // 2
    weight_map, total = {}, 0
    for i, part in enumerate((names[:half], names[half:]), 1):
        shard = f"model-{i:05d}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(dst / shard), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = shard
            total += tensors[n].nbytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return dst


@pytest.fixture
def sharded(tmp_path: Path, sharded_src: Path) -> Path:
    dst = tmp_path / "sharded"
    shutil.copytree(sharded_src, dst)
    return dst


def edit_index(d: Path, fn: Any) -> None:
    p = d / "model.safetensors.index.json"
    doc = json.loads(p.read_text())
    fn(doc)
    p.write_text(json.dumps(doc))


def test_consistent_sharded_checkpoint_passes(sharded: Path) -> None:
    report = api.check(sharded)
    assert codes(report) == [], [f.one_line() for f in report.findings]
    assert "shard-index" in report.checked
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert report.facts["weights"]["load_bytes"] == index["metadata"]["total_size"]


def test_stale_index_pointing_at_the_wrong_shard(sharded: Path, cli: Any) -> None:
    def fn(doc: dict[str, Any]) -> None:
        doc["weight_map"]["pooler.dense.bias"] = "model-00001-of-00002.safetensors"

    edit_index(sharded, fn)
    code, doc = run_json(cli, "check", str(sharded))
    # transformers reads every listed shard whole and loads the same model (the diagnosis
    # corpus measures it): a warning, which names the stale entry
    assert code == 0
    found = [f for f in doc["findings"] if f["code"] == "index-mismatch"]
    assert [f["severity"] for f in found] == ["warning"]
    assert "'pooler.dense.bias'" in found[0]["message"] and "model-00002-of-00002.safetensors" in found[0]["message"]
    assert "loaders that look tensors up in weight_map" in found[0]["hint"]


def test_missing_shard(sharded: Path, cli: Any) -> None:
    api.create(sharded)
    (sharded / "model-00002-of-00002.safetensors").unlink()
    code, doc = run_json(cli, "check", str(sharded))
    assert code == 1
    assert any(f["code"] == "index-mismatch" and "missing" in f["message"] for f in doc["findings"])
    code, doc = run_json(cli, "verify", "--no-signature", str(sharded))
    assert code == 1 and {"missing-file", "index-mismatch"} <= set(json_codes(doc))


def test_index_missing_a_tensor_and_listing_a_ghost(sharded: Path) -> None:
    def fn(doc: dict[str, Any]) -> None:
        doc["weight_map"]["ghost.weight"] = doc["weight_map"].pop("pooler.dense.weight")

    edit_index(sharded, fn)
    rep = api.check(sharded)
    msgs = [f.message for f in rep.findings if f.code == "index-mismatch"]
    assert any("'pooler.dense.weight'" in m and "not in weight_map" in m for m in msgs), msgs
    assert any("'ghost.weight'" in m and "no shard holds it" in m for m in msgs), msgs
    assert rep.ok  # warnings: transformers still loads every tensor of the listed shards


def test_wrong_total_size(sharded: Path) -> None:
    edit_index(sharded, lambda d: d["metadata"].__setitem__("total_size", d["metadata"]["total_size"] + 4))
    f = only(api.check(sharded), "index-mismatch")
    assert "total_size" in f.message and f.actual == f.expected - 4 and f.severity.value == "warning"


def test_tensor_in_two_shards(sharded: Path) -> None:
    shard1 = sharded / "model-00001-of-00002.safetensors"
    tensors = load_file(str(shard1))
    stolen = sorted(load_file(str(sharded / "model-00002-of-00002.safetensors")).items())[0]
    tensors[stolen[0]] = stolen[1]
    save_file(tensors, str(shard1))
    msgs = [f.message for f in api.check(sharded).findings if f.code == "index-mismatch"]
    assert any(f"tensor {stolen[0]!r} is in two shards" in m for m in msgs), msgs


def test_unlisted_sibling_shard(sharded: Path) -> None:
    save_file({"extra.weight": np.zeros(4, np.float32)}, str(sharded / "model-00003-of-00002.safetensors"))
    rep = api.check(sharded)
    msgs = [f.message for f in rep.errors if f.code == "index-mismatch"]
    assert any("'extra.weight'" in m and "unlisted" in m for m in msgs), msgs  # never opened: an error


def test_malformed_index(sharded: Path) -> None:
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {"a": "x.safetensors", "a": "x.safetensors"}}')
    f = only(api.check(sharded), "index-mismatch")
    assert "duplicate key" in f.message


def test_index_with_escaping_shard_name(sharded: Path) -> None:
    edit_index(sharded, lambda d: d["weight_map"].__setitem__("pooler.dense.bias", "../outside.safetensors"))
    f = only(api.check(sharded), "index-mismatch")
    assert "not a plain relative file name" in f.message


# ----------------------------------------------------------------------------- pickles
class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def test_pickle_weights_name_their_imports(minilm: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2, 2)}, minilm / "pytorch_model.bin")
    torch.save({"w": torch.zeros(2, 2)}, minilm / "legacy.pt", _use_new_zipfile_serialization=False)
    report = api.check(minilm)
    found = {f.path: f for f in report.findings if f.code == "pickle-file"}
    assert set(found) == {"pytorch_model.bin", "legacy.pt"}
    for f in found.values():
        assert f.severity is Severity.WARNING
        assert "torch._utils._rebuild_tensor_v2" in f.actual and "torch._utils._rebuild_tensor_v2" in f.message
    assert report  # a warning does not fail the check


def test_malicious_pickle_is_an_error_naming_the_import(minilm: Path, cli: Any) -> None:
    (minilm / "model.ckpt").write_bytes(pickle.dumps({"state_dict": _Evil()}))
    code, doc = run_json(cli, "check", str(minilm))
    assert code == 1
    f = next(f for f in doc["findings"] if f["code"] == "pickle-file")
    assert f["severity"] == "error" and f"{os.system.__module__}.system" in f["message"]


@pytest.fixture(scope="module")
def pickles() -> list[bytes]:
    """Real pickle-based weight files: a torch zip, a legacy torch file, plain pickles of protocols 0-5."""
    torch = pytest.importorskip("torch")
    out = []
    for new_zip in (True, False):
        buf = io.BytesIO()
        torch.save({"w": torch.zeros(3), "b": torch.ones(2, dtype=torch.bfloat16)}, buf, _use_new_zipfile_serialization=new_zip)
        out.append(buf.getvalue())
    out += [pickle.dumps({"a": [1, 2.0, "x"], "evil": _Evil()}, protocol=p) for p in range(6)]
    return out


def test_scanner_sees_every_format(pickles: list[bytes]) -> None:
    scans = [scan_file(io.BytesIO(b), len(b)) for b in pickles]
    assert [s.kind for s in scans[:2]] == ["torch-zip", "pickle"]
    for s in scans[:2]:
        assert "torch._utils._rebuild_tensor_v2" in s.imports and s.dangerous == ()
    for s in scans[2:]:
        assert s.dangerous == (f"{os.system.__module__}.system",), s.imports


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scanner_on_damaged_pickles_gives_a_scan_or_a_clean_error(pickles: list[bytes], data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(pickles)))
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        scan = scan_file(io.BytesIO(bytes(blob)), len(blob))
    except PickleScanError as e:
        assert str(e)
    else:
        assert all(isinstance(i, str) for i in scan.imports)


def test_lfs_pointer_parsing() -> None:
    p = parse_pointer(LFS_POINTER)
    assert p is not None and p.oid == f"sha256:{LFS_OID}" and p.size == 90868376
    crlf = parse_pointer(LFS_POINTER.replace(b"\n", b"\r\n"))
    assert crlf is not None and crlf.size == 90868376
    assert parse_pointer(b"version https://git-lfs.github.com/spec/v1\n") == LfsPointer("https://git-lfs.github.com/spec/v1", "", None)
    assert parse_pointer(b"hello world\n") is None
    assert parse_pointer(LFS_POINTER + b"x" * 1024) is None  # pointers are under 1 KiB


def test_damaged_torch_zip_is_flagged(minilm: Path, pickles: list[bytes]) -> None:
    (minilm / "pytorch_model.bin").write_bytes(pickles[0][: len(pickles[0]) // 2])
    f = only(api.check(minilm), "pickle-file")
    assert "cannot be scanned" in f.message


def test_non_pickle_bin_is_not_flagged(minilm: Path) -> None:
    (minilm / "openvino_model.bin").write_bytes(np.arange(64, dtype=np.float32).tobytes())
    assert "pickle-file" not in codes(api.check(minilm))


def test_check_never_imports_torch_or_unpickles(minilm: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (minilm / "pytorch_model.bin").write_bytes(pickle.dumps(_EvilFile(str(marker))))
    code = (
        "import sys; from manifest import api; r = api.check(sys.argv[1]); "
        "assert 'pickle-file' in r.codes(), r.codes(); "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    p = subprocess.run([sys.executable, "-c", code, str(minilm)], check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert not marker.exists()


class _EvilFile:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


# ----------------------------------------------------------------------------- memory
def test_memory_limit_below_the_load_size(minilm: Path, cli: Any) -> None:
    code, doc = run_json(cli, "check", str(minilm), "--memory-limit", "10MB")
    assert code == 1
    f = next(f for f in doc["findings"] if f["code"] == "memory-insufficient")
    from manifest.memory import RUNTIME_BYTES, WEIGHT_FACTOR

    assert f["expected"] == 10_000_000 and f["actual"] == int(RUNTIME_BYTES + WEIGHT_FACTOR * 90856960)  # the estimated peak
    assert doc["facts"]["weights"]["bytes_by_dtype"] == {"F32": 90852864, "I64": 4096}
    est = doc["facts"]["memory_estimate"]
    assert est["weights_at_load_dtype"] == 90856960 and est["load_dtype"] == "F32" and est["bytes"] == f["actual"]


def test_memory_limit_counts_the_runtime_not_only_the_weights(minilm: Path, cli: Any) -> None:
    """200 MiB holds the 87 MiB of weights but not a load (about 450 MiB measured)."""
    code, doc = run_json(cli, "check", str(minilm), "--memory-limit", "200MiB")
    assert code == 1 and "memory-insufficient" in json_codes(doc)
    msg = next(f["message"] for f in doc["findings"] if f["code"] == "memory-insufficient")
    assert "for torch, transformers and one forward pass" in msg and "86.6 MiB of F32 weights" in msg, msg


def test_memory_estimate_follows_the_config_dtype(minilm: Path) -> None:
    """transformers loads floating tensors in config.json's dtype: float16 halves their bytes."""
    cfg = json.loads((minilm / "config.json").read_text())
    cfg["dtype"] = "float16"
    (minilm / "config.json").write_text(json.dumps(cfg))
    est = api.check(minilm).facts["memory_estimate"]
    assert est["load_dtype"] == "F16" and est["weights_at_load_dtype"] == 90852864 // 2 + 4096


def test_memory_limit_above_the_load_size_and_available_memory(minilm: Path) -> None:
    report = api.check(minilm, options=Options(memory_limit=1 << 30, check_memory=True))
    assert "memory-insufficient" not in report.codes()
    assert "memory" in report.checked
    assert report.facts["memory_available"] > 0
