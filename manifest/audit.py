"""``audit``: verify many models, each against its own manifest, on a local thread pool
or on a Ray cluster.

Every model is checked by :func:`manifest.api.verify` with the same options, so an audit
gives exactly the findings ``verify`` gives, model by model. What audit adds is the
scheduling and the outcome of each model:

- ``pass`` (exit 0) and ``fail`` (exit 1): the verify report's own verdict;
- ``not-verified`` (exit 2): no report, because the target could not be read (no such
  directory, no or a malformed manifest, ...), or because the worker verifying it, or
  hashing one of its files or chunks, died (a Ray worker or node lost, and its retries ran
  out: ``worker-lost``).

The audit's exit status is the worst of its models'. A model is never counted as
passed unless its own verify report passed.

Ray is imported only with ``ray=...``: the thread pool path never imports it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK, ManifestError, UsageError
from .options import Options

AUDIT_VERSION = 1
OUTCOMES = {EXIT_OK: "pass", EXIT_FAILED: "fail", EXIT_INPUT: "not-verified"}
DEFAULT_RETRIES = 2  # Ray retries of a task whose worker died, before its model is reported not verified
SPLITS = ("auto", "model", "units")
UNIT_MODELS_IN_FLIGHT = 16  # split by units: models whose cheap checks run at once in the audit process
# Test-only: make a Ray task exit abruptly (os._exit, as a killed worker) on its first
# $MANIFEST_TEST_CRASH_TIMES attempts when its key contains $MANIFEST_TEST_CRASH_TARGET: a model
# task's key is its target, a unit task's is TARGET/PATH (a whole file) or TARGET/PATH#K (chunk K,
# see manifest.rayunits.unit_key). Attempts are counted by marker files in $MANIFEST_TEST_CRASH_DIR.
# Read by the driver only.
CRASH_ENV = ("MANIFEST_TEST_CRASH_TARGET", "MANIFEST_TEST_CRASH_TIMES", "MANIFEST_TEST_CRASH_DIR")


@dataclass
class ModelAudit:
    """The outcome of one model: its verify report (as JSON data), or why there is none."""

    target: str
    exit_status: int
    report: dict[str, Any] | None = None
    error: dict[str, str] | None = None  # {"code", "message"} when not verified
    seconds: float = 0.0
    attempts: int | None = None  # Ray: how many times the task ran (retries after a lost worker)
    units: int | None = None  # Ray, split by units: the files and chunks hashed as Ray tasks

    @property
    def outcome(self) -> str:
        return OUTCOMES[self.exit_status]

    def _findings(self, severity: str) -> list[dict[str, Any]]:
        return [f for f in (self.report or {}).get("findings", []) if f.get("severity") == severity]

    @property
    def errors(self) -> int:
        return len(self._findings("error")) if self.report is not None else 1

    @property
    def warnings(self) -> int:
        return len(self._findings("warning"))

    @property
    def first_error(self) -> str | None:
        if self.error is not None:
            return self.error["code"]
        errs = self._findings("error")
        return str(errs[0]["code"]) if errs else None

    @property
    def bytes(self) -> int:
        """Bytes read from the model's files: the remote reads (``facts.bytes_read``) when the
        report has them, else the bytes hashed (0 when digests were not needed or cached)."""
        if self.report is None:
            return 0
        read = self.report.get("facts", {}).get("bytes_read")
        if isinstance(read, int):
            return read
        return int(self.report.get("stats", {}).get("bytes_hashed", 0))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "target": self.target, "outcome": self.outcome, "exit_status": self.exit_status,
            "errors": self.errors, "warnings": self.warnings, "first_error": self.first_error,
            "bytes": self.bytes, "seconds": round(self.seconds, 4),
        }
        if self.attempts is not None:
            d["attempts"] = self.attempts
        if self.units is not None:
            d["units"] = self.units
        if self.error is not None:
            d["error"] = dict(self.error)
        d["report"] = self.report
        return d


@dataclass
class AuditResult:
    models: list[ModelAudit]
    runner: dict[str, Any] = field(default_factory=dict)  # {"kind": "threads"|"ray", "workers": N, ...}
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return max((m.exit_status for m in self.models), default=EXIT_OK)

    def __bool__(self) -> bool:
        return self.exit_status == EXIT_OK

    def by_outcome(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {o: [] for o in OUTCOMES.values()}
        for m in self.models:
            out[m.outcome].append(m.target)
        return out

    def summary(self) -> dict[str, Any]:
        groups = self.by_outcome()
        total = sum(m.bytes for m in self.models)
        return {
            "models": len(self.models),
            **{o.replace("-", "_"): len(ts) for o, ts in groups.items()},
            "failed_targets": groups["fail"], "not_verified_targets": groups["not-verified"],
            "bytes": total, "seconds": round(self.seconds, 4),
            "bytes_per_second": round(total / self.seconds) if self.seconds > 0 else None,
            "exit_status": self.exit_status,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_version": AUDIT_VERSION,
            "tool": {"name": "model-manifest", "version": __version__},
            "command": "audit",
            "runner": dict(self.runner),
            "exit_status": self.exit_status,
            "summary": self.summary(),
            "models": [m.to_dict() for m in self.models],
        }


# --------------------------------------------------------------------------- targets
def is_url(target: str) -> bool:
    """``s3://...``, ``file://...``: an fsspec URL, not a local path."""
    from .paths import is_url as url

    return url(target)


