"""Keys, signatures, certificate chains, discovery, the safetensors header reader and the
path rules on small synthetic inputs, in-process and fast.

scripts/mutation.py runs these for every mutant of ``signing``, ``inventory``,
``safetensors`` and ``paths``: each test here was written from a mutant that the other
tests let survive, and asserts the exact outcome a user sees (a verdict, a finding's code,
message and subject, a refusal). No checkpoint copy and no subprocess: mutmut only traces
calls made in the pytest process.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import errno
import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pki import issue

from manifest.certs import der_b64
from manifest.errors import InputError, UsageError

# -- keys and signatures --------------------------------------------------------------------------

SUPPORTED = "Ed25519, ECDSA P-256/P-384/P-521 or ML-DSA-65"
# keygen type -> (signature alg, description, the key class name), as docs/keys.md and the CLI's help name them
KINDS = {
    "ed25519": ("ed25519", "Ed25519"),
    "ecdsa-p256": ("ecdsa-p256-sha256", "ECDSA P-256"),
    "ecdsa-p384": ("ecdsa-p384-sha384", "ECDSA P-384"),
    "ecdsa-p521": ("ecdsa-p521-sha512", "ECDSA P-521"),
    "ml-dsa-65": ("ml-dsa-65", "ML-DSA-65"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_key_type_names_itself_and_its_signatures_verify(kind: str) -> None:
    from manifest.signing import alg_of, check_signatures, describe, generate, key_type, keyid, sign, verify_one

    alg, name = KINDS[kind]
    key = generate(kind)
    pub = key.public_key()
    assert (key_type(key), key_type(pub)) == (kind, kind)
    assert (describe(key), describe(pub), alg_of(key), alg_of(pub)) == (name, name, alg, alg)
    s = sign(b"data", key)
    assert (s["keyid"], s["alg"]) == (keyid(pub), alg)
    assert verify_one(pub, b"data", s["sig"], alg) and not verify_one(pub, b"datA", s["sig"], alg)
    other = "ed25519" if kind != "ed25519" else "ml-dsa-65"
    assert not verify_one(pub, b"data", s["sig"], KINDS[other][0])  # a declared alg must be the key's own
    r = check_signatures(b"data", [s], [pub])
    assert (r.trusted_keyids, r.findings, r.trusted_certificates) == ([keyid(pub)], [], [])


def test_an_unsupported_key_is_refused_and_named_by_its_type(tmp_path: Path) -> None:
    from manifest.signing import alg_of, describe, ecdsa_hash, key_type, parse_public_key

    r = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert (key_type(r), describe(r), describe(r.public_key())) == (None, "RSAPrivateKey", "RSAPublicKey")
    with pytest.raises(UsageError) as e:
        alg_of(r.public_key())
    assert str(e.value) == f"RSAPublicKey is not a supported key ({SUPPORTED})"
    pem = r.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InputError) as ie:
        parse_public_key(pem, "rsa.pub")
    assert (ie.value.code, str(ie.value)) == ("key-invalid", f"rsa.pub: a RSAPublicKey key is not supported (only {SUPPORTED} keys are)")
    k1 = ec.generate_private_key(ec.SECP256K1())
    assert key_type(k1) is None and describe(k1) == type(k1).__name__ != "NoneType"
    with pytest.raises(UsageError) as e:
        ecdsa_hash(k1)
    assert str(e.value) == "ECDSA on secp256k1 is not supported (P-256, P-384 or P-521)"


def test_an_unknown_key_type_lists_the_known_ones() -> None:
    from manifest.signing import generate

    with pytest.raises(UsageError) as e:
        generate("rsa")
    assert str(e.value) == "unknown key type 'rsa' (ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521, ml-dsa-65)"


def test_ml_dsa_keys_need_a_backend_that_implements_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed backend implements ML-DSA; one without it (an older OpenSSL) refuses the
    key type in one line, naming the versions."""
    from cryptography import __version__ as version
    from cryptography.hazmat.backends.openssl.backend import backend

    from manifest.signing import generate, mldsa_supported

    assert backend.mldsa_supported() is True and mldsa_supported() is True
    monkeypatch.delattr(type(backend), "mldsa_supported")
    assert mldsa_supported() is False
    with pytest.raises(UsageError) as e:
        generate("ml-dsa-65")
    assert str(e.value) == (f"ML-DSA-65 keys need a cryptography with ML-DSA and a backend that implements it; this one "
                            f"(cryptography {version}, {backend.openssl_version_text()}) has none")
    assert generate("ed25519") is not None  # the other types still work


