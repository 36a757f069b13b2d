"""The ``weights`` section: safetensors headers, shard indexes, LFS pointers, pickle
imports and the memory needed to load.

Everything here reads headers and small files only (8 bytes + the JSON header of each
safetensors file, index JSON, pointer-sized files, the pickles of a pickle checkpoint),
never tensor data, so it runs before any digest and a broken checkpoint is rejected in
time that does not grow with the model.

Recorded in the manifest (``signed.weights``, schema ``schemas/section-weights.schema.json``)::

    {"version": 1,
     "files": [{"path": "model.safetensors",
         "header_sha256": "...", "header_len": 11408, "parameters": 22713728,
         "bytes_by_dtype": {"F32": 90852864, "I64": 4096},
         "tensors": {"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [30522, 384]}, ...}}],
     "totals": {"files": 1, "tensors": 104, "parameters": 22713728, "bytes": 90856960,
                "bytes_by_dtype": {"F32": 90852864, "I64": 4096}}}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InputError, ManifestInvalid
from ..findings import Finding, Severity, examples, group_repeats
from ..formats import INDEX_SUFFIXES, PICKLE_SUFFIXES
from ..formats.safetensors import Header, HeaderError, TensorInfo, read_header
from ..inventory import Artifact
from ..jsonio import MAX_DOCUMENT_BYTES, gc_paused
from ..options import Options
from ..report import Report

SECTION_VERSION = 1
MAX_FINDINGS_PER_FILE = 20


# ----------------------------------------------------------------------------- reading
def safetensors_files(art: Artifact) -> list[str]:
    """The artifact's ``*.safetensors`` files, sorted (memoized: every check asks)."""
    return art.memo("safetensors-files", lambda: sorted(p for p in art.files if p.endswith(".safetensors")))


def header_of(art: Artifact, rel: str) -> Header | HeaderError | OSError:
    """The parsed header of one file (memoized), or the error that stopped it."""

    def compute() -> Header | HeaderError | OSError:
        try:
            with art.open(rel) as f:
                return read_header(f, art.files[rel].size)
        except HeaderError as e:
            return e
        except InputError as e:
            return OSError(e.message)
        except OSError as e:
            return e

    return art.memo(("safetensors-header", rel), compute)


def live_header(art: Artifact, rel: str) -> Header | None:
    """The header of ``rel`` when it parses, even if the data is cut short (truncated)."""
    h = header_of(art, rel)
    if isinstance(h, Header):
        return h
    if isinstance(h, HeaderError) and isinstance(h.facts.get("header"), Header):
        return h.facts["header"]
    return None


def clean_header(art: Artifact, rel: str) -> Header | None:
    h = header_of(art, rel)
    return h if isinstance(h, Header) else None


def tensor_table(art: Artifact) -> dict[str, TensorInfo]:
    """All tensors of all safetensors files that parse cleanly, merged by name (memoized).

    When two files hold a tensor of the same name, the first file in path order wins."""

    def compute() -> dict[str, TensorInfo]:
        headers = [h for h in (header_of(art, rel) for rel in safetensors_files(art)) if isinstance(h, Header)]
        if len(headers) == 1:
            return headers[0].tensors  # read only: no copy of what may be a million entries
        out: dict[str, TensorInfo] = {}
        with gc_paused():
            for h in reversed(headers):  # the first file in path order wins
                out.update(h.tensors)
        return out

    return art.memo("tensor-table", compute)


def header_digest(h: Header) -> str:
    return hashlib.sha256(h.raw).hexdigest()


def _merge(into: dict[str, int], add: dict[str, int]) -> None:
    for k, v in add.items():
        into[k] = into.get(k, 0) + v


def load_facts(art: Artifact) -> dict[str, Any]:
    """Bytes needed to load the weights (every safetensors file that parses), by dtype."""
    by_dtype: dict[str, int] = {}
    params = tensors = 0
    files = []
    for rel in safetensors_files(art):
        h = live_header(art, rel)
        if h is None:
            continue
        files.append(rel)
        _merge(by_dtype, h.bytes_by_dtype())
        params += h.parameters
        tensors += len(h.tensors)
    return {
        "files": files,
        "tensors": tensors,
        "parameters": params,
        "load_bytes": sum(by_dtype.values()),
        "bytes_by_dtype": dict(sorted(by_dtype.items())),
    }


