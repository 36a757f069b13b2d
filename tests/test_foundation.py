"""Issue 2: the first complete loop on the real bundled checkpoint - create, sign, verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from manifest import api
from manifest.document import Manifest
from manifest.errors import ManifestInvalid, UsageError
from manifest.options import Options
from manifest.signing import generate, load_private_key, load_public_key, write_keypair

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # the Hub's lfs.sha256


def _flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_manifest_of_real_checkpoint_records_hub_sha256(minilm, cli):
    r = cli("create", minilm)
    assert r.code == 0, r.err
    doc = json.loads((minilm / "manifest.json").read_text())
    entry = doc["signed"]["files"]["model.safetensors"]
    assert entry["sha256"] == MINILM_SHA256
    assert entry["size"] == 90868376
    # every regular file is recorded, the manifest itself is not
    assert set(doc["signed"]["files"]) == {
        p.relative_to(minilm).as_posix() for p in minilm.rglob("*") if p.is_file() and p.name != "manifest.json"
    }


def test_sha256_equals_sha256sum(minilm):
    m = api.create(minilm, write=False)
    out = subprocess.run(["sha256sum", "config.json", "vocab.txt"], cwd=minilm, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        digest, name = line.split()
        assert m.files[name].digests["sha256"] == digest


def test_zero_byte_file_is_recorded(minilm):
    (minilm / "empty.txt").write_bytes(b"")
    m = api.create(minilm, write=False)
    assert m.files["empty.txt"].size == 0
    assert m.files["empty.txt"].digests["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_git_and_cache_dirs_are_left_out_by_recorded_rules(minilm):
    (minilm / ".git").mkdir()
    (minilm / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (minilm / ".cache" / "huggingface").mkdir(parents=True)
    (minilm / ".cache" / "huggingface" / "x.lock").write_text("")
    m = api.create(minilm)
    assert not [p for p in m.files if p.startswith((".git/", ".cache/"))]
    assert ".git/" in m.ignore and "manifest.json" in m.ignore
    assert api.verify(minilm, integrity_only=True).ok


INTEGRITY = Options(integrity_only=True)  # no trust anchor here: the file set is what is tested


def test_git_and_cache_dirs_are_ignored_at_the_root_only(minilm):
    """A nested ``.git/`` or ``.cache/`` is an ordinary part of the tree: recorded by create,
    and an extra entry when it appears after signing (model_signing hashes it too)."""
    (minilm / "1_Pooling" / ".git").mkdir()
    (minilm / "1_Pooling" / ".git" / "kept.py").write_text("x = 1\n")
    m = api.create(minilm)
    assert "1_Pooling/.git/kept.py" in m.files
    assert api.verify(minilm, options=INTEGRITY).ok
    (minilm / "1_Pooling" / ".git" / "evil.py").write_text("import os\n")
    (minilm / "1_Pooling" / ".cache").mkdir()
    (minilm / "1_Pooling" / ".cache" / "x.json").write_text("{}")
    r = api.verify(minilm, options=INTEGRITY)
    assert not r.ok
    extra = sorted(f.path for f in r.findings if f.code == "extra-file")
    assert extra == ["1_Pooling/.cache/x.json", "1_Pooling/.git/evil.py"]


def test_old_manifest_git_rule_now_means_the_root_only(minilm):
    """A manifest written when ``.git/`` meant any depth keeps verifying its tree; its rule
    now leaves out only the root's .git/."""
    (minilm / ".git").mkdir()
    (minilm / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    m = api.create(minilm, write=False)
    assert m.ignore[:2] == [".git/", ".cache/"]
    (minilm / "manifest.json").write_text(m.dumps())
    assert api.verify(minilm, options=INTEGRITY).ok
    (minilm / "1_Pooling" / ".git").mkdir()
    (minilm / "1_Pooling" / ".git" / "evil.py").write_text("import os\n")
    errors = api.verify(minilm, options=INTEGRITY).errors
    assert [f.path for f in errors if f.code == "extra-file"] == ["1_Pooling/.git/evil.py"]


def test_is_ignored_rules():
    from manifest.inventory import is_ignored

    rules = (".git/", ".cache/", "manifest.json", "sub/dir/")
    assert is_ignored(".git/HEAD", rules) and is_ignored(".cache/huggingface/x.lock", rules)
    assert is_ignored("sub/dir/x", rules) and is_ignored("manifest.json", rules)
    for rel in ("1_Pooling/.git/evil.py", "a/.cache/x", "x.git/y", "sub/manifest.json", ".git", "sub/dirx/y", "other/sub/dir/x"):
        assert not is_ignored(rel, rules), rel


def test_clean_signed_checkpoint_verifies(minilm, cli, keypair):
    priv, pub = keypair
    assert cli("create", minilm, "--key", priv, "--model-id", "sentence-transformers/all-MiniLM-L6-v2").code == 0
    r = cli("verify", minilm, "--key", pub, "--json")
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert rep["verdict"] == "pass" and rep["findings"] == []
    assert {"signature", "file-set", "sizes", "digests"} <= set(rep["checked"])


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256"])
def test_both_key_types_sign_and_verify(minilm, tmp_path, kind):
    write_keypair(generate(kind), tmp_path / "a.pem", tmp_path / "a.pub")
    api.create(minilm, key=load_private_key(tmp_path / "a.pem"))
    assert api.verify(minilm, keys=[load_public_key(tmp_path / "a.pub")]).ok


def test_openssl_generated_keys_work(minilm, tmp_path):
    """Keys made by openssl (PKCS#8 ed25519, traditional EC with parameters) are accepted."""
    ed = tmp_path / "ed.pem"
    ec = tmp_path / "ec.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", ed], check=True, capture_output=True)
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-out", ec], check=True, capture_output=True)
    for priv in (ed, ec):
        pub = priv.with_suffix(".pub")
        subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True, capture_output=True)
        api.create(minilm, key=load_private_key(priv))
        assert api.verify(minilm, keys=[load_public_key(pub)]).ok


