"""Issue 11: what the tree holds beyond the manifest's files, and what writers may replace.

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
from manifest.signing import generate, write_keypair


# =========================================================================== writers
@pytest.fixture(scope="module")
def exportable(tmp_path_factory: pytest.TempPathFactory, minilm_src: Path) -> dict[str, Path]:
    """A hard-linked copy of the real checkpoint with its manifest, and an ECDSA key (read-only use)."""
    base = tmp_path_factory.mktemp("writers")
    model = base / "model"
    shutil.copytree(minilm_src, model, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__"))
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