def mem_available(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes, or None where /proc/meminfo does not say."""
    try:
        with open(meminfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    return int(parts[1]) * (1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if x < 1024 or unit == "TiB":
            return f"{x:.1f} {unit}" if unit != "B" else f"{n} B"
        x /= 1024
    return f"{n} B"  # pragma: no cover


# ----------------------------------------------------------------------------- diagnose
def _header_findings(art: Artifact, rel: str) -> Iterator[Finding]:
    h = header_of(art, rel)
    if isinstance(h, Header):
        return
    if isinstance(h, OSError):
        yield Finding.of("unreadable", f"cannot read the safetensors header: {h.strerror or h}", path=rel)
        return
    if h.code == "lfs-pointer":
        yield _lfs_finding(rel, h.facts.get("oid") or "", h.facts.get("size"))
        return
    hint = None
    if h.code == "truncated":
        hint = f"download the file again (`hf download ORG/NAME {rel}`, or `git lfs pull`)"
    elif h.facts.get("rule") == "not-safetensors":
        hint = "the download saved something else (an error page, a pointer, another format); fetch the file again"
    yield Finding.of(h.code, h.message, path=rel, expected=h.facts.get("expected"), actual=h.facts.get("actual"), hint=hint)


def _lfs_finding(rel: str, oid: str, size: int | None) -> Finding:
    points = f"oid {oid or '(none)'}, {size if size is not None else 'unknown'} bytes"
    return Finding.of(
        "lfs-pointer",
        f"Git LFS pointer in place of the content ({points}): the real file was never downloaded",
        path=rel, expected={"oid": oid, "size": size}, hint="run `git lfs install && git lfs pull`, or download the file from the Hub",
    )


def _lfs_findings(art: Artifact) -> Iterator[Finding]:
    from ..formats.lfs import pointers

    for rel, ptr in pointers(art).items():
        yield _lfs_finding(rel, ptr.oid, ptr.size)


def _index_findings(art: Artifact) -> Iterator[Finding]:
    from ..formats.lfs import pointer_of
    from ..formats.shards import IndexError_, check_index, is_index, parse_index

    for rel in sorted(p for p in art.files if is_index(p)):
        if pointer_of(art, rel) is not None:
            continue
        try:
            index = parse_index(rel, art.read_bytes(rel))
        except (IndexError_, InputError) as e:
            yield Finding.of("index-mismatch", f"the shard index cannot be used: {e}", path=rel)
            continue
        except OSError as e:
            yield Finding.of("unreadable", f"cannot read the shard index: {e.strerror or e}", path=rel)
            continue
        sizes = {p: i.size for p, i in art.files.items()}
        for prob in check_index(index, sizes, lambda s: clean_header(art, s) if s.endswith(".safetensors") else None):
            if prob.loads_anyway:  # from_pretrained loads the same model: a stale index, not a broken checkpoint
                yield Finding.of("index-mismatch", prob.message, path=prob.path, expected=prob.expected, actual=prob.actual,
                                 severity=Severity.WARNING,
                                 hint="the index is stale: transformers reads every listed shard whole and still loads the model, "
                                      "but loaders that look tensors up in weight_map do not; re-save the checkpoint (save_pretrained) "
                                      "or regenerate the index from the shards")
                continue
            yield Finding.of("index-mismatch", prob.message, path=prob.path, expected=prob.expected, actual=prob.actual,
                             hint="re-save the checkpoint (save_pretrained) or download the index and all shards of one revision")


_TRAINER_STATE = {"training_args.bin": "the training arguments", "optimizer.pt": "the optimizer state",
                  "scheduler.pt": "the learning-rate scheduler state", "scaler.pt": "the mixed-precision grad scaler state",
                  "rng_state.pth": "the random-number generator state"}
#: Imports a Trainer state file needs besides a plain state dict's (its argument and enum classes).
_TRAINER_MODULES = ("transformers.", "accelerate.", "torch.", "numpy.", "enum.", "builtins.getattr")


def trainer_state(rel: str) -> str | None:
    """What a Trainer checkpoint file is (``optimizer.pt``, ``rng_state_3.pth``, ...), or None."""
    import re

    name = re.sub(r"^rng_state_\d+\.pth$", "rng_state.pth", rel.rpartition("/")[2])
    return _TRAINER_STATE.get(name)


def _trainer_state_finding(rel: str, what: str, scan: Any, shown: str, partial: str) -> Finding:
    """Trainer state beside the model: never read by from_pretrained, only by resuming training."""
    stray = [i for i in scan.unexpected if not i.startswith(_TRAINER_MODULES)]
    base = (f"{what}, saved by the Trainer to resume training: not model weights, and from_pretrained never reads it. "
            f"It is a pickle ({scan.kind}) that torch.load would run")
    hint = "nothing to do for inference; leave it out of a published model (only resuming training needs it)"
    if scan.dangerous:
        return Finding.of("pickle-file", f"{base}, and it imports {', '.join(scan.dangerous)}, which runs code{partial}; all imports: {shown}",
                          path=rel, actual=list(scan.imports), severity=Severity.ERROR,
                          hint="do not resume training from this file; delete it (only resuming training reads it)")
    if stray:
        return Finding.of("pickle-file", f"{base}, with imports a Trainer does not write: {', '.join(stray)}{partial}; all imports: {shown}",
                          path=rel, actual=list(scan.imports), severity=Severity.WARNING, hint=hint)
    return Finding.of("pickle-file", f"{base}; it imports {shown or 'nothing'}{partial}", path=rel, actual=list(scan.imports),
                      severity=Severity.INFO, hint=hint)


def _pickle_findings(art: Artifact) -> Iterator[Finding]:
    pickles = sorted(p for p in art.files if p.endswith(PICKLE_SUFFIXES))
    if not pickles:
        return
    from ..formats.lfs import pointer_of
    from ..formats.pickle_scan import PickleScanError, scan_file

    for rel in pickles:
        if pointer_of(art, rel) is not None:
            continue
        try:
            with art.open(rel) as f:
                scan = scan_file(f, art.files[rel].size)
        except PickleScanError as e:
            if e.not_pickle:
                continue  # not a pickle at all (e.g. OpenVINO/ONNX raw .bin): nothing would be unpickled
            yield Finding.of("pickle-file", f"pickle-based weights that cannot be scanned ({e}); loading would fail or run unknown code",
                             path=rel, hint="download the file again, or use a safetensors checkpoint")
            continue
        except (OSError, InputError) as e:
            yield Finding.of("unreadable", f"cannot scan the pickle: {getattr(e, 'strerror', None) or e}", path=rel)
            continue
        shown = ", ".join(scan.imports[:12]) + (f" and {len(scan.imports) - 12} more" if len(scan.imports) > 12 else "")
        partial = "" if scan.complete else " (scan stopped at its size bound: there may be more)"
        state = trainer_state(rel)
        if state is not None:
            yield _trainer_state_finding(rel, state, scan, shown, partial)
            continue
        if scan.dangerous:
            yield Finding.of(
                "pickle-file",
                f"pickle that would run code on load: it imports {', '.join(scan.dangerous)}{partial}; all imports: {shown}",
                path=rel, actual=list(scan.imports), severity=Severity.ERROR,
                hint="do not load this file; use a safetensors checkpoint from a trusted source",
            )
        elif scan.unexpected:
            yield Finding.of(
                "pickle-file",
                f"pickle-based weights with imports beyond a plain state dict: {', '.join(scan.unexpected)}{partial}; all imports: {shown}",
                path=rel, actual=list(scan.imports), hint="convert to safetensors, or load only with torch.load(weights_only=True)",
            )
        else:
            yield Finding.of(
                "pickle-file",
                f"pickle-based weights ({scan.kind}); loading runs the unpickler, which imports {shown or 'nothing'}{partial}",
                path=rel, actual=list(scan.imports), hint="prefer safetensors; torch.load(weights_only=True) limits what runs",
            )


def memory_estimate(art: Artifact) -> dict[str, Any]:
    """The estimated peak memory of a real load (:mod:`manifest.memory`), from every
    safetensors header that parses and config.json's dtype."""
    from ..formats.config import ConfigError, read_config
    from ..memory import estimate

    headers = [live_header(art, rel) for rel in safetensors_files(art)]
    totals = [h.dtype_totals for h in headers if h is not None]
    try:
        cfg = read_config(art)
    except (ConfigError, InputError, OSError, ValueError):
        cfg = None
    return estimate(totals, cfg.dtype if cfg is not None else None)


def _memory_findings(art: Artifact, opts: Options, report: Report) -> Iterator[Finding]:
    from ..memory import formula

    facts = load_facts(art)
    report.facts["weights"] = facts
    est = memory_estimate(art)
    report.facts["memory_estimate"] = est
    need = est["bytes"]
    if opts.memory_limit is None and not opts.check_memory:
        report.mark_not_checked("memory", "no --memory-limit or --check-memory given")
        return
    how = f"an estimated {_human(need)} at its peak ({formula(est)})"
    if opts.memory_limit is not None:
        if need > opts.memory_limit:
            yield Finding.of(
                "memory-insufficient",
                f"loading the model needs {how}, over the --memory-limit of {_human(opts.memory_limit)}",
                expected=opts.memory_limit, actual=need, hint="load in a smaller dtype, shard across devices, or raise the limit",
            )
    if opts.check_memory:
        avail = mem_available()
        if avail is None:
            report.mark_not_checked("memory-available", "MemAvailable is not known on this system (no /proc/meminfo)")
        else:
            report.facts["memory_available"] = avail
            if need > avail:
                yield Finding.of(
                    "memory-insufficient",
                    f"loading the model needs {how}, but only {_human(avail)} is available",
                    expected=avail, actual=need, hint="free memory, load in a smaller dtype, or use device_map/offloading",
                )
    unknown = [rel for rel in safetensors_files(art) if live_header(art, rel) is None]
    if unknown:
        report.mark_not_checked("memory", f"{len(unknown)} safetensors file(s) have no readable header: the load size is a lower bound")
    else:
        report.mark_checked("memory")


# ----------------------------------------------------------------------------- compare
def _check_recorded(recorded: Any) -> dict[str, dict[str, Any]]:
    """The recorded files by path. The section's shape (every row a ``dtype`` string and
    a ``shape`` of counts) was checked against its schema when the manifest was read
    (:mod:`manifest.shapes`); what a schema cannot say is checked here: a path listed
    twice is a malformed section (an input error, exit 2)."""
    if not isinstance(recorded, dict) or recorded.get("version") != SECTION_VERSION or not isinstance(recorded.get("files"), list):
        raise ManifestInvalid(f'"weights" section must be an object with "version": {SECTION_VERSION} and a "files" list')
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(recorded["files"]):
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and isinstance(rec.get("tensors"), dict)) or rec["path"] in out:
            raise ManifestInvalid(f'"weights.files[{i}]" must hold a unique "path", "header_sha256" and "tensors" of {{"dtype", "shape"}}')
        out[rec["path"]] = rec
    return out


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _describe(t: dict[str, Any]) -> str:
    return f"{t['dtype']}{list(t['shape'])}"


