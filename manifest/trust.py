"""The trust policy file: every trust anchor a gate accepts, in one reviewed place.

``manifest verify DIR --trust trust.json`` (or ``MANIFEST_TRUST=trust.json``) reads::

    {
      "version": 1,
      "keys": ["keys/publisher.pub.pem", "-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----\\n"],
      "cas": ["roots/corp-root.pem"],
      "identities": [{"identity": "release@example.com", "issuer": "https://accounts.google.com"}],
      "trusted_root": "sigstore/trusted_root.json"
    }

Every member is optional, but at least one anchor (a key, a CA root or an identity) must
be listed. ``keys`` and ``cas`` entries are PEM paths, relative to the trust file's own
directory, or the PEM text itself; a ``cas`` file may hold several roots. The anchors the
file lists are added to those given with ``--key``, ``--ca`` and ``--identity/--issuer``
(a union). The schema is schemas/trust.schema.json; a malformed file is a usage error.

A trust file, and every file it names, must lie outside the directory being verified:
whoever can write the artifact could otherwise name their own key. Such a file is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError, UsageError
from .fsutil import read_input
from .jsonio import JSONError, loads_strict

ENV = "MANIFEST_TRUST"
MAX_TRUST_FILE = 1024 * 1024
MEMBERS = {"$schema", "version", "keys", "cas", "identities", "trusted_root"}
PEM_BEGIN = "-----BEGIN "


@dataclass
class Trust:
    """The anchors of one trust file (keys as cryptography public keys, roots as certificates)."""

    source: str
    keys: list[Any] = field(default_factory=list)
    cas: list[Any] = field(default_factory=list)
    identities: list[tuple[str, str]] = field(default_factory=list)
    trusted_root: str | None = None
    files: list[Path] = field(default_factory=list)  # every file it read or names (for the inside-the-artifact check)

    def options(self, **kw: Any) -> Any:
        """:class:`~manifest.options.Options` with these anchors, and ``kw`` for the rest
        (``expect_model=...``); a key, root or identity also in ``kw`` is added to the file's."""
        from .options import Options

        return Options(
            keys=[*self.keys, *kw.pop("keys", [])],
            cas=[*self.cas, *kw.pop("cas", [])],
            identities=[*self.identities, *(p for p in kw.pop("identities", []) if p not in self.identities)],
            trusted_root=kw.pop("trusted_root", None) or self.trusted_root,
            **kw,
        )


def _bad(source: str, what: str) -> UsageError:
    return UsageError(f"trust file {source}: {what} (schemas/trust.schema.json)")


def _strings(doc: dict[str, Any], name: str, source: str) -> list[str]:
    v = doc.get(name, [])
    if not isinstance(v, list) or not all(isinstance(i, str) and i.strip() for i in v):
        raise _bad(source, f'"{name}" must be a list of non-empty strings (PEM paths or PEM text)')
    return list(v)


def _resolve(base: Path, entry: str) -> Path:
    p = Path(entry).expanduser()
    return p if p.is_absolute() else base / p


def parse(doc: Any, source: str, base: Path) -> Trust:
    """Check a parsed trust document against the schema's rules and load what it names.
    ``base``: the directory relative paths are resolved against."""
    from .certs import load_certificates, parse_pem_certificates
    from .signing import load_public_key, parse_public_key

    if not isinstance(doc, dict):
        raise _bad(source, "must be a JSON object")
    unknown = sorted(set(doc) - MEMBERS)
    if unknown:
        raise _bad(source, f"unknown member(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(MEMBERS - {'$schema'}))}")
    if "version" in doc and (doc["version"] != 1 or isinstance(doc["version"], bool)):
        raise _bad(source, f'"version" must be 1, not {str(doc["version"])[:20]!r}')
    out = Trust(source)
    for entry in _strings(doc, "keys", source):
        if entry.lstrip().startswith(PEM_BEGIN):
            out.keys.append(parse_public_key(entry.encode(), f"trust file {source}: an inline key"))
        else:
            p = _resolve(base, entry)
            out.files.append(p)
            out.keys.append(load_public_key(p))
    for entry in _strings(doc, "cas", source):
        if entry.lstrip().startswith(PEM_BEGIN):
            out.cas.extend(parse_pem_certificates(entry.encode(), f"trust file {source}: an inline CA root"))
        else:
            p = _resolve(base, entry)
            out.files.append(p)
            out.cas.extend(load_certificates(p, "CA root"))
    ids = doc.get("identities", [])
    if not isinstance(ids, list):
        raise _bad(source, '"identities" must be a list of {"identity": ..., "issuer": ...} objects')
    for i in ids:
        if not (isinstance(i, dict) and set(i) == {"identity", "issuer"} and all(isinstance(v, str) and v for v in i.values())):
            raise _bad(source, 'each "identities" entry must be {"identity": "...", "issuer": "..."} with non-empty strings')
        out.identities.append((i["identity"], i["issuer"]))
    tr = doc.get("trusted_root")
    if tr is not None:
        if not isinstance(tr, str) or not tr.strip():
            raise _bad(source, '"trusted_root" must be a path (a Sigstore trusted_root.json)')
        p = _resolve(base, tr)
        if not p.is_file():
            raise _bad(source, f'"trusted_root" {p} is not a file')
        out.files.append(p)
        out.trusted_root = str(p)
    if not (out.keys or out.cas or out.identities):
        raise _bad(source, 'lists no trust anchor: give at least one of "keys", "cas" or "identities"')
    return out


def load_trust(path: str | os.PathLike[str]) -> Trust:
    """Read and check a trust file (JSON); every problem is a one-line :class:`UsageError`
    (a key or certificate it names that cannot be read keeps its own code)."""
    source = str(path)
    data = read_input(path, MAX_TRUST_FILE, "trust file", "usage")  # not found, not regular, over the cap: error[usage]
    try:
        doc = loads_strict(data)
    except JSONError as e:
        raise _bad(source, f"not valid JSON: {e}") from None
    t = parse(doc, source, Path(path).parent)
    t.files.insert(0, Path(path))
    return t


def _artifact_root(target: str | os.PathLike[str]) -> Path | None:
    """The folder whoever publishes ``target`` can write: the directory itself, or for
    ``ORG/NAME[@REV]`` in the Hugging Face cache the model's whole cache folder (its
    snapshots, refs and blobs)."""
    from .paths import is_url

    if is_url(str(target)):
        return None
    if os.path.isdir(target):
        return Path(target).resolve()
    if os.path.lexists(target):
        return None
    from . import hfcache

    if not hfcache.looks_like_repo_id(str(target)):
        return None
    try:
        snap = hfcache.resolve(str(target))
    except ManifestError:
        return None
    return snap.blobs.parent.resolve()


def refuse_inside(trust: Trust, target: str | os.PathLike[str]) -> None:
    """A trust file inside the verified directory is the artifact author's file, not the
    verifier's: refuse it, and any key, root or trusted root it names there."""
    root = _artifact_root(target)
    if root is None:
        return  # a URL, a single file, or a target verify will refuse itself
    for f in trust.files:
        try:
            inside = f.resolve().is_relative_to(root)
        except OSError:
            continue
        if inside:
            what = "is" if f == trust.files[0] else f"names {f}, which is"
            raise UsageError(
                f"trust file {trust.source} {what} inside the directory being verified ({target}): "
                "whoever can write the artifact could write it too; keep the trust policy outside the artifact"
            )


__all__ = ["ENV", "Trust", "load_trust", "parse", "refuse_inside"]
