"""OpenSSF Model Signing (OMS) v1.0 interop: export a manifest as an OMS bundle, and
verify a directory against an OMS bundle (for example one made by ``model_signing``).

An OMS bundle is a Sigstore bundle (``application/vnd.dev.sigstore.bundle.v0.3+json``)
holding a DSSE envelope around an in-toto Statement v1 whose predicateType is
``https://model_signing/signature/v1.0``::

    statement = {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": MODEL, "digest": {"sha256": ROOT}}],
                 "predicateType": "https://model_signing/signature/v1.0",
                 "predicate": {"serialization": {"method": "files", "hash_type": "sha256",
                                                 "allow_symlinks": false, "ignore_paths": [...]},
                               "resources": [{"name": PATH, "algorithm": "sha256", "digest": HEX}, ...]}}

``ROOT`` is the SHA-256 of the resources' raw digests concatenated in listed order
(sorted by path components). The DSSE signature is ECDSA over
``PAE("application/vnd.in-toto+json", payload)``; for the key method the bundle names
the key by ``verificationMaterial.publicKey.hint`` = SHA-256 (hex) of the public key's
PEM SubjectPublicKeyInfo. This module does all of it with ``cryptography`` alone: the
``model_signing`` package is only needed by the tests that prove interoperability.

Differences from a native manifest, by design of OMS: no file sizes (digests decide; a
shard bundle's last shard gives them), no model id or revision (the subject name is
informational), one digest algorithm. ``export`` leaves the git files (``.git``,
``.gitattributes``, ``.github``, ``.gitignore``) out, as ``model_signing`` does by default;
``verify`` follows each bundle's own recorded ``ignore_paths``.

Every form ``model_signing`` 1.1.1 writes is verified: by files or by shards
(``path:start:end``, verified on the chunk machinery of :mod:`manifest.digest`), sha256,
blake2b or blake3, a single-file model (resource ``"."``), and ``allow_symlinks`` bundles
(with ``Options.allow_symlinks``: links inside the model only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import EXIT_FAILED, ManifestError, ManifestInvalid, UsageError
from .findings import Finding, examples
from .fsutil import read_input
from .inventory import Artifact
from .jsonio import JSONError, loads_strict
from .options import Options
from .paths import path_problem
from .report import INTEGRITY_ONLY, Report

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")  # model_signing's default exclusions
HASH_TYPES = ("sha256", "blake2b", "blake3")  # every hash_type model_signing 1.1.1 writes
METHODS = ("files", "shards")
SINGLE_FILE = "."  # model_signing's resource name when the model is one file (shards: ".:0:N")
# A bundle is JSON of about 260 bytes a resource (measured on model_signing's own bundles):
# 256 MiB holds a million files or shards, read in about 1.6 GB and 7 s of CPU (docs/security.md).
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
_HEX = re.compile(r"^[0-9a-f]+$")
_DIGEST_LEN = {"sha256": 64, "blake3": 64, "blake2b": 128}


class OmsUnsupported(ManifestInvalid):
    """A well-formed bundle this tool cannot use (another predicate, shards, blake2b, certificates)."""

    code = "manifest-unsupported"


class StaleManifest(ManifestError):
    """export: a file read to cut shards no longer matches the manifest (exit 1)."""

    exit_status = EXIT_FAILED


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding (what the signature covers)."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def key_hint(public_key: Any) -> str:
    """``model_signing``'s key identifier: SHA-256 of the PEM SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def root_digest(resources: list[dict[str, str]]) -> str:
    """The subject digest: SHA-256 over the resources' raw digests, in listed order."""
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r["digest"]))
    return h.hexdigest()


def _path_key(path: str) -> tuple[str, ...]:
    """``model_signing`` sorts resources as ``PurePosixPath`` objects: by components."""
    return tuple(path.split("/"))


def is_ignored(rel: str, ignore_paths: list[str] | tuple[str, ...]) -> bool:
    """OMS semantics: a path, or anything beneath a directory path, relative to the model root."""
    return any(rel == p or rel.startswith(p + "/") for p in ignore_paths)


# --------------------------------------------------------------------------- export
def _ec_key(key: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    from .signing import describe, load_private_key

    if isinstance(key, (str, os.PathLike)):
        key = load_private_key(key)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"OMS key signing needs an ECDSA key (P-256, P-384 or P-521), not {describe(key)} "
                         "(make one with: manifest keygen --type ecdsa-p256)")
    return key


