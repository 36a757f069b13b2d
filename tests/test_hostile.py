"""Issue 7: hostile inputs, through the real CLI, on the real MiniLM checkpoint.

Every case is a named generator (``case_<name>``) registered with the exit status and
the finding code it must produce. A case builds its hostile input (a tampered manifest,
a directory entry, a key, a concurrent writer) and returns the CLI call; the test runs
the real ``python -m manifest`` in a subprocess, with a timeout (a hang fails the test),
and asserts the exit status, the code, and that an exit-2 error is exactly one line.

Directory cases work on a hard-linked clone of one session copy of the checkpoint (the
files are never written through a link: a case that must change a file first replaces
the link by a private copy), so that the corpus stays fast.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import mmap
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from manifest import api
from manifest.options import Options
from manifest.signing import generate, keyid, sign, write_keypair

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
REVISION = "r2"
ZERO = "0" * 64


# --------------------------------------------------------------------------- fixtures
@dataclass
class Base:
    """One signed manifest of one copy of the real checkpoint, shared by all cases."""

    dir: Path
    doc: dict[str, Any]  # the signed manifest document (manifest.json)
    priv: Path
    pub: Path
    key: Any  # the private key object of priv
    other_pub: Path  # a valid public key that did not sign anything


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Base:
    root = tmp_path_factory.mktemp("hostile-base")
    d = root / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    key = generate("ed25519")
    write_keypair(key, root / "a.pem", root / "a.pub.pem")
    write_keypair(generate("ed25519"), root / "b.pem", root / "b.pub.pem")
    api.create(d, key=key, model_id=MODEL_ID, revision=REVISION, options=Options(use_cache=False))
    doc = json.loads((d / "manifest.json").read_bytes())
    return Base(d, doc, root / "a.pem", root / "a.pub.pem", key, root / "b.pub.pem")


@dataclass
class Call:
    """What a case runs: CLI arguments, or a whole runner for cases that must act while
    the CLI runs (signals, concurrent writers)."""

    args: list[str] = field(default_factory=list)
    timeout: float = 60
    during: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    runner: Callable[[], Run] | None = None
    check: Callable[[Run], None] | None = None  # extra assertions on the result


@dataclass
class Run:
    code: int
    out: str
    err: str


class Ctx:
    """What a case generator gets: a private tmp dir and the shared base."""

    def __init__(self, tmp: Path, base: Base, cli: Callable[..., Any]):
        self.tmp = tmp
        self.base = base
        self._cli = cli

    def doc(self) -> dict[str, Any]:
        return copy.deepcopy(self.base.doc)

    def manifest(self, doc: dict[str, Any] | str | bytes, name: str = "hostile.json") -> Path:
        p = self.tmp / name
        if isinstance(doc, dict):
            doc = json.dumps(doc)
        p.write_bytes(doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else doc)
        return p

    def resign(self, doc: dict[str, Any], key: Any = None) -> dict[str, Any]:
        from manifest.jsonio import canonical_bytes

        doc["signatures"] = [sign(canonical_bytes(doc["signed"]), key or self.base.key)]
        return doc

    def verify(self, manifest: Path, *extra: str, directory: Path | None = None) -> Call:
        """verify, with the trusted key when the case passes one, else integrity only
        (--no-signature): without either, every verify fails with no-trust-anchor."""
        trust = [] if "--key" in extra or "--no-signature" in extra else ["--no-signature"]
        return Call(["verify", str(directory or self.base.dir), "-m", str(manifest), "--json", "-q", *trust, *extra])

    def clone(self) -> Path:
        """A hard-linked clone of the base checkpoint (with its signed manifest.json copied)."""
        dst = self.tmp / "clone"
        for src in sorted(self.base.dir.rglob("*")):
            rel = src.relative_to(self.base.dir)
            if src.is_dir():
                (dst / rel).mkdir(parents=True, exist_ok=True)
            elif rel.as_posix() == "manifest.json":
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst / rel)
            else:
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst / rel)
        return dst

    def own(self, d: Path, rel: str) -> Path:
        """Replace a hard link by a private copy before changing the file or its mode."""
        p = d / rel
        data = p.read_bytes()
        p.unlink()
        p.write_bytes(data)
        return p

    def cli(self, *args: str, timeout: float = 60) -> Run:
        r = self._cli(*args, timeout=timeout)
        return Run(r.code, r.out, r.err)


@dataclass(frozen=True)
class Case:
    build: Callable[[Ctx], Call]
    exit: int
    code: str | None
    group: str


CASES: dict[str, Case] = {}


def case(exit_status: int, code: str | None, group: str) -> Callable[[Callable[[Ctx], Call]], Callable[[Ctx], Call]]:
    def deco(fn: Callable[[Ctx], Call]) -> Callable[[Ctx], Call]:
        CASES[fn.__name__.removeprefix("case_")] = Case(fn, exit_status, code, group)
        return fn

    return deco


def _files(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["signed"]["files"]


# =========================================================================== the manifest
@case(2, "manifest-invalid", "manifest")
def case_duplicate_json_keys(ctx: Ctx) -> Call:
    text = json.dumps(ctx.doc()).replace('"signed": {', '"signed": {"created_at": "2020-01-01T00:00:00Z", ', 1)
    return ctx.verify(ctx.manifest(text))


@case(2, "manifest-invalid", "manifest")
def case_duplicate_identical_keys(ctx: Ctx) -> Call:
    # The same key with the same value is still refused: parsers disagree on which wins.
    text = json.dumps(ctx.doc()).replace('"signed": {', '"signed": {"_type": "model-manifest", ', 1)
    return ctx.verify(ctx.manifest(text))


@case(2, "manifest-invalid", "manifest")
def case_nan(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)["config.json"]["size"] = "@@"
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', "NaN")))


@case(2, "manifest-invalid", "manifest")
def case_infinity(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)["config.json"]["size"] = "@@"
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', "-Infinity")))


@case(2, "manifest-invalid", "manifest")
def case_float_overflow(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["config"] = {"x": "@@"}
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', "1e999")))


@case(2, "manifest-invalid", "manifest")
def case_integer_of_thousands_of_digits(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)["config.json"]["size"] = "@@"
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', "9" * 5000)))


@case(2, "manifest-invalid", "manifest")
def case_document_over_size_cap(ctx: Ctx) -> Call:
    p = ctx.tmp / "huge.json"
    with open(p, "wb") as f:  # sparse: 64 MiB + 1 byte, costs no disk
        f.truncate(api.MAX_MANIFEST_BYTES + 1)
    return Call(ctx.verify(p).args, check=lambda r: _assert_in("cap", r.err))


@case(2, "manifest-invalid", "manifest")
def case_deep_nesting(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["config"] = {"x": "@@"}
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', "[" * 200_000 + "]" * 200_000)))


@case(2, "manifest-invalid", "manifest")
def case_nesting_over_depth_limit(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["config"] = {"x": "@@"}
    return Call(ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', "[" * 80 + "]" * 80))).args,
                check=lambda r: _assert_in("nesting", r.err))


@case(2, "manifest-invalid", "manifest")
def case_not_utf8(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["model"]["id"] = "@@"
    return ctx.verify(ctx.manifest(json.dumps(doc).encode().replace(b"@@", b"\xff\xfe")))


@case(2, "manifest-invalid", "manifest")
def case_byte_order_mark(ctx: Ctx) -> Call:
    return ctx.verify(ctx.manifest(b"\xef\xbb\xbf" + json.dumps(ctx.doc()).encode()))


@case(2, "manifest-invalid", "manifest")
def case_lone_surrogate(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["model"]["id"] = "@@"
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', '"\\ud800"')))


@case(2, "manifest-invalid", "manifest")
def case_lone_low_surrogate(ctx: Ctx) -> Call:
    """A lone low surrogate: no canonical form, refused when read, even where nothing
    would ask for the signed bytes (no key, no cache)."""
    doc = ctx.doc()
    doc["signed"]["model"]["id"] = "@@"
    return ctx.verify(ctx.manifest(json.dumps(doc).replace('"@@"', '"\\udc00"')), "--no-cache")


@case(2, "manifest-invalid", "manifest")
def case_truncated_manifest(ctx: Ctx) -> Call:
    data = json.dumps(ctx.doc()).encode()
    return ctx.verify(ctx.manifest(data[: len(data) // 2]))


@case(2, "manifest-invalid", "manifest")
def case_empty_manifest(ctx: Ctx) -> Call:
    return ctx.verify(ctx.manifest(b""))


@case(2, "manifest-invalid", "manifest")
def case_manifest_is_an_array(ctx: Ctx) -> Call:
    return ctx.verify(ctx.manifest("[]"))


@case(2, "manifest-invalid", "manifest")
def case_known_section_not_an_object(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["weights"] = [1, 2, 3]
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-invalid", "manifest")
def case_size_negative(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)["config.json"]["size"] = -1
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-invalid", "manifest")
def case_digest_not_hex(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)["config.json"]["sha256"] = "Z" * 64
    return ctx.verify(ctx.manifest(doc))


@case(1, "weak-digest", "manifest")
def case_md5_digest(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["hashing"]["algorithms"] = ["md5"]
    for e in _files(doc).values():
        e["md5"] = e.pop("sha256")[:32]
    return Call(ctx.verify(ctx.manifest(doc)).args, check=lambda r: _assert_not_checked(r, "digests"))


@case(1, "weak-digest", "manifest")
def case_none_digest(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["hashing"]["algorithms"] = ["none"]
    for e in _files(doc).values():
        e["none"] = ""
        del e["sha256"]
    return Call(ctx.verify(ctx.manifest(doc)).args, check=lambda r: _assert_not_checked(r, "digests"))


@case(1, "weak-digest", "manifest")
def case_md5_beside_sha256(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["hashing"]["algorithms"] = ["sha256", "md5"]
    for e in _files(doc).values():
        e["md5"] = "0" * 32
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-unsupported", "manifest")
def case_unknown_digest_algorithm(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["hashing"]["algorithms"] = ["sha3-999"]
    for e in _files(doc).values():
        e["sha3-999"] = e.pop("sha256")
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-invalid", "manifest")
def case_duplicate_path_entries(ctx: Ctx) -> Call:
    dup = json.dumps({"size": 612, "sha256": ZERO})
    text = json.dumps(ctx.doc()).replace('"files": {', f'"files": {{"config.json": {dup}, ', 1)
    return ctx.verify(ctx.manifest(text))


@case(1, "path-collision", "manifest")
def case_entries_collide_by_case(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)["CONFIG.JSON"] = dict(_files(doc)["config.json"])
    return ctx.verify(ctx.manifest(doc))


@case(1, "path-collision", "manifest")
def case_entries_collide_by_normalization(ctx: Ctx) -> Call:
    doc = ctx.doc()
    _files(doc)[unicodedata.normalize("NFC", "caf\u00e9.txt")] = {"size": 1, "sha256": ZERO}
    _files(doc)[unicodedata.normalize("NFD", "caf\u00e9.txt")] = {"size": 1, "sha256": ZERO}
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-unsupported", "manifest")
def case_unknown_format_version(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["version"] = 2
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-invalid", "manifest")
def case_format_version_as_string(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["version"] = "1"
    return ctx.verify(ctx.manifest(doc))


@case(2, "manifest-invalid", "manifest")
def case_manifest_is_a_fifo(ctx: Ctx) -> Call:
    p = ctx.tmp / "fifo.json"
    os.mkfifo(p)
    return Call(ctx.verify(p).args, timeout=20)


@case(2, "manifest-invalid", "manifest")
def case_oms_bundle_is_a_fifo(ctx: Ctx) -> Call:
    p = ctx.tmp / "model.sig"
    os.mkfifo(p)
    return Call(["verify", str(ctx.base.dir), "--oms", str(p), "--json", "-q", "--no-signature"], timeout=20)


@case(2, "manifest-invalid", "manifest")
def case_manifest_missing(ctx: Ctx) -> Call:
    return ctx.verify(ctx.tmp / "absent.json")


@case(2, "unsafe-path", "manifest")
def case_default_manifest_is_a_symlink_out(ctx: Ctx) -> Call:
    d = ctx.clone()
    secret = ctx.tmp / "secret.json"
    secret.write_text('{"token": "do-not-read"}')
    (d / "manifest.json").unlink()
    os.symlink(secret, d / "manifest.json")
    return Call(["verify", str(d), "--json", "-q", "--no-signature"], check=lambda r: _assert_not_in("do-not-read", r.out + r.err))


@case(2, "unreadable", "manifest")
def case_target_is_a_fifo(ctx: Ctx) -> Call:
    os.mkfifo(ctx.tmp / "target")
    return Call(["verify", str(ctx.tmp / "target"), "-m", str(ctx.base.dir / "manifest.json"), "--json", "-q", "--no-signature"], timeout=20)


# =========================================================================== trust
@case(1, "signature-invalid", "trust")
def case_signature_over_other_bytes(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signatures"] = [sign(b"some other bytes entirely", ctx.base.key)]
    return ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub))


@case(1, "signature-invalid", "trust")
def case_signed_document_changed_after_signing(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["model"]["revision"] = "r3"
    return ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub))


@case(0, None, "trust")
def case_same_key_signature_listed_twice(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signatures"] = doc["signatures"] * 2

    def counted_once(r: Run) -> None:
        assert json.loads(r.out)["facts"]["trusted_keyids"] == [keyid(ctx.base.key.public_key())]

    return Call(ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub)).args, check=counted_once)


@case(1, "signature-invalid", "trust")
def case_same_key_bad_signature_listed_twice(ctx: Ctx) -> Call:
    doc = ctx.doc()
    kid = doc["signatures"][0]["keyid"]
    doc["signatures"] = [sign(b"x", ctx.base.key) | {"keyid": kid}] * 2 + [sign(b"y", ctx.base.key)]
    return Call(ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub)).args,
                check=lambda r: _assert_count(r, "signature-invalid", 1))


@case(1, "signature-invalid", "trust")
def case_flood_of_signatures_for_one_key(ctx: Ctx) -> Call:
    doc = ctx.doc()
    kid = doc["signatures"][0]["keyid"]
    doc["signatures"] = [{"keyid": kid, "alg": "ed25519", "sig": f"{i:086d}=="} for i in range(20_000)] + doc["signatures"]
    # The valid signature comes last: past the per-key bound, it is not even tried.
    return Call(ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub)).args, timeout=30,
                check=lambda r: _assert_count(r, "signature-invalid", 1))


@case(1, "signature-invalid", "trust")
def case_signature_not_base64(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signatures"][0]["sig"] = "!!! not base64 !!!"
    return ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub))


@case(1, "signature-invalid", "trust")
def case_signature_claims_the_trusted_keyid(ctx: Ctx) -> Call:
    doc = ctx.doc()
    forged = sign(json.dumps(doc["signed"]).encode(), generate("ed25519"))
    forged["keyid"] = doc["signatures"][0]["keyid"]
    doc["signatures"] = [forged]
    return ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub))


@case(1, "untrusted-key", "trust")
def case_signature_verifies_only_under_a_key_not_given(ctx: Ctx) -> Call:
    return ctx.verify(ctx.base.dir / "manifest.json", "--key", str(ctx.base.other_pub))


@case(1, "signature-missing", "trust")
def case_unsigned_manifest_with_key(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signatures"] = []
    return ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub))


@case(1, "no-trust-anchor", "trust")
def case_signed_manifest_without_a_key(ctx: Ctx) -> Call:
    """Anyone can sign: a signature checked against no key proves nothing, so no pass."""
    return Call(["verify", str(ctx.base.dir), "--json", "-q"], check=lambda r: _assert_eq(_codes(r), ["no-trust-anchor"]))


def _forged_clone(ctx: Ctx, signatures: list[dict[str, str]]) -> Path:
    """A clone whose README.md the attacker rewrote, with a manifest.json that agrees with
    it: the files match the manifest, and only a trust anchor can tell."""
    d = ctx.clone()
    evil = b"# pwned\n"
    ctx.own(d, "README.md").write_bytes(evil)
    doc = ctx.doc()
    _files(doc)["README.md"] = {"size": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}
    doc["signatures"] = signatures
    (d / "manifest.json").write_text(json.dumps(doc))
    return d


@case(1, "no-trust-anchor", "trust")
def case_forged_unsigned_manifest_without_a_key(ctx: Ctx) -> Call:
    d = _forged_clone(ctx, [])
    return Call(["verify", str(d), "--json", "-q"], check=lambda r: _assert_eq(_codes(r), ["no-trust-anchor"]))


@case(1, "no-trust-anchor", "trust")
def case_forged_manifest_signed_by_the_attacker_without_a_key(ctx: Ctx) -> Call:
    from manifest.jsonio import canonical_bytes

    d = _forged_clone(ctx, [])
    doc = json.loads((d / "manifest.json").read_text())
    doc["signatures"] = [sign(canonical_bytes(doc["signed"]), generate("ed25519"))]
    (d / "manifest.json").write_text(json.dumps(doc))
    return Call(["verify", str(d), "--json", "-q", "--expect-model", MODEL_ID, "--expect-revision", REVISION],
                check=lambda r: _assert_eq(_codes(r), ["no-trust-anchor"]))


@case(1, "signature-invalid", "trust")
def case_forged_manifest_with_the_trusted_key(ctx: Ctx) -> Call:
    """The same forgery, given the trusted key: the old signature no longer verifies."""
    d = _forged_clone(ctx, ctx.doc()["signatures"])
    return Call(["verify", str(d), "--json", "-q", "--key", str(ctx.base.pub)], check=lambda r: _assert_eq(_codes(r), ["signature-invalid"]))


@case(2, "usage", "trust")
def case_key_and_no_signature_together(ctx: Ctx) -> Call:
    return ctx.verify(ctx.base.dir / "manifest.json", "--key", str(ctx.base.pub), "--no-signature")


@case(0, "signature-ignored", "trust")
def case_valid_signature_beside_a_garbage_one_by_the_same_key(ctx: Ctx) -> Call:
    """One valid signature by a given key suffices; a bad entry beside it is a warning."""
    doc = ctx.doc()
    kid = doc["signatures"][0]["keyid"]
    doc["signatures"] = [{"keyid": kid, "alg": "ed25519", "sig": "A" * 86 + "=="}, *doc["signatures"]]
    return Call(ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.pub)).args,
                check=lambda r: _assert_eq([(f["code"], f["severity"]) for f in json.loads(r.out)["findings"]], [("signature-ignored", "warning")]))


@case(0, "signature-ignored", "trust")
def case_valid_signature_beside_a_bad_one_by_another_given_key(ctx: Ctx) -> Call:
    from manifest.signing import load_private_key

    doc = ctx.doc()
    doc["signatures"].append(sign(b"not the manifest", load_private_key(ctx.base.other_pub.parent / "b.pem")))
    return Call(ctx.verify(ctx.manifest(doc), "--key", str(ctx.base.other_pub), "--key", str(ctx.base.pub)).args,
                check=lambda r: _assert_eq(json.loads(r.out)["facts"]["trusted_keyids"], [keyid(ctx.base.key.public_key())]))


@case(1, "revision-mismatch", "trust")
def case_older_signed_manifest_replayed(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["model"]["revision"] = "r1"
    doc["signed"]["created_at"] = "2020-01-01T00:00:00Z"
    old = ctx.manifest(ctx.resign(doc))  # validly signed by the trusted key, just older
    return ctx.verify(old, "--key", str(ctx.base.pub), "--expect-revision", REVISION)


@case(1, "manifest-expired", "trust")
def case_expired_manifest(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["expires"] = "2001-01-01T00:00:00Z"
    return ctx.verify(ctx.manifest(ctx.resign(doc)), "--key", str(ctx.base.pub))


@case(1, "model-mismatch", "trust")
def case_manifest_for_another_model(ctx: Ctx) -> Call:
    doc = ctx.doc()
    doc["signed"]["model"]["id"] = "sentence-transformers/paraphrase-MiniLM-L3-v2"
    return ctx.verify(ctx.manifest(ctx.resign(doc)), "--key", str(ctx.base.pub), "--expect-model", MODEL_ID)


@case(2, "usage", "trust")
def case_create_with_expiry_in_the_past(ctx: Ctx) -> Call:
    d = ctx.clone()
    return Call(["create", str(d), "-q", "--expires", "2001-01-01T00:00:00Z", "-o", str(ctx.tmp / "m.json")],
                check=lambda r: _assert_absent(ctx.tmp / "m.json"))


@case(2, "key-invalid", "trust")
def case_private_key_given_as_trusted_key(ctx: Ctx) -> Call:
    return ctx.verify(ctx.base.dir / "manifest.json", "--key", str(ctx.base.priv))


@case(2, "key-invalid", "trust")
def case_key_file_is_a_fifo(ctx: Ctx) -> Call:
    p = ctx.tmp / "key.pub.pem"
    os.mkfifo(p)
    return Call(ctx.verify(ctx.base.dir / "manifest.json", "--key", str(p)).args, timeout=20)


@case(2, "key-invalid", "trust")
def case_key_file_is_garbage(ctx: Ctx) -> Call:
    p = ctx.tmp / "key.pub.pem"
    p.write_bytes(b"-----BEGIN PUBLIC KEY-----\n\xff\xfe\n-----END PUBLIC KEY-----\n")
    return ctx.verify(ctx.base.dir / "manifest.json", "--key", str(p))


# =========================================================================== paths in the manifest
def _entry_case(name: str) -> Callable[[Ctx], Call]:
    def build(ctx: Ctx) -> Call:
        doc = ctx.doc()
        _files(doc)[name] = {"size": 1, "sha256": ZERO}
        return ctx.verify(ctx.manifest(doc))

    return build


for _name, _path in {
    "entry_dotdot": "../outside.txt",
    "entry_dotdot_inside": "1_Pooling/../../outside.txt",
    "entry_absolute": "/etc/passwd",
    "entry_backslash": "..\\outside.txt",
    "entry_nul": "config.json\x00.txt",
    "entry_newline": "config.json\nx",
    "entry_drive_letter": "C:/Windows/win.ini",
    "entry_dot_component": "./config.json",
    "entry_empty_component": "1_Pooling//config.json",
    "entry_control_character": "a\x1b[31m.txt",
}.items():
    _fn = _entry_case(_path)
    _fn.__name__ = f"case_{_name}"
    case(1, "unsafe-path", "paths")(_fn)


# =========================================================================== paths in the directory
def _dir_case(make: Callable[[Ctx, Path], None], command: str, timeout: float = 30) -> Callable[[Ctx], Call]:
    def build(ctx: Ctx) -> Call:
        d = ctx.clone()
        make(ctx, d)
        if command == "create":
            out = ctx.tmp / "created.json"
            return Call(["create", str(d), "-q", "--no-cache", "-o", str(out)], timeout=timeout, check=lambda r: _assert_absent(out))
        trust = ["--key", str(ctx.base.pub)] if command == "verify" else []  # the clone's manifest.json is the signed one
        return Call([command, str(d), "--json", "-q", *trust], timeout=timeout)

    return build


def _symlink_outside(ctx: Ctx, d: Path) -> None:
    os.symlink("/etc/passwd", d / "evil.json")


def _symlink_dir_outside(ctx: Ctx, d: Path) -> None:
    os.symlink("/etc", d / "etc")


def _symlink_loop(ctx: Ctx, d: Path) -> None:
    os.symlink("loop-b", d / "loop-a")
    os.symlink("loop-a", d / "loop-b")


def _symlink_self(ctx: Ctx, d: Path) -> None:
    os.symlink("self", d / "self")


def _fifo(ctx: Ctx, d: Path) -> None:
    os.mkfifo(d / "pipe.json")


def _fifo_for_listed_file(ctx: Ctx, d: Path) -> None:
    (d / "tokenizer.json").unlink()
    os.mkfifo(d / "tokenizer.json")  # a name every reader wants to open


def _socket(ctx: Ctx, d: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    path = d / "s.sock"
    if len(str(path)) > 100:
        pytest.skip("tmp path too long for an AF_UNIX socket")
    s.bind(str(path))
    s.close()


def _char_device(ctx: Ctx, d: Path) -> None:
    try:
        os.mknod(d / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # like /dev/zero
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")


def _non_utf8_name(ctx: Ctx, d: Path) -> None:
    fd = os.open(os.fsencode(d) + b"/bad-\xff\xfe.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)


def _backslash_name(ctx: Ctx, d: Path) -> None:
    (d / "..\\evil.txt").write_text("x")


def _newline_name(ctx: Ctx, d: Path) -> None:
    (d / "evil\n.txt").write_text("x")


def _case_collision(ctx: Ctx, d: Path) -> None:
    shutil.copyfile(d / "config.json", d / "Config.json")


def _nfd_collision(ctx: Ctx, d: Path) -> None:
    (d / unicodedata.normalize("NFC", "caf\u00e9.txt")).write_text("a")
    (d / unicodedata.normalize("NFD", "caf\u00e9.txt")).write_text("b")


def _oversized(rel: str) -> Callable[[Ctx, Path], None]:
    def make(ctx: Ctx, d: Path) -> None:
        with open(ctx.own(d, rel), "r+b") as f:
            f.truncate(100 << 20)  # sparse, over the 64 MiB side-file cap

    return make


def _fifo_weights(ctx: Ctx, d: Path) -> None:
    (d / "model.safetensors").unlink()
    os.mkfifo(d / "model.safetensors")


def _weights_link_to_device(ctx: Ctx, d: Path) -> None:
    (d / "model.safetensors").unlink()
    os.symlink("/dev/zero", d / "model.safetensors")


_DIR_CASES: dict[str, tuple[Callable[[Ctx, Path], None], str, int, str]] = {
    "oversized_config_json_check": (_oversized("config.json"), "check", 1, "side-file-invalid"),
    "oversized_tokenizer_json_verify": (_oversized("tokenizer.json"), "verify", 1, "side-file-invalid"),
    "oversized_tokenizer_config_check": (_oversized("tokenizer_config.json"), "check", 1, "side-file-invalid"),
    "fifo_in_place_of_weights_check": (_fifo_weights, "check", 1, "unsupported-file"),
    "weights_symlink_to_a_device": (_weights_link_to_device, "verify", 1, "unsafe-path"),
    "symlink_outside_verify": (_symlink_outside, "verify", 1, "unsafe-path"),
    "symlink_outside_create": (_symlink_outside, "create", 2, "unsafe-path"),
    "symlink_outside_check": (_symlink_outside, "check", 1, "unsafe-path"),
    "symlink_to_directory_outside": (_symlink_dir_outside, "verify", 1, "unsafe-path"),
    "symlink_loop_verify": (_symlink_loop, "verify", 1, "unsafe-path"),
    "symlink_loop_create": (_symlink_loop, "create", 2, "unsafe-path"),
    "symlink_to_itself": (_symlink_self, "check", 1, "unsafe-path"),
    "fifo_verify": (_fifo, "verify", 1, "unsupported-file"),
    "fifo_create": (_fifo, "create", 2, "unsupported-file"),
    "fifo_check": (_fifo, "check", 1, "unsupported-file"),
    "fifo_in_place_of_listed_file_verify": (_fifo_for_listed_file, "verify", 1, "unsupported-file"),
    "fifo_in_place_of_listed_file_check": (_fifo_for_listed_file, "check", 1, "unsupported-file"),
    "socket_verify": (_socket, "verify", 1, "unsupported-file"),
    "char_device_verify": (_char_device, "verify", 1, "unsupported-file"),
    "char_device_create": (_char_device, "create", 2, "unsupported-file"),
    "non_utf8_name_verify": (_non_utf8_name, "verify", 1, "unsafe-path"),
    "non_utf8_name_create": (_non_utf8_name, "create", 2, "unsafe-path"),
    "non_utf8_name_check": (_non_utf8_name, "check", 1, "unsafe-path"),
    "backslash_in_name": (_backslash_name, "verify", 1, "unsafe-path"),
    "newline_in_name": (_newline_name, "create", 2, "unsafe-path"),
    "names_collide_by_case_verify": (_case_collision, "verify", 1, "path-collision"),
    "names_collide_by_case_create": (_case_collision, "create", 2, "path-collision"),
    "names_collide_by_normalization": (_nfd_collision, "verify", 1, "path-collision"),
}
for _name, (_make, _cmd, _exit, _code) in _DIR_CASES.items():
    _fn = _dir_case(_make, _cmd)
    _fn.__name__ = f"case_{_name}"
    case(_exit, _code, "paths")(_fn)


# --- issue 11: entries the manifest does not account for, verified with the signer's key
def _keyed_dir_case(make: Callable[[Ctx, Path], None]) -> Callable[[Ctx], Call]:
    def build(ctx: Ctx) -> Call:
        d = ctx.clone()
        make(ctx, d)
        return Call(["verify", str(d), "--json", "-q", "--no-cache", "--key", str(ctx.base.pub),
                     "--expect-model", MODEL_ID, "--expect-revision", REVISION])

    return build


def _plant(rel: str, data: str = "import os\n") -> Callable[[Ctx, Path], None]:
    def make(ctx: Ctx, d: Path) -> None:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(data)

    return make


def _empty_dir(rel: str) -> Callable[[Ctx, Path], None]:
    def make(ctx: Ctx, d: Path) -> None:
        (d / rel).mkdir(parents=True)

    return make


def _manifest_link_to(name: str) -> Callable[[Ctx, Path], None]:
    """The signed manifest renamed to a name loaders read, and manifest.json a symlink to it."""
    def make(ctx: Ctx, d: Path) -> None:
        (d / "manifest.json").rename(d / name)
        (d / "manifest.json").symlink_to(name)

    return make


_KEYED_CASES: dict[str, tuple[Callable[[Ctx, Path], None], int, str]] = {
    "nested_git_dir_planted": (_plant("1_Pooling/.git/evil.py"), 1, "extra-file"),
    "nested_cache_dir_planted": (_plant("1_Pooling/.cache/huggingface/evil.json", "{}"), 1, "extra-file"),
    "empty_tekken_json_directory_planted": (_empty_dir("tekken.json"), 1, "extra-directory"),
    "empty_chat_template_directory_planted_nested": (_empty_dir("1_Pooling/chat_template.jinja"), 1, "extra-directory"),
    "empty_directory_tree_planted": (_empty_dir("additional_chat_templates/x/y"), 1, "extra-directory"),
    "manifest_symlink_to_chat_template": (_manifest_link_to("chat_template.jinja"), 1, "manifest-symlink"),
    "manifest_symlink_to_tokenizer_config_name": (_manifest_link_to("tokenizer.model"), 1, "manifest-symlink"),
}
for _name, (_make, _exit, _code) in _KEYED_CASES.items():
    _fn = _keyed_dir_case(_make)
    _fn.__name__ = f"case_{_name}"
    case(_exit, _code, "paths")(_fn)


@case(1, "manifest-symlink", "paths")
def case_manifest_given_with_m_is_a_symlink_in_the_tree(ctx: Ctx) -> Call:
    d = ctx.clone()
    (d / "manifest.json").rename(d / "chat_template.jinja")
    (d / "signed.json").symlink_to("chat_template.jinja")
    return Call(["verify", str(d), "-m", str(d / "signed.json"), "--json", "-q", "--no-cache", "--key", str(ctx.base.pub)],
                check=lambda r: _assert_in('"chat_template.jinja"', r.out))


@case(1, "manifest-symlink", "paths")
def case_oms_bundle_in_the_tree_is_a_symlink(ctx: Ctx) -> Call:
    from manifest.oms import export_oms

    d = ctx.clone()
    write_keypair(generate("ecdsa-p256"), ctx.tmp / "ec.pem", ctx.tmp / "ec.pub.pem")
    export_oms(d, ctx.tmp / "ec.pem", d / "model.sig")  # its own path is outside its scope
    (d / "model.sig").rename(d / "chat_template.jinja")
    (d / "model.sig").symlink_to("chat_template.jinja")
    return Call(["verify", str(d), "--oms", str(d / "model.sig"), "--json", "-q", "--no-cache", "--key", str(ctx.tmp / "ec.pub.pem")],
                check=lambda r: _assert_in('"chat_template.jinja"', r.out))


# --- permission denied: root bypasses file modes, so drop the two capabilities that let it
_DROP = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _can_deny() -> str | None:
    """None if a subprocess without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH is really denied
    a mode-000 file here; otherwise why not."""
    if shutil.which("setpriv") is None:
        return "setpriv is not installed"
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"manifest-deny-probe-{os.getpid()}"
    probe.write_text("x")
    probe.chmod(0)
    try:
        p = subprocess.run([*_DROP, sys.executable, "-c", f"open({str(probe)!r}).read()"], capture_output=True, timeout=30, check=False)
    finally:
        probe.unlink()
    if p.returncode == 0:
        return "reads are not denied even without CAP_DAC_OVERRIDE (not root-owned, or another capability)"
    if b"PermissionError" not in p.stderr:
        return f"cannot drop capabilities here: {p.stderr.decode(errors='replace').strip()[-200:]}"
    return None


def _denied_run(ctx: Ctx, args: list[str], timeout: float = 60) -> Run:
    why = _can_deny()
    if why is not None:
        pytest.skip(f"permission-denied cases need a process that file modes bind: {why}")
    env = dict(os.environ)
    env.pop("MANIFEST_DEBUG", None)
    p = subprocess.run([*_DROP, sys.executable, "-m", "manifest", *args], cwd=ctx.tmp, env=env, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    return Run(p.returncode, p.stdout, p.stderr)


def _unreadable(kind: str, command: str) -> Callable[[Ctx], Call]:
    def build(ctx: Ctx) -> Call:
        d = ctx.clone()
        if kind == "file":
            ctx.own(d, "README.md").chmod(0)
        elif kind.startswith("file:"):  # a file some reader parses (config, tokenizer, weights header)
            ctx.own(d, kind.removeprefix("file:")).chmod(0)
        elif kind == "dir":
            (d / "1_Pooling").chmod(0)
        elif kind == "manifest":
            (d / "manifest.json").chmod(0)
        else:
            d.chmod(0)
        out = ctx.tmp / "created.json"
        args = ["create", str(d), "-q", "--no-cache", "-o", str(out)] if command == "create" else [command, str(d), "--json", "-q"]
        if command == "verify":
            args.append("--no-signature")
        if command == "verify" and kind == "root":
            args += ["-m", str(ctx.base.dir / "manifest.json")]
        return Call(runner=lambda: _denied_run(ctx, args))

    return build


for _name, (_kind, _cmd, _exit, _code) in {
    "unreadable_file_verify": ("file", "verify", 1, "unreadable"),
    "unreadable_file_create": ("file", "create", 2, "unreadable"),
    "unreadable_directory_verify": ("dir", "verify", 1, "unreadable"),
    "unreadable_directory_create": ("dir", "create", 2, "unreadable"),
    "unreadable_root_directory": ("root", "verify", 2, "unreadable"),
    "unreadable_manifest": ("manifest", "verify", 2, "unreadable"),
    "unreadable_config_json_check": ("file:config.json", "check", 1, "side-file-invalid"),
    "unreadable_config_json_verify": ("file:config.json", "verify", 1, "side-file-invalid"),
    "unreadable_tokenizer_config_check": ("file:tokenizer_config.json", "check", 1, "side-file-invalid"),
    "unreadable_tokenizer_json_verify": ("file:tokenizer.json", "verify", 1, "side-file-invalid"),
    "unreadable_weights_check": ("file:model.safetensors", "check", 1, "unreadable"),
    "unreadable_weights_verify": ("file:model.safetensors", "verify", 1, "unreadable"),
}.items():
    _fn = _unreadable(_kind, _cmd)
    _fn.__name__ = f"case_{_name}"
    case(_exit, _code, "paths")(_fn)


# --- issue 11: what transformers finds by listing the folder; each one changes what it loads
# (tests/test_loader_differential.py shows the change with the real loaders)
def _link_to_signed(rel: str, target: str, hard: bool = False) -> Callable[[Ctx, Path], None]:
    def make(ctx: Ctx, d: Path) -> None:
        if (d / rel).exists():
            (d / rel).unlink()
        if hard:
            os.link(d / target, d / rel)
        else:
            (d / rel).symlink_to(os.path.relpath(d / target, (d / rel).parent))

    return make


_LOADER_CASES: dict[str, tuple[Callable[[Ctx, Path], None], int, str]] = {
    # tokenizer.json absent: any listed name containing "tekken.json" replaces the vocab file asked for
    "backup_file_named_like_tekken_json": (_plant("old.tekken.json.bak", ""), 1, "extra-file"),
    "additional_chat_template_planted": (_plant("additional_chat_templates/default.jinja", "{{ 'x' }}"), 1, "extra-file"),
    "chat_template_hard_link_to_a_signed_file": (_link_to_signed("chat_template.jinja", "modules.json", hard=True), 1, "extra-file"),
    "tokenizer_config_symlink_to_a_signed_file": (_link_to_signed("tokenizer_config.json", "config.json"), 1, "unsupported-file"),
}
for _name, (_make, _exit, _code) in _LOADER_CASES.items():
    _fn = _keyed_dir_case(_make)
    _fn.__name__ = f"case_{_name}"
    case(_exit, _code, "paths")(_fn)


# =========================================================================== data
def _with_blob(ctx: Ctx, size: int, first: bytes = b"x") -> tuple[Path, Path]:
    """A clone with one extra private file ``blob.dat`` (sparse, ``size`` bytes starting
    with ``first``) and a manifest that lists it correctly, signed by the base key."""
    d = ctx.clone()
    blob = d / "blob.dat"
    with open(blob, "wb") as f:
        f.write(first)
        f.truncate(size)
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    doc = ctx.doc()
    _files(doc)["blob.dat"] = {"size": size, "sha256": h.hexdigest()}
    return d, ctx.manifest(ctx.resign(doc))


@case(1, "size-mismatch", "data")
def case_sparse_file_far_larger_than_listed(ctx: Ctx) -> Call:
    d, m = _with_blob(ctx, 16)
    with open(d / "blob.dat", "r+b") as f:
        f.truncate(1 << 40)  # 1 TiB of holes: reading it would take minutes
    # --exhaustive asks for every digest; the file still must not be read (bounded by timeout).
    return Call(["verify", str(d), "-m", str(m), "--json", "-q", "--no-signature", "--exhaustive", "--no-cache"], timeout=30)


@case(1, "file-changed", "data")
def case_file_changes_while_hashed(ctx: Ctx) -> Call:
    d, m = _with_blob(ctx, 256 << 20)

    @contextlib.contextmanager
    def writer() -> Iterator[None]:
        """Rewrite the first byte with the same value, in a loop: the content (and the
        digest) never changes, but the file's mtime moves while verify reads it."""
        stop = threading.Event()
        fd = os.open(d / "blob.dat", os.O_WRONLY)

        def loop() -> None:
            while not stop.is_set():
                os.pwrite(fd, b"x", 0)
                time.sleep(0.0005)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()
            os.close(fd)

    return Call(["verify", str(d), "-m", str(m), "--json", "-q", "--no-signature", "--no-cache"], during=writer)


