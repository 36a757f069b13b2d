"""Seeded semantic failures on REAL checkpoints: each is found by ``check`` (no manifest)
and by ``verify`` (against a manifest of the clean checkpoint), with the right code and
a hint that names the fix. The checkpoints: the bundled MiniLM (BertModel) and a
BertForTokenClassification built from it with save_pretrained (tests/build_checkpoints.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import copy_checkpoint

from manifest import api
from manifest.findings import Finding, Severity
from manifest.options import Options


def edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc, indent=2))


def errors(report, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code and f.severity is Severity.ERROR]


# --------------------------------------------------------------------------- the seeds
def seed_id2label_length(d: Path, build: Path) -> None:
    def f(c):
        c["id2label"]["5"] = "B-MISC"
        c["label2id"]["B-MISC"] = 5

    edit_json(d / "config.json", f)


def seed_label2id_not_inverse(d: Path, build: Path) -> None:
    def f(c):
        c["label2id"]["B-PER"], c["label2id"]["I-PER"] = 2, 1

    edit_json(d / "config.json", f)


def seed_vocab_size_stale(d: Path, build: Path) -> None:
    """Tokens added and embeddings resized, but config.json saved before the resize."""
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / name).unlink()
        shutil.copy2(build / "stale_vocab" / name, d / name)


def seed_tokens_added_no_resize(d: Path, build: Path) -> None:
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(d / "tokenizer.json"))
    t.add_tokens(["covid19", "bnt162b2", "sars2"])
    t.save(str(d / "tokenizer.json"))


def seed_lowercase_flipped(d: Path, build: Path) -> None:
    """What AutoTokenizer.from_pretrained(d, do_lower_case=False).save_pretrained(d) writes."""
    edit_json(d / "tokenizer_config.json", lambda c: c.update(do_lower_case=False))
    edit_json(d / "tokenizer.json", lambda t: t["normalizer"].update(lowercase=False))


def seed_tokenizer_swapped(d: Path, build: Path) -> None:
    """A RoBERTa-style byte-level BPE tokenizer, trained here, in place of the WordPiece one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = (build / "corpus.txt").read_text().splitlines()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "mask_token": "<mask>"}))


def seed_requirement_unmet(d: Path, build: Path) -> None:
    edit_json(d / "config.json", lambda c: c.update(transformers_version="99.1.0"))


SEEDS = {
    # name: (damage, check codes, verify codes, words the check message must hold)
    "id2label-length": (seed_id2label_length, {"shape-config-mismatch"}, {"shape-config-mismatch", "label-map-mismatch"},
                        "id2label has 6 labels but the classifier head classifier.weight has 5 rows"),
    "label2id-not-inverse": (seed_label2id_not_inverse, {"label-map-mismatch"}, {"label-map-mismatch"},
                             "label2id is not the inverse of id2label: label2id['B-PER'] is 2 but id2label[1] is 'B-PER'"),
    "vocab-size-stale": (seed_vocab_size_stale, {"shape-config-mismatch"}, {"shape-config-mismatch", "tokenizer-mismatch"},
                         "config.vocab_size is 30522 but the embedding matrix bert.embeddings.word_embeddings.weight has 30525 rows"),
    "tokens-added-no-resize": (seed_tokens_added_no_resize, {"shape-config-mismatch"}, {"shape-config-mismatch", "tokenizer-mismatch"},
                               "config.vocab_size is 30522 but the tokenizer has 30525 tokens"),
    "lowercase-flipped": (seed_lowercase_flipped, {"tokenizer-mismatch"}, {"tokenizer-mismatch"},
                          "lower-casing is off, but none of the"),
    "tokenizer-swapped": (seed_tokenizer_swapped, {"tokenizer-mismatch"}, {"tokenizer-mismatch"},
                          "the tokenizer does not belong to this model: it has "),
}
VERIFY_WORDS = {
    "vocab-size-stale": "3 tokens added (ids 30522-30524: 'covid19', 'bnt162b2', 'sars2')",
    "tokens-added-no-resize": "3 tokens added (ids 30522-30524",
    "lowercase-flipped": "lower-casing switched off",
    "tokenizer-swapped": "tokenizer model changed from WordPiece to BPE",
    "id2label-length": "id2label changed: label 5 'B-MISC' added",
}


@pytest.fixture(scope="module")
def build(tokcls_build: Path, minilm_src: Path) -> Path:
    corpus = tokcls_build / "corpus.txt"
    if not corpus.exists():
        corpus.write_text((minilm_src / "README.md").read_text())
    return tokcls_build


