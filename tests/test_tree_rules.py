"""Issue 11: what the tree holds beyond the manifest's files, and what writers may replace.

- Every entry of the tree that the manifest does not account for is a finding: a directory,
  empty or not, is accounted for when a listed file, or an empty directory the manifest
  records, lies in or below it (``create`` records the empty ones).
- The manifest's own path: only its literal path is left out of the file set; a manifest (or
  OMS bundle) that is a symlink inside the tree is ``manifest-symlink``, and what it points to
  is checked like any other entry.
- Writers never replace what is not theirs: ``create -o``, ``keygen -o`` and ``export --oms``
  refuse a path that exists and is not a regular file (FIFO, symlink, device node, socket,
  directory) with exit 2 and ``error[write-refused]``, and write nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from manifest import api
from manifest.options import Options
from manifest.signing import generate, load_public_key, write_keypair

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
REVISION = "r1"


# =========================================================================== a signed tree
@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> dict[str, Path]:
    """The real checkpoint, signed, with one empty directory (``logs/``) and without
    tokenizer.json (so that transformers falls back to listing the folder). Read-only:
    tests work on :func:`_clone`."""
    base = tmp_path_factory.mktemp("tree")
    model = base / "model"
    # copied, not linked: a link to the installed files, made by any other run at any time, would move their ctime
    shutil.copytree(minilm_src, model, ignore=shutil.ignore_patterns("__pycache__", "tokenizer.json"))
    (model / "logs").mkdir()
    write_keypair(generate("ed25519"), base / "k.pem", base / "k.pub.pem")
    from manifest.signing import load_private_key

    api.create(model, key=load_private_key(base / "k.pem"), model_id=MODEL_ID, revision=REVISION, options=Options(use_cache=False))
    return {"model": model, "pub": base / "k.pub.pem", "priv": base / "k.pem"}


def _clone(signed: dict[str, Path], dst: Path) -> Path:
    """A hard-linked clone of the signed tree (the manifest copied), empty directories included."""
    src = signed["model"]
    shutil.copytree(src, dst, copy_function=os.link, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.copyfile(src / "manifest.json", dst / "manifest.json")
    return dst


def _verify(signed: dict[str, Path], d: Path, manifest: Path | None = None) -> api.Report:
    opts = Options(keys=[load_public_key(signed["pub"])], expect_model=MODEL_ID, expect_revision=REVISION, use_cache=False)
    return api.verify(d, manifest, options=opts)


def _errors(rep: api.Report) -> list[tuple[str, str | None]]:
    return [(f.code, f.path) for f in rep.errors]


def _verify_cli(cli, signed: dict[str, Path], d: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("verify", d, "--key", signed["pub"], "--expect-model", MODEL_ID, "--expect-revision", REVISION,
               "--no-cache", "--json", "-q", *extra)


def _codes(r) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    import json

    return [(f["code"], f.get("path")) for f in json.loads(r.out)["findings"] if f["severity"] == "error"]


# =========================================================================== class 1: directories
def test_create_records_the_empty_directories_and_the_untouched_tree_verifies(signed, cli, tmp_path: Path) -> None:
    import json

    doc = json.loads((signed["model"] / "manifest.json").read_text())["signed"]
    assert doc["directories"] == ["logs"]
    d = _clone(signed, tmp_path / "m")
    r = _verify_cli(cli, signed, d)
    assert r.code == 0, r.out + r.err
    # nested empty directories: only the leaves are recorded (they account for their parents)
    (d / "runs" / "a" / "b").mkdir(parents=True)
    (d / "runs" / "c").mkdir()
    m = api.create(d, write=False)
    assert m.directories == ["logs", "runs/a/b", "runs/c"]
    # a tree without empty directories writes no "directories" key at all (older readers see the same document)
    (d / "logs").rmdir()
    shutil.rmtree(d / "runs")
    assert "directories" not in api.create(d, write=False).signed_dict()


@pytest.mark.parametrize("rel", ["tekken.json", "chat_template.jinja", "additional_chat_templates", "1_Pooling/tokenizer.model",
                                 "logs/inner", "new/a/b"])
def test_an_empty_directory_added_after_signing_fails(rel: str, signed, cli, tmp_path: Path) -> None:
    d = _clone(signed, tmp_path / "m")
    (d / rel).mkdir(parents=True)
    r = _verify_cli(cli, signed, d)
    assert r.code == 1, r.out + r.err
    top = rel.split("/", maxsplit=1)[0]
    expected = {rel} | ({top, "new/a"} if top == "new" else set())
    assert {p for c, p in _codes(r) if c == "extra-directory"} == expected


def test_a_directory_holding_unlisted_files_is_named_too(signed, tmp_path: Path) -> None:
    d = _clone(signed, tmp_path / "m")
    (d / "tekken.json").mkdir()
    (d / "tekken.json" / "x").write_text("x")
    assert set(_errors(_verify(signed, d))) == {("extra-directory", "tekken.json"), ("extra-file", "tekken.json/x")}


def test_a_recorded_empty_directory_removed_or_filled_fails(signed, tmp_path: Path) -> None:
    d = _clone(signed, tmp_path / "gone")
    (d / "logs").rmdir()
    assert _errors(_verify(signed, d)) == [("missing-directory", "logs")]
    d = _clone(signed, tmp_path / "filled")
    (d / "logs" / "chat_template.jinja").write_text("{{ 'x' }}")
    assert _errors(_verify(signed, d)) == [("extra-file", "logs/chat_template.jinja")]
    d = _clone(signed, tmp_path / "file")
    (d / "logs").rmdir()
    (d / "logs").write_text("")
    assert set(_errors(_verify(signed, d))) == {("missing-directory", "logs"), ("extra-file", "logs")}


def test_a_directory_with_an_unsafe_name_is_a_finding(signed, cli, tmp_path: Path) -> None:
    d = _clone(signed, tmp_path / "m")
    (d / "evil\ndir" / "sub").mkdir(parents=True)
    assert _errors(_verify(signed, d)) == [("unsafe-path", "evil\\ndir")]
    r = cli("create", d, "-q", "--no-cache", "-o", tmp_path / "new.json")
    assert r.code == 2 and r.err.startswith("error[unsafe-path]: ") and not (tmp_path / "new.json").exists()


def test_the_directories_list_is_checked_when_read(signed, tmp_path: Path) -> None:
    import json

    from manifest.document import Manifest
    from manifest.errors import ManifestInvalid

    doc = json.loads((signed["model"] / "manifest.json").read_text())
    for bad in (["logs", "logs"], "logs", [1], ["config.json"]):
        doc["signed"]["directories"] = bad
        with pytest.raises(ManifestInvalid):
            Manifest.from_document(doc)
    doc["signed"]["directories"] = ["../up"]
    assert [f.code for f in Manifest.from_document(doc).rejected] == ["unsafe-path"]


def test_a_manifest_with_directories_matches_the_schema(signed) -> None:
    import json

    from test_schemas import _validator

    v = _validator("manifest.schema.json")
    doc = json.loads((signed["model"] / "manifest.json").read_text())
    v.validate(doc)
    for bad in (["../up"], ["logs", "logs"], "logs"):
        doc["signed"]["directories"] = bad
        assert not v.is_valid(doc), bad


def test_check_is_unchanged_by_directories(signed, tmp_path: Path) -> None:
    """check has no manifest to account for anything: an empty directory is no finding there."""
    d = _clone(signed, tmp_path / "m")
    (d / "runs").mkdir()
    assert not [f for f in api.check(d, options=Options(use_cache=False)).findings if f.code == "extra-directory"]


# =========================================================================== class 2: the manifest's own path
def test_a_manifest_symlinked_to_a_loader_file_is_refused(signed, cli, tmp_path: Path) -> None:
    """The attack: manifest.json renamed to chat_template.jinja, and manifest.json a link to it."""
    d = _clone(signed, tmp_path / "m")
    (d / "manifest.json").rename(d / "chat_template.jinja")
    (d / "manifest.json").symlink_to("chat_template.jinja")
    r = _verify_cli(cli, signed, d)
    assert r.code == 1, r.out + r.err
    assert set(_codes(r)) == {("manifest-symlink", "manifest.json"), ("extra-file", "chat_template.jinja")}


def test_an_explicit_manifest_path_inside_the_tree_that_is_a_symlink_is_refused(signed, tmp_path: Path) -> None:
    d = _clone(signed, tmp_path / "m")
    shutil.copyfile(d / "manifest.json", tmp_path / "real.json")
    (d / "manifest.json").unlink()
    (d / "sub").mkdir()
    (d / "sub" / "signed.json").symlink_to(tmp_path / "real.json")  # -m names a link in the tree
    errors = set(_errors(_verify(signed, d, d / "sub" / "signed.json")))
    assert ("manifest-symlink", "sub/signed.json") in errors
    # the same manifest given by its real path outside the tree: only the link itself is an extra entry
    errors = set(_errors(_verify(signed, d, tmp_path / "real.json")))
    assert ("manifest-symlink", "sub/signed.json") not in errors and ("unsafe-path", "sub/signed.json") in errors


def test_only_the_literal_manifest_path_is_left_out(signed, tmp_path: Path) -> None:
    """A ``..`` through a symlinked directory names another entry than it seems to: nothing is left out."""
    from manifest.inventory import literal_rel

    d = _clone(signed, tmp_path / "m")
    (tmp_path / "elsewhere" / "x").mkdir(parents=True)
    (d / "link").symlink_to(tmp_path / "elsewhere" / "x")
    assert literal_rel(d / "link" / ".." / "chat_template.jinja", d) is None  # the file system reads elsewhere/chat_template.jinja
    assert literal_rel(d / "sub" / ".." / "m.json", d) is None  # no such parent: nothing to leave out
    assert literal_rel(d / "1_Pooling" / ".." / "m.json", d) == "m.json"
    assert literal_rel(d / "1_Pooling" / "m.json", d) == "1_Pooling/m.json"
    assert literal_rel(tmp_path / "m.json", d) is None and literal_rel(d, d) is None


def test_create_output_anywhere_in_the_tree_is_left_out_by_its_literal_path(signed, cli, tmp_path: Path) -> None:
    d = _clone(signed, tmp_path / "m")
    (d / "manifest.json").unlink()
    out = d / "1_Pooling" / "manifest.json"  # named like the default, but not at the root
    for _ in range(2):  # the second create must not record the first one's output
        assert cli("create", d, "-q", "--no-cache", "-o", out, "--key", signed["priv"], "--model-id", MODEL_ID,
                   "--revision", REVISION).code == 0
    import json

    doc = json.loads(out.read_text())["signed"]
    assert "1_Pooling/manifest.json" in doc["hashing"]["ignore"] and "1_Pooling/manifest.json" not in doc["files"]
    assert _verify_cli(cli, signed, d, "-m", str(out)).code == 0


# =========================================================================== writers
@pytest.fixture(scope="module")
def exportable(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> dict[str, Path]:
    """A copy of the real checkpoint with its manifest, and an ECDSA key (read-only use)."""
    base = tmp_path_factory.mktemp("writers")
    model = base / "model"
    shutil.copytree(minilm_src, model, ignore=shutil.ignore_patterns("__pycache__"))
    api.create(model, options=Options(use_cache=False))
    write_keypair(generate("ecdsa-p256"), base / "ec.pem", base / "ec.pub.pem")
    return {"model": model, "priv": base / "ec.pem"}


def _make(kind: str, p: Path) -> Callable[[], object]:
    """Put a non-regular entry of ``kind`` at ``p``; return a function that snapshots it."""
    decoy = p.parent / "decoy.txt"
    decoy.write_text("not yours\n")
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "symlink":
        os.symlink(decoy, p)
    elif kind == "dangling-symlink":
        os.symlink(p.parent / "nowhere", p)
    elif kind == "symlink-to-directory":
        (p.parent / "somedir").mkdir()
        os.symlink(p.parent / "somedir", p)
    elif kind == "directory":
        p.mkdir()
        (p / "keep.txt").write_text("x")
    elif kind == "socket":
        with contextlib.chdir(p.parent):  # a relative name: a long tmp path cannot exceed sun_path
            s = socket.socket(socket.AF_UNIX)
            s.bind(p.name)
            s.close()
    elif kind == "device":
        try:
            os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null, under tmp_path only
        except OSError as e:
            pytest.skip(f"cannot make a device node under tmp_path here: {e}")
    else:  # pragma: no cover
        raise AssertionError(kind)

    def snapshot() -> object:
        st = os.lstat(p)
        link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
        return (st.st_mode, st.st_ino, st.st_rdev, link, decoy.read_text(), sorted(x.name for x in p.parent.iterdir()))

    return snapshot


KINDS = ["fifo", "symlink", "dangling-symlink", "symlink-to-directory", "directory", "socket", "device"]


def _assert_refused(r, what: Path) -> None:  # type: ignore[no-untyped-def]
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert r.code == 2, r.out + r.err
    assert len(lines) == 1 and lines[0].startswith("error[write-refused]: "), r.err
    assert str(what.name) in lines[0] and r.out == ""


@pytest.mark.parametrize("kind", KINDS)
def test_create_output_that_is_not_a_regular_file_is_refused(kind: str, cli, minilm_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "manifest.json"
    out.parent.mkdir()
    snap = _make(kind, out)
    before = snap()
    r = cli("create", minilm_src, "-q", "--no-cache", "-o", out, timeout=60)
    _assert_refused(r, out)
    assert snap() == before


@pytest.mark.parametrize("kind", KINDS)
def test_export_oms_that_is_not_a_regular_file_is_refused(kind: str, cli, exportable: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.sig"
    out.parent.mkdir()
    snap = _make(kind, out)
    before = snap()
    r = cli("export", exportable["model"], "--oms", out, "--key", exportable["priv"], timeout=60)
    _assert_refused(r, out)
    assert snap() == before


@pytest.mark.parametrize("which", ["k.pem", "k.pub.pem"])
@pytest.mark.parametrize("kind", KINDS)
def test_keygen_output_that_is_not_a_regular_file_is_refused(kind: str, which: str, cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    snap = _make(kind, out / which)
    before = snap()
    r = cli("keygen", "-o", out / "k", timeout=60)
    _assert_refused(r, out / which)
    assert snap() == before  # and neither key file was written


def test_keygen_never_overwrites_a_regular_key(cli, tmp_path: Path) -> None:
    (tmp_path / "k.pub.pem").write_text("old\n")
    r = cli("keygen", "-o", tmp_path / "k")
    assert r.code == 2 and r.err.startswith("error[usage]: ") and r.err.count("\n") == 1
    assert (tmp_path / "k.pub.pem").read_text() == "old\n" and not (tmp_path / "k.pem").exists()


def test_keygen_into_a_missing_folder_is_one_clear_line(cli, tmp_path: Path) -> None:
    r = cli("keygen", "-o", tmp_path / "no-such-dir" / "k")
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and r.err.startswith("error[write-failed]: ") and "no such directory" in r.err, r.err
    assert not (tmp_path / "no-such-dir").exists()


def test_export_into_a_missing_folder_is_one_clear_line(cli, exportable: dict[str, Path], tmp_path: Path) -> None:
    r = cli("export", exportable["model"], "--oms", tmp_path / "no-such-dir" / "m.sig", "--key", exportable["priv"])
    assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith("error[write-failed]: "), r.err


def test_create_over_a_regular_manifest_still_replaces_it(cli, minilm_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    out.write_text("old")
    assert cli("create", minilm_src, "-q", "-o", out).code == 0
    assert '"model-manifest"' in out.read_text()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_write_atomic_itself_refuses(kind: str, tmp_path: Path) -> None:
    """The check lives in the one atomic writer (every output goes through it), not only in
    the commands' early checks: it looks again with lstat right before the rename."""
    from manifest.fsutil import RefusedTarget, write_atomic

    p = tmp_path / "target"
    snap = _make(kind, p)
    before = snap()
    with pytest.raises(RefusedTarget):
        write_atomic(p, b"data")
    assert snap() == before


