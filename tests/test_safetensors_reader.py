"""The safetensors header reader: the named malformed corpus, a differential test against
the Rust parser (safetensors 0.8), and hypothesis properties."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors_corpus import CASES, LFS_OID, base_file

from manifest.formats.safetensors import DTYPE_BITS, MAX_HEADER, Header, HeaderError, build, parse_header_bytes, read_header


def rust_rejects(path: Path) -> str | None:
    """The error the Rust parser gives when opening ``path`` (as loaders do), or None.
    Only its own refusal of the header counts: any other exception (a misuse of the
    API, a file that is not there) is raised, not taken for a rejection."""
    try:
        with safetensors.safe_open(str(path), framework="np") as f:
            list(f.keys())
    except safetensors.SafetensorError as e:
        assert str(e).startswith("Error while deserializing header"), str(e)
        return str(e)
    return None


def ours(data: bytes) -> Header | HeaderError:
    try:
        return parse_header_bytes(data)
    except HeaderError as e:
        return e


# ----------------------------------------------------------------------------- corpus
@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case_gives_its_code_and_rule(name: str) -> None:
    case = CASES[name]
    res = ours(case.make())
    if case.code is None:
        assert isinstance(res, Header), f"{name}: valid file rejected: {res}"
        return
    assert isinstance(res, HeaderError), f"{name}: malformed file accepted"
    assert res.code == case.code, (name, res.code, res.message)
    assert res.facts.get("rule") == case.rule, (name, res.facts, res.message)
    assert "\n" not in res.message


@pytest.mark.parametrize("name", sorted(CASES))
def test_differential_everything_rust_rejects_we_reject(name: str, tmp_path: Path) -> None:
    """Run both parsers over the same file: Rust rejects => we reject. Where we are
    stricter on purpose (the case says so), Rust must indeed accept, or the label lies."""
    good = tmp_path / "base.safetensors"
    good.write_bytes(base_file())
    assert rust_rejects(good) is None  # the same call accepts the valid file the cases are made from
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(CASES[name].make())
    rust = rust_rejects(path)
    mine = ours(path.read_bytes())
    if rust is not None:
        assert isinstance(mine, HeaderError), f"{name}: Rust rejects ({rust}) but we accept"
    if CASES[name].stricter:
        assert rust is None, f"{name} is marked stricter-than-Rust but Rust rejects it too: {rust}"
    if CASES[name].code is None:
        assert rust is None, f"{name}: the valid base is refused by Rust: {rust}"


def test_corpus_covers_every_rule() -> None:
    rules = {c.rule for c in CASES.values() if c.rule}
    assert {
        "header-too-small", "header-too-large", "header-past-end", "utf8", "json", "json-object", "unicode", "metadata",
        "tensor-entry", "dtype", "shape", "offsets", "offsets-gap", "offsets-overlap", "size", "overflow", "sub-byte",
        "coverage", "lfs-pointer", "not-safetensors",
    } <= rules


def test_every_dtype_of_safetensors_08_is_known_and_round_trips_through_rust() -> None:
    assert len(DTYPE_BITS) == 22
    for dtype, bits in DTYPE_BITS.items():
        n = 8  # 8 elements fill whole bytes for 4, 6, 8... bits
        data = build({"t": (dtype, (2, n // 2))}) + b"\0" * (n * bits // 8)
        h = parse_header_bytes(data)
        assert h.tensors["t"].dtype == dtype and h.tensors["t"].nbytes == n * bits // 8
        rust = safetensors.deserialize(data)
        assert rust[0][1]["dtype"] == dtype


def test_truncated_gives_expected_and_actual_bytes() -> None:
    data = base_file()
    err = ours(data[:-5])
    assert isinstance(err, HeaderError) and err.code == "truncated"
    assert err.facts["expected"] == len(data) and err.facts["actual"] == len(data) - 5
    assert isinstance(err.facts["header"], Header)  # the header itself still parsed


def test_lfs_pointer_names_oid_and_size() -> None:
    err = ours(CASES["lfs_pointer"].make())
    assert isinstance(err, HeaderError)
    assert err.facts["oid"] == f"sha256:{LFS_OID}" and err.facts["size"] == 90868376
    assert LFS_OID in err.message


def test_html_is_named() -> None:
    err = ours(CASES["html_page"].make())
    assert isinstance(err, HeaderError) and err.message == "not a safetensors file (looks like HTML)"


def test_names_the_tensor_that_breaks_a_rule() -> None:
    err = ours(CASES["size_mismatch"].make())
    assert isinstance(err, HeaderError) and err.facts["tensor"] == "head.bias" and "head.bias" in err.message


class _CountingReader(io.RawIOBase):
    """A file that records how many bytes were read from it."""

    def __init__(self, data: bytes):
        self._b = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        b = self._b.read(n)
        self.read_bytes += len(b)
        return b


def test_reads_the_header_only_never_the_data(minilm_src: Path) -> None:
    path = minilm_src / "model.safetensors"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        (n,) = struct.unpack("<Q", head)
        f.seek(0)
        counting = _CountingReader(f.read(8 + n))  # only the header exists in this reader
    h = read_header(counting, size)  # type: ignore[arg-type]
    assert counting.read_bytes == 8 + n
    assert h.expected_size == size and len(h.tensors) > 100


def test_huge_length_is_refused_before_reading() -> None:
    counting = _CountingReader(struct.pack("<Q", MAX_HEADER + 1) + b"{" + b" " * 100)
    with pytest.raises(HeaderError):
        read_header(counting, 50 * MAX_HEADER)  # type: ignore[arg-type]
    assert counting.read_bytes <= 8 + 512  # the length, then at most a sniff of the first bytes


# ----------------------------------------------------------------------------- properties
_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12).filter(lambda s: s != "__metadata__")
_dtype = st.sampled_from(sorted(DTYPE_BITS))
_shape = st.lists(st.integers(0, 6), max_size=4)


@st.composite
def _tensors(draw: st.DrawFn) -> dict[str, tuple[str, tuple[int, ...]]]:
    names = draw(st.lists(_names, unique=True, max_size=6))
    out = {}
    for n in names:
        dtype, shape = draw(_dtype), tuple(draw(_shape))
        numel = int(np.prod(shape)) if shape else 1
        if numel * DTYPE_BITS[dtype] % 8:
            shape = (*shape, 2) if DTYPE_BITS[dtype] == 4 else (*shape, 4)
        out[n] = (dtype, shape)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors=_tensors(), meta=st.none() | st.dictionaries(_names, st.text(st.characters(blacklist_categories=("Cs",))), max_size=3),
       data=st.data())
def test_valid_headers_pass_and_round_trip(tensors: dict[str, tuple[str, tuple[int, ...]]], meta: dict[str, str] | None,
                                           data: st.DataObject) -> None:
    order = data.draw(st.permutations(list(tensors)))
    head = build(tensors, meta, order=order)
    total = sum(int(np.prod(s)) * DTYPE_BITS[d] // 8 if s else DTYPE_BITS[d] // 8 for d, s in tensors.values())
    blob = head + b"\0" * total
    h = parse_header_bytes(blob)
    assert {n: (t.dtype, t.shape) for n, t in h.tensors.items()} == tensors
    assert list(h.tensors) == [n for n in order]  # offset order = layout order
    assert h.metadata == (meta or {})
    assert h.expected_size == len(blob)
    # The Rust parser agrees the file is valid and sees the same table.
    rust = {name: (info["dtype"], tuple(info["shape"])) for name, info in safetensors.deserialize(blob)}
    assert rust == tensors


@pytest.fixture(scope="module")
def real_header(minilm_src: Path) -> tuple[bytes, int]:
    path = minilm_src / "model.safetensors"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(0)
        return f.read(8 + n), path.stat().st_size


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutations_of_a_real_header_give_clean_findings_or_pass(real_header: tuple[bytes, int], data: st.DataObject) -> None:
    head, size = real_header
    buf = bytearray(head)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([None, None, None, 0, 1, 4]))
    if cut:
        del buf[-cut:]
    try:
        h = read_header(io.BytesIO(bytes(buf)), size - (cut or 0))
    except HeaderError as e:
        assert e.code in {"header-invalid", "truncated", "lfs-pointer"}
        assert e.message and "\n" not in e.message
    else:
        assert h.expected_size == size - (cut or 0)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutations_of_a_small_real_file_rust_rejects_we_reject(data: st.DataObject) -> None:
    blob = bytearray(base_file())
    (n,) = struct.unpack("<Q", blob[:8])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, 8 + n - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        safetensors.deserialize(bytes(blob))
        rust_ok = True
    except Exception:
        rust_ok = False
    mine = ours(bytes(blob))
    if not rust_ok:
        assert isinstance(mine, HeaderError)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), n=st.one_of(st.none(), st.integers(0, 320)))
def test_arbitrary_bytes_give_a_clean_error_or_a_header(body: bytes, n: int | None) -> None:
    """Any bytes at all, optionally behind a plausible length: HeaderError or a Header."""
    data = body if n is None else struct.pack("<Q", n) + body
    res = ours(data)
    if isinstance(res, HeaderError):
        assert res.code in {"header-invalid", "truncated", "lfs-pointer"} and "\n" not in res.message
    else:
        assert res.expected_size == len(data)
