"""The manifest document, format version 1.

On disk::

    {
      "signatures": [{"keyid": "<sha256 of the SPKI DER>", "alg": "ed25519", "sig": "<base64>",
                      "certificates": ["<base64 DER leaf>", "<base64 DER intermediate>"]}],  # certificates optional
      "signed": {
        "_type": "model-manifest", "version": 1,
        "created_by": {"name": "model-manifest", "version": "0.1.0"},
        "created_at": "2026-11-26T17:31:47Z", "expires": "...",          # expires optional
        "model": {"id": "org/name", "revision": "..."},                  # optional
        "hashing": {"algorithms": ["sha256"], "ignore": [".git/", ".cache/", "manifest.json"]},
        "files": {"config.json": {"sha256": "...", "size": 612}, ...},
        "directories": ["empty/dir"],                                    # optional: directories holding no file
        "weights": {...}, "tokenizer": {...}, "config": {...}, "requirements": {...}
      }
    }

Signatures cover the RFC 8785 canonical bytes of ``signed``. Sections this version
does not know are kept verbatim (and reported as not checked), so a manifest written
by a newer minor release still verifies its files here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import repeat
from typing import Any

from . import __version__
from .digest import ALGORITHMS
from .errors import ManifestInvalid
from .findings import Finding
from .jsonio import JSONError, canonical_bytes, dumps_pretty, loads_strict
from .paths import all_safe, find_collisions, path_problem

TYPE = "model-manifest"
FORMAT_VERSION = 1
# Minor versions add what a reader of an older minor version can skip and still verify
# the files: 1 adds "chunks" (the SHA-256 of each fixed-size chunk of a large file) and
# "directories" (the empty directories of the tree). An older reader keeps these members,
# covered by the signature, as sections it does not know.
MINOR_VERSION = 1
CORE_KEYS = {"_type", "version", "minor_version", "created_by", "created_at", "expires", "model", "hashing", "files", "chunks", "directories"}
CHUNKS_KEYS = {"algorithm", "size", "files"}
MIN_CHUNK = 4096
MAX_CHUNK = 1 << 32
KNOWN_SECTIONS = {"weights", "tokenizer", "config", "requirements"}
WEAK_ALGORITHMS = {"md5", "sha1", "none", "crc32", "adler32", "md4"}
_HEX = {"sha256": 64, "blake3": 64, "xxh3-128": 32}
_HEXRE = re.compile(r"[0-9a-f]+")  # fullmatch: "$" would also match before a final newline
_HEX_DIGITS = b"0123456789abcdef"


class ManifestUnsupported(ManifestInvalid):
    code = "manifest-unsupported"


@dataclass(frozen=True, init=False)
class FileEntry:
    path: str
    size: int
    digests: dict[str, str]

    def __init__(self, path: str, size: int, digests: dict[str, str]) -> None:
        # the generated __init__ of a frozen dataclass without its object.__setattr__ a field (one entry a listed file)
        d = self.__dict__
        d["path"], d["size"], d["digests"] = path, size, digests

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, **self.digests}


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def parse_time(value: str) -> datetime:
    """``YYYY-MM-DDTHH:MM:SSZ`` exactly (the schema's pattern), as an aware UTC datetime."""
    m = _TIME.fullmatch(value) if isinstance(value, str) else None
    try:
        if m is None:
            raise ValueError
        y, mo, d, h, mi, sec = (int(g) for g in m.groups())
        return datetime(y, mo, d, h, mi, sec, tzinfo=timezone.utc)
    except ValueError:
        raise ManifestInvalid(f"time {value!r} is not of the form YYYY-MM-DDTHH:MM:SSZ") from None


@dataclass
class Manifest:
    files: dict[str, FileEntry]
    algorithms: list[str]
    ignore: list[str]
    created_at: str = field(default_factory=utc_now)
    created_by: dict[str, str] = field(default_factory=lambda: {"name": "model-manifest", "version": __version__})
    model_id: str | None = None
    revision: str | None = None
    expires: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    signatures: list[dict[str, Any]] = field(default_factory=list)
    # Directories that hold no listed file (empty ones), so that verify tells them from a
    # directory added later. Written only when there are any.
    directories: list[str] = field(default_factory=list)
    # Set by from_document: entries refused for their path (never opened) and weak settings.
    rejected: list[Finding] = field(default_factory=list)
    # Set by from_document: the canonical bytes of the "signed" object exactly as received,
    # or (a plain document, whose canonical form cannot fail) that object, to be written
    # when a signature or a cache first needs the bytes (signed_payload).
    received: bytes | None = field(default=None, repr=False, compare=False)
    received_object: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # Chunk digests (minor version 1): path -> SHA-256 of each chunk_size-byte chunk, in order.
    chunk_size: int | None = None
    chunks: dict[str, list[str]] = field(default_factory=dict)
    minor_version: int | None = MINOR_VERSION  # None: an older manifest that has no such member

    # -- writing ----------------------------------------------------------------------
    def signed_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "_type": TYPE,
            "version": FORMAT_VERSION,
            "created_by": dict(self.created_by),
            "created_at": self.created_at,
            "hashing": {"algorithms": list(self.algorithms), "ignore": list(self.ignore)},
            "files": {p: e.to_dict() for p, e in sorted(self.files.items())},
        }
        if self.minor_version is not None:
            d["minor_version"] = self.minor_version
        if self.chunks and self.chunk_size is not None:
            d["chunks"] = {"algorithm": "sha256", "size": self.chunk_size, "files": {p: list(c) for p, c in sorted(self.chunks.items())}}
        if self.directories:
            d["directories"] = sorted(self.directories)
        if self.expires is not None:
            d["expires"] = self.expires
        model = {k: v for k, v in (("id", self.model_id), ("revision", self.revision)) if v is not None}
        if model:
            d["model"] = model
        for k, v in self.sections.items():
            d[k] = v
        return d

    def signed_bytes(self) -> bytes:
        """The canonical bytes (RFC 8785) of the signed part, rebuilt from the fields."""
        return canonical_bytes(self.signed_dict())

    def signed_payload(self) -> bytes:
        """What a signature covers and what the caches are keyed by: the "signed" object
        as received, canonicalized (as TUF does: a member this version does not model,
        even a null one, is covered too), or the rebuilt bytes of a manifest made here."""
        if self.received is None and self.received_object is not None:
            self.received = canonical_bytes(self.received_object, plain=True)
            self.received_object = None
        return self.received if self.received is not None else self.signed_bytes()

    def to_document(self) -> dict[str, Any]:
        return {"signed": self.signed_dict(), "signatures": list(self.signatures)}

    def dumps(self) -> str:
        """Pretty text. It parses back to the same objects (the standard encoder wrote it),
        so a verifier canonicalizes exactly the bytes that were signed."""
        return dumps_pretty(self.to_document())

    # -- reading ----------------------------------------------------------------------
    @classmethod
    def loads(cls, data: bytes) -> Manifest:
        facts: dict[str, Any] = {}
        try:
            doc = loads_strict(data, facts=facts)
        except JSONError as e:
            raise ManifestInvalid(f"not valid JSON: {e}") from None
        return cls.from_document(doc, plain=facts["plain"])

    @classmethod
    def from_document(cls, doc: Any, *, plain: bool = False) -> Manifest:
        """``plain``: ``doc`` was parsed by :func:`loads_strict`, which found it plain."""
        if not isinstance(doc, dict) or set(doc) != {"signed", "signatures"}:
            raise ManifestInvalid('expected an object with exactly the keys "signed" and "signatures"')
        signed, sigs = doc["signed"], doc["signatures"]
        if not isinstance(signed, dict):
            raise ManifestInvalid('"signed" must be an object')
        if signed.get("_type") != TYPE:
            raise ManifestInvalid(f'"_type" must be {TYPE!r}')
        version = signed.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ManifestInvalid('"version" must be an integer')
        if version != FORMAT_VERSION:
            raise ManifestUnsupported(f"format version {version} is not supported (this tool reads version {FORMAT_VERSION})")
        received = None
        if not plain:  # plain: its canonical form cannot fail, and is written only if needed (verify --no-signature --no-cache never is)
            try:
                received = canonical_bytes(signed)  # lone surrogates and the like cannot be signed or checked
            except JSONError as e:
                raise ManifestInvalid(str(e)) from None
        sigs_list = _signatures(sigs)
        created_by = _obj(signed, "created_by", required=True)
        if not all(isinstance(v, str) for v in created_by.values()):
            raise ManifestInvalid('"created_by" values must be strings')
        created_at = _required_str(signed, "created_at")
        parse_time(created_at)
        expires = _str(signed, "expires")
        if expires is not None:
            parse_time(expires)
        model = _obj(signed, "model")
        model_id = _str(model, "id") if model else None
        revision = _str(model, "revision") if model else None
        hashing = _obj(signed, "hashing", required=True)
        algorithms = hashing.get("algorithms")
        if not isinstance(algorithms, list) or not algorithms or not all(isinstance(a, str) for a in algorithms):
            raise ManifestInvalid('"hashing.algorithms" must be a non-empty list of names')
        if len(set(algorithms)) != len(algorithms):
            raise ManifestInvalid('"hashing.algorithms" lists an algorithm twice')
        rejected: list[Finding] = []
        for a in algorithms:
            if a in WEAK_ALGORITHMS:
                rejected.append(Finding.of("weak-digest", f"digest algorithm {a!r} is not acceptable; file digests prove nothing"))
            elif a not in ALGORITHMS:
                raise ManifestUnsupported(f"digest algorithm {a!r} is unknown to this tool")
        ignore = hashing.get("ignore", [])
        if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
            raise ManifestInvalid('"hashing.ignore" must be a list of strings')
        files_raw = _obj(signed, "files", required=True)
        usable = [a for a in algorithms if a in ALGORITHMS]
        entry_keys = frozenset({"size", *algorithms})
        fast = _plain_file_entries(files_raw, usable, entry_keys)
        files: dict[str, FileEntry] = fast if fast is not None else {}
        for p, raw_entry in files_raw.items() if fast is None else ():
            why = path_problem(p)
            if why is not None:
                rejected.append(Finding.of("unsafe-path", f"manifest entry refused: {why}; never opened", path=p.encode("unicode_escape").decode("ascii")))
                continue
            if not isinstance(raw_entry, dict):
                raise ManifestInvalid(f"file entry {p!r} must be an object")
            size = raw_entry.get("size")
            if type(size) is not int or size < 0 or size >= 1 << 63:
                raise ManifestInvalid(f"file entry {p!r}: size must be a non-negative integer")
            if not entry_keys.issuperset(raw_entry):
                raise ManifestInvalid(f"file entry {p!r}: unknown keys {sorted(set(raw_entry) - entry_keys)}")
            digests: dict[str, str] = {}
            for a in usable:
                d = raw_entry.get(a)
                if not isinstance(d, str) or len(d) != _HEX[a] or not _HEXRE.fullmatch(d):
                    raise ManifestInvalid(f"file entry {p!r}: {a} must be {_HEX[a]} lowercase hex digits")
                digests[a] = d
            files[p] = FileEntry(p, size, digests)
        for a, b in find_collisions(list(files)):
            msg = f"manifest lists both {a!r} and {b!r}, which collide on case-insensitive or normalizing file systems"
            rejected.append(Finding.of("path-collision", msg, path=b))
        minor = signed.get("minor_version")
        if minor is not None and (not isinstance(minor, int) or isinstance(minor, bool) or minor < 0):
            raise ManifestInvalid('"minor_version" must be a non-negative integer')
        chunk_size, chunks = _chunks(signed.get("chunks"), files, "chunks" in signed)
        directories = _directories(signed.get("directories", []), files, rejected)
        sections = {k: v for k, v in signed.items() if k not in CORE_KEYS}
        for k in sorted(KNOWN_SECTIONS & set(sections)):
            if not isinstance(sections[k], dict):
                raise ManifestInvalid(f'section "{k}" must be an object')
            from .shapes import section_problem

            why = section_problem(k, sections[k])
            if why is not None:  # compared as it is, a wrong type could pass where a mismatch belongs
                raise ManifestInvalid(f'section "{k}" is malformed: {why}')
        return cls(
            files=files,
            algorithms=list(algorithms),
            ignore=list(ignore),
            created_at=created_at,
            created_by=dict(created_by),
            model_id=model_id,
            revision=revision,
            expires=expires,
            sections=sections,
            signatures=sigs_list,
            directories=directories,
            rejected=rejected,
            received=received,
            received_object=signed if plain else None,
            chunk_size=chunk_size,
            chunks=chunks,
            minor_version=minor,
        )

    @property
    def cryptographic(self) -> bool:
        """True when at least one recorded digest is cryptographic."""
        return any(ALGORITHMS[a].cryptographic for a in self.algorithms if a in ALGORITHMS)