def _rename_rule(old: str, new: str) -> tuple[str, str] | None:
    """How a rename changed the name, when it is a prefix added or removed (``bert.``)."""
    if new.endswith("." + old) or (new.endswith(old) and new != old):
        return ("added", new[: len(new) - len(old)])
    if old.endswith(new) and old != new:
        return ("removed", old[: len(old) - len(new)])
    return None


def diff_tensors(rel: str, recorded: dict[str, dict[str, Any]], live: dict[str, TensorInfo]) -> list[Finding]:
    """``tensor-mismatch`` findings between a recorded tensor table and a live header.
    The same change over many tensors (a dtype cast, a prefix added to every name) is
    one finding naming the count and a few tensors; ``items`` lists them all."""
    now: dict[str, dict[str, Any]] = {n: {"dtype": t.dtype, "shape": list(t.shape)} for n, t in live.items()}
    total = len(recorded)
    out: list[Finding] = []
    keys: dict[int, Any] = {}  # id(finding) -> what is the same across a group
    subjects: dict[int, str] = {}

    def add(f: Finding, subject: str, key: Any) -> None:
        keys[id(f)], subjects[id(f)] = key, subject
        out.append(f)

    removed = [n for n in recorded if n not in now]
    added = [n for n in now if n not in recorded]
    # A tensor that vanished while one of identical dtype and shape appeared: a rename.
    pool: dict[str, list[str]] = {}
    for n in added:
        pool.setdefault(_describe(now[n]), []).append(n)
    renamed: list[tuple[str, str]] = []
    for n in removed:
        cands = pool.get(_describe(recorded[n]))
        if cands:
            rule = None
            for i, c in enumerate(cands):  # prefer the candidate that is the same name with a prefix changed
                if _rename_rule(n, c) is not None:
                    rule = i
                    break
            renamed.append((n, cands.pop(rule or 0)))
    renamed_old = {a for a, _ in renamed}
    renamed_new = {b for _, b in renamed}
    for old, new in renamed:
        add(Finding.of("tensor-mismatch", f"tensor {old!r} was renamed to {new!r} ({_describe(now[new])})",
                       path=rel, expected=old, actual=new), old, ("renamed", _rename_rule(old, new)) if _rename_rule(old, new) else None)
    for n in removed:
        if n not in renamed_old:
            add(Finding.of("tensor-mismatch", f"tensor {n!r} ({_describe(recorded[n])}) is gone", path=rel, expected=n), n, ("gone",))
    for n in added:
        if n not in renamed_new:
            add(Finding.of("tensor-mismatch", f"tensor {n!r} ({_describe(now[n])}) is new", path=rel, actual=n), n, ("new",))
    for n, rec in recorded.items():
        cur = now.get(n)
        if cur is None:
            continue
        if cur["dtype"] != rec["dtype"]:
            add(Finding.of("tensor-mismatch", f"tensor {n!r} changed dtype: {rec['dtype']} -> {cur['dtype']}",
                           path=rel, expected=rec["dtype"], actual=cur["dtype"]), n, ("dtype", rec["dtype"], cur["dtype"]))
        if list(cur["shape"]) != list(rec["shape"]):
            same_bytes = cur["dtype"] == rec["dtype"] and _numel(cur["shape"]) == _numel(rec["shape"])
            why = " (same byte count: transposed or reshaped, only the header shows it)" if same_bytes else ""
            add(Finding.of("tensor-mismatch", f"tensor {n!r} changed shape: {list(rec['shape'])} -> {cur['shape']}{why}",
                           path=rel, expected=list(rec["shape"]), actual=cur["shape"]), n, None)

    def describe(members: list[Finding], items: tuple[str, ...]) -> str:
        key = keys[id(members[0])]
        n = len(items)
        count = f"all {n} tensors" if n == total and key[0] in ("gone", "renamed") else f"{n} tensors"
        if key[0] == "dtype":
            of_dtype = sum(1 for t in recorded.values() if t["dtype"] == key[1])
            some = f"all {n} {key[1]} tensors" if n == of_dtype else f"{n} of the {of_dtype} {key[1]} tensors"
            return f"{some} changed dtype: {key[1]} -> {key[2]} ({examples(items, quote=True)})"
        if key[0] == "gone":
            return f"{count} of the manifest are gone ({examples(items, quote=True)})"
        if key[0] == "new":
            return f"{count} are new ({examples(items, quote=True)})"
        how, prefix = key[1]
        first = members[0]
        return (f"{count} were renamed, prefix {prefix!r} {how} (e.g. {first.expected!r} -> {first.actual!r})")

    out = group_repeats(out, lambda f: keys.get(id(f)), describe, subject=lambda f: subjects[id(f)])
    if len(out) > MAX_FINDINGS_PER_FILE:
        more = len(out) - MAX_FINDINGS_PER_FILE
        out = [*out[:MAX_FINDINGS_PER_FILE],
               Finding.of("tensor-mismatch", f"... and {more} more tensor difference(s) against the manifest", path=rel)]
    return out


