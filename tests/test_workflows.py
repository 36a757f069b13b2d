"""The release and deploy loop as a user runs it: GitHub Actions annotations and job
summary, release claims (model id, revision), and the Python API for deploy code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def released(cli, minilm: Path, keypair) -> Path:
    priv, _ = keypair
    r = cli("create", minilm, "--key", priv, "--model-id", REPO, "--revision", "v1.0", "--expires", "2099-01-01T00:00:00Z", "-q")
    assert r.code == 0, r.err
    return minilm


def test_github_format_annotates_failing_files_and_writes_the_job_summary(cli, released: Path, keypair, tmp_path: Path) -> None:
    _, pub = keypair
    summary = tmp_path / "summary.md"
    r = cli("verify", released, "--key", pub, "--format", "github", "-q", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.code == 0, r.out + r.err
    assert "::error" not in r.out and "verified" in r.out
    assert summary.read_text().startswith(f"### ✅ manifest verify `{released}`: verified")
    (released / "vocab.txt").write_text("[PAD]\nhello\n")
    r = cli("verify", released, "--key", pub, "--format", "github", "-q", "--no-cache", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.code == 1
    ann = [line for line in r.out.splitlines() if line.startswith("::error ")]
    assert f"::error file={released}/vocab.txt,title=manifest verify%3A size-mismatch::" in "\n".join(ann)
    md = summary.read_text()
    assert md.count("### ") == 2 and "### ❌ manifest verify" in md  # appended, as GitHub expects
    assert "| error | `size-mismatch` | `vocab.txt` |" in md and "**Not checked:**" in md


def test_markdown_format_escapes_table_cells(cli, released: Path) -> None:
    (released / "we|ird.txt").write_text("x")
    r = cli("verify", "--no-signature", released, "--format", "markdown", "-q")
    assert r.code == 1
    assert "| error | `extra-file` | `we\\|ird.txt` |" in r.out


def test_release_claims_are_checked(cli, released: Path, keypair) -> None:
    _, pub = keypair
    ok = cli("verify", released, "--key", pub, "--expect-model", REPO, "--expect-revision", "v1.0", "-q", "--json")
    assert ok.code == 0 and {"model-id", "revision", "expiry", "signature"} <= set(json.loads(ok.out)["checked"])
    old = cli("verify", released, "--key", pub, "--expect-model", REPO, "--expect-revision", "v2.0", "-q", "--json")
    assert old.code == 1 and [f["code"] for f in json.loads(old.out)["findings"]] == ["revision-mismatch"]


def test_python_api_returns_a_report_or_raises(released: Path, keypair) -> None:
    import manifest
    from manifest import Options, VerificationFailed, load_public_key, verify, verify_or_raise

    _, pub = keypair
    opts = Options(keys=[load_public_key(pub)], expect_model=REPO)
    report = verify(released, options=opts)
    assert report and report.exit_status == 0 and "digests" in report.checked
    assert verify_or_raise(released, options=opts).ok
    with open(released / "model.safetensors", "r+b") as f:
        f.seek(1_000_000)
        f.write(b"\0\0\0\0")
    opts = Options(keys=[load_public_key(pub)], use_cache=False)
    report = manifest.verify(released, options=opts)
    assert not report and ("digest-mismatch", "model.safetensors") in [(f.code, f.path) for f in report.findings]
    with pytest.raises(VerificationFailed) as e:
        verify_or_raise(released, options=opts)
    assert e.value.exit_status == 1 and e.value.code == "digest-mismatch" and not e.value.report
    assert isinstance(e.value, manifest.ManifestError)


def test_import_manifest_stays_lean() -> None:
    import subprocess
    import sys

    code = "import sys, manifest; print(sorted(m for m in ('manifest.api', 'cryptography', 'huggingface_hub') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_verify_takes_a_loaded_manifest_and_the_file_it_came_from(minilm: Path) -> None:
    """The pre-commit hook loads the manifest once and hands it over with its path:
    the file is then left out of the file set, as when verify reads it itself."""
    from manifest import api

    api.create(minilm)
    (minilm / "manifest.json").rename(minilm / "release.manifest.json")  # a name the manifest's own ignore list lacks
    m = api.load_manifest(minilm / "release.manifest.json")
    rep = api.verify(minilm, m, manifest_path=minilm / "release.manifest.json", integrity_only=True)
    assert rep.ok, rep.findings
    assert rep.manifest == str(minilm / "release.manifest.json")
    assert [(f.code, f.path) for f in api.verify(minilm, m, integrity_only=True).findings] == [("extra-file", "release.manifest.json")]
