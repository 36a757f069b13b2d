"""Start-up stays lean: the default paths never import the heavy modules.

Each case runs the real CLI entry point in a fresh interpreter (stderr not a TTY) and
then lists which of the watched modules got imported. No timing is asserted here; the
timings are shown by ``scripts/bench.py`` and ``scripts/bench_startup.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "safetensors", "tokenizers", "numpy", "huggingface_hub", "tqdm", "model_signing", "jsonschema", "sigstore", "ray")
# Remote targets only (manifest.remote): the storage layer and its backends.
REMOTE = ("fsspec", "s3fs", "gcsfs", "botocore", "aiobotocore", "boto3", "aiohttp")
# Not heavy, but only needed for a signature or a platform cache directory.
ON_DEMAND = ("cryptography", "platformdirs")

PROBE = r"""
import json, sys
sys.argv = ["manifest", *json.loads(sys.argv[1])]
from manifest._entry import main  # the console entry point
code = None
try:
    main()
except SystemExit as e:
    code = e.code
print("\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run_probe(*args: str, cwd: Path) -> tuple[int, set[str]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps([str(a) for a in args])], check=False, cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    payload = p.stdout.rsplit("\n@@", 1)
    assert len(payload) == 2, (p.stdout, p.stderr)
    data = json.loads(payload[1])
    return data["code"], {m.split(".")[0] for m in data["modules"]}


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> tuple[Path, Path]:
    import shutil

    from manifest import api
    from manifest.signing import generate, write_keypair

    d = tmp_path_factory.mktemp("startup") / "minilm"
    shutil.copytree(minilm_src, d, ignore=shutil.ignore_patterns("__pycache__"))
    priv, pub = d.parent / "k.pem", d.parent / "k.pub.pem"
    key = generate("ed25519")
    write_keypair(key, priv, pub)
    api.create(d, key=key)
    return d, pub


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    code, mods = run_probe("--help", cwd=tmp_path)
    assert code in (0, None)
    assert not mods & set(HEAVY + ON_DEMAND + REMOTE), mods & set(HEAVY + ON_DEMAND + REMOTE)


@pytest.mark.parametrize("extra", [[], ["--no-cache"], ["--json"]], ids=["default", "no-cache", "json"])
def test_verify_imports_nothing_heavy(signed: tuple[Path, Path], tmp_path: Path, extra: list[str]) -> None:
    d, _pub = signed
    code, mods = run_probe("verify", str(d), "--no-signature", *extra, cwd=tmp_path)
    assert code == 0
    assert not mods & set(HEAVY + ON_DEMAND + REMOTE), mods & set(HEAVY + ON_DEMAND + REMOTE)


def test_verify_with_a_key_imports_cryptography_but_nothing_heavy(signed: tuple[Path, Path], tmp_path: Path) -> None:
    d, pub = signed
    code, mods = run_probe("verify", str(d), "--key", str(pub), cwd=tmp_path)
    assert code == 0
    assert "cryptography" in mods  # the probe does see imports
    assert not mods & set(HEAVY + REMOTE), mods & set(HEAVY + REMOTE)


def test_only_a_sigstore_verification_imports_sigstore(tmp_path: Path) -> None:
    """The real Sigstore vector: verified keylessly, sigstore is imported (so the probe sees
    it); checked for integrity only, it is not."""
    vector = Path(__file__).resolve().parent / "assets" / "oms-v1.0" / "test-vectors" / "v1.0" / "valid" / "sigstore.bundle.json"
    model = tmp_path / "model"
    model.mkdir()
    for name in ("signme-1", "signme-2"):
        (model / name).write_bytes(name.encode())
    code, mods = run_probe("verify", str(model), "--oms", str(vector), "--no-signature", cwd=tmp_path)
    assert code == 0
    assert not mods & set(HEAVY + ON_DEMAND + REMOTE), mods & set(HEAVY + ON_DEMAND + REMOTE)
    code, mods = run_probe("verify", str(model), "--oms", str(vector), "--identity", "stefanb@us.ibm.com",
                           "--issuer", "https://sigstore.verify.ibm.com/oauth2", cwd=tmp_path)
    assert code == 0
    assert "sigstore" in mods and not mods & (set(HEAVY) - {"sigstore"}), mods & set(HEAVY)


def test_create_and_check_import_nothing_heavy(minilm: Path, tmp_path: Path) -> None:
    code, mods = run_probe("create", str(minilm), "-q", cwd=tmp_path)
    assert code in (0, None)
    assert not mods & set(HEAVY + ON_DEMAND + REMOTE), mods & set(HEAVY + ON_DEMAND + REMOTE)
    code, mods = run_probe("check", str(minilm), cwd=tmp_path)
    assert code in (0, 1)
    assert not mods & set(HEAVY + ON_DEMAND + REMOTE), mods & set(HEAVY + ON_DEMAND + REMOTE)
    # The probe does see the storage layer: a file:// URL reads through fsspec (and no S3 client).
    code, mods = run_probe("check", minilm.as_uri(), cwd=tmp_path)
    assert code in (0, 1)
    assert "fsspec" in mods and not mods & {"s3fs", "botocore", "boto3"}


def test_audit_on_the_thread_pool_imports_nothing_heavy_and_never_ray(signed: tuple[Path, Path], tmp_path: Path) -> None:
    d, pub = signed
    code, mods = run_probe("audit", str(d), str(d), "--no-signature", "--json", cwd=tmp_path)
    assert code == 0
    assert not mods & set(HEAVY + ON_DEMAND + REMOTE), mods & set(HEAVY + ON_DEMAND + REMOTE)
    code, mods = run_probe("audit", str(d), "--key", str(pub), cwd=tmp_path)
    assert code == 0
    assert "cryptography" in mods and "manifest" in mods  # the probe does see imports
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_progress_is_a_tqdm_bar_only_on_a_tty_and_never_when_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest.progress import MIN_BYTES, make_progress

    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty, open(os.devnull, "w") as pipe:
            monkeypatch.setenv("TERM", "xterm")
            monkeypatch.setattr(sys, "stderr", tty)
            bar = make_progress(True, 4 * MIN_BYTES, "verifying")
            assert type(bar).__module__.startswith("tqdm")
            assert bar.unit == "B" and bar.unit_scale  # bytes, shown per second
            bar.close()
            assert not type(make_progress(False, 4 * MIN_BYTES, "verifying")).__module__.startswith("tqdm")  # --quiet
            assert not type(make_progress(True, 1000, "verifying")).__module__.startswith("tqdm")  # too little work
            monkeypatch.setattr(sys, "stderr", pipe)
            assert not type(make_progress(True, 4 * MIN_BYTES, "verifying")).__module__.startswith("tqdm")
    finally:
        os.close(master)
        os.close(slave)


def test_distinfo_agrees_with_importlib_metadata_on_every_installed_distribution() -> None:
    """The fast version lookup (no importlib.metadata import) gives the same answers."""
    import importlib.metadata as md

    from manifest import distinfo

    names = {d.metadata["Name"] for d in md.distributions() if d.metadata["Name"]}
    assert len(names) > 10
    for n in sorted(names):
        assert distinfo.installed_version(n) == md.version(n), n
        assert distinfo.installed_version(n.upper().replace("-", "_")) == md.version(n), n
    assert distinfo.installed_version("surely-not-an-installed-distribution") is None


def test_the_at_least_fast_path_matches_packaging() -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    from manifest.sections.requirements import _AtLeast

    versions = ["4.40", "4.40.0", "4.40.0rc1", "4.39.9", "4.41.0.dev0", "4.40.0+cpu", "4.40.post1", "5.0", "4.4",
                "4.400", "1!1.0", "4.40.0a1+local", "4.39.99+cpu", "0"]
    for floor in ["4.40", "4", "4.40.0", "0.0", "4.39", "10.1"]:
        text = f"transformers>={floor}"
        fast, real = _AtLeast.parse(text), Requirement(text)
        assert fast is not None and str(fast) == str(real) and fast.name == real.name
        for v in versions:
            want = real.specifier.contains(Version(v), prereleases=True)
            assert fast.specifier.contains(Version(v), prereleases=True) == want, (floor, v)
    for other in ["torch>=2.6,<3", "torch >= 2.6", "torch>=2.6; python_version>'3'", "torch==2.6", "torch>=2.6.*", "torch[cuda]>=2"]:
        assert _AtLeast.parse(other) is None, other


def test_verify_of_a_checkpoint_with_transformers_version_skips_the_pep508_parser(signed: tuple[Path, Path], tmp_path: Path) -> None:
    d, _pub = signed
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    probe = PROBE.replace('"modules": sorted(sys.modules)', '"modules": sorted(m for m in sys.modules if "." in m)')
    p = subprocess.run([sys.executable, "-c", probe, json.dumps(["verify", str(d), "--no-signature"])], check=False, cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    data = json.loads(p.stdout.rsplit("\n@@", 1)[1])
    assert data["code"] == 0
    mods = set(data["modules"])
    assert "packaging.requirements" not in mods
    assert "importlib.metadata" not in mods


def test_the_entry_point_pauses_the_collector_only_while_the_cli_loads(tmp_path: Path) -> None:
    """The command loads with the cyclic GC paused and re-enables it; a library import
    never touches it."""
    code = r"""
import gc, sys
import manifest.api
lib = gc.isenabled()
sys.argv = ["manifest", "--version"]
from manifest._entry import main
try:
    main()
except SystemExit:
    pass
print("@@", lib, gc.isenabled(), gc.get_freeze_count() > 1000)
"""
    p = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.stdout.rsplit("@@", 1)[1].split() == ["True", "True", "True"]


@pytest.mark.parametrize("caller", ["library", "library that froze", "command"])
def test_what_a_parse_built_is_left_frozen_only_where_something_already_was(caller: str) -> None:
    """``jsonio.gc_paused`` freezes what a parse built out of the young generation, then
    unfreezes it again for a library caller that had frozen nothing (its objects go to
    the oldest generation, collectable); a caller that froze objects itself, and the
    command (which froze its imports: ``_entry.STATE``, asked instead of the O(n)
    ``gc.get_freeze_count``), keep them frozen."""
    code = r"""
import gc, sys
from manifest import _entry
from manifest.jsonio import loads_strict
caller = sys.argv[1]
if caller == "library that froze":
    keep = [[i] for i in range(100)]
    gc.freeze()
if caller == "command":
    _entry.STATE["frozen"] = True
before = gc.get_freeze_count()
doc = loads_strict(b'{"rows": [' + b",".join(b'{"a": [%d]}' % i for i in range(5000)) + b"]}")
print("@@", before, gc.get_freeze_count() - before, gc.isenabled())
"""
    p = subprocess.run([sys.executable, "-c", code, caller], check=True, capture_output=True, text=True, timeout=120)
    before, grew, enabled = p.stdout.rsplit("@@", 1)[1].split()
    assert enabled == "True"
    assert (int(before) > 0) == (caller == "library that froze")
    if caller == "library":
        assert int(grew) == 0
    else:
        assert int(grew) >= 10_000  # the 5,000 rows and their lists at least