# ----------------------------------------------------------------------------- section
def _file_record(rel: str, h: Header) -> dict[str, Any]:
    with gc_paused():  # one small object per tensor, maybe a million, and no cycle
        tensors = {n: {"dtype": t.dtype, "shape": list(t.shape)} for n, t in sorted(h.tensors.items())}
    return {
        "path": rel,
        "header_sha256": header_digest(h),
        "header_len": h.header_len,
        "parameters": h.parameters,
        "bytes_by_dtype": h.bytes_by_dtype(),
        "tensors": tensors,
    }


# The fewest bytes one tensor takes in the written manifest besides its name: the line
# `            "": {"dtype": "I8", "shape": []},` and its newline.
MIN_TENSOR_LINE = 46


def _refuse_oversized_table(headers: list[tuple[str, Header]]) -> None:
    """Stop ``create`` before it builds a tensor table that cannot fit in a manifest
    (a verifier reads at most MAX_DOCUMENT_BYTES), naming that limit, not the model."""
    count = sum(len(h.tensors) for _, h in headers)
    at_least = sum(sum(map(len, h.tensors)) for _, h in headers) + count * MIN_TENSOR_LINE
    if at_least > MAX_DOCUMENT_BYTES:
        n = f"{count / 1e6:.1f}M" if count >= 1_000_000 else f"{count / 1e3:.0f}k"
        raise InputError(f"the manifest would be at least {at_least / 1e6:.0f} MB: {n} tensors in {len(headers)} safetensors "
                         f"file{'s' if len(headers) != 1 else ''}; over the {MAX_DOCUMENT_BYTES // (1 << 20)} MiB cap a verifier reads "
                         "(nothing was written)", code="manifest-too-large")


