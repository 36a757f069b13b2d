"""Certificate signatures (``--ca``, ``create --cert``) and the trust policy file (``--trust``,
``MANIFEST_TRUST``), with a local test PKI (tests/pki.py) and the REAL ``model_signing`` 1.1.1
in both directions: its ``sign certificate`` bundles verify here, and our certificate exports
pass its ``verify certificate``; each tampered case fails in both tools."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from pki import PKI, build

pytest.importorskip("model_signing", reason="the interop tests need model-signing==1.1.1 (test extra)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A tiny model directory: a config, a nested file, a small binary."""
    m = tmp_path / "model"
    (m / "sub").mkdir(parents=True)
    (m / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (m / "sub" / "notes.txt").write_text("tokenizer notes\n")
    (m / "weights.bin").write_bytes(bytes(range(256)) * 8)
    (m / "README.md").write_text("# a tiny model\n")
    return m


def _codes(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [f["code"] for f in json.loads(run.out)["findings"]]


def _errors(run) -> list[str]:  # type: ignore[no-untyped-def]
    return [f["code"] for f in json.loads(run.out)["findings"] if f["severity"] == "error"]


def ms_sign_cert(model: Path, pki: PKI, sig: Path, *, leaf: Path | None = None, key: Path | None = None) -> None:
    """``model_signing sign certificate`` in-process (the CLI's own steps)."""
    import model_signing

    model_signing.signing.Config().use_certificate_signer(
        private_key=key or pki.leaf_key, signing_certificate=leaf or pki.leaf, certificate_chain=[pki.intermediate]
    ).set_hashing_config(model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=True)).sign(model, sig)


def ms_verify_cert(model: Path, sig: Path, root: Path) -> Exception | None:
    """``model_signing verify certificate --certificate_chain ROOT`` in-process: None when it
    verifies, else the exception by which it refused (a file or statement mismatch is
    ``ValueError``, a bad signature ``InvalidSignature``, a chain that does not reach the root
    OpenSSL's ``X509StoreContextError``). Anything else is raised."""
    import model_signing
    from OpenSSL.crypto import X509StoreContextError

    try:
        model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[root]).set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=True)
        ).verify(model, sig)
    except (ValueError, InvalidSignature, X509StoreContextError) as e:
        return e
    return None


def _edit_payload(bundle: Path, out: Path) -> None:
    """Change one resource digest in the DSSE payload (the subject digest kept consistent), keep the signature."""
    doc = json.loads(bundle.read_text())
    st = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    res = st["predicate"]["resources"]
    res[0]["digest"] = hashlib.sha256(b"something else").hexdigest()
    h = hashlib.sha256()
    for r in res:
        h.update(bytes.fromhex(r["digest"]))
    st["subject"][0]["digest"]["sha256"] = h.hexdigest()
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st, indent=2).encode()).decode()
    out.write_text(json.dumps(doc))


TAMPERS = ("flipped-byte", "added-file", "removed-file", "edited-payload", "other-root")


def _tamper(kind: str, model: Path, bundle: Path, tmp_path: Path, pki: PKI) -> tuple[Path, Path]:
    """Damage a copy of ``model`` or ``bundle`` one way; return (bundle, root) to verify with."""
    root = pki.root
    if kind == "flipped-byte":
        data = bytearray((model / "weights.bin").read_bytes())
        data[1000] ^= 0x01
        (model / "weights.bin").write_bytes(bytes(data))
    elif kind == "added-file":
        (model / "sub" / "extra.txt").write_text("planted")
    elif kind == "removed-file":
        (model / "README.md").unlink()
    elif kind == "edited-payload":
        edited = tmp_path / "edited.sig"
        _edit_payload(bundle, edited)
        bundle = edited
    else:
        root = pki.other_root
    return bundle, root


EXPECTED = {  # manifest's finding, model_signing's refusal
    "flipped-byte": ("digest-mismatch", ValueError),
    "added-file": ("extra-file", ValueError),
    "removed-file": ("missing-file", ValueError),
    "edited-payload": ("signature-invalid", InvalidSignature),
    "other-root": ("certificate-untrusted", "X509StoreContextError"),
}


def _is(e: Exception | None, kind: object) -> bool:
    return e is not None and (type(e).__name__ == kind if isinstance(kind, str) else type(e) is kind)