def test_a_key_file_removed_by_someone_else_before_the_cleanup_is_still_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The public key's write fails after the private key was written, and the private key
    is already gone when the writer removes it: the write failure, not a traceback."""
    from manifest.signing import generate, write_keypair

    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    real = os.open

    def fake(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if Path(os.fsdecode(path)) == pub and flags & os.O_CREAT:
            os.unlink(priv)
            raise OSError(errno.ENOSPC, "No space left on device", str(pub))
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", fake)
    with pytest.raises(InputError) as e:
        write_keypair(generate(), priv, pub)
    assert (e.value.code, str(e.value)) == ("write-failed", f"cannot write {pub}: No space left on device; nothing was written")
    assert not priv.exists() and not pub.exists()


def test_the_untrusted_key_finding_says_whether_roots_were_given() -> None:
    from manifest.signing import check_signatures, generate, keyid, sign

    k, j = generate(), generate()
    s = sign(b"data", j)
    base = f"signed only by key(s) {keyid(j.public_key())[:16]}, none of which was given with --key"
    for cas, extra in ((None, ""), ([], ""), ([_PKI["root"]], "; no signature carries a certificate for the given --ca roots")):
        r = check_signatures(b"data", [s], [k.public_key()], cas)
        assert [(f.code, f.message, f.actual) for f in r.findings] == [("untrusted-key", base + extra, [keyid(j.public_key())[:16]])]
        assert (r.trusted_keyids, r.trusted_certificates) == ([], [])


# -- certificate signatures -----------------------------------------------------------------------


def _build_pki() -> dict[str, Any]:
    """root -> intermediate -> leaf (P-256, code signing), an RSA leaf under the same
    intermediate, and the same P-256 key certified by an unrelated root."""
    now = dt.datetime.now(dt.timezone.utc)
    since = now - dt.timedelta(days=365)
    root_k, inter_k, leaf_k, other_k = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    rsa_k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = issue(root_k, "root CA", root_k, "root CA", ca=True, not_before=since)
    inter = issue(inter_k, "intermediate CA", root_k, "root CA", ca=True, path_length=0, not_before=since)
    other = issue(other_k, "other root CA", other_k, "other root CA", ca=True, not_before=since)
    return {"root": root, "inter": inter, "leaf_key": leaf_k,
            "leaf": issue(leaf_k, "model publisher", inter_k, "intermediate CA", ca=False),
            "rsa_leaf": issue(rsa_k, "rsa publisher", inter_k, "intermediate CA", ca=False),
            "other_leaf": issue(leaf_k, "model publisher", other_k, "other root CA", ca=False), "other_root": other}


_PKI = _build_pki()
LEAF = "CN=model publisher,O=manifest test PKI"
DATA = b'{"signed":1}'


def _cert_entry(data: bytes = DATA, leaf: str = "leaf") -> dict[str, Any]:
    from manifest.signing import sign

    chain: list[x509.Certificate] = [_PKI[leaf], _PKI["inter"]] if leaf != "other_leaf" else [_PKI[leaf]]
    return {**sign(data, _PKI["leaf_key"]), "certificates": [der_b64(c) for c in chain]}


def _leaf_kid() -> str:
    from manifest.signing import keyid

    return keyid(_PKI["leaf_key"].public_key())


def test_a_certificate_entry_chaining_to_a_given_root_is_trusted_once() -> None:
    from manifest.signing import TrustResult, check_signatures, generate, keyid, sign

    good = _cert_entry()
    assert check_signatures(DATA, [good], [], [_PKI["root"]]) == TrustResult([_leaf_kid()], [], [LEAF])
    assert check_signatures(DATA, [good, good], [], [_PKI["root"]]) == TrustResult([_leaf_kid()], [], [LEAF])
    # beside a given key's own signature: both trusted, the key's first
    k = generate()
    r = check_signatures(DATA, [good, sign(DATA, k)], [k.public_key()], [_PKI["root"]])
    assert r == TrustResult([keyid(k.public_key()), _leaf_kid()], [], [LEAF])
    # the leaf's key also given with --key: trusted once
    r = check_signatures(DATA, [good], [_PKI["leaf_key"].public_key()], [_PKI["root"]])
    assert r == TrustResult([_leaf_kid()], [], [LEAF])
    # no --ca: the certificates are not looked at, and the key alone is not given
    r = check_signatures(DATA, [good], [k.public_key()])
    assert (r.trusted_keyids, [f.code for f in r.findings]) == ([], ["untrusted-key"])


def _b64_error(text: str) -> str:
    """What Python's own base64 decoder says of ``text`` (its words differ between versions)."""
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error as e:
        return str(e)
    raise AssertionError(f"{text!r} decodes")


