"""Digest work units as Ray tasks: ``audit --ray`` split by units.

The cheap checks of a model (signature, file set, sizes, headers, side files) run where
:func:`manifest.api.verify` runs, exactly as in ``verify``; only its digest work, the
:class:`~manifest.digest.Unit` s of its :class:`~manifest.digest.HashJob` (whole files, and
chunks of the files verified by chunk digests), is sent to the cluster by
:class:`RayUnits`, the job's :class:`~manifest.digest.UnitRunner`:

- near the data: a unit of a local directory is pinned to the node that holds it (the one
  the audit runs on, ``NodeAffinitySchedulingStrategy``, hard); a unit of an object store
  may run on any node, and Ray spreads them (``SPREAD``);
- small whole files travel in batches (about :data:`BATCH_BYTES`, at most
  :data:`BATCH_FILES` a task), so that a task's fixed cost is paid per batch;
- a task whose worker dies is run again by Ray (``max_retries``); when every retry died
  too, the job raises :class:`WorkerLost` (``worker-lost``, exit 2): the model is not
  verified, never passed nor merely failed.

Results are the digest engine's own values (:class:`~manifest.digest.Hashed`, or the
``OSError``/:class:`~manifest.digest.FileChanged` of a file), in the order given, so the
comparison, the findings and the report are ``verify``'s. Imported only on the Ray path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .digest import FileChanged, Hashed, Unit, hash_unit
from .errors import InputError
from .inventory import Artifact, FileInfo

BATCH_BYTES = 64 << 20  # whole files under this size are batched into tasks of about this many bytes
BATCH_FILES = 1024  # and at most this many files a task


class WorkerLost(InputError):
    """The Ray worker (or node) running a unit died, and every retry too."""

    code = "worker-lost"


def unit_key(target: str, unit: Unit) -> str:
    """How a unit is named (the crash hook matches it): ``TARGET/PATH`` or ``TARGET/PATH#K`` for chunk K."""
    return f"{target}/{unit.info.path}" + (f"#{unit.index}" if unit.index is not None else "")


def crash_hook(key: str, crash: dict[str, Any] | None) -> int | None:
    """Test-only (see ``manifest.audit.CRASH_ENV``): exit abruptly, as a killed worker, on
    the first ``times`` attempts of a task whose key contains ``match``; attempts are counted
    by marker files in ``dir``. Returns this attempt's number when the key matches."""
    if not crash or crash["match"] not in key:
        return None
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    done = len([n for n in os.listdir(crash["dir"]) if n.startswith(tag)])
    if done < crash["times"]:
        Path(crash["dir"], f"{tag}.{done}.{os.getpid()}").touch()
        os._exit(17)
    return done + 1


def batches(units: list[Unit]) -> list[list[Unit]]:
    """Consecutive small whole files grouped (about :data:`BATCH_BYTES`, at most
    :data:`BATCH_FILES`); a large file or a chunk is a task of its own. Order is kept."""
    out: list[list[Unit]] = []
    size = BATCH_BYTES
    for u in units:
        small = u.index is None and u.info.size < BATCH_BYTES
        if small and out and size + u.info.size <= BATCH_BYTES and len(out[-1]) < BATCH_FILES:
            out[-1].append(u)
            size += u.info.size
        else:
            out.append([u])
            size = u.info.size if small else BATCH_BYTES
    return out


def _portable(e: Exception) -> Exception:
    """A unit's error as a value that crosses processes intact: FileChanged or OSError."""
    if isinstance(e, FileChanged):
        return FileChanged(str(e))
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return OSError(e.errno, e.strerror)
    return OSError(str(e) or type(e).__name__)


def _artifact(where: dict[str, Any], infos: list[FileInfo]) -> Artifact:
    """The artifact a worker reads the units from: the local root, or the remote prefix."""
    files = {i.path: i for i in infos}
    if "url" in where:
        from .remote import RemoteArtifact, RemoteTarget

        t = RemoteTarget.open(where["url"], where.get("storage_options"))
        return RemoteArtifact(root=PurePosixPath(t.base), files=files, fs=t.fs, base=t.base, url=t.url)  # type: ignore[arg-type]
    return Artifact(root=Path(where["root"]), files=files)