# --------------------------------------------------------------------------- model_signing signs, manifest verifies
@pytest.mark.parametrize("kind", TAMPERS)
def test_model_signing_certificate_bundle_verifies_here_and_each_tamper_fails_in_both(cli, model: Path, pki: PKI, tmp_path: Path, kind: str) -> None:
    sig = tmp_path / "model.sig"
    ms_sign_cert(model, pki, sig)
    # the good case: both tools accept it, by the same calls that must refuse the bad one
    assert ms_verify_cert(model, sig, pki.root) is None
    r = cli("verify", model, "--oms", sig, "--ca", pki.root, "--json")
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["facts"]["trusted_certificates"] == ["CN=model publisher,O=manifest test PKI"]
    bundle, root = _tamper(kind, model, sig, tmp_path, pki)
    r = cli("verify", model, "--oms", bundle, "--ca", root, "--json")
    code, refusal = EXPECTED[kind]
    assert r.code == 1 and _errors(r) == [code], r.out + r.err
    assert _is(ms_verify_cert(model, bundle, root), refusal)


def test_a_certificate_bundle_needs_its_root(cli, model: Path, pki: PKI, tmp_path: Path, keypair) -> None:
    """No --ca: no trust anchor, no pass; the hint names --ca. A key that is not the leaf's:
    untrusted-key. The leaf's own public key given with --key: trusted directly."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    sig = tmp_path / "model.sig"
    ms_sign_cert(model, pki, sig)
    r = cli("verify", model, "--oms", sig, "--json")
    assert r.code == 1 and _codes(r)[-1] == "no-trust-anchor" and "--ca" in json.loads(r.out)["findings"][-1]["hint"]
    ec_pub = tmp_path / "ec.pub.pem"
    from manifest.signing import generate

    ec_pub.write_bytes(generate("ecdsa-p256").public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    r = cli("verify", model, "--oms", sig, "--key", ec_pub, "--json")
    assert r.code == 1 and _errors(r) == ["untrusted-key"]
    leaf_pub = tmp_path / "leaf.pub.pem"
    leaf_pub.write_bytes(x509.load_pem_x509_certificate(pki.leaf.read_bytes()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert cli("verify", model, "--oms", sig, "--key", leaf_pub).code == 0
    r = cli("verify", model, "--oms", sig, "--no-signature", "--json")
    assert r.code == 0 and json.loads(r.out)["integrity_only"] is True


def test_expired_and_non_code_signing_leaves_fail_here_though_model_signing_accepts_them(cli, model: Path, pki: PKI, tmp_path: Path) -> None:
    """The deliberate differences (docs/security.md): model_signing 1.1.1 checks the chain at the
    leaf's own notBefore, and accepts a digitalSignature key usage without the code-signing EKU."""
    for leaf, code in ((pki.leaf_expired, "certificate-expired"), (pki.leaf_noeku, "certificate-eku")):
        sig = tmp_path / f"{leaf.stem}.sig"
        ms_sign_cert(model, pki, sig, leaf=leaf)
        assert ms_verify_cert(model, sig, pki.root) is None
        r = cli("verify", model, "--oms", sig, "--ca", pki.root, "--json")
        assert r.code == 1 and _errors(r) == [code], r.out


# --------------------------------------------------------------------------- native manifests signed with a certificate
def _create_cert_signed(cli, model: Path, pki: PKI, *, leaf: Path | None = None, chain: bool = True) -> None:  # type: ignore[no-untyped-def]
    args = ["create", model, "--key", pki.leaf_key, "--cert", leaf or pki.leaf, "-q"]
    if chain:
        args += ["--cert-chain", pki.intermediate]
    r = cli(*args)
    assert r.code == 0, r.err