@pytest.mark.parametrize("name", list(SEEDS))
def test_seed_found_by_check_and_verify(name, tmp_path, build):
    damage, check_codes, verify_codes, words = SEEDS[name]
    # check: no manifest at all
    d = copy_checkpoint(build / "clean", tmp_path / "c")
    damage(d, build)
    rep = api.check(d)
    assert not rep.ok
    for code in check_codes:
        found = errors(rep, code)
        assert found, f"{code} not in {[f.one_line() for f in rep.findings]}"
    assert any(words in f.message for f in rep.errors), [f.message for f in rep.errors]
    assert all(f.hint for f in rep.errors), [f.one_line() for f in rep.errors if not f.hint]
    # verify: against a manifest of the clean checkpoint
    v = copy_checkpoint(build / "clean", tmp_path / "v")
    api.create(v)
    damage(v, build)
    rep = api.verify(v, integrity_only=True)
    assert not rep.ok
    for code in verify_codes:
        assert errors(rep, code), f"{code} not in {[f.one_line() for f in rep.findings]}"
    semantic = [f for f in rep.errors if f.code in verify_codes]
    assert all(f.hint for f in semantic)
    if name in VERIFY_WORDS:
        assert any(VERIFY_WORDS[name] in f.message for f in semantic), [f.message for f in semantic]


def test_clean_checkpoints_pass_check_and_verify(tokcls, minilm_src, cli):
    for d in (tokcls, minilm_src):
        rep = api.check(d)
        assert rep.ok and not rep.findings, [f.one_line() for f in rep.findings]
        assert {"tokenizer", "config", "consistency", "requirements"} <= set(rep.checked)
    api.create(tokcls)
    m = json.loads((tokcls / "manifest.json").read_text())["signed"]
    assert m["config"]["id2label"] == {"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC", "4": "I-LOC"}
    assert m["config"]["num_labels"] == 5 and m["config"]["architectures"] == ["BertForTokenClassification"]
    assert {"requirement": "transformers>=5.24", "source": "config.json transformers_version 5.24.0"} in m["requirements"]["requires"]
    assert m["requirements"]["environment"]["torch"].startswith("2.13.0")
    jsonschema = pytest.importorskip("jsonschema")
    for section in ("tokenizer", "config", "requirements"):
        schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / f"section-{section}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(m[section])
    r = cli("verify", "--no-signature", tokcls)
    assert r.code == 0, r.out + r.err
    assert "tokenizer fingerprint" in r.out and "config facts" in r.out


def test_check_cli_names_the_fix_and_exits_1(tmp_path, build, cli):
    d = copy_checkpoint(build / "clean", tmp_path / "c")
    seed_tokens_added_no_resize(d, build)
    r = cli("check", d)
    assert r.code == 1
    assert ("error[shape-config-mismatch]: tokenizer.json: config.vocab_size is 30522 but the tokenizer has 30525 tokens: "
            "ids 30522-30524 ('covid19', 'bnt162b2', 'sars2') have no embedding row") in r.out
    assert "fix: call model.resize_token_embeddings(len(tokenizer)) and save the model again (len(tokenizer) is 30525)" in r.out


def test_require_option_checked_by_check_and_recorded_for_verify(tokcls, cli):
    r = cli("check", tokcls, "--require", "torch>=99", "--json")
    assert r.code == 1
    f = [x for x in json.loads(r.out)["findings"] if x["code"] == "version-unsatisfied"]
    assert f and f[0]["expected"] == "torch>=99" and f[0]["actual"].startswith("2.13.0") and f[0]["hint"] == "pip install 'torch>=99'"
    assert cli("check", tokcls, "--require", "torch>=2.6").code == 0
    assert cli("check", tokcls, "--require", "not a ! requirement").code == 2
    # recorded at create time, checked by verify
    api.create(tokcls, options=Options(requires=["torch>=99", "tokenizers>=0.19"]))
    rep = api.verify(tokcls, integrity_only=True)
    assert [f.expected for f in errors(rep, "version-unsatisfied")] == ["torch>=99"]
    assert "version-unsatisfied" not in api.check(tokcls).codes()  # check knows only the checkpoint's and --require's


def test_unknown_model_type_is_version_unsatisfied(minilm):
    edit_json(minilm / "config.json", lambda c: c.update(model_type="bert-from-2030"))
    f = errors(api.check(minilm), "version-unsatisfied")
    assert f and "does not know model_type 'bert-from-2030'" in f[0].message and "upgrade transformers" in f[0].hint
    assert "typo" not in f[0].hint
    edit_json(minilm / "config.json", lambda c: c.update(model_type="bret"))  # a typo: the hint names the close known types
    f = errors(api.check(minilm), "version-unsatisfied")
    assert [x.message for x in f] == ["the installed transformers 5.24.0 does not know model_type 'bret': from_pretrained raises"]
    assert f[0].hint.startswith("if it is a typo, set model_type to 'bert' or ") and "upgrade transformers" in f[0].hint


