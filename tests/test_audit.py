"""``manifest audit``: many models, each verified against its own manifest, on a thread pool
and on a real Ray cluster that this module starts (``ray start --head``) and stops.

The fleet: real MiniLM copies and tiny real checkpoints of several families (built by
transformers in a subprocess), some tampered after their manifest was written: a flipped
byte, an extra file, a missing file. Every audit must name exactly the tampered ones.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from manifest import api
from manifest.options import Options

try:  # the moto S3 server fixture of the remote-target tests, reused (needs s3fs and moto)
    from test_remote import BUCKET, s3  # noqa: F401
except pytest.skip.Exception:
    BUCKET = ""

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE.parent / "schemas"
CLEAN = ["minilm", "bert", "gpt2", "llama", "t5"]
TAMPERED = {"minilm-flipped": "digest-mismatch", "minilm-extra": "extra-file", "minilm-missing": "missing-file", "qwen2-flipped": "digest-mismatch"}
FLEET = CLEAN + list(TAMPERED)
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
# minilm-chunked: its manifest records 16 MiB chunk digests (6 chunks of model.safetensors),
# then one byte of chunk FLIPPED_CHUNK is flipped.
CHUNK = 16 << 20
FLIPPED_CHUNK = 4


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path, families_build: Path) -> tuple[Path, Path]:
    """FLEET under one directory, each with a signed manifest; then the tampering. Returns (dir, public key)."""
    from manifest.signing import generate, write_keypair

    base = tmp_path_factory.mktemp("fleet")
    fam = families_build  # the tiny checkpoints (tests/build_checkpoints.py --families): read-only, copied below
    models = base / "models"
    models.mkdir()
    for name in ("minilm", "minilm-flipped", "minilm-chunked"):
        shutil.copytree(minilm_src, models / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("minilm-extra", "minilm-missing"):  # the weights hard-linked to minilm's (never written to; all links made before
        # any manifest, as a new link moves the file's ctime, which verify takes as a change)
        shutil.copytree(models / "minilm", models / name, ignore=shutil.ignore_patterns("__pycache__"),
                        copy_function=lambda s, d: os.link(s, d) if s.endswith(".safetensors") else shutil.copy2(s, d))
    for name in ("bert", "gpt2", "llama", "t5"):
        shutil.copytree(fam / name, models / name)
    shutil.copytree(fam / "qwen2", models / "qwen2-flipped")
    key = generate("ed25519")
    write_keypair(key, base / "k.pem", base / "k.pub.pem")
    for name in FLEET:
        api.create(models / name, key=key, options=Options(use_cache=False))
    api.create(models / "minilm-chunked", key=key, options=Options(use_cache=False, chunk_size=CHUNK))
    _flip(models / "minilm-chunked" / "model.safetensors", FLIPPED_CHUNK * CHUNK + 12_345)
    _flip(models / "minilm-flipped" / "model.safetensors", 40_000_000)
    size = (models / "qwen2-flipped" / "model.safetensors").stat().st_size
    _flip(models / "qwen2-flipped" / "model.safetensors", size - 100)  # in the last tensor's data, not the header
    (models / "minilm-extra" / "notes.txt").write_text("added after the manifest was signed\n")
    (models / "minilm-missing" / "vocab.txt").unlink()
    return models, base / "k.pub.pem"


def _validator() -> jsonschema.Draft202012Validator:
    from referencing import Registry, Resource

    schemas = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    by_id = {s["$id"].rsplit("/", 1)[1]: s for s in schemas}
    jsonschema.Draft202012Validator.check_schema(by_id["audit.schema.json"])
    return jsonschema.Draft202012Validator(by_id["audit.schema.json"], registry=registry)


def _audit_json(r, code: int) -> dict:
    assert r.code == code, (r.code, r.out[-2000:], r.err[-3000:])
    doc = json.loads(r.out)
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in _validator().iter_errors(doc)]
    assert errors == []
    assert doc["exit_status"] == code
    return doc


def _outcomes(doc: dict) -> dict[str, tuple[str, str | None]]:
    return {Path(m["target"]).name: (m["outcome"], m["first_error"]) for m in doc["models"]}


def _expected() -> dict[str, tuple[str, str | None]]:
    return {**{n: ("pass", None) for n in CLEAN}, **{n: ("fail", c) for n, c in TAMPERED.items()}}


# --------------------------------------------------------------------------- thread pool
def test_thread_pool_audit_names_exactly_the_tampered_models(ray_cluster, fleet, cli, tmp_path):  # ray_cluster: starts it meanwhile
    models, pub = fleet
    targets = [str(models / n) for n in FLEET]
    r = cli("audit", *targets, "--key", pub, "--json", "-j", "3")
    doc = _audit_json(r, 1)
    assert _outcomes(doc) == _expected()
    assert [m["target"] for m in doc["models"]] == targets  # the order given
    assert doc["runner"] == {"kind": "threads", "workers": 3}
    assert doc["summary"]["failed_targets"] == [str(models / n) for n in TAMPERED]
    for m in doc["models"]:  # the same report verify gives, model by model
        assert m["report"]["command"] == "verify" and m["report"]["artifact"] == m["target"]
        assert "signature" in m["report"]["checked"]
    flipped = next(m for m in doc["models"] if m["target"].endswith("minilm-flipped"))
    assert flipped["bytes"] > 90_000_000  # the digests were computed, and that is where it failed
    v = cli("verify", models / "minilm-flipped", "--key", pub, "--json")
    assert v.code == 1
    assert [f["code"] for f in json.loads(v.out)["findings"]] == [f["code"] for f in flipped["report"]["findings"]]

    # The text table: one row per model, the first error named; the summary counts them.
    listing = tmp_path / "targets.txt"
    listing.write_text("# the fleet\n" + "\n".join(targets[4:]) + "\n\n")
    r = cli("audit", *targets[:4], "--from", listing, "--no-signature", "-q")
    assert r.code == 1, r.err
    rows = {line.split()[0]: line.split() for line in r.out.splitlines()[1:] if line.startswith("/")}
    assert {Path(t).name: (row[1], row[4]) for t, row in rows.items()} == {n: (o, c or "-") for n, (o, c) in _expected().items()}
    assert r.out.splitlines()[-1].startswith(f"audit: {len(FLEET)} models: {len(CLEAN)} pass, {len(TAMPERED)} fail, 0 not verified;")


def test_an_unreadable_model_is_not_verified_and_the_exit_is_2(fleet, cli, tmp_path):
    models, _pub = fleet
    bare = tmp_path / "no-manifest"
    shutil.copytree(models / "bert", bare, ignore=shutil.ignore_patterns("manifest.json"))
    r = cli("audit", models / "bert", bare, tmp_path / "nowhere", models / "minilm-extra", "--no-signature", "--json")
    doc = _audit_json(r, 2)
    assert _outcomes(doc) == {"bert": ("pass", None), "no-manifest": ("not-verified", "manifest-invalid"),
                              "nowhere": ("not-verified", "unreadable"), "minilm-extra": ("fail", "extra-file")}
    assert doc["summary"]["not_verified_targets"] == [str(bare), str(tmp_path / "nowhere")]
    # With no trust anchor every model fails no-trust-anchor, as verify would.
    r = cli("audit", models / "bert", models / "gpt2")
    assert r.code == 1 and r.out.count("no-trust-anchor") == 2, r.out


def test_audit_usage_errors_are_one_line(cli, tmp_path):
    for args in (["audit", "--no-signature"], ["audit", tmp_path, "--retries", "1"], ["audit", tmp_path, "--split", "units"],
                 ["audit", tmp_path, "--no-signature", "--key", tmp_path / "k.pub.pem"]):
        r = cli(*args)
        assert r.code == 2 and r.err.startswith("error[usage]:") and len(r.err.strip().splitlines()) == 1, (args, r.err)


# --------------------------------------------------------------------------- Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Callable[[], str]]:
    """A real one-node Ray cluster (2 CPUs) started for this module, and stopped by killing
    exactly the process group it was started in (never `ray stop`, which stops every Ray on
    the machine). Its temp dir is short (AF_UNIX socket paths) and removed afterwards.

    Yields a function that waits until the cluster is up and returns its address: the first
    test of the module asks for the fixture, so that the cluster starts while the fleet is
    built and the thread pool is tested."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        def missing() -> str:
            pytest.skip("needs ray")

        yield missing
        return
    started: list[tuple[subprocess.Popen[bytes], Path, int]] = []  # (ray start, its temp dir, its port)

    def start() -> None:
        tmp = Path(f"/tmp/ray-{secrets.token_hex(4)}")
        # Every port a free one: another Ray on this machine (another test run) holds the defaults.
        ports = [f"--{name}-port={_free_port()}" for name in ("ray-client-server", "node-manager", "object-manager", "dashboard-agent-listen",
                                                              "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")]
        port = _free_port()
        with open(f"{tmp}.log", "wb") as out:
            proc = subprocess.Popen(
                ["ray", "start", "--head", "--block", "--num-cpus", "2", f"--port={port}", "--node-ip-address=127.0.0.1", *ports,
                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}"],
                env={**os.environ, **RAY_ENV}, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        started.append((proc, tmp, port))

    def stop(proc: subprocess.Popen[bytes], tmp: Path) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)  # the session this fixture started, and only it
            except ProcessLookupError:
                break
            time.sleep(2)
        proc.wait(10)
        for _ in range(50):  # until no process of the group is left to write into the temp dir
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        shutil.rmtree(tmp, ignore_errors=True)
        Path(f"{tmp}.log").unlink(missing_ok=True)

    def address() -> str:
        # Ray gives its raylet 30 s to register (hard-coded): on a loaded machine a start can
        # time out, and is then made again, up to three times.
        deadline = time.monotonic() + 300
        while True:
            proc, tmp, port = started[-1]
            if (tmp / "ray_current_cluster").exists():
                return f"127.0.0.1:{port}"
            if proc.poll() is not None:
                why = Path(f"{tmp}.log").read_text(errors="replace")[-2000:]
                assert len(started) < 3, f"ray start exited three times; the last: {why}"
                stop(proc, tmp)
                start()
            assert time.monotonic() < deadline, "the Ray cluster did not start in 300 s"
            time.sleep(0.5)

    start()
    try:
        yield address
    finally:
        for proc, tmp, _port in started:
            stop(proc, tmp)


