"""A named corpus of malformed safetensors files, one per rule, built from a real file
written by ``safetensors`` (the valid base). Each entry is a named generator.

``CASES[name] = Case(make, code, rule, stricter)``: ``make()`` returns the file bytes;
``code`` is the finding code our reader must give (None: the file is valid); ``rule``
is the rule our error must name; ``stricter`` marks rules the Rust parser does not
enforce (we reject, it accepts). Materialize them with
``python tests/safetensors_corpus.py DIR`` to look at them.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save


def base_file() -> bytes:
    """A real file written by safetensors: three tensors, two dtypes, metadata."""
    return save(
        {
            "embed.weight": np.arange(12, dtype=np.float32).reshape(4, 3),
            "head.bias": np.ones(3, dtype=np.float16),
            "position_ids": np.arange(5, dtype=np.int64),
        },
        metadata={"format": "np"},
    )


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def assemble(header: bytes | str | dict[str, Any], body: bytes) -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + body


def mutate(fn: Callable[[dict[str, Any]], Any]) -> Callable[[], bytes]:
    """A generator: the base file with its header edited by ``fn`` (data unchanged)."""

    def make() -> bytes:
        doc, body = split(base_file())
        fn(doc)
        return assemble(doc, body)

    return make


def raw_header(text: str | bytes, body: bytes | None = None) -> Callable[[], bytes]:
    def make() -> bytes:
        return assemble(text, split(base_file())[1] if body is None else body)

    return make


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        d = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return fn


def _del(tensor: str, key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc[tensor].pop(key)


def _dup_key() -> bytes:
    doc, body = split(base_file())
    text = json.dumps(doc, separators=(",", ":"))
    entry = json.dumps({"head.bias": doc["head.bias"]}, separators=(",", ":"))[1:-1]
    return assemble(text[:-1] + "," + entry + "}", body)


def _with_body(fn: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    return lambda: fn(base_file())


def _offsets(name: str, start: int, end: int) -> Callable[[dict[str, Any]], None]:
    return _set((name, "data_offsets"), [start, end])


def _first(doc: dict[str, Any]) -> str:
    return min((k for k in doc if k != "__metadata__"), key=lambda k: doc[k]["data_offsets"][0])


def _gap(doc: dict[str, Any]) -> None:
    for k, v in doc.items():
        if k != "__metadata__":
            v["data_offsets"] = [v["data_offsets"][0] + 2, v["data_offsets"][1] + 2]


def _overlap(doc: dict[str, Any]) -> None:
    names = sorted((k for k in doc if k != "__metadata__"), key=lambda k: doc[k]["data_offsets"][0])
    a, b = doc[names[0]], doc[names[1]]
    b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + (b["data_offsets"][1] - b["data_offsets"][0])]


def _single(dtype: str, shape: list[int], nbytes: int) -> Callable[[], bytes]:
    return lambda: assemble({"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}, b"\0" * nbytes)


LFS_OID = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"
LFS_POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{LFS_OID}\nsize 90868376\n".encode()
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Entry not found</body></html>\n"


@dataclass(frozen=True)
class Case:
    make: Callable[[], bytes]
    code: str | None  # expected finding code; None = valid
    rule: str | None = None
    stricter: bool = False  # we reject what the Rust parser accepts


CASES: dict[str, Case] = {
    # -- valid bases (they must pass, here and in Rust) --------------------------------
    "valid_base": Case(base_file, None),
    "valid_empty_header": Case(lambda: assemble("{}", b""), None),
    "valid_metadata_null": Case(mutate(_set(("__metadata__",), None)), None),
    "valid_zero_size_tensor": Case(_single("F32", [0, 3], 0), None),
    "valid_scalar": Case(_single("F64", [], 8), None),
    "valid_f4_even": Case(_single("F4", [2, 3], 3), None),
    "valid_f6_e2m3": Case(_single("F6_E2M3", [4], 3), None),
    "valid_f6_e3m2": Case(_single("F6_E3M2", [8], 6), None),
    "valid_f8_e8m0": Case(_single("F8_E8M0", [5], 5), None),
    "valid_c64": Case(_single("C64", [2], 16), None),
    "valid_leading_space": Case(lambda: assemble(b" " + json.dumps(split(base_file())[0]).encode(), split(base_file())[1]), None),
    # -- 1. length -----------------------------------------------------------------------
    "empty_file": Case(lambda: b"", "truncated", "header-too-small"),
    "header_too_small": Case(lambda: b"\x10\x00\x00", "truncated", "header-too-small"),
    "header_too_large": Case(lambda: struct.pack("<Q", 100_000_001) + b"{}" + b" " * 30, "header-invalid", "header-too-large"),
    "header_past_end": Case(lambda: base_file()[:40], "truncated", "header-past-end"),
    "header_len_u64_max": Case(lambda: b"\xff" * 8 + b"{}", "header-invalid", "header-too-large"),
    # -- 2. UTF-8 and JSON ---------------------------------------------------------------
    "header_not_utf8": Case(raw_header(b'{"__metadata__":{"a":"\xff\xfe"}}', b""), "header-invalid", "utf8"),
    "header_not_json": Case(raw_header('{"t": {"dtype": "F32",', b""), "header-invalid", "json"),
    "header_trailing_garbage": Case(raw_header("{} x", b""), "header-invalid", "json"),
    "header_bom": Case(raw_header(b"\xef\xbb\xbf{}", b""), "header-invalid", "json"),
    "header_is_array": Case(raw_header("[]", b""), "header-invalid", "json-object"),
    "header_is_number": Case(raw_header("12", b""), "header-invalid", "json-object"),
    "header_nan": Case(raw_header('{"__metadata__": {"a": NaN}}', b""), "header-invalid", "json"),
    "header_infinity_shape": Case(raw_header('{"t": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 0]}}', b""),
                                  "header-invalid", "json"),
    "duplicate_key_identical": Case(_dup_key, "header-invalid", "json", stricter=True),
    "lone_surrogate_name": Case(raw_header('{"\\ud800": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', b""),
                                "header-invalid", "unicode"),
    # -- 3. entries and metadata ------------------------------------------------------------
    "metadata_value_not_string": Case(mutate(_set(("__metadata__", "format"), 1)), "header-invalid", "metadata"),
    "metadata_not_object": Case(mutate(_set(("__metadata__",), "np")), "header-invalid", "metadata"),
    "metadata_nested": Case(mutate(_set(("__metadata__", "x"), {"a": "b"})), "header-invalid", "metadata"),
    "tensor_not_object": Case(mutate(_set(("head.bias",), 7)), "header-invalid", "tensor-entry"),
    "tensor_missing_dtype": Case(mutate(_del("head.bias", "dtype")), "header-invalid", "tensor-entry"),
    "tensor_missing_shape": Case(mutate(_del("head.bias", "shape")), "header-invalid", "tensor-entry"),
    "tensor_missing_offsets": Case(mutate(_del("head.bias", "data_offsets")), "header-invalid", "tensor-entry"),
    "tensor_extra_key": Case(mutate(_set(("head.bias", "name"), "x")), "header-invalid", "tensor-entry", stricter=True),
    "tensor_as_array": Case(mutate(lambda d: d.__setitem__("head.bias", [d["head.bias"]["dtype"], d["head.bias"]["shape"],
                                                                         d["head.bias"]["data_offsets"]])),
                            "header-invalid", "tensor-entry", stricter=True),
    # -- 4. dtypes, dims, offsets as numbers --------------------------------------------------
    "dtype_unknown": Case(mutate(_set(("head.bias", "dtype"), "F128")), "header-invalid", "dtype"),
    "dtype_lowercase": Case(mutate(_set(("head.bias", "dtype"), "f16")), "header-invalid", "dtype"),
    "dtype_torch_name": Case(mutate(_set(("head.bias", "dtype"), "float16")), "header-invalid", "dtype"),
    "dtype_not_string": Case(mutate(_set(("head.bias", "dtype"), 16)), "header-invalid", "dtype"),
    "shape_negative": Case(mutate(_set(("head.bias", "shape"), [-3])), "header-invalid", "shape"),
    "shape_float": Case(mutate(_set(("head.bias", "shape"), [3.0])), "header-invalid", "shape"),
    "shape_bool": Case(mutate(_set(("head.bias", "shape"), [True, 3])), "header-invalid", "shape"),
    "shape_string": Case(mutate(_set(("head.bias", "shape"), "3")), "header-invalid", "shape"),
    "shape_dim_2_64": Case(mutate(_set(("head.bias", "shape"), [2**64])), "header-invalid", "shape"),
    "offsets_three": Case(mutate(_set(("head.bias", "data_offsets"), [0, 6, 6])), "header-invalid", "offsets"),
    "offsets_negative": Case(mutate(_set(("head.bias", "data_offsets"), [-6, 0])), "header-invalid", "offsets"),
    "offsets_2_64": Case(mutate(_set(("head.bias", "data_offsets"), [0, 2**64])), "header-invalid", "offsets"),
    # -- 5. contiguity ------------------------------------------------------------------------
    "offsets_gap": Case(mutate(_gap), "header-invalid", "offsets-gap"),
    "offsets_overlap": Case(mutate(_overlap), "header-invalid", "offsets-overlap"),
    "offsets_reversed": Case(lambda: assemble({"t": {"dtype": "U8", "shape": [4], "data_offsets": [4, 0]}}, b"\0" * 4),
                             "header-invalid", "offsets"),
    # -- 6. sizes -------------------------------------------------------------------------------
    "size_mismatch": Case(mutate(_set(("head.bias", "shape"), [2])), "header-invalid", "size"),
    "size_dtype_swapped": Case(mutate(_set(("head.bias", "dtype"), "F32")), "header-invalid", "size"),
    "overflow_shape_product": Case(_single("F32", [2**32, 2**32, 2], 8), "header-invalid", "overflow"),
    "overflow_bits": Case(_single("F64", [2**61], 8), "header-invalid", "overflow"),
    "subbyte_f4_odd": Case(_single("F4", [3], 2), "header-invalid", "sub-byte"),
    "subbyte_f6_odd": Case(_single("F6_E3M2", [3], 3), "header-invalid", "sub-byte"),
    "subbyte_f4_wrong_span": Case(_single("F4", [4], 4), "header-invalid", "size"),
    # -- 7. coverage ------------------------------------------------------------------------------
    "truncated_data": Case(_with_body(lambda b: b[:-5]), "truncated", "coverage"),
    "truncated_one_byte": Case(_with_body(lambda b: b[:-1]), "truncated", "coverage"),
    "trailing_data": Case(_with_body(lambda b: b + b"\0" * 8), "truncated", "coverage"),
    # -- not safetensors at all -------------------------------------------------------------------
    "lfs_pointer": Case(lambda: LFS_POINTER, "lfs-pointer", "lfs-pointer"),
    "html_page": Case(lambda: HTML_PAGE, "header-invalid", "not-safetensors"),
    "torch_zip": Case(lambda: b"PK\x03\x04" + b"\0" * 60, "header-invalid", "not-safetensors"),
    "pickle_file": Case(lambda: b"\x80\x02}q\x00." + b"\0" * 16, "header-invalid", "not-safetensors"),
    "all_zeros": Case(lambda: b"\0" * 4096, "header-invalid", "not-safetensors"),
    "json_text": Case(lambda: b'{"error": "Repository not found"}\n', "header-invalid", "not-safetensors"),
}


def materialize(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        (out / f"{name}.safetensors").write_bytes(case.make())


if __name__ == "__main__":  # pragma: no cover
    materialize(Path(sys.argv[1] if len(sys.argv) > 1 else "safetensors-corpus"))
