"""OpenSSF Model Signing (OMS v1.0) interop, both directions, with the REAL ``model_signing``
package (1.1.1) and the OMS conformance schemas and vectors (tests/assets/oms-v1.0, Apache-2.0)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

ASSETS = Path(__file__).resolve().parent / "assets" / "oms-v1.0"
SCHEMAS = ASSETS / "schemas" / "v1.0"
VECTORS = ASSETS / "test-vectors" / "v1.0"

pytest.importorskip("model_signing", reason="the interop tests need model-signing==1.1.1 (test extra)")


def model_signing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real model_signing CLI."""
    return subprocess.run([sys.executable, "-m", "model_signing", *map(str, args)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def validators():  # type: ignore[no-untyped-def]
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = {p.stem.split(".")[0]: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
    return {k: Draft202012Validator(s, registry=registry) for k, s in schemas.items()}


def ms_sign(model: Path, priv: Path, sig: Path) -> None:
    """``model_signing sign key`` in-process (the CLI's own steps: its signature file is outside the scope)."""
    import model_signing

    ignored = [sig.resolve().relative_to(model.resolve())] if sig.resolve().is_relative_to(model.resolve()) else []
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=ignored, ignore_git_paths=True)
    ).sign(model, sig)


def ms_verify(model: Path, sig: Path, pub: Path) -> Exception | None:
    """``model_signing verify key`` in-process: None when it verifies, else the exception
    by which it refused. Only its refusals count (``ValueError`` for a mismatch of files or
    key, cryptography's ``InvalidSignature`` for a bad signature): anything else, a misuse
    of its API included, is raised."""
    import model_signing

    ignored = [sig.resolve().relative_to(model.resolve())] if sig.resolve().is_relative_to(model.resolve()) else []
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=ignored, ignore_git_paths=True)
        ).verify(model, sig)
    except (ValueError, InvalidSignature) as e:
        return e
    return None


def ms_rejects(bad: tuple[Path, Path, Path], good: tuple[Path, Path, Path], kind: type[Exception], message: str) -> None:
    """model_signing accepts ``good`` (model, signature, public key) and refuses ``bad``, by
    the same call, with exactly ``kind`` and a message matching ``message``."""
    assert ms_verify(*good) is None, "model_signing refuses the good case"
    e = ms_verify(*bad)
    assert type(e) is kind, f"expected {kind.__name__}, got {e!r}"
    assert re.search(message, str(e)), f"{str(e)[:300]!r} does not match {message!r}"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> dict[str, Path]:
    """One real checkpoint with a manifest, our OMS export and a model_signing signature (read-only use)."""
    import shutil

    from manifest.api import create
    from manifest.oms import export_oms
    from manifest.options import Options
    from manifest.signing import generate, write_keypair

    base = tmp_path_factory.mktemp("oms")
    model = base / "model"
    shutil.copytree(minilm_src, model, ignore=shutil.ignore_patterns("__pycache__"))
    priv, pub = base / "ec.pem", base / "ec.pub.pem"
    write_keypair(generate("ecdsa-p256"), priv, pub)
    write_keypair(generate("ecdsa-p256"), base / "other.pem", base / "other.pub.pem")
    create(model, model_id="sentence-transformers/all-MiniLM-L6-v2", options=Options(use_cache=False))
    export_oms(model, priv, base / "ours.sig")
    ms_sign(model, priv, base / "theirs.sig")
    return {"model": model, "priv": priv, "pub": pub, "other": base / "other.pub.pem",
            "ours": base / "ours.sig", "theirs": base / "theirs.sig"}


