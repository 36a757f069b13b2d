"""The core promises, tested in-process and fast (scripts/mutation.py runs these first).

* The digest comparison compares whole digests: a signed manifest whose recorded digest
  differs from the file's only after its 16th hex character fails verify.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from manifest import api
from manifest.document import Manifest
from manifest.options import Options
from manifest.signing import generate, keyid, sign

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> tuple[Path, Any, dict[str, Any]]:
    """The real MiniLM (weights hard-linked, never written), its signed manifest's document, its key."""
    d = tmp_path_factory.mktemp("core") / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__", WEIGHTS))
    os.link(minilm_src / WEIGHTS, d / WEIGHTS)
    key = generate("ed25519")
    m = api.create(d, key=key, write=False, options=Options(use_cache=False))
    return d, key, m.to_document()


def _resigned(doc: dict[str, Any], key: Any) -> Manifest:
    m = Manifest.from_document({"signatures": [], "signed": doc["signed"]})
    m.signatures = [sign(m.signed_bytes(), key)]
    return m


def _edit_hex(digest: str, at: int) -> str:
    return digest[:at] + ("0" if digest[at] != "0" else "1") + digest[at + 1 :]


@pytest.mark.parametrize("rel", [WEIGHTS, "vocab.txt", "1_Pooling/config.json"])
@pytest.mark.parametrize("at", [16, 40, 63])
def test_a_digest_differing_only_after_its_16th_hex_character_fails(signed: tuple[Path, Any, dict[str, Any]], rel: str, at: int) -> None:
    """Re-signed with the trusted key, so the signature passes and only the full digest
    comparison can catch the edit (a comparison of a prefix would pass it)."""
    d, key, doc = signed
    doc = json.loads(json.dumps(doc))
    real = doc["signed"]["files"][rel]["sha256"]
    doc["signed"]["files"][rel]["sha256"] = edited = _edit_hex(real, at)
    assert edited[:16] == real[:16] and edited != real
    report = api.verify(d, _resigned(doc, key), options=Options(keys=[key.public_key()], use_cache=False))
    assert report.facts["trusted_keyids"] == [keyid(key.public_key())]  # the signature is good
    assert [(f.code, f.path, f.expected, f.actual) for f in report.findings if f.is_error] == [("digest-mismatch", rel, edited, real)]
    assert report.exit_status == 1


def test_the_unedited_resigned_manifest_verifies(signed: tuple[Path, Any, dict[str, Any]]) -> None:
    """The baseline of the test above: re-signing alone changes nothing."""
    d, key, doc = signed
    report = api.verify(d, _resigned(doc, key), options=Options(keys=[key.public_key()], use_cache=False))
    assert report, [f.one_line() for f in report.findings]
    assert "digests" in report.checked and report.stats["files_hashed"] == len(doc["signed"]["files"])