def _bad_cert_entries() -> dict[str, tuple[dict[str, Any], tuple[str, str, Any]]]:
    good = _cert_entry()
    rsa_leaf = "CN=rsa publisher,O=manifest test PKI"
    invalid = ("signature-invalid", f"signature by certificate {LEAF} (chained to a given root) does not verify: "
               "the manifest was changed after signing", LEAF)
    return {
        "undecodable": ({**good, "certificates": ["!!"]},
                        ("certificate-untrusted", f"the leaf certificate is not a readable DER certificate ({_b64_error('!!')})", None)),
        "other root": (_cert_entry(leaf="other_leaf"),
                       ("certificate-untrusted", f"signing certificate {LEAF} does not chain to a given root: no path leads to a root given with --ca",
                        LEAF)),
        "rsa leaf": ({**good, "certificates": [der_b64(_PKI["rsa_leaf"]), der_b64(_PKI["inter"])]},
                     ("certificate-untrusted", f"signing certificate {rsa_leaf}: a RSAPublicKey key is not supported (only {SUPPORTED} keys are)", None)),
        "changed data": (_cert_entry(b"other"), invalid),
        "other keyid": ({**good, "keyid": "0" * 64}, invalid),
        "other alg": ({**good, "alg": "ed25519"}, invalid),
        "no sig": ({k: v for k, v in good.items() if k != "sig"}, invalid),
    }


@pytest.mark.parametrize("case", sorted(_bad_cert_entries()))
def test_a_certificate_entry_that_fails_says_why_and_does_not_stop_the_next(case: str) -> None:
    from manifest.signing import TrustResult, check_signatures

    bad, want = _bad_cert_entries()[case]
    r = check_signatures(DATA, [bad], [], [_PKI["root"]])
    assert [(f.code, f.message, f.actual) for f in r.findings] == [want]
    assert (r.trusted_keyids, r.trusted_certificates) == ([], [])
    # a failing entry before a good one: the good one is still checked, and the failure is not reported
    assert check_signatures(DATA, [bad, _cert_entry()], [], [_PKI["root"]]) == TrustResult([_leaf_kid()], [], [LEAF])


def test_certificate_entries_are_bounded() -> None:
    from manifest.signing import MAX_TRIES_PER_KEY, TrustResult, check_signatures

    bad = _cert_entry(b"other")
    r = check_signatures(DATA, [bad] * MAX_TRIES_PER_KEY + [_cert_entry()], [], [_PKI["root"]])
    assert r.trusted_keyids == [] and [f.code for f in r.findings] == ["signature-invalid"] * MAX_TRIES_PER_KEY
    r = check_signatures(DATA, [bad] * (MAX_TRIES_PER_KEY - 1) + [_cert_entry()], [], [_PKI["root"]])
    assert r == TrustResult([_leaf_kid()], [], [LEAF])


# -- discovery ------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    for rel, text in (("aX/one.txt", "1"), ("b/two.txt", "22"), ("b/x", "x"), ("config.json", "{}"), ("z.txt", "z")):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return d