def test_the_hook_counts_only_directories_git_would_commit(tmp_path: Path) -> None:
    """git keeps no empty directory: an untracked one (or one of untracked files only) is not
    what a commit holds, so the pre-commit hook does not count it; a staged file in a new
    directory is counted, and the directory with it."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    import subprocess

    from manifest.precommit import check_directory

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=tmp_path, check=True,
                       capture_output=True, timeout=60)

    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "notes.txt").write_text("a model card\n")
    (model / "sub" / "data.txt").write_text("x\n")
    api.create(model, options=Options(use_cache=False))
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "model")
    assert check_directory(model).ok
    (model / "tekken.json").mkdir()
    (model / "runs" / "x").mkdir(parents=True)
    (model / "scratch").mkdir()
    (model / "scratch" / "tmp.txt").write_text("untracked\n")
    res = check_directory(model)
    assert res.ok, res.lines
    rep = api.verify(model, options=Options(use_cache=False, integrity_only=True))  # verify itself counts every one
    got = {(f.code, p) for f in rep.errors for p in (f.items or [f.path])}  # many of one kind are one grouped finding
    assert got == {("extra-directory", p) for p in ("tekken.json", "runs", "runs/x", "scratch")} | {("extra-file", "scratch/tmp.txt")}
    git("add", "model/scratch")  # now a commit would hold it
    res = check_directory(model)
    assert not res.ok and any("extra-directory" in ln and "scratch" in ln for ln in res.lines), res.lines
