"""The pre-deploy gate on the local Hugging Face cache: ``ORG/NAME[@REV]`` targets.

Every test builds a REAL cache layout exactly as huggingface_hub writes it (blobs named
by the Hub's hashes, relative snapshot symlinks, ``refs/main``, ``trees/<commit>.json``)
around the real MiniLM checkpoint, then resolves it through huggingface_hub's own
offline lookup. Nothing touches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
LFS_MIN = 1024 * 1024  # files at least this big are stored as LFS blobs (named by sha256)


_SHA256: dict[tuple[str, int, int], str] = {}  # the checkpoint is read-only: hash each big file once per session


def _sha256(p: Path) -> str:
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Cache:
    home: Path  # HF_HOME
    repo_dir: Path  # .../hub/models--ORG--NAME
    snapshot: Path
    blob_of: dict[str, Path]  # relative path -> its blob

    @property
    def env(self) -> dict[str, str]:
        return {"HF_HOME": str(self.home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": ""}


def build_cache(src: Path, home: Path, *, tree: bool = True, manifest_key: tuple[Path, Path] | None = None) -> Cache:
    """Lay ``src`` out as huggingface_hub does after ``hf download REPO``."""
    repo_dir = home / "hub" / ("models--" + REPO.replace("/", "--"))
    blobs, snap = repo_dir / "blobs", repo_dir / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    files: dict[str, dict[str, object]] = {}
    blob_of: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        if not p.is_file() or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(src).as_posix()
        size = p.stat().st_size
        if size >= LFS_MIN:
            etag = _sha256(p)
            files[rel] = {"size": size, "blob_id": "0" * 40, "lfs_sha256": etag, "lfs_size": size}
        else:
            etag = _git_sha1(p.read_bytes())
            files[rel] = {"size": size, "blob_id": etag}
        shutil.copyfile(p, blobs / etag)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blobs / etag, link.parent), link)
        blob_of[rel] = blobs / etag
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)  # huggingface_hub writes no newline
    if tree:
        (repo_dir / "trees").mkdir()
        (repo_dir / "trees" / f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": files}, indent=1))
    return Cache(home, repo_dir, snap, blob_of)


@pytest.fixture
def hub(tmp_path: Path, minilm_src: Path) -> Cache:
    return build_cache(minilm_src, tmp_path / "hf")


def _check(cache: Cache, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``manifest check ORG/NAME`` in-process (the CLI path is covered by the tests that use ``cli``)."""
    from manifest.api import check

    for k, v in cache.env.items():
        monkeypatch.setenv(k, v)
    return check(REPO)


def _findings(run) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return json.loads(run.out)["findings"]


def _got(report) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    return [(f.code, f.path) for f in report.findings]


def test_resolve_uses_huggingface_hub_offline_and_hf_home(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import hfcache

    for k, v in hub.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE")
    snap = hfcache.resolve(REPO)
    assert (snap.repo_id, snap.revision, snap.commit) == (REPO, "main", COMMIT)
    assert snap.root == hub.snapshot and snap.blobs == hub.repo_dir / "blobs"
    assert hfcache.resolve(f"{REPO}@{COMMIT}").root == hub.snapshot
    # HF_HUB_CACHE wins over HF_HOME, as in huggingface_hub
    monkeypatch.setenv("HF_HUB_CACHE", str(hub.home / "elsewhere"))
    from manifest.errors import InputError

    with pytest.raises(InputError, match="not in the Hugging Face cache"):
        hfcache.resolve(REPO)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub.home / "hub"))
    assert hfcache.resolve(REPO).commit == COMMIT


def test_repo_id_shapes() -> None:
    from manifest.hfcache import looks_like_repo_id, split_target

    assert looks_like_repo_id("org/name") and looks_like_repo_id("org/name@v1.0") and looks_like_repo_id(f"o/n@{COMMIT}")
    assert not looks_like_repo_id("name") and not looks_like_repo_id("/abs/path") and not looks_like_repo_id("a/b/c")
    assert split_target("org/name") == ("org/name", "main") and split_target("org/name@dev") == ("org/name", "dev")


