"""The diagnosis corpus: a real fine-tuned BertForTokenClassification (the bundled MiniLM
with a 9-label NER head, trained a few steps and saved with save_pretrained; see
tests/build_checkpoints.py ``--trained``), broken in over 40 realistic ways.

For every variant the test measures what transformers itself does, in one subprocess
(tests/diagnosis_probe.py): it raises, it loads but predicts differently from the
original on a fixed sentence, or it loads and predicts the same. Then ``check`` (no
manifest, no ``--load``) must agree:

- no false negative: where transformers raises or predicts differently, check exits 1,
  or names the cause as a warning where a warning is the documented verdict
  (``WARNING_VERDICTS``);
- no false alarm: where transformers loads and predicts the same, check exits 0.

The ground truth is measured, never assumed. The expected outcome of each variant is
asserted as well, so a transformers release that changes one is noticed.

``BLIND`` variants change what the model computes without changing anything check can
compare without a manifest (a config value that keeps every shape; a vocabulary
reordered in place). They are measured too, and ``verify`` against a manifest of the
original must catch each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import copy_checkpoint

from manifest import api

HERE = Path(__file__).resolve().parent
Damage = Callable[[Path, Path, Path], None]  # (variant dir, build dir, MiniLM dir)


# --------------------------------------------------------------------------- damage
def _cfg(**kw: object) -> Damage:
    def damage(d: Path, build: Path, minilm: Path) -> None:
        p = d / "config.json"
        c = json.loads(p.read_text())
        for k, v in kw.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        p.write_text(json.dumps(c, indent=2))

    return damage


def _cfg_fn(fn: Callable[[dict], None]) -> Damage:
    def damage(d: Path, build: Path, minilm: Path) -> None:
        p = d / "config.json"
        c = json.loads(p.read_text())
        fn(c)
        p.write_text(json.dumps(c, indent=2))

    return damage


def _json(name: str, **kw: object) -> Damage:
    def damage(d: Path, build: Path, minilm: Path) -> None:
        p = d / name
        c = json.loads(p.read_text())
        c.update(kw)
        p.write_text(json.dumps(c, indent=2))

    return damage


def _unlink(*names: str) -> Damage:
    def damage(d: Path, build: Path, minilm: Path) -> None:
        for n in names:
            (d / n).unlink()

    return damage


def _from(sub: str) -> Damage:
    """The variant is another checkpoint transformers built (build/<sub>), whole."""

    def damage(d: Path, build: Path, minilm: Path) -> None:
        for f in d.iterdir():
            f.unlink()
        for f in (build / sub).iterdir():
            os.link(f, d / f.name) if f.suffix == ".safetensors" else shutil.copy2(f, d / f.name)

    return damage


def _add_files(sub: str) -> Damage:
    def damage(d: Path, build: Path, minilm: Path) -> None:
        for f in (build / sub).iterdir():
            shutil.copy2(f, d / f.name)

    return damage


def _both(*fns: Damage) -> Damage:
    def damage(d: Path, build: Path, minilm: Path) -> None:
        for fn in fns:
            fn(d, build, minilm)

    return damage


def _rewrite_tensors(edit: Callable[[dict], None]) -> Damage:
    """A new weight file (never the hard-linked original), saved by safetensors itself."""

    def damage(d: Path, build: Path, minilm: Path) -> None:
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(d / "model.safetensors"))
        edit(tensors)
        (d / "model.safetensors").unlink()
        save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})

    return damage


def _truncate(d: Path, build: Path, minilm: Path) -> None:
    p = d / "model.safetensors"
    p.unlink()
    shutil.copy2(build / "clean" / "model.safetensors", p)
    os.truncate(p, p.stat().st_size - 4096)


def _lfs_pointer(d: Path, build: Path, minilm: Path) -> None:
    import hashlib

    src = build / "clean" / "model.safetensors"
    h = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    (d / "model.safetensors").unlink()
    (d / "model.safetensors").write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{h.hexdigest()}\n"
                                         f"size {src.stat().st_size}\n")


def _small_cased_wordpiece(d: Path, build: Path, minilm: Path) -> None:
    """A 138-token cased WordPiece, trained here and saved with its config in place of the model's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    text = (minilm / "README.md").read_text().splitlines()
    tok.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=138, special_tokens=specials, limit_alphabet=50))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    assert tok.get_vocab_size() == 138
    tok.save(str(d / "tokenizer.json"))
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["do_lower_case"] = False
    (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))


