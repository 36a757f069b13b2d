#!/usr/bin/env python3
"""Rejecting a truncated multi-GB checkpoint vs fully verifying it: one run, one ratio.

Builds a safetensors checkpoint of --size bytes of tensor data (a valid header written
by this package's builder, the data a sparse run of zeros, so building takes no time
and no disk), fingerprints it, then times, in the same run:

  1. ``verify`` of the intact checkpoint: every cheap check, then a full digest;
  2. ``verify`` after cutting 1 MiB off the end (an interrupted download): the header
     check reports ``truncated`` and the digest stage is skipped.

Prints both times and their ratio. The stat cache is off, so (1) really hashes. The
temporary directory is removed at the end, whatever happens.

    python scripts/bench_reject.py               # 4 GiB
    python scripts/bench_reject.py --size 10GiB --hash blake3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from manifest import api
from manifest.cli import parse_size
from manifest.formats.safetensors import build
from manifest.options import Options


def make_checkpoint(root: Path, size: int) -> Path:
    """``model.safetensors`` with F16 matrices of 4096 columns totalling ~``size`` bytes."""
    row = 4096 * 2
    rows = max(1, size // row)
    layers = 32
    per = max(1, rows // layers)
    tensors = {f"model.layers.{i}.weight": ("F16", (per, 4096)) for i in range(layers)}
    head = build(tensors, {"format": "pt"})
    path = root / "model.safetensors"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + layers * per * row)  # sparse zeros: no disk, no time
    return path


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default=os.environ.get("BENCH_SIZE", "4GiB"), help="tensor bytes of the checkpoint (default 4GiB)")
    ap.add_argument("--hash", default="sha256", help="digest algorithm of the manifest (default sha256)")
    ap.add_argument("--dir", default=None, help="where to build the temporary checkpoint (default: the system temp dir)")
    args = ap.parse_args()
    size = parse_size(args.size)
    tmp = Path(tempfile.mkdtemp(prefix="bench-reject-", dir=args.dir))
    os.environ["MANIFEST_CACHE_DIR"] = str(tmp / "cache")
    opts = Options(use_cache=False, algorithms=[args.hash])
    try:
        ck = tmp / "ckpt"
        ck.mkdir()
        path = make_checkpoint(ck, size)
        total = path.stat().st_size
        _, t_create = timed(lambda: api.create(ck, options=opts))
        full, t_full = timed(lambda: api.verify(ck, options=Options(use_cache=False, integrity_only=True)))
        if not full or full.stats.get("bytes_hashed") != total:
            print(f"baseline verify did not hash the whole file: {[f.one_line() for f in full.findings]} {full.stats}", file=sys.stderr)
            return 1
        os.truncate(path, total - (1 << 20))
        bad, t_reject = timed(lambda: api.verify(ck, options=Options(use_cache=False, integrity_only=True)))
        if bad or "truncated" not in bad.codes() or "digests" in bad.checked:
            print(f"truncated checkpoint was not rejected before hashing: {bad.codes()} {bad.checked}", file=sys.stderr)
            return 1
        print(f"checkpoint: {total} bytes ({total / 2**30:.2f} GiB) in one safetensors file, digest {args.hash}")
        print(f"create (hash once):        {t_create:8.3f} s")
        print(f"verify, intact (full):     {t_full:8.3f} s  ({full.stats['bytes_hashed']} bytes hashed)")
        print(f"verify, truncated 1 MiB:   {t_reject:8.4f} s  (findings: {', '.join(sorted(set(bad.codes())))}; digests skipped)")
        print(f"ratio reject/full: {t_reject / t_full:.5f}  ({t_full / t_reject:.0f}x faster)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
