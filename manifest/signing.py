"""Keys and signatures over the manifest's RFC 8785 canonical bytes: Ed25519 (default),
ECDSA on P-256, P-384 or P-521, or ML-DSA-65 (FIPS 204, post-quantum). The verifier
trusts only the public keys it is handed.

A signature entry is ``{"keyid": hex, "alg": ALG, "sig": base64}`` with ``ALG`` one of
:data:`ALGS` (ECDSA hashes with the curve's own SHA-2, as ``model_signing`` does: P-256
SHA-256, P-384 SHA-384, P-521 SHA-512; ML-DSA-65 is pure ML-DSA with an empty context);
``keyid`` is the SHA-256 of the public key's SubjectPublicKeyInfo DER, for every type.
The keyid only selects which given key to try; nothing in the manifest is ever trusted
as a key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .errors import InputError, UsageError
from .findings import Finding
from .fsutil import read_input

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    PrivateKey = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, mldsa.MLDSA65PrivateKey]
    PublicKey = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, mldsa.MLDSA65PublicKey]
else:
    PrivateKey = PublicKey = Any
try:  # an older cryptography has no ML-DSA: such keys are then refused, the other types still work
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey as _MLDSA65Private
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey as _MLDSA65Public

    _MLDSA65: tuple[type, ...] = (_MLDSA65Private, _MLDSA65Public)
except ImportError:  # pragma: no cover - the test extra installs a cryptography with ML-DSA
    _MLDSA65 = ()
PASSPHRASE_ENV = "MANIFEST_KEY_PASSPHRASE"
MAX_KEY_FILE = 64 * 1024
MAX_TRIES_PER_KEY = 4  # signature entries tried per given key; more are ignored


def keyid(pub: PublicKey) -> str:
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# keygen --type name -> (signature "alg", key description); the order is the help text's
KEY_TYPES: dict[str, tuple[str, str]] = {
    "ed25519": ("ed25519", "Ed25519"),
    "ecdsa-p256": ("ecdsa-p256-sha256", "ECDSA P-256"),
    "ecdsa-p384": ("ecdsa-p384-sha384", "ECDSA P-384"),
    "ecdsa-p521": ("ecdsa-p521-sha512", "ECDSA P-521"),
    "ml-dsa-65": ("ml-dsa-65", "ML-DSA-65"),
}
ALGS = tuple(alg for alg, _ in KEY_TYPES.values())
SUPPORTED = "Ed25519, ECDSA P-256/P-384/P-521 or ML-DSA-65"
_CURVES: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]] = {  # keygen type -> curve, and its hash
    "ecdsa-p256": (ec.SECP256R1, hashes.SHA256()),
    "ecdsa-p384": (ec.SECP384R1, hashes.SHA384()),
    "ecdsa-p521": (ec.SECP521R1, hashes.SHA512()),
}


def key_type(key: object) -> str | None:
    """The keygen type name of a supported key (private or public), else ``None``."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if _MLDSA65 and isinstance(key, _MLDSA65):
        return "ml-dsa-65"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return next((t for t, (curve, _) in _CURVES.items() if isinstance(key.curve, curve)), None)
    return None


def describe(key: PrivateKey | PublicKey) -> str:
    """``ECDSA P-384``, ``ML-DSA-65``, ...: for messages."""
    kind = key_type(key)
    return KEY_TYPES[kind][1] if kind else type(key).__name__


def ecdsa_hash(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The hash an ECDSA key signs with: its curve's own (P-256 SHA-256, P-384 SHA-384,
    P-521 SHA-512), as ``model_signing`` pairs them."""
    kind = key_type(key)
    if kind not in _CURVES:
        raise UsageError(f"ECDSA on {key.curve.name} is not supported (P-256, P-384 or P-521)")
    return _CURVES[kind][1]


def alg_of(key: PrivateKey | PublicKey) -> str:
    kind = key_type(key)
    if kind is None:
        raise UsageError(f"{type(key).__name__} is not a supported key ({SUPPORTED})")
    return KEY_TYPES[kind][0]


def _check_type(key: object, path: str) -> None:
    if key_type(key) is None:
        what = f"ECDSA on {key.curve.name}" if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) else type(key).__name__
        raise InputError(f"{path}: a {what} key is not supported (only {SUPPORTED} keys are)", code="key-invalid")


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    return read_input(path, MAX_KEY_FILE, "key", "key-invalid")


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> PrivateKey:
    """PEM PKCS#8 or traditional (``openssl ecparam -genkey`` writes EC PARAMETERS first)."""
    data = _read_key_file(path)
    if passphrase is None and os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise InputError(f"{path} is encrypted: set {PASSPHRASE_ENV}", code="key-invalid") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InputError(f"{path} is not a usable PEM private key ({str(e).splitlines()[0]})", code="key-invalid") from None
    _check_type(key, str(path))
    return key  # type: ignore[return-value]


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    return parse_public_key(_read_key_file(path), str(path))