def test_flipped_bit_in_weights_fails_with_digest_mismatch(minilm, cli, keypair):
    priv, pub = keypair
    cli("create", minilm, "--key", priv)
    _flip_bit(minilm / "model.safetensors", 50_000_000)  # deep inside tensor data: headers stay valid
    r = cli("verify", minilm, "--key", pub, "--json")
    assert r.code == 1
    found = json.loads(r.out)["findings"]
    assert [(f["code"], f["path"]) for f in found] == [("digest-mismatch", "model.safetensors")]


def test_deleted_file_fails_with_missing_file(minilm, cli, keypair):
    priv, pub = keypair
    cli("create", minilm, "--key", priv)
    (minilm / "vocab.txt").unlink()
    r = cli("verify", minilm, "--key", pub, "--json")
    assert r.code == 1
    assert ("missing-file", "vocab.txt") in [(f["code"], f.get("path")) for f in json.loads(r.out)["findings"]]


def test_added_file_fails_with_extra_file(minilm, cli, keypair):
    priv, pub = keypair
    cli("create", minilm, "--key", priv)
    (minilm / "1_Pooling" / "extra.bin").write_bytes(b"x")
    r = cli("verify", minilm, "--key", pub, "--json")
    assert r.code == 1
    assert ("extra-file", "1_Pooling/extra.bin") in [(f["code"], f.get("path")) for f in json.loads(r.out)["findings"]]


def test_edited_manifest_byte_fails_signature(minilm, cli, keypair):
    priv, pub = keypair
    cli("create", minilm, "--key", priv)
    mf = minilm / "manifest.json"
    text = mf.read_text()
    # change one recorded size by one digit: still a well-formed manifest, no longer the signed one
    edited = text.replace('"size": 612}', '"size": 613}', 1)
    assert edited != text
    mf.write_text(edited)
    r = cli("verify", minilm, "--key", pub, "--json")
    assert r.code == 1
    assert "signature-invalid" in [f["code"] for f in json.loads(r.out)["findings"]]


@pytest.mark.parametrize("addition", [{"expires": None}, {"model": {}}, {"x-note": "added after signing"}])
def test_a_member_added_after_signing_fails_the_signature(minilm, keypair, addition):
    """The signature covers the "signed" object as received, canonicalized: a member
    added later fails it even when it means nothing to this version (null, empty, unknown)."""
    priv, pub = keypair
    api.create(minilm, key=load_private_key(priv))
    mf = minilm / "manifest.json"
    assert api.verify(minilm, keys=[load_public_key(pub)]).ok
    doc = json.loads(mf.read_text())
    doc["signed"].update(addition)
    mf.write_text(json.dumps(doc))
    assert api.verify(minilm, keys=[load_public_key(pub)]).codes() == ["signature-invalid"]


def test_wrong_public_key_is_untrusted(minilm, cli, keypair, tmp_path):
    priv, _pub = keypair
    write_keypair(generate("ed25519"), tmp_path / "other.pem", tmp_path / "other.pub")
    cli("create", minilm, "--key", priv)
    r = cli("verify", minilm, "--key", tmp_path / "other.pub", "--json")
    assert r.code == 1
    assert [f["code"] for f in json.loads(r.out)["findings"]] == ["untrusted-key"]


