"""Remote targets: a real S3-compatible server (moto's ``ThreadedMotoServer`` on
127.0.0.1, started and stopped by this module, as s3fs's own test suite runs it), the
real bundled MiniLM uploaded with s3fs, and the real CLI in a subprocess reading it
through fsspec/s3fs with the standard AWS environment (``AWS_ENDPOINT_URL``, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "models"
TRUNC_AT = 80_000_000  # a download cut off near its end: the header is whole, the data is not


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server for this module; the environment every child process inherits."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's backends are process-wide: a server started by an earlier module (test_audit reuses this
    # fixture) leaves its buckets behind. Start from an empty store, through moto's own reset endpoint.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30).close()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(k, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(tmp_path_factory.mktemp("aws") / "none"))
        for k, v in env.items():
            mp.setenv(k, v)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(BUCKET)
        try:
            yield env
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


@pytest.fixture(scope="module")
def fs(s3: dict[str, str]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


@pytest.fixture(scope="module")
def clean_url(fs: Any, signed_model: tuple[Path, Path]) -> str:
    fs.put(str(signed_model[0]) + "/", f"{BUCKET}/clean/", recursive=True)
    return f"s3://{BUCKET}/clean"


@pytest.fixture
def variant(fs: Any, signed_model: tuple[Path, Path], tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Make a damaged copy of the signed model, locally and under its own prefix in S3."""
    made: list[str] = []

    def make(name: str, edit: Callable[[Path], None]) -> tuple[str, Path]:
        from conftest import copy_checkpoint

        local = copy_checkpoint(signed_model[0], tmp_path / name)
        shutil.copytree(signed_model[0] / "1_Pooling", local / "1_Pooling")
        edit(local)
        fs.put(str(local) + "/", f"{BUCKET}/{name}/", recursive=True)
        made.append(name)
        return f"s3://{BUCKET}/{name}", local

    yield make
    for name in made:
        fs.rm(f"{BUCKET}/{name}", recursive=True)


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # a hard link to the shared weights: never written through
    path.write_bytes(data)


