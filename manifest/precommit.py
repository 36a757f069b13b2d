"""The pre-commit hook: does the committed manifest still match the files?

``manifest hook [DIR ...]`` verifies each model directory against its ``manifest.json``
(by default: every ``manifest.json`` tracked by git). Two modes:

- fast (the default ``pre-commit`` stage): sizes, headers and side files, then digests
  with the stat cache (a file whose size, mtime and inode are unchanged is not re-read),
  and for a file staged as a Git LFS pointer the pointer's ``oid sha256:`` stands in
  for the digest: the big file is never read;
- full (``--full``, the ``pre-push`` / ``manual`` stages): every file is rehashed.

On failure it prints which files changed and the one command that refreshes the
manifest. Files git does not track (never committed, ignored) are not counted as extra.

The hook checks integrity only (``verify --no-signature``), and says so: it keeps a
committed manifest in step with its files, and has no trust anchor to check who signed
it. Authenticity is for ``manifest verify --key`` where the model is consumed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .hints import STALE_CODES
from .hints import refresh_command as _refresh
from .inventory import DEFAULT_MANIFEST_NAME
from .report import INTEGRITY_ONLY

_GIT_TIMEOUT = 60


@dataclass
class DirResult:
    """The hook's verdict on one model directory."""

    directory: str
    ok: bool
    lines: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- git
def _git(cwd: Path, *args: str, data: bytes | None = None) -> bytes | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def git_toplevel(cwd: Path) -> Path | None:
    out = _git(cwd, "rev-parse", "--show-toplevel")
    return Path(out.decode().strip()) if out else None


def tracked_files(directory: Path) -> set[str] | None:
    """Paths (relative to ``directory``) in git's index, or None outside a work tree."""
    out = _git(directory, "ls-files", "-z", "--cached", "--full-name", "--", ".")
    top = git_toplevel(directory)
    if out is None or top is None:
        return None
    prefix = directory.resolve().relative_to(top.resolve()).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    return {p[len(prefix) :] for p in out.decode("utf-8", "surrogateescape").split("\0") if p and p.startswith(prefix)}


def staged_lfs_pointers(directory: Path) -> dict[str, tuple[str, int]]:
    """Files staged as Git LFS pointers under ``directory``: path -> (sha256 oid, size).

    Only the staged blobs (what the commit will hold) are read, and only those small
    enough to be pointers (< 1024 bytes, per the LFS spec)."""
    from .formats.lfs import MAX_POINTER_BYTES, parse_pointer

    out = _git(directory, "ls-files", "-z", "-s", "--", ".")
    if not out:
        return {}
    entries: list[tuple[str, str]] = []  # (blob id, path relative to directory)
    for rec in out.decode("utf-8", "surrogateescape").split("\0"):
        if not rec:
            continue
        meta, _, path = rec.partition("\t")
        mode, sha, _stage = meta.split(" ")
        if mode.startswith("100"):
            entries.append((sha, path))
    if not entries:
        return {}
    check = _git(directory, "cat-file", "--batch-check", data="".join(f"{sha}\n" for sha, _ in entries).encode())
    if check is None:
        return {}
    small = [
        (sha, path)
        for (sha, path), line in zip(entries, check.decode().splitlines(), strict=False)
        if len(line.split()) == 3 and int(line.split()[2]) < MAX_POINTER_BYTES
    ]
    if not small:
        return {}
    blob = _git(directory, "cat-file", "--batch", data="".join(f"{sha}\n" for sha, _ in small).encode())
    if blob is None:
        return {}
    found: dict[str, tuple[str, int]] = {}
    pos = 0
    for _sha, path in small:  # each record: "<sha> <type> <size>\n<content>\n"
        nl = blob.index(b"\n", pos)
        size = int(blob[pos:nl].split()[2])
        content = blob[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size + 1
        ptr = parse_pointer(content)
        if ptr is not None and ptr.oid.startswith("sha256:") and ptr.size is not None:
            found[path] = (ptr.oid.split(":", 1)[1], ptr.size)
    return found


# --------------------------------------------------------------------------- targets
def find_manifests(top: Path, name: str = DEFAULT_MANIFEST_NAME) -> list[Path]:
    """Directories holding a tracked ``manifest.json`` that is a model manifest."""
    out = _git(top, "ls-files", "-z", "--cached", "--", name, f"*/{name}")
    if out is None:
        return [top] if (top / name).is_file() else []
    dirs = []
    for rel in sorted(p for p in out.decode("utf-8", "surrogateescape").split("\0") if p):
        path = top / rel
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 16)
        except OSError:
            continue
        if b'"model-manifest"' in head:
            dirs.append(path.parent)
    return dirs


def refresh_command(directory: str, m: Any, manifest_name: str, key: str | None) -> str:
    """The one command that rewrites the manifest with the same settings."""
    output = os.path.join(directory, manifest_name) if manifest_name != DEFAULT_MANIFEST_NAME else None
    return _refresh(directory, m, output=output, key=key)


