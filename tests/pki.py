"""A small local X.509 PKI for the certificate-signature tests, built with ``cryptography``:

    root -> intermediate -> leaf          (code signing: the good signer)
    root -> intermediate -> leaf_noeku    (same key, TLS client auth only: not for code signing)
    root -> intermediate -> leaf_expired  (same key, expired yesterday)
    other_root                            (an unrelated root: a chain to it does not exist)

Every certificate and key is written as PEM under one directory; the leaf keys are ECDSA
P-256, the form ``model_signing sign certificate`` uses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "manifest test PKI"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def issue(key: ec.EllipticCurvePrivateKey, cn: str, issuer_key: ec.EllipticCurvePrivateKey, issuer_cn: str, *, ca: bool,
          eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CODE_SIGNING,),
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None, path_length: int | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(_usage(sign=not ca, ca=ca), critical=True)
    )
    if not ca and eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class PKI:
    dir: Path
    root: Path
    intermediate: Path
    leaf: Path
    leaf_key: Path
    leaf_noeku: Path
    leaf_expired: Path
    other_root: Path
    other_leaf: Path  # a code-signing leaf under other_root, for the same leaf key
    other_intermediate: Path
    leaf_p384: Path  # a code-signing leaf for a P-384 key (model_signing signs it with SHA-384)
    leaf_p384_key: Path


def build(where: Path) -> PKI:
    where.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    root_k, inter_k, leaf_k, other_k, other_inter_k = (ec.generate_private_key(ec.SECP256R1()) for _ in range(5))
    since = now - dt.timedelta(days=365)  # the CAs predate every leaf
    root = issue(root_k, "root CA", root_k, "root CA", ca=True, not_before=since)
    inter = issue(inter_k, "intermediate CA", root_k, "root CA", ca=True, path_length=0, not_before=since)
    other = issue(other_k, "other root CA", other_k, "other root CA", ca=True, not_before=since)
    other_inter = issue(other_inter_k, "intermediate CA", other_k, "other root CA", ca=True, path_length=0, not_before=since)
    certs = {
        "root": root,
        "intermediate": inter,
        "leaf": issue(leaf_k, "model publisher", inter_k, "intermediate CA", ca=False),
        "leaf_noeku": issue(leaf_k, "model publisher (TLS client)", inter_k, "intermediate CA", ca=False, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
        "leaf_expired": issue(leaf_k, "model publisher (expired)", inter_k, "intermediate CA", ca=False,
                              not_before=now - dt.timedelta(days=60), not_after=now - dt.timedelta(days=1)),
        "other_root": other,
        "other_intermediate": other_inter,
        "other_leaf": issue(leaf_k, "model publisher", other_inter_k, "intermediate CA", ca=False),
    }
    paths = {}
    for n, c in certs.items():
        p = where / f"{n}.pem"
        p.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        paths[n] = p
    p384_k = ec.generate_private_key(ec.SECP384R1())
    certs_p384 = where / "leaf_p384.pem"
    certs_p384.write_bytes(issue(p384_k, "model publisher P-384", inter_k, "intermediate CA", ca=False).public_bytes(serialization.Encoding.PEM))
    keys = {}
    for n, k in (("leaf.key.pem", leaf_k), ("leaf_p384.key.pem", p384_k)):
        keys[n] = where / n
        keys[n].write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return PKI(where, paths["root"], paths["intermediate"], paths["leaf"], keys["leaf.key.pem"], paths["leaf_noeku"], paths["leaf_expired"],
               paths["other_root"], paths["other_leaf"], paths["other_intermediate"], certs_p384, keys["leaf_p384.key.pem"])
