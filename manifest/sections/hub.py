"""The `hub` section: cross-check a Hugging Face cache snapshot against the Hub's own
records kept in the cache, with no manifest.

Runs only for ``ORG/NAME[@REV]`` targets (``art._memo["hub"]`` holds the
:class:`~manifest.hfcache.Snapshot`). The Hub's records:

- a blob's file name is the Hub's hash of its content: the SHA-256 for LFS files,
  the git blob SHA-1 (``sha1("blob <size>\\0" + content)``) for small files;
- ``trees/<commit>.json`` (written by huggingface_hub >= 1.x) lists every file of the
  commit with its size, git ``blob_id`` and, for LFS files, ``lfs_sha256``.

Findings: ``hub-record-mismatch`` (a file disagrees with either record: size, blob
name, content), ``incomplete-download`` (``*.incomplete`` blobs, files listed by the
Hub but absent from the snapshot, snapshot links whose blob is gone),
``hub-absent-marker`` (a ``.no_exist/<commit>/<path>`` marker for a file the snapshot,
the Hub's listing or the manifest has: huggingface_hub's ``try_to_load_from_cache`` and
so transformers' ``from_pretrained(repo_id)`` treat that file as absent and fall back to
defaults, whatever the snapshot holds).

Cost: sizes, names and the listing are free; small files are hashed (git SHA-1).
LFS blobs are re-hashed (SHA-256) by ``check`` only: ``verify`` compares them with
the manifest's digests instead, so the weights are not read twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..findings import Finding, Severity
from ..fsutil import read_regular
from ..inventory import Artifact, FileInfo, is_within
from ..jsonio import JSONError, loads_strict
from ..options import Options
from ..report import Report

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
MAX_TREE_FILE = 64 * 1024 * 1024
BLOCK = 1 << 20


@dataclass(frozen=True)
class TreeEntry:
    """One file of the Hub's listing for a commit (``trees/<commit>.json``)."""

    size: int
    blob_id: str | None
    lfs_sha256: str | None

    @property
    def blob_name(self) -> str | None:
        """The name huggingface_hub gives this file's blob (its etag)."""
        return self.lfs_sha256 or self.blob_id


def read_tree(path: str | os.PathLike[str]) -> dict[str, TreeEntry]:
    """Parse a tree listing strictly. Raises ValueError (with a one-line reason)."""
    data = read_regular(path, MAX_TREE_FILE)  # a FIFO swapped in after the isfile() check cannot block
    if len(data) > MAX_TREE_FILE:
        raise ValueError(f"over the {MAX_TREE_FILE}-byte cap")
    try:
        doc = loads_strict(data)
    except JSONError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format_version") != 1 or not isinstance(doc.get("files"), dict):
        raise ValueError("not a format_version 1 tree listing")
    out: dict[str, TreeEntry] = {}
    for p, ent in doc["files"].items():
        if not isinstance(ent, dict) or not isinstance(ent.get("size"), int) or isinstance(ent.get("size"), bool):
            raise ValueError(f"entry {p!r} has no integer size")
        blob_id, lfs = ent.get("blob_id"), ent.get("lfs_sha256")
        out[p] = TreeEntry(
            size=ent["size"] if not isinstance(ent.get("lfs_size"), int) else ent["lfs_size"],
            blob_id=blob_id if isinstance(blob_id, str) else None,
            lfs_sha256=lfs.lower() if isinstance(lfs, str) else None,
        )
    return out


def git_blob_sha1(art: Artifact, info: FileInfo) -> str:
    """The git blob id of a file, streamed: ``sha1(b"blob <size>\\0" + content)``."""
    h = hashlib.sha1(f"blob {info.size}\0".encode("ascii"), usedforsecurity=False)
    with art.open(info.path) as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return h.hexdigest()


class HubSection:
    name = "hub"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        return None

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        snap = art._memo.get("hub")
        if snap is None:
            return ()
        return _grouped(list(_diagnose(art, snap, opts, report)), snap)

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        return ()