def run_units(where: dict[str, Any], units: list[Unit], crash: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of one Ray task: hash ``units`` of the artifact ``where`` names, one thread
    (the task holds one CPU). Every unit gets a result; nothing is raised for a file."""
    attempt = None
    for u in units:
        attempt = crash_hook(unit_key(where["target"], u), crash) or attempt
    art = _artifact(where, [u.info for u in units])
    results: list[Hashed | Exception] = []
    for u in units:
        try:
            results.append(hash_unit(art, u, threads=False))
        except Exception as e:  # OSError, FileChanged, InputError (no longer a regular file)
            results.append(_portable(e))
    out: dict[str, Any] = {"results": results, "bytes_read": getattr(art, "bytes_read", 0), "requests": getattr(art, "requests", 0)}
    if attempt is not None:
        out["attempts"] = attempt
    return out


class RayUnits:
    """A :class:`~manifest.digest.UnitRunner` that runs the units of one model as Ray tasks
    of ``task`` (``ray.remote(run_units)``, with the audit's ``max_retries``). ``node``: the
    node the data is on (a local directory, a ``file://`` URL): its units are pinned there;
    None (an object store): they are spread over the nodes."""

    def __init__(self, ray: Any, task: Any, target: str, *, node: str | None, retries: int, crash: dict[str, Any] | None = None,
                 storage_options: dict[str, Any] | None = None):
        self._ray, self._task, self.target = ray, task, target
        self._node, self._retries, self._crash, self._storage_options = node, retries, crash, storage_options
        self._refs: list[Any] = []
        self._done = 0
        self.units = 0  # work units (files and chunks) sent
        self.tasks = 0  # Ray tasks (units, small files batched)
        self.attempts: int | None = None  # the most attempts a unit of the crash hook needed
        self.lost = False

    def start(self, artifact: Artifact, units: list[Unit]) -> Iterator[Hashed | Exception]:
        where: dict[str, Any] = {"target": self.target}
        if artifact.remote:
            where.update(url=getattr(artifact, "url", ""), storage_options=self._storage_options)
        else:
            where["root"] = os.fspath(artifact.root)
        opts: dict[str, Any] = {"scheduling_strategy": "SPREAD"}
        if self._node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=self._node, soft=False)
        groups = batches(units)
        self.units += len(units)
        self.tasks += len(groups)
        task = self._task.options(**opts)
        self._refs = [task.remote(where, g, self._crash) for g in groups]
        self._done = 0
        return self._gather(artifact, groups)

    def _gather(self, artifact: Artifact, groups: list[list[Unit]]) -> Iterator[Hashed | Exception]:
        ray = self._ray
        for group, ref in zip(groups, self._refs, strict=True):
            try:
                out = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # run_units catches every file's error: this is a bug, or no manifest on the node
                raise RuntimeError(f"the Ray task hashing {group[0].info.path} failed: {' '.join(str(e).split())[:300]}") from None
            except ray.exceptions.RayError as e:  # the worker or its node died, and every retry too
                self.lost = True
                self.attempts = self._retries + 1
                paths = [u.info.path for u in group]
                what = (f"{paths[0]} (chunk {group[0].index})" if group[0].index is not None else
                        ", ".join(paths[:3]) + (f" and {len(paths) - 3} more files" if len(paths) > 3 else ""))
                raise WorkerLost(f"{self.target}: the Ray worker hashing {what} was lost ({type(e).__name__}) {self._retries + 1} "
                                 f"time{'s' if self._retries else ''}; not verified") from None
            finally:
                self._done += 1
            if out.get("attempts"):
                self.attempts = max(self.attempts or 0, out["attempts"])
            add_reads = getattr(artifact, "add_reads", None)  # a remote artifact counts what its units read (facts.bytes_read)
            if add_reads is not None:
                add_reads(out["bytes_read"], out["requests"])
            yield from out["results"]

    def close(self) -> None:
        """Cancel the tasks whose results were not taken (the job stopped early)."""
        for ref in self._refs[self._done:]:
            try:
                self._ray.cancel(ref)
            except Exception:  # pragma: no cover - already finished, or the cluster is gone
                pass
        self._done = len(self._refs)