def test_clean_cache_checks_offline_against_hub_records(cli, hub: Cache) -> None:
    r = cli("check", REPO, "--json", "--no-cache", env=hub.env)
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert {"hub-record", "hub-tree", "hub-lfs-content", "digests"} <= set(rep["checked"])
    assert rep["facts"]["hub"]["commit"] == COMMIT
    assert not [f for f in rep["findings"] if f["code"] in ("hub-record-mismatch", "incomplete-download", "unsafe-path")]
    # bit rot that keeps size and mtime: the stat cache would trust the blob, --no-cache rehashes it
    blob = hub.blob_of["model.safetensors"]
    st = blob.stat()
    assert cli("check", REPO, "-q", env=hub.env).code == 0  # fills the stat cache
    with open(blob, "r+b") as f:
        f.seek(60_000_000)
        f.write(b"\xee\xee")
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = cli("check", REPO, "--json", "--no-cache", env=hub.env)
    assert r.code == 1 and ("hub-record-mismatch", "model.safetensors") in [(f["code"], f.get("path")) for f in _findings(r)]


def test_clean_cache_verifies_against_a_manifest_offline(cli, hub: Cache, keypair) -> None:
    priv, pub = keypair
    out = hub.home / "m.json"
    r = cli("create", REPO, "-o", out, "--key", priv, "--model-id", REPO, "--revision", COMMIT, "-q", env=hub.env)
    assert r.code == 0, r.err
    files = json.loads(out.read_text())["signed"]["files"]
    assert files["model.safetensors"]["sha256"] == hub.blob_of["model.safetensors"].name  # the blob name IS the sha256
    r = cli("verify", REPO, "-m", out, "--key", pub, "--expect-model", REPO, "--expect-revision", COMMIT, "-q", env=hub.env)
    assert r.code == 0, r.out + r.err
    # corrupt the weights blob in place: verify names the file
    with open(hub.blob_of["model.safetensors"], "r+b") as f:
        f.seek(10_000_000)
        f.write(b"\xff" * 16)
    r = cli("verify", REPO, "-m", out, "--key", pub, "-q", "--json", "--no-cache", env=hub.env)
    assert r.code == 1
    assert ("digest-mismatch", "model.safetensors") in [(f["code"], f.get("path")) for f in _findings(r)]


