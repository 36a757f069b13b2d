"""Keys and signatures: Ed25519 (default) or ECDSA P-256 over the manifest's RFC 8785
canonical bytes. The verifier trusts only the public keys it is handed.

A signature entry is ``{"keyid": hex, "alg": "ed25519"|"ecdsa-p256-sha256", "sig": base64}``;
``keyid`` is the SHA-256 of the public key's SubjectPublicKeyInfo DER. The keyid only
selects which given key to try; nothing in the manifest is ever trusted as a key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .errors import InputError, UsageError
from .findings import Finding
from .fsutil import read_input

PrivateKey = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey]
PublicKey = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey]
PASSPHRASE_ENV = "MANIFEST_KEY_PASSPHRASE"
MAX_KEY_FILE = 64 * 1024
MAX_TRIES_PER_KEY = 4  # signature entries tried per given key; more are ignored


def keyid(pub: PublicKey) -> str:
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def alg_of(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    return "ecdsa-p256-sha256"


def _check_type(key: object, path: str) -> None:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(key.curve, ec.SECP256R1):
        return
    raise InputError(f"{path}: only Ed25519 and ECDSA P-256 keys are supported", code="key-invalid")


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
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        hint = " (this looks like a private key: pass the public key)" if b"PRIVATE KEY" in data else ""
        raise InputError(f"{path} is not a PEM public key{hint} ({str(e).splitlines()[0]})", code="key-invalid") from None
    _check_type(key, str(path))
    return key  # type: ignore[return-value]


def generate(kind: str = "ed25519") -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind in ("ecdsa-p256", "p256", "ecdsa"):
        return ec.generate_private_key(ec.SECP256R1())
    raise UsageError(f"unknown key type {kind!r} (ed25519 or ecdsa-p256)")


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
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(data)
    else:
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
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
        if isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(sig, data)
        else:
            pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class TrustResult:
    trusted_keyids: list[str]  # given keys whose signature verified (each counted once)
    findings: list[Finding]


def check_signatures(data: bytes, signatures: list[dict[str, str]], keys: list[PublicKey]) -> TrustResult:
    """At least one given key must have a valid signature over ``data``; one suffices.

    Signatures by keys nobody passed are ignored (and reported as ``untrusted-key``
    only if no given key signed). A signature whose keyid matches a given key but does
    not verify is ``signature-invalid`` when no given key verified, and only the
    warning ``signature-ignored`` beside a valid one: an extra entry can never take
    away a valid signature, nor add trust. The same key listed twice counts once.
    """
    given = {keyid(k): k for k in keys}
    if not signatures:
        return TrustResult([], [Finding.of("signature-missing", "a key was given but the manifest is not signed")])
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
    if good:
        for kid in dict.fromkeys(bad):  # one warning per key, however many entries
            n = bad.count(kid)
            findings.append(
                Finding.of("signature-ignored", f"{n} signature entr{'ies' if n > 1 else 'y'} for key {kid[:16]} do{'' if n > 1 else 'es'} not verify; "
                           "ignored, since a given key's signature does", actual=kid)
            )
        return TrustResult(good, findings)
    for kid in dict.fromkeys(bad):
        findings.append(
            Finding.of("signature-invalid", f"signature by trusted key {kid[:16]} does not verify: the manifest was changed after signing", actual=kid)
        )
    if not bad:
        signers = sorted({s.get("keyid", "")[:16] for s in signatures})
        findings.append(
            Finding.of("untrusted-key", f"signed only by key(s) {', '.join(signers)}, none of which was given with --key", actual=signers)
        )
    return TrustResult(good, findings)