def parse_public_key(data: bytes, path: str) -> PublicKey:
    """A PEM public key (``path`` names where it came from, for messages)."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        hint = " (this looks like a private key: pass the public key)" if b"PRIVATE KEY" in data else ""
        raise InputError(f"{path} is not a PEM public key{hint} ({str(e).splitlines()[0]})", code="key-invalid") from None
    _check_type(key, str(path))
    return key  # type: ignore[return-value]


def mldsa_supported() -> bool:
    """Whether ``cryptography`` has ML-DSA-65 and its OpenSSL (or AWS-LC) backend implements it."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return bool(_MLDSA65) and bool(getattr(backend, "mldsa_supported", lambda: False)())


def generate(kind: str = "ed25519") -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind in ("p256", "ecdsa"):  # older spellings of ecdsa-p256
        kind = "ecdsa-p256"
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind][0]())
    if kind == "ml-dsa-65":
        if not mldsa_supported():
            from cryptography import __version__ as cryptography_version
            from cryptography.hazmat.backends.openssl.backend import backend

            raise UsageError(f"ML-DSA-65 keys need a cryptography with ML-DSA and a backend that implements it; this one "
                             f"(cryptography {cryptography_version}, {backend.openssl_version_text()}) has none")
        return _MLDSA65Private.generate()
    raise UsageError(f"unknown key type {kind!r} ({', '.join(KEY_TYPES)})")