def test_certificate_signed_manifest_records_the_chain_and_verifies_with_its_root(cli, model: Path, pki: PKI, keypair) -> None:
    from cryptography import x509

    _create_cert_signed(cli, model, pki)
    doc = json.loads((model / "manifest.json").read_text())
    (entry,) = doc["signatures"]
    leaf, inter = (x509.load_der_x509_certificate(base64.b64decode(c)) for c in entry["certificates"])
    assert leaf == x509.load_pem_x509_certificate(pki.leaf.read_bytes())
    assert inter == x509.load_pem_x509_certificate(pki.intermediate.read_bytes())
    r = cli("verify", model, "--ca", pki.root, "--json")
    assert r.code == 0, r.out
    assert json.loads(r.out)["facts"]["trusted_certificates"] == ["CN=model publisher,O=manifest test PKI"]
    r = cli("verify", model, "--json")  # no anchor: the hint names --ca, since the signature carries a certificate
    assert r.code == 1 and _errors(r) == ["no-trust-anchor"] and "--ca ROOT.pem" in json.loads(r.out)["findings"][-1]["hint"]
    # --ca names a bundle of roots: the other root beside the right one is harmless
    both = model.parent / "roots.pem"
    both.write_bytes(pki.other_root.read_bytes() + pki.root.read_bytes())
    assert cli("verify", model, "--ca", both).code == 0
    # a key of someone else beside the root: the certificate still decides
    assert cli("verify", model, "--ca", pki.root, "--key", keypair[1]).code == 0
    # the schema describes the entry
    import jsonschema
    from referencing import Registry, Resource

    schemas = [json.loads(p.read_text()) for p in (Path(__file__).resolve().parent.parent / "schemas").glob("*.schema.json")]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    schema = next(s for s in schemas if s["$id"].endswith("/manifest.schema.json"))
    jsonschema.Draft202012Validator(schema, registry=registry).validate(doc)


@pytest.mark.parametrize(
    "case, code",
    [("other-root", "certificate-untrusted"), ("no-intermediate", "certificate-untrusted"), ("expired", "certificate-expired"),
     ("no-eku", "certificate-eku"), ("edited-manifest", "signature-invalid"), ("flipped-byte", "digest-mismatch"),
     ("added-file", "extra-file"), ("removed-file", "missing-file")],
)
def test_certificate_signed_manifest_failures(cli, model: Path, pki: PKI, case: str, code: str) -> None:
    leaf = {"expired": pki.leaf_expired, "no-eku": pki.leaf_noeku}.get(case)
    _create_cert_signed(cli, model, pki, leaf=leaf, chain=case != "no-intermediate")
    root = pki.other_root if case == "other-root" else pki.root
    if case == "edited-manifest":
        doc = json.loads((model / "manifest.json").read_text())
        doc["signed"]["model"] = {"id": "someone/else"}  # a claim added after signing
        (model / "manifest.json").write_text(json.dumps(doc))
    elif case in ("flipped-byte", "added-file", "removed-file"):
        _tamper(case, model, model / "manifest.json", model.parent, pki)
    r = cli("verify", model, "--ca", root, "--json")
    assert r.code == 1 and _errors(r) == [code], r.out + r.err
    if case == "added-file":  # the refresh command signs again the same way, certificates included
        hint = json.loads(r.out)["findings"][0]["hint"]
        assert "--key PRIVATE_KEY.pem --cert CERTIFICATE.pem --cert-chain INTERMEDIATES.pem" in hint, hint


def test_create_refuses_a_certificate_for_another_key(cli, model: Path, pki: PKI, keypair) -> None:
    r = cli("create", model, "--key", keypair[0], "--cert", pki.leaf)
    assert r.code == 2 and r.err.startswith("error[usage]:") and "not for the private key" in r.err and not (model / "manifest.json").exists()
    r = cli("create", model, "--cert-chain", pki.intermediate)
    assert r.code == 2 and "--cert-chain needs --cert" in r.err
    r = cli("create", model, "--key", pki.leaf_key, "--cert", pki.leaf_key)
    assert r.code == 2 and r.err.startswith("error[input-invalid]:") and "no PEM certificate" in r.err


def test_a_key_signed_manifest_with_only_a_root_is_untrusted(cli, model: Path, pki: PKI, keypair) -> None:
    """A root vouches only for certificates: a bare key signature is untrusted-key, never a pass."""
    assert cli("create", model, "--key", keypair[0], "-q").code == 0
    r = cli("verify", model, "--ca", pki.root, "--json")
    assert r.code == 1 and _errors(r) == ["untrusted-key"]
    assert cli("verify", model, "--key", keypair[1]).code == 0  # the manifest format without certificates still verifies


