"""Sigstore keyless verification of an OMS bundle, offline.

``model_signing sign sigstore`` (its default method) signs with a short-lived Fulcio
certificate bound to an OIDC identity, and logs the signature in Rekor. Verifying such
a bundle means, as the ``sigstore`` library does it (:meth:`sigstore.verify.Verifier.verify_dsse`):

1. a verified time: the Rekor entry's integrated time (bound by its signed entry
   timestamp, the SET) and/or an RFC 3161 signed timestamp, never the wall clock;
2. the certificate chains to a Fulcio root of the trusted root *at that time*, carries
   a valid SCT, and has the code-signing usage;
3. the identity policy: the certificate's SAN is an ``--identity`` and its OIDC issuer
   extension (1.3.6.1.4.1.57264.1.1) the paired ``--issuer``;
4. the Rekor entry: inclusion proof against a signed checkpoint, and the SET, by a
   log key of the trusted root;
5. the DSSE signature over the payload, by the certificate's key;
6. the log entry's body matches the envelope (payload hash, signature, certificate).

Nothing is fetched: the trusted root is the public-good one embedded in the installed
``sigstore`` package (never its TUF cache, never a TUF update), or ``--trusted-root FILE``
for a private deployment. No revocation is checked: Sigstore certificates live ten
minutes and the log, not a CRL, is the record.

The ``sigstore`` package is imported only here, and only for a Sigstore bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import InputError, ManifestInvalid, UsageError
from .findings import Finding
from .fsutil import read_input
from .jsonio import JSONError, loads_strict

PUBLIC_GOOD = "https://tuf-repo-cdn.sigstore.dev"  # the embedded public-good instance's TUF URL (names the asset folder)
TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json"
CLIENT_TRUST_CONFIG_TYPE = "application/vnd.dev.sigstore.clienttrustconfig"
MAX_TRUSTED_ROOT_BYTES = 16 * 1024 * 1024
OIDC_ISSUER_OIDS = ("1.3.6.1.4.1.57264.1.1", "1.3.6.1.4.1.57264.1.8")  # Fulcio's issuer extension, v1 (raw) and v2 (DER UTF8String)
EXTRA = "model-manifest[oms]"
# sigstore's messages for the certificate steps that run before the identity policy (the chain itself raises CertValidationError)
_CERTIFICATE_STEPS = ("SCT", "Key usage", "Extended usage", "signing cert")


def _sigstore() -> None:
    try:
        import sigstore  # noqa: F401
    except ImportError:
        raise UsageError(f"a Sigstore bundle needs the sigstore package: pip install '{EXTRA}'") from None


@dataclass(frozen=True)
class TrustRoot:
    """The Sigstore trusted root a verification used."""

    root: Any  # sigstore.models.TrustedRoot
    source: str  # "embedded public-good root (sigstore X.Y.Z)" or the file's path
    newest: str | None  # the newest validity start of any key or CA in it (how fresh the root is)


def _newest(doc: dict[str, Any]) -> str | None:
    starts: list[str] = []
    for kind in ("tlogs", "ctlogs", "certificateAuthorities", "timestampAuthorities"):
        for item in doc.get(kind) or []:
            if not isinstance(item, dict):
                continue
            valid = item.get("validFor") or (item.get("publicKey") or {}).get("validFor") or {}
            if isinstance(valid, dict) and isinstance(valid.get("start"), str):
                starts.append(valid["start"])
    return max(starts) if starts else None


def load_trusted_root(path: str | os.PathLike[str] | None = None) -> TrustRoot:
    """The public-good trusted root embedded in the ``sigstore`` package, or the one in
    ``path``: a trusted root (``application/vnd.dev.sigstore.trustedroot+json``) or a client
    trust configuration holding one (what ``model_signing --trust_config`` reads). Never
    fetches. Raises :class:`InputError` (exit 2, one line) for an unusable file."""
    _sigstore()
    from importlib import resources
    from urllib.parse import quote

    import sigstore
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    if path is None:
        data = resources.files("sigstore._store").joinpath(quote(PUBLIC_GOOD, safe=""), "trusted_root.json").read_bytes()
        source = f"embedded public-good root (sigstore {sigstore.__version__})"
    else:
        data = read_input(path, MAX_TRUSTED_ROOT_BYTES, "trusted root", "input-invalid")
        source = os.fspath(path)
    try:
        doc = loads_strict(data)
    except JSONError as e:
        raise InputError(f"trusted root {source}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InputError(f"trusted root {source}: not a JSON object")
    media = str(doc.get("mediaType", ""))
    if media.startswith(CLIENT_TRUST_CONFIG_TYPE):
        doc = doc.get("trustedRoot")
        if not isinstance(doc, dict):
            raise InputError(f"trusted root {source}: the client trust configuration has no trustedRoot")
        media = str(doc.get("mediaType", ""))
    if not media.startswith(TRUSTED_ROOT_TYPE):
        raise InputError(f"trusted root {source}: mediaType {media[:80]!r} is not a Sigstore trusted root ({TRUSTED_ROOT_TYPE})")
    import json

    from sigstore.verify import Verifier

    try:
        root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(json.dumps(doc)))
        Verifier(trusted_root=root)  # fails early for a root with no Fulcio CA or no transparency log
    except Exception as e:  # pydantic, sigstore.errors.Error, cryptography's ValueError: all mean an unusable root
        raise InputError(f"trusted root {source}: unusable: {_one(e)}") from None
    return TrustRoot(root, source, _newest(doc))


def _one(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()).split(": expected log_index=")[0]  # not the proof's raw hashes
    return text[:limit] or type(e).__name__


# --------------------------------------------------------------------------- the certificate's claims
def certificate_claims(cert: Any) -> tuple[list[str], str | None]:
    """The identities (SAN: email, URI, Sigstore other-name) and OIDC issuer a Fulcio
    certificate claims, as read (not yet verified)."""
    from cryptography import x509

    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += san.get_values_for_type(x509.RFC822Name)
        sans += san.get_values_for_type(x509.UniformResourceIdentifier)
        sans += [o.value.decode("utf-8", "replace") for o in san.get_values_for_type(x509.OtherName)
                 if o.type_id.dotted_string == "1.3.6.1.4.1.57264.1.7"]
    except x509.ExtensionNotFound:
        pass
    issuer = None
    for oid in OIDC_ISSUER_OIDS:
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        if oid.endswith(".8") and len(raw) > 2 and raw[0] == 0x0C:  # DER UTF8String: tag, length, value
            raw = raw[2:] if raw[1] < 0x80 else raw[2 + (raw[1] & 0x7F):]
        issuer = raw.decode("utf-8", "replace")
        break
    return sans, issuer


def _who(sans: list[str], issuer: str | None) -> str:
    return f"{', '.join(sans) or '(no identity)'} (issuer {issuer or 'unknown'})"


# --------------------------------------------------------------------------- verification
@dataclass
class SigstoreResult:
    """What a Sigstore verification found, and what it learned (report facts)."""

    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


class _Recording:
    """The caller's identity policy, run where sigstore runs it (after the chain, before
    the log) but without stopping the verification: a wrong identity and, say, a broken
    log entry are both reported."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reached = False
        self.error: Exception | None = None

    def verify(self, cert: Any) -> None:
        from sigstore.errors import VerificationError

        self.reached = True
        try:
            self.inner.verify(cert)
        except VerificationError as e:
            self.error = e


