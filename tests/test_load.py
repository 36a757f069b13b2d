"""The opt-in load tier on real checkpoints: the structural load (meta device vs the
safetensors headers) and the full load (from_pretrained + one forward pass).

Each load runs torch in a child process; the children for the whole module are started
together once (module fixture), and the tests below read their reports."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import copy_checkpoint

from manifest import api
from manifest.report import Report

pytestmark = pytest.mark.load


def _edit(path: Path, **kw: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(kw)
    path.write_text(json.dumps(doc, indent=2))


@pytest.fixture(scope="module")
def loads(tokcls_build: Path, minilm_src: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    base = tmp_path_factory.mktemp("loads")
    clean = tokcls_build / "clean"
    wrong = copy_checkpoint(clean, base / "wrong")
    _edit(wrong / "config.json", intermediate_size=1024)  # the cheap check sees it too; the load tier is run directly below
    fewer = copy_checkpoint(clean, base / "fewer")
    _edit(fewer / "config.json", num_hidden_layers=4)  # 6 layers of weights: 2 would be dropped silently
    custom = copy_checkpoint(clean, base / "custom")  # a model class shipped as code with the checkpoint
    (custom / "modeling_custom.py").write_text(CUSTOM_CODE)
    _edit(custom / "config.json", model_type="custom-bert", architectures=["CustomTagger"],
          auto_map={"AutoConfig": "modeling_custom.CustomConfig", "AutoModelForTokenClassification": "modeling_custom.CustomTagger"})
    jobs = {
        "structural-minilm": (minilm_src, "structural", False),
        "full-clean": (clean, "full", False),
        "structural-custom-trusted": (custom, "structural", True),
    }
    direct = {
        "full-wrong": (wrong, "full"),  # the full tier compares on the meta device first, then loads
        "structural-fewer": (fewer, "structural"),
    }
    old = os.environ.get("HF_MODULES_CACHE")
    os.environ["HF_MODULES_CACHE"] = str(base / "hf_modules")  # transformers copies trusted code here, not into ~/.cache
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {k: pool.submit(api.check, d, load=mode, trust_remote_code=trust) for k, (d, mode, trust) in jobs.items()}
            futures.update({k: pool.submit(_load_tier_only, d, mode) for k, (d, mode) in direct.items()})
            return {k: f.result() for k, f in futures.items()}
    finally:
        if old is None:
            os.environ.pop("HF_MODULES_CACHE", None)
        else:
            os.environ["HF_MODULES_CACHE"] = old


def _load_tier_only(d: Path, mode: str) -> Report:
    """The load tier alone (``check`` skips it once a cheaper check has failed, as it does here)."""
    from manifest.inventory import discover
    from manifest.load import run_load
    from manifest.options import Options

    report = Report("check", str(d))
    report.extend(run_load(discover(d), Options(load=mode), report))
    return report


CUSTOM_CODE = """from transformers import BertConfig, BertForTokenClassification


class CustomConfig(BertConfig):
    model_type = "custom-bert"


class CustomTagger(BertForTokenClassification):
    config_class = CustomConfig