# --------------------------------------------------------------------------- manifest exports, model_signing verifies
@pytest.mark.parametrize("kind", TAMPERS)
def test_exported_certificate_bundle_passes_model_signing_and_each_tamper_fails_in_both(cli, model: Path, pki: PKI, tmp_path: Path,
                                                                                       kind: str) -> None:
    _create_cert_signed(cli, model, pki)
    sig = tmp_path / "export.sig"
    r = cli("export", model, "--oms", sig, "--key", pki.leaf_key)  # the manifest's certificates, kept
    assert r.code == 0 and "certificate chain" in r.err, r.err
    vm = json.loads(sig.read_text())["verificationMaterial"]
    assert len(vm["x509CertificateChain"]["certificates"]) == 2 and "publicKey" not in vm
    (model / "manifest.json").unlink()  # model_signing's scope is the model's files
    assert ms_verify_cert(model, sig, pki.root) is None
    assert cli("verify", model, "--oms", sig, "--ca", pki.root).code == 0
    bundle, root = _tamper(kind, model, sig, tmp_path, pki)
    code, refusal = EXPECTED[kind]
    assert _is(ms_verify_cert(model, bundle, root), refusal)
    r = cli("verify", model, "--oms", bundle, "--ca", root, "--json")
    assert r.code == 1 and _errors(r) == [code], r.out + r.err


def test_export_with_explicit_certificates_and_the_model_signing_cli(cli, model: Path, pki: PKI, tmp_path: Path) -> None:
    """An unsigned manifest exported with --cert/--cert-chain; the real model_signing CLI accepts it
    with --certificate_chain ROOT and refuses it with the other root."""
    import subprocess
    import sys

    assert cli("create", model, "-o", tmp_path / "m.json", "-q").code == 0
    sig = tmp_path / "export.sig"
    r = cli("export", model, "-m", tmp_path / "m.json", "--oms", sig, "--key", pki.leaf_key, "--cert", pki.leaf, "--cert-chain", pki.intermediate)
    assert r.code == 0, r.err

    def ms(root: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "model_signing", "verify", "certificate", str(model), "--signature", str(sig),
                               "--certificate_chain", str(root)], capture_output=True, text=True, timeout=300, check=False)

    ok, bad = ms(pki.root), ms(pki.other_root)
    assert ok.returncode == 0 and "Verification succeeded" in ok.stdout, ok.stderr
    assert bad.returncode == 1 and "Verification failed" in bad.stderr
    assert cli("verify", model, "--oms", sig, "--ca", pki.other_root).code == 1


def test_minilm_end_to_end(cli, minilm: Path, pki: PKI, tmp_path: Path) -> None:
    """The real checkpoint: model_signing signs with the certificate, manifest verifies; one flipped
    byte in the weights fails in both."""
    sig = tmp_path / "minilm.sig"
    ms_sign_cert(minilm, pki, sig)
    r = cli("verify", minilm, "--oms", sig, "--ca", pki.root, "--json")
    assert r.code == 0, r.out
    w = minilm / "model.safetensors"
    with open(w, "r+b") as f:
        f.seek(w.stat().st_size - 100)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x80]))
    r = cli("verify", minilm, "--oms", sig, "--ca", pki.root, "--json", "--no-cache")
    assert r.code == 1 and _errors(r) == ["digest-mismatch"], r.out
    assert _is(ms_verify_cert(minilm, sig, pki.root), ValueError)


