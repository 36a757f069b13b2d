"""Build a Hugging Face cache with huggingface_hub's own download code, offline.

    python tests/hf_cache_builder.py SRC_DIR CACHE_DIR REPO_ID COMMIT [--absent FILE ...] [--lfs-min BYTES]

Runs the real ``snapshot_download(REPO_ID, cache_dir=CACHE_DIR)`` and then, for each
``--absent FILE``, the real ``hf_hub_download`` of FILE answered by the Hub's 404 (even
for a file of SRC_DIR: that is how a ``.no_exist`` marker for a file the snapshot has
comes about), with
huggingface_hub's HTTP client replaced through its public ``set_client_factory`` by an
in-process transport that answers as the Hub does for the files of SRC_DIR. No socket is
ever opened (``HF_ENDPOINT`` points to an unresolvable host in case anything bypassed the
client). So every byte of the cache is written by huggingface_hub itself: blobs named by
the etag it is given (the git blob SHA-1 of a regular file, the SHA-256 of an LFS file),
the relative snapshot links, ``refs/main``, ``trees/<commit>.json`` from the tree listing
(whose ``blob_id`` of an LFS file is the git SHA-1 of its LFS pointer), and the
``.no_exist/<commit>/<file>`` markers.

Files of at least ``--lfs-min`` bytes (default 1 MiB) are served as LFS files.
Prints a JSON object: {"snapshot": path, "files": {rel: {"size", "blob_id", "lfs_sha256"?}}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import unquote


def git_blob_sha1(data: bytes) -> str:
    """What git (and the Hub) names a blob: ``sha1(b"blob <size>\\0" + content)``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file the repository holds for an LFS file (spec v1)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def listing(src: Path, lfs_min: int) -> dict[str, dict[str, object]]:
    """The Hub's tree listing of SRC_DIR: size, blob id (oid) and LFS info per file."""
    out: dict[str, dict[str, object]] = {}
    for p in sorted(src.rglob("*")):
        if not p.is_file() or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(src).as_posix()
        size = p.stat().st_size
        if size >= lfs_min:
            sha = sha256_file(p)
            pointer = lfs_pointer(sha, size)
            out[rel] = {"size": size, "blob_id": git_blob_sha1(pointer), "lfs_sha256": sha, "pointer_size": len(pointer)}
        else:
            out[rel] = {"size": size, "blob_id": git_blob_sha1(p.read_bytes())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("cache")
    ap.add_argument("repo")
    ap.add_argument("commit")
    ap.add_argument("--absent", action="append", default=[])
    ap.add_argument("--lfs-min", type=int, default=1024 * 1024)
    a = ap.parse_args()
    src = Path(a.src)
    files = listing(src, a.lfs_min)

    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ["TRANSFORMERS_OFFLINE"] = "0"
    os.environ["HF_ENDPOINT"] = "https://hub.invalid"
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    import httpx2
    from huggingface_hub import hf_hub_download, set_client_factory, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    absent: set[str] = set()  # answered 404 from the second phase on
    api_prefix = f"/api/models/{a.repo}"
    resolve_prefix = f"/{a.repo}/resolve/"

    def handler(request: httpx2.Request) -> httpx2.Response:
        path = unquote(request.url.path)
        common = {"X-Repo-Commit": a.commit}
        if path in (f"{api_prefix}/revision/main", f"{api_prefix}/revision/{a.commit}"):
            body = {"id": a.repo, "modelId": a.repo, "sha": a.commit, "private": False,
                    "siblings": [{"rfilename": r} for r in files]}
            return httpx2.Response(200, json=body, headers=common)
        if path.startswith(f"{api_prefix}/tree/"):
            items = []
            for r, e in files.items():
                item: dict[str, object] = {"type": "file", "path": r, "size": e["size"], "oid": e["blob_id"]}
                if "lfs_sha256" in e:
                    item["lfs"] = {"oid": e["lfs_sha256"], "size": e["size"], "pointerSize": e["pointer_size"]}
                items.append(item)
            return httpx2.Response(200, json=items, headers=common)
        if path.startswith(resolve_prefix):
            rev, _, rel = path[len(resolve_prefix):].partition("/")
            if rev not in ("main", a.commit):
                return httpx2.Response(404, headers={"X-Error-Code": "RevisionNotFound"})
            e = files.get(rel) if rel not in absent else None
            if e is None:
                return httpx2.Response(404, headers={**common, "X-Error-Code": "EntryNotFound"})
            data = (src / rel).read_bytes() if request.method == "GET" else b""
            headers = {**common, "Content-Length": str(e["size"])}
            if "lfs_sha256" in e:
                headers.update({"X-Linked-Etag": f'"{e["lfs_sha256"]}"', "X-Linked-Size": str(e["size"]), "ETag": f'"{e["blob_id"]}"'})
            else:
                headers["ETag"] = f'"{e["blob_id"]}"'
            return httpx2.Response(200, content=data, headers=headers)
        return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"})

    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(handler)))
    snapshot = snapshot_download(a.repo, cache_dir=a.cache)
    absent.update(a.absent)
    for rel in a.absent:
        try:
            hf_hub_download(a.repo, rel, cache_dir=a.cache)
        except EntryNotFoundError:
            pass  # what the Hub answers for a file it does not have; huggingface_hub wrote the marker
        else:
            sys.exit(f"{rel}: expected the Hub's 404")
    print(json.dumps({"snapshot": snapshot, "files": {r: {k: v for k, v in e.items() if k != "pointer_size"} for r, e in files.items()}}))


if __name__ == "__main__":
    main()