def test_unsigned_manifest_with_key_is_signature_missing(minilm, cli, keypair):
    _priv, pub = keypair
    cli("create", minilm)
    r = cli("verify", minilm, "--key", pub, "--json")
    assert r.code == 1
    assert [f["code"] for f in json.loads(r.out)["findings"]] == ["signature-missing"]


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_without_a_trust_anchor_verify_fails_but_runs_every_other_check(minilm, cli, keypair, signed):
    """No trust anchor, no pass: a CI gate reading only the exit code must not pass a
    manifest that anyone could have written (or signed)."""
    priv, _pub = keypair
    cli("create", minilm, *(["--key", priv] if signed else []))
    r = cli("verify", minilm, "--json")
    assert r.code == 1
    rep = json.loads(r.out)
    assert [(f["code"], f["severity"]) for f in rep["findings"]] == [("no-trust-anchor", "error")]
    assert "--no-signature" in rep["findings"][0]["hint"] and "--key" in rep["findings"][0]["hint"]
    assert ("is not signed" in rep["findings"][0]["message"]) is not signed
    assert "signature" in {n["check"] for n in rep["not_checked"]} and "signature" not in rep["checked"]
    assert "digests" in rep["checked"] and rep["integrity_only"] is False  # the other checks still ran
    text = cli("verify", minilm)
    assert text.code == 1 and "error[no-trust-anchor]" in text.out and "FAILED" in text.out
    assert not api.verify(minilm)
    assert api.verify(minilm).codes() == ["no-trust-anchor"]
    # --fail-fast: nothing else could make the run pass, so it stops at once
    fast = json.loads(cli("verify", minilm, "--json", "--fail-fast").out)
    assert [f["code"] for f in fast["findings"]] == ["no-trust-anchor"] and fast["stopped_early"] is True
    assert "digests" not in fast["checked"]
    # and a damaged file is still reported beside it
    (minilm / "README.md").write_text("changed")
    assert sorted(api.verify(minilm, use_cache=False).codes()) == ["no-trust-anchor", "size-mismatch"]


def test_key_carried_in_file_is_never_trusted(minilm, keypair, tmp_path):
    """A manifest re-signed by an attacker who rewrote the keyid to the trusted one fails."""
    priv, pub = keypair
    api.create(minilm, key=load_private_key(priv))
    mf = minilm / "manifest.json"
    doc = json.loads(mf.read_text())
    write_keypair(generate("ed25519"), tmp_path / "evil.pem", tmp_path / "evil.pub")
    m = Manifest.from_document(doc)
    from manifest.signing import sign

    forged = sign(m.signed_bytes(), load_private_key(tmp_path / "evil.pem"))
    forged["keyid"] = doc["signatures"][0]["keyid"]
    doc["signatures"] = [forged]
    mf.write_text(json.dumps(doc))
    rep = api.verify(minilm, keys=[load_public_key(pub)])
    assert rep.codes() == ["signature-invalid"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b'{"signed": {}, "signatures": []}', b"[1, 2]", b'{"signed": 1, "signatures": [], "x": 2}'],
    ids=["broken-json", "empty", "empty-signed", "array", "extra-key"],
)
def test_malformed_manifest_exits_2_one_line(minilm, cli, content):
    (minilm / "manifest.json").write_bytes(content)
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 2
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[manifest-invalid]"), r.err
    assert "Traceback" not in r.err


def test_missing_manifest_exits_2(minilm, cli):
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 2 and "manifest create" in r.err


def test_fail_fast_stops_at_first_error(minilm, cli):
    cli("create", minilm)
    (minilm / "vocab.txt").unlink()
    (minilm / "README.md").unlink()
    full = json.loads(cli("verify", minilm, "--json", "--no-signature").out)
    fast = json.loads(cli("verify", minilm, "--json", "--no-signature", "--fail-fast").out)
    assert len(full["findings"]) == 2
    assert len(fast["findings"]) == 1 and fast["stopped_early"] is True


def test_manifest_is_pretty_one_file_per_line_and_round_trips(minilm):
    m = api.create(minilm)
    text = (minilm / "manifest.json").read_text()
    lines = text.splitlines()
    for p in m.files:  # the file table: one line per file, size and digests on it
        assert sum(1 for line in lines if json.dumps(p) + ': {"sha256": ' in line) == 1
    assert list(m.chunks) == ["model.safetensors"]  # 90 MB: two chunks of 64 MiB, one line
    assert sum(1 for line in lines if '"model.safetensors": ["' in line) == 1
    again = Manifest.loads(text.encode())
    assert again.signed_bytes() == m.signed_bytes()


