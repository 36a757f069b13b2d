"""The JSON Schemas in schemas/ describe what the tool really writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from manifest import api
from manifest.findings import all_codes
from manifest.render import FORMATTERS, Format

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator whose registry holds every schema in schemas/, so the manifest
    schema's $refs to the section schemas resolve offline."""
    from referencing import Registry, Resource

    schemas = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return jsonschema.Draft202012Validator(schemas[name], registry=registry)


def test_real_manifest_validates(minilm, keypair):
    from manifest.signing import load_private_key

    api.create(minilm, key=load_private_key(keypair[0]), model_id="sentence-transformers/all-MiniLM-L6-v2", revision="main")
    doc = json.loads((minilm / "manifest.json").read_text())
    errors = list(_validator("manifest.schema.json").iter_errors(doc))
    assert errors == []
    assert {"weights", "tokenizer", "config", "requirements"} <= set(doc["signed"])


def test_manifest_schema_checks_the_sections(minilm):
    """The sections are validated through their own schemas, not accepted as any object."""
    api.create(minilm)
    doc = json.loads((minilm / "manifest.json").read_text())
    v = _validator("manifest.schema.json")
    for section in ("weights", "tokenizer", "config", "requirements"):
        bad = json.loads(json.dumps(doc))
        bad["signed"][section] = {"unexpected": True}
        assert not v.is_valid(bad), section


def test_schema_rejects_unsafe_path_and_bad_digest():
    v = _validator("manifest.schema.json")
    base = {
        "signatures": [],
        "signed": {
            "_type": "model-manifest", "version": 1, "created_at": "2026-01-01T00:00:00Z",
            "created_by": {"name": "model-manifest", "version": "0"},
            "hashing": {"algorithms": ["sha256"]},
            "files": {"ok/x.json": {"size": 1, "sha256": "0" * 64}},
        },
    }
    assert v.is_valid(base)
    for bad in ("../x", "/abs", "a\\b", "a/./b", "a//b"):
        doc = json.loads(json.dumps(base))
        doc["signed"]["files"] = {bad: {"size": 1, "sha256": "0" * 64}}
        assert not v.is_valid(doc), bad
    doc = json.loads(json.dumps(base))
    doc["signed"]["files"]["ok/x.json"]["sha256"] = "XYZ"
    assert not v.is_valid(doc)


@pytest.mark.parametrize("damage", ["none", "delete", "extra"])
def test_reports_validate(minilm, cli, damage):
    cli("create", minilm)
    if damage == "delete":
        (minilm / "vocab.txt").unlink()
    elif damage == "extra":
        (minilm / "new.txt").write_text("x")
    v = _validator("report.schema.json")
    for cmd in (["verify", minilm, "--json"], ["verify", minilm, "--json", "--no-signature"], ["check", minilm, "--json"]):
        r = cli(*cmd)
        assert r.code in (0, 1), r.err
        rep = json.loads(r.out)
        assert list(v.iter_errors(rep)) == []
        assert rep["exit_status"] == r.code
        assert rep["integrity_only"] is ("--no-signature" in cmd)


def test_generated_docs_and_schema_enum_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


def test_every_code_documented_with_meaning():
    text = (ROOT / "docs" / "codes.md").read_text()
    for code, info in all_codes().items():
        assert f"| `{code}` |" in text
        assert info.meaning.strip()


def test_every_format_has_a_formatter():
    assert set(FORMATTERS) == set(Format)
