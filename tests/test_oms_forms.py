"""Every bundle form the real ``model_signing`` 1.1.1 produces, both directions: shards,
blake2b (by file and by shard), ``--no-ignore-git-paths``, ``--allow_symlinks`` and
single-file models; and ``manifest export --shard-size``. Each tampered case fails in
both tools, and the good case passes in the tool that must refuse the bad one."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

pytest.importorskip("model_signing", reason="the interop tests need model-signing==1.1.1 (test extra)")

S = 16 << 20  # the shard size of these tests: model.safetensors (90.9 MB) is 6 shards
ST = "model.safetensors"


def H() -> Any:
    import model_signing

    return model_signing.hashing.Config()


# model_signing's hashing configuration for each form (signing and verifying use the same one)
FORMS: dict[str, Callable[[], Any]] = {
    "shards": lambda: H().use_shard_serialization(shard_size=S),
    "blake2b": lambda: H().use_file_serialization(hashing_algorithm="blake2"),
    "blake3": lambda: H().use_file_serialization(hashing_algorithm="blake3"),
    "blake2b-shards": lambda: H().use_shard_serialization(hashing_algorithm="blake2", shard_size=S),
    "no-git-paths": lambda: H().set_ignored_paths(paths=[], ignore_git_paths=False),
    "symlinks": lambda: H().set_allow_symlinks(True),
    "export-shards": lambda: H().use_shard_serialization(shard_size=S),  # signed by `manifest export --shard-size`
}


def ms_sign(model: Path, sig: Path, priv: Path, config: Any) -> None:
    import model_signing

    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(config).sign(model, sig)


def ms_verify(model: Path, sig: Path, pub: Path, config: Any | None) -> Exception | None:
    """model_signing's verdict: None when it verifies, else the refusal (``ValueError`` or
    ``InvalidSignature``); anything else (a misuse of its API) is raised."""
    import model_signing

    v = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
    if config is not None:
        v = v.set_hashing_config(config)
    try:
        v.verify(model, sig)
    except (ValueError, InvalidSignature) as e:
        return e
    return None


def _payload(sig: Path) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))


def _findings(run: Any) -> list[tuple[str, str | None]]:
    return [(f["code"], f.get("path")) for f in json.loads(run.out)["findings"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> dict[str, Any]:
    """A real checkpoint (with a .git/ of its own and a manifest), keys, and one bundle per form."""
    from manifest.api import create
    from manifest.oms import export_oms
    from manifest.options import Options
    from manifest.signing import generate, write_keypair

    base = tmp_path_factory.mktemp("forms")
    model = base / "model"
    shutil.copytree(minilm_src, model, ignore=shutil.ignore_patterns("__pycache__"))
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    priv, pub = base / "ec.pem", base / "ec.pub.pem"
    write_keypair(generate("ecdsa-p256"), priv, pub)
    write_keypair(generate("ecdsa-p256"), base / "other.pem", base / "other.pub.pem")
    create(model, options=Options(use_cache=False))
    sigs: dict[str, Path] = {}
    for form, config in FORMS.items():
        sig = base / f"{form}.sig"
        if form == "export-shards":
            export_oms(model, priv, sig, shard_size=S)
        elif form == "symlinks":
            (model / "vocab-link.txt").symlink_to("vocab.txt")
            try:
                ms_sign(model, sig, priv, config())
            finally:
                (model / "vocab-link.txt").unlink()
        else:
            ms_sign(model, sig, priv, config())
        sigs[form] = sig
    single = base / "single" / ST
    single.parent.mkdir()
    shutil.copyfile(model / ST, single)
    for form in ("single", "single-shards"):
        sigs[form] = base / f"{form}.sig"
        ms_sign(single, sigs[form], priv, H().use_shard_serialization(shard_size=S) if form == "single-shards" else H())
    return {"base": base, "model": model, "single": single, "priv": priv, "pub": pub, "other": base / "other.pub.pem", "sigs": sigs}


def _flip(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 1]))


@contextmanager
def symlinked(model: Path, form: str) -> Iterator[None]:
    """The symlinks form's model has the link it was signed with."""
    if form == "symlinks":
        (model / "vocab-link.txt").symlink_to("vocab.txt")
    try:
        yield
    finally:
        if form == "symlinks":
            (model / "vocab-link.txt").unlink()