@case(1, "digest-mismatch", "data")
def case_write_through_a_shared_mapping_after_a_cached_verify(ctx: Ctx) -> Call:
    """Issue 11, class 5: a page of a signed file is dirtied through ``mmap(MAP_SHARED)``
    (same bytes), verify passes, then a different byte is written through the same
    still-dirty page, which moves neither mtime nor ctime. The cached re-verify must not
    pass. The racy window is injected (one hour) so the outcome is the same on any machine."""
    d = ctx.clone()
    p = ctx.own(d, "vocab.txt")
    at = p.read_bytes().index(b"\nhello\n") + 1
    env = {"MANIFEST_CACHE_WINDOW_MS": "3600000"}
    args = ["verify", str(d), "--key", str(ctx.base.pub), "--expect-model", MODEL_ID, "--json", "-q"]

    def run() -> Run:
        fd = os.open(p, os.O_RDWR)
        try:
            m = mmap.mmap(fd, 0, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        try:
            m[at] = m[at]  # dirty the page, content unchanged
            time.sleep(2.5)  # older than any timestamp granularity: only the writeback window keeps it untrusted
            first = ctx._cli(*args, env=env)
            assert first.code == 0, first.out + first.err
            m[at] = ord("j")  # "hello" -> "jello" through the dirty page
            m.flush()
            r = ctx._cli(*args, env=env)
            return Run(r.code, r.out, r.err)
        finally:
            m.close()

    return Call(runner=run, check=lambda r: _assert_eq(
        [f["path"] for f in json.loads(r.out)["findings"] if f["code"] == "digest-mismatch"], ["vocab.txt"]))


# --- issue 11, class 6: the Hugging Face cache target (built by huggingface_hub itself)
HF_COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"


def _hf_download(src: Path, hub: Path, absent: tuple[str, ...] = ()) -> None:
    p = subprocess.run([sys.executable, str(Path(__file__).parent / "hf_cache_builder.py"), str(src), str(hub),
                        MODEL_ID, HF_COMMIT, *[x for a in absent for x in ("--absent", a)]],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]


def _hf_cache(ctx: Ctx, absent: tuple[str, ...] = ()) -> tuple[Path, dict[str, str]]:
    """The signed base checkpoint downloaded by huggingface_hub (tests/hf_cache_builder.py)
    once per session, then cloned into a private cache by hard links (no case writes into
    a file of it: they add, move, link or delete); ``absent`` files get huggingface_hub's
    own .no_exist markers. Returns the repo folder and the environment to use the cache."""
    shared = ctx.tmp.parent / "hf-hostile-base" / "hub"
    if not shared.exists():
        _hf_download(ctx.base.dir, shared)
    home = ctx.tmp / "hf"
    shutil.copytree(shared, home / "hub", symlinks=True, copy_function=os.link)
    if absent:
        _hf_download(ctx.base.dir, home / "hub", absent)
    env = {"HF_HOME": str(home), "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": "", "HF_HUB_OFFLINE": "1"}
    return home / "hub" / ("models--" + MODEL_ID.replace("/", "--")), env


def _hf_verify(ctx: Ctx, env: dict[str, str]) -> Run:
    r = ctx._cli("verify", MODEL_ID, "--key", str(ctx.base.pub), "--expect-model", MODEL_ID, "--expect-revision", REVISION,
                 "--json", "-q", "--no-cache", env=env)
    return Run(r.code, r.out, r.err)


@case(1, "hub-absent-marker", "paths")
def case_hf_cache_no_exist_marker_for_a_signed_file(ctx: Ctx) -> Call:
    """huggingface_hub writes .no_exist/<commit>/tokenizer_config.json (the Hub's 404):
    loading by repo id then drops the file (model_max_length 512 -> 1e30)."""
    def run() -> Run:
        _, env = _hf_cache(ctx, absent=("tokenizer_config.json",))
        return _hf_verify(ctx, env)

    return Call(runner=run, check=lambda r: _assert_eq(
        [(f["code"], f.get("path")) for f in json.loads(r.out)["findings"]], [("hub-absent-marker", "tokenizer_config.json")]))


@case(1, "hub-absent-marker", "paths")
def case_hf_cache_no_exist_marker_for_a_nested_signed_file(ctx: Ctx) -> Call:
    """A marker for 1_Pooling/config.json: transformers' cached_file (try_to_load_from_cache)
    then treats the signed file as absent."""
    def run() -> Run:
        _, env = _hf_cache(ctx, absent=("1_Pooling/config.json",))
        return _hf_verify(ctx, env)

    return Call(runner=run, check=lambda r: _assert_eq(
        [(f["code"], f.get("path")) for f in json.loads(r.out)["findings"]], [("hub-absent-marker", "1_Pooling/config.json")]))


@case(1, "extra-directory", "paths")
def case_hf_cache_empty_directory_in_the_snapshot(ctx: Ctx) -> Call:
    """An empty tekken.json/ in the snapshot folder (what from_pretrained(snapshot_path) lists)."""
    def run() -> Run:
        repo, env = _hf_cache(ctx)
        (repo / "snapshots" / HF_COMMIT / "tekken.json").mkdir()
        return _hf_verify(ctx, env)

    return Call(runner=run)


def _hf_linked_part(part: str) -> Callable[[Ctx], Call]:
    def build(ctx: Ctx) -> Call:
        def run() -> Run:
            repo, env = _hf_cache(ctx)
            secret = ctx.tmp / "outside"
            shutil.move(str(repo / part), str(secret))
            os.symlink(secret, repo / part)
            r = _hf_verify(ctx, env)
            assert str(secret) not in r.out + r.err
            return r

        return Call(runner=run)

    return build


for _part in ("blobs", "refs", "snapshots", "trees"):
    _fn = _hf_linked_part(_part)
    _fn.__name__ = f"case_hf_cache_{_part}_folder_is_a_symlink_out"
    case(2, "unsafe-path", "paths")(_fn)


@case(2, "unsafe-path", "paths")
def case_hf_cache_blobs_link_to_any_file(ctx: Ctx) -> Call:
    """blobs/ -> a folder elsewhere holding "config.json's blob" with private values: the
    snapshot link would read it and the report would echo them."""
    def run() -> Run:
        repo, env = _hf_cache(ctx)
        name = os.path.basename(os.readlink(repo / "snapshots" / HF_COMMIT / "config.json"))
        private = ctx.tmp / "private"
        private.mkdir()
        (private / name).write_text(json.dumps({"model_type": "bert", "secret": "PRIVATE_VALUE_42"}))
        shutil.rmtree(repo / "blobs")
        os.symlink(private, repo / "blobs")
        r = _hf_verify(ctx, env)
        assert "PRIVATE_VALUE_42" not in r.out + r.err and str(private) not in r.out + r.err
        return r

    return Call(runner=run)


def _many_files(ctx: Ctx, n: int = 20_000) -> Path:
    """One shared directory of ``n`` empty files in 20 subdirectories (built once per
    session, beside the base checkpoint; the cases only read it)."""
    d = ctx.base.dir.parent / "many"
    if not (d.parent / "many.done").exists():
        for i in range(n // 1000):
            sub = d / f"d{i:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            for j in range(1000):
                (sub / f"f{j:04d}.txt").touch()
        (d.parent / "many.done").touch()
    return d


@case(0, None, "data")
def case_very_many_files(ctx: Ctx) -> Call:
    d = _many_files(ctx)
    out = ctx.tmp / "many.json"

    def run() -> Run:
        r = _measured_wait4(ctx, ["create", str(d), "-q", "--no-cache", "-o", str(out)], limit_mib=400)
        assert r.code == 0, r.err
        return _measured_wait4(ctx, ["verify", str(d), "-m", str(out), "--json", "-q", "--no-signature", "--no-cache"], limit_mib=400)

    return Call(runner=run, check=lambda r: _assert_eq(json.loads(r.out)["stats"]["files_hashed"], 20_000))


@case(1, "missing-file", "data")
def case_very_many_files_one_missing(ctx: Ctx) -> Call:
    """20,000 files, and the manifest lists one more that is not there: the file set is
    compared in bounded memory, and nothing is hashed once a cheaper check failed."""
    d = _many_files(ctx)
    empty = {"size": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    files = {p.relative_to(d).as_posix(): empty for p in d.rglob("*") if p.is_file()}
    files["d13/f9999.txt"] = empty
    doc = {"signed": {"_type": "model-manifest", "version": 1, "created_by": {"name": "model-manifest", "version": "0.1.0"},
                      "created_at": "2026-01-01T00:00:00Z", "hashing": {"algorithms": ["sha256"], "ignore": []}, "files": files},
           "signatures": []}
    args = ["verify", str(d), "-m", str(ctx.manifest(doc)), "--json", "-q", "--no-signature"]
    return Call(runner=lambda: _measured_wait4(ctx, args, limit_mib=400), check=lambda r: _assert_count(r, "missing-file", 1))


def _measured_wait4(ctx: Ctx, args: list[str], limit_mib: int, timeout: float = 120) -> Run:
    """Like :func:`_measured`, reading the child's own peak RSS with wait4, through
    tests/peak_rss.py (started from this process, the figure would include this
    process's own RSS: Linux keeps a forked child's high-water mark across exec)."""
    env = dict(os.environ)
    env.pop("MANIFEST_DEBUG", None)
    out_f = ctx.tmp / f"out-{time.monotonic_ns()}"
    err_f = ctx.tmp / f"err-{time.monotonic_ns()}"
    rss_f = ctx.tmp / f"rss-{time.monotonic_ns()}"
    launcher = Path(__file__).with_name("peak_rss.py")
    with open(out_f, "w") as fo, open(err_f, "w") as fe:
        p = subprocess.Popen([sys.executable, str(launcher), str(rss_f), sys.executable, "-m", "manifest", *args], cwd=ctx.tmp,
                             env=env, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            pytest.fail(f"{args[0]} did not finish in {timeout}s")
    peak_kib = int(rss_f.read_text())
    assert peak_kib < limit_mib * 1024, f"peak RSS {peak_kib} KiB over {limit_mib} MiB"
    return Run(p.returncode, out_f.read_text(), err_f.read_text())


@case(2, "write-failed", "data")
def case_create_into_missing_directory(ctx: Ctx) -> Call:
    out = ctx.tmp / "no-such-dir" / "manifest.json"
    return Call(["create", str(ctx.clone()), "-q", "--no-cache", "-o", str(out)], check=lambda r: _assert_absent(ctx.tmp / "no-such-dir"))


# --- issue 11: writers never replace what is not theirs (exit 2, error[write-refused], nothing written)
def _unchanged(p: Path) -> Callable[[Run], None]:
    st = os.lstat(p)

    def check(r: Run) -> None:
        now = os.lstat(p)
        assert (now.st_mode, now.st_ino) == (st.st_mode, st.st_ino), f"{p} was replaced"

    return check


@case(2, "write-refused", "data")
def case_create_output_is_a_fifo(ctx: Ctx) -> Call:
    out = ctx.tmp / "m.json"
    os.mkfifo(out)
    return Call(["create", str(ctx.clone()), "-q", "--no-cache", "-o", str(out)], timeout=30, check=_unchanged(out))


@case(2, "write-refused", "data")
def case_create_output_is_a_symlink(ctx: Ctx) -> Call:
    (ctx.tmp / "victim.txt").write_text("keep\n")
    out = ctx.tmp / "m.json"
    os.symlink(ctx.tmp / "victim.txt", out)

    def check(r: Run) -> None:
        assert out.is_symlink() and (ctx.tmp / "victim.txt").read_text() == "keep\n"

    return Call(["create", str(ctx.clone()), "-q", "--no-cache", "-o", str(out)], check=check)


@case(2, "write-refused", "data")
def case_char_device_as_create_output(ctx: Ctx) -> Call:
    out = ctx.tmp / "full"
    try:
        os.mknod(out, stat.S_IFCHR | 0o600, os.makedev(1, 7))  # like /dev/full, under tmp only
    except OSError as e:
        pytest.skip(f"cannot make a device node under tmp here: {e}")
    return Call(["create", str(ctx.clone()), "-q", "--no-cache", "-o", str(out)], check=_unchanged(out))


@case(2, "write-refused", "data")
def case_keygen_output_is_a_fifo(ctx: Ctx) -> Call:
    os.mkfifo(ctx.tmp / "k.pub.pem")
    return Call(["keygen", "-o", str(ctx.tmp / "k")], timeout=30, check=lambda r: _assert_absent(ctx.tmp / "k.pem"))


@case(2, "write-failed", "data")
def case_keygen_into_missing_directory(ctx: Ctx) -> Call:
    return Call(["keygen", "-o", str(ctx.tmp / "no-such-dir" / "k")], check=lambda r: _assert_absent(ctx.tmp / "no-such-dir"))


@case(2, "write-refused", "data")
def case_export_oms_is_a_fifo(ctx: Ctx) -> Call:
    d = ctx.clone()
    write_keypair(generate("ecdsa-p256"), ctx.tmp / "ec.pem", ctx.tmp / "ec.pub.pem")
    out = ctx.tmp / "model.sig"
    os.mkfifo(out)
    return Call(["export", str(d), "--oms", str(out), "--key", str(ctx.tmp / "ec.pem")], timeout=30, check=_unchanged(out))


# --- interrupted create: never a partial manifest, never a stray temporary file
def _interrupted_create(sig: int, with_old: bool) -> Callable[[Ctx], Call]:
    def build(ctx: Ctx) -> Call:
        d = ctx.clone()
        old = (d / "manifest.json").read_bytes()
        if not with_old:
            (d / "manifest.json").unlink()
        with open(d / "big.dat", "wb") as f:
            f.write(b"x")
            f.truncate(512 << 20)  # 512 MiB sparse: a good part of a second of hashing

        def run() -> Run:
            env = dict(os.environ)
            env.pop("MANIFEST_DEBUG", None)
            # SIGINT as at a terminal: a suite started as a background job (``cmd &`` without job control)
            # inherits SIGINT ignored, and an ignored signal stays ignored across exec
            p = subprocess.Popen([sys.executable, "-m", "manifest", "create", str(d), "-q", "--no-cache"], cwd=ctx.tmp, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509 (one C call, no lock)
            try:
                _stop_mid_read(p, d / "big.dat")
                p.send_signal(sig)  # delivered when it runs again: certainly mid-hash
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
            out, err = p.communicate(timeout=60)
            return Run(p.returncode, out, err)

        def nothing_partial(r: Run) -> None:
            left = sorted(x.name for x in d.iterdir() if "manifest" in x.name)
            assert left == (["manifest.json"] if with_old else []), left
            if with_old:
                assert (d / "manifest.json").read_bytes() == old

        return Call(runner=run, check=nothing_partial)

    return build


def _offset(pid: int, path: Path) -> int | None:
    """How far process ``pid`` has read ``path`` (the offset of its open file), or
    ``None`` while it does not have the file open."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                m = re.search(r"^pos:\s+(\d+)", Path(f"/proc/{pid}/fdinfo/{fd}").read_text(), re.M)
                return int(m.group(1)) if m else None
        except OSError:
            continue
    return None


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            states.append(Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()[0])
    return all(st in ("T", "t") for st in states)


def _stop_mid_read(p: subprocess.Popen[str], path: Path, at: int = 16 << 20) -> None:
    """Stop (SIGSTOP) process ``p`` while it is in the middle of reading ``path``: it has
    read at least ``at`` bytes of it and not all. Decided by the process's own file
    offset, frozen, so neither a fast nor a slow machine can make it pass the point
    unnoticed (the caller sends SIGCONT)."""
    size = path.stat().st_size
    deadline = time.monotonic() + 120
    while True:
        assert p.poll() is None, "create finished before it could be interrupted"
        assert time.monotonic() < deadline, "create did not start reading the file"
        pos = _offset(p.pid, path)
        if pos is not None and pos >= at:
            os.kill(p.pid, signal.SIGSTOP)
            while not _all_threads_stopped(p.pid):
                time.sleep(0.001)
            pos = _offset(p.pid, path)
            assert pos is not None and at <= pos < size, f"stopped outside the read of {path.name} (offset {pos} of {size})"
            return
        time.sleep(0.002)


for _name, (_sig, _old, _exit, _code) in {
    "create_interrupted_by_sigint": (signal.SIGINT, False, 130, "interrupted"),
    "create_interrupted_by_sigint_keeps_old_manifest": (signal.SIGINT, True, 130, "interrupted"),
    "create_killed_keeps_old_manifest": (signal.SIGKILL, True, -signal.SIGKILL, None),
    "create_killed_leaves_nothing": (signal.SIGKILL, False, -signal.SIGKILL, None),
}.items():
    _fn = _interrupted_create(_sig, _old)
    _fn.__name__ = f"case_{_name}"
    case(_exit, _code, "data")(_fn)


# =========================================================================== assertions
def _assert_in(needle: str, text: str) -> None:
    assert needle in text, text


def _assert_not_in(needle: str, text: str) -> None:
    assert needle not in text, text


def _assert_eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


def _assert_absent(p: Path) -> None:
    assert not p.exists(), f"{p} was written"
    assert not [x for x in p.parent.iterdir() if x.name.startswith(f".{p.name}.")], "stray temporary file"


def _codes(r: Run) -> list[str]:
    if r.out.strip().startswith("{"):
        return [f["code"] for f in json.loads(r.out)["findings"]]
    return re.findall(r"^error\[([\w-]+)\]", r.err, re.M)


def _assert_count(r: Run, code: str, n: int) -> None:
    assert _codes(r).count(code) == n, _codes(r)


def _assert_not_checked(r: Run, check: str) -> None:
    assert check in {c["check"] for c in json.loads(r.out)["not_checked"]}, r.out


# =========================================================================== the tests
OUTPUTS: dict[str, Run] = {}


def _run_case(name: str, tmp_path: Path, base: Base, cli: Callable[..., Any]) -> Run:
    c = CASES[name]
    ctx = Ctx(tmp_path, base, cli)
    call = c.build(ctx)
    try:
        with call.during() if call.during else contextlib.nullcontext():
            r = call.runner() if call.runner else ctx.cli(*call.args, timeout=call.timeout)
    finally:
        for p in tmp_path.rglob("*"):  # give modes back so tmp cleanup works
            with contextlib.suppress(OSError):
                if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) == 0:
                    p.chmod(0o700)
        with contextlib.suppress(OSError):
            tmp_path.chmod(0o700)
    OUTPUTS[name] = r
    if call.check is not None and r.code == c.exit:
        call.check(r)
    return r


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
    assert {c.group for c in CASES.values()} == {"manifest", "trust", "paths", "data"}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile(name: str, tmp_path: Path, base: Base, cli: Callable[..., Any]) -> None:
    c = CASES[name]
    r = _run_case(name, tmp_path, base, cli)
    assert "Traceback" not in r.out + r.err, r.err
    assert r.code == c.exit, f"exit {r.code}, expected {c.exit}\nstdout: {r.out[-2000:]}\nstderr: {r.err[-2000:]}"
    if c.exit == 2 or (c.code == "interrupted"):
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got: {r.err!r}"
        assert lines[0].startswith(f"error[{c.code}]: "), lines[0]
        assert r.out == ""
    elif c.code is not None:
        assert c.code in _codes(r), f"{c.code} not in {_codes(r)}"
    if c.exit == 0:
        assert json.loads(r.out)["verdict"] == "pass"


def test_no_traceback_anywhere_in_the_hostile_corpus(tmp_path: Path, base: Base, cli: Callable[..., Any]) -> None:
    """Every CLI output over the whole corpus: cases this run has not run yet are run here."""
    skipped: dict[str, str] = {}
    for name in CASES:
        if name not in OUTPUTS:
            (tmp_path / name).mkdir()
            try:
                _run_case(name, tmp_path / name, base, cli)
            except pytest.skip.Exception as e:
                skipped[name] = str(e)
    assert OUTPUTS, "no case ran"
    # A case the machine cannot set up has no output to scan: only the platform-only ones may.
    from conftest import skip_allowed

    unscanned = {n: why for n, why in skipped.items() if skip_allowed(f"tests/test_hostile.py::test_hostile[{n}]") is None}
    assert not unscanned, f"cases left out of the scan: {unscanned}"
    bad = {n: r.err[-500:] for n, r in OUTPUTS.items() if "Traceback" in r.out or "Traceback" in r.err}
    assert not bad, bad
    internal = {n: r.err for n, r in OUTPUTS.items() if "error[internal]" in r.err}
    assert not internal, internal


# =========================================================================== digest bounds, in process
def test_never_reads_past_expected_size_plus_one(tmp_path: Path) -> None:
    """A file that grew to 1 TiB after discovery: the digest reads size + 1 bytes, then stops."""
    from manifest.digest import FileChanged, hash_file
    from manifest.inventory import discover

    (tmp_path / "a.dat").write_bytes(b"0123456789abcdef")
    art = discover(tmp_path)
    with open(tmp_path / "a.dat", "r+b") as f:
        f.truncate(1 << 40)
    seen: list[int] = []
    with pytest.raises(FileChanged):
        hash_file(art, art.files["a.dat"], ["sha256"], on_bytes=seen.append)
    assert sum(seen) == 17


def test_change_during_hash_is_detected_deterministically(tmp_path: Path) -> None:
    """The digest's own progress callback appends to the file mid-read: stat before and
    after differ, so the digest is refused rather than silently passed."""
    from manifest.digest import FileChanged, hash_file
    from manifest.inventory import discover

    with open(tmp_path / "a.dat", "wb") as f:
        f.truncate(8 << 20)
    art = discover(tmp_path)
    info = art.files["a.dat"]

    def touch(_n: int) -> None:
        os.utime(tmp_path / "a.dat", ns=(0, info.mtime_ns + 1_000_000_000))

    with pytest.raises(FileChanged):
        hash_file(art, info, ["sha256"], on_bytes=touch)
    hash_file(art, discover(tmp_path).files["a.dat"], ["sha256"])  # and unchanged, it passes