def test_ray_audit_names_exactly_the_tampered_models_and_survives_a_lost_worker(ray_cluster, fleet, cli, tmp_path):
    """One run on the cluster: keys reach the workers as PEM; the task of minilm dies (os._exit,
    as a killed worker) on its first attempt and its retry verifies it."""
    models, pub = fleet
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**RAY_ENV, "MANIFEST_TEST_CRASH_TARGET": "/minilm-flipped", "MANIFEST_TEST_CRASH_TIMES": "1", "MANIFEST_TEST_CRASH_DIR": str(marks)}
    r = cli("audit", *[models / n for n in FLEET], "--key", pub, "--ray", ray_cluster(), "--json", env=env, timeout=240)
    doc = _audit_json(r, 1)
    assert _outcomes(doc) == _expected()
    assert doc["runner"]["kind"] == "ray" and doc["runner"]["workers"] == 2 and doc["runner"]["max_retries"] == 2
    assert doc["runner"]["split"] == "model" and "units" not in doc["runner"]  # auto: 9 models on 2 CPUs, a task per model
    lost = next(m for m in doc["models"] if m["target"].endswith("/minilm-flipped"))
    assert lost["attempts"] == 2 and len(list(marks.iterdir())) == 1  # it died once, and was run again
    assert [f["code"] for f in lost["report"]["findings"]] == ["digest-mismatch"]