def _dsse_verifies(cert: Any, b: Any) -> bool:
    """Every DSSE signature of ``b`` verifies with the certificate's key (ECDSA, SHA-256, as
    sigstore signs): tells a changed payload from a broken log entry."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from .oms import pae

    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        for sig in b.signatures:
            key.verify(sig, pae(b.payload, b.payload_type), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _verified_timestamps(verifier: Any, bundle: Any) -> list[str]:
    """The times of the bundle's RFC 3161 signed timestamps that verify with the trusted
    root's timestamp authorities (sigstore's own check, which skips the others silently)."""
    try:
        results = verifier._verify_timestamp_authority(bundle)
    except Exception:  # an unusable timestamp verifies nothing
        return []
    return [r.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for r in results]


def parse_sigstore_bundle(raw: bytes) -> Any:
    """``sigstore.models.Bundle`` from the bundle's bytes; :class:`ManifestInvalid` (exit 2) if sigstore refuses it."""
    _sigstore()
    from sigstore.models import Bundle

    try:
        return Bundle.from_json(raw)
    except Exception as e:  # InvalidBundle, pydantic's ValidationError, cryptography's ValueError for a bad certificate
        raise ManifestInvalid(f"OMS bundle: not a valid Sigstore bundle: {_one(e)}") from None