def _vocab_txt(lines: Callable[[list[str]], list[str]], drop_json: bool) -> Damage:
    """MiniLM's own vocab.txt (the same vocabulary), edited, beside or instead of tokenizer.json."""

    def damage(d: Path, build: Path, minilm: Path) -> None:
        vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").splitlines()
        (d / "vocab.txt").write_text("\n".join(lines(vocab)) + "\n", encoding="utf-8")
        if drop_json:
            (d / "tokenizer.json").unlink()

    return damage


def _swap(i: int, j: int) -> Callable[[list[str]], list[str]]:
    """Swap two ids' tokens (1996 'the' and 1997 'of' are both in the probe's sentence)."""

    def fn(v: list[str]) -> list[str]:
        v = list(v)
        v[i], v[j] = v[j], v[i]
        return v

    return fn


def _swap_labels(c: dict) -> None:
    c["label2id"]["B-PER"], c["label2id"]["I-PER"] = c["label2id"]["I-PER"], c["label2id"]["B-PER"]


def _rename_label(c: dict) -> None:
    c["id2label"]["1"] = "B-PERSON"  # label2id still says B-PER


def _extra_label(c: dict) -> None:
    c["id2label"]["9"] = "B-DATE"
    c["label2id"]["B-DATE"] = 9


def _shift_label_ids(c: dict) -> None:
    c["id2label"] = {str(int(k) + 1): v for k, v in c["id2label"].items()}
    c["label2id"] = {k: v + 1 for k, v in c["label2id"].items()}


def _swap_both_maps(c: dict) -> None:
    i2l = c["id2label"]
    i2l["1"], i2l["2"] = i2l["2"], i2l["1"]
    c["label2id"] = {v: int(k) for k, v in i2l.items()}


def _add_pooler(t: dict) -> None:
    import numpy as np

    t["bert.pooler.dense.weight"] = np.zeros((384, 384), np.float32)
    t["bert.pooler.dense.bias"] = np.zeros((384,), np.float32)