def test_corrupted_lfs_blob_is_named(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(hub.blob_of["model.safetensors"], "r+b") as f:
        f.seek(50_000_000)
        f.write(b"\x00\x01\x02\x03")
    r = _check(hub, monkeypatch)
    assert not r
    hits = [f for f in r.findings if f.code == "hub-record-mismatch"]
    assert [f.path for f in hits] == ["model.safetensors"]
    assert hits[0].expected == hub.blob_of["model.safetensors"].name


def test_corrupted_small_file_is_named_by_its_git_blob_id(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = hub.blob_of["config.json"]
    data = blob.read_bytes().replace(b'"hidden_act": "gelu"', b'"hidden_act": "relu"')
    assert data != blob.read_bytes()
    blob.write_bytes(data)  # same size, different content
    r = _check(hub, monkeypatch)
    assert not r and ("hub-record-mismatch", "config.json") in _got(r)


def test_truncated_blob_is_named(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = hub.blob_of["model.safetensors"]
    with open(blob, "r+b") as f:
        f.truncate(blob.stat().st_size - 4096)
    r = _check(hub, monkeypatch)
    assert not r and ("hub-record-mismatch", "model.safetensors") in _got(r)


def test_truncated_blob_without_tree_listing_is_still_named(tmp_path: Path, minilm_src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = build_cache(minilm_src, tmp_path / "hf2", tree=False)
    blob = cache.blob_of["model.safetensors"]
    with open(blob, "r+b") as f:
        f.truncate(blob.stat().st_size - 4096)
    r = _check(cache, monkeypatch)
    assert not r and ("hub-record-mismatch", "model.safetensors") in _got(r)
    assert "hub-tree" in r.not_checked and "hub-record" in r.checked


def test_missing_blob_and_missing_file_are_incomplete_downloads(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.blob_of["vocab.txt"].unlink()  # the link now dangles
    (hub.snapshot / "tokenizer.json").unlink()  # the Hub lists it, the snapshot lacks it
    r = _check(hub, monkeypatch)
    assert not r
    assert ("incomplete-download", "vocab.txt") in _got(r)
    assert ("incomplete-download", "tokenizer.json") in _got(r)


def test_incomplete_blob_is_reported(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = hub.blob_of["model.safetensors"]
    partial = blob.with_name(blob.name + ".incomplete")
    blob.rename(partial)
    with open(partial, "r+b") as f:
        f.truncate(1000)
    r = _check(hub, monkeypatch)
    assert not r and ("incomplete-download", "model.safetensors") in _got(r)


def test_links_outside_the_repo_blobs_are_refused(hub: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the model")
    os.symlink(secret, hub.snapshot / "extra.txt")
    r = _check(hub, monkeypatch)
    assert not r and ("unsafe-path", "extra.txt") in _got(r)


def test_unknown_repo_is_a_one_line_input_error(cli, hub: Cache) -> None:
    r = cli("check", "nobody/nothing", env=hub.env)
    assert r.code == 2
    assert r.err.count("\n") == 1 and "not in the Hugging Face cache" in r.err and "Traceback" not in r.err
    r = cli("verify", f"{REPO}@no-such-branch", env=hub.env)
    assert r.code == 2 and r.err.count("\n") == 1


def test_directory_targets_never_import_huggingface_hub(cli, minilm: Path) -> None:
    code = "import sys, manifest.api as a; a.check(sys.argv[1]); print('huggingface_hub' in sys.modules)"
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, str(minilm)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_release_loop_manifest_uploaded_with_the_model(cli, tmp_path: Path, minilm: Path, keypair) -> None:
    """create + sign in the model directory, `hf upload` (the manifest becomes a blob like
    any file), download, then verify the cached snapshot with its own manifest."""
    priv, pub = keypair
    r = cli("create", minilm, "--key", priv, "--model-id", REPO, "--revision", "v1", "-q")
    assert r.code == 0, r.err
    cache = build_cache(minilm, tmp_path / "hf")
    assert (cache.snapshot / "manifest.json").is_symlink()
    r = cli("verify", REPO, "--key", pub, "--expect-model", REPO, "--expect-revision", "v1", "--json", "-q", env=cache.env)
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert rep["manifest"].endswith("manifest.json") and "digests" in rep["checked"] and "hub-record" in rep["checked"]
    # a replayed manifest of another model is refused
    r = cli("verify", REPO, "--key", pub, "--expect-model", "evil/model", "-q", env=cache.env)
    assert r.code == 1 and "model-mismatch" in r.out
    # and nothing is ever written into the cache
    r = cli("create", REPO, "-q", env=cache.env)
    assert r.code == 2 and "-o FILE" in r.err and r.err.count("\n") == 1


def test_malformed_tree_listing_is_not_trusted_and_never_crashes(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = hub.repo_dir / "trees" / f"{COMMIT}.json"
    tree.write_text('{"format_version": 1, "files": {}, "files": {"config.json": {"size": 1}}}')  # duplicate key
    r = _check(hub, monkeypatch)
    assert r and "hub-tree" in r.not_checked and "hub-record" in r.checked  # blob names still compared


def test_file_placed_in_the_snapshot_by_hand_is_named(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    (hub.snapshot / "extra.bin").write_bytes(b"\0" * 10)
    r = _check(hub, monkeypatch)
    assert not r and ("hub-record-mismatch", "extra.bin") in _got(r)
    assert "hub-content" in r.not_checked and "digests" not in r.checked


def test_cache_gate_never_reaches_for_the_network(cli, hub: Cache) -> None:
    """Even with offline mode off, resolution is local only: a dead endpoint and proxy change nothing."""
    dead = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    r = cli("check", REPO, "-q", env={**hub.env, **dead}, timeout=60)
    assert r.code == 0, r.out + r.err