def fetch_again(snap: Any, rel: str | None = None, *, force: bool = False) -> str:
    """The ``hf download`` command that fetches ``rel`` (default: the whole snapshot) of this commit again."""
    import shlex

    parts = ["hf", "download", snap.repo_id, *([rel] if rel else []), "--revision", snap.commit]
    if force:
        parts.append("--force-download")
    return " ".join(shlex.quote(p) for p in parts)


_GONE = "the snapshot links to blob "
_UNLISTED = "listed by the Hub for commit "


def _grouped(findings: list[Finding], snap: Any) -> list[Finding]:
    """Many files with the same download problem (half a snapshot missing) are one finding."""
    from dataclasses import replace

    from ..findings import examples, group_repeats

    def key(f: Finding) -> str | None:
        if f.code == "incomplete-download" and f.message.startswith(_GONE):
            return "gone"
        if f.code == "incomplete-download" and f.message.startswith(_UNLISTED):
            return "unlisted"
        return None

    def describe(members: list[Finding], items: tuple[str, ...]) -> str:
        if key(members[0]) == "gone":
            return f"{len(items)} snapshot links point to blobs that are not in the cache (deleted or never finished): {examples(items)}"
        return f"{len(items)} files listed by the Hub for commit {snap.commit[:12]} are missing from the snapshot: {examples(items)}"

    out = group_repeats(findings, key, describe)
    return [replace(f, hint=f"download them again: {fetch_again(snap)}") if f.items is not None else f for f in out]


