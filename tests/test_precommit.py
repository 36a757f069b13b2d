"""The pre-commit hook, END TO END with the real ``pre-commit`` tool.

``pre-commit try-repo <this repository> <hook-id>`` runs the hooks defined in this
repository's ``.pre-commit-hooks.yaml`` against a temporary git repository that holds
the real MiniLM checkpoint, its weights tracked the Git LFS way: the index holds an LFS
pointer (``oid sha256:...``), the working tree the real file. Git LFS itself is not
installed, so the repository gets a minimal clean/smudge filter that writes pointers in
the documented format (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).

The suite runs the ``language: system`` variants (the ``manifest`` on PATH, i.e. this
checkout); the ``language: python`` hooks build a virtualenv from PyPI (~45 s), so that
case runs when MANIFEST_TEST_PRECOMMIT_VENV=1 (``.ci/run`` sets it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # this repository: the hooks' source for try-repo
LFS_FILTER = r'''
import hashlib, os, subprocess, sys
mode = sys.argv[1]
store = os.path.join(subprocess.check_output(["git", "rev-parse", "--git-dir"]).decode().strip(), "lfs", "objects")
data = sys.stdin.buffer.read()
head = b"version https://git-lfs.github.com/spec/v1\n"
if mode == "clean":
    if data.startswith(head):
        out = data
    else:
        oid = hashlib.sha256(data).hexdigest()
        os.makedirs(store, exist_ok=True)
        with open(os.path.join(store, oid), "wb") as f:
            f.write(data)
        out = head + b"oid sha256:" + oid.encode() + b"\nsize " + str(len(data)).encode() + b"\n"
else:
    oid = data.split(b"oid sha256:")[1].split(b"\n")[0].decode() if data.startswith(head) else None
    path = os.path.join(store, oid) if oid else None
    out = open(path, "rb").read() if path and os.path.exists(path) else data
sys.stdout.buffer.write(out)
'''


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MANIFEST_DEBUG", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "PRE_COMMIT_COLOR": "never"})
    env.update(extra or {})
    return env


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=_env(), check=True, capture_output=True, text=True, timeout=300).stdout


def try_repo(repo: Path, hook_id: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``pre-commit try-repo ROOT HOOK`` in ``repo``, as a developer would run it."""
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), hook_id, "--verbose", *args],
        cwd=repo, env=_env({"PRE_COMMIT_HOME": str(home)}), capture_output=True, text=True, timeout=900,
        stdin=subprocess.DEVNULL, check=False,
    )


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Path:
    """A committed model repository: the real checkpoint, weights via (emulated) Git LFS, and its manifest."""
    pytest.importorskip("pre_commit")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path_factory.mktemp("precommit") / "model-repo"
    shutil.copytree(minilm_src, repo, ignore=shutil.ignore_patterns("__pycache__"))
    flt = repo.parent / "lfs_filter.py"
    flt.write_text(LFS_FILTER)
    git(repo, "init", "-q")
    for mode in ("clean", "smudge"):
        git(repo, "config", f"filter.lfs.{mode}", f"{sys.executable} {flt} {mode}")
    git(repo, "config", "filter.lfs.required", "true")
    subprocess.run([sys.executable, "-m", "manifest", "create", ".", "-q", "--model-id", "sentence-transformers/all-MiniLM-L6-v2"],
                   cwd=repo, env=_env(), check=True, timeout=300)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "model and manifest")
    staged = git(repo, "show", ":model.safetensors")
    assert staged.startswith("version https://git-lfs.github.com/spec/v1\noid sha256:")  # the index holds a pointer
    return repo


@pytest.fixture
def repo(base_repo: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model-repo"
    shutil.copytree(base_repo, dst, symlinks=True)
    git(dst, "update-index", "-q", "--refresh")
    return dst


def test_clean_repository_passes_and_reads_no_lfs_file(repo: Path, tmp_path: Path) -> None:
    r = try_repo(repo, "manifest-verify-system", home=tmp_path / "pc")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Passed" in r.stdout
    assert "by their staged Git LFS pointer" in r.stdout  # model.safetensors was checked by its pointer's oid
    # integrity only, and it says so: in the hook's name (shown on every run) and in its output
    assert "model manifest matches the files (integrity only)" in r.stdout
    assert "files (integrity only, authenticity not checked;" in r.stdout
    # the full rehash on the pre-push stage
    r = try_repo(repo, "manifest-verify-full-system", "--hook-stage", "pre-push", home=tmp_path / "pc")
    assert r.returncode == 0 and "Passed" in r.stdout, r.stdout + r.stderr
    assert "(integrity only, full rehash)" in r.stdout and "integrity only, authenticity not checked" in r.stdout


def test_corrupted_file_fails_and_is_named(repo: Path, tmp_path: Path) -> None:
    with open(repo / "model.safetensors", "r+b") as f:
        f.seek(30_000_000)
        f.write(b"\x13\x37\x13\x37")
    git(repo, "add", "model.safetensors")
    r = try_repo(repo, "manifest-verify-system", home=tmp_path / "pc")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Failed" in r.stdout
    assert "error[digest-mismatch]: model.safetensors" in r.stdout
    assert "(changed: model.safetensors)" in r.stdout


def test_stale_manifest_fails_with_the_refresh_command(repo: Path, tmp_path: Path) -> None:
    cfg = repo / "config_sentence_transformers.json"
    cfg.write_text(cfg.read_text().replace("}", ', "prompts": {}}', 1))
    (repo / "NOTES.md").write_text("fine-tuned on more data\n")
    git(repo, "add", "config_sentence_transformers.json", "NOTES.md")
    r = try_repo(repo, "manifest-verify-system", home=tmp_path / "pc")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "changed: config_sentence_transformers.json" in out and "new: NOTES.md" in out
    refresh = [line for line in out.splitlines() if "refresh the manifest with:" in line]
    assert len(refresh) == 1
    command = refresh[0].split("refresh the manifest with:", 1)[1].strip()
    assert command == "manifest create . --model-id sentence-transformers/all-MiniLM-L6-v2"
    # the one command does it: refresh, stage, and the hook passes again
    subprocess.run([sys.executable, "-m", *command.split(), "-q"], cwd=repo, env=_env(), check=True, timeout=300)
    git(repo, "add", "manifest.json")
    r = try_repo(repo, "manifest-verify-system", home=tmp_path / "pc")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(os.environ.get("MANIFEST_TEST_PRECOMMIT_VENV") != "1",
                    reason="builds a virtualenv from PyPI (~1 min): set MANIFEST_TEST_PRECOMMIT_VENV=1")
def test_language_python_hook_installs_and_runs(repo: Path, tmp_path: Path) -> None:
    r = try_repo(repo, "manifest-verify", home=tmp_path / "pc")
    assert r.returncode == 0 and "Passed" in r.stdout, r.stdout + r.stderr
    (repo / "vocab.txt").write_text("[PAD]\n")
    git(repo, "add", "vocab.txt")
    r = try_repo(repo, "manifest-verify", home=tmp_path / "pc")
    assert r.returncode == 1 and "refresh the manifest with:" in r.stdout, r.stdout + r.stderr


def test_damaged_file_is_not_offered_a_refresh(repo: Path) -> None:
    """A truncated weight file is damage, not a change: refreshing would record it."""
    from manifest.precommit import check_directory

    with open(repo / "model.safetensors", "r+b") as f:
        f.truncate(50_000_000)
    res = check_directory(repo, shown=".")
    assert not res.ok
    text = "\n".join(res.lines)
    assert "model.safetensors" in text and "fix them first" in text and "refresh the manifest with" not in text
