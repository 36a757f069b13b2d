"""X.509 certificate chains: the leaf that signed, through the intermediates that came with
the signature, to a root the verifier was given (``--ca``).

A certificate signature is trusted when, at the validation time (now: see below),

1. the leaf carries the code-signing extended key usage (1.3.6.1.5.5.7.3.3), and, if it has a
   key usage extension, ``digitalSignature``;
2. the leaf and every intermediate that came with it are within their validity windows;
3. ``cryptography.x509.verification`` builds a path from the leaf through those
   intermediates to one of the given roots, under the Web PKI profile's rules for CA
   certificates (basic constraints, key usage, path length, name constraints) and for the
   leaf, except that a leaf needs no subject alternative name (code-signing certificates
   name no host);
4. the leaf's public key verifies the signature (done by the caller).

Validation time. A certificate signature carries no trusted timestamp: the signing time a
manifest or bundle states is written by the same key, so it proves nothing. The chain is
therefore checked at the time of verification. A signature made while the certificate was
valid stops verifying when the certificate expires; re-sign with a current certificate.
(``model_signing`` 1.1.1 checks the chain at the leaf's own notBefore instead, and so
accepts a signature whatever its certificate's expiry: see docs/security.md.)

Nothing here is imported on the default path: only a verifier given ``--ca``, or a
signer given ``--cert``, loads it.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .errors import InputError
from .findings import Finding
from .fsutil import read_input

CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING
MAX_CERT_FILE = 1024 * 1024  # a PEM bundle of roots; the system bundle is ~200 KiB
MAX_CHAIN = 10  # certificates a signature may bring (leaf and intermediates)
MAX_CHAIN_DEPTH = 8  # intermediates between the leaf and a root, at most


def parse_pem_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """Every certificate of a PEM text (one or more ``BEGIN CERTIFICATE`` blocks)."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        hint = " (this is a key, not a certificate)" if b"KEY-----" in data else ""
        raise InputError(f"{source} holds no PEM certificate{hint}")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise InputError(f"{source} is not a readable PEM certificate ({str(e).splitlines()[0][:200]})") from None


def load_certificates(path: str | os.PathLike[str], what: str = "certificate") -> list[x509.Certificate]:
    """The certificates of a PEM file (a root, a chain, or a bundle of roots)."""
    return parse_pem_certificates(read_input(path, MAX_CERT_FILE, what, "input-invalid"), f"{what} {path}")


def der_b64(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def signing_chain(key: Any, certificates: list[x509.Certificate]) -> list[str]:
    """The certificates (leaf first) as a signature entry records them, base64 DER. The
    leaf must certify ``key``'s public key: a chain for another key would never verify."""
    from .errors import UsageError

    if len(certificates) > MAX_CHAIN:
        raise UsageError(f"{len(certificates)} certificates: a signature carries at most {MAX_CHAIN} (the leaf and its intermediates)")
    if certificates[0].public_key() != key.public_key():
        raise UsageError(f"the certificate {describe(certificates[0])} (--cert) is not for the private key given with --key")
    return [der_b64(c) for c in certificates]


def describe(cert: x509.Certificate) -> str:
    """A short name for messages: the subject, as RFC 4514 text."""
    return cert.subject.rfc4514_string()[:200] or "(empty subject)"


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ChainResult:
    """The leaf, if the chain is trusted (``finding`` is None), else why not."""

    leaf: x509.Certificate | None
    finding: Finding | None
    chain: list[x509.Certificate]


def _eku_problem(leaf: x509.Certificate) -> str | None:
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "has no extended key usage extension; a signing certificate must name code signing (1.3.6.1.5.5.7.3.3)"
    if CODE_SIGNING not in eku:
        names = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku) or "none"
        return f"is not for code signing: its extended key usage is {names}, without code signing (1.3.6.1.5.5.7.3.3)"
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not ku.digital_signature:
        return "has a key usage without digitalSignature: its key may not sign"
    return None


