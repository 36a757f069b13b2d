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

Then the large-model probes (issue 14's table; ``--skip-large`` leaves them out), each
against its own baseline in the same interleaved rounds:

- one big file (``--big-size``, 4 GiB): ``verify`` (chunk digests, every core) against a
  one-core hashlib loop over the same file; ``create`` (whole-file and chunk digests in one
  read) against the same ``create`` without chunk digests;
- a 100k-tensor header: ``create`` and ``verify`` against ``python`` merely parsing the
  header (interpreter start included in both);
- 10,000 files of 4 KiB: ``verify --no-cache`` against a one-thread read+sha256 loop;
- a valid 1.4M-tensor header of zero-size tensors: ``check``'s time and peak RSS.

``--chunk-curve`` measures chunk sizes from 1 to 256 MiB on the big file instead: verify
throughput, create time, and the size of the chunk list per 100 GB of weights.

Usage: ``python scripts/bench.py [--size 2GB] [--runs 3] [--shard-size 256MiB] [--skip-large] [--chunk-curve]``.
"""

from __future__ import annotations

import argparse
import compileall
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

# What `create` must do at least with chunk digests: every byte through two SHA-256s (the
# whole file's and its chunk's), one read per file, one thread per core, files in parallel.
TWO_DIGEST_LOOP = r"""
import hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
CHUNK = 64 << 20
def h(p):
    d = hashlib.sha256(); c = hashlib.sha256(); b = bytearray(1 << 20); v = memoryview(b); filled = 0
    with open(p, "rb", buffering=0) as f:
        while n := f.readinto(b):
            d.update(v[:n]); c.update(v[:n]); filled += n
            if filled >= CHUNK:
                c.hexdigest(); c = hashlib.sha256(); filled = 0
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
    ap.add_argument("--shard-size", default="256MiB", help="maximum shard size (default 256MiB: 2 GB in 8 shards)")
    ap.add_argument("--skip-large", action="store_true", help="leave out the large-model probes")
    ap.add_argument("--big-size", default="4GiB", help="the one big file of the large-model probes (default 4GiB)")
    ap.add_argument("--hostile-tensors", type=int, default=1_400_000, help="zero-size tensors of the hostile header (default 1.4M)")
    ap.add_argument("--chunk-curve", action="store_true", help="only measure chunk sizes (1-256 MiB) on the big file")
    ap.add_argument("--runs", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--dir", default=None, help="parent directory for the temporary checkpoint (on tmpfs the stat cache trusts nothing)")
    ap.add_argument("--no-model-signing", action="store_true", help="skip model_signing even if installed")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()

    # An installed package starts from its bytecode; a checkout run under PYTHONDONTWRITEBYTECODE
    # (set on some dev machines) would compile every module on every start, about 70 ms here.
    compileall.compile_dir(str(ROOT / "manifest"), quiet=1)
    py = sys.executable
    mf = [py, "-m", "manifest"]
    tmp = Path(tempfile.mkdtemp(prefix="manifest-bench-", dir=args.dir))
    if args.chunk_curve:
        try:
            print(f"machine: {machine()}")
            chunk_curve(tmp, args)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        ck = tmp / "ckpt"
        ck.mkdir()
        t0 = time.perf_counter()
        total = make_checkpoint(ck, parse_size(args.size), parse_size(args.shard_size))
        files = sorted(str(p) for p in ck.iterdir() if p.is_file())
        args.shards = sum(f.endswith(".safetensors") for f in files)
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
        run([*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--no-cache", "--no-signature"], env)
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
        run([*mf, "verify", str(bad), "-m", str(m_sha), "-q", "--no-cache", "--no-signature"], env, expect=1)
        time.sleep(2.1)  # past the (injected) racy window: the stat cache trusts the files
        run([*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--no-signature"], env)  # fill the stat cache
        run(["cat", *files], env)  # warm the page cache
        xargs = "printf '%s\\0' " + " ".join(f"'{f}'" for f in files) + " | xargs -0 -P2 -n1 sha256sum"
        cases: list[tuple[str, Callable[[], list[str] | str], int | None]] = [
            ("python -c pass", lambda: [py, "-c", "pass"], 0),
            ("manifest --help", lambda: [*mf, "--help"], 0),
            ("manifest create (sha256)", lambda: [*mf, "create", str(ck), "-q", "--no-cache", "-o", str(tmp / "m-new.json")], 0),
            ("manifest verify sha256", lambda: [*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--no-cache", "--no-signature", "--json"], 0),
            ("manifest verify blake3", lambda: [*mf, "verify", str(ck), "-m", str(m_b3), "-q", "--no-cache", "--no-signature", "--json"], 0),
            ("manifest verify (stat cache)", lambda: [*mf, "verify", str(ck), "-m", str(m_sha), "-q", "--no-signature", "--json"], 0),
            ("manifest verify truncated copy", lambda: [*mf, "verify", str(bad), "-m", str(m_sha), "-q", "--no-cache", "--no-signature", "--json"], 1),
            ("sha256sum (1 process)", lambda: ["sha256sum", *files], 0),
            ("sha256sum (xargs -P2)", lambda: xargs, 0),
            ("hashlib sha256, 2 threads", lambda: [py, "-c", HASHLIB_LOOP, *files], 0),
            ("hashlib 2 digests a byte, 2 threads", lambda: [py, "-c", TWO_DIGEST_LOOP, *files], 0),
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
    if not args.skip_large:
        tmp = Path(tempfile.mkdtemp(prefix="manifest-bench-large-", dir=args.dir))
        try:
            large(tmp, args)
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
        shown = f"{value:.2f}x"
        if (value >= floor) != (round(value, 2) >= floor):  # two decimals would hide which side of the floor it is
            shown = f"{value:.4f}x"
        rows.append((name, value >= floor, shown))

    # Throughput: bytes per second once each program is running, i.e. its wall time minus
    # its own start-up (verify: `manifest --help`; the loop: `python -c pass`). The
    # whole-command wall ratio, start-up included, is shown beside it.
    start, floor = m["manifest --help"], m["python -c pass"]
    tput = (base - floor) / (m["manifest verify sha256"] - start)
    per_round = [(b - f) / (v - st) for b, f, v, st in zip(results["hashlib sha256, 2 threads"].times, results["python -c pass"].times,
                                                          results["manifest verify sha256"].times, results["manifest --help"].times, strict=True)]
    rows.append((f"{total / 1e9:.1f} GB in {args.shards} shards: verify sha256 throughput >= 0.95x the two-thread limit, every round",
                 min(per_round) >= 0.95, " ".join(f"{x:.2f}x" for x in per_round) + " (each minus its own start-up)"))
    at_least("verify sha256 throughput >= 0.95x the two-thread hashlib loop", tput, 0.95)
    inproc_ratio = base / ip["manifest verify sha256"]
    rows[-1] = (*rows[-1][:2], rows[-1][2] + f" (each minus its own start-up); whole command, wall: "
                f"{base / m['manifest verify sha256']:.2f}x; the loop's wall / verify's in-process seconds: {inproc_ratio:.2f}x")
    # create: the issue asks for no slower than before chunk digests, i.e. than the
    # one-read sha256 loop (each file once, files in parallel: the two-thread loop above).
    # With every core busy that cannot hold (each byte now goes through two SHA-256s);
    # the two-digest loop is what create can reach at best.
    create_r = [(b - f) / (c - st) for b, f, c, st in zip(results["hashlib sha256, 2 threads"].times, results["python -c pass"].times,
                                                         results["manifest create (sha256)"].times, results["manifest --help"].times, strict=True)]
    rows.append(("create throughput >= 1.0x the pre-chunk one-read sha256 loop (2 threads), every round", min(create_r) >= 1.0,
                 " ".join(f"{x:.2f}x" for x in create_r) + " (each minus its own start-up)"))
    two = m["hashlib 2 digests a byte, 2 threads"]
    at_least("create throughput >= 0.95x the two-digest loop (the least work with chunk digests)",
             (two - floor) / (m["manifest create (sha256)"] - start), 0.95)
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


# ----------------------------------------------------------------------------- large models (issue 14)
ONE_CORE_LOOP = r"""
import hashlib, sys
d = hashlib.sha256(); b = bytearray(1 << 20); v = memoryview(b)
with open(sys.argv[1], "rb", buffering=0) as f:
    while n := f.readinto(b):
        d.update(v[:n])
"""

PARSE_HEADER = r"""
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    json.loads(f.read(n))
"""

READ_HASH_LOOP = r"""
import hashlib, os, sys
for dp, dn, fn in os.walk(sys.argv[1]):
    for f in fn:
        if f != "manifest.json":
            with open(os.path.join(dp, f), "rb") as fh:
                hashlib.sha256(fh.read()).hexdigest()
"""

CREATE_WITH_CHUNKS = r"""
import sys
from manifest import api
from manifest.options import Options
api.create(sys.argv[1], output=sys.argv[2], options=Options(use_cache=False, chunk_size=int(sys.argv[3])))
"""


def _header(entries: list[tuple[str, str, list[int], int]]) -> bytes:
    """The 8-byte length and JSON header of (name, dtype, shape, nbytes) laid out in order."""
    parts, off = [], 0
    for name, dtype, shape, n in entries:
        parts.append(f'"{name}":{{"dtype":"{dtype}","shape":{json.dumps(shape, separators=(",", ":"))},"data_offsets":[{off},{off + n}]}}')
        off += n
    raw = ("{" + ",".join(parts) + "}").encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _config(d: Path) -> None:
    (d / "config.json").write_text('{"model_type": "mamba"}\n')  # weights need a config; mamba: no tensor-name rules to trip


def make_big(d: Path, size: int) -> Path:
    """One safetensors file of about ``size`` bytes (64 BF16 tensors), varied content."""
    d.mkdir()
    per = (size - (1 << 20)) // 64 // 8192 * 8192
    f = d / "model.safetensors"
    block = os.urandom(16 << 20)
    with open(f, "wb") as out:
        out.write(_header([(f"model.layers.{i}.mlp.down_proj.weight", "BF16", [per // 8192, 4096], per) for i in range(64)]))
        left, i = per * 64, 0
        while left:
            n = min(left, len(block))
            out.write(block[:n] if i % 2 == 0 else block[n - 1::-1][:n])
            left -= n
            i += 1
    _config(d)
    return f


def make_moe(d: Path, n: int) -> Path:
    d.mkdir()
    f = d / "model.safetensors"
    with open(f, "wb") as out:
        out.write(_header([(f"model.layers.{i // 1000}.mlp.experts.{i % 1000}.down_proj.weight", "F32", [2, 4], 32) for i in range(n)]))
        out.write(b"\0" * (32 * n))
    _config(d)
    return f


def make_many(d: Path, n: int, size: int) -> None:
    for i in range(n):
        sub = d / f"d{i // 500:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.dat").write_bytes(os.urandom(size))


def make_hostile(d: Path, n: int) -> int:
    d.mkdir()
    with open(d / "model.safetensors", "wb") as out:
        out.write(_header([(f"t{i:07d}", "F32", [0], 0) for i in range(n)]))
    _config(d)
    return (d / "model.safetensors").stat().st_size


def _rounds(cases: list[tuple[str, Callable[[], list[str] | str], int | None]], env: dict[str, str], runs: int) -> dict[str, Result]:
    results = {name: Result(name) for name, _, _ in cases}
    for r in range(runs):
        for name, cmd, expect in cases:
            dt, rss, _ = run(cmd(), env, expect)
            results[name].times.append(dt)
            if rss is not None:
                results[name].rss_kb.append(rss)
        print(f"large probes: round {r + 1}/{runs} done (load average {os.getloadavg()[0]:.2f})", flush=True)
    return results


def large(tmp: Path, args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from manifest.digest import CHUNK_SIZE

    py = sys.executable
    mf = [py, "-m", "manifest"]
    env = dict(os.environ, MANIFEST_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    big = make_big(tmp / "big", parse_size(args.big_size))
    moe = make_moe(tmp / "moe", 100_000)
    make_many(tmp / "many", 10_000, 4096)
    hostile = make_hostile(tmp / "hostile", args.hostile_tensors)
    print(f"\nlarge-model probes: {big.stat().st_size / 2**30:.2f} GiB file, 100k-tensor header "
          f"({(moe.stat().st_size - 3_200_000) / 1e6:.0f} MB), 10k x 4 KiB files, {args.hostile_tensors / 1e6:.1f}M-tensor header "
          f"({hostile / 1e6:.0f} MB); written in {time.perf_counter() - t0:.1f} s to {tmp}")
    m_moe = tmp / "moe.json"
    run([*mf, "create", str(tmp / "big"), "-q", "--no-cache"], env)
    run([*mf, "create", str(tmp / "moe"), "-q", "--no-cache", "-o", str(m_moe)], env)
    run([*mf, "create", str(tmp / "many"), "-q", "--no-cache"], env)
    cores = os.cpu_count() or 1
    verify = [*mf, "verify", "-q", "--no-cache", "--no-signature"]
    cases: list[tuple[str, Callable[[], list[str] | str], int | None]] = [
        ("one-core hashlib loop (big file)", lambda: [py, "-c", ONE_CORE_LOOP, str(big)], 0),
        ("manifest verify (big file)", lambda: [*verify, str(tmp / "big")], 0),
        # the same create with and without chunk digests (a chunk size no file reaches: the pre-chunk create)
        ("manifest create (big file)", lambda: [py, "-c", CREATE_WITH_CHUNKS, str(tmp / "big"), str(tmp / "big-new.json"), str(CHUNK_SIZE)], 0),
        ("manifest create, no chunk digests (big file)", lambda: [py, "-c", CREATE_WITH_CHUNKS, str(tmp / "big"), str(tmp / "big-nochunks.json"),
                                                                  str(1 << 62)], 0),
        ("python parses the 100k header", lambda: [py, "-c", PARSE_HEADER, str(moe)], 0),
        ("manifest create (100k tensors)", lambda: [*mf, "create", str(tmp / "moe"), "-q", "--no-cache", "-o", str(tmp / "moe-new.json")], 0),
        ("manifest verify (100k tensors)", lambda: [*verify, str(tmp / "moe"), "-m", str(m_moe)], 0),
        ("one-thread read+hash loop (10k files)", lambda: [py, "-c", READ_HASH_LOOP, str(tmp / "many")], 0),
        ("manifest verify --no-cache (10k files)", lambda: [*verify, str(tmp / "many")], 0),
        ("manifest check (hostile header)", lambda: [*mf, "check", str(tmp / "hostile"), "-q", "--no-cache"], 0),
    ]
    res = _rounds(cases, env, args.runs)
    print(f"\n{'':42} {'median s':>9} {'min s':>7} {'peak RSS':>9}   runs")
    for r in res.values():
        rss = f"{max(r.rss_kb) / 1024:7.1f}MB" if r.rss_kb else ""
        print(f"{r.name:42} {r.median:9.3f} {min(r.times):7.3f} {rss:>9}   " + " ".join(f"{t:.2f}" for t in r.times))

    def ratios(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(res[a].times, res[b].times, strict=True)]

    m = {k: v.median for k, v in res.items()}
    big_r = ratios("one-core hashlib loop (big file)", "manifest verify (big file)")
    big_create_r = ratios("manifest create, no chunk digests (big file)", "manifest create (big file)")
    create_r = ratios("manifest create (100k tensors)", "python parses the 100k header")
    verify_r = ratios("manifest verify (100k tensors)", "python parses the 100k header")
    many_r = ratios("manifest verify --no-cache (10k files)", "one-thread read+hash loop (10k files)")
    hostile_rss = max(res["manifest check (hostile header)"].rss_kb or [0]) * 1024
    rows = [
        (f"one {big.stat().st_size / 2**30:.0f} GiB file: verify >= 0.8 x cores ({0.8 * cores:.1f}x) a one-core hashlib loop",
         statistics.median(big_r) >= 0.8 * cores, big_r),
        (f"one {big.stat().st_size / 2**30:.0f} GiB file: create (whole-file and chunk digests, one read) >= 0.95x the same create "
         "without chunk digests (the pre-chunk create)", statistics.median(big_create_r) >= 0.95, big_create_r),
        ("100k-tensor header: create <= 4x python parsing the header", statistics.median(create_r) <= 4, create_r),
        ("100k-tensor header: verify <= 3x python parsing the header", statistics.median(verify_r) <= 3, verify_r),
        ("10k x 4 KiB files: verify --no-cache <= 2.5x a one-thread read+hash loop", statistics.median(many_r) <= 2.5, many_r),
    ]
    print("\ntargets (ratios of the same round; median first, then every round):")
    for name, ok, rs in rows:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {statistics.median(rs):.2f}x  [" + " ".join(f"{x:.2f}" for x in rs) + "]")
    t = m["manifest check (hostile header)"]
    ok = t <= 10 and hostile_rss <= 1.5e9
    print(f"  {'PASS' if ok else 'MISS'}  {args.hostile_tensors / 1e6:.1f}M-tensor header: check <= 10 s and <= 1.5 GB: "
          f"{t:.1f} s, {hostile_rss / 1e9:.2f} GB peak RSS")


def chunk_curve(tmp: Path, args: argparse.Namespace) -> None:
    """Verify throughput and create time against the chunk size, on the one big file."""
    py = sys.executable
    mf = [py, "-m", "manifest"]
    env = dict(os.environ, MANIFEST_CACHE_DIR=str(tmp / "cache"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    big = make_big(tmp / "big", parse_size(args.big_size))
    size = big.stat().st_size
    sizes = [1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 32]  # 4 GiB: no chunks (whole-file digest)
    cases: list[tuple[str, Callable[[], list[str] | str], int | None]] = [("one-core hashlib loop", lambda: [py, "-c", ONE_CORE_LOOP, str(big)], 0)]
    for cs in sizes:
        out = tmp / f"m-{cs}.json"
        cases.append((f"create {cs >> 20} MiB", lambda cs=cs, out=out: [py, "-c", CREATE_WITH_CHUNKS, str(tmp / "big"), str(out), str(cs)], 0))
    for cs in sizes:
        out = tmp / f"m-{cs}.json"
        run([py, "-c", CREATE_WITH_CHUNKS, str(tmp / "big"), str(out), str(cs)], env)
        cases.append((f"verify {cs >> 20} MiB", lambda out=out: [*mf, "verify", str(tmp / "big"), "-m", str(out), "-q", "--no-cache", "--no-signature"], 0))
    res = _rounds(cases, env, args.runs)
    base = res["one-core hashlib loop"].median
    print(f"\n{size / 2**30:.2f} GiB file, {os.cpu_count()} cores; one-core hashlib loop {base:.2f} s ({size / base / 1e9:.2f} GB/s)")
    print(f"{'chunk':>10} {'verify s':>9} {'GB/s':>6} {'x 1-core':>8} {'create s':>9} {'chunk list per 100 GB':>22}")
    for cs in sizes:
        v, c = res[f"verify {cs >> 20} MiB"].median, res[f"create {cs >> 20} MiB"].median
        per100 = 0 if cs >= size else -(-100 * 10**9 // cs) * 67  # 64 hex digits, quotes and a comma per chunk
        label = "none" if cs >= size else f"{cs >> 20} MiB"
        print(f"{label:>10} {v:9.3f} {size / v / 1e9:6.2f} {base / v:8.2f} {c:9.3f} {per100 / 1e3:19.0f} kB")


if __name__ == "__main__":
    main()