@pytest.mark.parametrize("written_by", ["5.25.0", "5.99.1", "99.1.0"])
def test_newer_writer_is_a_warning_in_check_and_verify(tokcls, cli, written_by):
    """transformers reads configs of newer versions (it loads and predicts the same: the
    diagnosis corpus measures it); only the model_type and config values decide."""
    api.create(tokcls)
    edit_json(tokcls / "config.json", lambda c: c.update(transformers_version=written_by))
    r = cli("check", tokcls, "--json")
    assert r.code == 0, r.out
    found = json.loads(r.out)["findings"]
    assert [(f["code"], f["severity"]) for f in found] == [("version-unsatisfied", "warning")]
    floor = ".".join(written_by.split(".")[:2])
    assert f"written by a newer transformers than the installed 5.24.0 (config.json transformers_version {written_by})" in found[0]["message"]
    assert found[0]["hint"].startswith(f"pip install 'transformers>={floor}'")
    rep = api.verify(tokcls, integrity_only=True)  # against the manifest, the edit itself is an error; the version stays a warning
    assert {f.code for f in rep.errors} == {"config-mismatch", "size-mismatch"}
    assert [f.code for f in rep.findings if not f.is_error] == ["version-unsatisfied"]
    assert cli("check", tokcls, "--require", f"transformers>={floor}").code == 1  # an explicit requirement stays an error


def test_more_consistency_rules_on_minilm(minilm):
    cfg = minilm / "config.json"
    original = cfg.read_text()

    def codes_after(fn) -> list[Finding]:
        cfg.write_text(original)
        edit_json(cfg, fn)
        return api.check(minilm).errors

    # id2label keys not 0..n-1
    f = codes_after(lambda c: c.update(id2label={"0": "A", "1": "B", "3": "C"}, label2id={"A": 0, "B": 1, "C": 3}))
    assert f == []  # BertModel has no classification head: its labels are never read (a warning says so)
    cfg.write_text(original)
    edit_json(cfg, lambda c: c.update(id2label={"0": "A", "1": "B", "3": "C"}, label2id={"A": 0, "B": 1, "C": 3}))
    assert [x.one_line() for x in api.check(minilm).findings] == [
        "warning[label-map-mismatch]: config.json: id2label keys are 0, 1, 3, not 0..2 (missing 2) "
        "(unused: BertModel has no classification head)"]
    # a head class over bare base-model weights
    f = codes_after(lambda c: c.update(architectures=["BertForTokenClassification"]))
    assert any("no classification head" in x.message for x in f if x.code == "shape-config-mismatch")
    # tie_word_embeddings false, but no output embedding
    f = codes_after(lambda c: c.update(architectures=["BertForMaskedLM"], tie_word_embeddings=False))
    assert any("tie_word_embeddings is false" in x.message for x in f if x.code == "shape-config-mismatch")
    # pad_token_id outside the vocabulary
    f = codes_after(lambda c: c.update(pad_token_id=30522))
    assert [x.message for x in f if x.code == "shape-config-mismatch"] == ["pad_token_id is 30522, outside the vocabulary of 30522"]
    assert "(0)" in f[0].hint  # names the tokenizer's [PAD] id
    # vocab_size disagrees with the embedding matrix
    f = codes_after(lambda c: c.update(vocab_size=32000))
    assert [x.message for x in f if x.code == "shape-config-mismatch"] == [
        "config.vocab_size is 32000 but the embedding matrix embeddings.word_embeddings.weight has 30522 rows"]
    # malformed config.json
    cfg.write_text('{"model_type": "bert", "vocab_size": 30522, "vocab_size": 1}')
    f = api.check(minilm).errors
    assert [x.code for x in f] == ["side-file-invalid"] and "duplicate key" in f[0].message


def test_remote_code_is_a_warning_naming_the_files(minilm, cli):
    (minilm / "modeling_custom.py").write_text("raise SystemExit('never run')\n")
    edit_json(minilm / "config.json", lambda c: c.update(auto_map={"AutoModel": "modeling_custom.CustomModel"}))
    r = cli("check", minilm, "--json")
    assert r.code == 0
    f = [x for x in json.loads(r.out)["findings"] if x["code"] == "remote-code"]
    assert f and f[0]["severity"] == "warning" and "modeling_custom.py" in f[0]["message"] and "--trust-remote-code" in f[0]["hint"]