def build_statement(m: Any, *, name: str, extra_ignore: list[str] | None = None, shard_size: int | None = None,
                    shards: dict[str, list[str]] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The in-toto Statement for manifest ``m``, and the files left out (git files).

    ``shard_size``: serialization by shards, as ``model_signing``'s shard serializer cuts
    them (``path:start:end`` of at most ``shard_size`` bytes, none for an empty file; each
    shard's algorithm named ``sha256-sharded-N``, which its verifier compares). ``shards``
    gives the SHA-256 of each piece of the files larger than one shard."""
    algorithm = next((a for a in HASH_TYPES if a in m.algorithms), None)
    if algorithm is None:
        raise UsageError(f"OMS needs sha256 or blake3 digests; the manifest records only {', '.join(m.algorithms)}")
    ignore = {r.rstrip("/") for r in m.ignore if r.rstrip("/")} | set(GIT_PATHS) | set(extra_ignore or ())
    kept = statement_files(m)
    dropped = sorted(p for p in m.files if is_ignored(p, GIT_PATHS))
    serialization: dict[str, Any]
    if shard_size is None:
        resources = [{"name": p, "algorithm": algorithm, "digest": m.files[p].digests[algorithm]} for p in kept]
        serialization = {"method": "files", "hash_type": algorithm, "allow_symlinks": False, "ignore_paths": sorted(ignore)}
    else:
        if "sha256" not in m.algorithms:
            raise UsageError("OMS shards need the manifest's sha256 digests (model_signing shards blake3 as whole files)")
        label = f"sha256-sharded-{shard_size}"
        resources = []
        for p in kept:
            size = m.files[p].size
            pieces = [m.files[p].digests["sha256"]] if 0 < size <= shard_size else (shards or {}).get(p, [])
            if size > shard_size and len(pieces) != -(-size // shard_size):
                raise UsageError(f"{p}: no {shard_size}-byte shard digests to export")
            for k, digest in enumerate(pieces):
                resources.append({"name": f"{p}:{k * shard_size}:{min((k + 1) * shard_size, size)}", "algorithm": label, "digest": digest})
        serialization = {"method": "shards", "hash_type": "sha256", "shard_size": shard_size, "allow_symlinks": False,
                         "ignore_paths": sorted(ignore)}
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"serialization": serialization, "resources": resources},
    }
    return statement, dropped


def shard_digests(m: Any, root: Path | None, shard_size: int) -> dict[str, list[str]]:
    """The SHA-256 of each ``shard_size`` piece of the manifest's files larger than one
    shard: the manifest's own chunk digests when it recorded them at that size, else read
    from the directory, whole-file digests in the same pass, which must still be the
    manifest's (a file that changed since is refused, never exported)."""
    from .digest import FileChanged, chunk_key, hash_files, split_chunks
    from .errors import InputError
    from .inventory import Artifact as _Artifact
    from .inventory import FileInfo

    out: dict[str, list[str]] = {}
    need: list[str] = []
    for p, e in m.files.items():
        if e.size <= shard_size or is_ignored(p, GIT_PATHS):
            continue
        if m.chunk_size == shard_size and p in m.chunks:
            out[p] = list(m.chunks[p])
        else:
            need.append(p)
    if not need:
        return out
    if root is None:
        raise UsageError(f"{need[0]} must be read to cut it into {shard_size}-byte shards: give the model directory")
    infos: dict[str, FileInfo] = {}
    for p in need:
        try:
            st = os.lstat(root / p)
        except OSError as e:
            raise InputError(f"cannot read {p}: {e.strerror}", code="unreadable", path=p) from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p} is not a regular file", code="unsupported-file", path=p)
        if st.st_size != m.files[p].size:
            raise StaleManifest(f"{st.st_size} bytes, the manifest says {m.files[p].size}: run `manifest verify` before exporting",
                                code="size-mismatch", path=p)
        infos[p] = FileInfo(p, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, ctime_ns=st.st_ctime_ns)
    art = _Artifact(root=root, files=infos, ignore=())
    algorithms = sorted({"sha256", *(a for a in m.algorithms if a in ("sha256", "blake3"))})
    ckey = chunk_key(shard_size)
    for info, res, _ in hash_files(art, list(infos.values()), algorithms, chunk_size=shard_size):
        if isinstance(res, FileChanged) or (not isinstance(res, Exception) and any(
                res[a] != m.files[info.path].digests[a] for a in algorithms if a in m.files[info.path].digests)):
            raise StaleManifest("no longer matches the manifest: run `manifest verify`, and create the manifest again if the change "
                                "is intended, before exporting", code="digest-mismatch", path=info.path)
        if isinstance(res, Exception):
            raise InputError(f"cannot read {info.path}: {getattr(res, 'strerror', None) or res}", code="unreadable", path=info.path)
        out[info.path] = split_chunks(res[ckey])
    return out


def sign_statement(statement: dict[str, Any], key: Any, certificates: list[str] | None = None) -> dict[str, Any]:
    """Wrap ``statement`` in a DSSE envelope signed by ``key`` (ECDSA on P-256, P-384 or P-521,
    hashing with the curve's SHA-2 as ``model_signing`` does), inside a Sigstore bundle.
    ``certificates`` (base64 DER, the key's certificate first, then its intermediates) make it a
    certificate bundle, as ``model_signing sign certificate`` writes it."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from .signing import ecdsa_hash

    key = _ec_key(key)
    payload = json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")
    sig = key.sign(pae(payload), ec.ECDSA(ecdsa_hash(key)))
    material: dict[str, Any] = (
        {"x509CertificateChain": {"certificates": [{"rawBytes": c} for c in certificates]}}
        if certificates
        else {"publicKey": {"hint": key_hint(key.public_key())}}
    )
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {**material, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode("ascii"), "keyid": ""}],
        },
    }


@dataclass(frozen=True)
class Exported:
    """What :func:`export_oms` wrote."""

    path: Path
    files: int
    left_out: list[str]  # manifest files outside the OMS signing scope (git files)
    bundle: dict[str, Any]
    directories: list[str] = field(default_factory=list)  # the manifest's empty directories: OMS cannot record them
    empty_files: list[str] = field(default_factory=list)  # shards: empty files, which get no shard (so are not signed)
    signer: str = "ECDSA P-256"  # the signing key's type, e.g. "ECDSA P-384"


def export_oms(
    manifest_or_dir: Any,
    key: Any,
    out: str | os.PathLike[str],
    *,
    directory: str | os.PathLike[str] | None = None,
    name: str | None = None,
    shard_size: int | None = None,
    certificates: list[Any] | None = None,
) -> Exported:
    """Turn a manifest into a signed OMS v1.0 bundle at ``out``.

    ``manifest_or_dir``: a :class:`~manifest.document.Manifest`, a manifest file, or a
    model directory holding ``manifest.json``. ``key``: an ECDSA private key on P-256,
    P-384 or P-521 (or its PEM path). The bundle's own path is put outside the signing scope when it lies
    in the model directory. Translation only: run ``manifest verify`` first to know the
    manifest matches the files. ``shard_size``: serialization by shards of that many bytes
    (model_signing's ``use_shard_serialization``); files larger than one shard are read
    unless the manifest's chunk digests have that size.

    ``certificates`` (cryptography objects, the key's certificate first) make a certificate
    bundle. Without them, a manifest signed with a certificate for ``key`` keeps that form:
    its signature entry's certificates go into the bundle."""
    from .api import check_output, load_manifest, write_output
    from .document import Manifest
    from .inventory import DEFAULT_MANIFEST_NAME, literal_rel

    signing_key = _ec_key(key)
    if isinstance(manifest_or_dir, Manifest):
        m, root = manifest_or_dir, Path(directory) if directory is not None else None
    else:
        src = Path(manifest_or_dir)
        mpath = src / DEFAULT_MANIFEST_NAME if src.is_dir() else src
        m = load_manifest(mpath)
        root = Path(directory) if directory is not None else (src if src.is_dir() else src.parent)
    out_path = Path(out)
    check_output(out_path)
    extra: list[str] = []
    rel_out = literal_rel(out_path, root) if root is not None else None  # the literal path, never a symlink's target
    if rel_out is not None:
        extra.append(rel_out)
    subject = name or m.model_id or (root.resolve().name if root is not None else "model")
    if shard_size is not None and shard_size <= 0:
        raise UsageError("--shard-size must be a positive number of bytes")
    shards = shard_digests(m, root, shard_size) if shard_size is not None else None
    statement, dropped = build_statement(m, name=subject, extra_ignore=extra, shard_size=shard_size, shards=shards)
    chain: list[str] | None = None
    if certificates:
        from .certs import signing_chain

        chain = signing_chain(signing_key, certificates)
    else:
        from .signing import keyid

        mine = keyid(signing_key.public_key())
        chain = next((list(e["certificates"]) for e in m.signatures if e.get("keyid") == mine and e.get("certificates")), None)
    bundle = sign_statement(statement, signing_key, chain)
    write_output(out_path, (json.dumps(bundle, indent=2) + "\n").encode("utf-8"))
    from .signing import describe

    empty = [p for p in statement_files(m) if m.files[p].size == 0] if shard_size is not None else []
    return Exported(out_path, len(statement["predicate"]["resources"]), dropped, bundle, list(m.directories), empty, describe(signing_key))


def statement_files(m: Any) -> list[str]:
    """The manifest's files inside the OMS signing scope (all but the git files)."""
    return sorted((p for p in m.files if not is_ignored(p, GIT_PATHS)), key=_path_key)


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Bundle:
    """A structurally valid OMS bundle (nothing about it is trusted yet)."""

    material: str  # "publicKey", "x509CertificateChain" or "certificate"
    hint: str | None
    payload: bytes  # the DSSE payload, raw (what the signature covers, through PAE)
    payload_type: str
    signatures: list[bytes]
    statement: dict[str, Any]
    subject_name: str
    subject_digest: str
    hash_type: str
    ignore_paths: list[str]
    resources: dict[str, str]  # path -> hex digest (shards: the file's shard digests joined in order)
    unsafe: list[Finding]  # resources refused for their path (never opened)
    method: str = "files"  # "files" or "shards"
    shard_size: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # shards: path -> size (its last shard's end)
    allow_symlinks: bool = False  # the signer followed symlinks
    raw: bytes = b""  # the bundle file's bytes, as read once (a Sigstore verification reads the same bytes)
    certificates: list[str] = field(default_factory=list)  # x509CertificateChain: base64 DER, the leaf first

    @property
    def single_file(self) -> bool:
        """The model was one file, not a directory (resource ``"."``)."""
        return SINGLE_FILE in self.resources


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ManifestInvalid(f"OMS bundle: {what}")


def _b64(value: Any, what: str) -> bytes:
    _need(isinstance(value, str) and len(value) > 0, f"{what} must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestInvalid(f"OMS bundle: {what} is not valid base64") from None


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and structurally check an OMS bundle. Raises :class:`ManifestInvalid`
    (exit 2, one line) for anything malformed and :class:`OmsUnsupported` for a
    well-formed bundle this tool cannot use."""
    data = read_input(path, MAX_BUNDLE_BYTES, "OMS bundle", "manifest-invalid")  # never blocks on a FIFO
    _need(len(data) > 0, "the file is empty")
    try:
        doc = loads_strict(data, max_bytes=MAX_BUNDLE_BYTES)
    except JSONError as e:
        raise ManifestInvalid(f"OMS bundle: not valid JSON: {e}") from None
    _need(isinstance(doc, dict), "not a JSON object")
    _need(
        isinstance(doc.get("mediaType"), str) and doc["mediaType"].startswith("application/vnd.dev.sigstore.bundle"),
        "mediaType is not a Sigstore bundle media type",
    )
    vm = doc.get("verificationMaterial")
    _need(isinstance(vm, dict), "no verificationMaterial")
    env = doc.get("dsseEnvelope")
    _need(isinstance(env, dict), "no dsseEnvelope (message-signature bundles are not OMS)")
    # verification material: exactly one way to name the signer
    tlog = vm.get("tlogEntries", [])
    _need(isinstance(tlog, list), "verificationMaterial.tlogEntries must be a list")
    hint = None
    chain_b64: list[str] = []
    if "publicKey" in vm:
        pk = vm["publicKey"]
        _need(
            isinstance(pk, dict) and (isinstance(pk.get("hint"), str) or isinstance(pk.get("rawBytes"), str)),
            "verificationMaterial.publicKey needs a hint or rawBytes",
        )
        material, hint = "publicKey", pk.get("hint") if isinstance(pk.get("hint"), str) else None
    elif "x509CertificateChain" in vm:
        chain = vm["x509CertificateChain"]
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        _need(isinstance(certs, list) and len(certs) > 0, "x509CertificateChain.certificates must be a non-empty list")
        for c in certs or []:
            _b64(c.get("rawBytes") if isinstance(c, dict) else None, "a certificate's rawBytes")
        chain_b64 = [c["rawBytes"] for c in certs or []]
        material = "x509CertificateChain"
    elif "certificate" in vm:
        cert = vm["certificate"]
        _b64(cert.get("rawBytes") if isinstance(cert, dict) else None, "certificate.rawBytes")
        _need(len(tlog) > 0, "a Sigstore (certificate) bundle needs at least one tlogEntries entry")
        material = "certificate"
    else:
        raise ManifestInvalid("OMS bundle: verificationMaterial has no publicKey, x509CertificateChain or certificate")
    # the DSSE envelope
    _need(
        set(env) <= {"payload", "payloadType", "signatures"},
        f"dsseEnvelope has unknown keys {sorted(set(env) - {'payload', 'payloadType', 'signatures'})}",
    )
    payload = _b64(env.get("payload"), "dsseEnvelope.payload")
    _need(env.get("payloadType") == PAYLOAD_TYPE, f"dsseEnvelope.payloadType must be {PAYLOAD_TYPE}")
    sigs = env.get("signatures")
    _need(isinstance(sigs, list) and len(sigs) > 0, "dsseEnvelope.signatures must be a non-empty list")
    raw_sigs = []
    for s in sigs:
        _need(
            isinstance(s, dict) and set(s) <= {"sig", "keyid"} and (s.get("keyid") is None or isinstance(s.get("keyid"), str)),
            "each DSSE signature is {sig, keyid?}",
        )
        raw_sigs.append(_b64(s.get("sig"), "a DSSE signature"))
    # the in-toto Statement
    try:
        st = loads_strict(payload, max_bytes=MAX_BUNDLE_BYTES)
    except JSONError as e:
        raise ManifestInvalid(f"OMS bundle: the DSSE payload is not valid JSON: {e}") from None
    _need(isinstance(st, dict), "the DSSE payload is not a JSON object")
    _need(st.get("_type") == STATEMENT_TYPE, f"the payload is not an in-toto Statement v1 (_type {st.get('_type')!r})")
    if st.get("predicateType") != PREDICATE_TYPE:
        raise OmsUnsupported(f"OMS bundle: predicateType {str(st.get('predicateType'))[:100]!r} is not {PREDICATE_TYPE}")
    subj = st.get("subject")
    _need(isinstance(subj, list) and len(subj) == 1 and isinstance(subj[0], dict), "the Statement must have exactly one subject")
    sname, sdig = subj[0].get("name"), subj[0].get("digest")
    _need(isinstance(sname, str) and len(sname) > 0, "the subject needs a name")
    _need(
        isinstance(sdig, dict) and isinstance(sdig.get("sha256"), str) and bool(_HEX.match(sdig["sha256"])),
        "the subject needs a sha256 digest",
    )
    pred = st.get("predicate")
    _need(isinstance(pred, dict), "the Statement has no predicate")
    ser = pred.get("serialization")
    _need(isinstance(ser, dict), "the predicate has no serialization")
    method = ser.get("method")
    if method not in METHODS:
        raise OmsUnsupported(f"OMS bundle: serialization method {str(method)[:40]!r} is not supported (files or shards)")
    hash_type = ser.get("hash_type")
    if hash_type not in HASH_TYPES:
        raise OmsUnsupported(f"OMS bundle: hash_type {str(hash_type)[:40]!r} is not supported ({', '.join(HASH_TYPES)})")
    _need(isinstance(ser.get("allow_symlinks"), bool), "serialization.allow_symlinks must be a boolean")
    shard_size = None
    labels = {hash_type}
    if method == "shards":
        raw_size = ser.get("shard_size")
        # model_signing writes it through a protobuf Struct, so as a JSON number with ".0" (1000000000.0)
        _need(
            isinstance(raw_size, (int, float)) and not isinstance(raw_size, bool) and raw_size == int(raw_size) and 0 < raw_size < 2**63,
            "serialization.shard_size must be a positive integer",
        )
        shard_size = int(raw_size)
        labels.add(f"{hash_type}-sharded-{shard_size}")  # what model_signing 1.1.1 names each shard's algorithm
    ignore = ser.get("ignore_paths", [])
    _need(isinstance(ignore, list) and all(isinstance(i, str) and i for i in ignore), "serialization.ignore_paths must be a list of paths")
    res = pred.get("resources")
    _need(isinstance(res, list), "the predicate has no resources list")
    digests: dict[str, str] = {}
    unsafe: list[Finding] = []
    width = _DIGEST_LEN[hash_type]
    root = hashlib.sha256()  # the subject digest, over the raw digests in listed order
    for r in res:  # the common case in a few C-level tests; messages only for a failure
        name = r.get("name") if isinstance(r, dict) else None
        digest = r.get("digest") if isinstance(r, dict) else None
        if not (isinstance(name, str) and isinstance(digest, str)):
            raise ManifestInvalid("OMS bundle: each resource needs a name and a digest")
        if r.get("algorithm") not in labels:
            raise ManifestInvalid(f"OMS bundle: resource {name[:100]!r} uses {str(r.get('algorithm'))[:40]!r}, not the bundle's {hash_type}")
        if len(digest) != width or not _HEX.match(digest):
            raise ManifestInvalid(f"OMS bundle: resource {name[:100]!r}: digest is not {hash_type} hex")
        if name in digests:
            raise ManifestInvalid(f"OMS bundle: resource {name[:100]!r} is listed twice")
        digests[name] = digest
        root.update(bytes.fromhex(digest))
    if root.hexdigest() != sdig["sha256"]:
        raise ManifestInvalid("OMS bundle: the subject digest does not match the resources (the statement is inconsistent)")
    pred["resources"] = []  # kept once, in ``resources`` (a bundle of a million files is read in bounded memory)
    sizes: dict[str, int] = {}
    if shard_size is not None:
        digests, sizes = _join_shards(digests, shard_size, hash_type)
    resources: dict[str, str] = {}
    for name, digest in digests.items():
        why = None if name == SINGLE_FILE else path_problem(name)
        if why is not None:
            shown = name.encode("unicode_escape").decode("ascii")[:200]
            unsafe.append(Finding.of("unsafe-path", f"OMS resource refused: {why}; never opened", path=shown))
            continue
        resources[name] = digest
    _need(SINGLE_FILE not in digests or len(digests) == 1, "resource '.' (a single-file model) must be the only one")
    return Bundle(
        material,
        hint,
        payload,
        env["payloadType"],
        raw_sigs,
        st,
        sname,
        sdig["sha256"],
        hash_type,
        [i.strip("/") for i in ignore],
        resources,
        unsafe,
        method=method,
        shard_size=shard_size,
        sizes=sizes,
        allow_symlinks=ser["allow_symlinks"],
        raw=data,
        certificates=chain_b64,
    )


_SHARD = re.compile(r"^(.*):(0|[1-9][0-9]{0,18}):([1-9][0-9]{0,18})$", re.DOTALL)


def _join_shards(named: dict[str, str], shard_size: int, hash_type: str) -> tuple[dict[str, str], dict[str, int]]:
    """``path:start:end`` resources -> each file's shard digests joined in order, and its
    size. The shards must tile the file exactly as ``model_signing`` cuts it: ``[k*S,
    min((k+1)*S, size))`` for k = 0, 1, ... (so a file's size is its last shard's end)."""
    shards: dict[str, list[tuple[int, int, str]]] = {}
    for name, digest in named.items():
        m = _SHARD.match(name)
        _need(m is not None, f"shard resource {name[:100]!r} is not PATH:START:END")
        assert m is not None
        shards.setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3)), digest))
    joined: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for path, parts in shards.items():
        parts.sort()
        size = parts[-1][1]
        _need(-(-size // shard_size) == len(parts), f"the shards of {path[:100]!r} do not cut it into {shard_size}-byte pieces from 0 to {size}")
        want = [(k * shard_size, min((k + 1) * shard_size, size)) for k in range(-(-size // shard_size))]
        _need(
            [(s, e) for s, e, _ in parts] == want,
            f"the shards of {path[:100]!r} do not cut it into {shard_size}-byte pieces from 0 to {size}",
        )
        joined[path] = "".join(d for _, _, d in parts)
        sizes[path] = size
    return joined, sizes


# --------------------------------------------------------------------------- verify
def _dsse_verdict(b: Bundle, key: Any, signer: str) -> list[Finding]:
    """At least one of the bundle's DSSE signatures (the first MAX_TRIES_PER_KEY) must verify with ``key``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    from .signing import MAX_TRIES_PER_KEY, ecdsa_hash

    signed = pae(b.payload, b.payload_type)
    tries = b.signatures[:MAX_TRIES_PER_KEY]
    bad = 0
    for sig in tries:
        try:
            key.verify(sig, signed, ec.ECDSA(ecdsa_hash(key)))
        except InvalidSignature:
            bad += 1
    if bad < len(tries):
        return [Finding.of("signature-ignored", f"{bad} of the bundle's {len(b.signatures)} DSSE signatures do not verify with {signer}; "
                           "ignored, since one does")] if bad else []
    return [Finding.of("signature-invalid", f"the DSSE signature does not verify with {signer}: the bundle was changed after signing")]


def check_certificate_bundle(b: Bundle, keys: list[Any], cas: list[Any]) -> tuple[list[Finding], str | None]:
    """A ``model_signing sign certificate`` bundle: the leaf must chain to a given root (``cas``)
    as :mod:`manifest.certs` checks it, or be a given key itself; then its key must verify the
    DSSE signature. Returns the findings and, when trusted, the leaf's subject."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec

    from .certs import check_chain, decode_chain, describe

    chain = decode_chain(b.certificates)
    if isinstance(chain, Finding):
        return [chain], None
    leaf = chain[0]
    try:
        pub = leaf.public_key()
        name = describe(leaf)
    except (ValueError, UnsupportedAlgorithm) as e:
        return [Finding.of("certificate-untrusted", f"the signing certificate is unusable: {str(e).splitlines()[0][:200]}")], None
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        why = f"signing certificate {name} holds a {type(pub).__name__}; OMS certificate bundles are signed with EC keys"
        return [Finding.of("certificate-untrusted", why)], None
    if cas:
        res = check_chain(chain, cas)
        if res.finding is not None:
            if any(k == pub for k in keys):  # the leaf's key is itself a given key: trusted directly
                return _dsse_verdict(b, pub, f"the given key of certificate {name}"), name
            return [res.finding], None
        return _dsse_verdict(b, pub, f"certificate {name}"), name
    if any(k == pub for k in keys):
        return _dsse_verdict(b, pub, f"the given key of certificate {name}"), name
    return [Finding.of("untrusted-key", f"the bundle is signed with certificate {name}, whose key was not given with --key "
                       "(pass its root with --ca to check the chain)", actual=name)], None


def check_bundle_signature(b: Bundle, keys: list[Any]) -> list[Finding]:
    """At least one given ECDSA key must be the bundle's signer and verify the DSSE signature
    (over the curve's SHA-2: P-256 SHA-256, P-384 SHA-384, P-521 SHA-512)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    from .signing import ecdsa_hash

    candidates = [k for k in keys if isinstance(k, ec.EllipticCurvePublicKey)]
    if not candidates:
        raise UsageError("OMS bundles are signed with ECDSA keys: pass the signer's ECDSA (P-256, P-384 or P-521) public key with --key")
    matching = [k for k in candidates if b.hint is None or key_hint(k) == b.hint]
    if not matching:
        return [
            Finding.of(
                "untrusted-key",
                f"the bundle was signed by key {b.hint[:16] if b.hint else '?'}..., none of the keys given with --key",
                actual=b.hint,
            )
        ]
    from .signing import MAX_TRIES_PER_KEY

    signed = pae(b.payload, b.payload_type)
    tries = b.signatures[:MAX_TRIES_PER_KEY]  # bounded work for a flood of DSSE signatures
    bad = 0

    def verifies(key: Any, sig: bytes) -> bool:
        try:
            key.verify(sig, signed, ec.ECDSA(ecdsa_hash(key)))
        except InvalidSignature:
            return False
        return True

    for sig in tries:
        if not any(verifies(k, sig) for k in matching):
            bad += 1
    if bad < len(tries):  # one valid signature by a given key suffices; the others are at most a warning
        return [Finding.of("signature-ignored", f"{bad} of the bundle's {len(b.signatures)} DSSE signatures do not verify with the given key; "
                           "ignored, since one does")] if bad else []
    return [Finding.of("signature-invalid", "the DSSE signature does not verify with the given key: the bundle was changed after signing")]


def verify_oms(directory: str | os.PathLike[str], bundle_path: str | os.PathLike[str], *, options: Options | None = None) -> Report:
    """Verify ``directory`` (or ``ORG/NAME[@REV]`` in the Hugging Face cache) against an
    OMS v1.0 bundle, e.g. one made by ``model_signing sign key``. Never raises on a
    mismatch (the report holds it); raises :class:`~manifest.errors.ManifestError`
    for a malformed or unsupported bundle (exit 2)."""
    from .api import (
        NO_ANCHOR_HINT,
        _emit,
        _load_tier,
        _no_anchor_message,
        _Stop,
        _trust_anchor_gate,
        resolve_target,
    )

    opts = options or Options()
    b = read_bundle(bundle_path)
    root, settings = resolve_target(directory)
    _check_target_form(b, root)
    report = Report("verify", str(directory), str(bundle_path), integrity_only=opts.integrity_only)
    report.facts["oms"] = {"subject": b.subject_name, "root_digest": b.subject_digest, "hash_type": b.hash_type, "files": len(b.resources)}
    t0 = time.perf_counter()
    try:
        _emit(report, b.unsafe, opts)
        # 1. Trust: no trust anchor, no pass (unless --no-signature asks for integrity only).
        no_anchor: tuple[str, str] | None = None
        if b.material == "certificate":  # Sigstore keyless: a Fulcio certificate and a Rekor entry
            if opts.integrity_only:
                report.mark_not_checked("signature", f"--no-signature: {INTEGRITY_ONLY} (the bundle is signed keylessly with Sigstore)")
            elif opts.has_anchor:
                from .keyless import verify_sigstore

                result = verify_sigstore(b, opts.identities, opts.trusted_root)
                report.facts["sigstore"] = result.facts
                _emit(report, result.findings, opts)
                report.mark_checked("signature")
            else:
                report.mark_not_checked("signature", "no trust anchor (--identity/--issuer) given: the bundle's authenticity is not established")
                no_anchor = (
                    "the OMS bundle is signed keylessly with Sigstore, but no --identity/--issuer pair was given to check it against: "
                    "anyone can get a Sigstore certificate, so its authenticity is not established",
                    "pass the signer's --identity ID --issuer URL, or --no-signature for an integrity-only check",
                )
        elif b.material == "x509CertificateChain" and opts.has_anchor:
            found, signer = check_certificate_bundle(b, opts.keys, opts.cas)
            if signer is not None:
                report.facts["trusted_certificates"] = [signer]
            _emit(report, found, opts)
            report.mark_checked("signature")
        elif b.material == "x509CertificateChain" and opts.integrity_only:
            report.mark_not_checked("signature", f"--no-signature: {INTEGRITY_ONLY} (the bundle is signed with a certificate)")
        elif b.material == "x509CertificateChain":
            report.mark_not_checked("signature", "no trust anchor (--ca) given: the bundle's authenticity is not established")
            no_anchor = ("the OMS bundle is signed with a certificate, but no trust anchor (--ca ROOT.pem) was given to check it against: "
                         "anyone can make a certificate, so its authenticity is not established",
                         "pass the publisher's root certificate with --ca ROOT.pem, or --no-signature for an integrity-only check")
        elif b.material != "publicKey":
            tool = "certificate"
            if opts.keys:
                raise OmsUnsupported(
                    f"OMS bundle is signed with a {b.material}; verify it with `model_signing verify "
                    f"{tool}` (this tool checks key-signed bundles)"
                )
            if opts.integrity_only:
                report.mark_not_checked("signature", f"--no-signature: {INTEGRITY_ONLY} (the bundle is signed with a {b.material})")
            else:
                report.mark_not_checked("signature", f"the bundle is signed with a {b.material}, which this tool does not verify")
                no_anchor = (
                    f"the OMS bundle is signed with a {b.material}, which this tool does not verify, and nothing else establishes its "
                    "authenticity",
                    f"check the signature with `model_signing verify {tool}`, then run with --no-signature for an integrity-only check",
                )
                if opts.has_anchor:  # --identity (or --ca) alone: no pass for a bundle no given anchor can check
                    _emit(report, [Finding.of("untrusted-key", no_anchor[0], hint=no_anchor[1])], opts)
        elif opts.keys:
            _emit(report, check_bundle_signature(b, opts.keys), opts)
            report.mark_checked("signature")
        elif opts.integrity_only:
            report.mark_not_checked("signature", f"--no-signature: {INTEGRITY_ONLY}")
        elif opts.has_anchor:  # only --identity (or --ca): none can check a key signature
            report.mark_not_checked("signature", "the bundle is signed with a public key, and no --key was given")
            _emit(report, [Finding.of("untrusted-key", f"the OMS bundle is signed with a public key ({(b.hint or '?')[:16]}...), "
                                      "but only Sigstore identities or CA roots were given, which cannot verify a key signature")], opts)
        else:
            report.mark_not_checked("signature", "no trust anchor (--key) given: the bundle's authenticity is not established")
            no_anchor = (_no_anchor_message("the OMS bundle", [b.hint] if b.hint else [], signed=True), NO_ANCHOR_HINT)
        if no_anchor is not None:
            _trust_anchor_gate(report, opts, no_anchor[0], hint=no_anchor[1], end=False)
        if opts.expect_model is not None:
            if b.subject_name != opts.expect_model:
                _emit(
                    report,
                    [
                        Finding.of(
                            "model-mismatch",
                            f"the bundle's subject is {b.subject_name!r}, expected {opts.expect_model}",
                            expected=opts.expect_model,
                            actual=b.subject_name,
                        )
                    ],
                    opts,
                )
            report.mark_checked("model-id")
        if opts.expect_revision is not None:
            report.mark_not_checked("revision", "an OMS bundle records no revision")
        # 2.-4. File set, sizes, cheap format checks, digests: as the bundle's serialization says.
        art = _verify_files(b, root, settings, bundle_path, opts, report)
        _load_tier(art, opts, report)
        if no_anchor is not None:
            _trust_anchor_gate(report, opts, no_anchor[0], hint=no_anchor[1], end=True)
    except _Stop:
        pass
    from .diagnosis import apply

    apply(report)
    report.stats["seconds"] = round(time.perf_counter() - t0, 4)
    return report


def _check_target_form(b: Bundle, root: Path) -> None:
    """A single-file bundle (resource ``"."``) verifies a file, any other a directory."""
    if b.single_file and os.path.isdir(root):
        raise UsageError(f"the OMS bundle signs a single-file model (resource '.'), and {root} is a directory: give the signed file")
    if not b.single_file and os.path.lexists(root) and not os.path.isdir(root):
        raise UsageError(f"the OMS bundle signs a directory ({len(b.resources)} files), and {root} is not one: give the model directory")


def _single_file_artifact(path: Path) -> Artifact:
    """A one-file model as an artifact: its directory, holding just that file (never a link)."""
    from .errors import InputError
    from .fsutil import file_kind
    from .inventory import Artifact, FileInfo

    try:
        st = os.lstat(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", code="unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is a {file_kind(st.st_mode)}, not a regular file; it is never opened", code="unsupported-file")
    name = path.name
    info = FileInfo(name, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, ctime_ns=st.st_ctime_ns)
    return Artifact(root=path.parent, files={name: info}, ignore=())


SYMLINK_HINT = "the bundle was signed following symlinks (allow_symlinks): pass --allow-symlinks to follow links that stay inside the model"


def _verify_files(b: Bundle, root: Path, settings: dict[str, Any], bundle_path: str | os.PathLike[str], opts: Options,
                  report: Report) -> Artifact:
    """The file set (through the bundle's own ignore list: git files are outside it only if
    the signer left them out), sizes (shards record them), format checks and digests
    (shards: chunk by chunk, with the damage located). Returns the artifact checked."""
    from .api import _check_file_set, _discover, _emit, _emit_grouped, _run_sections, _verify_digests, digests_skipped, own_path
    from .digest import chunk_key
    from .findings import EXAMPLES
    from .sections import all_sections
    from .statcache import manifest_identity

    resources, sizes = b.resources, b.sizes
    if b.single_file:
        art = _single_file_artifact(root)
        name = next(iter(art.files))
        resources = {name: b.resources[SINGLE_FILE]}
        sizes = {name: b.sizes[SINGLE_FILE]} if SINGLE_FILE in b.sizes else {}
        ignore: list[str] = []
    else:
        ignore = list(b.ignore_paths)
        own = own_path(bundle_path, root, settings, "OMS bundle")  # the literal path, never what a symlink points to
        if isinstance(own, Finding):
            _emit(report, [own], opts)
        elif own is not None:
            ignore.append(own)
        if opts.allow_symlinks and "hub" not in settings:
            settings = {**settings, "follow_links_into": os.path.realpath(root)}  # links that stay inside the model
        art = _discover(root, settings, [*ignore, *(i + "/" for i in ignore)])
        art.files = {p: i for p, i in art.files.items() if not is_ignored(p, ignore)}
        art.dirs = [d for d in art.dirs if not is_ignored(d, ignore)]
        problems = [f for f in art.problems if not (f.path and is_ignored(f.path, ignore))]
        if b.allow_symlinks and not opts.allow_symlinks:
            problems = [replace(f, hint=SYMLINK_HINT) if f.code in ("unsupported-file", "unsafe-path") and f.message.startswith("symlink") else f
                        for f in problems]
        _emit(report, problems, opts)
    listed: dict[str, Any] = dict(resources)
    if b.method == "shards":
        # model_signing cuts an empty file into no shard at all: a shard bundle cannot list one
        empty = [p for p, i in art.files.items() if p not in listed and i.size == 0]
        _emit_grouped(report, [Finding.of("unsigned-empty-file", "an empty file, which a shard bundle cannot list: its presence is not signed",
                                          path=p) for p in empty],
                      lambda fs, items: f"{len(items)} empty files, which a shard bundle cannot list, are not signed: {examples(items)}", opts)
        listed.update(dict.fromkeys(empty, ""))
    _check_file_set(art, listed, "the OMS bundle", opts, report)  # OMS records no directories: each must hold a file
    sized = [p for p in resources if p in art.files]
    if b.method == "shards":
        resized = [Finding.of("size-mismatch", f"{art.files[p].size} bytes, the OMS bundle's shards end at {sizes[p]}", path=p,
                              expected=sizes[p], actual=art.files[p].size) for p in sized if art.files[p].size != sizes[p]]
        _emit_grouped(report, resized, lambda fs, items: f"{len(items)} files changed size: "
                      + ", ".join(f"{f.path} ({f.actual} bytes, the bundle says {f.expected})" for f in fs[:EXAMPLES])
                      + (", ..." if len(fs) > EXAMPLES else ""), opts)
        sized = [p for p in sized if art.files[p].size == sizes[p]]
        report.mark_checked("sizes")
    else:
        report.mark_not_checked("sizes", "an OMS bundle by files records no sizes; the digests decide")
    # Cheap format checks (headers, side files), as verify runs them; a single file has no side files.
    sections = all_sections()
    if b.single_file:
        for s in sections:
            if s.name != "weights":
                report.mark_not_checked(s.name, "a single-file model: no side files to check")
        sections = [s for s in sections if s.name == "weights"]
    _run_sections(art, sections, None, opts, report)
    if report.errors and not opts.exhaustive:
        report.mark_not_checked("digests", digests_skipped(len(report.errors)))
        return art
    expected: dict[str, dict[str, str]] = {}
    chunked: dict[str, int] = {}
    for p in sized:
        if b.shard_size is not None and sizes[p] > b.shard_size:  # several shards: every core takes one (chunk machinery)
            chunked[p] = b.shard_size
            expected[p] = {chunk_key(b.shard_size, b.hash_type): resources[p]}
        else:  # a whole file, or a file of one shard (whose digest is the file's)
            expected[p] = {b.hash_type: resources[p]}
    cache_key = ("verify", str(Path(root).resolve()), manifest_identity(b.payload))
    _verify_digests(art, expected, sized, [b.hash_type], opts, report, cache_key=cache_key, source="the OMS bundle",
                    chunked=chunked, chunk_algorithm=b.hash_type)
    return art


__all__ = ["Bundle", "Exported", "export_oms", "key_hint", "pae", "read_bundle", "root_digest", "verify_oms"]