def test_ray_a_worker_lost_on_every_attempt_is_not_verified_never_a_pass(ray_cluster, fleet, cli, tmp_path):
    models, _pub = fleet
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**RAY_ENV, "MANIFEST_TEST_CRASH_TARGET": "/bert", "MANIFEST_TEST_CRASH_TIMES": "9", "MANIFEST_TEST_CRASH_DIR": str(marks)}
    r = cli("audit", models / "bert", models / "gpt2", "--no-signature", "--ray", ray_cluster(), "--split", "model", "--retries", "1", "--json",
            env=env, timeout=240)
    doc = _audit_json(r, 2)
    assert _outcomes(doc) == {"bert": ("not-verified", "worker-lost"), "gpt2": ("pass", None)}
    bert = doc["models"][0]
    assert bert["report"] is None and bert["attempts"] == 2 and len(list(marks.iterdir())) == 2
    assert bert["error"]["message"].startswith("error[worker-lost]:")
    r = cli("audit", models / "bert", "--no-signature", "--ray", ray_cluster(), "--split", "model", "--retries", "0", env=env, timeout=240)
    assert r.code == 2 and "not-verified" in r.out and "error[worker-lost]" in r.out, r.out


def test_ray_audit_over_local_and_s3_models_names_exactly_the_tampered_ones(ray_cluster, fleet, cli, request):
    """S3 models are read by the Ray workers through s3fs (the endpoint and credentials
    travel with the task as --storage-options); local ones on the node that holds them."""
    if not BUCKET:
        pytest.skip("needs s3fs and moto (the remote-target tests' S3 server)")
    env = request.getfixturevalue("s3")
    import s3fs

    models, pub = fleet
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    remote = {"minilm": "pass", "bert": "pass", "qwen2-flipped": "fail", "llama-extra": "fail"}
    for name in remote:
        fs.put(str(models / name.replace("-extra", "")) + "/", f"{BUCKET}/audit/{name}/", recursive=True)
    fs.pipe(f"{BUCKET}/audit/llama-extra/notes.txt", b"added after the manifest was signed\n")
    try:
        local = {"gpt2": "pass", "minilm-missing": "fail"}
        targets = [f"s3://{BUCKET}/audit/{n}" for n in remote] + [str(models / n) for n in local]
        opts = json.dumps({"endpoint_url": env["AWS_ENDPOINT_URL"], "key": "testing", "secret": "testing"})
        r = cli("audit", *targets, "--key", pub, "--ray", ray_cluster(), "--storage-options", opts, "--json", env=RAY_ENV, timeout=240)
        doc = _audit_json(r, 1)
        got = {m["target"]: (m["outcome"], m["first_error"]) for m in doc["models"]}
        codes = {**TAMPERED, "llama-extra": "extra-file"}
        assert got == {t: (o, codes.get(Path(t).name)) for t, o in zip(targets, [*remote.values(), *local.values()], strict=True)}
        s3_models = [m for m in doc["models"] if m["target"].startswith("s3://")]
        assert all(m["report"]["facts"]["target"]["kind"] != "directory" for m in s3_models)
        clean = next(m for m in s3_models if m["target"].endswith("/minilm"))
        assert clean["bytes"] >= 90_000_000  # read from S3 in full: facts.bytes_read
        extra = next(m for m in s3_models if m["target"].endswith("/llama-extra"))
        assert "digests" in {c["check"] for c in extra["report"]["not_checked"]}  # rejected from the listing, before any digest read

        # Split by units: the listings and headers are read here, the digests by Ray tasks on any
        # node; the bytes those tasks read are counted in each model's facts.bytes_read.
        picked = [targets[0], targets[2], targets[3], targets[5]]  # minilm, qwen2-flipped, llama-extra (S3), minilm-missing (local)
        r = cli("audit", *picked, "--key", pub, "--ray", ray_cluster(), "--split", "units", "--storage-options", opts, "--json", env=RAY_ENV,
                timeout=240)
        doc = _audit_json(r, 1)
        assert {m["target"]: (m["outcome"], m["first_error"]) for m in doc["models"]} == {t: got[t] for t in picked}
        units = {Path(m["target"]).name: m["units"] for m in doc["models"]}
        n_files = len(json.loads((models / "minilm" / "manifest.json").read_text())["signed"]["files"])
        assert units == {"minilm": n_files + 1, "qwen2-flipped": len(json.loads((models / "qwen2-flipped" / "manifest.json").read_text())["signed"]["files"]),
                         "llama-extra": 0, "minilm-missing": 0}  # minilm: its weights in two 64 MiB chunks; the last two failed before digests
        assert doc["runner"]["split"] == "units" and doc["runner"]["units"] == sum(units.values())
        assert doc["models"][0]["bytes"] >= 90_000_000 and doc["models"][0]["report"]["stats"]["read_requests"] >= 12
    finally:
        fs.rm(f"{BUCKET}/audit", recursive=True)