def test_an_exact_ignore_rule_leaves_out_that_file_only(small: Path) -> None:
    """``b/x`` names one file: the directory ``b`` and its other files are still discovered;
    ``b/`` leaves out the directory and everything below it."""
    from manifest.inventory import discover

    art = discover(small, ignore=("b/x",))
    assert (list(art.files), art.dirs, art.problems) == (["aX/one.txt", "b/two.txt", "config.json", "z.txt"], ["aX", "b"], [])
    art = discover(small, ignore=("b/",))
    assert (list(art.files), art.dirs, art.problems) == (["aX/one.txt", "config.json", "z.txt"], ["aX"], [])


def test_an_unlistable_directory_is_named_and_the_walk_goes_on(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected (the suite runs as root, to whom every mode bit is open)."""
    from manifest.inventory import discover

    real = os.scandir

    def scandir(path: Any) -> Any:
        if os.fspath(path) == str(small / "aX"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    art = discover(small)
    assert [(f.code, f.path, f.message) for f in art.problems] == [("unreadable", "aX", "cannot list directory: Permission denied")]
    assert list(art.files) == ["b/two.txt", "b/x", "config.json", "z.txt"] and art.dirs == ["aX", "b"]


class _Entry:
    """A directory entry whose type cannot be read (``is_dir`` fails, as it may on a file
    system without d_type when the entry's lstat fails)."""

    def __init__(self, real: os.DirEntry[str]) -> None:
        self.name, self.path = real.name, real.path

    def is_dir(self, follow_symlinks: bool = True) -> bool:
        raise OSError(errno.EIO, "Input/output error", self.path)


def test_an_entry_whose_type_cannot_be_read_is_stat_ed_as_an_entry_not_walked(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    from manifest.inventory import discover

    real = os.scandir

    @contextmanager
    def scandir(path: Any) -> Any:
        with real(path) as it:
            yield [_Entry(e) if e.name == "z.txt" else e for e in it]

    monkeypatch.setattr(os, "scandir", scandir)
    art = discover(small)
    assert (list(art.files), art.dirs, art.problems) == (["aX/one.txt", "b/two.txt", "b/x", "config.json", "z.txt"], ["aX", "b"], [])


def test_a_root_replaced_by_a_fifo_after_discovery_fails_at_once(small: Path) -> None:
    """The root is opened as a directory: a FIFO put in its place is refused (ENOTDIR), never
    opened for reading, which would block until a writer came. A guard thread stands in for
    that writer after 10 s, so a regression fails instead of hanging."""
    import threading

    from manifest.inventory import discover

    art = discover(small)
    small.rename(small.with_name("gone"))
    os.mkfifo(small)
    done, released = threading.Event(), []

    def guard() -> None:
        if not done.wait(10):
            try:
                os.close(os.open(small, os.O_WRONLY | os.O_NONBLOCK))  # succeeds only if a reader is blocked in open
                released.append(True)
            except OSError:
                pass

    t = threading.Thread(target=guard, daemon=True)
    t.start()
    try:
        with pytest.raises(OSError) as e:
            art.open("config.json")
    finally:
        done.set()
        t.join()
    assert (e.value.errno, released) == (errno.ENOTDIR, [])


def test_a_side_file_that_grew_past_its_cap_is_refused_after_reading_one_byte_more(small: Path) -> None:
    """A side file that grows after discovery (here a sparse 32 MiB) is read to its cap and
    one byte more, never whole."""
    import tracemalloc

    from manifest.inventory import discover

    art = discover(small)
    assert art.read_bytes("config.json", cap=64) == b"{}"
    os.truncate(small / "config.json", 32 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            art.read_bytes("config.json", cap=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (str(e.value), e.value.path) == ("config.json grew past the 64-byte cap while being read", "config.json")
    assert peak < 1 << 20


def test_opening_a_file_warns_about_nothing(small: Path) -> None:
    import warnings

    from manifest.inventory import discover

    art = discover(small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with art.open("b/two.txt") as f:
            assert f.read() == b"22"


# -- the safetensors header reader ------------------------------------------------------------------


def _st(entries: dict[str, Any], data_len: int, pad: bool = True) -> bytes:
    body = json.dumps(entries, separators=(",", ":")).encode()
    if pad:
        body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + bytes(data_len)


def _t(dtype: str, shape: list[int], start: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


def _header_error(data: bytes, size: int | None = None) -> Any:
    from manifest.formats.safetensors import HeaderError, read_header

    with pytest.raises(HeaderError) as e:
        read_header(io.BytesIO(data), len(data) if size is None else size)
    return e.value


def _rust_accepts(data: bytes, where: Path) -> list[str]:
    """The tensor names the Rust parser (safetensors' own ``safe_open``) reads from ``data``."""
    import safetensors

    p = where / "x.safetensors"
    p.write_bytes(data)
    with safetensors.safe_open(str(p), framework="np") as f:
        return sorted(f.keys())


def test_tensors_written_out_of_offset_order_are_read_in_offset_order(tmp_path: Path) -> None:
    """Loaders sort the entries by their offsets (start, then end); so do we. A zero-size
    tensor at the offset of a larger one comes first, wherever it is written."""
    from manifest.formats.safetensors import TensorInfo, parse_header_bytes

    entries = {"c": _t("F32", [2], 16, 24), "a": _t("F32", [2], 0, 8), "b": _t("F16", [4], 8, 16), "z": _t("U8", [0], 0, 0)}
    data = _st(entries, 24)
    h = parse_header_bytes(data)
    assert h.tensors == {"z": TensorInfo("U8", (0,), 0, 0), "a": TensorInfo("F32", (2,), 0, 8),
                         "b": TensorInfo("F16", (4,), 8, 16), "c": TensorInfo("F32", (2,), 16, 24)}
    assert list(h.tensors) == ["z", "a", "b", "c"] and (h.data_len, h.expected_size) == (24, len(data))
    assert h.dtype_totals == {"U8": (0, 0), "F32": (4, 16), "F16": (4, 8)} and h.parameters == 8
    assert _rust_accepts(data, tmp_path) == ["a", "b", "c", "z"]


def test_an_overlap_is_named_in_offset_order() -> None:
    """``x`` [0, 8) and ``y`` [4, 6): sorted by start, ``y`` overlaps ``x`` (sorted by end,
    ``y`` would come first and read as a gap)."""
    e = _header_error(_st({"y": _t("U8", [2], 4, 6), "x": _t("F32", [2], 0, 8)}, 8))
    assert (e.code, e.message, e.facts) == ("header-invalid", "tensor 'y': data [4, 6] overlaps tensor 'x'",
                                            {"rule": "offsets-overlap", "tensor": "y"})


def test_a_header_of_many_batches_keeps_every_tensor_and_its_totals() -> None:
    """Entries over three batches of the reader (two dtypes, so the totals need each
    batch's dtypes and element counts)."""
    from manifest.formats.safetensors import _BATCH, build, parse_header_bytes

    n = 2 * _BATCH + 1000
    tensors = {f"t{i:06d}": ("F32" if i % 2 else "F16", (3,)) for i in range(n)}
    data_len = sum(12 if i % 2 else 6 for i in range(n))
    h = parse_header_bytes(build(tensors) + bytes(data_len))
    assert list(h.tensors) == list(tensors)
    assert h.tensors[f"t{n - 1:06d}"].end == data_len == h.data_len
    half = n // 2
    assert h.dtype_totals == {"F16": (3 * (n - half), 6 * (n - half)), "F32": (3 * half, 12 * half)}


def test_the_header_keeps_its_raw_bytes_and_metadata() -> None:
    from manifest.formats.safetensors import parse_header_bytes

    data = _st({"__metadata__": {"format": "pt"}, "a": _t("U8", [4], 0, 4)}, 4)
    n = struct.unpack("<Q", data[:8])[0]
    h = parse_header_bytes(data)
    assert (h.header_len, h.raw, h.metadata) == (n, data[8:8 + n], {"format": "pt"})


class _Trickle(io.RawIOBase):
    """A stream that returns at most one byte per read (a pipe or a network stream may)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not len(b) or self._pos >= len(self._data):
            return 0
        b[0] = self._data[self._pos]
        self._pos += 1
        return 1


def test_a_stream_of_short_reads_gives_the_same_header() -> None:
    from manifest.formats.safetensors import parse_header_bytes, read_header

    data = _st({"a": _t("U8", [4], 0, 4), "b": _t("F32", [1], 4, 8)}, 8)
    h = read_header(_Trickle(data), len(data))  # type: ignore[arg-type]
    assert h == parse_header_bytes(data) and list(h.tensors) == ["a", "b"]


def test_a_file_too_short_for_the_length_says_so_in_words_and_facts() -> None:
    e = _header_error(b"\x00\x01\x02")
    assert (e.code, e.message, e.facts) == ("truncated", "file of 3 bytes is too short to hold the 8-byte header length (empty or cut-off download)",
                                            {"expected": 8, "actual": 3, "rule": "header-too-small"})
    # a file that shrank after its size was taken: 3 bytes read of 100
    e = _header_error(b"\x00\x01\x02", size=100)
    assert (e.code, e.facts) == ("truncated", {"expected": 8, "actual": 100, "rule": "header-too-small"})
    # a short file that looks like something else is named
    e = _header_error(b"<html>")
    assert (e.code, e.message, e.facts["rule"]) == ("header-invalid", "not a safetensors file (looks like HTML)", "not-safetensors")


def test_an_8_byte_file_is_read_as_a_length() -> None:
    e = _header_error(struct.pack("<Q", 2))
    assert (e.code, e.message, e.facts) == ("truncated", "header of 2 bytes runs past the end of the 8-byte file (cut-off download)",
                                            {"expected": 10, "actual": 8, "rule": "header-past-end"})


def test_the_header_length_limit_is_inclusive() -> None:
    from manifest.formats.safetensors import MAX_HEADER

    e = _header_error(struct.pack("<Q", MAX_HEADER) + b"{}")
    assert (e.code, e.facts["rule"], e.message) == ("truncated", "header-past-end",
                                                    f"header of {MAX_HEADER} bytes runs past the end of the 10-byte file (cut-off download)")
    e = _header_error(struct.pack("<Q", MAX_HEADER + 1) + b"{}")
    assert (e.code, e.facts["rule"], e.message) == ("header-invalid", "header-too-large",
                                                    f"header length {MAX_HEADER + 1} is over the {MAX_HEADER}-byte limit loaders accept")


def test_a_header_that_is_not_an_object_names_its_type() -> None:
    e = _header_error(_st([], 0))  # type: ignore[arg-type]
    assert (e.code, e.message, e.facts) == ("header-invalid", "header is a JSON list, not an object", {"rule": "json-object"})


def test_bad_data_offsets_are_named_in_words() -> None:
    e = _header_error(_st({"t": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}, 1))
    assert (e.message, e.facts) == ("tensor 't': data_offsets must be two non-negative 64-bit integers", {"rule": "offsets", "tensor": "t"})


@pytest.mark.parametrize("extra", [-3, 5])
def test_a_file_of_the_wrong_size_says_how_far_off_and_what_that_means(extra: int) -> None:
    good = _st({"a": _t("U8", [8], 0, 8)}, 8)
    data = good[:extra] if extra < 0 else good + bytes(extra)
    e = _header_error(data)
    how = "3 bytes short: interrupted or cut-off download" if extra < 0 else "5 bytes of trailing data: corrupted or appended file"
    assert (e.code, e.message) == ("truncated", f"file is {len(data)} bytes but its header promises {len(good)} ({how})")
    assert (e.facts["expected"], e.facts["actual"], e.facts["rule"]) == (len(good), len(data), "coverage")


def test_a_file_that_ends_inside_its_header_says_where() -> None:
    """The size taken before reading promised the whole header, but the stream ends early
    (the file shrank meanwhile)."""
    data = _st({"a": _t("U8", [4], 0, 4)}, 4)
    n = struct.unpack("<Q", data[:8])[0]
    e = _header_error(data[:20], size=len(data))
    assert (e.code, e.message, e.facts) == ("truncated", f"file ended after 20 bytes while reading an {n}-byte header",
                                            {"expected": 8 + n, "actual": 20, "rule": "header-past-end"})


def test_a_header_that_is_not_utf8_says_at_which_byte() -> None:
    e = _header_error(struct.pack("<Q", 8) + b'{"a\xff":1}' + bytes(0))
    assert (e.code, e.message, e.facts) == ("header-invalid", "header is not UTF-8 (byte 3)", {"rule": "utf8"})


# the length field of a pickle (protocol 2, b"\x80\x02" then zeros): 640, a plausible header length
PICKLE_HEAD = b"\x80\x02" + bytes(6)
PICKLE = "not a safetensors file (looks like a pickle (a PyTorch checkpoint?))"


def test_a_pickle_is_named_whichever_rule_its_bytes_break() -> None:
    assert struct.unpack("<Q", PICKLE_HEAD)[0] == 640
    body = b"\x80" + bytes(639)  # not UTF-8
    e = _header_error(PICKLE_HEAD + body)
    assert (e.code, e.message, e.facts["rule"]) == ("header-invalid", PICKLE, "not-safetensors")
    for start in (b"X{", b"\x0b{"):  # UTF-8 but not JSON, and not a JSON object's start
        e = _header_error(PICKLE_HEAD + start + b" " * 638)
        assert (e.message, e.facts["rule"]) == (PICKLE, "not-safetensors")


def _json_error(raw: bytes) -> str:
    from manifest.jsonio import JSONError, loads_strict

    try:
        loads_strict(raw)
    except JSONError as e:
        return str(e)
    raise AssertionError(f"{raw!r} parses")


def test_broken_json_that_starts_like_an_object_is_a_json_error_whatever_its_length_looks_like() -> None:
    """After the length, whitespace then ``{``: a header, broken; the length's bytes are
    not sniffed (they look like a pickle here)."""
    raw = b'  {"a": ' + b" " * 632
    e = _header_error(PICKLE_HEAD + raw)
    assert (e.code, e.message, e.facts) == ("header-invalid", f"header is not valid JSON: {_json_error(raw)}", {"rule": "json"})
    # the same length, cut short, before a header that starts as an object: truncated, not "a pickle"
    e = _header_error(PICKLE_HEAD + b'{"a": 1}')
    assert (e.code, e.facts["rule"]) == ("truncated", "header-past-end")
    e = _header_error(PICKLE_HEAD + b"{")
    assert (e.code, e.facts["rule"]) == ("truncated", "header-past-end")


def test_a_header_that_is_not_json_and_looks_like_nothing_is_a_json_error() -> None:
    raw = b"[1,]    "
    e = _header_error(struct.pack("<Q", len(raw)) + raw)
    assert (e.code, e.message, e.facts) == ("header-invalid", f"header is not valid JSON: {_json_error(raw)}", {"rule": "json"})


def test_eight_zero_bytes_are_named_as_space_never_written() -> None:
    e = _header_error(bytes(8))
    assert (e.code, e.message, e.facts["rule"]) == (
        "header-invalid", "not a safetensors file (looks like zeros only: space reserved by a download that never wrote the data)",
        "not-safetensors")


def test_a_header_of_exactly_the_limit_is_read() -> None:
    """Loaders accept headers up to 100,000,000 bytes, the limit included: more than the
    64 MiB cap of the JSON documents this tool reads otherwise (a header of ``{}`` and
    spaces, parsed in about a second)."""
    from manifest.formats.safetensors import MAX_HEADER, parse_header_bytes
    from manifest.jsonio import MAX_DOCUMENT_BYTES

    assert MAX_DOCUMENT_BYTES < MAX_HEADER
    h = parse_header_bytes(struct.pack("<Q", MAX_HEADER) + b"{}" + b" " * (MAX_HEADER - 2))
    assert (h.header_len, h.tensors, h.expected_size) == (MAX_HEADER, {}, 8 + MAX_HEADER)