def _plain_file_entries(files_raw: dict[str, Any], usable: list[str], entry_keys: frozenset[str]) -> dict[str, FileEntry] | None:
    """The file table when every entry is well-formed and every path safe, checked column
    by column in C-level passes over all entries (the paths joined, every size, every
    digest of one algorithm joined); None when any check fails, and the entries are then
    taken one by one (which names the first bad one, or refuses a path)."""
    paths = list(files_raw)
    raws = list(files_raw.values())
    if not paths:
        return {}
    if not all_safe(paths) or set(map(type, raws)) != {dict} or not all(map(entry_keys.issuperset, raws)):
        return None
    sizes: list[Any] = list(map(dict.get, raws, repeat("size")))
    if set(map(type, sizes)) != {int} or min(sizes) < 0 or max(sizes) >= 1 << 63:
        return None
    columns: list[list[Any]] = []
    for a in usable:
        column: list[Any] = list(map(dict.get, raws, repeat(a)))
        if set(map(type, column)) != {str}:
            return None
        joined = "".join(column)
        # every digest as long as it must be, and nothing but lowercase hex digits in any (deleting them leaves nothing)
        if set(map(len, column)) != {_HEX[a]} or not joined.isascii() or joined.encode("ascii").translate(None, _HEX_DIGITS):
            return None
        columns.append(column)
    if len(usable) == 1:
        (a,), (column,) = usable, columns
        return {p: FileEntry(p, n, {a: d}) for p, n, d in zip(paths, sizes, column, strict=True)}
    return {p: FileEntry(p, n, dict(zip(usable, ds, strict=True))) for p, n, *ds in zip(paths, sizes, *columns, strict=True)}