@pytest.fixture
def damaged(signed: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the signed model that a test may damage."""
    import shutil

    dst = tmp_path / "model"
    shutil.copytree(signed["model"], dst)
    return dst


def _payload(bundle_path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(base64.b64decode(json.loads(bundle_path.read_text())["dsseEnvelope"]["payload"]))


def _codes(run) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    return [(f["code"], f.get("path")) for f in json.loads(run.out)["findings"]]


def test_exported_manifest_passes_real_model_signing_and_the_schemas(cli, signed, validators, tmp_path: Path) -> None:
    model, sig = signed["model"], tmp_path / "model.sig"
    r = cli("export", model, "--oms", sig, "--key", signed["priv"])
    assert r.code == 0, r.err
    assert ".gitattributes" in r.err  # said to be left out of the OMS scope
    bundle = json.loads(sig.read_text())
    validators["bundle"].validate(bundle)
    st = _payload(sig)
    validators["statement"].validate(st)
    assert st["predicateType"] == "https://model_signing/signature/v1.0"
    assert st["subject"][0]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    names = [x["name"] for x in st["predicate"]["resources"]]
    assert "model.safetensors" in names and "1_Pooling/config.json" in names and ".gitattributes" not in names
    assert {"manifest.json", ".gitattributes", ".git"} <= set(st["predicate"]["serialization"]["ignore_paths"])
    digest = {x["name"]: x["digest"] for x in st["predicate"]["resources"]}
    m = json.loads((model / "manifest.json").read_text())["signed"]["files"]
    assert digest["model.safetensors"] == m["model.safetensors"]["sha256"]
    # the real verifier's CLI accepts it
    v = model_signing("verify", "key", model, "--signature", sig, "--public_key", signed["pub"])
    assert v.returncode == 0 and "Verification succeeded" in v.stdout, v.stdout + v.stderr
    # and so do we
    r = cli("verify", model, "--oms", sig, "--key", signed["pub"], "-q")
    assert r.code == 0, r.out + r.err


def test_model_signing_signature_passes_manifest_verify(cli, signed, validators, tmp_path: Path) -> None:
    model, sig = signed["model"], tmp_path / "model.sig"
    s = model_signing("sign", "key", model, "--private_key", signed["priv"], "--signature", sig)
    assert s.returncode == 0, s.stdout + s.stderr
    validators["bundle"].validate(json.loads(sig.read_text()))
    r = cli("verify", model, "--oms", sig, "--key", signed["pub"], "--json", "-q")
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert "signature" in rep["checked"] and "digests" in rep["checked"]
    assert rep["facts"]["oms"]["files"] == len(_payload(sig)["predicate"]["resources"])


def test_signature_inside_the_model_directory_is_outside_the_scope(cli, signed, damaged: Path) -> None:
    inside = damaged / "model.sig"
    ms_sign(damaged, signed["priv"], inside)
    assert cli("verify", damaged, "--oms", inside, "--key", signed["pub"], "-q").code == 0
    assert cli("export", damaged, "--oms", inside, "--key", signed["priv"]).code == 0
    assert ms_verify(damaged, inside, signed["pub"]) is None


def test_tampered_file_fails_in_both_tools(cli, signed, damaged: Path) -> None:
    with open(damaged / "model.safetensors", "r+b") as f:
        f.seek(40_000_000)
        f.write(b"\x7f\x7f\x7f\x7f")
    for bundle in (signed["ours"], signed["theirs"]):
        ms_rejects((damaged, bundle, signed["pub"]), (signed["model"], bundle, signed["pub"]), ValueError,
                   r"^Signature mismatch: .*Hash mismatch for 'model\.safetensors'")
        r = cli("verify", damaged, "--oms", bundle, "--key", signed["pub"], "--json", "-q", "--no-cache")
        assert r.code == 1 and ("digest-mismatch", "model.safetensors") in _codes(r)


def test_tampered_bundle_fails_in_both_tools(cli, signed, damaged: Path, tmp_path: Path) -> None:
    """An attacker rewrites a digest (and the subject digest, to stay consistent) without the key."""
    pub = signed["pub"]
    bundle = json.loads(signed["ours"].read_text())
    st = _payload(signed["ours"])
    (damaged / "vocab.txt").write_text("[PAD]\nevil\n")
    new = hashlib.sha256((damaged / "vocab.txt").read_bytes()).hexdigest()
    for res in st["predicate"]["resources"]:
        if res["name"] == "vocab.txt":
            res["digest"] = new
    raw_digests = b"".join(bytes.fromhex(x["digest"]) for x in st["predicate"]["resources"])
    st["subject"][0]["digest"]["sha256"] = hashlib.sha256(raw_digests).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    bad = tmp_path / "bad.sig"
    bad.write_text(json.dumps(bundle))
    ms_rejects((damaged, bad, pub), (signed["model"], signed["ours"], pub), InvalidSignature, r"^$")
    r = cli("verify", damaged, "--oms", bad, "--key", pub, "--json", "-q")
    assert r.code == 1 and ("signature-invalid", None) in _codes(r)
    # without a key the files agree with the forged bundle, but no trust anchor means no pass
    r = cli("verify", damaged, "--oms", bad, "--json", "-q")
    assert r.code == 1 and _codes(r) == [("no-trust-anchor", None)]
    assert any(n["check"] == "signature" for n in json.loads(r.out)["not_checked"])
    # asked for explicitly, integrity only passes, and says what it did not check
    r = cli("verify", damaged, "--oms", bad, "-q", "--no-signature")
    assert r.code == 0 and f"verify {damaged}: verified (integrity only, authenticity not checked)" in r.out.splitlines(), r.out
    # a flipped signature byte
    bundle = json.loads(signed["ours"].read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    bad.write_text(json.dumps(bundle))
    ms_rejects((signed["model"], bad, pub), (signed["model"], signed["ours"], pub), InvalidSignature, r"^$")
    r = cli("verify", signed["model"], "--oms", bad, "--key", pub, "--json", "-q")
    assert r.code == 1 and ("signature-invalid", None) in _codes(r)


def test_real_model_signing_bundles_need_a_trust_anchor(cli, signed) -> None:
    """A bundle signed with any key (here: model_signing's own, and ours) passes only against
    a trusted key, or explicitly as integrity only."""
    for bundle in (signed["ours"], signed["theirs"]):
        r = cli("verify", signed["model"], "--oms", bundle, "--json", "-q")
        assert r.code == 1 and _codes(r) == [("no-trust-anchor", None)], r.out
        assert "digests" in json.loads(r.out)["checked"]  # the other checks still ran
        r = cli("verify", signed["model"], "--oms", bundle, "--json", "-q", "--no-signature")
        assert r.code == 0 and json.loads(r.out)["integrity_only"] is True
        assert cli("verify", signed["model"], "--oms", bundle, "-q", "--no-signature", "--key", signed["pub"]).code == 2
        assert cli("verify", signed["model"], "--oms", bundle, "-q", "--key", signed["pub"]).code == 0


def test_one_valid_dsse_signature_suffices(cli, signed, tmp_path: Path) -> None:
    """A garbage DSSE signature beside the valid one is a warning; alone, it fails."""
    bundle = json.loads(signed["theirs"].read_text())
    sigs = bundle["dsseEnvelope"]["signatures"]
    garbage = {"sig": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()}
    for order, want in (([garbage, *sigs], 0), ([*sigs, garbage], 0), ([garbage], 1)):
        bundle["dsseEnvelope"]["signatures"] = order
        p = tmp_path / "multi.sig"
        p.write_text(json.dumps(bundle))
        r = cli("verify", signed["model"], "--oms", p, "--key", signed["pub"], "--json", "-q")
        assert r.code == want, r.out + r.err
        found = [(f["code"], f["severity"]) for f in json.loads(r.out)["findings"]]
        assert found == ([("signature-ignored", "warning")] if want == 0 else [("signature-invalid", "error")])


def test_wrong_key_is_untrusted_in_both_tools(cli, signed) -> None:
    for bundle in (signed["ours"], signed["theirs"]):
        ms_rejects((signed["model"], bundle, signed["other"]), (signed["model"], bundle, signed["pub"]), ValueError,
                   r"^Key mismatch: The public key hash in the signature's verification material does not match")
        r = cli("verify", signed["model"], "--oms", bundle, "--key", signed["other"], "--json", "-q")
        assert r.code == 1 and ("untrusted-key", None) in _codes(r)


def test_export_refuses_an_ed25519_key(cli, signed, keypair, tmp_path: Path) -> None:
    priv, _ = keypair
    r = cli("export", signed["model"], "--oms", tmp_path / "x.sig", "--key", priv)
    assert r.code == 2 and r.err.count("\n") == 1 and "needs an ECDSA key (P-256, P-384 or P-521), not Ed25519" in r.err
    assert not (tmp_path / "x.sig").exists()


@pytest.mark.parametrize("vector", sorted(p.relative_to(VECTORS).as_posix() for p in VECTORS.glob("invalid*/*.json")))
def test_invalid_conformance_vectors_are_refused_cleanly(cli, vector: str, signed, tmp_path: Path) -> None:
    from manifest.errors import ManifestError
    from manifest.oms import verify_oms
    from manifest.options import Options
    from manifest.signing import load_public_key

    r = cli("verify", tmp_path, "--oms", VECTORS / vector)
    assert r.code == 2, (vector, r.out, r.err)
    assert r.err.count("\n") == 1 and r.err.startswith("error[manifest-") and "Traceback" not in r.err
    with pytest.raises(ManifestError) as e:  # the same with a key: refused before any signature check
        verify_oms(tmp_path, VECTORS / vector, options=Options(keys=[load_public_key(signed["pub"])]))
    assert e.value.exit_status == 2 and "\n" not in e.value.one_line()


@pytest.mark.parametrize("vector", sorted(p.name for p in (VECTORS / "valid").glob("*.json")))
def test_valid_conformance_vectors_parse_and_match_the_schema(vector: str, validators, signed, tmp_path: Path) -> None:
    from manifest.oms import read_bundle, verify_oms
    from manifest.options import Options
    from manifest.signing import load_public_key

    path = VECTORS / "valid" / vector
    validators["bundle"].validate(json.loads(path.read_text()))
    b = read_bundle(path)
    assert set(b.resources) == {"signme-1", "signme-2"}
    # no such files here: a clean verdict, not a crash
    r = verify_oms(tmp_path, path)
    assert not r and ("missing-file", "signme-1") in [(f.code, f.path) for f in r.findings]
    assert "signature" in r.not_checked
    # key, certificate and Sigstore bundles alike: no trust anchor, no pass
    assert r.codes()[-1] == "no-trust-anchor"
    hint = r.findings[-1].hint or ""
    assert {"key": "--key", "sigstore": "--identity ID --issuer URL", "certificate": "--ca"}[vector.split(".", maxsplit=1)[0]] in hint
    assert "--no-signature" in hint
    r = verify_oms(tmp_path, path, options=Options(integrity_only=True))
    assert "no-trust-anchor" not in r.codes() and r.integrity_only and "signature" in r.not_checked
    # with a key: the key bundle names another signer, and so does the certificate bundle's leaf; the
    # Sigstore bundle a signer identity that no key stands for
    opts = Options(keys=[load_public_key(signed["pub"])])
    if vector.startswith(("key", "certificate")):
        assert "untrusted-key" in verify_oms(tmp_path, path, options=opts).codes()
    else:
        assert "identity-mismatch" in verify_oms(tmp_path, path, options=opts).codes()
    if vector.startswith("certificate"):
        # its "leaf" is itself a CA certificate (basicConstraints cA): never a signing certificate, whatever the root
        from cryptography import x509

        inter = x509.load_der_x509_certificate(base64.b64decode(b.certificates[1]))
        r = verify_oms(tmp_path, path, options=Options(cas=[inter]))
        assert ("certificate-untrusted" in r.codes() and "basicConstraints.cA" in r.findings[r.codes().index("certificate-untrusted")].message)


def test_nested_git_is_inside_the_scope_in_both_tools(cli, signed, damaged: Path, tmp_path: Path) -> None:
    """model_signing leaves out only the root's .git (and .gitattributes, .github, .gitignore):
    a nested ``.git/`` is hashed by both tools, so one planted after signing fails both."""
    (damaged / "1_Pooling" / ".git").mkdir()
    (damaged / "1_Pooling" / ".git" / "evil.py").write_text("import os\n")
    for bundle in (signed["ours"], signed["theirs"]):
        ms_rejects((damaged, bundle, signed["pub"]), (signed["model"], bundle, signed["pub"]), ValueError,
                   r"^Signature mismatch: \[\"Extra files found in model 'model': 1_Pooling/\.git/evil\.py\"\]$")
        r = cli("verify", damaged, "--oms", bundle, "--key", signed["pub"], "--json", "-q", "--no-cache")
        assert r.code == 1 and ("extra-file", "1_Pooling/.git/evil.py") in _codes(r)
    # signed with it, it is in the exported scope, and the real verifier agrees
    from manifest.api import create
    from manifest.oms import export_oms
    from manifest.options import Options

    create(damaged, options=Options(use_cache=False))
    sig = tmp_path / "nested.sig"
    export_oms(damaged, signed["priv"], sig)
    assert "1_Pooling/.git/evil.py" in [x["name"] for x in _payload(sig)["predicate"]["resources"]]
    assert ms_verify(damaged, sig, signed["pub"]) is None
    assert cli("verify", damaged, "--oms", sig, "--key", signed["pub"], "-q").code == 0


def test_an_empty_directory_planted_after_signing_fails_verify_oms(cli, signed, damaged: Path) -> None:
    """OMS records files only: every directory of the tree must hold a signed file. model_signing
    itself does not see directories (its verify passes); ours refuses what a loader would list."""
    (damaged / "tekken.json").mkdir()
    for bundle in (signed["ours"], signed["theirs"]):
        assert ms_verify(damaged, bundle, signed["pub"]) is None  # the reference verifier is blind to it
        r = cli("verify", damaged, "--oms", bundle, "--key", signed["pub"], "--json", "-q", "--no-cache")
        assert r.code == 1 and ("extra-directory", "tekken.json") in _codes(r), r.out


def test_a_bundle_inside_the_tree_that_is_a_symlink_is_refused(cli, signed, damaged: Path) -> None:
    """Only the bundle's literal path is left out: a link named like it leaves its target checked."""
    import shutil

    shutil.copyfile(signed["ours"], damaged / "chat_template.jinja")
    (damaged / "model.sig").symlink_to("chat_template.jinja")
    r = cli("verify", damaged, "--oms", damaged / "model.sig", "--key", signed["pub"], "--json", "-q", "--no-cache")
    assert r.code == 1 and {("manifest-symlink", "model.sig"), ("extra-file", "chat_template.jinja")} <= set(_codes(r)), r.out


def test_export_names_the_empty_directories_oms_cannot_record(cli, signed, damaged: Path, tmp_path: Path) -> None:
    from manifest.api import create
    from manifest.options import Options

    (damaged / "logs").mkdir()
    create(damaged, options=Options(use_cache=False))
    r = cli("export", damaged, "--oms", tmp_path / "m.sig", "--key", signed["priv"])
    assert r.code == 0 and "logs/" in r.err and "OMS records no directories" in r.err, r.err
    r = cli("verify", damaged, "--oms", tmp_path / "m.sig", "--key", signed["pub"], "--json", "-q")
    assert r.code == 1 and ("extra-directory", "logs") in _codes(r)