# --------------------------------------------------------------------------- the hook
def _untracked(f: Any, tracked: set[str] | None) -> bool:
    """An extra file git does not track, or an extra directory holding no tracked file
    (git keeps no empty directory): not what a commit holds, so not counted."""
    if tracked is None or f.code not in ("extra-file", "extra-directory"):
        return False
    paths = list(f.items) if f.items else [f.path]  # a grouped finding lists its paths
    if f.code == "extra-file":
        return all(p not in tracked for p in paths)
    from .inventory import ancestors

    tracked_dirs = ancestors(tracked)
    return all(p not in tracked_dirs for p in paths)


def check_directory(
    directory: Path,
    *,
    full: bool = False,
    refresh_key: str | None = None,
    manifest_name: str = DEFAULT_MANIFEST_NAME,
    shown: str | None = None,
) -> DirResult:
    """Verify one model directory as the hook does."""
    from .api import load_manifest, verify
    from .options import Options

    shown = shown or str(directory)
    m = load_manifest(directory / manifest_name)
    known: dict[str, dict[str, str]] = {}
    if not full:  # what the commit holds for an LFS file is the pointer's oid: no need to read the file
        known = {rel: {"sha256": oid} for rel, (oid, _size) in staged_lfs_pointers(directory).items() if rel in m.files}
    # integrity only: the hook keeps a committed manifest in step with its files; who signed it is for `verify --key`
    opts = Options(use_cache=not full, known_digests=known, integrity_only=True)
    report = verify(directory, m, manifest_path=directory / manifest_name, options=opts)
    tracked = tracked_files(directory)
    findings = [f for f in report.findings if not _untracked(f, tracked)]
    untracked = len(report.findings) - len(findings)
    errors = [f for f in findings if f.is_error]
    res = DirResult(shown, ok=not errors)
    n_lfs = report.stats.get("files_from_known_digests", 0)
    if res.ok:
        extra = []
        if n_lfs:
            extra.append(f"{n_lfs} by their staged Git LFS pointer")
        if report.stats.get("files_from_cache"):
            extra.append(f"{report.stats['files_from_cache']} unchanged since the last check (stat cache)")
        if untracked:
            extra.append(f"{untracked} untracked file(s) ignored")
        res.lines.append(f"{shown}: manifest matches {len(m.files)} files ({'; '.join([INTEGRITY_ONLY, *extra])})")
        return res
    for f in errors:
        res.lines.append("  " + f.one_line())
    stale = [f for f in errors if f.code in STALE_CODES]
    broken = [f for f in errors if f.code not in STALE_CODES]
    by_kind: dict[str, list[str]] = {}
    for f in stale:
        kind = {"missing-file": "removed", "extra-file": "new", "missing-directory": "removed", "extra-directory": "new"}.get(f.code, "changed")
        paths = list(f.items) if f.items is not None and f.code != "tensor-mismatch" else [f.path]  # a grouped finding lists its files
        for path in paths:
            if path and path not in by_kind.setdefault(kind, []):
                by_kind[kind].append(path)
    summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in by_kind.items())
    head = f"{shown}: the manifest no longer matches the files" + (f" ({summary})" if summary else "")
    res.lines.insert(0, head)
    if broken:
        res.lines.append(
            f"{shown}: {len(broken)} file(s) are damaged or unsafe; fix them first (refreshing the manifest would record the damage)"
        )
    if stale and not broken:
        res.lines.append(f"refresh the manifest with:  {refresh_command(shown, m, manifest_name, refresh_key)}")
        res.lines.append(f"then stage it:              git add {shlex.quote(os.path.join(shown, manifest_name))}")
    return res


def run_hook(
    directories: list[str], *, full: bool = False, refresh_key: str | None = None, manifest_name: str = DEFAULT_MANIFEST_NAME
) -> tuple[int, list[str]]:
    """Run the hook over ``directories`` (default: every tracked manifest). Returns
    ``(exit status, lines to print)``."""
    cwd = Path.cwd()
    if directories:
        targets = [Path(d) for d in directories]
    else:
        top = git_toplevel(cwd) or cwd
        targets = find_manifests(top, manifest_name)
        if not targets:
            return 0, [f"manifest hook: no tracked {manifest_name} found; nothing to check"]
    lines: list[str] = []
    status = 0
    for d in targets:
        try:
            shown = os.path.relpath(d, cwd)
        except ValueError:
            shown = str(d)
        try:
            r = check_directory(d, full=full, refresh_key=refresh_key, manifest_name=manifest_name, shown=shown)
        except ManifestError as e:
            lines.append(f"{shown}: {e.one_line()}")
            status = max(status, e.exit_status)
            continue
        lines.extend(r.lines)
        if not r.ok:
            status = max(status, 1)
    return status, lines