def _validator(policy: Any, cert: x509.Certificate, eku: x509.ExtendedKeyUsage) -> None:
    if CODE_SIGNING not in eku:
        raise ValueError("the leaf's extended key usage does not include code signing")


def _verifier(roots: list[x509.Certificate], at: datetime) -> Any:
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

    # Client verifiers require the client-auth EKU by default; a signing leaf needs code
    # signing instead, and (unlike a TLS client) no subject alternative name.
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _validator)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )
    return (
        PolicyBuilder()
        .store(Store(roots))
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )


def decode_chain(encoded: list[str] | list[bytes] | list[Any]) -> list[x509.Certificate] | Finding:
    """Certificates as a signature carries them (base64 DER strings, or DER bytes), leaf first."""
    if not encoded:
        return Finding.of("certificate-untrusted", "the signature carries no certificate")
    if len(encoded) > MAX_CHAIN:
        return Finding.of("certificate-untrusted", f"the signature carries {len(encoded)} certificates; at most {MAX_CHAIN} are read")
    out = []
    for i, item in enumerate(encoded):
        try:
            der: bytes = base64.b64decode(item, validate=True) if isinstance(item, str) else bytes(item)
            out.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError) as e:
            what = "the leaf certificate" if i == 0 else f"chain certificate {i}"
            return Finding.of("certificate-untrusted", f"{what} is not a readable DER certificate ({str(e).splitlines()[0][:120]})")
    return out


def check_chain(chain: list[x509.Certificate], roots: list[x509.Certificate], at: datetime | None = None) -> ChainResult:
    """Is ``chain[0]`` (the leaf) a code-signing certificate that chains through ``chain[1:]``
    to one of ``roots``, valid at ``at`` (default: now)? Findings: ``certificate-eku``,
    ``certificate-expired``, ``certificate-untrusted``."""
    at = at or datetime.now(timezone.utc)
    try:
        return _check_chain(chain, roots, at)
    except ValueError as e:  # an extension or name that parses only lazily (duplicate or malformed extensions)
        return ChainResult(None, Finding.of("certificate-untrusted", f"a certificate of the chain is malformed: {str(e).splitlines()[0][:200]}"), [])


def _check_chain(chain: list[x509.Certificate], roots: list[x509.Certificate], at: datetime) -> ChainResult:
    from cryptography.x509.verification import VerificationError

    leaf, intermediates = chain[0], chain[1:]
    name = describe(leaf)
    why = _eku_problem(leaf)
    if why is not None:
        return ChainResult(None, Finding.of("certificate-eku", f"signing certificate {name} {why}", actual=name), [])
    for i, c in enumerate(chain):
        nb, na = c.not_valid_before_utc, c.not_valid_after_utc
        if not nb <= at <= na:
            what = "signing certificate" if i == 0 else "intermediate certificate"
            state = f"expired at {_time(na)}" if at > na else f"is not valid before {_time(nb)}"
            return ChainResult(
                None,
                Finding.of("certificate-expired", f"{what} {describe(c)} {state} (checked at {_time(at)}, the time of verification)",
                           expected=[_time(nb), _time(na)], actual=_time(at)),
                [],
            )
    try:
        verified = _verifier(roots, at).verify(leaf, intermediates)
    except VerificationError as e:
        text = " ".join(str(e).split())
        text = text.split(" (encountered processing")[0].removeprefix("validation failed: ")
        if "not valid at validation time" in text:
            return ChainResult(None, Finding.of("certificate-expired", f"a certificate in the chain of {name} is not valid now: {text[:200]}"), [])
        if "candidates exhausted" in text:
            text = "no path leads to a root given with --ca"
        return ChainResult(None, Finding.of("certificate-untrusted", f"signing certificate {name} does not chain to a given root: {text[:300]}",
                                            actual=name), [])
    return ChainResult(leaf, None, list(verified.chain))


__all__ = ["ChainResult", "check_chain", "decode_chain", "der_b64", "describe", "load_certificates", "parse_pem_certificates", "signing_chain"]
