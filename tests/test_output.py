"""Output a person can act on: one-line usage errors, a fix on every finding, root
causes first, repeats grouped, and a report that says what it skipped."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, says",
    [
        (["check", "DIR", "--bogus"], "No such option '--bogus'"),
        (["check"], "Missing argument 'DIR'"),
        (["check", "DIR", "--format", "xml"], "Invalid value for '--format'"),
        (["verify", "DIR", "--load", "half"], "Invalid value for '--load'"),
        (["create", "DIR", "-o"], "Option '-o' requires an argument"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["verify", "DIR", "--memory-limit", "lots"], "cannot read size 'lots'"),
    ],
    ids=["unknown-option", "missing-argument", "bad-choice", "bad-load", "option-without-value", "unknown-command", "bad-size"],
)
def test_usage_errors_are_one_line_exit_2(cli, minilm, args, says):
    r = cli(*[str(minilm) if a == "DIR" else a for a in args])
    assert r.code == 2, r
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error[usage]: ") and says in lines[0], r.err


def test_help_and_version_still_print(cli):
    r = cli("check", "--help")
    assert r.code == 0 and "Usage:" in r.out and "--load" in r.out
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("manifest, version ")
    r = cli()  # no arguments at all: the help text, as a usage error
    assert r.code == 2 and "Commands:" in r.err


# ----------------------------------------------------------------------------- every finding carries a fix
def test_every_registered_code_has_a_default_fix():
    from manifest.findings import Finding, all_codes

    for code, info in all_codes().items():
        assert info.hint.strip(), code
        assert Finding.of(code, "x").hint == info.hint  # the default applies when a check gives none
    assert Finding.of("missing-file", "x", hint="a better one").hint == "a better one"


def _no_hintless(report):
    hintless = [f.one_line() for f in report.findings if not (f.hint and f.hint.strip())]
    assert hintless == []
    return set(report.codes())


def test_findings_in_many_scenarios_all_carry_a_fix(minilm, keypair, tmp_path):
    """Break the real checkpoint in many ways, with and without a manifest: every finding
    has a hint, and the codes named in the issue are among them."""
    import shlex
    import shutil
    import subprocess
    import sys

    from manifest import api
    from manifest.signing import load_private_key, load_public_key

    seen: set[str] = set()
    priv, pub = keypair
    api.create(minilm, key=load_private_key(priv), model_id="org/minilm", revision="v1")
    clean = tmp_path / "clean"
    shutil.copytree(minilm, clean)
    # 1. Files moved on from the manifest: removed, added, resized, edited in place.
    (minilm / "1_Pooling" / "config.json").unlink()
    (minilm / "notes.txt").write_text("added\n")
    with open(minilm / "README.md", "a") as f:
        f.write("\nedited\n")
    data = bytearray((minilm / "data_config.json").read_bytes())
    data[100] ^= 0x01
    (minilm / "data_config.json").write_bytes(bytes(data))
    r = api.verify(minilm, keys=[load_public_key(pub)], exhaustive=True)
    seen |= _no_hintless(r)
    assert {"missing-file", "extra-file", "size-mismatch", "digest-mismatch"} <= set(r.codes())
    # The change may be intended: the fix is the exact command that records it.
    cmd = f"manifest create {minilm} -o {minilm / 'manifest.json'} --key PRIVATE_KEY.pem --model-id org/minilm --revision v1"
    for f in r.findings:
        assert f.hint.endswith(cmd), f.hint
    argv = shlex.split(cmd.replace("PRIVATE_KEY.pem", str(priv)))
    p = subprocess.run([sys.executable, "-m", "manifest", *argv[1:], "-q"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert api.verify(minilm, keys=[load_public_key(pub)]).ok  # the command did record the change
    # 2. Claims and trust.
    r = api.verify(clean, expect_model="org/other", expect_revision="v2", integrity_only=True)
    seen |= _no_hintless(r)
    other = tmp_path / "other.pub.pem"
    from manifest.signing import generate, write_keypair

    write_keypair(generate("ed25519"), tmp_path / "other.pem", other)
    seen |= _no_hintless(api.verify(clean, keys=[load_public_key(other)]))
    # 3. No manifest: a truncated weight file, a broken config, a pickle beside them.
    broken = tmp_path / "broken"
    shutil.copytree(clean, broken)
    (broken / "manifest.json").unlink()
    with open(broken / "model.safetensors", "r+b") as f:
        f.truncate(1_000_000)
    (broken / "config.json").write_text("{not json")
    (broken / "training_args.bin").write_bytes(b"\x80\x04K\x01.")
    r = api.check(broken)
    seen |= _no_hintless(r)
    # 4. The damage is not a change to record: no refresh command is offered for it.
    r = api.verify(clean, integrity_only=True)
    assert r.ok
    shutil.copy(broken / "model.safetensors", clean / "model.safetensors")
    r = api.verify(clean, integrity_only=True)
    seen |= _no_hintless(r)
    assert "truncated" in r.codes() and not any("manifest create" in f.hint for f in r.findings)
    assert {"missing-file", "extra-file", "size-mismatch", "digest-mismatch", "model-mismatch", "revision-mismatch",
            "untrusted-key", "truncated", "side-file-invalid"} <= seen


def test_hub_cache_findings_name_the_download_command(tmp_path, minilm_src, monkeypatch):
    from test_hfcache import COMMIT, REPO, build_cache

    from manifest.api import check

    cache = build_cache(minilm_src, tmp_path / "hf")
    for k, v in cache.env.items():
        monkeypatch.setenv(k, v)
    cache.blob_of["vocab.txt"].unlink()  # a link whose blob is gone: incomplete-download
    blob = cache.blob_of["tokenizer.json"]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b" ")  # same size, other content: hub-record-mismatch
    r = check(REPO)
    assert {"incomplete-download", "hub-record-mismatch"} <= set(r.codes())
    _no_hintless(r)
    by_path = {f.path: f.hint for f in r.findings}
    assert by_path["vocab.txt"].endswith(f"hf download {REPO} vocab.txt --revision {COMMIT}")
    assert by_path["tokenizer.json"].endswith(f"hf download {REPO} tokenizer.json --revision {COMMIT} --force-download")


# ----------------------------------------------------------------------------- what was skipped
def test_skipped_digests_are_named_with_the_error_count(minilm, cli):
    assert cli("create", minilm, "-q").code == 0
    (minilm / "vocab.txt").unlink()
    (minilm / "README.md").write_text("changed\n")
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 1
    assert "  not checked: digests: skipped after 2 errors; --exhaustive hashes anyway" in r.out.splitlines(), r.out
    r = cli("verify", minilm, "--no-signature", "--exhaustive", "--json")
    doc = __import__("json").loads(r.out)
    assert "digests" in doc["checked"] and "digests" not in {n["check"] for n in doc["not_checked"]}


# ----------------------------------------------------------------------------- root cause first
def write_cased_wordpiece(src, dst, *, lowercase=False, pad_last=False, vocab_size=2000):
    """Train a real cased WordPiece (the ``tokenizers`` library) on the checkpoint's own
    text files and save it over ``dst`` as a BERT tokenizer is saved: tokenizer.json,
    vocab.txt and tokenizer_config.json. ``lowercase`` switches lower-casing on over the
    cased vocabulary; ``pad_last`` gives [PAD] the last special id instead of 0."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    text = [ln for f in ("README.md", "data_config.json") for ln in (src / f).read_text().splitlines() if ln.strip()]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]"] if pad_last else ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
    tok.save(str(dst / "tokenizer.json"))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (dst / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab))
    (dst / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "strip_accents": False, "model_max_length": 512,
        "unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}, indent=2))
    return tok.get_vocab_size()


def test_replaced_tokenizer_leads_with_the_diagnosis(minilm, minilm_src, cli):
    """A real other tokenizer (a cased WordPiece) saved over the real MiniLM: the first line
    is the diagnosis, every other finding is listed under it as its evidence."""
    import json

    assert cli("create", minilm, "-q").code == 0
    size = write_cased_wordpiece(minilm_src, minilm)
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 1
    lines = r.out.splitlines()
    assert lines[0] == (f"error[tokenizer-mismatch]: tokenizer.json: the tokenizer does not belong to this model: tokenizer.json is "
                        f"a cased WordPiece of {size} tokens, the model was fingerprinted with a lower-casing WordPiece of 30522 tokens, "
                        "and 4 special tokens moved to other ids"), r.out
    assert lines[1].startswith("  fix: restore every tokenizer file")
    # A vocabulary smaller than one fingerprint block is not called a prefix of the old one.
    assert f"vocabulary shrank from 30522 to {size} tokens" in r.out and "tokens removed" not in r.out, r.out
    doc = json.loads(cli("verify", minilm, "--no-signature", "--json").out)
    root, *evidence = doc["findings"]
    assert root["id"] == "tokenizer-replaced" and root["items"] == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert len(evidence) >= 8 and all(f["caused_by"] == "tokenizer-replaced" for f in evidence)
    assert {("size-mismatch", p) for p in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")} <= {(f["code"], f.get("path")) for f in evidence}
    assert all(f.get("hint") for f in doc["findings"])  # evidence keeps its own fix in JSON
    assert "manifest create" not in root["hint"]  # another tokenizer is no change to record
    # Replayed from the section cache (no file changed), the diagnosis and its links are the same.
    env = {"MANIFEST_CACHE_WINDOW_MS": "0"}
    first = cli("verify", minilm, "--no-signature", "--json", env=env).out
    again = json.loads(cli("verify", minilm, "--no-signature", "--json", env=env).out)
    assert "tokenizer" in again["facts"].get("sections_from_cache", []), first
    assert [(f["code"], f.get("id"), f.get("caused_by")) for f in again["findings"]] == \
        [(f["code"], f.get("id"), f.get("caused_by")) for f in doc["findings"]]


def test_contradicted_tokenizer_without_manifest_leads_with_the_diagnosis(minilm, minilm_src, cli):
    """check (no manifest): a cased vocabulary behind lower-casing, with [PAD] at another id
    than config.pad_token_id. Whatever else check finds about it comes under the diagnosis."""
    import json

    write_cased_wordpiece(minilm_src, minilm, lowercase=True, pad_last=True)
    r = cli("check", minilm)
    assert r.code == 1
    assert r.out.splitlines()[0].startswith("error[tokenizer-mismatch]: tokenizer.json: the tokenizer does not belong to this model: "), r.out
    doc = json.loads(cli("check", minilm, "--json").out)
    root, *rest = doc["findings"]
    assert root["id"] == "tokenizer-replaced"
    on_tokenizer = [f for f in rest if f.get("path") in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")]
    assert len(on_tokenizer) >= 2 and all(f.get("caused_by") == "tokenizer-replaced" for f in on_tokenizer)
    assert any("lower-casing is on" in f["message"] for f in on_tokenizer)


def test_an_extended_tokenizer_is_not_called_foreign(tokcls_build, tmp_path, cli):
    """The real stale_vocab checkpoint (3 tokens added, embeddings resized) against a
    manifest of the clean one: tokens added, no 'does not belong' diagnosis."""
    import shutil

    from conftest import copy_checkpoint

    d = copy_checkpoint(tokcls_build / "clean", tmp_path / "m")
    assert cli("create", d, "-q").code == 0
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "added_tokens.json"):
        if (tokcls_build / "stale_vocab" / name).exists():
            shutil.copy(tokcls_build / "stale_vocab" / name, d / name)
    r = cli("verify", d, "--no-signature")
    assert r.code == 1 and "tokens added" in r.out and "does not belong" not in r.out, r.out


# ----------------------------------------------------------------------------- repeats grouped
def test_a_dtype_cast_of_every_tensor_is_one_finding(minilm, cli):
    """The real weights cast to float16 and saved again: one finding for all the tensors
    (JSON lists them all), with the file's size change under it as its evidence."""
    import json

    import numpy as np
    from safetensors.numpy import load_file, save_file

    assert cli("create", minilm, "-q").code == 0
    tensors = load_file(str(minilm / "model.safetensors"))
    floats = [n for n, a in tensors.items() if a.dtype == np.float32]
    save_file({n: a.astype(np.float16) if a.dtype == np.float32 else a for n, a in tensors.items()}, str(minilm / "model.safetensors"))
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 1
    lines = r.out.splitlines()
    assert lines[0].startswith(f"error[tensor-mismatch]: model.safetensors: all {len(floats)} F32 tensors changed dtype: F32 -> F16 ('"), r.out
    assert "more" not in r.out and r.out.count("changed dtype") == 1
    doc = json.loads(cli("verify", minilm, "--no-signature", "--json").out)
    cast, size = doc["findings"][:2]
    assert sorted(cast["items"]) == sorted(floats) and cast["count"] == len(floats)
    assert cast["expected"] == "F32" and cast["actual"] == "F16"
    assert size["code"] == "size-mismatch" and size["caused_by"] == cast["id"]
    assert "manifest create" in cast["hint"]  # a cast may be intended: the fix records it


def test_many_missing_files_are_one_finding(minilm, cli):
    import json

    assert cli("create", minilm, "-q").code == 0
    gone = ["1_Pooling/config.json", "README.md", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"]
    for g in gone:
        (minilm / g).unlink()
    doc = json.loads(cli("verify", minilm, "--no-signature", "--json").out)
    missing = [f for f in doc["findings"] if f["code"] == "missing-file"]
    assert len(missing) == 1 and sorted(missing[0]["items"]) == sorted(gone) and missing[0]["count"] == 5
    assert missing[0]["message"].startswith("5 files listed in the manifest are not in the directory: ")
    ann = [ln for ln in cli("verify", minilm, "--no-signature", "--format", "github").out.splitlines() if ln.startswith("::error ")]
    assert sorted(ln.split("file=")[1].split(",")[0].rsplit("/minilm/", 1)[1] for ln in ann if "missing-file" in ln) == sorted(gone)
    fast = json.loads(cli("verify", minilm, "--no-signature", "--json", "--fail-fast").out)
    assert [f["code"] for f in fast["findings"]] == ["missing-file"] and "items" not in fast["findings"][0]


def test_few_repeats_stay_separate():
    from manifest.findings import GROUP_MIN, Finding, group_repeats

    fs = [Finding.of("missing-file", "gone", path=f"f{i}") for i in range(GROUP_MIN - 1)]
    assert group_repeats(fs, lambda f: f.code, lambda m, items: "grouped") == fs
    fs.append(Finding.of("missing-file", "gone", path="last"))
    [g] = group_repeats(fs, lambda f: f.code, lambda m, items: f"{len(items)} gone")
    assert g.message == f"{GROUP_MIN} gone" and g.items == tuple(f.path for f in fs) and g.path is None


# ----------------------------------------------------------------------------- memory: an estimate of the real peak
@pytest.mark.parametrize("which", ["minilm", "tokcls"])
def test_memory_estimate_is_within_tolerance_of_a_real_full_load(which, request, cli):
    """--memory-limit / --check-memory compare the estimated peak of a load (manifest/memory.py,
    calibrated by scripts/calibrate_memory.py) with the limit: check it against the peak RSS
    the real --load full measures on the bundled MiniLM and the fine-tuned tokcls."""
    import importlib.util
    import json

    from manifest.memory import TOLERANCE

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("needs torch and transformers")
    d = request.getfixturevalue(which)
    r = cli("check", d, "--load", "full", "--json", "--no-cache")
    doc = json.loads(r.out)
    assert doc["exit_status"] == 0, doc["findings"]
    peak = doc["stats"]["load:full_peak_rss_bytes"]
    est = doc["facts"]["memory_estimate"]["bytes"]
    assert abs(est - peak) <= TOLERANCE * peak, (est, peak)
    assert est > 4 * doc["facts"]["weights"]["load_bytes"]  # the weights alone are a fifth of it


def test_a_half_finished_snapshot_is_one_finding(tmp_path, minilm_src, monkeypatch):
    from test_hfcache import COMMIT, REPO, build_cache

    from manifest.api import check

    cache = build_cache(minilm_src, tmp_path / "hf")
    for k, v in cache.env.items():
        monkeypatch.setenv(k, v)
    gone = ["1_Pooling/config.json", "README.md", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"]
    for g in gone:
        (cache.snapshot / g).unlink()  # the Hub lists them; the snapshot lacks them
    r = check(REPO)
    [f] = [f for f in r.findings if f.code == "incomplete-download"]
    assert sorted(f.items) == sorted(gone) and f.message.startswith(f"5 files listed by the Hub for commit {COMMIT[:12]} are missing")
    assert f.hint == f"download them again: hf download {REPO} --revision {COMMIT}"


def test_load_peak_is_the_loaders_own_not_its_callers(minilm_src, tmp_path):
    """A caller that already holds 900 MiB runs --load full: the peak reported is the
    loader's (ru_maxrss alone would start at the caller's 900 MiB)."""
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("needs torch and transformers")
    code = ("import json, sys\nx = bytearray(900 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\n"
            "from manifest import api\nr = api.check(sys.argv[1], load='full', use_cache=False)\n"
            "print(json.dumps([r.stats['load:full_peak_rss_bytes'], r.facts['memory_estimate']['bytes']]))")
    p = subprocess.run([sys.executable, "-c", code, str(minilm_src)], capture_output=True, text=True, check=False, cwd=tmp_path,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"), timeout=600)
    peak, est = json.loads(p.stdout.strip().splitlines()[-1])
    assert peak < 700 << 20 and abs(est - peak) <= 0.15 * peak, (peak, est)
