"""gs:// targets: a real GCS-compatible server (``gcp-storage-emulator``, in memory, on
127.0.0.1, started and stopped by this module), the real bundled MiniLM uploaded with gcsfs,
and the real CLI reading it through fsspec/gcsfs with the standard environment
(``STORAGE_EMULATOR_HOST``). GCS names an object's version by its generation and etag,
where S3 has an ETag: the same checks must hold.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Found, not imported: gcsfs reads GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when it is first imported,
# which the fixture does after setting it (see GCS_ENV).
for _name in ("gcsfs", "gcp_storage_emulator"):
    if importlib.util.find_spec(_name) is None:
        pytest.skip(f"needs {_name}", allow_module_level=True)

from test_remote import TRUNC_AT, findings, flip_byte, report, truncate  # noqa: E402  (the same edits as the S3 tests)

BUCKET = "models"
# gcsfs asks the storage-control gRPC API for a bucket's layout first, which the emulator does not
# serve (retried for 60 s, then the plain JSON API); the flag leaves that out.
GCS_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The emulator for this module (its own process group, stopped at the end); the environment
    every child process inherits."""
    port = _free_port()
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", **GCS_ENV}
        with pytest.MonkeyPatch.context() as mp:
            for k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
                mp.delenv(k, raising=False)
            for k, v in env.items():
                mp.setenv(k, v)
            import gcsfs

            gcsfs.GCSFileSystem.clear_instance_cache()
            gcsfs.GCSFileSystem(token="anon").mkdir(BUCKET)
            yield env
            gcsfs.GCSFileSystem.clear_instance_cache()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def fs(gcs: dict[str, str]) -> Any:
    import gcsfs

    return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)


@pytest.fixture(scope="module")
def upload(fs: Any, signed_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[str, Path]]:
    """Upload a copy of the signed model, edited by ``edit``, under its own prefix."""

    def make(name: str, edit: Callable[[Path], None] = lambda p: None) -> tuple[str, Path]:
        local = tmp_path_factory.mktemp("gcs-" + name) / name
        shutil.copytree(signed_model[0], local)
        edit(local)
        fs.put(str(local) + "/", f"{BUCKET}/{name}/", recursive=True)
        return f"gs://{BUCKET}/{name}", local

    return make


def test_a_clean_model_in_gcs_verifies_by_its_chunk_digests(cli: Any, upload: Any, signed_model: tuple[Path, Path]) -> None:
    url, _ = upload("clean")
    run = cli("verify", url, "--key", signed_model[1], "--json")
    r = report(run)
    assert run.code == 0, (run.err, r["findings"])
    assert r["facts"]["target"] == {"kind": "remote", "url": url, "protocol": "gs"}
    assert r["stats"]["files_by_chunks"] == 1 and {"signature", "digests"} <= set(r["checked"])
    assert r["facts"]["bytes_read"] >= (signed_model[0] / "model.safetensors").stat().st_size


def test_a_flipped_byte_in_gcs_fails_with_the_damaged_chunk_named(cli: Any, upload: Any, signed_model: tuple[Path, Path]) -> None:
    url, _ = upload("flipped", flip_byte)
    run = cli("verify", url, "--key", signed_model[1], "--json")
    r = report(run)
    assert run.code == 1, run.err
    assert findings(r) == [("digest-mismatch", "model.safetensors")]
    assert r["findings"][0]["expected"]["bad_chunks"] == [70_000_000 // (64 << 20)]


def test_a_truncated_gcs_object_is_rejected_from_its_header_reading_under_one_percent(cli: Any, upload: Any, signed_model: tuple[Path, Path]) -> None:
    url, local = upload("truncated", truncate)
    here = report(cli("check", local, "--json"))
    for args in (["verify", url, "--key", signed_model[1]], ["check", url]):
        run = cli(*args, "--json")
        r = report(run)
        assert run.code == 1, run.err
        assert ("truncated", "model.safetensors") in findings(r)
        assert "digests" not in r["checked"]
        assert 0 < r["facts"]["bytes_read"] < TRUNC_AT // 100, r["facts"]["bytes_read"]
        if args[0] == "check":
            assert r["findings"] == here["findings"]  # what check says of the local copy


def test_a_gcs_object_replaced_mid_read_is_file_changed_never_a_pass(gcs: dict[str, str], fs: Any, upload: Any, tmp_path: Path) -> None:
    """The generation moves: the object is replaced right after the first block of its digest
    read (the test seam ``manifest.remote._after_block``) by a copy with one byte flipped."""
    from manifest import api, remote

    url, local = upload("moving")
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    shutil.copyfile(local / "model.safetensors", tampered / "model.safetensors")
    flip_byte(tampered)
    replaced: list[str] = []

    def after_block(art: Any, rel: str, start: int) -> None:
        if rel == "model.safetensors" and not replaced:
            fs.put_file(str(tampered / "model.safetensors"), f"{BUCKET}/moving/model.safetensors")
            replaced.append(rel)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(remote, "_after_block", after_block)
        r = api.verify(url, integrity_only=True)
    assert replaced and not r
    assert [(f.code, f.path) for f in r.errors] == [("file-changed", "model.safetensors")]
    assert "replaced since it was listed" in r.errors[0].message, r.errors[0].message


def test_create_on_gcs_records_what_create_records_for_the_local_copy(cli: Any, upload: Any, signed_model: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    import json

    url, _ = upload("create")
    out = tmp_path / "m.json"
    assert cli("create", url, "-o", out, "-q").code == 0
    remote_files = json.loads(out.read_text())["signed"]["files"]
    local_files = json.loads((signed_model[0] / "manifest.json").read_text())["signed"]["files"]
    assert remote_files == local_files