def flip_byte(local: Path, offset: int = 70_000_000) -> None:
    src = local / "model.safetensors"
    tmp = local / "model.tmp"
    shutil.copyfile(src, tmp)
    with open(tmp, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    src.unlink()
    tmp.rename(src)


def truncate(local: Path) -> None:
    src = local / "model.safetensors"
    tmp = local / "model.tmp"
    with open(src, "rb") as i, open(tmp, "wb") as o:
        left = TRUNC_AT
        while left:
            block = i.read(min(left, 1 << 20))
            o.write(block)
            left -= len(block)
    src.unlink()
    tmp.rename(src)


def broken_header(local: Path) -> None:
    flip_byte(local, offset=8)  # the header's opening brace: same size, the JSON no longer parses


def lfs_pointer(local: Path) -> None:
    size = (local / "model.safetensors").stat().st_size
    _replace(local / "model.safetensors", f"version https://git-lfs.github.com/spec/v1\noid sha256:{'ab' * 32}\nsize {size}\n".encode())


def stale_index(local: Path) -> None:
    from manifest.formats.safetensors import read_header

    with open(local / "model.safetensors", "rb") as f:
        h = read_header(f, (local / "model.safetensors").stat().st_size)
    weight_map = dict.fromkeys(h.tensors, "model.safetensors")
    weight_map[next(iter(h.tensors))] = "model-00002-of-00002.safetensors"  # left from an older, sharded revision
    (local / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def report(run: Any) -> dict[str, Any]:
    assert run.out, run.err
    return json.loads(run.out)


def findings(r: dict[str, Any]) -> list[tuple[str, str | None]]:
    return sorted((f["code"], f.get("path")) for f in r["findings"])


def same_check_as_local(cli: Any, url: str, local: Path) -> None:
    """The differential: check on S3 reports exactly what check on the local copy reports."""
    remote, here = report(cli("check", url, "--json")), report(cli("check", local, "--json"))
    assert remote["findings"] == here["findings"]
    assert remote["verdict"] == here["verdict"]
    assert set(remote["checked"]) == set(here["checked"])


# ----------------------------------------------------------------------------- verify
def test_a_clean_model_in_s3_verifies_with_its_signature(cli: Any, clean_url: str, signed_model: tuple[Path, Path]) -> None:
    run = cli("verify", clean_url, "--key", signed_model[1], "--json")
    r = report(run)
    assert run.code == 0, (run.err, r["findings"])
    assert r["verdict"] == "pass" and r["findings"] == []
    assert {"signature", "file-set", "sizes", "digests"} <= set(r["checked"])
    assert r["facts"]["target"] == {"kind": "remote", "url": clean_url, "protocol": "s3"}
    assert r["manifest"] == f"{clean_url}/manifest.json"
    size = (signed_model[0] / "model.safetensors").stat().st_size
    assert r["facts"]["bytes_read"] >= size  # every byte was read to be hashed
    assert r["stats"]["files_by_chunks"] == 1  # the 90 MB file was verified by its chunk digests
    assert "stat-cache" in {c["check"] for c in r["not_checked"]}
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(r, schema)


def test_the_manifest_may_be_given_as_a_local_file_or_another_url(cli: Any, clean_url: str, signed_model: tuple[Path, Path], fs: Any) -> None:
    d, pub = signed_model
    local = cli("verify", clean_url, "-m", d / "manifest.json", "--key", pub, "--json")
    assert local.code == 0, local.err
    # A manifest elsewhere: the one in the prefix is left out by the manifest's own ignore list, as in a directory.
    fs.put_file(str(d / "manifest.json"), f"{BUCKET}/manifests/clean.json")
    other = cli("verify", clean_url, "-m", f"s3://{BUCKET}/manifests/clean.json", "--key", pub, "--json")
    r = report(other)
    assert r["manifest"] == f"s3://{BUCKET}/manifests/clean.json"
    assert other.code == 0, (other.err, r["findings"])


def test_a_flipped_byte_in_s3_fails_with_the_damaged_chunk_named(cli: Any, variant: Any, signed_model: tuple[Path, Path]) -> None:
    url, _ = variant("flipped", flip_byte)
    run = cli("verify", url, "--key", signed_model[1], "--json")
    r = report(run)
    assert run.code == 1
    assert findings(r) == [("digest-mismatch", "model.safetensors")]
    (f,) = r["findings"]
    assert f["expected"]["bad_chunks"] == [70_000_000 // (64 << 20)]
    assert f["expected"]["tensors"]  # named from the header, read by range


def test_a_truncated_object_is_rejected_from_its_header_reading_under_one_percent(cli: Any, variant: Any, signed_model: tuple[Path, Path]) -> None:
    url, local = variant("truncated", truncate)
    same_check_as_local(cli, url, local)
    for args in (["verify", url, "--key", signed_model[1]], ["check", url]):
        run = cli(*args, "--json")
        r = report(run)
        assert run.code == 1, run.err
        assert ("truncated", "model.safetensors") in findings(r)
        assert "digests" not in r["checked"]
        assert 0 < r["facts"]["bytes_read"] < TRUNC_AT // 100, r["facts"]["bytes_read"]


def test_a_git_lfs_pointer_is_rejected_cheaply(cli: Any, variant: Any, signed_model: tuple[Path, Path]) -> None:
    url, local = variant("pointer", lfs_pointer)
    same_check_as_local(cli, url, local)
    for args in (["verify", url, "--key", signed_model[1]], ["check", url]):
        run = cli(*args, "--json")
        r = report(run)
        assert run.code == 1, run.err
        assert ("lfs-pointer", "model.safetensors") in findings(r)
        assert r["facts"]["bytes_read"] < 1 << 20


def test_a_broken_header_of_the_right_size_is_rejected_before_any_digest(cli: Any, variant: Any, signed_model: tuple[Path, Path]) -> None:
    """Sizes all match, so only the header tells: remote digests start after the header checks
    (locally they run beside them), so nothing of the weights beyond the header is read."""
    url, local = variant("broken-header", broken_header)
    same_check_as_local(cli, url, local)
    run = cli("verify", url, "--key", signed_model[1], "--json")
    r = report(run)
    assert run.code == 1, run.err
    assert ("header-invalid", "model.safetensors") in findings(r)
    assert "digests" not in r["checked"] and "sizes" in r["checked"]
    assert r["facts"]["bytes_read"] < 1 << 20


def test_a_stale_shard_index_is_rejected_cheaply(cli: Any, variant: Any) -> None:
    url, local = variant("stale-index", stale_index)
    same_check_as_local(cli, url, local)
    run = cli("check", url, "--json")
    r = report(run)
    assert run.code == 1, run.err
    assert ("index-mismatch", "model.safetensors.index.json") in findings(r)
    assert r["facts"]["bytes_read"] < 1 << 20


def test_check_on_s3_finds_what_check_on_the_local_copy_finds(cli: Any, clean_url: str, signed_model: tuple[Path, Path]) -> None:
    same_check_as_local(cli, clean_url, signed_model[0])  # clean; the damaged copies are compared in their own tests


# ----------------------------------------------------------------------------- changes mid-read
@pytest.mark.parametrize("change", ["flipped", "shrunk"])
def test_an_object_replaced_mid_read_is_file_changed_never_a_pass(s3: dict[str, str], fs: Any, variant: Any, tmp_path: Path, change: str) -> None:
    """Deterministic: the object is replaced right after the first block of its digest read
    (the test seam ``manifest.remote._after_block``), same size with a flipped byte, or cut
    to 10 MB (the later range reads then fail or come back short)."""
    from manifest import api, remote

    url, local = variant(f"moving-{change}", lambda p: None)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    if change == "flipped":
        shutil.copyfile(local / "model.safetensors", tampered / "model.safetensors")
        flip_byte(tampered)
    else:
        with open(local / "model.safetensors", "rb") as f:
            (tampered / "model.safetensors").write_bytes(f.read(10_000_000))
    replaced: list[str] = []

    def after_block(art: Any, rel: str, start: int) -> None:
        if rel == "model.safetensors" and not replaced:  # after the first block: the listing's ETag is now stale
            fs.put_file(str(tampered / "model.safetensors"), f"{BUCKET}/moving-{change}/model.safetensors")
            replaced.append(rel)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(remote, "_after_block", after_block)
        r = api.verify(url, integrity_only=True)
    assert replaced
    assert not r
    assert [(f.code, f.path) for f in r.errors] == [("file-changed", "model.safetensors")]
    assert ("replaced since it was listed" if change == "flipped" else "size went from") in r.errors[0].message, r.errors[0].message


# ----------------------------------------------------------------------------- create, options, paths
def test_create_on_s3_writes_the_local_manifest_create_writes_for_the_directory(cli: Any, clean_url: str, signed_model: tuple[Path, Path],
                                                                                 tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    run = cli("create", clean_url, "-o", out, "-q")
    assert run.code == 0, run.err
    here = cli("create", signed_model[0], "-o", tmp_path / "local.json", "-q")
    assert here.code == 0, here.err
    a, b = json.loads(out.read_text()), json.loads((tmp_path / "local.json").read_text())
    a["signed"].pop("created_at")
    b["signed"].pop("created_at")
    assert a == b
    assert a["signed"]["chunks"]["files"]["model.safetensors"]  # chunk digests from ranged reads, as from local reads
    refused = cli("create", clean_url)
    assert refused.code == 2 and refused.err.startswith("error[usage]:") and "-o FILE" in refused.err


def test_storage_options_carry_the_endpoint_and_credentials(cli: Any, clean_url: str, s3: dict[str, str]) -> None:
    opts = json.dumps({"endpoint_url": s3["AWS_ENDPOINT_URL"], "key": "testing", "secret": "testing"})
    bare = {k: "" for k in s3}
    run = cli("check", clean_url, "--storage-options", opts, "--json", env=bare)
    assert run.code == 0, run.err
    bad = cli("check", clean_url, "--storage-options", "[1]")
    assert bad.code == 2 and bad.err.startswith("error[usage]: --storage-options must be a JSON object")
    local = cli("check", ".", "--storage-options", '{"anon": true}')
    assert local.code == 2 and "applies to a URL target" in local.err
    load = cli("check", clean_url, "--load", "structural")
    assert load.code == 2 and "--load needs a local directory" in load.err


def test_hostile_object_keys_are_refused_like_hostile_names(cli: Any, s3: dict[str, str], fs: Any, signed_model: tuple[Path, Path]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"])
    keys = ["hostile/config.json", "hostile/../escape.json", "hostile//etc/passwd", "hostile/a\\b.json", "hostile/./dot.json"]
    for k in keys:
        client.put_object(Bucket=BUCKET, Key=k, Body=(signed_model[0] / "config.json").read_bytes())
    try:
        r = report(run := cli("check", f"s3://{BUCKET}/hostile", "--json"))
        assert run.code == 1, run.err
        unsafe = sorted(f["path"] for f in r["findings"] if f["code"] == "unsafe-path")
        assert unsafe == sorted(["../escape.json", "/etc/passwd", "a\\\\b.json", "./dot.json"]), r["findings"]
        assert all("not read" in f["message"] for f in r["findings"] if f["code"] == "unsafe-path")
    finally:
        for k in keys:
            client.delete_object(Bucket=BUCKET, Key=k)


def test_file_urls_are_remote_targets_too(cli: Any, signed_model: tuple[Path, Path]) -> None:
    d, pub = signed_model
    run = cli("verify", d.as_uri(), "--key", pub, "--json")
    r = report(run)
    assert run.code == 0, (run.err, r["findings"])
    assert r["facts"]["target"]["protocol"] in ("file", "local")
    assert r["facts"]["bytes_read"] > 0
    text = cli("check", d.as_uri())
    assert text.code == 0, text.err
    line = next(ln for ln in text.out.splitlines() if ln.startswith("  read "))
    n = int(line.split()[1].replace(",", ""))
    assert 0 < n < (d / "model.safetensors").stat().st_size // 100, line  # check reads headers and side files only


def test_an_unknown_scheme_or_a_missing_backend_is_a_usage_error(cli: Any) -> None:
    import importlib.util

    run = cli("check", "nosuchscheme://bucket/model")
    assert run.code == 2 and run.err.startswith("error[usage]: nosuchscheme://bucket/model:"), run.err
    if importlib.util.find_spec("gcsfs") is None:  # the [gcs] extra is not installed: say which one to install
        gs = cli("check", "gs://bucket/model")
        assert gs.code == 2 and "pip install 'model-manifest[gcs]'" in gs.err, gs.err


def test_file_url_symlinks_and_fifos_are_findings_and_never_read(cli: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"secret": true}')
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "link.json").symlink_to(outside / "secret.json")
    (d / "linked-dir").symlink_to(outside)
    os.mkfifo(d / "fifo")
    r = report(run := cli("check", d.as_uri(), "--json"))
    assert run.code == 1, run.err
    assert findings(r) == [("unsupported-file", "fifo"), ("unsupported-file", "link.json"), ("unsupported-file", "linked-dir")]
    assert r["facts"]["bytes_read"] == 2  # config.json only: nothing through a link, and the FIFO is never opened


def test_no_manifest_in_the_prefix_is_one_line(cli: Any, s3: dict[str, str], fs: Any, signed_model: tuple[Path, Path]) -> None:
    fs.put_file(str(signed_model[0] / "config.json"), f"{BUCKET}/bare/config.json")
    run = cli("verify", f"s3://{BUCKET}/bare", "--no-signature")
    assert run.code == 2 and run.err.startswith("error[manifest-invalid]:") and "not found" in run.err
    gone = cli("check", f"s3://{BUCKET}/nothing-here")
    assert gone.code == 2 and gone.err.startswith("error[unreadable]:")
    assert os.environ.get("AWS_ENDPOINT_URL") == s3["AWS_ENDPOINT_URL"]


def test_digest_reads_are_fixed_blocks_with_a_bounded_number_in_flight(signed_model: tuple[Path, Path]) -> None:
    """Memory of a remote digest: blocks of READ_BLOCK, at most IN_FLIGHT per stream in flight
    (here one worker: one stream at a time), and more than one in flight (the reads overlap)."""
    import threading
    import time

    from manifest import api, remote

    block = 1 << 20
    lock = threading.Lock()
    now, peak, sizes = [0], [0], []
    real = remote.RemoteArtifact.fetch

    def fetch(self: Any, rel: str, start: int, end: int) -> bytes:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
            sizes.append(end - start)
        try:
            time.sleep(0.002)  # a request's latency: lets the next ones start
            return real(self, rel, start, end)
        finally:
            with lock:
                now[0] -= 1

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(remote, "READ_BLOCK", block)
        mp.setattr(remote.RemoteArtifact, "fetch", fetch)
        r = api.verify(signed_model[0].as_uri(), integrity_only=True, workers=1)
    assert r, [f.one_line() for f in r.findings]
    size = (signed_model[0] / "model.safetensors").stat().st_size
    assert len(sizes) > size // block  # the weights came in blocks
    assert max(sizes) <= max(block, 1 << 20)
    assert 2 <= peak[0] <= remote.IN_FLIGHT, peak[0]


def test_an_object_version_is_one_field_so_listing_and_head_agree() -> None:
    from manifest.remote import _version

    listed = {"ETag": '"5d41"', "LastModified": "2026-12-01T03:07:00.123Z", "size": 5}
    head = {"ETag": '"5d41"', "LastModified": "2026-12-01T03:07:00Z", "VersionId": None, "size": 5}
    assert _version(listed) == _version(head) == 'ETag="5d41"'
    assert _version({**head, "ETag": '"9a0e"'}) != _version(listed)
    assert _version({"generation": "17", "etag": "CAE="}) == "etag=CAE="
    assert _version({"mtime": 1.5, "ino": 7}) != _version({"mtime": 2.5, "ino": 7})