def test_check_and_verify_never_import_torch_or_transformers(tokcls, minilm):
    code = (
        "import sys\n"
        "from manifest import api\n"
        f"for d in ({str(tokcls)!r}, {str(minilm)!r}):\n"
        "    api.create(d)\n"
        "    assert api.verify(d, integrity_only=True).ok\n"
        "    assert api.check(d).ok\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout
    p = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv=['manifest','check',sys.argv[1]]\n"
                        "try:\n    runpy.run_module('manifest', run_name='__main__')\nexcept SystemExit as e:\n"
                        "    print('EXIT', e.code, sorted(m for m in ('torch', 'transformers') if m in sys.modules))", str(tokcls)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert "EXIT 0 []" in p.stdout, p.stdout + p.stderr


# Each odd value, with what check must say: transformers' own behaviour on the same edit of
# MiniLM (BertModel; AutoModel + AutoTokenizer + one forward pass, transformers 5.24) decides
# it: raises -> an error; loads and computes the same -> exit 0, at most a warning.
ODD_CONFIGS = [
    # loads the same: BertModel has no head, so its label maps are never read
    ({"id2label": {"0": ["a"], "1": {"x": 1}}, "label2id": {"a": 0}}, ["warning[label-map-mismatch]"]),
    ({"id2label": {"x": "a"}}, ["error[label-map-mismatch]"]),  # ValueError: int('x')
    ({"id2label": [1, 2]}, ["error[side-file-invalid]"]),  # AttributeError: 'list' object has no attribute 'items'
    ({"id2label": {"0": "\ud800"}}, []),  # loads the same (create refuses it: not canonical JSON)
    ({"vocab_size": "30522"}, ["error[side-file-invalid]"]),  # StrictDataclassFieldValidationError
    ({"vocab_size": -5}, ["error[side-file-invalid]"]),  # RuntimeError: negative dimension
    ({"vocab_size": 10**30}, ["error[side-file-invalid]"]),  # TypeError: overflow
    ({"pad_token_id": [1, "x", None]}, ["error[side-file-invalid]", "warning[tokenizer-mismatch]"]),  # StrictDataclassFieldValidationError
    ({"architectures": "BertModel"}, ["warning[side-file-invalid]"]),  # loads the same
    ({"auto_map": [1]}, []),  # loads the same (no custom class is named)
    ({"transformers_version": "not.a.version"}, ["warning[side-file-invalid]"]),  # loads the same
    ({"text_config": {"vocab_size": 1}}, []),  # loads the same: BertConfig has no text_config
]
ODD_TOKENIZERS = [
    "[]",
    '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}}',
    '{"model": {"type": "WordPiece", "vocab": {"a": 99999999999}}}',
    '{"model": {"type": "Unigram", "vocab": [["a", "x"]]}}',
    '{"model": {"type": "WordPiece", "vocab": {"a": 0, "b": 0}}}',
    '{"model": {"type": "WordPiece", "vocab": {"a": 0}}, "added_tokens": {"a": 1}}',
]


@pytest.mark.parametrize(("patch", "expected"), ODD_CONFIGS, ids=lambda p: json.dumps(p)[:40])
def test_odd_config_values_give_exactly_the_expected_findings(minilm, patch, expected):
    from manifest.errors import ManifestError

    edit_json(minilm / "config.json", lambda c: c.update(patch))
    rep = api.check(minilm)  # never raises for a bad side file
    assert sorted(f"{f.severity.value}[{f.code}]" for f in rep.findings) == expected, [f.one_line() for f in rep.findings]
    assert rep.ok == (not any(e.startswith("error") for e in expected))
    assert all(f.hint for f in rep.findings)
    try:
        api.create(minilm, write=False)
    except ManifestError as e:
        assert e.exit_status == 2 and e.code == "side-file-invalid" and "\n" not in e.one_line()


@pytest.mark.parametrize("text", ODD_TOKENIZERS)
def test_odd_tokenizer_files_are_side_file_invalid(minilm, text):
    from manifest.errors import ManifestError

    (minilm / "tokenizer.json").write_text(text)
    assert [f.code for f in api.check(minilm).errors] == ["side-file-invalid"]
    with pytest.raises(ManifestError) as e:
        api.create(minilm, write=False)
    assert e.value.code == "side-file-invalid" and e.value.path == "tokenizer.json"


# --------------------------------------------------------------------------- missing side files
def test_weights_without_config_fail_check_even_with_a_structural_load(tokcls, cli):
    (tokcls / "config.json").unlink()
    for extra in ((), ("--load", "structural")):
        r = cli("check", tokcls, "--json", *extra)
        assert r.code == 1, r.out
        found = [(f["code"], f["severity"], f["path"]) for f in json.loads(r.out)["findings"]]
        assert found == [("side-file-missing", "error", "config.json")]
    assert "weights (model.safetensors) but no config.json: from_pretrained cannot build the model" in cli("check", tokcls).out


def test_no_config_is_fine_where_nothing_loads_from_it(tmp_path, tokcls, minilm_src):
    only_tok = tmp_path / "tok"  # a tokenizer-only directory
    only_tok.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokcls / name, only_tok / name)
    assert api.check(only_tok).findings == []
    adapter = tmp_path / "adapter"  # a PEFT adapter ships adapter_config.json, not config.json
    adapter.mkdir()
    shutil.copy2(tokcls / "model.safetensors", adapter / "adapter_model.safetensors")
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    assert "side-file-missing" not in api.check(adapter).codes()
    st = tmp_path / "st"  # a sentence-transformers root whose model sits in a module folder with its config
    (st / "0_Transformer").mkdir(parents=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokcls / f, st / "0_Transformer" / f)
    (st / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]')
    assert "side-file-missing" not in api.check(st).codes()
    (st / "0_Transformer" / "config.json").unlink()
    f = api.check(st).errors
    assert [(x.code, x.path) for x in f] == [("side-file-missing", "0_Transformer/config.json")]