"""


def test_structural_load_of_a_base_model_passes(loads):
    """MiniLM (BertModel, saved by transformers 4.8 with the position_ids buffer) loads structurally."""
    rep = loads["structural-minilm"]
    assert rep.ok and not rep.findings, [f.one_line() for f in rep.findings]
    assert "load:structural" in rep.checked
    facts = rep.facts["load:structural"]
    assert facts["class"] == "BertModel" and facts["expected_tensors"] == 103 and facts["weights_tensors"] == 104


def test_load_finds_shapes_the_config_does_not_describe(loads):
    rep = loads["full-wrong"]
    found = [f for f in rep.errors if f.code == "load-mismatch"]
    assert len(found) == 1 and found[0].hint
    assert found[0].message.startswith("18 tensor(s) have another shape than BertForTokenClassification builds from config.json")
    shapes = {m["name"]: (m["expected"], m["actual"]) for m in found[0].actual}
    assert shapes["bert.encoder.layer.0.intermediate.dense.weight"] == ([1024, 384], [1536, 384])
    assert shapes["bert.encoder.layer.5.output.dense.weight"] == ([384, 1024], [384, 1536])
    failed = [f for f in rep.errors if f.code == "load-failed"]
    assert len(failed) == 1 and failed[0].message.startswith("full load failed (load): RuntimeError")
    assert "restore the config" in failed[0].hint


def test_structural_layer_mismatch_names_the_config_key(loads, tokcls):
    rep = loads["structural-fewer"]
    found = [f for f in rep.findings if f.code == "load-mismatch"]
    assert [f.severity.value for f in found] == ["error"], [f.one_line() for f in rep.findings]
    assert found[0].message.startswith("config.json num_hidden_layers is 4, but the weights hold 6 layers: layers 4-5 would be silently dropped")
    assert found[0].hint == "set num_hidden_layers to 6 in config.json (the layer count the weights were trained with)"
    assert "architectures" not in found[0].hint
    _edit(tokcls / "config.json", num_hidden_layers=4)  # and check, without --load, says it first
    f = api.check(tokcls, load="structural").errors
    assert [x.code for x in f] == ["shape-config-mismatch"] and "set num_hidden_layers to 6" in f[0].hint


def test_full_load_passes_and_reports_time_and_memory(loads):
    rep = loads["full-clean"]
    assert rep.ok and not rep.findings, [f.one_line() for f in rep.findings]
    assert "load:full" in rep.checked
    facts = rep.facts["load:full"]
    assert facts["class"] == "BertForTokenClassification"
    assert facts["output_shape"] == [1, facts["tokens"], 5] and facts["tokens"] == 12
    assert rep.stats["load:full_peak_rss_bytes"] > 100 * 2**20  # a real model was in memory
    assert rep.stats["load:full_forward_seconds"] > 0 and rep.stats["load:full_model_seconds"] > 0
    from manifest.render import render_text

    text = render_text(rep)
    assert "  load:full: BertForTokenClassification loaded in " in text and "(12 tokens -> [1, 12, 5]), peak RSS " in text


def test_trusted_remote_code_loads_structurally(loads):
    rep = loads["structural-custom-trusted"]
    assert rep.ok, [f.one_line() for f in rep.findings]
    assert [f.code for f in rep.findings] == ["remote-code"]  # still shown, as a warning
    assert "(allowed by --trust-remote-code)" in rep.findings[0].message
    assert rep.facts["load:structural"]["class"] == "CustomTagger"
    assert rep.facts["load:structural"]["expected_tensors"] == 103


def test_remote_code_never_runs_without_trust(minilm, tmp_path, cli):
    marker = tmp_path / "ran"
    (minilm / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit(3)\n")
    _edit(minilm / "config.json", architectures=["EvilModel"], auto_map={"AutoModel": "modeling_evil.EvilModel"})
    for mode in ("structural", "full"):
        r = cli("check", minilm, "--load", mode, "--json")
        assert r.code == 1, r.err
        rep = json.loads(r.out)
        codes = {f["code"]: f for f in rep["findings"]}
        assert codes["remote-code"]["severity"] == "warning"
        assert "custom code" in codes["load-failed"]["message"] and "--trust-remote-code" in codes["load-failed"]["hint"]
    assert not marker.exists()


def test_verify_with_structural_load_of_the_fine_tuned_model(tokcls, cli):
    assert cli("create", tokcls, "-q").code == 0
    r = cli("verify", "--no-signature", tokcls, "--load", "structural", "--json")
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert "load:structural" in rep["checked"] and rep["findings"] == []
    assert rep["facts"]["load:structural"]["class"] == "BertForTokenClassification"
    assert rep["facts"]["load:structural"]["expected_tensors"] == rep["facts"]["load:structural"]["weights_tensors"] == 103


def test_load_tier_with_a_relative_dir(tokcls, cli):
    """`--load` with a relative DIR: the loader child runs in its own empty directory, so it
    must be given the absolute path (check and verify, run from the checkpoint's parent)."""
    rel = tokcls.name
    r = cli("check", rel, "--load", "structural", "--json", cwd=tokcls.parent)
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert "load:structural" in rep["checked"] and rep["facts"]["load:structural"]["class"] == "BertForTokenClassification"
    assert cli("create", rel, "-q", cwd=tokcls.parent).code == 0
    r = cli("verify", rel, "--no-signature", "--load", "structural", "--json", cwd=tokcls.parent)
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["facts"]["load:structural"]["expected_tensors"] == 103