def verify_sigstore(b: Any, identities: list[tuple[str, str]], trusted_root: str | None) -> SigstoreResult:
    """Verify the Sigstore bundle ``b`` (a :class:`manifest.oms.Bundle` read from a file)
    against ``identities`` (accepted (SAN, OIDC issuer) pairs; one must match) and the
    trusted root, offline. Findings, never an exception, for a bundle that does not verify;
    :class:`ManifestError` (exit 2) for a bundle or trusted root that cannot be read."""
    for pair in identities:  # an empty issuer would make sigstore's policy skip the issuer check
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, str) and v.strip() for v in pair)):
            raise UsageError(f"a Sigstore identity is a pair of a non-empty identity and a non-empty OIDC issuer, not {str(pair)[:120]}")
    tr = load_trusted_root(trusted_root)
    bundle = parse_sigstore_bundle(b.raw)
    from sigstore.errors import CertValidationError, Error, VerificationError
    from sigstore.verify import Verifier
    from sigstore.verify.policy import AnyOf, Identity

    cert = bundle.signing_certificate
    sans, issuer = certificate_claims(cert)
    entry = loads_strict(b.raw)["verificationMaterial"]["tlogEntries"][0]  # sigstore accepted it: one entry, well-formed
    when = int(entry.get("integratedTime") or 0)
    tsa = loads_strict(b.raw)["verificationMaterial"].get("timestampVerificationData") or {}
    out = SigstoreResult()
    out.facts = {
        "identity": sans,
        "issuer": issuer,
        "log_index": int(entry.get("logIndex") or 0),
        "integrated_time": datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
        "signed_timestamps": len(tsa.get("rfc3161Timestamps") or []),
        "trusted_root": tr.source,
        "trusted_root_newest": tr.newest,
    }
    accepted = ", ".join(f"{i} (issuer {s})" for i, s in identities)
    if not identities:
        out.findings.append(Finding.of(
            "identity-mismatch",
            f"the bundle is signed keylessly (Sigstore) by {_who(sans, issuer)}, and no --identity/--issuer pair was given to accept a signer",
            actual=sans, hint="pass the publisher's identity and OIDC issuer: --identity ID --issuer URL"))
        return out
    policy = _Recording(AnyOf([Identity(identity=i, issuer=s) for i, s in identities]))
    failure: VerificationError | None = None
    try:
        try:
            verifier = Verifier(trusted_root=tr.root)  # builds a Rekor client object; verify_dsse never uses it
            payload_type, verified = verifier.verify_dsse(bundle, policy)
        except VerificationError as e:
            failure = e
    except Error as e:  # MetadataError: the trusted root lacks what this bundle needs (CT log keys, ...)
        raise InputError(f"trusted root {tr.source}: cannot verify this bundle: {_one(e)}") from None
    except Exception as e:  # what sigstore's model let through but its verification cannot use
        raise ManifestInvalid(f"OMS bundle: the Sigstore verification material is malformed: {_one(e)}") from None
    if failure is None:
        if payload_type != b.payload_type or verified != b.payload:  # the payload checked against the files must be the one verified
            out.findings.append(Finding.of("signature-invalid", "the payload sigstore verified is not the bundle's DSSE payload"))
        present = out.facts["signed_timestamps"]
        times = _verified_timestamps(verifier, bundle) if present else []
        out.facts["verified_timestamps"] = times
        good = len(times)
        if good < present:  # sigstore counts only the ones that verify: say so rather than let the fact suggest otherwise
            out.findings.append(Finding.of(
                "timestamp-unverified",
                f"{present - good} of the bundle's {present} signed timestamps do not verify with the timestamp authorities of "
                f"{tr.source}; the time of signing came from the Rekor entry alone"))
    elif isinstance(failure, CertValidationError):
        out.findings.append(Finding.of("certificate-untrusted", f"the Sigstore signing certificate of {_who(sans, issuer)} does not chain to a "
                                       f"Fulcio root of {tr.source} at the time of signing: {_one(failure)}"))
    elif not policy.reached:  # before the identity policy: the verified time (log entry, timestamps), then the SCT and key usage
        if any(m in str(failure) for m in _CERTIFICATE_STEPS):
            why = f"the signing certificate of {_who(sans, issuer)} is not a valid Fulcio certificate under {tr.source}"
            out.findings.append(Finding.of("certificate-untrusted", f"{why}: {_one(failure)}"))
        else:
            why = "no verified time of signing (a Rekor integrated time bound by its signed entry timestamp, or a signed timestamp)"
            out.findings.append(Finding.of("transparency-log-invalid", f"{why}: {_one(failure)}"))
    elif not _dsse_verifies(cert, b):  # after it: the log entry, the DSSE signature, or their consistency
        out.findings.append(Finding.of("signature-invalid", "the DSSE signature does not verify with the Sigstore signing certificate's key: "
                                       "the bundle was changed after signing"))
    else:
        out.findings.append(Finding.of("transparency-log-invalid", f"the Rekor transparency log entry does not verify: {_one(failure)}"))
    if policy.error is not None:
        out.findings.insert(0, Finding.of(
            "identity-mismatch",
            f"the bundle is signed by {_who(sans, issuer)}, none of the accepted identities: {accepted}",
            expected=[list(p) for p in identities], actual={"identity": sans, "issuer": issuer}))
    return out


__all__ = ["SigstoreResult", "TrustRoot", "certificate_claims", "load_trusted_root", "parse_sigstore_bundle", "verify_sigstore"]