def _chunks(raw: Any, files: dict[str, FileEntry], present: bool) -> tuple[int | None, dict[str, list[str]]]:
    """The "chunks" member: ``{"algorithm": "sha256", "size": N, "files": {path: [hex, ...]}}``.
    Every listed path is in the file table (or was refused for its path there) and has
    exactly ceil(file size / N) digests, so each byte of the file is in exactly one chunk."""
    if not present:
        return None, {}
    if not isinstance(raw, dict) or set(raw) != CHUNKS_KEYS:
        raise ManifestInvalid(f'"chunks" must be an object with exactly the keys {sorted(CHUNKS_KEYS)}')
    if raw["algorithm"] != "sha256":
        raise ManifestUnsupported(f"chunk digest algorithm {raw['algorithm']!r} is unknown to this tool")
    size = raw["size"]
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_CHUNK <= size <= MAX_CHUNK:
        raise ManifestInvalid(f'"chunks.size" must be an integer from {MIN_CHUNK} to {MAX_CHUNK}')
    listed = raw["files"]
    if not isinstance(listed, dict):
        raise ManifestInvalid('"chunks.files" must be an object')
    out: dict[str, list[str]] = {}
    for p, digests in listed.items():
        if not isinstance(digests, list) or not all(isinstance(d, str) and len(d) == 64 and _HEXRE.fullmatch(d) for d in digests):
            raise ManifestInvalid(f"chunks of {p!r}: must be a list of 64 lowercase hex digits each")
        if path_problem(p) is not None:
            continue  # refused in the file table already (unsafe-path); never opened
        entry = files.get(p)
        if entry is None:
            raise ManifestInvalid(f"chunks of {p!r}: the file table does not list it")
        want = -(-entry.size // size)
        if len(digests) != want or entry.size == 0:
            raise ManifestInvalid(f"chunks of {p!r}: {len(digests)} digests for {entry.size} bytes in chunks of {size} (expected {want})")
        out[p] = list(digests)
    return size, out


def _directories(raw: Any, files: dict[str, FileEntry], rejected: list[Finding]) -> list[str]:
    """The recorded empty directories: safe relative paths, each once, none a listed file."""
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise ManifestInvalid('"directories" must be a list of paths')
    if len(set(raw)) != len(raw):
        raise ManifestInvalid('"directories" lists a directory twice')
    out: list[str] = []
    for d in raw:
        why = path_problem(d)
        if why is not None:
            rejected.append(Finding.of("unsafe-path", f"manifest directory refused: {why}; never opened", path=d.encode("unicode_escape").decode("ascii")))
        elif d in files:
            raise ManifestInvalid(f"{d!r} is listed both as a file and as a directory")
        else:
            out.append(d)
    return out


SIGNATURE_KEYS = {"keyid", "alg", "sig", "certificates"}
MAX_CERTIFICATES = 10  # per signature entry: the leaf and its intermediates


def _signatures(sigs: Any) -> list[dict[str, Any]]:
    if not isinstance(sigs, list):
        raise ManifestInvalid('"signatures" must be a list')
    out = []
    for s in sigs:
        if not isinstance(s, dict) or not {"keyid", "sig"} <= set(s) or not all(isinstance(v, str) for k, v in s.items() if k != "certificates"):
            raise ManifestInvalid('each signature must be an object with string "keyid" and "sig"')
        if set(s) - SIGNATURE_KEYS:
            raise ManifestInvalid(f"a signature has unknown keys {sorted(set(s) - SIGNATURE_KEYS)}")
        certs = s.get("certificates")
        if "certificates" in s and (
            not isinstance(certs, list) or not 0 < len(certs) <= MAX_CERTIFICATES or not all(isinstance(c, str) and c for c in certs)
        ):
            raise ManifestInvalid(f'a signature\'s "certificates" must be a list of 1 to {MAX_CERTIFICATES} base64 DER certificates, the leaf first')
        out.append({k: (list(v) if isinstance(v, list) else v) for k, v in s.items()})
    return out


def _obj(d: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
    v = d.get(key)
    if v is None and not required:
        return {}
    if not isinstance(v, dict):
        raise ManifestInvalid(f'"{key}" must be an object')
    return v


def _required_str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise ManifestInvalid(f'"{key}" must be a string')
    return v


def _str(d: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise ManifestInvalid(f'"{key}" must be a string')
    return v