def test_each_form_records_what_model_signing_does(world: dict[str, Any], validators: Any) -> None:
    """The bundles are what these tests claim: shards named path:start:end with a float
    shard size, blake2b digests, git files in scope, the symlink signed, '.' for one file."""
    sigs = world["sigs"]
    ser = {f: _payload(p)["predicate"]["serialization"] for f, p in sigs.items()}
    names = {f: [r["name"] for r in _payload(p)["predicate"]["resources"]] for f, p in sigs.items()}
    algs = {f: {r["algorithm"] for r in _payload(p)["predicate"]["resources"]} for f, p in sigs.items()}
    assert ser["shards"]["method"] == "shards" and ser["shards"]["shard_size"] == S and isinstance(ser["shards"]["shard_size"], float)
    assert [n for n in names["shards"] if n.startswith(ST + ":")] == [f"{ST}:{k * S}:{min((k + 1) * S, 90868376)}" for k in range(6)]
    assert algs["shards"] == {f"sha256-sharded-{S}"} and algs["blake2b-shards"] == {f"blake2b-sharded-{S}"}
    assert ser["blake2b"]["hash_type"] == "blake2b" and algs["blake2b"] == {"blake2b"} and algs["blake3"] == {"blake3"}
    assert "ignore_paths" not in ser["no-git-paths"] and {".gitattributes", ".git/HEAD"} <= set(names["no-git-paths"])
    assert ".gitattributes" not in names["shards"] and ".git" in ser["shards"]["ignore_paths"]
    assert ser["symlinks"]["allow_symlinks"] is True and "vocab-link.txt" in names["symlinks"]
    assert names["single"] == ["."] and names["single-shards"] == [f".:{k * S}:{min((k + 1) * S, 90868376)}" for k in range(6)]
    assert ser["export-shards"]["shard_size"] == S and "manifest.json" in ser["export-shards"]["ignore_paths"]
    # our shard export is what model_signing makes from the same files (but our manifest), digest for digest, in the same order
    ours = [(r["name"], r["algorithm"], r["digest"]) for r in _payload(sigs["export-shards"])["predicate"]["resources"]]
    theirs = [(r["name"], r["algorithm"], r["digest"]) for r in _payload(sigs["shards"])["predicate"]["resources"]]
    assert ours == [t for t in theirs if not t[0].startswith("manifest.json:")]
    for f in ("shards", "blake2b", "no-git-paths", "export-shards"):
        validators["bundle"].validate(json.loads(sigs[f].read_text()))
    # the OMS v1.0 predicate schema enumerates plain algorithm names: model_signing's shard labels break it
    assert not list(validators["predicate"].iter_errors(_payload(sigs["blake2b"])["predicate"]))
    errors = list(validators["predicate"].iter_errors(_payload(sigs["shards"])["predicate"]))
    assert errors and {e.validator for e in errors} == {"enum"} and all(e.instance == f"sha256-sharded-{S}" for e in errors)


@pytest.fixture(scope="module")
def validators():  # type: ignore[no-untyped-def]
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas_dir = Path(__file__).resolve().parent / "assets" / "oms-v1.0" / "schemas" / "v1.0"
    schemas = {p.stem.split(".")[0]: json.loads(p.read_text()) for p in schemas_dir.glob("*.schema.json")}
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in schemas.values()])
    return {k: Draft202012Validator(s, registry=registry) for k, s in schemas.items()}


