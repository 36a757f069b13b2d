#!/usr/bin/env python3
"""Benchmark ``manifest`` against the practical limits of this machine, in one run.

Generates a synthetic sharded Llama-style checkpoint (about 2 GB by default: real
safetensors headers, an index, a config) in a temporary directory it removes, warms the
page cache, then times in interleaved rounds (so a noisy neighbour hits every contender
alike) and prints medians, throughput and ratios:

- ``manifest create`` (sha256), ``manifest verify`` (sha256 and blake3, ``--no-cache``),
  a re-verify through the stat cache, and the rejection of a truncated copy;
- ``sha256sum`` (one process, and ``xargs -P2``), a plain two-thread hashlib loop (the
  practical SHA-256 limit), ``model_signing`` hashing when installed, ``b3sum`` when
  installed;
- start-up: ``python -c pass``, ``manifest --help``;
- the peak RSS of every ``manifest`` run (``wait4``).

Usage: ``python scripts/bench.py [--size 2GB] [--runs 3] [--shard-size 512MiB]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}

HASHLIB_LOOP = r"""
import hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
def h(p):
    d = hashlib.sha256(); b = bytearray(1 << 20); v = memoryview(b)
    with open(p, "rb", buffering=0) as f:
        while n := f.readinto(b):
            d.update(v[:n])
    return d.hexdigest()
files = sorted(sys.argv[1:], key=os.path.getsize, reverse=True)
with ThreadPoolExecutor(2) as ex:
    list(ex.map(h, files))
