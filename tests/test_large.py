"""Issue 14: large checkpoints.

* A valid but hostile safetensors header of hundreds of thousands of zero-size tensors is
  checked in memory proportional to the header (the parsed JSON is freed as the tensor
  table is built, and no copy of the table is made).
* ``create`` names the manifest's own cap when the tensor table (or the file table)
  cannot fit in a manifest, instead of failing on the model, and writes nothing.
* The nesting check of the strict JSON loader gives the same answer on its fast path (no
  backslash in the text) as on the general one.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifest import api
from manifest.errors import InputError
from manifest.jsonio import JSONError, _check_depth
from manifest.options import Options

ROOT = Path(__file__).resolve().parent.parent


def write_zero_size_tensors(d: Path, n: int) -> int:
    """A valid safetensors file of ``n`` zero-size F32 tensors (no data); returns the header length."""
    d.mkdir(parents=True, exist_ok=True)
    body = ("{" + ",".join(f'"t{i:07d}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(n)) + "}").encode()
    body += b" " * (-len(body) % 8)
    with open(d / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(body)))
        f.write(body)
    return len(body)


def peak_rss_of(argv: list[str]) -> tuple[int, int]:
    """Exit status and peak RSS in bytes of one child process (its own, via wait4)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss * 1024


def test_hostile_header_of_zero_size_tensors_is_checked_in_bounded_memory(tmp_path: Path) -> None:
    header = write_zero_size_tensors(tmp_path / "m", 300_000)
    code, rss = peak_rss_of([sys.executable, "-m", "manifest", "check", str(tmp_path / "m"), "-q", "--no-cache"])
    assert code == 0
    # The parsed JSON and the tensor table both alive, plus a copy, took ~29x the header;
    # one at a time ~14x. The bound leaves room for the interpreter and allocator slack.
    assert rss < 18 * header + (64 << 20), f"peak RSS {rss / 1e6:.0f} MB for a {header / 1e6:.0f} MB header"


def test_create_names_the_manifest_cap_not_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest.sections import weights

    write_zero_size_tensors(tmp_path / "m", 30_000)
    monkeypatch.setattr(weights, "MAX_DOCUMENT_BYTES", 1 << 20)
    with pytest.raises(InputError) as e:
        api.create(tmp_path / "m", options=Options(use_cache=False))
    assert e.value.code == "manifest-too-large"
    assert "30k tensors in 1 safetensors file; over the 1 MiB cap" in e.value.message
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_create_names_the_cap_for_a_file_table_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    d = tmp_path / "many"
    d.mkdir()
    for i in range(300):
        (d / f"f{i:04d}.txt").write_text(str(i))
    monkeypatch.setattr(api, "MAX_MANIFEST_BYTES", 16 << 10)
    with pytest.raises(InputError) as e:
        api.create(d, options=Options(use_cache=False))
    assert e.value.code == "manifest-too-large"
    assert "300 files; over the 16 KiB cap" in e.value.message
    assert not (d / "manifest.json").exists()
    assert cli("create", d, "-q").code == 0  # under the real cap it is written


nested = st.recursive(st.integers(0, 9) | st.text(st.sampled_from('ab[]{}"\\'), max_size=6),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(st.sampled_from("ab[]{}"), max_size=4), c, max_size=3),
                      max_leaves=40)


STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def general_path(data: bytes, limit: int) -> bool:
    """The loader's general nesting check (strings cut out by a regex that knows escapes)."""
    skeleton = re.sub(STRING, b"", data).translate(None, bytes(b for b in range(256) if b not in b"[]{}"))
    for _ in range(limit):
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    return not skeleton


def outcome(data: bytes, limit: int) -> bool:
    try:
        _check_depth(data, limit)
    except JSONError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(nested, st.integers(0, 6))
def test_nesting_check_fast_path_agrees_with_the_general_one(doc: Any, limit: int) -> None:
    data = json.dumps(doc).encode()
    assert outcome(data, limit) == general_path(data, limit)
    spaced = json.dumps(doc, indent=1).encode()
    assert outcome(spaced, limit) == general_path(data, limit)
