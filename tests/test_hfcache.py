"""The pre-deploy gate on the local Hugging Face cache: ``ORG/NAME[@REV]`` targets.

Every cache here is written by huggingface_hub itself: ``tests/hf_cache_builder.py`` runs
its real ``snapshot_download`` / ``hf_hub_download`` against an in-process transport that
answers as the Hub does for the real MiniLM checkpoint (no socket is opened). So the blobs
carry the names huggingface_hub gives them (git blob SHA-1 of a regular file, SHA-256 of
an LFS file), the snapshot links, ``refs/main``, ``trees/<commit>.json`` (an LFS file's
``blob_id`` is the git SHA-1 of its LFS pointer) and ``.no_exist`` markers are its own,
and huggingface_hub's ``scan_cache_dir`` and ``try_to_load_from_cache`` accept the result.
The gate then resolves it through huggingface_hub's offline lookup (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
BUILDER = Path(__file__).parent / "hf_cache_builder.py"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Cache:
    home: Path  # HF_HOME
    repo_dir: Path  # .../hub/models--ORG--NAME
    snapshot: Path
    blob_of: dict[str, Path]  # relative path -> its blob
    listing: dict[str, dict[str, object]]  # relative path -> the Hub's record (size, blob_id, lfs_sha256)

    @property
    def env(self) -> dict[str, str]:
        return {"HF_HOME": str(self.home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": ""}


def hf_download(src: Path, home: Path, *, absent: tuple[str, ...] = ()) -> dict[str, dict[str, object]]:
    """huggingface_hub downloads ``src`` as REPO@COMMIT into ``home/hub`` (and answers 404
    for each of ``absent``); returns the Hub's listing it was served."""
    p = subprocess.run([sys.executable, str(BUILDER), str(src), str(home / "hub"), REPO, COMMIT,
                        *[x for a in absent for x in ("--absent", a)]],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["snapshot"] == str(home / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots" / COMMIT)
    return out["files"]


def _cache(home: Path, listing: dict[str, dict[str, object]]) -> Cache:
    repo_dir = home / "hub" / ("models--" + REPO.replace("/", "--"))
    blob_of = {r: repo_dir / "blobs" / str(e.get("lfs_sha256") or e["blob_id"]) for r, e in listing.items()}
    return Cache(home, repo_dir, repo_dir / "snapshots" / COMMIT, blob_of, listing)


@pytest.fixture(scope="session")
def hub_session(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> Cache:
    home = tmp_path_factory.mktemp("hf-session")
    return _cache(home, hf_download(minilm_src, home))


def build_cache(src: Path, home: Path, *, tree: bool = True) -> Cache:
    """``src`` downloaded by huggingface_hub into ``home`` (see :func:`hf_download`)."""
    cache = _cache(home, hf_download(src, home))
    if not tree:
        shutil.rmtree(cache.repo_dir / "trees")
    return cache


def _copy_or_link(src: str, dst: str) -> None:
    """Small files are copied; the 90 MB weights blob is hard-linked (see :func:`own`)."""
    if os.path.getsize(src) >= 1 << 20:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def own(blob: Path) -> Path:
    """Replace a hard-linked blob by a private copy before writing into it."""
    tmp = blob.with_name(blob.name + ".own")
    shutil.copyfile(blob, tmp)
    os.replace(tmp, blob)
    return blob


@pytest.fixture
def hub(tmp_path: Path, hub_session: Cache) -> Iterator[Cache]:
    """A private copy of the session's cache (links copied as links, the weights blob
    hard-linked: call :func:`own` before changing it), for a test to damage."""
    shared = hub_session.blob_of["model.safetensors"]
    before = shared.stat()
    shutil.copytree(hub_session.home, tmp_path / "hf", symlinks=True, copy_function=_copy_or_link)
    yield _cache(tmp_path / "hf", hub_session.listing)
    after = shared.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns), "a test wrote through the shared weights blob"


def test_the_cache_is_huggingface_hubs_own(hub: Cache, minilm_src: Path) -> None:
    """Blob names are the ids huggingface_hub computes, and its own readers accept the cache."""
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    weights = hub.listing["model.safetensors"]
    data = (minilm_src / "model.safetensors").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert hub.blob_of["model.safetensors"].name == sha == weights["lfs_sha256"]
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
    assert weights["blob_id"] == _git_sha1(pointer)  # an LFS file's git blob is its pointer
    cfg = (minilm_src / "config.json").read_bytes()
    assert hub.blob_of["config.json"].name == _git_sha1(cfg) == hub.listing["config.json"]["blob_id"]
    assert _git_sha1(cfg) == hashlib.sha1(b"blob %d\0" % len(cfg) + cfg).hexdigest() != "0" * 40
    assert (hub.repo_dir / "refs" / "main").read_text() == COMMIT
    assert os.readlink(hub.snapshot / "1_Pooling" / "config.json") == "../../../blobs/" + hub.blob_of["1_Pooling/config.json"].name
    tree = json.loads((hub.repo_dir / "trees" / f"{COMMIT}.json").read_text())
    assert tree["files"]["model.safetensors"]["lfs_sha256"] == sha
    info = scan_cache_dir(hub.home / "hub")
    assert info.warnings == []
    (repo,) = info.repos
    assert (repo.repo_id, repo.nb_files) == (REPO, len(hub.listing))
    assert [(r.commit_hash, sorted(r.refs)) for r in repo.revisions] == [(COMMIT, ["main"])]
    for rel in hub.listing:
        assert try_to_load_from_cache(REPO, rel, cache_dir=hub.home / "hub") == str(hub.snapshot / rel)
    assert try_to_load_from_cache(REPO, "adapter_config.json", cache_dir=hub.home / "hub") is None


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
    blob = own(hub.blob_of["model.safetensors"])
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
    with open(own(hub.blob_of["model.safetensors"]), "r+b") as f:
        f.seek(10_000_000)
        f.write(b"\xff" * 16)
    r = cli("verify", REPO, "-m", out, "--key", pub, "-q", "--json", "--no-cache", env=hub.env)
    assert r.code == 1
    assert ("digest-mismatch", "model.safetensors") in [(f["code"], f.get("path")) for f in _findings(r)]


def test_corrupted_lfs_blob_is_named(hub: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(own(hub.blob_of["model.safetensors"]), "r+b") as f:
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
    blob = own(hub.blob_of["model.safetensors"])
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
    blob = own(hub.blob_of["model.safetensors"])
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
    r = cli("verify", "--no-signature", f"{REPO}@no-such-branch", env=hub.env)
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


# --------------------------------------------------------------------------- issue 11, class 6
def _signed(cli, hub: Cache, keypair) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    """A signed manifest of the clean snapshot (outside the cache) and the keyed verify call."""
    priv, pub = keypair
    out = hub.home / "m.json"
    r = cli("create", REPO, "-o", out, "--key", priv, "--model-id", REPO, "--revision", COMMIT, "-q", env=hub.env)
    assert r.code == 0, r.err
    return out, ["verify", REPO, "-m", str(out), "--key", str(pub), "--expect-model", REPO, "--expect-revision", COMMIT,
                 "--json", "-q", "--no-cache"]


def test_a_no_exist_marker_for_a_signed_file_fails_verify(cli, hub: Cache, keypair) -> None:  # type: ignore[no-untyped-def]
    """huggingface_hub itself writes the marker (the Hub's 404 for tokenizer_config.json);
    its own lookup then reports the file absent, so `from_pretrained(REPO)` would build the
    tokenizer without it. The snapshot is intact, so only the marker check can catch it."""
    from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache

    _, verify = _signed(cli, hub, keypair)
    r = cli(*verify, env=hub.env)
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert "hub-absent-markers" in rep["checked"]
    assert (hub.repo_dir / ".no_exist" / COMMIT).is_dir() is False  # a clean download has none
    listing = hf_download_into(hub, absent=("tokenizer_config.json", "adapter_config.json"))
    assert listing == hub.listing
    marker = hub.repo_dir / ".no_exist" / COMMIT / "tokenizer_config.json"
    assert marker.is_file() and marker.stat().st_size == 0
    assert try_to_load_from_cache(REPO, "tokenizer_config.json", cache_dir=hub.home / "hub") is _CACHED_NO_EXIST
    assert (hub.snapshot / "tokenizer_config.json").is_file()  # the snapshot still has it
    r = cli(*verify, env=hub.env)
    assert r.code == 1, r.out + r.err
    got = [(f["code"], f.get("path")) for f in _findings(r)]
    assert got == [("hub-absent-marker", "tokenizer_config.json")], got  # adapter_config.json: absent on the Hub, no finding
    r = cli("check", REPO, "--json", "-q", env=hub.env)
    assert r.code == 1 and ("hub-absent-marker", "tokenizer_config.json") in [(f["code"], f.get("path")) for f in _findings(r)]


def hf_download_into(hub: Cache, *, absent: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """Run huggingface_hub's download again over this cache (nothing new is fetched for
    files it has), answering 404 for ``absent``: it writes the markers itself."""
    src = hub.home / "src"
    if not src.exists():
        shutil.copytree(hub.snapshot, src, copy_function=lambda s, d: os.link(os.path.realpath(s), d))  # the same bytes, as plain files
    return hf_download(src, hub.home, absent=absent)


def test_the_marker_changes_what_transformers_loads_by_repo_id(hub: Cache) -> None:
    """The loader side of the marker, with the real transformers: by repo id the tokenizer
    loses tokenizer_config.json (model_max_length 512 -> a huge default); by the snapshot
    path it does not. So the gate's answer is the snapshot path."""
    hf_download_into(hub, absent=("tokenizer_config.json",))
    code = ("import sys; from transformers import AutoTokenizer; "
            "print(AutoTokenizer.from_pretrained(sys.argv[1]).model_max_length, "
            "AutoTokenizer.from_pretrained(sys.argv[2]).model_max_length)")
    env = {**os.environ, **hub.env, "HF_HUB_CACHE": str(hub.home / "hub")}
    p = subprocess.run([sys.executable, "-c", code, REPO, str(hub.snapshot)], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    by_id, by_path = (int(x) for x in p.stdout.split())
    assert by_path == 512 and by_id > 10**20


def test_markers_through_links_are_findings_and_never_followed(cli, hub: Cache, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from manifest import api
    from manifest.hfcache import resolve

    for k, v in hub.env.items():
        monkeypatch.setenv(k, v)
    assert resolve(REPO).root == hub.snapshot
    base = hub.repo_dir / ".no_exist" / COMMIT
    base.mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "1_Pooling").mkdir(parents=True)
    (outside / "1_Pooling" / "config.json").write_text("")
    os.symlink(outside / "1_Pooling", base / "1_Pooling")  # huggingface_hub's isfile() follows it
    (base / "unrelated.json").touch()
    rep = api.check(REPO)
    assert [(f.code, f.path) for f in rep.findings if f.code == "hub-absent-marker"] == [("hub-absent-marker", "1_Pooling")]
    assert str(outside) not in json.dumps(rep.to_dict())
    shutil.rmtree(base)
    os.symlink(outside, base)  # the commit's marker folder itself is a link: not looked into
    rep = api.check(REPO)
    assert [(f.code, f.path) for f in rep.findings if f.code == "hub-absent-marker"] == [("hub-absent-marker", f".no_exist/{COMMIT}")]
    assert not rep and str(outside) not in json.dumps(rep.to_dict())


@pytest.mark.parametrize("part", ["blobs", "snapshots", f"snapshots/{COMMIT}", "refs", "refs/main", "trees", ".no_exist"])
def test_a_linked_part_of_the_repo_folder_is_refused_and_nothing_outside_is_read(cli, hub: Cache, tmp_path: Path, part: str) -> None:  # type: ignore[no-untyped-def]
    """The repo folder's parts are moved outside and linked back (so huggingface_hub still
    resolves through them): the gate refuses with one line, exit 2, naming only the part."""
    (hub.repo_dir / ".no_exist").mkdir(exist_ok=True)
    outside = tmp_path / "elsewhere" / "x"
    outside.parent.mkdir()
    real = hub.repo_dir / part
    shutil.move(str(real), str(outside))
    os.symlink(outside, real)
    for cmd in ("check", "verify"):
        r = cli(cmd, REPO, "--json", "-q", env=hub.env)
        assert r.code == 2, r.out + r.err
        assert r.out == "" and r.err.count("\n") == 1 and r.err.startswith("error[unsafe-path]: "), r.err
        assert part in r.err and str(outside) not in r.err


def test_a_linked_blobs_folder_cannot_reach_any_file(cli, hub: Cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The reported attack: blobs/ -> a folder elsewhere whose "blob" is any file; the
    snapshot link then reads it and its values would be echoed in the report."""
    secret_dir = tmp_path / "private"
    secret_dir.mkdir()
    name = hub.blob_of["config.json"].name
    (secret_dir / name).write_text(json.dumps({"model_type": "bert", "api_token": "hf_SECRET_VALUE_123"}))
    shutil.rmtree(hub.repo_dir / "blobs")
    os.symlink(secret_dir, hub.repo_dir / "blobs")
    for args in (("check", REPO, "--json"), ("verify", REPO, "--json"), ("check", REPO, "--format", "github")):
        r = cli(*args, env=hub.env)
        assert r.code == 2, r.out + r.err
        assert "SECRET" not in r.out + r.err and str(secret_dir) not in r.out + r.err


def test_a_linked_tree_listing_is_not_read(hub: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = hub.repo_dir / "trees" / f"{COMMIT}.json"
    outside = tmp_path / "listing.json"
    outside.write_text(json.dumps({"format_version": 1, "files": {"OUTSIDE_ONLY.bin": {"size": 424242, "blob_id": "ab" * 20}}}))
    tree.unlink()
    os.symlink(outside, tree)
    r = _check(hub, monkeypatch)
    assert "hub-tree" in r.not_checked and "symlink" in r.not_checked["hub-tree"]
    assert "OUTSIDE_ONLY" not in json.dumps(r.to_dict()) and "424242" not in json.dumps(r.to_dict())


def test_the_report_names_the_snapshot_a_loader_must_be_given(cli, hub: Cache) -> None:  # type: ignore[no-untyped-def]
    import jsonschema

    r = cli("check", REPO, "--json", "-q", env=hub.env)
    assert r.code == 0, r.out + r.err
    rep = json.loads(r.out)
    assert rep["facts"]["snapshot_path"] == str(hub.snapshot)
    assert rep["facts"]["target"] == {"kind": "hf-cache", "repo_id": REPO, "commit": COMMIT}
    schema = json.loads((Path(__file__).parent.parent / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(rep, schema)
    text = cli("check", REPO, env=hub.env)
    assert f"load exactly this path (not the repo id): {hub.snapshot}" in text.out


def test_a_local_directory_named_like_the_repo_is_stated(cli, hub: Cache, tmp_path: Path, minilm_src: Path) -> None:  # type: ignore[no-untyped-def]
    """`ORG/NAME` that is also a directory under the working directory: the directory is
    checked (as before), and the report says so; `ORG/NAME@main` means the cache."""
    work = tmp_path / "work"
    local = work / REPO
    shutil.copytree(minilm_src, local, ignore=shutil.ignore_patterns("__pycache__"))
    r = cli("check", REPO, "--json", "-q", cwd=work, env=hub.env)
    rep = json.loads(r.out)
    assert rep["facts"]["target"] == {"kind": "directory", "shadows_repo_id": True}
    assert rep["facts"]["snapshot_path"] == str(local)
    assert [f["code"] for f in rep["findings"] if f["code"] == "ambiguous-target"] == ["ambiguous-target"]
    assert r.code == 0  # a warning: the directory itself is fine
    r = cli("check", f"{REPO}@main", "--json", "-q", cwd=work, env=hub.env)
    rep = json.loads(r.out)
    assert r.code == 0 and rep["facts"]["target"]["kind"] == "hf-cache" and rep["facts"]["snapshot_path"] == str(hub.snapshot)
    r = cli("check", f"./{REPO}", "--json", "-q", cwd=work, env=hub.env)
    assert "shadows_repo_id" not in json.loads(r.out)["facts"]["target"]


def test_a_marker_for_a_file_only_the_manifest_lists_is_named(cli, hub: Cache, keypair) -> None:  # type: ignore[no-untyped-def]
    _, verify = _signed(cli, hub, keypair)
    shutil.rmtree(hub.repo_dir / "trees")  # no Hub listing: only the manifest knows README.md now
    (hub.snapshot / "README.md").unlink()
    (hub.repo_dir / ".no_exist" / COMMIT).mkdir(parents=True)
    (hub.repo_dir / ".no_exist" / COMMIT / "README.md").touch()
    r = cli(*verify, env=hub.env)
    got = [(f["code"], f.get("path")) for f in _findings(r)]
    assert r.code == 1 and ("hub-absent-marker", "README.md") in got and ("missing-file", "README.md") in got, got


def test_snapshot_directories_are_accounted_and_a_planted_one_fails(cli, hub: Cache, keypair) -> None:  # type: ignore[no-untyped-def]
    """A snapshot's folders (1_Pooling/) hold linked files and are accounted for by them; an
    empty folder planted in the snapshot is a name a loader lists, so verify fails on it."""
    _, verify = _signed(cli, hub, keypair)
    assert (hub.snapshot / "1_Pooling").is_dir()
    r = cli(*verify, env=hub.env)
    assert r.code == 0, r.out + r.err
    (hub.snapshot / "tekken.json").mkdir()
    r = cli(*verify, env=hub.env)
    assert r.code == 1 and ("extra-directory", "tekken.json") in [(f["code"], f.get("path")) for f in _findings(r)], r.out


def test_a_trust_file_in_the_models_cache_folder_is_refused_for_an_org_name_target(cli, hub: Cache, keypair) -> None:
    """For ORG/NAME, whoever publishes the model writes its whole cache folder (snapshot, refs,
    blobs): a trust policy there, or one naming a key there, is the publisher's, not the verifier's."""
    priv, pub = keypair
    out = hub.home / "m.json"
    assert cli("create", REPO, "-o", out, "--key", priv, "-q", env=hub.env).code == 0
    outside = hub.home / "trust.json"
    outside.write_text(json.dumps({"version": 1, "keys": [str(pub)]}))
    r = cli("verify", REPO, "-m", out, "--trust", outside, "-q", env=hub.env)
    assert r.code == 0, r.err  # the same policy outside the model's folder is used
    for place in (hub.snapshot / "trust.json", hub.repo_dir / "blobs" / "trust.json", hub.repo_dir / "trust.json"):
        shutil.copy(outside, place)
        r = cli("verify", REPO, "-m", out, "--trust", place, "-q", env=hub.env)
        assert r.code == 2 and r.err.startswith("error[usage]:") and "inside the directory being verified" in r.err, (place, r.err)
        place.unlink()
    key_inside = hub.repo_dir / "blobs" / "k.pub.pem"  # a policy outside naming a key inside: refused too
    shutil.copy(pub, key_inside)
    outside.write_text(json.dumps({"version": 1, "keys": [str(key_inside)]}))
    r = cli("verify", REPO, "-m", out, "--trust", outside, "-q", env=hub.env)
    assert r.code == 2 and "names" in r.err and "inside the directory being verified" in r.err, r.err