"""

MODEL_SIGNING = r"""
import sys
from model_signing import hashing
hashing.Config().use_file_serialization(hashing_algorithm=sys.argv[2]).hash(sys.argv[1])
"""


def parse_size(text: str) -> int:
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(float(num) * UNITS[t[len(num):]])


# ----------------------------------------------------------------------------- checkpoint
def _shape_plan(target: int) -> tuple[dict[str, int], list[tuple[str, list[int]]]]:
    """A Llama-style config and its tensors (bf16) adding up to about ``target`` bytes."""
    for hidden in (2048, 1024, 512, 256):
        inter, vocab, heads, kv = hidden * 11 // 4, 32000, max(hidden // 128, 2), max(hidden // 512, 1)
        head_dim = hidden // heads
        per_layer = 2 * (2 * hidden * hidden + 2 * kv * head_dim * hidden + 3 * inter * hidden + 2 * hidden)
        embed = 2 * (2 * vocab * hidden) + 2 * hidden
        layers = round((target - embed) / per_layer)
        if layers >= 2:
            break
    else:
        layers = 2
    cfg = {"hidden_size": hidden, "intermediate_size": inter, "vocab_size": vocab, "num_attention_heads": heads,
           "num_key_value_heads": kv, "num_hidden_layers": layers}
    tensors: list[tuple[str, list[int]]] = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors += [
            (p + "self_attn.q_proj.weight", [hidden, hidden]), (p + "self_attn.k_proj.weight", [kv * head_dim, hidden]),
            (p + "self_attn.v_proj.weight", [kv * head_dim, hidden]), (p + "self_attn.o_proj.weight", [hidden, hidden]),
            (p + "mlp.gate_proj.weight", [inter, hidden]), (p + "mlp.up_proj.weight", [inter, hidden]),
            (p + "mlp.down_proj.weight", [hidden, inter]),
            (p + "input_layernorm.weight", [hidden]), (p + "post_attention_layernorm.weight", [hidden]),
        ]
    tensors += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    return cfg, tensors


def _nbytes(shape: list[int]) -> int:
    n = 2
    for s in shape:
        n *= s
    return n


def _write_shard(path: Path, tensors: list[tuple[str, list[int]]], block: bytes) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape in tensors:
        n = _nbytes(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        left, i = off, 0
        while left:
            n = min(left, len(block))
            f.write(block[:n] if i % 2 == 0 else block[n - 1::-1][:n])  # vary the content a little
            left -= n
            i += 1


def make_checkpoint(root: Path, target: int, shard_size: int) -> int:
    """Write the checkpoint; return its total size in bytes."""
    cfg, tensors = _shape_plan(target)
    shards: list[list[tuple[str, list[int]]]] = [[]]
    size = 0
    for t in tensors:
        n = _nbytes(t[1])
        if shards[-1] and size + n > shard_size:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += n
    block = os.urandom(16 << 20)
    weight_map: dict[str, str] = {}
    for i, group in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _write_shard(root / name, group, block)
        weight_map.update({t[0]: name for t in group})
    total_tensor_bytes = sum(_nbytes(s) for _, s in tensors)
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total_tensor_bytes}, "weight_map": weight_map}, indent=2))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.40.0", **cfg,
    }
    (root / "config.json").write_text(json.dumps(config, indent=2))
    (root / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file())


# ----------------------------------------------------------------------------- timing
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)
    inproc: list[float] = field(default_factory=list)  # the report's own stats.seconds (no interpreter start)
    rss_kb: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def run(cmd: list[str] | str, env: dict[str, str], expect: int | None = 0) -> tuple[float, int | None, str]:
    """Wall time, peak RSS in KiB (GNU time's %M: the process's own peak, not inherited
    from this big parent through fork) and stdout of one child process."""
    with tempfile.NamedTemporaryFile("r") as tf:
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if GNU_TIME:
            argv = [GNU_TIME, "-f", "%M", "-o", tf.name, *argv]
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, capture_output=True, check=False)
        dt = time.perf_counter() - t0
        rss = None
        if GNU_TIME:
            lines = Path(tf.name).read_text().split()
            rss = int(lines[-1]) if lines and lines[-1].isdigit() else None
    if expect is not None and p.returncode != expect:
        raise SystemExit(f"{cmd!r} exited {p.returncode}, expected {expect}:\n{p.stderr.decode(errors='replace')[-2000:]}")
    return dt, rss, p.stdout.decode(errors="replace")


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    import ssl

    return (f"nproc={os.cpu_count()}, CPU: {model}{mem}; Python {platform.python_version()} ({ssl.OPENSSL_VERSION}); "
            f"{platform.system()} {platform.release()}; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2GB", help="checkpoint size (default 2GB)")
    ap.add_argument("--shard-size", default="512MiB", help="maximum shard size (default 512MiB)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--dir", default=None, help="parent directory for the temporary checkpoint")
    ap.add_argument("--no-model-signing", action="store_true", help="skip model_signing even if installed")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()

    py = sys.executable
    mf = [py, "-m", "manifest"]
    tmp = Path(tempfile.mkdtemp(prefix="manifest-bench-", dir=args.dir))
    try:
        ck = tmp / "ckpt"
        ck.mkdir()
        t0 = time.perf_counter()
        total = make_checkpoint(ck, parse_size(args.size), parse_size(args.shard_size))
        files = sorted(str(p) for p in ck.iterdir() if p.is_file())
        print(f"machine: {machine()}")
        print(f"checkpoint: {len(files)} files, {total / 1e9:.2f} GB ({sum(f.endswith('.safetensors') for f in files)} shards), "
              f"written in {time.perf_counter() - t0:.1f} s to {tmp}")
        # MANIFEST_CACHE_WINDOW_MS: the files were just written; a 2 s racy window (instead of the
        # kernel's writeback delay, ~50 s) lets the cached path be measured without waiting a minute
        env = dict(os.environ, MANIFEST_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
                   MANIFEST_CACHE_WINDOW_MS="2000")
        m_sha, m_b3 = tmp / "m-sha256.json", tmp / "m-blake3.json"
        # Correctness first: both manifests verify, the truncated copy fails.
        run([*mf, "create", str(ck), "-q", "--no-cache", "-o", str(m_sha)], env)
        run([*mf, "create", str(ck), "-q", "--no-cache", "--hash", "blake3", "-o", str(m_b3)], env)
        run([*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--no-cache"], env)
        bad = tmp / "truncated"
        bad.mkdir()
        shards = sorted(f for f in files if f.endswith(".safetensors"))
        for f in files:  # hard links for all but one shard, which is a real, truncated copy
            dst = bad / Path(f).name
            if f == shards[-1]:
                shutil.copyfile(f, dst)
                os.truncate(dst, os.path.getsize(f) - (1 << 20))
            else:
                os.link(f, dst)
        run([*mf, "verify", str(bad), "-m", str(m_sha), "-q", "--no-cache"], env, expect=1)
        time.sleep(2.1)  # past the (injected) racy window: the stat cache trusts the files
        run([*mf, "verify", str(ck), "-m", str(m_sha), "-q"], env)  # fill the stat cache
        run(["cat", *files], env)  # warm the page cache
        xargs = "printf '%s\\0' " + " ".join(f"'{f}'" for f in files) + " | xargs -0 -P2 -n1 sha256sum"
        cases: list[tuple[str, Callable[[], list[str] | str], int | None]] = [
            ("python -c pass", lambda: [py, "-c", "pass"], 0),
            ("manifest --help", lambda: [*mf, "--help"], 0),
            ("manifest create (sha256)", lambda: [*mf, "create", str(ck), "-q", "--no-cache", "-o", str(tmp / "m-new.json")], 0),
            ("manifest verify sha256", lambda: [*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--no-cache", "--json"], 0),
            ("manifest verify blake3", lambda: [*mf, "verify", str(ck), "-m", str(m_b3), "-q", "--no-cache", "--json"], 0),
            ("manifest verify (stat cache)", lambda: [*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--json"], 0),
            ("manifest verify truncated copy", lambda: [*mf, "verify", str(bad), "-m", str(m_sha), "-q", "--no-cache", "--json"], 1),
            ("sha256sum (1 process)", lambda: ["sha256sum", *files], 0),
            ("sha256sum (xargs -P2)", lambda: xargs, 0),
            ("hashlib sha256, 2 threads", lambda: [py, "-c", HASHLIB_LOOP, *files], 0),
        ]
        try:
            if args.no_model_signing:
                raise ImportError
            import model_signing  # noqa: F401

            cases.append(("model_signing sha256", lambda: [py, "-c", MODEL_SIGNING, str(ck), "sha256"], 0))
            cases.append(("model_signing blake3", lambda: [py, "-c", MODEL_SIGNING, str(ck), "blake3"], 0))
        except ImportError:
            print("model_signing: not installed (pip install model-signing==1.1.1 pyOpenSSL), skipped")
        if shutil.which("b3sum"):
            cases.append(("b3sum", lambda: ["b3sum", *files], 0))
        results = {name: Result(name) for name, _, _ in cases}
        for r in range(args.runs):
            for name, cmd, expect in cases:
                dt, rss, out = run(cmd(), env, expect)
                res = results[name]
                res.times.append(dt)
                if rss is not None:
                    res.rss_kb.append(rss)
                if out.startswith("{"):
                    res.inproc.append(json.loads(out)["stats"]["seconds"])
            print(f"round {r + 1}/{args.runs} done (load average {os.getloadavg()[0]:.2f})", flush=True)
        report(results, total, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[str, Result], total: int, args: argparse.Namespace) -> None:
    base = results["hashlib sha256, 2 threads"].median
    print(f"\n{'':34} {'median s':>9} {'min s':>7} {'in-proc s':>9} {'GB/s':>6} {'x 2-thr':>7} {'peak RSS':>9}")
    for r in results.values():
        hashing = not r.name.startswith(("python", "manifest --help", "manifest verify (stat", "manifest verify trunc"))
        rate = f"{total / r.median / 1e9:6.2f}" if hashing else f"{'':6}"
        ratio = f"{base / r.median:7.2f}" if hashing else f"{'':7}"
        inproc = f"{statistics.median(r.inproc):9.3f}" if r.inproc else f"{'':9}"
        rss = f"{max(r.rss_kb) / 1024:7.1f}MB" if r.rss_kb else ""
        print(f"{r.name:34} {r.median:9.3f} {min(r.times):7.3f} {inproc} {rate} {ratio} {rss:>9}")
    m = {k: v.median for k, v in results.items()}
    ip = {k: statistics.median(v.inproc) for k, v in results.items() if v.inproc}
    rows: list[tuple[str, bool, str]] = []

    def at_least(name: str, value: float, floor: float) -> None:
        rows.append((name, value >= floor, f"{value:.2f}x"))

    # Throughput: bytes per second once each program is running, i.e. its wall time minus
    # its own start-up (verify: `manifest --help`; the loop: `python -c pass`). The
    # whole-command wall ratio, start-up included, is shown beside it.
    start, floor = m["manifest --help"], m["python -c pass"]
    tput = (base - floor) / (m["manifest verify sha256"] - start)
    at_least("verify sha256 throughput >= 0.95x the two-thread hashlib loop", tput, 0.95)
    inproc_ratio = base / ip["manifest verify sha256"]
    rows[-1] = (*rows[-1][:2], rows[-1][2] + f" (each minus its own start-up); whole command, wall: "
                f"{base / m['manifest verify sha256']:.2f}x; the loop's wall / verify's in-process seconds: {inproc_ratio:.2f}x")
    if "model_signing sha256" in m:
        at_least("verify sha256 >= 1.0x model_signing sha256", m["model_signing sha256"] / m["manifest verify sha256"], 1.0)
    at_least("verify blake3 >= 2x verify sha256", m["manifest verify sha256"] / m["manifest verify blake3"], 2.0)
    frac_wall = m["manifest verify truncated copy"] / m["manifest verify sha256"]
    frac_ip = ip["manifest verify truncated copy"] / ip["manifest verify sha256"]
    rows.append(("truncated copy rejected in < 5% of a full verify (in-process)", frac_ip < 0.05,
                 f"{frac_ip * 100:.1f}% in-process, {frac_wall * 100:.1f}% wall incl. interpreter start"))
    beyond = m["manifest verify (stat cache)"] - start
    rows.append(("stat-cache re-verify < 100 ms beyond start-up", beyond < 0.100,
                 f"{beyond * 1000:.0f} ms beyond `manifest --help`; {ip['manifest verify (stat cache)'] * 1000:.0f} ms in-process"))
    rows.append(("start-up (`manifest --help`) < 150 ms", start < 0.150,
                 f"{start * 1000:.0f} ms (python -c pass: {m['python -c pass'] * 1000:.0f} ms)"))
    rss = [max(r.rss_kb) for k, r in results.items() if k.startswith("manifest") and r.rss_kb]
    if rss:
        rows.append(("peak RSS of every manifest run < 100 MB", max(rss) / 1024 < 100, f"{max(rss) / 1024:.1f} MB"))
    print(f"\ntargets (medians of {args.runs} interleaved rounds):")
    for name, ok, shown in rows:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {shown}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"machine": machine(), "total_bytes": total, "runs": args.runs,
             "results": {k: {"times": v.times, "median": v.median, "in_process": v.inproc, "peak_rss_kb": v.rss_kb}
                         for k, v in results.items()}},
            indent=2))


if __name__ == "__main__":
    main()