# --------------------------------------------------------------------------- Ray, split by units
def test_ray_units_name_exactly_the_tampered_models_locate_the_flipped_chunk_and_retry_a_lost_unit(ray_cluster, fleet, cli, tmp_path):
    """The digests of each model run as Ray tasks of files and chunks, its cheap checks in the
    audit process; the worker hashing chunk 1 of minilm's weights dies once and is run again."""
    models, pub = fleet
    marks = tmp_path / "marks"
    marks.mkdir()
    names = ["minilm-chunked", "minilm", "qwen2-flipped", "minilm-extra", "gpt2"]
    env = {**RAY_ENV, "MANIFEST_TEST_CRASH_TARGET": "/minilm/model.safetensors#1", "MANIFEST_TEST_CRASH_TIMES": "1",
           "MANIFEST_TEST_CRASH_DIR": str(marks)}
    r = cli("audit", *[models / n for n in names], "--key", pub, "--ray", ray_cluster(), "--split", "units", "--no-cache", "--json", env=env,
            timeout=300)
    doc = _audit_json(r, 1)
    assert _outcomes(doc) == {"minilm-chunked": ("fail", "digest-mismatch"), "minilm": ("pass", None), "qwen2-flipped": ("fail", "digest-mismatch"),
                              "minilm-extra": ("fail", "extra-file"), "gpt2": ("pass", None)}
    by = {Path(m["target"]).name: m for m in doc["models"]}
    runner = doc["runner"]
    assert runner["split"] == "units" and runner["cpus_per_task"] == 1 and runner["units"] == sum(m["units"] for m in doc["models"])
    assert runner["unit_tasks"] < runner["units"]  # the small files travel in batches
    # Every file was a unit, the weights a unit per chunk (64 MiB: 2; 16 MiB: 6); minilm-extra had
    # none: its file set failed, and the digests were never started (cheap checks first).
    n_files = len(json.loads((models / "minilm" / "manifest.json").read_text())["signed"]["files"])
    assert (by["minilm"]["units"], by["minilm-chunked"]["units"], by["minilm-extra"]["units"]) == (n_files + 1, n_files + 5, 0)
    assert "digests" in {c["check"] for c in by["minilm-extra"]["report"]["not_checked"]}
    assert by["minilm"]["bytes"] > 90_000_000
    # The lost unit: its worker died once, Ray ran it again, and the model passed.
    assert by["minilm"]["attempts"] == 2 and len(list(marks.iterdir())) == 1
    # The flipped byte is located to its chunk, exactly as verify locates it.
    found = by["minilm-chunked"]["report"]["findings"]
    assert [f["code"] for f in found] == ["digest-mismatch"] and found[0]["expected"]["bad_chunks"] == [FLIPPED_CHUNK]
    v = cli("verify", models / "minilm-chunked", "--key", pub, "--no-cache", "--json")
    assert v.code == 1 and json.loads(v.out)["findings"] == found