@pytest.mark.parametrize("form", list(FORMS))
def test_the_good_bundle_passes_both_tools(cli: Any, world: dict[str, Any], form: str) -> None:
    model, sig, pub = world["model"], world["sigs"][form], world["pub"]
    flags = ["--allow-symlinks"] if form == "symlinks" else []
    with symlinked(model, form):
        assert ms_verify(model, sig, pub, FORMS[form]()) is None
        r = cli("verify", model, "--oms", sig, "--key", pub, "--json", "-q", "--no-cache", *flags)
        assert r.code == 0 and _findings(r) == [], r.out + r.err
        rep = json.loads(r.out)
        assert {"signature", "file-set", "digests"} <= set(rep["checked"])
        if "shards" in form:  # the shard bundle gives sizes, and the big file is verified shard by shard on every core
            assert "sizes" in rep["checked"] and rep["stats"]["files_by_chunks"] == 1
    if form == "export-shards":  # and model_signing's own guess from the bundle accepts it too (its int shard size)
        assert ms_verify(model, sig, pub, None) is None


CASES = ["flipped-byte", "added-file", "removed-file", "edited-payload", "other-key"]


def _tamper_paths(form: str) -> tuple[str, str]:
    """(file to add, file to remove): for the no-git-paths form, git files, which it signs."""
    return (".git/evil", ".gitattributes") if form == "no-git-paths" else ("extra.txt", "README.md")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("form", list(FORMS))
