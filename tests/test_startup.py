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

HEAVY = ("torch", "transformers", "safetensors", "tokenizers", "numpy", "huggingface_hub", "tqdm", "model_signing")
# Not heavy, but only needed for a signature or a platform cache directory.
ON_DEMAND = ("cryptography", "platformdirs")

PROBE = r"""
import json, sys
sys.argv = ["manifest", *json.loads(sys.argv[1])]
from manifest.cli import main
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
    assert not mods & set(HEAVY + ON_DEMAND), mods & set(HEAVY + ON_DEMAND)


@pytest.mark.parametrize("extra", [[], ["--no-cache"], ["--json"]], ids=["default", "no-cache", "json"])
def test_verify_imports_nothing_heavy(signed: tuple[Path, Path], tmp_path: Path, extra: list[str]) -> None:
    d, _pub = signed
    code, mods = run_probe("verify", str(d), *extra, cwd=tmp_path)
    assert code == 0
    assert not mods & set(HEAVY + ON_DEMAND), mods & set(HEAVY + ON_DEMAND)


def test_verify_with_a_key_imports_cryptography_but_nothing_heavy(signed: tuple[Path, Path], tmp_path: Path) -> None:
    d, pub = signed
    code, mods = run_probe("verify", str(d), "--key", str(pub), cwd=tmp_path)
    assert code == 0
    assert "cryptography" in mods  # the probe does see imports
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_create_and_check_import_nothing_heavy(minilm: Path, tmp_path: Path) -> None:
    code, mods = run_probe("create", str(minilm), "-q", cwd=tmp_path)
    assert code in (0, None)
    assert not mods & set(HEAVY + ON_DEMAND), mods & set(HEAVY + ON_DEMAND)
    code, mods = run_probe("check", str(minilm), cwd=tmp_path)
    assert code in (0, 1)
    assert not mods & set(HEAVY + ON_DEMAND), mods & set(HEAVY + ON_DEMAND)


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