def _readme(d: Path, build: Path, minilm: Path) -> None:
    (d / "README.md").write_text("---\nlicense: apache-2.0\npipeline_tag: token-classification\n---\n# NER\n")
    (d / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")


# name: (damage, what transformers does, check's verdict: "error:<code>", "warning:<code>" or "ok")
VARIANTS: dict[str, tuple[Damage, str, str]] = {
    # -- the cases issue 12 names
    "config-json-missing": (_unlink("config.json"), "raises", "error:side-file-missing"),
    "tokenizer-json-deleted": (_unlink("tokenizer.json"), "differs", "error:side-file-missing"),
    "no-tokenizer-at-all": (_unlink("tokenizer.json", "tokenizer_config.json"), "differs", "warning:side-file-missing"),
    "num-hidden-layers-4-of-6": (_cfg(num_hidden_layers=4), "differs", "error:shape-config-mismatch"),
    "num-hidden-layers-8-of-6": (_cfg(num_hidden_layers=8), "differs", "error:shape-config-mismatch"),
    "hidden-size": (_cfg(hidden_size=768), "raises", "error:shape-config-mismatch"),
    "intermediate-size": (_cfg(intermediate_size=1024), "raises", "error:shape-config-mismatch"),
    "max-position-embeddings": (_cfg(max_position_embeddings=256), "raises", "error:shape-config-mismatch"),
    "vocab-size": (_cfg(vocab_size=30000), "raises", "error:shape-config-mismatch"),
    "type-vocab-size": (_cfg(type_vocab_size=1), "raises", "error:shape-config-mismatch"),
    "num-attention-heads-not-dividing": (_cfg(num_attention_heads=7), "raises", "error:shape-config-mismatch"),
    "tokenizer-138-token-cased-wordpiece": (_small_cased_wordpiece, "differs", "error:tokenizer-mismatch"),
    "config-dtype-float16-over-f32": (_cfg(dtype="float16"), "differs", "warning:shape-config-mismatch"),
    "written-by-transformers-5.25": (_cfg(transformers_version="5.25.0"), "same", "ok"),
    "written-by-transformers-5.99": (_cfg(transformers_version="5.99.0"), "same", "ok"),
    "model-type-typo": (_cfg(model_type="bret"), "raises", "error:version-unsatisfied"),
    "trainer-state-files": (_add_files("trainer"), "same", "ok"),
    # -- labels
    "label2id-not-inverse": (_cfg_fn(_swap_labels), "differs", "error:label-map-mismatch"),
    "id2label-renamed-label2id-kept": (_cfg_fn(_rename_label), "differs", "error:label-map-mismatch"),
    "id2label-10-labels-over-9-row-head": (_cfg_fn(_extra_label), "raises", "error:shape-config-mismatch"),
    "num-labels-5": (_cfg(num_labels=5), "raises", "error:label-map-mismatch"),
    "label-ids-from-1": (_cfg_fn(_shift_label_ids), "raises", "error:label-map-mismatch"),
    # -- weights
    "weights-truncated": (_truncate, "raises", "error:truncated"),
    "weights-lfs-pointer": (_lfs_pointer, "raises", "error:lfs-pointer"),
    "extra-unused-tensors": (_rewrite_tensors(_add_pooler), "same", "ok"),
    "missing-layer-tensor": (_rewrite_tensors(lambda t: t.pop("bert.encoder.layer.3.attention.self.query.bias")), "differs",
                             "error:shape-config-mismatch"),
    "classifier-bias-missing": (_rewrite_tensors(lambda t: t.pop("classifier.bias")), "differs", "error:shape-config-mismatch"),
    "weights-f16-config-float32": (_from("fp16"), "differs", "warning:shape-config-mismatch"),
    "vocab-resized-config-stale": (_from("resized"), "raises", "error:shape-config-mismatch"),
    # -- tokenizer
    "vocab-txt-edited-beside-tokenizer-json": (_vocab_txt(_swap(1996, 1997), drop_json=False), "same", "ok"),
    "vocab-txt-instead-of-tokenizer-json": (_vocab_txt(lambda v: v, drop_json=True), "same", "ok"),
    "vocab-txt-cut-to-138-lines": (_vocab_txt(lambda v: v[:138], drop_json=True), "differs", "error:tokenizer-mismatch"),
    "lower-casing-off": (_json("tokenizer_config.json", do_lower_case=False), "differs", "error:tokenizer-mismatch"),
    "config-pad-token-id-100": (_cfg(pad_token_id=100), "same", "ok"),
    "tokenizer-pad-token-unk": (_json("tokenizer_config.json", pad_token="[UNK]"), "same", "ok"),
    # -- config that does not matter to this model, or matters to all of it
    "tie-word-embeddings-false": (_cfg(tie_word_embeddings=False), "same", "ok"),
    "architectures-sequence-classification": (_cfg(architectures=["BertForSequenceClassification"]), "same", "ok"),
    "architectures-as-a-string": (_cfg(architectures="BertForTokenClassification"), "same", "ok"),
    "written-by-transformers-4.8": (_cfg(transformers_version="4.8.2"), "same", "ok"),
    "transformers-version-not-a-version": (_cfg(transformers_version="not.a.version"), "same", "ok"),
    "model-type-roberta-over-bert-weights": (_cfg(model_type="roberta"), "differs", "error:shape-config-mismatch"),
    "vocab-size-as-a-string": (_cfg(vocab_size="30522"), "raises", "error:side-file-invalid"),
    "readme-and-gitattributes-added": (_readme, "same", "ok"),
    "no-dtype-in-config": (_cfg(dtype=None), "same", "ok"),
}
# Where a warning is check's verdict although transformers' output changes, and why (docs/semantics.md):
WARNING_VERDICTS = {
    "no-tokenizer-at-all": "a weights-only folder is a legitimate way to ship; the tokenizer then comes from elsewhere",
    "config-dtype-float16-over-f32": "a deliberate half-precision deployment looks the same",
    "weights-f16-config-float32": "a deliberate upcast looks the same",
}
# Variants no rule can see without a manifest: verify must catch them.
BLIND: dict[str, tuple[Damage, str]] = {
    "num-attention-heads-12-to-6": (_cfg(num_attention_heads=6), "differs"),
    "hidden-act-relu": (_cfg(hidden_act="relu"), "differs"),
    "labels-swapped-in-both-maps": (_cfg_fn(_swap_both_maps), "differs"),
    "vocab-txt-reordered-instead-of-tokenizer-json": (_vocab_txt(_swap(1996, 1997), drop_json=True), "differs"),
}


# --------------------------------------------------------------------------- the corpus
@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    import importlib.util

    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("needs transformers and torch (in a subprocess)")
    out = tmp_path_factory.mktemp("trained")
    p = subprocess.run([sys.executable, str(HERE / "build_checkpoints.py"), "--trained", str(minilm_src), str(out)],
                       capture_output=True, text=True, timeout=900, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def corpus(build: Path, minilm_src: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """name -> {"dir", "outcome", "why"}: every variant built, and loaded by transformers."""
    base = tmp_path_factory.mktemp("corpus")
    dirs: dict[str, Path] = {}
    for name, (damage, *_) in {**VARIANTS, **BLIND}.items():
        d = copy_checkpoint(build / "clean", base / name)
        damage(d, build, minilm_src)
        dirs[name] = d
    p = subprocess.run([sys.executable, str(HERE / "diagnosis_probe.py"), str(build / "clean"), *map(str, dirs.values())],
                       capture_output=True, text=True, timeout=900, check=False, cwd=base,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert p.returncode == 0, p.stderr[-3000:]
    measured = {json.loads(line)["dir"]: json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")}
    return {name: {**measured[str(d)], "dir": d} for name, d in dirs.items()}


def test_the_corpus_is_large_and_covers_every_outcome(corpus):
    assert len(VARIANTS) >= 30
    outcomes = {corpus[n]["outcome"] for n in VARIANTS}
    assert outcomes == {"raises", "differs", "same"}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_check_agrees_with_what_transformers_does(corpus, name):
    _, expected_outcome, verdict = VARIANTS[name]
    got = corpus[name]
    rep = api.check(got["dir"])
    shown = [f.one_line() for f in rep.findings]
    # the measured ground truth decides
    if got["outcome"] == "same":
        assert rep.exit_status == 0, f"false alarm: transformers loads and predicts the same, check says {shown}"
    elif name in WARNING_VERDICTS:
        code = verdict.split(":", 1)[1]
        assert any(f.code == code for f in rep.findings), f"transformers {got['outcome']} ({got['why']}); check says {shown}"
    else:
        assert rep.exit_status == 1, f"false negative: transformers {got['outcome']} ({got['why']}); check says {shown}"
    # ... and the expected outcome and verdict are asserted too, so that a change is noticed
    assert got["outcome"] == expected_outcome, f"transformers now {got['outcome']}: {got['why']}"
    kind, _, code = verdict.partition(":")
    if kind == "ok":
        assert rep.exit_status == 0 and not rep.errors
    else:
        sev = [f.severity.value for f in rep.findings if f.code == code]
        assert kind in sev, shown
        assert rep.exit_status == (1 if kind == "error" else 0), shown
    assert all(f.hint for f in rep.findings), shown


def test_blind_variants_change_the_model_and_verify_catches_them(corpus, build, minilm_src, tmp_path):
    for name, (damage, outcome) in BLIND.items():
        assert corpus[name]["outcome"] == outcome, (name, corpus[name]["why"])
        d = copy_checkpoint(build / "clean", tmp_path / name)
        api.create(d)
        damage(d, build, minilm_src)
        rep = api.verify(d, integrity_only=True)
        assert rep.exit_status == 1, (name, [f.one_line() for f in rep.findings])


def test_the_named_cases_lead_with_the_cause(corpus, cli):
    """The message a user reads first names the cause and the key to fix."""
    first = {}
    for name in ("config-json-missing", "tokenizer-json-deleted", "num-hidden-layers-4-of-6", "tokenizer-138-token-cased-wordpiece",
                 "config-dtype-float16-over-f32", "model-type-typo", "trainer-state-files", "written-by-transformers-5.25"):
        r = cli("check", corpus[name]["dir"], "--json")
        first[name] = json.loads(r.out)["findings"][0]
    assert first["config-json-missing"]["message"].startswith("weights (model.safetensors) but no config.json")
    assert first["tokenizer-json-deleted"]["message"].startswith("tokenizer_config.json (BertTokenizer) but no vocabulary")
    assert first["num-hidden-layers-4-of-6"]["message"].startswith("num_hidden_layers is 4, but the weights hold 6 layers")
    assert "set num_hidden_layers to 6" in first["num-hidden-layers-4-of-6"]["hint"]
    assert first["tokenizer-138-token-cased-wordpiece"]["message"].startswith(
        "the tokenizer does not belong to this model: it has 138 tokens, but the embedding matrix")
    assert first["config-dtype-float16-over-f32"]["message"].startswith("dtype is float16, but the weights are stored as F32")
    assert "'bert'" in first["model-type-typo"]["hint"] and "typo" in first["model-type-typo"]["hint"]
    assert first["trainer-state-files"]["severity"] == "info" and "not model weights" in first["trainer-state-files"]["message"]
    assert first["written-by-transformers-5.25"]["severity"] == "warning"