def _diagnose(art: Artifact, snap: Any, opts: Options, report: Report) -> Iterator[Finding]:
    report.facts["hub"] = {"repo_id": snap.repo_id, "revision": snap.revision, "commit": snap.commit, "snapshot": str(snap.root)}
    blobs = os.path.realpath(snap.blobs)
    # -- the Hub's listing for this commit, if huggingface_hub cached one (never through a link)
    tree: dict[str, TreeEntry] | None = None
    if os.path.islink(snap.tree_file) or (os.path.lexists(snap.tree_file) and not os.path.isfile(snap.tree_file)):
        report.mark_not_checked("hub-tree", f"trees/{snap.commit}.json is a symlink or not a regular file; it is not read")
    elif os.path.isfile(snap.tree_file):
        try:
            tree = read_tree(snap.tree_file)
        except (OSError, ValueError) as e:
            report.mark_not_checked("hub-tree", f"trees/{snap.commit}.json is unusable ({e})")
    else:
        report.mark_not_checked(
            "hub-tree",
            f"no trees/{snap.commit}.json in the cache (written by huggingface_hub >= 1.x downloads): "
            "file list and sizes not compared with the Hub's",
        )
    # -- snapshot links whose blob is gone, files the Hub lists that the snapshot lacks
    dangling: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(snap.root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, name)
            if os.path.islink(full) and not os.path.exists(full) and is_within(os.path.realpath(full), blobs):
                rel = os.path.relpath(full, snap.root).replace(os.sep, "/")
                dangling.add(rel)
                yield Finding.of(
                    "incomplete-download",
                    f"the snapshot links to blob {os.path.basename(os.readlink(full))}, "
                    "which is not in the cache (deleted or never finished)",
                    path=rel,
                    hint=f"download it again: {fetch_again(snap, rel)}",
                )
    if tree is not None:
        for rel in sorted(tree):
            if rel not in dangling and not os.path.lexists(os.path.join(snap.root, *rel.split("/"))):
                yield Finding.of(
                    "incomplete-download",
                    f"listed by the Hub for commit {snap.commit[:12]} but missing from the snapshot",
                    path=rel,
                    expected=tree[rel].size,
                    hint=f"download it: {fetch_again(snap, rel)}",
                )
        report.mark_checked("hub-tree")
    # -- "the Hub has no such file" markers for files that are there
    names = set(art.files) | set(tree or {}) | set(art._memo.get("manifest_files", ()))
    yield from _absent_markers(snap, names, report)
    # -- unfinished downloads in this repo's blob store
    wanted = {e.blob_name: p for p, e in (tree or {}).items() if e.blob_name}
    try:
        partial = sorted(n for n in os.listdir(snap.blobs) if n.endswith(".incomplete"))
    except OSError:
        partial = []
    for n in partial:
        etag = n[: -len(".incomplete")]
        owner = wanted.get(etag)
        if owner is not None:
            yield Finding.of("incomplete-download", f"its download never finished (blobs/{n} is partial)", path=owner,
                             hint=f"finish the download (it resumes): {fetch_again(snap, owner)}")
        elif tree is not None:
            yield Finding.of(
                "incomplete-download",
                f"blobs/{n} is an unfinished download of a file not in commit {snap.commit[:12]}",
                path=f"blobs/{n}",
                severity=Severity.WARNING,
                hint=f"delete blobs/{n}, or finish the download it belongs to",
            )
        else:
            yield Finding.of(
                "incomplete-download",
                f"blobs/{n} is an unfinished download (no tree listing tells which file it belongs to)",
                path=f"blobs/{n}",
                hint=f"finish the download (it resumes): {fetch_again(snap)}",
            )
    # -- every file against its blob name and the listing
    lfs_todo: list[tuple[FileInfo, str]] = []
    uncovered: list[str] = []
    for rel, info in art.files.items():
        entry = tree.get(rel) if tree is not None else None
        blob = os.path.basename(info.source) if info.source is not None and is_within(info.source, blobs) else None
        if entry is not None:
            if info.size != entry.size:
                yield Finding.of(
                    "hub-record-mismatch",
                    f"{info.size} bytes, the Hub records {entry.size} (truncated or replaced after download)",
                    path=rel,
                    expected=entry.size,
                    actual=info.size,
                    hint=f"download it again: {fetch_again(snap, rel, force=True)}",
                )
                continue
            if blob is not None and entry.blob_name is not None and blob != entry.blob_name:
                yield Finding.of(
                    "hub-record-mismatch",
                    f"links to blob {blob[:16]}..., the Hub records {entry.blob_name[:16]}... for this commit",
                    path=rel,
                    expected=entry.blob_name,
                    actual=blob,
                    hint=f"download it again: {fetch_again(snap, rel, force=True)}",
                )
                continue
        elif tree is not None and rel not in tree:
            yield Finding.of(
                "hub-record-mismatch",
                f"not in the Hub's listing of commit {snap.commit[:12]} (added to the snapshot by hand?)",
                path=rel,
                hint="delete it from the snapshot: the cache holds only what the Hub served",
            )
            uncovered.append(rel)
            continue
        if blob is None or not (_SHA1.match(blob) or _SHA256.match(blob)):
            uncovered.append(rel)  # a plain file (or an unknown blob name): no Hub hash to compare with
            continue
        if _SHA1.match(blob):
            try:
                got = git_blob_sha1(art, info)
            except OSError as e:
                yield Finding.of("unreadable", f"cannot read: {e.strerror}", path=rel)
                continue
            if got != blob:
                yield Finding.of(
                    "hub-record-mismatch",
                    f"git blob id is {got[:16]}..., but the blob is named by the Hub's {blob[:16]}... (changed after download)",
                    path=rel,
                    expected=blob,
                    actual=got,
                    hint=f"download it again: {fetch_again(snap, rel, force=True)}",
                )
        elif _SHA256.match(blob):
            lfs_todo.append((info, blob))
    report.mark_checked("hub-record")
    if uncovered:
        report.mark_not_checked(
            "hub-content", f"{len(uncovered)} file(s) are not linked to a blob named by the Hub's hash: {', '.join(uncovered[:5])}"
        )
    if lfs_todo:
        if report.command != "check" and not opts.exhaustive:
            report.mark_not_checked(
                "hub-lfs-content",
                "verify compares LFS files with the manifest's digests; `manifest check ORG/NAME` compares them with the Hub's SHA-256",
            )
            return
        yield from _check_lfs(art, lfs_todo, opts, report)
    if report.command == "check" and not uncovered:  # every file's content was compared with a digest the Hub recorded
        report.mark_checked("digests")