def test_ray_a_unit_lost_on_every_attempt_leaves_its_model_not_verified_never_failed_or_passed(ray_cluster, fleet, cli, tmp_path):
    models, _pub = fleet
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**RAY_ENV, "MANIFEST_TEST_CRASH_TARGET": "/bert/model.safetensors", "MANIFEST_TEST_CRASH_TIMES": "9", "MANIFEST_TEST_CRASH_DIR": str(marks)}
    r = cli("audit", models / "bert", models / "gpt2", "--no-signature", "--ray", ray_cluster(), "--split", "units", "--retries", "1", "--json",
            env=env, timeout=240)
    doc = _audit_json(r, 2)
    assert _outcomes(doc) == {"bert": ("not-verified", "worker-lost"), "gpt2": ("pass", None)}
    bert = doc["models"][0]
    assert bert["report"] is None and bert["attempts"] == 2 and len(list(marks.iterdir())) == 2
    msg = bert["error"]["message"]
    assert msg.startswith(f"error[worker-lost]: {models / 'bert'}: the Ray worker hashing ") and msg.endswith("lost (WorkerCrashedError) 2 times; not verified")


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _using(value: str) -> list[int]:
    """The processes whose environment holds ``value`` (a Ray instance's RAY_TMPDIR)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if value.encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_ray_local_starts_its_own_instance_verifies_by_units_and_leaves_no_process_behind(fleet, tmp_path):
    """``--ray local``: ray.init in the audit process (19-30 s here), one small model, so auto
    splits by units (1 model, 2 CPUs); then no process of that instance is left."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs ray")
    models, pub = fleet
    where = f"/tmp/rl-{secrets.token_hex(4)}"  # short: Ray's AF_UNIX socket paths live under it
    env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": where}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "manifest", "audit", str(models / "gpt2"), "--key", str(pub), "--ray", "local", "--json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    try:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (out[-2000:], err[-3000:])
        doc = json.loads(out)
        assert _outcomes(doc) == {"gpt2": ("pass", None)}
        assert doc["runner"]["address"] == "local" and doc["runner"]["nodes"] == 1 and doc["runner"]["split"] == "units"
        assert doc["runner"]["units"] == doc["models"][0]["units"] > 0
        deadline = time.monotonic() + 30
        while (_alive(proc.pid) or _using(where)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(proc.pid) and _using(where) == []  # ray.shutdown stopped every process it started
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this test started, and only it
        except ProcessLookupError:
            pass
        shutil.rmtree(where, ignore_errors=True)