def read_targets(path: str) -> list[str]:
    """Targets from a file (``-``: stdin), one a line; blank lines and ``#`` comments are skipped."""
    if path == "-":
        text = sys.stdin.read()
    else:
        from .fsutil import read_input

        text = read_input(path, 64 * 1024 * 1024, "target list", "input-invalid").decode("utf-8", "replace")
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def _where(target: str) -> str:
    """The target as a worker must be given it: a local path made absolute (a Ray worker's
    working directory is not the caller's), a URL or ORG/NAME as given."""
    if is_url(target) or not os.path.lexists(target):
        return target
    return os.path.abspath(target)


def _on_this_node(where: str) -> bool:
    """Whether the target's bytes are on the audit's machine: a local path or a ``file://`` URL."""
    return not is_url(where) or where.lower().startswith("file://")


# --------------------------------------------------------------------------- one model
def _spec(opts: Options, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The options as plain data a Ray worker can unpickle: keys and CA roots as PEM."""
    spec: dict[str, Any] = {"options": dataclasses.replace(opts, keys=[], cas=[], progress=False), "storage_options": storage_options}
    if opts.keys:
        from cryptography.hazmat.primitives import serialization

        spec["keys"] = [k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) for k in opts.keys]
    if opts.cas:
        from cryptography.hazmat.primitives import serialization

        spec["cas"] = [c.public_bytes(serialization.Encoding.PEM) for c in opts.cas]
    return spec


def _options(spec: dict[str, Any]) -> Options:
    opts: Options = spec["options"]
    keys: list[Any] = []
    cas: list[Any] = []
    if spec.get("keys"):
        from .signing import parse_public_key

        keys = [parse_public_key(k, "a --key sent to the worker") for k in spec["keys"]]
    if spec.get("cas"):
        from .certs import parse_pem_certificates

        cas = [c for pem in spec["cas"] for c in parse_pem_certificates(pem, "a --ca root sent to the worker")]
    return dataclasses.replace(opts, keys=keys, cas=cas) if keys or cas else opts


def verify_model(target: str, spec: dict[str, Any], runner: Any = None) -> dict[str, Any]:
    """Verify one model (a worker's unit of work): ``{"exit_status", "report" | "error", "seconds"}``,
    plain data. Never raises for a model that cannot be verified. ``runner``: a
    :class:`~manifest.digest.UnitRunner` its digests are hashed by (else local threads)."""
    from . import api

    t0 = time.perf_counter()
    try:
        opts = _options(spec)
        if runner is not None:
            opts = dataclasses.replace(opts, hash_runner=runner)
        report = api.verify(target, options=opts, storage_options=spec["storage_options"] if is_url(target) else None)
        out: dict[str, Any] = {"exit_status": report.exit_status, "report": report.to_dict()}
    except ManifestError as e:
        out = {"exit_status": EXIT_INPUT, "error": {"code": e.code, "message": e.one_line()}}
    except Exception as e:  # a bug: the model is not verified, and the audit goes on
        out = {"exit_status": EXIT_INPUT, "error": {"code": "internal", "message": f"error[internal]: {type(e).__name__}: {e}"}}
    # A verify report may pass or fail; anything else is never a pass.
    if out["exit_status"] not in OUTCOMES or (out["exit_status"] == EXIT_OK and "report" not in out):
        out = {"exit_status": EXIT_INPUT, "error": {"code": "internal", "message": "error[internal]: no report"}}
    out["seconds"] = time.perf_counter() - t0
    return out


def _ray_task(target: str, spec: dict[str, Any], crash: dict[str, Any] | None) -> dict[str, Any]:
    """A model as one Ray task: its cheap checks and its digests on one worker."""
    from .rayunits import crash_hook

    attempt = crash_hook(target, crash)
    out = verify_model(target, spec)
    if attempt is not None:
        out["attempts"] = attempt
    return out


def _result(target: str, out: dict[str, Any]) -> ModelAudit:
    return ModelAudit(target, out["exit_status"], report=out.get("report"), error=out.get("error"),
                      seconds=out.get("seconds", 0.0), attempts=out.get("attempts"), units=out.get("units"))


# --------------------------------------------------------------------------- runners
def _threads(targets: list[str], spec: dict[str, Any], workers: int, on_done: Callable[[ModelAudit], None]) -> list[ModelAudit]:
    results: list[ModelAudit | None] = [None] * len(targets)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audit") as pool:
        futures = {pool.submit(verify_model, _where(t), spec): i for i, t in enumerate(targets)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = _result(targets[i], fut.result())
            on_done(results[i])  # type: ignore[arg-type]
    return [r for r in results if r is not None]


def _crash_spec() -> dict[str, Any] | None:
    match, times, where = (os.environ.get(k) for k in CRASH_ENV)
    if not (match and times and where):
        return None
    return {"match": match, "times": int(times), "dir": where}


def _ray(targets: list[str], spec: dict[str, Any], address: str, retries: int, workers: int | None, on_done: Callable[[ModelAudit], None],
         runner: dict[str, Any], split: str = "auto") -> list[ModelAudit]:
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'model-manifest[ray]'") from None
    import contextlib

    # Ray's driver prints its workers' errors on stdout, which is the audit's output.
    with contextlib.redirect_stdout(sys.stderr):
        return _ray_run(ray, targets, spec, address, retries, workers, on_done, runner, split)


def choose_split(split: str, models: int, cpus: int) -> str:
    """``auto``: one task per model when the models are at least as many as the cluster's
    CPUs (every CPU has a model, and each model's cheap checks run on its worker); work
    units (files, chunks) when they are fewer, so that a few large models still keep every
    CPU of every node busy (docs/scale.md, measured)."""
    if split != "auto":
        return split
    return "model" if models >= max(1, cpus) else "units"


def _ray_run(ray: Any, targets: list[str], spec: dict[str, Any], address: str, retries: int, workers: int | None,
             on_done: Callable[[ModelAudit], None], runner: dict[str, Any], split: str = "auto") -> list[ModelAudit]:
    import logging

    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if address == "local":  # a new instance, even when this machine runs another (address=None would join it)
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **kw)
            else:
                ray.init(address=address, **kw)
        except Exception as e:  # a cluster that cannot be joined: nothing was verified
            raise UsageError(f"cannot join the Ray cluster at {address}: {' '.join(str(e).split())[:300]}") from None
        started = True
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((int(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=1)
        crash = _crash_spec()
        split = choose_split(split, len(targets), cpus)
        if split == "units":
            return _ray_units(ray, targets, spec, retries, workers, on_done, runner, here, crash,
                              {"address": address, "nodes": len(nodes), "workers": cpus, "cpus_per_task": 1, "max_retries": retries, "split": split})
        window = min(workers or len(targets), len(targets))  # models in flight at once (default all: the cluster's CPUs decide)
        # The CPUs of a task, and as many hashing threads in it: one when the models outnumber the
        # CPUs (the parallelism is across models), more when they are few (a large model's
        # chunks then hash on several cores of its node), never more than one node has.
        per_task = max(1, min(node_cpus, cpus // max(1, window)))
        runner.update({"address": address, "nodes": len(nodes), "workers": min(window, cpus) if cpus else window,
                       "cpus_per_task": per_task, "max_retries": retries, "split": split})
        spec = {**spec, "options": dataclasses.replace(spec["options"], workers=spec["options"].workers or per_task)}
        task = ray.remote(num_cpus=per_task, max_retries=retries)(_ray_task)
        spec_ref = ray.put(spec)
        refs: dict[Any, int] = {}

        def submit(i: int) -> Any:
            where = _where(targets[i])
            opts: dict[str, Any] = {}
            if _on_this_node(where):  # a local directory is read on the node that holds it (this one)
                opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
            ref = task.options(**opts).remote(where, spec_ref, crash)
            refs[ref] = i
            return ref

        for i in range(window):
            submit(i)
        queued = iter(range(window, len(targets)))
        results: list[ModelAudit | None] = [None] * len(targets)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for _ in done:
                nxt = next(queued, None)
                if nxt is not None:
                    pending.append(submit(nxt))
            for ref in done:
                i = refs[ref]
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # an exception inside the task: verify_model catches all, so a bug
                    out = {"exit_status": EXIT_INPUT, "error": {"code": "internal", "message": f"error[internal]: {' '.join(str(e).split())[:300]}"}}
                except ray.exceptions.RayError as e:  # the worker or its node died, and the retries ran out
                    msg = (f"error[worker-lost]: {targets[i]}: the Ray worker verifying it was lost ({type(e).__name__}) "
                           f"{retries + 1} time{'s' if retries else ''}; not verified")
                    out = {"exit_status": EXIT_INPUT, "error": {"code": "worker-lost", "message": msg}, "attempts": retries + 1}
                results[i] = _result(targets[i], out)
                on_done(results[i])  # type: ignore[arg-type]
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()


def _ray_units(ray: Any, targets: list[str], spec: dict[str, Any], retries: int, workers: int | None, on_done: Callable[[ModelAudit], None],
               runner: dict[str, Any], here: str, crash: dict[str, Any] | None, info: dict[str, Any]) -> list[ModelAudit]:
    """Split by units: each model's verify runs here (its cheap checks decide first, as in
    verify), and its digest work, files and chunks, runs as Ray tasks (manifest.rayunits):
    a local directory's on this node, an object store's anywhere."""
    from .rayunits import RayUnits, run_units

    task = ray.remote(num_cpus=1, max_retries=retries)(run_units)
    window = max(1, min(workers or UNIT_MODELS_IN_FLIGHT, len(targets)))
    runner.update({**info, "models_in_flight": window})
    made: list[RayUnits] = []

    def one(target: str) -> dict[str, Any]:
        where = _where(target)
        units = RayUnits(ray, task, where, node=here if _on_this_node(where) else None, retries=retries, crash=crash,
                         storage_options=spec["storage_options"])
        made.append(units)
        out = verify_model(where, spec, runner=units)
        out["units"] = units.units
        if units.attempts is not None:
            out["attempts"] = units.attempts
        return out

    results: list[ModelAudit | None] = [None] * len(targets)
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="audit-units") as pool:
        futures = {pool.submit(one, t): i for i, t in enumerate(targets)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = _result(targets[i], fut.result())
            on_done(results[i])  # type: ignore[arg-type]
    runner.update({"units": sum(u.units for u in made), "unit_tasks": sum(u.tasks for u in made)})
    return [r for r in results if r is not None]


def audit(
    targets: Iterable[str | os.PathLike[str]],
    *,
    options: Options | None = None,
    ray: str | None = None,
    workers: int | None = None,
    retries: int = DEFAULT_RETRIES,
    storage_options: dict[str, Any] | None = None,
    on_done: Callable[[ModelAudit], None] | None = None,
    split: str = "auto",
) -> AuditResult:
    """Verify every target (a directory, ``ORG/NAME[@REV]`` or URL holding its manifest) with
    :func:`manifest.api.verify` and ``options`` (URL targets read with ``storage_options``).

    ``ray=None`` runs a local thread pool of ``workers`` threads; ``ray="local"`` starts a
    local Ray instance, any other value is the address of a Ray cluster to join (``auto``:
    the one this machine is part of; a Ray already initialized in this process is used as
    it is). ``split`` says what a Ray task is:

    - ``model``: each model is one task (one CPU, or more when the models are fewer than the
      cluster's CPUs), at most ``workers`` in flight (default: as many as the cluster runs);
    - ``units``: each model's cheap checks run in this process (at most ``workers`` models
      at once, default 16) and its digest work, whole files and chunks, runs as one-CPU
      tasks, a local directory's on this node, an object store's on any node;
    - ``auto`` (default): ``model`` when the models are at least as many as the cluster's
      CPUs, else ``units`` (:func:`choose_split`).

    A task whose worker dies is retried ``retries`` times; then its model is
    ``not-verified`` (``worker-lost``). ``on_done`` is called with each
    model's result as it completes (in completion order); the result lists them in the
    order given."""
    items = [os.fspath(t) for t in targets]
    if not items:
        raise UsageError("no targets: give directories or URLs, or --from FILE")
    opts = options or Options()
    if opts.fail_fast:
        raise UsageError("audit verifies every model: --fail-fast does not apply")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if split != "auto" and ray is None:
        raise UsageError("--split applies to --ray only (the thread pool verifies each model in this process)")
    spec = _spec(opts, storage_options)
    done = on_done or (lambda m: None)
    t0 = time.perf_counter()
    if ray is None:
        n = max(1, min(workers or (os.cpu_count() or 1), len(items)))
        runner: dict[str, Any] = {"kind": "threads", "workers": n}
        if opts.workers is None:  # the cores shared out: hashing threads per model
            spec["options"] = dataclasses.replace(spec["options"], workers=max(1, (os.cpu_count() or 1) // n))
        models = _threads(items, spec, n, done)
    else:
        runner = {"kind": "ray"}
        models = _ray(items, spec, ray, retries, workers, done, runner, split)
    return AuditResult(models, runner, time.perf_counter() - t0)


__all__ = ["AuditResult", "ModelAudit", "audit", "read_targets", "verify_model"]


# --------------------------------------------------------------------------- text
def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render_text(result: AuditResult) -> str:
    """The per-model table (model, outcome, errors, warnings, first error, bytes) and a summary line."""
    head = ("MODEL", "OUTCOME", "ERRORS", "WARNINGS", "FIRST ERROR", "BYTES")
    rows = [(m.target, m.outcome, str(m.errors), str(m.warnings), m.first_error or "-", _size(m.bytes)) for m in result.models]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {2, 3, 5}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in [head, *rows]]
    for m in result.models:  # why a model was not verified: the one-line error
        if m.error is not None:
            lines.append(m.error["message"])
    s = result.summary()
    how = result.runner.get("kind", "threads")
    if result.runner.get("workers"):
        how += f", {result.runner['workers']} workers"
    if result.runner.get("split") == "units":
        how += f", {result.runner.get('units', 0)} file and chunk units"
    rate = f" ({_size(s['bytes_per_second'])}/s)" if s["bytes_per_second"] else ""
    lines.append(f"audit: {s['models']} model{'s' if s['models'] != 1 else ''}: {s['pass']} pass, {s['fail']} fail, "
                 f"{s['not_verified']} not verified; {_size(s['bytes'])} read in {s['seconds']:.1f} s{rate} ({how})")
    return "\n".join(lines) + "\n"