class WeightsSection:
    name = "weights"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        """The tensor table of every safetensors file. Refuses (exit 2) to fingerprint a
        file that is not valid safetensors: a manifest must not enshrine a broken file."""
        headers: list[tuple[str, Header]] = []
        for rel in safetensors_files(art):
            h = header_of(art, rel)
            if isinstance(h, HeaderError):
                raise InputError(f"refusing to fingerprint a broken weight file: {h.message}", code=h.code, path=rel)
            if isinstance(h, OSError):
                raise InputError(f"cannot read the safetensors header: {h.strerror or h}", code="unreadable", path=rel)
            headers.append((rel, h))
        _refuse_oversized_table(headers)
        files = [_file_record(rel, h) for rel, h in headers]
        if not files:
            return None
        facts = load_facts(art)
        return {
            "version": SECTION_VERSION,
            "files": files,
            "totals": {
                "files": len(files),
                "tensors": facts["tensors"],
                "parameters": facts["parameters"],
                "bytes": facts["load_bytes"],
                "bytes_by_dtype": facts["bytes_by_dtype"],
            },
        }

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        """Header, pointer, index, pickle and memory checks; no manifest needed."""
        out: list[Finding] = list(_lfs_findings(art))
        report.mark_checked("lfs-pointers")
        pointer_paths = {f.path for f in out}
        st = safetensors_files(art)
        for rel in st:
            if rel not in pointer_paths:
                out.extend(_header_findings(art, rel))
        if st:
            report.mark_checked("safetensors-headers")
        else:
            report.mark_not_checked("safetensors-headers", "no *.safetensors files")
        if any(p.endswith(INDEX_SUFFIXES) for p in art.files):
            out.extend(_index_findings(art))
            report.mark_checked("shard-index")
        out.extend(_pickle_findings(art))
        out.extend(_memory_findings(art, opts, report))
        return out

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        """Live headers against the recorded tensor tables (renames, dtypes, shapes)."""
        files = _check_recorded(recorded)
        out: list[Finding] = []
        for rel, rec in files.items():
            if rel not in art.files:
                continue  # the file-set check reports it missing
            live = live_header(art, rel)
            if live is None:
                continue  # diagnose already said why the header cannot be read
            if header_digest(live) == rec["header_sha256"]:
                continue
            out.extend(diff_tensors(rel, rec["tensors"], live.tensors))
        report.mark_checked("tensor-table")
        return out
