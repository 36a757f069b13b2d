"""Key types beyond Ed25519 and P-256: ECDSA P-384 and P-521 (native manifests, and OMS bundles
with the REAL ``model_signing`` 1.1.1 in both directions) and ML-DSA-65 (FIPS 204, native
manifests). Signatures are checked here independently with ``cryptography`` and ``rfc8785``,
so the declared ``alg`` is proven to be the algorithm actually used."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa

from manifest.signing import generate, write_keypair

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# keygen --type -> the alg recorded in the manifest, and an independent verifier of it
TYPES = {
    "ed25519": "ed25519",
    "ecdsa-p256": "ecdsa-p256-sha256",
    "ecdsa-p384": "ecdsa-p384-sha384",
    "ecdsa-p521": "ecdsa-p521-sha512",
    "ml-dsa-65": "ml-dsa-65",
}
EXPECTED = {  # what each type's public key must be, and how its signature must verify
    "ed25519": (ed25519.Ed25519PublicKey, lambda k, s, d: k.verify(s, d)),
    "ecdsa-p256": (ec.EllipticCurvePublicKey, lambda k, s, d: k.verify(s, d, ec.ECDSA(hashes.SHA256()))),
    "ecdsa-p384": (ec.EllipticCurvePublicKey, lambda k, s, d: k.verify(s, d, ec.ECDSA(hashes.SHA384()))),
    "ecdsa-p521": (ec.EllipticCurvePublicKey, lambda k, s, d: k.verify(s, d, ec.ECDSA(hashes.SHA512()))),
    "ml-dsa-65": (mldsa.MLDSA65PublicKey, lambda k, s, d: k.verify(s, d)),
}
CURVE = {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1", "ecdsa-p521": "secp521r1"}


def _keygen(cli, kind: str, prefix: Path, env: dict[str, str] | None = None, *extra: str) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    r = cli("keygen", "--type", kind, "-o", prefix, *extra, env=env)
    assert r.code == 0, r.err
    return Path(f"{prefix}.pem"), Path(f"{prefix}.pub.pem")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """A private copy of the real checkpoint, no manifest inside (read-only use; the installed
    one is not hashed directly, since other test runs may hard-link its files meanwhile)."""
    d = tmp_path_factory.mktemp("plain") / "model"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    return d


def _codes(r) -> list[str]:  # type: ignore[no-untyped-def]
    return [f["code"] for f in json.loads(r.out)["findings"]]


@pytest.mark.parametrize("kind", list(TYPES))
def test_each_key_type_signs_and_verifies_a_real_checkpoint(cli, kind: str, plain: Path, tmp_path: Path) -> None:
    priv, pub = _keygen(cli, kind, tmp_path / "k")
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")  # SubjectPublicKeyInfo
    m = tmp_path / "manifest.json"
    r = cli("create", plain, "-o", m, "--key", priv, "--model-id", MODEL_ID, "-q")
    assert r.code == 0, r.err
    doc = json.loads(m.read_text())
    (entry,) = doc["signatures"]
    public = serialization.load_pem_public_key(pub.read_bytes())
    cls, check = EXPECTED[kind]
    assert isinstance(public, cls) and (kind not in CURVE or public.curve.name == CURVE[kind])  # type: ignore[attr-defined]
    assert entry["alg"] == TYPES[kind]
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert entry["keyid"] == hashlib.sha256(der).hexdigest()  # one keyid rule for every type
    check(public, base64.b64decode(entry["sig"]), rfc8785.dumps(doc["signed"]))  # raises if alg or bytes differ
    r = cli("verify", plain, "-m", m, "--key", pub, "--expect-model", MODEL_ID, "--json", "-q")
    assert r.code == 0, r.out + r.err
    assert "signature" in json.loads(r.out)["checked"]


@pytest.mark.parametrize("kind", ["ecdsa-p384", "ecdsa-p521", "ml-dsa-65"])
def test_tampered_manifests_fail_for_each_new_key_type(cli, kind: str, plain: Path, tmp_path: Path) -> None:
    priv, pub = _keygen(cli, kind, tmp_path / "k")
    _, other = _keygen(cli, kind, tmp_path / "other")
    m = tmp_path / "manifest.json"
    assert cli("create", plain, "-o", m, "--key", priv, "--model-id", MODEL_ID, "-q").code == 0
    good = json.loads(m.read_text())

    def verify(doc: dict, key: Path) -> list[str]:  # type: ignore[type-arg]
        p = tmp_path / "case.json"
        p.write_text(json.dumps(doc))
        r = cli("verify", plain, "-m", p, "--key", key, "--json", "-q")
        assert r.code == 1, r.out + r.err
        return _codes(r)

    edited = json.loads(json.dumps(good))
    edited["signed"]["model"]["id"] = "sentence-transformers/paraphrase-MiniLM-L3-v2"  # the payload, one field
    assert verify(edited, pub) == ["signature-invalid"]
    flipped = json.loads(json.dumps(good))
    raw = bytearray(base64.b64decode(flipped["signatures"][0]["sig"]))
    raw[len(raw) // 2] ^= 1
    flipped["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    assert verify(flipped, pub) == ["signature-invalid"]
    assert verify(good, other) == ["untrusted-key"]  # another key of the same type
    truncated = json.loads(json.dumps(good))
    truncated["signatures"][0]["sig"] = base64.b64encode(base64.b64decode(good["signatures"][0]["sig"])[:-8]).decode()
    assert verify(truncated, pub) == ["signature-invalid"]


def test_ml_dsa_manifest_against_an_ed25519_key(cli, plain: Path, tmp_path: Path) -> None:
    """An ML-DSA-65 signature never counts for an Ed25519 key: by its own keyid it is another
    signer (untrusted-key); relabelled with the Ed25519 key's keyid, it does not verify."""
    priv, _ = _keygen(cli, "ml-dsa-65", tmp_path / "pq")
    _, ed_pub = _keygen(cli, "ed25519", tmp_path / "ed")
    m = tmp_path / "manifest.json"
    assert cli("create", plain, "-o", m, "--key", priv, "-q").code == 0
    r = cli("verify", plain, "-m", m, "--key", ed_pub, "--json", "-q")
    assert r.code == 1 and _codes(r) == ["untrusted-key"], r.out
    doc = json.loads(m.read_text())
    ed = serialization.load_pem_public_key(ed_pub.read_bytes())
    doc["signatures"][0]["keyid"] = hashlib.sha256(
        ed.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    for alg in ("ml-dsa-65", "ed25519"):  # the declared alg is not the key's, or the bytes are not an Ed25519 signature
        doc["signatures"][0]["alg"] = alg
        m.write_text(json.dumps(doc))
        r = cli("verify", plain, "-m", m, "--key", ed_pub, "--json", "-q")
        assert r.code == 1 and _codes(r) == ["signature-invalid"], r.out


def test_ml_dsa_passphrase_key_and_a_damaged_file(cli, minilm: Path, tmp_path: Path) -> None:
    env = {"PQ_PASS": "correct horse"}
    priv, pub = _keygen(cli, "ml-dsa-65", tmp_path / "pq", env, "--passphrase-env", "PQ_PASS")
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes()
    r = cli("create", minilm, "--key", priv, "-q")
    assert r.code == 2 and r.err.startswith("error[key-invalid]:") and "MANIFEST_KEY_PASSPHRASE" in r.err, r.err
    assert cli("create", minilm, "--key", priv, "-q", env={"MANIFEST_KEY_PASSPHRASE": "correct horse"}).code == 0
    assert cli("verify", minilm, "--key", pub, "-q").code == 0
    with open(minilm / "model.safetensors", "r+b") as f:
        f.seek(40_000_000)
        b = f.read(1)
        f.seek(40_000_000)
        f.write(bytes([b[0] ^ 1]))
    r = cli("verify", minilm, "--key", pub, "--json", "-q", "--no-cache")
    assert r.code == 1 and _codes(r) == ["digest-mismatch"], r.out


def test_unsupported_key_types_are_refused_in_one_line(cli, plain: Path, tmp_path: Path) -> None:
    k1 = ec.generate_private_key(ec.SECP256K1())
    k2 = mldsa.MLDSA44PrivateKey.generate()
    for name, key in (("k1", k1), ("mldsa44", k2)):
        p = tmp_path / f"{name}.pem"
        p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        q = tmp_path / f"{name}.pub.pem"
        q.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        r = cli("create", plain, "-o", tmp_path / "m.json", "--key", p, "-q")
        assert r.code == 2 and r.err.startswith("error[key-invalid]:") and r.err.count("\n") == 1, r.err
        assert not (tmp_path / "m.json").exists()
        r = cli("verify", plain, "-m", tmp_path / "m.json", "--key", q, "-q")
        assert r.code == 2 and r.err.startswith("error[key-invalid]:") and "not supported" in r.err, r.err
    r = cli("keygen", "--type", "ml-dsa-44", "-o", tmp_path / "x")
    assert r.code == 2 and r.err.startswith("error[usage]:") and r.err.count("\n") == 1


# --------------------------------------------------------------------------- OMS, P-384 and P-521
pytest.importorskip("model_signing", reason="the interop tests need model-signing==1.1.1 (test extra)")
from test_oms import _payload, model_signing, ms_rejects, ms_sign, ms_verify  # noqa: E402

OMS_CURVES = ["ecdsa-p384", "ecdsa-p521"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """One real checkpoint with a manifest (read-only use)."""
    from manifest.api import create
    from manifest.options import Options

    m = tmp_path_factory.mktemp("keys") / "model"
    shutil.copytree(minilm_src, m, ignore=shutil.ignore_patterns("__pycache__"))
    create(m, model_id=MODEL_ID, options=Options(use_cache=False))
    return m


@pytest.fixture(scope="module", params=OMS_CURVES)
def signed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model: Path) -> dict[str, Any]:
    """For one curve: keys, our export (manifest CLI) and model_signing's bundle (its CLI)."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp(request.param)
    priv, pub = base / "k.pem", base / "k.pub.pem"
    write_keypair(generate(request.param), priv, pub)
    write_keypair(generate(request.param), base / "other.pem", base / "other.pub.pem")
    ours, theirs = base / "ours.sig", base / "theirs.sig"
    r = subprocess.run([sys.executable, "-m", "manifest", "export", str(model), "--oms", str(ours), "--key", str(priv)],
                       capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0 and f"signed with ECDSA P-{request.param[-3:]}" in r.stderr, r.stderr
    s = model_signing("sign", "key", model, "--private_key", priv, "--signature", theirs)
    assert s.returncode == 0, s.stdout + s.stderr
    return {"kind": request.param, "model": model, "priv": priv, "pub": pub, "other": base / "other.pub.pem",
            "ours": ours, "theirs": theirs}


def _ecdsa_hash_of(bundle: Path, pub: Path) -> str:
    """Which SHA-2 the bundle's DSSE signature verifies with (checked with cryptography alone)."""
    b = json.loads(bundle.read_text())
    payload = base64.b64decode(b["dsseEnvelope"]["payload"])
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
    sig = base64.b64decode(b["dsseEnvelope"]["signatures"][0]["sig"])
    key = serialization.load_pem_public_key(pub.read_bytes())
    for h in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        try:
            key.verify(sig, pae, ec.ECDSA(h))  # type: ignore[call-arg, union-attr]
        except InvalidSignature:
            continue
        return h.name
    return "none"


def test_both_directions_verify_with_the_curves_own_hash(cli, signed) -> None:
    want = {"ecdsa-p384": "sha384", "ecdsa-p521": "sha512"}[signed["kind"]]
    for bundle in (signed["ours"], signed["theirs"]):
        assert _ecdsa_hash_of(bundle, signed["pub"]) == want  # ours hashes as model_signing does
        v = model_signing("verify", "key", signed["model"], "--signature", bundle, "--public_key", signed["pub"])
        assert v.returncode == 0 and "Verification succeeded" in v.stdout, v.stdout + v.stderr
        r = cli("verify", signed["model"], "--oms", bundle, "--key", signed["pub"], "--json", "-q")
        assert r.code == 0, r.out + r.err
        assert {"signature", "digests"} <= set(json.loads(r.out)["checked"])
    theirs = [x for x in _payload(signed["theirs"])["predicate"]["resources"] if x["name"] != "manifest.json"]
    assert _payload(signed["ours"])["predicate"]["resources"] == theirs  # the same files, digests and order


def test_changed_files_fail_in_both_tools(cli, signed, tmp_path: Path) -> None:
    """Flipped byte, added file, removed file: each undone before the next."""
    good_model, pub = signed["model"], signed["pub"]
    d = tmp_path / "model"
    shutil.copytree(good_model, d)

    def both(message: str, code: str, path: str) -> None:
        for bundle in (signed["ours"], signed["theirs"]):
            ms_rejects((d, bundle, pub), (good_model, bundle, pub), ValueError, message)
            r = cli("verify", d, "--oms", bundle, "--key", pub, "--json", "-q", "--no-cache")
            assert r.code == 1 and (code, path) in [(f["code"], f.get("path")) for f in json.loads(r.out)["findings"]], r.out

    target = d / "model.safetensors"
    with open(target, "r+b") as f:
        f.seek(40_000_000)
        b = f.read(1)
        f.seek(40_000_000)
        f.write(bytes([b[0] ^ 0x01]))
    both(r"^Signature mismatch: .*Hash mismatch for 'model\.safetensors'", "digest-mismatch", "model.safetensors")
    with open(target, "r+b") as f:
        f.seek(40_000_000)
        f.write(b)
    (d / "1_Pooling" / "extra.py").write_text("import os\n")
    both(r"^Signature mismatch: \[\"Extra files found in model 'model': 1_Pooling/extra\.py\"\]$", "extra-file", "1_Pooling/extra.py")
    (d / "1_Pooling" / "extra.py").unlink()
    (d / "vocab.txt").unlink()
    both(r"^Signature mismatch: \[\"Missing files in model 'model': vocab\.txt\"\]$", "missing-file", "vocab.txt")


def test_edited_payload_and_other_key_fail_in_both_tools(cli, signed, tmp_path: Path) -> None:
    model, pub = signed["model"], signed["pub"]
    for src in (signed["ours"], signed["theirs"]):
        good = (model, src, pub)
        bundle = json.loads(src.read_text())
        st = _payload(src)
        st["predicate"]["resources"][0]["digest"] = "0" * 64
        raw = b"".join(bytes.fromhex(x["digest"]) for x in st["predicate"]["resources"])
        st["subject"][0]["digest"]["sha256"] = hashlib.sha256(raw).hexdigest()  # a consistent forgery, without the key
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
        bad = tmp_path / "edited.sig"
        bad.write_text(json.dumps(bundle))
        ms_rejects((model, bad, pub), good, InvalidSignature, r"^$")
        r = cli("verify", model, "--oms", bad, "--key", pub, "--json", "-q")
        assert r.code == 1 and "signature-invalid" in _codes(r), r.out
        ms_rejects((model, src, signed["other"]), good, ValueError, r"^Key mismatch: The public key hash")
        r = cli("verify", model, "--oms", src, "--key", signed["other"], "--json", "-q")
        assert r.code == 1 and _codes(r) == ["untrusted-key"], r.out


def test_a_bundle_signed_in_process_by_model_signing_also_verifies(cli, signed, tmp_path: Path) -> None:
    """model_signing's API (not only its CLI), and a bundle inside the model directory."""
    d = tmp_path / "model"
    shutil.copytree(signed["model"], d)
    ms_sign(d, signed["priv"], d / "model.sig")
    assert ms_verify(d, d / "model.sig", signed["pub"]) is None
    assert cli("verify", d, "--oms", d / "model.sig", "--key", signed["pub"], "-q").code == 0


def test_oms_refuses_keys_that_are_not_ecdsa(cli, model: Path, tmp_path: Path) -> None:
    priv, pub = tmp_path / "pq.pem", tmp_path / "pq.pub.pem"
    write_keypair(generate("ml-dsa-65"), priv, pub)
    r = cli("export", model, "--oms", tmp_path / "x.sig", "--key", priv)
    assert r.code == 2 and r.err.count("\n") == 1 and "needs an ECDSA key" in r.err and "ML-DSA-65" in r.err, r.err
    assert not (tmp_path / "x.sig").exists()
    ours = tmp_path / "ours.sig"
    ec_priv, _ = tmp_path / "ec.pem", tmp_path / "ec.pub.pem"
    write_keypair(generate("ecdsa-p384"), ec_priv, tmp_path / "ec.pub.pem")
    assert cli("export", model, "--oms", ours, "--key", ec_priv).code == 0
    r = cli("verify", model, "--oms", ours, "--key", pub)
    assert r.code == 2 and r.err.startswith("error[usage]:") and "ECDSA" in r.err, r.err