def test_tokenizer_config_without_vocabulary_is_an_error_and_no_tokenizer_a_warning(tokcls):
    (tokcls / "tokenizer.json").unlink()
    rep = api.check(tokcls)
    assert [(f.code, f.severity.value, f.path) for f in rep.findings] == [("side-file-missing", "error", "tokenizer_config.json")]
    assert "(BertTokenizer) but no vocabulary" in rep.findings[0].message and "every word becomes the unknown token" in rep.findings[0].message
    (tokcls / "tokenizer_config.json").unlink()
    rep = api.check(tokcls)
    assert rep.ok and [(f.code, f.severity.value) for f in rep.findings] == [("side-file-missing", "warning")]
    assert "no tokenizer, but the model reads token ids (the embedding matrix bert.embeddings.word_embeddings.weight)" in rep.findings[0].message
    # a byte-level tokenizer needs no vocabulary file
    (tokcls / "tokenizer_config.json").write_text('{"tokenizer_class": "ByT5Tokenizer"}')
    assert "side-file-missing" not in api.check(tokcls).codes()


def test_config_dtype_against_the_weights_is_a_warning_naming_both(tokcls, cli):
    edit_json(tokcls / "config.json", lambda c: c.update(dtype="float16"))
    r = cli("check", tokcls, "--json")
    assert r.code == 0
    [f] = json.loads(r.out)["findings"]
    assert (f["code"], f["severity"]) == ("shape-config-mismatch", "warning")
    assert f["message"].startswith("dtype is float16, but the weights are stored as F32: from_pretrained loads them as float16")
    assert f["hint"].startswith("set dtype to float32 in config.json")
    edit_json(tokcls / "config.json", lambda c: (c.pop("dtype"), c.update(torch_dtype="float32")))
    assert api.check(tokcls).findings == []


def test_trainer_state_files_say_what_they_are(tokcls, tmp_path, cli):
    p = subprocess.run([sys.executable, str(Path(__file__).parent / "build_checkpoints.py"), "--trainer-state", str(tokcls), str(tokcls)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    r = cli("check", tokcls, "--json")
    assert r.code == 0, r.out
    found = {f["path"]: f for f in json.loads(r.out)["findings"]}
    assert sorted(found) == ["optimizer.pt", "rng_state.pth", "scheduler.pt", "training_args.bin"]
    for f in found.values():
        assert f["code"] == "pickle-file" and f["severity"] == "info", f
        assert "saved by the Trainer to resume training: not model weights, and from_pretrained never reads it" in f["message"]
        assert "pickle-based weights" not in f["message"]
    assert found["training_args.bin"]["message"].startswith("the training arguments, saved by the Trainer")
    assert "transformers.training_args.TrainingArguments" in found["training_args.bin"]["actual"]
    assert "torch._utils._rebuild_tensor_v2" in found["optimizer.pt"]["actual"]
    # a trainer file that imports what a Trainer never writes is still an error
    import pickle

    (tokcls / "scheduler.pt").write_bytes(pickle.dumps({"x": __import__("os").system}))
    f = {x.path: x for x in api.check(tokcls).errors}["scheduler.pt"]
    assert "imports posix.system" in f.message or "imports os.system" in f.message