# --------------------------------------------------------------------------- the trust policy file
def _policy(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_trust_file_lists_keys_and_roots_by_path_or_inline(cli, model: Path, pki: PKI, keypair, tmp_path: Path) -> None:
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    shutil.copy(keypair[1], policy_dir / "publisher.pub.pem")
    by_path = _policy(policy_dir / "trust.json", {"version": 1, "keys": ["publisher.pub.pem"]})
    inline = _policy(tmp_path / "inline.json", {"cas": [pki.root.read_text()]})
    assert cli("create", model, "--key", keypair[0], "-q").code == 0
    assert cli("verify", model, "--trust", by_path).code == 0  # a path relative to the trust file, not to the cwd
    assert cli("verify", model, "--trust", inline, "--json").code == 1  # roots only: a bare key is untrusted
    _create_cert_signed(cli, model, pki)
    assert cli("verify", model, "--trust", inline).code == 0
    assert cli("verify", model, env={"MANIFEST_TRUST": str(inline)}).code == 0
    r = cli("verify", model, "--trust", by_path, "--json")  # a key that signed nothing here
    assert r.code == 1 and _errors(r) == ["untrusted-key"]
    # flags and file combine: the root from the flag, the key from the file
    assert cli("verify", model, "--trust", by_path, "--ca", pki.root).code == 0
    # the environment's policy yields to an explicit integrity-only run; an explicit --trust does not
    r = cli("verify", model, "--no-signature", "--json", env={"MANIFEST_TRUST": str(by_path)})
    assert r.code == 0 and json.loads(r.out)["integrity_only"] is True
    r = cli("verify", model, "--no-signature", "--trust", by_path)
    assert r.code == 2 and r.err.startswith("error[usage]:")


def test_trust_file_identities_never_pass_a_native_manifest(cli, model: Path, pki: PKI, keypair, tmp_path: Path) -> None:
    """An anchor that cannot vouch for this signature (a Sigstore identity for a key-signed
    manifest) is still an anchor: the run checks the signature and fails, never passes unchecked."""
    policy = _policy(tmp_path / "t.json", {"identities": [{"identity": "a@example.com", "issuer": "https://issuer.example"}]})
    assert cli("create", model, "--key", keypair[0], "-q").code == 0
    r = cli("verify", model, "--trust", policy, "--json")
    assert r.code == 1 and _errors(r) == ["untrusted-key"], r.out
    from manifest.trust import load_trust

    assert load_trust(policy).identities == [("a@example.com", "https://issuer.example")]


@pytest.mark.parametrize(
    "doc, words",
    [
        ("not json", "not valid JSON"),
        ([], "must be a JSON object"),
        ({"key": ["k.pem"]}, "unknown member(s) 'key'"),
        ({}, "lists no trust anchor"),
        ({"version": 2, "cas": ["r.pem"]}, '"version" must be 1'),
        ({"keys": "k.pem"}, '"keys" must be a list'),
        ({"identities": [{"identity": "a@b"}]}, '"identities" entry must be'),
        ({"identities": [], "trusted_root": 3}, '"trusted_root" must be a path'),
    ],
)
def test_malformed_trust_file_is_one_usage_line(cli, model: Path, tmp_path: Path, doc: object, words: str) -> None:
    import jsonschema

    path = tmp_path / "trust.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    r = cli("verify", model, "--trust", path)
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1, r.err
    assert r.err.startswith(f"error[usage]: trust file {path}: ") and words in r.err, r.err
    if not isinstance(doc, str):  # the schema refuses the same documents
        schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "trust.schema.json").read_text())
        assert not jsonschema.Draft202012Validator(schema).is_valid(doc)


def test_trust_schema_accepts_a_full_policy(pki: PKI, keypair, tmp_path: Path) -> None:
    import jsonschema

    from manifest.trust import load_trust

    tr = tmp_path / "trusted_root.json"
    tr.write_text("{}")
    doc = {"$schema": "../schemas/trust.schema.json", "version": 1, "keys": [str(keypair[1]), keypair[1].read_text()],
           "cas": [str(pki.root)], "identities": [{"identity": "a@example.com", "issuer": "https://issuer.example"}],
           "trusted_root": "trusted_root.json"}
    schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "trust.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    t = load_trust(_policy(tmp_path / "full.json", doc))
    assert len(t.keys) == 2 and len(t.cas) == 1 and t.trusted_root == str(tr)
    opts = t.options(expect_model="org/name", keys=[t.keys[0]])
    assert len(opts.keys) == 3 and opts.cas == t.cas and opts.identities == t.identities and opts.expect_model == "org/name"
    import manifest

    assert manifest.load_trust is load_trust and manifest.load_certificates(pki.root) == t.cas


