"""Output a person can act on: one-line usage errors, a fix on every finding, root
causes first, repeats grouped, and a report that says what it skipped."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "args, says",
    [
        (["check", "DIR", "--bogus"], "No such option '--bogus'"),
        (["check"], "Missing argument 'DIR'"),
        (["check", "DIR", "--format", "xml"], "Invalid value for '--format'"),
        (["verify", "DIR", "--load", "half"], "Invalid value for '--load'"),
        (["create", "DIR", "-o"], "Option '-o' requires an argument"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["verify", "DIR", "--memory-limit", "lots"], "cannot read size 'lots'"),
    ],
    ids=["unknown-option", "missing-argument", "bad-choice", "bad-load", "option-without-value", "unknown-command", "bad-size"],
)
def test_usage_errors_are_one_line_exit_2(cli, minilm, args, says):
    r = cli(*[str(minilm) if a == "DIR" else a for a in args])
    assert r.code == 2, r
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error[usage]: ") and says in lines[0], r.err


def test_help_and_version_still_print(cli):
    r = cli("check", "--help")
    assert r.code == 0 and "Usage:" in r.out and "--load" in r.out
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("manifest, version ")
    r = cli()  # no arguments at all: the help text, as a usage error
    assert r.code == 2 and "Commands:" in r.err


# ----------------------------------------------------------------------------- every finding carries a fix
def test_every_registered_code_has_a_default_fix():
    from manifest.findings import Finding, all_codes

    for code, info in all_codes().items():
        assert info.hint.strip(), code
        assert Finding.of(code, "x").hint == info.hint  # the default applies when a check gives none
    assert Finding.of("missing-file", "x", hint="a better one").hint == "a better one"


def _no_hintless(report):
    hintless = [f.one_line() for f in report.findings if not (f.hint and f.hint.strip())]
    assert hintless == []
    return set(report.codes())


def test_findings_in_many_scenarios_all_carry_a_fix(minilm, keypair, tmp_path):
    """Break the real checkpoint in many ways, with and without a manifest: every finding
    has a hint, and the codes named in the issue are among them."""
    import shlex
    import shutil
    import subprocess
    import sys

    from manifest import api
    from manifest.signing import load_private_key, load_public_key

    seen: set[str] = set()
    priv, pub = keypair
    api.create(minilm, key=load_private_key(priv), model_id="org/minilm", revision="v1")
    clean = tmp_path / "clean"
    shutil.copytree(minilm, clean)
    # 1. Files moved on from the manifest: removed, added, resized, edited in place.
    (minilm / "1_Pooling" / "config.json").unlink()
    (minilm / "notes.txt").write_text("added\n")
    with open(minilm / "README.md", "a") as f:
        f.write("\nedited\n")
    data = bytearray((minilm / "data_config.json").read_bytes())
    data[100] ^= 0x01
    (minilm / "data_config.json").write_bytes(bytes(data))
    r = api.verify(minilm, keys=[load_public_key(pub)], exhaustive=True)
    seen |= _no_hintless(r)
    assert {"missing-file", "extra-file", "size-mismatch", "digest-mismatch"} <= set(r.codes())
    # The change may be intended: the fix is the exact command that records it.
    cmd = f"manifest create {minilm} -o {minilm / 'manifest.json'} --key PRIVATE_KEY.pem --model-id org/minilm --revision v1"
    for f in r.findings:
        assert f.hint.endswith(cmd), f.hint
    argv = shlex.split(cmd.replace("PRIVATE_KEY.pem", str(priv)))
    p = subprocess.run([sys.executable, "-m", "manifest", *argv[1:], "-q"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert api.verify(minilm, keys=[load_public_key(pub)]).ok  # the command did record the change
    # 2. Claims and trust.
    r = api.verify(clean, expect_model="org/other", expect_revision="v2", integrity_only=True)
    seen |= _no_hintless(r)
    other = tmp_path / "other.pub.pem"
    from manifest.signing import generate, write_keypair

    write_keypair(generate("ed25519"), tmp_path / "other.pem", other)
    seen |= _no_hintless(api.verify(clean, keys=[load_public_key(other)]))
    # 3. No manifest: a truncated weight file, a broken config, a pickle beside them.
    broken = tmp_path / "broken"
    shutil.copytree(clean, broken)
    (broken / "manifest.json").unlink()
    with open(broken / "model.safetensors", "r+b") as f:
        f.truncate(1_000_000)
    (broken / "config.json").write_text("{not json")
    (broken / "training_args.bin").write_bytes(b"\x80\x04K\x01.")
    r = api.check(broken)
    seen |= _no_hintless(r)
    # 4. The damage is not a change to record: no refresh command is offered for it.
    r = api.verify(clean, integrity_only=True)
    assert r.ok
    shutil.copy(broken / "model.safetensors", clean / "model.safetensors")
    r = api.verify(clean, integrity_only=True)
    seen |= _no_hintless(r)
    assert "truncated" in r.codes() and not any("manifest create" in f.hint for f in r.findings)
    assert {"missing-file", "extra-file", "size-mismatch", "digest-mismatch", "model-mismatch", "revision-mismatch",
            "untrusted-key", "truncated", "side-file-invalid"} <= seen


def test_hub_cache_findings_name_the_download_command(tmp_path, minilm_src, monkeypatch):
    from test_hfcache import COMMIT, REPO, build_cache

    from manifest.api import check

    cache = build_cache(minilm_src, tmp_path / "hf")
    for k, v in cache.env.items():
        monkeypatch.setenv(k, v)
    cache.blob_of["vocab.txt"].unlink()  # a link whose blob is gone: incomplete-download
    blob = cache.blob_of["tokenizer.json"]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b" ")  # same size, other content: hub-record-mismatch
    r = check(REPO)
    assert {"incomplete-download", "hub-record-mismatch"} <= set(r.codes())
    _no_hintless(r)
    by_path = {f.path: f.hint for f in r.findings}
    assert by_path["vocab.txt"].endswith(f"hf download {REPO} vocab.txt --revision {COMMIT}")
    assert by_path["tokenizer.json"].endswith(f"hf download {REPO} tokenizer.json --revision {COMMIT} --force-download")


# ----------------------------------------------------------------------------- what was skipped
def test_skipped_digests_are_named_with_the_error_count(minilm, cli):
    assert cli("create", minilm, "-q").code == 0
    (minilm / "vocab.txt").unlink()
    (minilm / "README.md").write_text("changed\n")
    r = cli("verify", minilm, "--no-signature")
    assert r.code == 1
    assert "  not checked: digests: skipped after 2 errors; --exhaustive hashes anyway" in r.out.splitlines(), r.out
    r = cli("verify", minilm, "--no-signature", "--exhaustive", "--json")
    doc = __import__("json").loads(r.out)
    assert "digests" in doc["checked"] and "digests" not in {n["check"] for n in doc["not_checked"]}
