"""The tokenizer fingerprint: layout-independent, sensitive to every id change, and
verify names each change. Real tokenizers only (MiniLM's, and ones trained here with
the tokenizers library); no torch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from manifest import api
from manifest.formats.tokenizer import describe_changes, fingerprint, read_tokenizer, summary
from manifest.inventory import discover

tokenizers = pytest.importorskip("tokenizers")


def fp(path: Path) -> str:
    t = read_tokenizer(discover(path))
    assert t is not None
    return fingerprint(t)


def changes(before: Path, after: Path) -> list[tuple[str, str]]:
    rec = summary(read_tokenizer(discover(before)))
    return describe_changes(rec, read_tokenizer(discover(after)))


def only(tmp: Path, src: Path, names: list[str]) -> Path:
    tmp.mkdir()
    for n in names:
        shutil.copy2(src / n, tmp / n)
    return tmp


# --------------------------------------------------------------------------- stability
def test_minilm_reads_as_bert_wordpiece(minilm_src):
    t = read_tokenizer(discover(minilm_src))
    assert (t.source, t.model, t.size, t.lowercase) == ("tokenizer.json", "WordPiece", 30522, True)
    assert t.special == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert t.tokens[2023] == "this"


def test_same_vocabulary_in_vocab_txt_layout_has_same_fingerprint(tmp_path, minilm_src):
    full = only(tmp_path / "json", minilm_src, ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
    txt = only(tmp_path / "txt", minilm_src, ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"])
    assert read_tokenizer(discover(txt)).source == "vocab.txt"
    assert fp(full) == fp(txt)


def test_reformatted_tokenizer_json_keeps_fingerprint(tmp_path, minilm_src):
    d = only(tmp_path / "m", minilm_src, ["tokenizer.json", "tokenizer_config.json"])
    before = fp(d)
    doc = json.loads((d / "tokenizer.json").read_text())
    doc["model"]["vocab"] = dict(reversed(list(doc["model"]["vocab"].items())))  # same map, another order
    (d / "tokenizer.json").write_text(json.dumps(doc, indent=1))
    assert fp(d) == before


def _train_bpe(corpus: list[str], size: int = 400):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    return tok


@pytest.fixture(scope="module")
def corpus(minilm_src) -> list[str]:
    return (minilm_src / "README.md").read_text().splitlines()


def test_bpe_tokenizer_json_and_vocab_merges_layouts_agree(tmp_path, corpus):
    tok = _train_bpe(corpus)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tok.save(str(a / "tokenizer.json"))
    tok.model.save(str(b))  # vocab.json + merges.txt
    assert sorted(p.name for p in b.iterdir()) == ["merges.txt", "vocab.json"]
    roles = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}  # as save_pretrained writes them
    for d in (a, b):
        (d / "tokenizer_config.json").write_text(json.dumps(roles))
    ta, tb = read_tokenizer(discover(a)), read_tokenizer(discover(b))
    assert ta.model == tb.model == "BPE" and len(ta.merges) == len(tb.merges) > 0
    assert tb.source == "vocab.json+merges.txt"
    assert fingerprint(ta) == fingerprint(tb)
    # one merge fewer: same vocabulary, other segmentation -> named
    lines = (b / "merges.txt").read_text().splitlines()
    (b / "merges.txt").write_text("\n".join(lines[:-1]) + "\n")
    named = describe_changes(summary(ta), read_tokenizer(discover(b)))
    assert [k for k, _ in named] == ["merges"]
    assert f"({len(ta.merges)} -> {len(ta.merges) - 1} merges)" in named[0][1]


def test_sentencepiece_model_matches_unigram_tokenizer_json(tmp_path):
    """A sentencepiece ModelProto (written with the protobuf schema transformers ships)
    and the same Unigram vocabulary in tokenizer.json have one fingerprint."""
    pb2 = pytest.importorskip("transformers.utils.sentencepiece_model_pb2_new")
    from tokenizers import AddedToken, Tokenizer, models

    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)] + [(f"\u2581w{i}", -1.5 - i / 7, 1) for i in range(40)]
    m = pb2.ModelProto()
    for p, s, t in pieces:
        sp = m.pieces.add()
        sp.piece, sp.score, sp.type = p, s, t
    m.trainer_spec.model_type = 1  # UNIGRAM
    a, b = tmp_path / "spm", tmp_path / "json"
    a.mkdir()
    b.mkdir()
    (a / "spiece.model").write_bytes(m.SerializeToString())
    tok = Tokenizer(models.Unigram([(p, s) for p, s, _ in pieces], unk_id=0))
    tok.add_special_tokens([AddedToken(x, special=True) for x in ("<unk>", "<s>", "</s>")])
    tok.save(str(b / "tokenizer.json"))
    ta, tb = read_tokenizer(discover(a)), read_tokenizer(discover(b))
    assert ta.model == tb.model == "Unigram" and ta.size == tb.size == len(pieces)
    assert ta.special == tb.special == {"<unk>": 0, "<s>": 1, "</s>": 2}
    assert fingerprint(ta) == fingerprint(tb)
    m.pieces[5].score = -9.0
    (a / "spiece.model").write_bytes(m.SerializeToString())
    assert [k for k, _ in describe_changes(summary(tb), read_tokenizer(discover(a)))] == ["scores"]


# --------------------------------------------------------------------------- naming changes
def test_added_tokens_are_named_with_their_ids(tmp_path, minilm_src):
    d = only(tmp_path / "m", minilm_src, ["tokenizer.json", "tokenizer_config.json"])
    before = summary(read_tokenizer(discover(d)))
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(d / "tokenizer.json"))
    assert t.add_tokens(["covid19", "bnt162b2", "sars2"]) == 3
    t.save(str(d / "tokenizer.json"))
    after = read_tokenizer(discover(d))
    assert after.size == 30525 and after.base_size == 30522
    named = describe_changes(before, after)
    assert named == [("added", "3 tokens added (ids 30522-30524: 'covid19', 'bnt162b2', 'sars2')")]


def test_removed_renumbered_and_casing_are_named(tmp_path, minilm_src):
    base = only(tmp_path / "base", minilm_src, ["vocab.txt", "tokenizer_config.json"])
    lines = (base / "vocab.txt").read_text().splitlines()
    # the last token removed
    cut = only(tmp_path / "cut", base, ["vocab.txt", "tokenizer_config.json"])
    (cut / "vocab.txt").write_text("\n".join(lines[:-1]) + "\n")
    assert changes(base, cut) == [("removed", "1 token removed (id 30521)")]
    # two tokens swapped: same size, other ids
    swap = only(tmp_path / "swap", base, ["vocab.txt", "tokenizer_config.json"])
    lines2 = list(lines)
    lines2[5000], lines2[5001] = lines2[5001], lines2[5000]
    (swap / "vocab.txt").write_text("\n".join(lines2) + "\n")
    named = changes(base, swap)
    assert named == [("renumbered", "tokens changed or renumbered in ids 4096-8191 (size unchanged at 30522)")]
    # lower-casing switched off in tokenizer_config.json
    cased = only(tmp_path / "cased", base, ["vocab.txt", "tokenizer_config.json"])
    cfg = json.loads((cased / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = False
    (cased / "tokenizer_config.json").write_text(json.dumps(cfg))
    kinds = dict(changes(base, cased))
    assert kinds["lowercase"] == "lower-casing switched off"
    assert kinds["normalize"] == "accent stripping switched off"  # strip_accents follows lowercase when unset


def test_do_lower_case_overrides_tokenizer_json(tmp_path, minilm_src):
    d = only(tmp_path / "m", minilm_src, ["tokenizer.json", "tokenizer_config.json"])
    assert read_tokenizer(discover(d)).lowercase is True
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = False
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert read_tokenizer(discover(d)).lowercase is False


def test_special_token_moved_is_named(tmp_path, minilm_src):
    d = only(tmp_path / "m", minilm_src, ["tokenizer.json", "tokenizer_config.json"])
    before = summary(read_tokenizer(discover(d)))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["pad_token"] = "[unused0]"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    named = dict(describe_changes(before, read_tokenizer(discover(d))))
    assert named["role"] == "pad_token changed from '[PAD]' to '[unused0]'"
    assert named["special"] == "special token '[unused0]' (id 1) is new"


# --------------------------------------------------------------------------- through the API and CLI
def test_verify_names_a_swapped_vocabulary(minilm, cli):
    api.create(minilm)
    lines = (minilm / "vocab.txt").read_text().splitlines()
    (minilm / "tokenizer.json").unlink()
    (minilm / "vocab.txt").write_text("\n".join(lines[::-1]) + "\n")  # every id moves
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 1
    # The diagnosis first (the same tokens at other ids), then the evidence under it.
    assert r.out.startswith("error[tokenizer-mismatch]: vocab.txt: the tokenizer does not belong to this model: "
                            "vocab.txt has the model's 30522 tokens at other ids"), r.out
    assert "    error[tokenizer-mismatch]: vocab.txt: tokens changed or renumbered in ids 0-4095" in r.out
    doc = json.loads(cli("verify", minilm, "--no-signature", "--json").out)
    renumbered = [f for f in doc["findings"] if f["message"].startswith("tokens changed or renumbered")]
    assert renumbered[0]["hint"].startswith("token ids moved") and renumbered[0]["caused_by"] == "tokenizer-replaced"


def test_malformed_tokenizer_is_side_file_invalid(minilm, cli):
    (minilm / "tokenizer.json").write_text('{"model": {"type": "WordPiece", "vocab": {"a": 0, "a": 1}}}')
    rep = api.check(minilm)
    bad = [f for f in rep.findings if f.code == "side-file-invalid"]
    assert bad and bad[0].path == "tokenizer.json" and "duplicate key" in bad[0].message and bad[0].hint
    r = cli("create", minilm)
    assert r.code == 2 and r.err.startswith("error[side-file-invalid]: tokenizer.json:")
    assert "Traceback" not in r.err


def test_recorded_section_validates_against_schema(minilm):
    jsonschema = pytest.importorskip("jsonschema")
    m = api.create(minilm, write=False)
    schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "section-tokenizer.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(m.sections["tokenizer"])
    assert m.sections["tokenizer"]["fingerprint"] == fp(minilm)