def write_keypair(key: PrivateKey, private_path: Path, public_path: Path, passphrase: bytes | None = None) -> None:
    """Private key mode 0600, created exclusively (never overwrites), then the public key."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    from .fsutil import RefusedTarget, check_target, refused_message

    for p in (private_path, public_path):
        try:
            check_target(p)
        except RefusedTarget as e:
            raise InputError(refused_message(e), code="write-refused") from None
        if os.path.lexists(p):
            raise UsageError(f"{p} exists; refusing to overwrite a key")
    for p in (private_path, public_path):
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(f"cannot write {p}: no such directory {parent}; nothing was written", code="write-failed")
    written: list[Path] = []
    try:
        for p, data, mode in ((private_path, priv, 0o600), (public_path, pub, 0o644)):
            # O_EXCL: fails on anything that appeared meanwhile (a symlink too), never follows it
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), mode)
            written.append(p)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(p, mode)
    except OSError as e:
        for p in written:
            with contextlib.suppress(OSError):
                os.unlink(p)
        if isinstance(e, FileExistsError):
            raise InputError(f"{e.filename}: appeared while the key was written; nothing was written", code="write-refused") from None
        raise InputError(f"cannot write {e.filename or private_path}: {e.strerror or e}; nothing was written", code="write-failed") from None


def sign(data: bytes, key: PrivateKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(data, ec.ECDSA(ecdsa_hash(key)))
    else:  # Ed25519, or ML-DSA-65 (pure, empty context)
        sig = key.sign(data)
    return {"keyid": keyid(key.public_key()), "alg": alg_of(key), "sig": base64.b64encode(sig).decode("ascii")}


def verify_one(pub: PublicKey, data: bytes, sig_b64: str, alg: str | None = None) -> bool:
    """True if ``sig_b64`` is a valid signature by ``pub`` over ``data``. Only the
    canonical base64 text of a signature counts (an encoding with other padding bits
    decodes to the same bytes), and a declared ``alg`` must be the key's own."""
    if alg is not None and alg != alg_of(pub):
        return False
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except (ValueError, TypeError):
        return False
    if base64.b64encode(sig).decode("ascii") != sig_b64:
        return False
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, data, ec.ECDSA(ecdsa_hash(pub)))
        else:
            pub.verify(sig, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class TrustResult:
    trusted_keyids: list[str]  # given keys whose signature verified (each counted once)
    findings: list[Finding]
    trusted_certificates: list[str] = field(default_factory=list)  # subjects of leaf certificates that chained to a given root and verified


def _check_certificate_entries(data: bytes, signatures: list[dict[str, Any]], cas: list[Any]) -> tuple[list[str], list[str], list[Finding]]:
    """Signature entries that carry certificates, against the given roots: (verified keyids,
    their leaf subjects, why the others failed). Bounded: at most MAX_TRIES_PER_KEY entries."""
    from .certs import check_chain, decode_chain, describe

    good: list[str] = []
    names: list[str] = []
    why: list[Finding] = []
    entries = [s for s in signatures if "certificates" in s][:MAX_TRIES_PER_KEY]
    for s in entries:
        chain = decode_chain(s["certificates"])
        if isinstance(chain, Finding):
            why.append(chain)
            continue
        res = check_chain(chain, cas)
        if res.finding is not None or res.leaf is None:
            why.append(res.finding or Finding.of("certificate-untrusted", "the chain was not verified"))
            continue
        pub = res.leaf.public_key()
        name = describe(res.leaf)
        try:
            _check_type(pub, f"signing certificate {name}")
        except InputError as e:
            why.append(Finding.of("certificate-untrusted", str(e)))
            continue
        kid = keyid(pub)  # type: ignore[arg-type]
        if s.get("keyid") != kid or not verify_one(pub, data, s.get("sig", ""), s.get("alg")):  # type: ignore[arg-type]
            why.append(Finding.of("signature-invalid", f"signature by certificate {name} (chained to a given root) does not verify: "
                                  "the manifest was changed after signing", actual=name))
            continue
        if kid not in good:
            good.append(kid)
            names.append(name)
    return good, names, why


def check_signatures(data: bytes, signatures: list[dict[str, Any]], keys: list[PublicKey], cas: list[Any] | None = None) -> TrustResult:
    """At least one given key, or one certificate chaining to a given root (``cas``), must
    have a valid signature over ``data``; one suffices.

    Signatures by keys nobody passed are ignored (and reported as ``untrusted-key``
    only if no given key signed). A signature whose keyid matches a given key but does
    not verify is ``signature-invalid`` when no given key verified, and only the
    warning ``signature-ignored`` beside a valid one: an extra entry can never take
    away a valid signature, nor add trust. The same key listed twice counts once.
    A certificate entry that does not chain, or has expired, or is not for code
    signing is reported (``certificate-*``) only when nothing else verified.
    """
    cert_good: list[str] = []
    cert_names: list[str] = []
    cert_why: list[Finding] = []
    if cas:
        cert_good, cert_names, cert_why = _check_certificate_entries(data, signatures, cas)
    given = {keyid(k): k for k in keys}
    if not signatures:
        return TrustResult([], [Finding.of("signature-missing", "a trust anchor was given but the manifest is not signed")])
    good: list[str] = []
    bad: list[str] = []
    tried: dict[str, set[str]] = {}
    for s in signatures:
        kid = s.get("keyid", "")
        pub = given.get(kid)
        if pub is None:
            continue  # unknown signer
        seen = tried.setdefault(kid, set())
        if s.get("sig", "") in seen or len(seen) >= MAX_TRIES_PER_KEY:
            continue  # a repeated entry, or a flood of entries for one key: bounded work
        seen.add(s.get("sig", ""))
        if verify_one(pub, data, s.get("sig", ""), s.get("alg")):
            if kid not in good:
                good.append(kid)
        else:
            bad.append(kid)
    findings: list[Finding] = []
    if good or cert_good:
        trusted = good + [k for k in cert_good if k not in good]
        for kid in dict.fromkeys(bad):  # one warning per key, however many entries
            n = bad.count(kid)
            findings.append(
                Finding.of("signature-ignored", f"{n} signature entr{'ies' if n > 1 else 'y'} for key {kid[:16]} do{'' if n > 1 else 'es'} not verify; "
                           "ignored, since a given key's signature does", actual=kid)
            )
        return TrustResult(trusted, findings, cert_names)
    findings.extend(cert_why)
    for kid in dict.fromkeys(bad):
        findings.append(
            Finding.of("signature-invalid", f"signature by trusted key {kid[:16]} does not verify: the manifest was changed after signing", actual=kid)
        )
    if not bad and not cert_why:
        signers = sorted({s.get("keyid", "")[:16] for s in signatures})
        extra = "; no signature carries a certificate for the given --ca roots" if cas else ""
        findings.append(
            Finding.of("untrusted-key", f"signed only by key(s) {', '.join(signers)}, none of which was given with --key{extra}", actual=signers)
        )
    return TrustResult(good, findings)