def test_each_tampered_case_fails_in_both_tools(cli: Any, world: dict[str, Any], form: str, case: str, tmp_path: Path) -> None:
    model, sig, pub = world["model"], world["sigs"][form], world["pub"]
    flags = ["--allow-symlinks"] if form == "symlinks" else []
    added, removed = _tamper_paths(form)
    shard = r"(:\d+:\d+)?" if "shards" in form else ""
    key = pub
    undo: list[Callable[[], Any]] = []
    if case == "flipped-byte":
        at = 5 * S + 1000  # in the last shard
        undo.append(lambda: _flip(model / ST, at))
        _flip(model / ST, at)
        want_ms, want = (ValueError, rf"^Signature mismatch: .*Hash mismatch for \\?'{re.escape(ST)}{shard}\\?'"), {("digest-mismatch", ST)}
    elif case == "added-file":
        (model / added).write_text("not signed\n")
        undo.append((model / added).unlink)
        want_ms, want = (ValueError, rf"Extra files found in model '[^']*': {re.escape(added)}{shard}"), {("extra-file", added)}
    elif case == "removed-file":
        data = (model / removed).read_bytes()
        (model / removed).unlink()
        undo.append(lambda: (model / removed).write_bytes(data))
        want_ms, want = (ValueError, rf"Missing files in model '[^']*': {re.escape(removed)}{shard}"), {("missing-file", removed)}
    elif case == "edited-payload":
        # an attacker points a digest at other content (and keeps the subject digest consistent), without the key
        bundle = json.loads(sig.read_text())
        st = _payload(sig)
        res = st["predicate"]["resources"]
        res[0]["digest"] = hashlib.new("blake2b" if "blake2b" in form else "sha256", b"evil").hexdigest()  # blake3: 32 bytes too
        st["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
        sig = tmp_path / "edited.sig"
        sig.write_text(json.dumps(bundle))
        want_ms, want = (InvalidSignature, r"^$"), {("signature-invalid", None)}
    else:
        key = world["other"]
        want_ms, want = (ValueError, r"^Key mismatch"), {("untrusted-key", None)}
    try:
        with symlinked(model, form):
            e = ms_verify(model, sig, key, FORMS[form]())
            assert type(e) is want_ms[0] and re.search(want_ms[1], str(e)), repr(e)[:400]
            r = cli("verify", model, "--oms", sig, "--key", key, "--json", "-q", "--no-cache", *flags)
            assert r.code == 1 and set(_findings(r)) == want, r.out + r.err
    finally:
        for fn in undo:
            fn()
    if case == "flipped-byte" and "shards" in form:  # located to its shard, and the tensors in it
        (f,) = json.loads(r.out)["findings"]
        assert f["expected"]["bad_chunks"] == [5] and f["expected"]["chunk_size"] == S
        assert "1 of 6 chunks" in f["message"] and f["expected"]["tensors"]
    # the same call accepts the good case
    with symlinked(model, form):
        assert ms_verify(model, world["sigs"][form], pub, FORMS[form]()) is None
        assert cli("verify", model, "--oms", world["sigs"][form], "--key", pub, "-q", "--no-cache", *flags).code == 0


@pytest.mark.parametrize("form", ["single", "single-shards"])
@pytest.mark.parametrize("case", ["good", "flipped-byte", "edited-payload", "other-key"])
def test_single_file_models(cli: Any, world: dict[str, Any], form: str, case: str, tmp_path: Path) -> None:
    """model_signing signs one file as resource '.' (shards: '.:start:end'); verify FILE --oms checks it."""
    single, sig, key = world["single"], world["sigs"][form], world["pub"]
    config = H().use_shard_serialization(shard_size=S) if form == "single-shards" else H()
    model = tmp_path / ST
    shutil.copyfile(single, model)
    want: set[tuple[str, str | None]] = set()
    if case == "flipped-byte":
        _flip(model, 40_000_000)
        want = {("digest-mismatch", ST)}
    elif case == "edited-payload":
        bundle = json.loads(sig.read_text())
        st = _payload(sig)
        st["predicate"]["resources"][0]["digest"] = hashlib.sha256(b"evil").hexdigest()
        st["subject"][0]["digest"]["sha256"] = hashlib.sha256(
            b"".join(bytes.fromhex(r["digest"]) for r in st["predicate"]["resources"])).hexdigest()
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
        sig = tmp_path / "edited.sig"
        sig.write_text(json.dumps(bundle))
        want = {("signature-invalid", None)}
    elif case == "other-key":
        key = world["other"]
        want = {("untrusted-key", None)}
    e = ms_verify(model, sig, key, config)
    r = cli("verify", model, "--oms", sig, "--key", key, "--json", "-q", "--no-cache")
    if case == "good":
        assert e is None and r.code == 0 and _findings(r) == [], r.out + r.err
        assert json.loads(r.out)["facts"]["oms"]["files"] == 1
        # a directory is not the signed file: one usage line, for the model's directory and for any other
        for target in (tmp_path, world["model"]):
            r = cli("verify", target, "--oms", sig, "--key", key)
            assert r.code == 2 and r.err.startswith("error[usage]: the OMS bundle signs a single-file model") and r.err.count("\n") == 1
        return
    assert isinstance(e, (ValueError, InvalidSignature))
    assert r.code == 1 and set(_findings(r)) == want, r.out + r.err
    assert ms_verify(single, world["sigs"][form], world["pub"], config) is None


def test_a_directory_bundle_does_not_verify_a_file(cli: Any, world: dict[str, Any]) -> None:
    r = cli("verify", world["single"], "--oms", world["sigs"]["shards"], "--key", world["pub"])
    assert r.code == 2 and r.err.startswith("error[usage]: the OMS bundle signs a directory") and r.err.count("\n") == 1


def test_symlinks_are_followed_only_inside_the_model_and_only_on_request(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    model, pub = tmp_path / "model", world["pub"]
    shutil.copytree(world["model"], model)
    (model / "vocab-link.txt").symlink_to("vocab.txt")
    sig = world["sigs"]["symlinks"]
    # without --allow-symlinks the link is a finding, with a hint naming the flag (the bundle says the signer followed links)
    r = cli("verify", model, "--oms", sig, "--key", pub, "--json", "-q")
    assert r.code == 1 and ("unsupported-file", "vocab-link.txt") in _findings(r)
    (f,) = [f for f in json.loads(r.out)["findings"] if f["code"] == "unsupported-file"]
    assert "--allow-symlinks" in f["hint"]
    # a link out of the model: model_signing follows it and signs the outside file; ours refuses it, flag or not
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the model\n")
    (model / "out-link.txt").symlink_to(outside)
    out_sig = tmp_path / "out.sig"
    ms_sign(model, out_sig, world["priv"], FORMS["symlinks"]())
    assert "out-link.txt" in [r["name"] for r in _payload(out_sig)["predicate"]["resources"]]
    assert ms_verify(model, out_sig, pub, FORMS["symlinks"]()) is None
    r = cli("verify", model, "--oms", out_sig, "--key", pub, "--json", "-q", "--allow-symlinks")
    assert r.code == 1 and ("unsafe-path", "out-link.txt") in _findings(r) and ("missing-file", "out-link.txt") in _findings(r)
    # a link to a directory inside the model is not followed (model_signing does not descend into it either)
    (model / "out-link.txt").unlink()
    (model / "pool-link").symlink_to("1_Pooling")
    r = cli("verify", model, "--oms", sig, "--key", pub, "--json", "-q", "--allow-symlinks")
    assert r.code == 1 and set(_findings(r)) == {("unsupported-file", "pool-link")}
    # the flag belongs to --oms
    r = cli("verify", model, "--allow-symlinks", "--no-signature")
    assert r.code == 2 and r.err.startswith("error[usage]: --allow-symlinks applies to --oms bundles only")


def test_an_empty_file_cannot_be_listed_by_a_shard_bundle(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    """model_signing cuts an empty file into no shard: both tools pass with one added, ours with a warning."""
    model, sig, pub = world["model"], world["sigs"]["shards"], world["pub"]
    (model / "EMPTY").write_bytes(b"")
    try:
        assert ms_verify(model, sig, pub, FORMS["shards"]()) is None
        r = cli("verify", model, "--oms", sig, "--key", pub, "--json", "-q", "--no-cache")
        assert r.code == 0 and _findings(r) == [("unsigned-empty-file", "EMPTY")], r.out
        r = cli("verify", model, "--oms", world["sigs"]["blake2b"], "--key", pub, "--json", "-q", "--no-cache")
        assert r.code == 1 and _findings(r) == [("extra-file", "EMPTY")]  # a bundle by files lists empty files
    finally:
        (model / "EMPTY").unlink()


def test_export_shards_refuses_a_file_that_no_longer_matches_the_manifest(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(world["model"], model)
    _flip(model / ST, 50_000_000)
    r = cli("export", model, "--oms", tmp_path / "x.sig", "--key", world["priv"], "--shard-size", "16MiB")
    assert r.code == 1 and r.err.startswith(f"error[digest-mismatch]: {ST}: no longer matches the manifest") and r.err.count("\n") == 1
    assert not (tmp_path / "x.sig").exists()
    # at the manifest's own chunk size the recorded chunk digests are used: nothing is read
    from manifest.digest import CHUNK_SIZE

    r = cli("export", model, "--oms", tmp_path / "y.sig", "--key", world["priv"], "--shard-size", str(CHUNK_SIZE))
    assert r.code == 0, r.err
    names = [x["name"] for x in _payload(tmp_path / "y.sig")["predicate"]["resources"]]
    assert [n for n in names if n.startswith(ST)] == [f"{ST}:0:{CHUNK_SIZE}", f"{ST}:{CHUNK_SIZE}:90868376"]
    assert ms_verify(world["model"], tmp_path / "y.sig", world["pub"], None) is None  # of the undamaged files


def _resign(world: dict[str, Any], st: dict[str, Any], path: Path) -> Path:
    from manifest.oms import sign_statement

    path.write_text(json.dumps(sign_statement(st, world["priv"])))
    return path


@pytest.mark.parametrize(("edit", "code", "message"), [
    (lambda st: st["predicate"]["serialization"].update(method="tensors"), "manifest-unsupported", "serialization method 'tensors'"),
    (lambda st: st["predicate"]["serialization"].update(hash_type="sha512"), "manifest-unsupported", "hash_type 'sha512'"),
    (lambda st: st["predicate"]["serialization"].update(shard_size=S // 2), "manifest-invalid", "uses 'sha256-sharded-16777216'"),
    (lambda st: [st["predicate"]["serialization"].update(shard_size=S // 2), *(r.update(algorithm="sha256") for r in st["predicate"]["resources"])],
     "manifest-invalid", "the shards of 'model.safetensors' do not cut it into 8388608-byte pieces from 0 to 90868376"),
    (lambda st: st["predicate"]["serialization"].update(shard_size=0.5), "manifest-invalid", "shard_size must be a positive integer"),
    (lambda st: st["predicate"]["resources"][0].update(name="config.json"), "manifest-invalid", "is not PATH:START:END"),
    (lambda st: st["predicate"]["resources"][0].update(algorithm="md5"), "manifest-invalid", "uses 'md5'"),
])
def test_unsupported_or_malformed_shard_bundles_are_one_line_errors(cli: Any, world: dict[str, Any], tmp_path: Path, edit: Any, code: str,
                                                                   message: str) -> None:
    st = _payload(world["sigs"]["shards"])
    edit(st)
    res = st["predicate"]["resources"]
    st["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
    sig = _resign(world, st, tmp_path / "bad.sig")
    r = cli("verify", world["model"], "--oms", sig, "--key", world["pub"])
    assert r.code == 2 and r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    assert r.err.startswith(f"error[{code}]: OMS bundle: ") and message in r.err, r.err


def test_a_bundle_of_a_huge_claimed_file_is_refused_without_work(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    """A shard claiming to end at 2**62 with a tiny shard size is refused by count, never expanded."""
    st = _payload(world["sigs"]["shards"])
    st["predicate"]["serialization"]["shard_size"] = 1
    st["predicate"]["resources"] = [{"name": f"x:0:{2**62}", "algorithm": "sha256", "digest": "00" * 32}]
    st["subject"][0]["digest"]["sha256"] = hashlib.sha256(bytes(32)).hexdigest()
    r = cli("verify", world["model"], "--oms", _resign(world, st, tmp_path / "huge.sig"), "--key", world["pub"], timeout=30)
    assert r.code == 2 and r.err.startswith("error[manifest-invalid]: OMS bundle: the shards of 'x' do not cut it"), r.err


def test_git_paths_follow_the_bundles_own_ignore_list(cli: Any, world: dict[str, Any]) -> None:
    """A bundle signed with git files in scope checks them (no missing-file for .gitattributes);
    one that left them out never looks at them."""
    model, pub = world["model"], world["pub"]
    r = cli("verify", model, "--oms", world["sigs"]["no-git-paths"], "--key", pub, "--json", "-q")
    assert r.code == 0 and json.loads(r.out)["facts"]["oms"]["files"] == len(_payload(world["sigs"]["no-git-paths"])["predicate"]["resources"])
    with open(model / ".gitattributes", "a") as f:
        f.write("*.bin filter=lfs\n")
    try:
        assert cli("verify", model, "--oms", world["sigs"]["shards"], "--key", pub, "-q", "--no-cache").code == 0
        r = cli("verify", model, "--oms", world["sigs"]["no-git-paths"], "--key", pub, "--json", "-q", "--no-cache")
        assert r.code == 1 and _findings(r) == [("digest-mismatch", ".gitattributes")]
    finally:
        data = (model / ".gitattributes").read_bytes()
        (model / ".gitattributes").write_bytes(data[: -len(b"*.bin filter=lfs\n")])


def test_shards_labelled_as_the_oms_schema_says_verify_too(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    """The OMS v1.0 schema names a shard's algorithm plainly ("sha256"); model_signing writes
    "sha256-sharded-N". The digest is the same: both labels verify, any other is refused."""
    st = _payload(world["sigs"]["shards"])
    for r in st["predicate"]["resources"]:
        r["algorithm"] = "sha256"
    sig = _resign(world, st, tmp_path / "plain.sig")
    r = cli("verify", world["model"], "--oms", sig, "--key", world["pub"], "--json", "-q", "--no-cache")
    assert r.code == 0 and json.loads(r.out)["stats"]["files_by_chunks"] == 1, r.out


def test_a_bundle_over_the_former_64_mib_cap_is_read(world: dict[str, Any], tmp_path: Path) -> None:
    """300k shards (78 MB, model_signing's ~260 bytes a resource): within the 256 MiB cap."""
    from manifest.oms import MAX_BUNDLE_BYTES, PREDICATE_TYPE, STATEMENT_TYPE, read_bundle, root_digest

    n, size = 300_000, 1 << 20
    res = [{"name": f"model-{i // 1000:05d}.safetensors:{(i % 1000) * size}:{(i % 1000 + 1) * size}", "algorithm": f"sha256-sharded-{size}",
            "digest": hashlib.sha256(i.to_bytes(4, "big")).hexdigest()} for i in range(n)]
    st = {"_type": STATEMENT_TYPE, "subject": [{"name": "big", "digest": {"sha256": root_digest(res)}}], "predicateType": PREDICATE_TYPE,
          "predicate": {"serialization": {"method": "shards", "hash_type": "sha256", "shard_size": float(size), "allow_symlinks": False},
                        "resources": res}}
    sig = _resign(world, st, tmp_path / "big.sig")
    assert 64 << 20 < sig.stat().st_size < MAX_BUNDLE_BYTES
    b = read_bundle(sig)
    assert len(b.resources) == 300 and set(b.sizes.values()) == {1000 * size} and b.shard_size == size


def test_a_bundle_over_the_cap_is_one_line_error(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    from manifest.oms import MAX_BUNDLE_BYTES

    p = tmp_path / "huge.sig"
    with open(p, "wb") as f:  # sparse: no disk
        f.truncate(MAX_BUNDLE_BYTES + 1)
    r = cli("verify", world["model"], "--oms", p, "--key", world["pub"])
    assert r.code == 2 and r.err == f"error[manifest-invalid]: OMS bundle {p} is over the {MAX_BUNDLE_BYTES}-byte cap\n"


def test_paths_the_signer_left_out_are_left_out_by_both_tools(cli: Any, world: dict[str, Any], tmp_path: Path) -> None:
    """`--ignore-paths 1_Pooling`: the bundle records it, and both verifiers leave it unread, nothing else."""
    model, pub = tmp_path / "model", world["pub"]
    shutil.copytree(world["model"], model)
    sig = tmp_path / "ign.sig"
    ms_sign(model, sig, world["priv"], H().set_ignored_paths(paths=["1_Pooling"]))
    assert "1_Pooling" in _payload(sig)["predicate"]["serialization"]["ignore_paths"]
    (model / "1_Pooling" / "config.json").write_text("{}\n")
    (model / "1_Pooling" / "new.txt").write_text("x\n")
    assert ms_verify(model, sig, pub, None) is None
    r = cli("verify", model, "--oms", sig, "--key", pub, "--json", "-q", "--no-cache")
    assert r.code == 0 and _findings(r) == [], r.out
    _flip(model / "vocab.txt", 100)
    assert isinstance(ms_verify(model, sig, pub, None), ValueError)
    r = cli("verify", model, "--oms", sig, "--key", pub, "--json", "-q", "--no-cache")
    assert r.code == 1 and _findings(r) == [("digest-mismatch", "vocab.txt")]