def test_output_elsewhere_and_m_option(minilm, tmp_path, cli):
    out = tmp_path / "elsewhere.json"
    assert cli("create", minilm, "-o", out).code == 0
    assert not (minilm / "manifest.json").exists()
    assert cli("verify", minilm, "-m", out, "--no-signature").code == 0


def test_private_key_mode_0600(tmp_path, cli):
    r = cli("keygen", "-o", tmp_path / "key")
    assert r.code == 0
    assert ((tmp_path / "key.pem").stat().st_mode & 0o777) == 0o600
    assert cli("keygen", "-o", tmp_path / "key").code == 2  # never overwrites


def test_passphrase_protected_key(tmp_path, minilm, cli):
    env = {"KEYPASS": "correct horse"}
    assert cli("keygen", "-o", tmp_path / "key", "--passphrase-env", "KEYPASS", env=env).code == 0
    assert b"ENCRYPTED" in (tmp_path / "key.pem").read_bytes()
    r = cli("create", minilm, "--key", tmp_path / "key.pem")
    assert r.code == 2 and "MANIFEST_KEY_PASSPHRASE" in r.err
    r = cli("create", minilm, "--key", tmp_path / "key.pem", env={"MANIFEST_KEY_PASSPHRASE": "correct horse"})
    assert r.code == 0, r.err
    assert cli("verify", minilm, "--key", tmp_path / "key.pub.pem").code == 0


def test_create_refuses_manifest_invalid_errors_not_malformed(minilm):
    with pytest.raises(ManifestInvalid):
        Manifest.loads(b'{"signed": {"_type": "model-manifest", "version": 1}, "signatures": []}')


def test_default_path_imports_no_torch_or_transformers(minilm, cli):
    cli("create", minilm)
    code = (
        "import sys; from manifest.cli import main\n"
        "sys.argv=['manifest',*sys.argv[2:],sys.argv[1],'-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    rc=e.code\n"
        "bad=[m for m in ('torch','transformers') if m in sys.modules]\n"
        "print('HEAVY', bad)\n"
    )
    for cmd in (["create"], ["verify", "--no-signature"]):
        out = subprocess.run([sys.executable, "-c", code, str(minilm), *cmd], capture_output=True, text=True, timeout=120, check=False).stdout
        assert "HEAVY []" in out, out


def test_verify_require_checks_the_environment(minilm, cli):
    """A deploy gate can demand library versions at verify time, read without importing them."""
    cli("create", minilm)
    r = cli("verify", minilm, "--require", "packaging>=9999", "--json", "--no-signature")
    assert r.code == 1
    found = json.loads(r.out)["findings"]
    assert [f["code"] for f in found if f["severity"] == "error"] == ["version-unsatisfied"]
    assert cli("verify", minilm, "--require", "packaging>=1", "--no-signature").code == 0
    assert cli("verify", minilm, "--require", "not a specifier ((", "--no-signature").code == 2


def test_no_signature_is_an_explicit_integrity_only_check(minilm, cli, keypair):
    """--no-signature checks the files against an unsigned manifest; with --key it is a usage error."""
    priv, pub = keypair
    cli("create", minilm)
    r = cli("verify", minilm, "--no-signature", "--json")
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert "signature" not in rep["checked"] and rep["integrity_only"] is True and rep["findings"] == []
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 0 and f"verify {minilm}: verified (integrity only, authenticity not checked)" in r.out.splitlines()
    assert api.verify(minilm, integrity_only=True).ok
    # a signed manifest too: its signature is simply not checked
    cli("create", minilm, "--key", priv)
    assert cli("verify", minilm, "--no-signature", "-q").code == 0
    _flip_bit(minilm / "model.safetensors", 50_000_000)
    r = cli("verify", minilm, "--no-signature", "--no-cache", "--json")
    assert r.code == 1
    assert [f["code"] for f in json.loads(r.out)["findings"]] == ["digest-mismatch"]
    r = cli("verify", minilm, "--no-signature", "--no-cache", "--format", "markdown")
    assert r.code == 1 and "FAILED (1 error(s)) (integrity only, authenticity not checked)" in r.out
    r = cli("verify", minilm, "--no-signature", "--key", pub)
    assert r.code == 2
    assert r.err.startswith("error[usage]:") and "--no-signature" in r.err and r.out == ""
    with pytest.raises(UsageError):
        api.verify(minilm, keys=[load_public_key(pub)], integrity_only=True)