def test_trust_file_inside_the_verified_directory_is_refused(cli, model: Path, keypair, tmp_path: Path) -> None:
    assert cli("create", model, "--key", keypair[0], "-q").code == 0
    inside = _policy(model / "trust.json", {"keys": [str(keypair[1])]})
    r = cli("verify", model, "--trust", inside)
    assert r.code == 2 and r.err.startswith("error[usage]:") and "inside the directory being verified" in r.err
    inside.unlink()
    shutil.copy(keypair[1], model / "k.pub.pem")  # a file outside naming a key inside: refused too
    outside = _policy(tmp_path / "t.json", {"keys": [str(model / "k.pub.pem")]})
    r = cli("verify", model, "--trust", outside)
    assert r.code == 2 and "names" in r.err and "inside the directory being verified" in r.err
    r = cli("verify", model, "--trust", tmp_path / "absent.json")
    assert r.code == 2 and r.err.startswith("error[usage]:") and "not found" in r.err


def test_trusted_root_from_the_file_and_the_flag_must_agree(cli, model: Path, tmp_path: Path) -> None:
    """trusted_root is one value, not a list: the file's and --trusted-root's must be the same file."""
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    policy = _policy(tmp_path / "t.json", {"identities": [{"identity": "a@example.com", "issuer": "https://issuer.example"}],
                                           "trusted_root": "a.json"})
    r = cli("verify", model, "--trust", policy, "--trusted-root", tmp_path / "b.json")
    assert r.code == 2 and r.err.startswith("error[usage]:") and "differ" in r.err, r.err
    r = cli("verify", model, "--trust", _policy(tmp_path / "nofile.json", {"keys": [], "cas": [], "identities": [{"identity": "x", "issuer": "y"}],
                                                                             "trusted_root": "absent.json"}))
    assert r.code == 2 and "is not a file" in r.err


@pytest.mark.parametrize(
    "certificates, code, status",
    [(["AAAA"], "certificate-untrusted", 1), (["not base64!"], "certificate-untrusted", 1), ([], "manifest-invalid", 2),
     (["AAAA"] * 11, "manifest-invalid", 2), ("AAAA", "manifest-invalid", 2), ([7], "manifest-invalid", 2)],
)
def test_damaged_certificates_are_a_finding_or_one_line(cli, model: Path, pki: PKI, certificates: object, code: str, status: int) -> None:
    """Garbage where the certificates go: a finding (exit 1) when the entry is well-formed, one line
    (exit 2) when it is not; never a traceback, never a pass."""
    _create_cert_signed(cli, model, pki)
    doc = json.loads((model / "manifest.json").read_text())
    doc["signatures"][0]["certificates"] = certificates
    (model / "manifest.json").write_text(json.dumps(doc))
    r = cli("verify", model, "--ca", pki.root, "--json")
    if status == 1:
        assert r.code == 1 and _errors(r) == [code], r.out + r.err
    else:
        assert r.code == 2 and r.err.startswith(f"error[{code}]:") and r.err.count("\n") == 1, r.err


def test_damaged_certificate_in_a_bundle_is_a_finding(cli, model: Path, pki: PKI, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    ms_sign_cert(model, pki, sig)
    doc = json.loads(sig.read_text())
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    sig.write_text(json.dumps(doc))
    r = cli("verify", model, "--oms", sig, "--ca", pki.root, "--json")
    assert r.code == 1 and _errors(r) == ["certificate-untrusted"], r.out + r.err
    assert _is(ms_verify_cert(model, sig, pki.root), ValueError)


def test_a_p384_leaf_verifies_both_ways(cli, model: Path, pki: PKI, tmp_path: Path) -> None:
    """A P-384 signing certificate: model_signing signs with SHA-384, as this tool verifies and exports."""
    sig = tmp_path / "p384.sig"
    ms_sign_cert(model, pki, sig, leaf=pki.leaf_p384, key=pki.leaf_p384_key)
    assert cli("verify", model, "--oms", sig, "--ca", pki.root).code == 0
    r = cli("create", model, "-o", tmp_path / "m.json", "--key", pki.leaf_p384_key, "--cert", pki.leaf_p384, "--cert-chain", pki.intermediate, "-q")
    assert r.code == 0, r.err
    assert cli("verify", model, "-m", tmp_path / "m.json", "--ca", pki.root).code == 0
    out = tmp_path / "export.sig"
    assert cli("export", model, "-m", tmp_path / "m.json", "--oms", out, "--key", pki.leaf_p384_key).code == 0
    assert ms_verify_cert(model, out, pki.root) is None
    assert _is(ms_verify_cert(model, out, pki.other_root), "X509StoreContextError")
