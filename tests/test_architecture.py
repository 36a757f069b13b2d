"""The table-driven size rules (manifest/architecture.py) against REAL tiny checkpoints
that transformers builds for each family (random init, tiny sizes that differ from one
another): zero findings on each as saved, and a finding naming the key for every config
size the table covers, edited by one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manifest import api
from manifest.architecture import FAMILIES, check_family, family_of, resolve
from manifest.formats.safetensors import read_header

HERE = Path(__file__).resolve().parent
NAMES = ("bert", "roberta", "electra", "distilbert", "gpt2", "llama", "mistral", "qwen2", "qwen3", "t5")


@pytest.fixture(scope="module")
def tiny(families_build: Path) -> Path:
    """The tiny checkpoints of tests/build_checkpoints.py --families (built in a subprocess:
    never imported here; read-only, tests copy what they edit)."""
    return families_build


def _load(d: Path) -> tuple[dict, dict]:
    raw = json.loads((d / "config.json").read_text())
    with open(d / "model.safetensors", "rb") as f:
        h = read_header(f, (d / "model.safetensors").stat().st_size)
    return raw, {n: t.shape for n, t in h.tensors.items()}


def _used(fam) -> set[str]:
    used = {q for expr, _, _ in fam.dims for q in expr.split("*")} | {q for q, _ in fam.layers}
    return used | set(fam.divide or ())


def test_every_family_and_model_type_has_a_tiny_checkpoint():
    covered = {family_of(n).name for n in NAMES}
    assert covered == {f.name for f in FAMILIES}


@pytest.mark.parametrize("name", NAMES)
def test_rules_hold_on_the_real_checkpoint_and_catch_each_edited_key(tiny, name):
    d = tiny / name
    raw, shapes = _load(d)
    fam = family_of(raw["model_type"])
    assert fam is not None
    assert check_family(raw, raw["model_type"], shapes) == []
    rep = api.check(d)
    assert [f.one_line() for f in rep.errors] == []
    # every pattern of the table is alive on the real tensor names
    import re

    for expr, pattern, axis in fam.dims:
        if all(resolve(raw, fam, q) for q in expr.split("*")):
            hits = [n for n in shapes if re.search(pattern, n)]
            assert hits, f"{name}: {pattern} matches no tensor"
            assert all(len(shapes[n]) > axis for n in hits)
    for q, pattern in fam.layers:
        idx = {int(m.group(1)) for n in shapes for m in [re.search(pattern, n)] if m}
        assert len(idx) == resolve(raw, fam, q)[1], f"{name}: {pattern}"
    # each config key the table reads, edited by one, is named
    edited = []
    for q in sorted(_used(fam)):
        got = resolve(raw, fam, q)
        if got is None or got[0] not in raw:
            continue  # derived (head_dim = hidden / heads) or not written by this config
        key = got[0]
        bad = dict(raw, **{key: raw[key] + 1})
        found = check_family(bad, raw["model_type"], shapes)
        assert found, f"{name}: {key} {raw[key]} -> {raw[key] + 1} not caught"
        assert all(f.code == "shape-config-mismatch" and f.hint and f.is_error for f in found)
        assert any(key in f.message and key in f.hint for f in found), [f.message for f in found]
        edited.append(key)
    assert len(edited) >= 4, edited


def test_edited_config_fails_check_on_disk(tiny, tmp_path):
    import shutil

    d = tmp_path / "llama"
    shutil.copytree(tiny / "llama", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (d / "config.json").write_text(json.dumps(cfg))
    rep = api.check(d)
    assert [(f.code, f.message.split(":")[0]) for f in rep.errors] == [
        ("shape-config-mismatch", "num_hidden_layers is 1, but the weights hold 2 layers (model.layers.N, N = 0..1)")]
    assert "set num_hidden_layers to 2" in rep.errors[0].hint


def test_layer_rules_name_gaps_missing_tensors_and_foreign_prefixes(tiny):
    raw, shapes = _load(tiny / "bert")
    gap = {n: s for n, s in shapes.items() if ".layer.1." not in n}
    msgs = [f.message for f in check_family(raw, "bert", gap)]
    assert any("no tensors for layer(s) 1 of bert.encoder.layer.N" in m for m in msgs), msgs
    one = {n: s for n, s in shapes.items() if n != "bert.encoder.layer.2.attention.self.query.bias"}
    msgs = [f.message for f in check_family(raw, "bert", one)]
    assert msgs == ["1 tensor(s) that the other layers hold are missing: bert.encoder.layer.2.attention.self.query.bias; "
                    "from_pretrained initializes them at random"]
    nobias = {n: s for n, s in shapes.items() if n != "classifier.bias"}
    msgs = [f.message for f in check_family(raw, "bert", nobias)]
    assert msgs == ["1 bias tensor(s) are missing beside their weights: classifier.bias; "
                    "from_pretrained initializes them afresh and the trained values are lost"]
    msgs = [f.message for f in check_family(dict(raw, model_type="roberta"), "roberta", shapes)]
    assert len(msgs) == 1 and "tensor names start with 'bert.'" in msgs[0]
    # T5's relative attention bias lives in block 0 only: not a missing tensor
    raw, shapes = _load(tiny / "t5")
    assert sum("relative_attention_bias" in n for n in shapes) == 2 and check_family(raw, "t5", shapes) == []


def test_a_rope_type_the_installed_transformers_lacks_is_an_error(tiny, tmp_path):
    """A config written by a newer transformers may name a rope type the installed one does
    not compute: from_pretrained raises (measured here), so check must fail. A model
    without rotary embeddings never reads the key."""
    import shutil

    d = shutil.copytree(tiny / "llama", tmp_path / "llama")
    cfg = json.loads((d / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "superrope", "rope_theta": 10000.0, "factor": 2.0}
    (d / "config.json").write_text(json.dumps(cfg))
    probe = ("import sys, transformers\n"
             "try:\n    transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])\nexcept Exception as e:\n"
             "    print('RAISES', type(e).__name__)\nelse:\n    print('LOADS')\n")
    p = subprocess.run([sys.executable, "-c", probe, str(d)], capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "RAISES KeyError" in p.stdout, p.stdout + p.stderr[-2000:]
    f = [x for x in api.check(d).errors if x.code == "version-unsatisfied"]
    assert [x.message for x in f] == [
        "the installed transformers 5.24.0 does not know rope_parameters rope_type 'superrope': from_pretrained raises"]
    assert "llama3" in f[0].hint and "upgrade transformers" in f[0].hint
    cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    (d / "config.json").write_text(json.dumps(cfg))
    assert "version-unsatisfied" not in api.check(d).codes()
    b = shutil.copytree(tiny / "bert", tmp_path / "bert")
    cfg = json.loads((b / "config.json").read_text())
    cfg["rope_scaling"] = {"type": "superrope"}  # BERT has no rotary embeddings: transformers ignores it
    (b / "config.json").write_text(json.dumps(cfg))
    assert "version-unsatisfied" not in api.check(b).codes()