def _absent_markers(snap: Any, names: set[str], report: Report) -> Iterator[Finding]:
    """``.no_exist/<commit>/<path>`` entries (and ``.no_exist/<revision>/`` when the
    revision is not the commit) for a file in ``names``. huggingface_hub writes one
    (an empty file) when the Hub answered 404 for that file at that commit, and its
    ``try_to_load_from_cache`` checks ``os.path.isfile`` of it before looking at the
    snapshot: transformers then treats the file as absent. The folders are listed
    without following any link; a link inside is a finding of its own (huggingface_hub
    would follow it), and nothing it points to is looked at."""
    base = snap.repo_dir / ".no_exist"
    revs = [snap.commit] + ([snap.revision] if snap.revision != snap.commit else [])
    prefixes = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    for rev in revs:
        top = base.joinpath(*rev.split("/"))
        shown = f".no_exist/{rev}"
        if not os.path.lexists(top):
            continue
        if os.path.islink(top) or not os.path.isdir(top):
            yield Finding.of("hub-absent-marker", f"{shown} is a symlink or not a folder: huggingface_hub would look for "
                             "\"no such file\" markers through it", path=shown, hint=f"delete {snap.repo_dir.name}/{shown}")
            continue
        for dirpath, dirnames, filenames in os.walk(top):  # never follows links
            dirnames.sort()
            here = os.path.relpath(dirpath, top).replace(os.sep, "/")
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                rel = name if here == "." else f"{here}/{name}"
                linked_dir = os.path.islink(os.path.join(dirpath, name)) and rel in prefixes
                if rel in names or linked_dir:
                    yield Finding.of(
                        "hub-absent-marker",
                        f"{shown}/{rel} marks it as absent on the Hub: huggingface_hub and transformers skip the file "
                        "when loading by repo id and use defaults instead" if not linked_dir else
                        f"{shown}/{rel} is a symlinked folder: huggingface_hub would look for \"no such file\" markers through it",
                        path=rel,
                        hint=f"delete {snap.repo_dir.name}/{shown}/{rel}, and load the verified snapshot by its path "
                        "(facts.snapshot_path), not by repo id",
                    )
    report.mark_checked("hub-absent-markers")


def _check_lfs(art: Artifact, todo: list[tuple[FileInfo, str]], opts: Options, report: Report) -> Iterator[Finding]:
    from ..api import _cache
    from ..digest import FileChanged, hash_files

    expected = {info.path: blob for info, blob in todo}
    cache = _cache(opts, ("hub", os.path.realpath(art.root)))
    for info, res, _cached in hash_files(art, [i for i, _ in todo], ["sha256"], workers=opts.workers, cache=cache):
        if isinstance(res, FileChanged):
            yield Finding.of("file-changed", f"changed while it was read ({res}); not compared with the Hub's record", path=info.path)
        elif isinstance(res, Exception):
            yield Finding.of("unreadable", f"cannot read: {getattr(res, 'strerror', None) or res}", path=info.path)
        elif res["sha256"] != expected[info.path]:
            blob = expected[info.path]
            yield Finding.of(
                "hub-record-mismatch",
                f"sha256 is {res['sha256'][:16]}..., but the blob is named by the Hub's {blob[:16]}... (corrupted after download)",
                path=info.path,
                expected=blob,
                actual=res["sha256"],
                hint=f"download it again: {fetch_again(art._memo['hub'], info.path, force=True)}",
            )
    report.mark_checked("hub-lfs-content")
