"""The library API: ``create``, ``verify``, ``verify_or_raise`` and ``check``.

Data flows one way: discover files -> read formats (sections) -> fingerprint (digests)
-> compare -> report. Checks run from cheap to expensive: trust and the manifest
itself, the file set, sizes, headers and small side files, then full digests, then
(on request) a real load.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .digest import ALGORITHMS, CHUNK_ALGORITHM, CHUNK_SIZE, DEFAULT_ALGORITHM, FileChanged, chunk_key, hash_files, split_chunks
from .document import FileEntry, Manifest, parse_time
from .errors import EXIT_INPUT, InputError, ManifestInvalid, UsageError, VerificationFailed
from .findings import EXAMPLES, Finding, examples, group_repeats
from .fsutil import RefusedTarget, check_target, read_input, refused_message, write_atomic
from .inventory import DEFAULT_IGNORE, DEFAULT_MANIFEST_NAME, Artifact, discover, empty_dirs, is_within, literal_rel, unaccounted_dirs
from .options import Options
from .report import INTEGRITY_ONLY, Report
from .sections import all_sections

if TYPE_CHECKING:  # pragma: no cover
    from .signing import PrivateKey  # cryptography is imported only to sign or check a signature

MAX_MANIFEST_BYTES = 64 * 1024 * 1024


NO_ANCHOR_HINT = "pass --key PUBLIC.pem, or --no-signature for an integrity-only check"


def _trust_anchor_gate(report: Report, opts: Options, message: str, *, hint: str = NO_ANCHOR_HINT, end: bool) -> None:
    """No trust anchor, no pass: without a key and without an explicit integrity-only
    request, the report fails with ``no-trust-anchor``. Emitted first under
    --fail-fast (nothing else can make the run pass), else last, so that every other
    check still runs and is reported, and none is skipped because of it."""
    if opts.has_anchor or opts.integrity_only or end == opts.fail_fast or report.stopped_early:
        return
    _emit(report, [Finding.of("no-trust-anchor", message, hint=hint)], opts)


def _no_anchor_message(what: str, signers: list[str], *, signed: bool | None = None) -> str:
    if signed or signers:
        by = f" by key(s) {', '.join(s[:16] for s in signers)}" if signers else ""
        return (f"{what} is signed{by}, but no trust anchor (--key) was given to check it against: "
                "anyone can sign, so its authenticity is not established")
    return f"{what} is not signed and no trust anchor (--key) was given: anyone could have written it"


class _Stop(Exception):
    """Internal: --fail-fast hit an error."""


def _emit(report: Report, findings: Any, opts: Options) -> None:
    for f in findings:
        report.add(f)
        if opts.fail_fast and f.is_error:
            report.stopped_early = True
            raise _Stop


def _progress(opts: Options, total: int, desc: str) -> Any:
    from .progress import make_progress

    return make_progress(opts.progress, total, desc)


def _cache(opts: Options, key: tuple[str, ...]) -> Any:
    if not opts.use_cache:
        return None
    from .statcache import StatCache

    return StatCache.open(key)


def _identity(m: Manifest, signed: bytes | None = None) -> str:
    """What a verify stat cache is keyed by, besides the directory: the signed bytes' digest."""
    from .statcache import manifest_identity

    return manifest_identity(signed if signed is not None else m.signed_payload())


def resolve_target(target: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """A directory, ``ORG/NAME[@REVISION]`` in the local Hugging Face cache, or an fsspec
    URL (``s3://bucket/prefix``, ``gs://``, ``file://``; ``storage_options`` go to its backend).

    Returns the root and discovery settings (the cache allows links into its blobs/; a
    URL gives ``{"remote": RemoteTarget}``, see :mod:`manifest.remote`)."""
    from .paths import is_url

    if is_url(target):
        from .remote import RemoteTarget

        t = RemoteTarget.open(str(target), storage_options)
        return Path(t.base), {"remote": t}
    if storage_options:  # an empty mapping is no option: a caller may pass one for every target
        raise UsageError("--storage-options applies to a URL target (s3://, gs://, file://), not to a local directory")
    p = Path(target)
    if p.is_dir() or os.path.lexists(p):
        from .hfcache import looks_like_repo_id

        return p, ({"shadows_repo_id": True} if isinstance(target, str) and looks_like_repo_id(target) else {})
    from . import hfcache

    if hfcache.looks_like_repo_id(str(target)):
        snap = hfcache.resolve(str(target))
        return snap.root, {"follow_links_into": snap.blobs, "hub": snap}
    raise InputError(f"{target}: no such directory, and not an ORG/NAME in the Hugging Face cache", code="unreadable")


def _target_facts(report: Report, target: str | os.PathLike[str], root: Path, settings: dict[str, Any]) -> None:
    """Which place was checked, and the exact path a loader must be given."""
    remote = settings.get("remote")
    if remote is not None:
        report.facts["target"] = remote.facts()
        return
    report.facts["snapshot_path"] = os.path.abspath(root)
    snap = settings.get("hub")
    if snap is not None:
        report.facts["target"] = {"kind": "hf-cache", "repo_id": snap.repo_id, "commit": snap.commit}
        return
    report.facts["target"] = {"kind": "directory"}
    if settings.get("shadows_repo_id"):
        report.facts["target"]["shadows_repo_id"] = True
        report.add(Finding.of(
            "ambiguous-target",
            f"{target} is a local directory and was checked as one, not the Hugging Face cache's snapshot of the repo {target}",
            hint=f"write ./{target} for the directory or {target}@main (or @REVISION) for the cache, and give the loader "
            f"exactly facts.snapshot_path ({os.path.abspath(root)})",
        ))


def _discover(root: Path, settings: dict[str, Any], ignore: list[str] | tuple[str, ...]) -> Artifact:
    if "remote" in settings:
        return settings["remote"].discover(ignore)
    art = discover(root, ignore=ignore, follow_links_into=settings.get("follow_links_into"))
    if "hub" in settings:
        art.memo("hub", lambda: settings["hub"])
    return art


# --------------------------------------------------------------------------- create
def create(
    path: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    key: PrivateKey | None = None,
    model_id: str | None = None,
    revision: str | None = None,
    expires: str | None = None,
    options: Options | None = None,
    write: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    certificates: list[Any] | None = None,
) -> Manifest:
    """Fingerprint ``path`` into a manifest; sign it with ``key``; write it atomically
    to ``output`` (default ``path/manifest.json``) unless ``write`` is False.

    A URL target (``s3://bucket/prefix``) is read through fsspec; its manifest is
    written to the local file ``output`` (required), never into the bucket.
    ``certificates``: the signing key's X.509 certificate, then its intermediates
    (cryptography objects), recorded in the signature entry for ``verify --ca``."""
    opts = options or Options()
    cert_chain: list[str] | None = None
    if certificates:
        if key is None:
            raise UsageError("a certificate (--cert) needs the private key it certifies (--key)")
        from .certs import signing_chain

        cert_chain = signing_chain(key, certificates)
    root, settings = resolve_target(path, storage_options)
    if output is None and "hub" in settings:
        raise UsageError("a manifest is never written into the Hugging Face cache: give -o FILE "
                         "(or create it in the model directory before `hf upload`)")
    if "remote" in settings:
        from .paths import is_url

        if write and (output is None or is_url(output)):
            raise UsageError(f"the manifest of a URL target is written to a local file: give -o FILE (then upload it to "
                             f"{settings['remote'].url}/{DEFAULT_MANIFEST_NAME})")
        opts = _remote_options(opts)
    out = Path(output) if output is not None else root / DEFAULT_MANIFEST_NAME
    algorithms = opts.algorithms or [DEFAULT_ALGORITHM]
    for a in algorithms:
        if a not in ALGORITHMS:
            raise UsageError(f"unknown digest algorithm {a!r} (choose from {', '.join(ALGORITHMS)})")
    if key is not None and not any(ALGORITHMS[a].cryptographic for a in algorithms):
        raise UsageError("a signature over non-cryptographic digests alone (xxh3-128) would guarantee nothing: add sha256 or blake3")
    ignore = list(DEFAULT_IGNORE)
    rel_out = literal_rel(out, root) if "remote" not in settings else None  # the literal path: a symlink's target is never left out
    if rel_out is not None and rel_out not in ignore:
        ignore.append(rel_out)
    if expires is not None and parse_time(expires) <= datetime.now(timezone.utc):
        raise UsageError(f"--expires {expires} is in the past: the manifest would never verify")
    if write:
        check_output(out)  # before any hashing; write_atomic checks again right before its rename
    art = _discover(root, settings, ignore)
    errors = [f for f in art.problems if f.is_error]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(f"{first.message}{more}", code=first.code, path=first.path)
    infos = list(art.files.values())
    digests: dict[str, dict[str, str]] = {}
    chunks: dict[str, list[str]] = {}
    bar = _progress(opts, sum(i.size for i in infos), "hashing")
    create_cache = _cache(opts, ("create", str(root.resolve())))
    sections: dict[str, Any] = {}
    try:
        chunk_size = opts.chunk_size or CHUNK_SIZE
        ckey = chunk_key(chunk_size)
        job = hash_files(art, infos, algorithms, workers=opts.workers, cache=create_cache, on_bytes=bar.update, chunk_size=chunk_size)
        try:
            for s in all_sections():  # while the threads hash: a side file that cannot be recorded stops them
                rec = s.record(art, opts)
                if rec is not None:
                    sections[s.name] = rec
            for info, res, _cached in job:
                if isinstance(res, FileChanged):
                    raise InputError("file changed while it was hashed; try again when nothing writes to it", code="file-changed", path=info.path)
                if isinstance(res, Exception):
                    raise InputError(f"cannot read: {getattr(res, 'strerror', None) or res}", code="unreadable", path=info.path)
                got = dict(res)
                joined = got.pop(ckey, None)
                if joined is not None:
                    chunks[info.path] = split_chunks(joined)
                digests[info.path] = got
        finally:
            job.close()
    finally:
        bar.close()
    m = Manifest(
        files={p: FileEntry(p, art.files[p].size, digests[p]) for p in sorted(digests)},
        algorithms=list(algorithms),
        ignore=ignore,
        model_id=model_id,
        revision=revision,
        expires=expires,
        sections=sections,
        chunk_size=chunk_size if chunks else None,
        chunks=chunks,
        directories=empty_dirs(art),
    )
    signed = m.signed_bytes()  # the one canonicalization of this run: signed, and the caches' key
    if key is not None:
        from .signing import sign

        m.signatures = [sign(signed, key)]
        if cert_chain:
            m.signatures[0]["certificates"] = cert_chain
    if write:
        text = m.dumps().encode("utf-8")
        if len(text) > MAX_MANIFEST_BYTES:
            raise InputError(_too_large(len(text), m), code="manifest-too-large", path=str(out))
        write_output(out, text)
    if create_cache is not None:  # the first verify of this manifest then needs no read
        create_cache.save_as(("verify", str(root.resolve()), _identity(m, signed)), list(m.files))
    return m


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n / 1e3:.0f}k" if n >= 10_000 else str(n)


def _too_large(size: int, m: Manifest) -> str:
    """Name the limit and what fills the manifest, not the model's files."""
    weights = m.sections.get("weights")
    tensors = weights.get("totals", {}).get("tensors") if isinstance(weights, dict) else None
    what = [f"{_count(len(m.files))} file{'s' if len(m.files) != 1 else ''}"]
    if isinstance(tensors, int) and tensors:
        what.insert(0, f"{_count(tensors)} tensors")
    cap = f"{MAX_MANIFEST_BYTES >> 20} MiB" if MAX_MANIFEST_BYTES % (1 << 20) == 0 else f"{MAX_MANIFEST_BYTES >> 10} KiB"
    shown = f"{size / 1e6:.0f} MB" if size >= 10**7 else f"{size / 1e3:.0f} kB"
    return f"the manifest would be {shown}: {', '.join(what)}; over the {cap} cap a verifier reads (nothing was written)"


def check_output(out: Path) -> None:
    try:
        check_target(out)
    except RefusedTarget as e:
        raise InputError(refused_message(e), code="write-refused") from None


def write_output(out: str | os.PathLike[str], data: bytes) -> None:
    """Write an output file atomically; one-line errors: ``write-refused`` for a path that
    exists and is not a regular file, ``write-failed`` for anything else."""
    try:
        write_atomic(out, data)
    except RefusedTarget as e:
        raise InputError(refused_message(e), code="write-refused") from None
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror or e}", code="write-failed") from None


# --------------------------------------------------------------------------- verify
def own_path(path: str | os.PathLike[str], root: Path, settings: Mapping[str, Any], what: str) -> str | Finding | None:
    """The entry a manifest or OMS bundle at ``path`` leaves out of the file set: its literal
    path below ``root`` (never what a symlink points to), or None when it lies outside. A
    symlink there is a ``manifest-symlink`` finding and leaves nothing out (a link into the
    Hugging Face cache's blobs/ is how the cache stores every file, and is left out)."""
    rel = literal_rel(path, root)
    if rel is None:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return rel
    if not stat.S_ISLNK(st.st_mode):
        return rel
    blobs = settings.get("follow_links_into")
    real = os.path.realpath(path)
    if blobs is not None and is_within(real, os.path.realpath(blobs)) and os.path.isfile(real):
        return rel
    target = os.readlink(path)
    return Finding.of("manifest-symlink", f"the {what} is a symlink (to {target}) inside the directory: a {what} there must be a regular "
                      "file; the entry it points to is checked like any other", path=rel)


def _refuse_link_out(mpath: Path, root: Path, settings: dict[str, Any]) -> None:
    """The default DIR/manifest.json comes with the untrusted directory: a symlink from it
    to a file outside (e.g. a secret) is not read. Links into the HF cache's blobs/ are fine."""
    if not mpath.is_symlink():
        return
    real = os.path.realpath(mpath)
    bases = [os.path.realpath(root)]
    if settings.get("follow_links_into") is not None:
        bases.append(os.path.realpath(settings["follow_links_into"]))
    if not any(is_within(real, b) for b in bases):
        raise InputError(f"{mpath} is a symlink out of the directory; it was not read (pass a manifest with -m)", code="unsafe-path")


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    data = read_input(path, MAX_MANIFEST_BYTES, "manifest", "manifest-invalid", " (create one with: manifest create DIR)")
    return Manifest.loads(data)


def verify(
    path: str | os.PathLike[str],
    manifest: str | os.PathLike[str] | Manifest | None = None,
    *,
    manifest_path: str | os.PathLike[str] | None = None,
    options: Options | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Report:
    """Verify ``path`` against its manifest. Never raises on a mismatch: every finding
    is in the returned report (``bool(report)`` is the verdict). Raises
    :class:`~manifest.errors.ManifestError` only for unusable input (exit 2).

    ``manifest`` is a file (default ``path/manifest.json``) or a :class:`Manifest`
    already loaded, whose file ``manifest_path`` may name (it is then left out of the
    file set and named in the report).

    ``path`` may be an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``file://...``),
    read with ``storage_options``; its manifest is ``manifest.json`` in the prefix unless
    ``manifest`` names another (a local path or a URL). See :mod:`manifest.remote`."""
    opts = options or Options(**kw)
    root, settings = resolve_target(path, storage_options)
    remote = settings.get("remote")
    mpath: Path | str | None
    if remote is not None:
        opts = _remote_options(opts)
    if isinstance(manifest, Manifest):
        m, mpath = manifest, (None if manifest_path is None else str(manifest_path) if remote is not None and is_url_target(manifest_path)
                              else Path(manifest_path))
    elif remote is not None and (manifest is None or is_url_target(manifest)):
        data, mpath = remote.read_manifest(str(manifest) if manifest is not None else None, MAX_MANIFEST_BYTES)
        m = Manifest.loads(data)
    else:
        mpath = Path(manifest) if manifest is not None else root / DEFAULT_MANIFEST_NAME
        if manifest is None:
            _refuse_link_out(mpath, root, settings)
        m = load_manifest(mpath)
    report = Report("verify", str(path), str(mpath) if mpath else None, integrity_only=opts.integrity_only)
    _target_facts(report, path, root, settings)
    t0 = time.perf_counter()
    no_anchor = _no_anchor_message("the manifest", sorted({s.get("keyid", "") for s in m.signatures}))
    hint = NO_ANCHOR_HINT
    if any("certificates" in s for s in m.signatures):
        hint = "pass --ca ROOT.pem (the manifest is signed with a certificate) or --key PUBLIC.pem, or --no-signature for an integrity-only check"
    try:
        _trust_anchor_gate(report, opts, no_anchor, hint=hint, end=False)
        _verify(root, settings, m, mpath, opts, report)
        _trust_anchor_gate(report, opts, no_anchor, hint=hint, end=True)
    except _Stop:
        pass
    from .diagnosis import apply
    from .hints import add_refresh

    _remote_facts(report, settings)
    apply(report)
    add_refresh(report, m, report.manifest)
    report.stats["seconds"] = round(time.perf_counter() - t0, 4)
    return report


def verify_or_raise(path: str | os.PathLike[str], manifest: Any = None, *, options: Options | None = None, **kw: Any) -> Report:
    """Like :func:`verify` but raises :class:`VerificationFailed` (with the report) on failure."""
    report = verify(path, manifest, options=options, **kw)
    if not report:
        raise VerificationFailed(report)
    return report


def is_url_target(target: Any) -> bool:
    """A URL (``scheme://...``) rather than a local path."""
    from .paths import is_url

    return is_url(target)


def _remote_options(opts: Options) -> Options:
    """A remote target has no stat cache and no load tier (both need a local directory)."""
    if opts.load:
        raise UsageError("--load needs a local directory: download the model, then run the load tier on it")
    import dataclasses

    return dataclasses.replace(opts, use_cache=False)


def _remote_facts(report: Report, settings: Mapping[str, Any]) -> None:
    """What a remote run read (``facts.bytes_read``), and that no stat cache was used."""
    remote = settings.get("remote")
    if remote is None:
        return
    report.facts["bytes_read"] = remote.bytes_read
    if remote._art is not None:
        report.stats["read_requests"] = remote._art.requests
    report.mark_not_checked("stat-cache", "a remote target has no stat cache: every digest is computed from the object's bytes")


def _verify(root: Path, settings: dict[str, Any], m: Manifest, mpath: Path | str | None, opts: Options, report: Report) -> None:
    # 1. The manifest itself and trust.
    _emit(report, m.rejected, opts)
    if opts.keys or opts.cas:
        from .signing import check_signatures

        trust = check_signatures(m.signed_payload(), m.signatures, opts.keys, opts.cas)
        _emit(report, trust.findings, opts)
        report.facts["trusted_keyids"] = trust.trusted_keyids
        if trust.trusted_certificates:
            report.facts["trusted_certificates"] = trust.trusted_certificates
        report.mark_checked("signature")
    elif opts.integrity_only:
        report.mark_not_checked("signature", f"--no-signature: {INTEGRITY_ONLY}")
    elif opts.identities and not opts.cas:  # Sigstore identities alone: a manifest is never signed keylessly
        report.mark_not_checked("signature", "only Sigstore identities were given, which verify OMS bundles (--oms), not manifests")
        msg = ("only Sigstore identities (--identity/--issuer) were given, and a manifest is signed with keys, never keylessly: "
               "nothing given can establish its authenticity")
        _emit(report, [Finding.of("untrusted-key", msg, hint="pass the publisher's public key with --key, or verify their OMS bundle with --oms")], opts)
    else:
        report.mark_not_checked("signature", "no trust anchor (--key) given: the manifest's authenticity is not established")
    if m.signatures and not m.cryptographic:
        msg = "the manifest is signed over non-cryptographic digests only; the signature guarantees nothing about the files"
        _emit(report, [Finding.of("weak-digest", msg)], opts)
    _check_claims(m, opts, report)
    # 2. Discover; file set.
    ignore = list(m.ignore)
    own: str | Finding | None
    if "remote" in settings:
        own = settings["remote"].rel_of(str(mpath)) if mpath is not None else None
    else:
        own = own_path(mpath, root, settings, "manifest") if mpath is not None else None
    if isinstance(own, Finding):
        _emit(report, [own], opts)
    elif own is not None:
        ignore.append(own)
    art = _discover(root, settings, ignore)
    if "hub" in settings:
        art._memo["manifest_files"] = sorted(m.files)  # the hub section's .no_exist check covers them too
    _emit(report, art.problems, opts)
    _check_file_set(art, m.files, "the manifest", opts, report, directories=m.directories)
    # 3. Sizes.
    sized: list[str] = []
    resized: list[Finding] = []
    for p, entry in m.files.items():
        info = art.files.get(p)
        if info is None:
            continue
        if info.size != entry.size:
            resized.append(Finding.of("size-mismatch", f"{info.size} bytes, manifest says {entry.size}", path=p, expected=entry.size, actual=info.size))
            if opts.fail_fast:
                break
        else:
            sized.append(p)
    _emit_grouped(report, resized, lambda fs, items: f"{len(items)} files changed size: "
                  + ", ".join(f"{f.path} ({f.actual} bytes, manifest says {f.expected})" for f in fs[:EXAMPLES])
                  + (", ..." if len(fs) > EXAMPLES else ""), opts)
    report.mark_checked("sizes")
    algorithms = [a for a in (opts.algorithms or m.algorithms) if a in ALGORITHMS and a in m.algorithms]
    if opts.algorithms and not algorithms:
        raise UsageError(f"the manifest records no {', '.join(opts.algorithms)} digests (it has {', '.join(m.algorithms)})")
    # The digests are started now, so that the threads hash while this one checks headers
    # and side files; their results are used only if those checks pass (else the workers
    # are stopped within one block), so the cheap checks still decide first. A remote
    # target's digests start only after them: headers before download.
    def start_digests() -> _PendingDigests | None:
        if not algorithms or (report.errors and not opts.exhaustive):
            return None
        expected: dict[str, Mapping[str, str]] = {p: e.digests for p, e in m.files.items()}
        cache_key = ("verify", str(root.resolve()), _identity(m)) if opts.use_cache else ()
        chunked: dict[str, int] = {}
        if m.chunks and m.chunk_size is not None and algorithms == [CHUNK_ALGORITHM]:
            # Verified chunk by chunk, every core on one file: the signed chunk list binds
            # the content as the whole-file digest does (docs/security.md).
            ckey = chunk_key(m.chunk_size)
            for p in sized:
                if p in m.chunks and p not in opts.known_digests:
                    chunked[p] = m.chunk_size
                    expected[p] = {ckey: "".join(m.chunks[p])}
        return _start_digests(art, expected, sized, algorithms, opts, cache_key=cache_key, source="manifest", chunked=chunked)

    pending = None if "remote" in settings else start_digests()
    try:
        # 4. Sections: headers, shard index, tokenizer, config, requirements (cheap, no full reads).
        sections = all_sections()
        _run_sections(art, sections, m.sections, opts, report)
        for k in sorted(m.sections.keys() - {s.name for s in sections}):
            report.mark_not_checked(f"section:{k}", "section unknown to this version of the tool")
        if "remote" in settings:
            pending = start_digests()
        # 5. Digests, unless the cheap checks already decided.
        if report.errors and not opts.exhaustive:
            report.mark_not_checked("digests", digests_skipped(len(report.errors)))
        elif pending is None:
            report.mark_not_checked("digests", "the manifest records no usable digest")
        else:
            _finish_digests(pending, opts, report)
    finally:
        if pending is not None:
            pending.close()
    if m.algorithms and not m.cryptographic and "digests" in report.checked:
        report.facts["digest_guarantee"] = "non-cryptographic (xxh3-128): catches accidents, not tampering"
    # 6. Load tier.
    _load_tier(art, opts, report)


def digests_skipped(n_errors: int) -> str:
    """Why the digests were not compared: the cheaper checks already failed the run."""
    return f"skipped after {n_errors} error{'s' if n_errors != 1 else ''}; --exhaustive hashes anyway"


def _load_tier(art: Artifact, opts: Options, report: Report) -> None:
    """The opt-in real load, last and only when everything cheaper passed (torch is
    imported here and nowhere else)."""
    if not opts.load:
        report.mark_not_checked("load", "no --load requested: the model was not instantiated")
    elif report.errors:
        report.mark_not_checked(f"load:{opts.load}", "skipped: the checkpoint already fails cheaper checks")
    else:
        from .load import run_load

        _emit(report, run_load(art, opts, report), opts)


def _run_sections(art: Artifact, sections: list[Any], recorded: Mapping[str, Any] | None, opts: Options, report: Report) -> None:
    """Each section's ``diagnose`` and, when the manifest recorded it, ``compare``. A
    section whose result depends only on the artifact's files is served from the
    section cache while no file changed (see :mod:`manifest.sectioncache`)."""
    cache = None
    if opts.use_cache:
        from .sectioncache import SectionCache

        cache = SectionCache.open(art, report.command)
    try:
        for s in sections:
            rec = [recorded[s.name]] if recorded is not None and s.name in recorded else []
            key = s.cache_key(opts) if cache is not None else None
            if cache is None or key is None:
                _emit(report, _section_findings(s, art, rec, opts, report), opts)
                continue
            hit = cache.get(s.name, key, rec)
            if hit is None:
                from .sectioncache import Recorder

                log = Recorder(report.command)
                log.extend(_section_findings(s, art, rec, opts, log))
                hit = (log.ops, log.facts)
                cache.put(s.name, key, rec, *hit)
            _replay(report, *hit, opts)
    finally:
        if cache is not None:
            cache.save()
            if cache.hits:
                report.facts["sections_from_cache"] = list(cache.hits)


def _section_findings(s: Any, art: Artifact, rec: list[Any], opts: Options, report: Report) -> Iterator[Finding]:
    """A section's ``diagnose``, then its ``compare`` with the recorded section (if any)."""
    yield from s.diagnose(art, opts, report)
    if rec:
        yield from _compare_section(s, art, rec[0], opts, report)


def _replay(report: Report, ops: list[list[Any]], facts: dict[str, Any], opts: Options) -> None:
    from .sectioncache import finding_from

    report.facts.update(facts)
    for op in ops:
        if op[0] == "f":
            _emit(report, [finding_from(op[1])], opts)
        elif op[0] == "c":
            report.mark_checked(op[1])
        else:
            report.mark_not_checked(op[1], op[2])


def _compare_section(s: Any, art: Artifact, recorded: Any, opts: Options, report: Report) -> list[Finding]:
    """A recorded section is data from the manifest: when its shape is not what this
    section writes (a wrong type somewhere inside), the manifest is malformed (exit 2)."""
    try:
        return list(s.compare(art, recorded, opts, report))
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise ManifestInvalid(f"the manifest's {s.name} section is malformed ({type(e).__name__}: {e})") from None


def _check_file_set(art: Artifact, listed: Mapping[str, Any], source: str, opts: Options, report: Report,
                    directories: list[str] | tuple[str, ...] = ()) -> None:
    """Missing and extra files against what ``source`` (a manifest, an OMS bundle) lists,
    and the directories: each one must hold a listed file or be a recorded (empty) one."""
    same = listed.keys() == art.files.keys()  # the common case, in one C-level pass (sizes compared first)
    missing = [] if same else [p for p in listed if p not in art.files]
    extra = [] if same else [p for p in art.files if p not in listed]
    _emit_grouped(report, [Finding.of("missing-file", f"listed in {source} but not in the directory", path=p) for p in missing],
                  lambda fs, items: f"{len(items)} files listed in {source} are not in the directory: {examples(items)}", opts)
    _emit_grouped(report, [Finding.of("extra-file", f"in the directory but not in {source}", path=p) for p in extra],
                  lambda fs, items: f"{len(items)} files in the directory are not in {source}: {examples(items)}", opts)
    present = set(art.dirs)
    gone = [d for d in directories if d not in present]
    _emit_grouped(report, [Finding.of("missing-directory", f"an empty directory recorded in {source} is not in the directory", path=d)
                           for d in gone],
                  lambda fs, items: f"{len(items)} empty directories recorded in {source} are not in the directory: {examples(items)}", opts)
    stray = unaccounted_dirs(art.dirs, listed, directories)
    _emit_grouped(report, [Finding.of("extra-directory", f"a directory no file of {source} lies in (loaders match directory names too)",
                                      path=d) for d in stray],
                  lambda fs, items: f"{len(items)} directories hold no file of {source}: {examples(items)}", opts)
    report.mark_checked("file-set")


def _emit_grouped(report: Report, findings: list[Finding], describe: Any, opts: Options) -> None:
    """Emit ``findings`` (one code, one kind of change per file), as one finding naming
    the count and a few files when there are many (every path stays in ``items``)."""
    if not opts.fail_fast:
        findings = group_repeats(findings, lambda f: f.code, describe)
    _emit(report, findings, opts)


def _digest_mismatch(path: str, algorithms: list[str], got: Mapping[str, str], want: Mapping[str, str], source: str, opts: Options,
                     report: Report, into: list[Finding]) -> None:
    """A mismatch is collected in ``into`` (to be grouped), or emitted at once under --fail-fast."""
    for a in algorithms:
        if got[a] != want[a]:
            msg = f"{a} is {got[a][:16]}..., {source} says {want[a][:16]}..."
            f = Finding.of("digest-mismatch", msg, path=path, expected=want[a], actual=got[a])
            if opts.fail_fast:
                _emit(report, [f], opts)
            into.append(f)
            return


def _in_units(start: int, end: int) -> str:
    """``1.50-1.56 GiB``: a byte range in the unit of its end."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if end >= scale:
            return f"{start / scale:.2f}-{end / scale:.2f} {unit}"
    return f"{start}-{end}"


def damaged_tensors(art: Artifact, path: str, ranges: list[tuple[int, int]]) -> tuple[bool, list[str]]:
    """Whether the byte ranges (``[start, end)`` in the file) touch a safetensors file's
    header, and the tensors whose data overlaps them, in file order (from the file's
    own header, never its data)."""
    if not path.endswith(".safetensors"):
        return False, []
    from .sections.weights import live_header

    h = live_header(art, path)
    if h is None:
        return bool(ranges), []
    base = 8 + h.header_len
    header = any(s < base for s, _ in ranges)
    names = [n for n, t in h.tensors.items() if t.end > t.start and any(base + t.start < e and base + t.end > s for s, e in ranges)]
    return header, names


def _chunk_mismatch(art: Artifact, path: str, chunk_size: int, got: Mapping[str, str], want: Mapping[str, str], source: str,
                    opts: Options, report: Report, into: list[Finding], algorithm: str = CHUNK_ALGORITHM) -> None:
    """Name the damaged byte ranges of a file verified by chunks, the tensors in them, and
    how to fetch only those bytes again."""
    key = chunk_key(chunk_size, algorithm)
    have, need = split_chunks(got[key], algorithm), split_chunks(want[key], algorithm)
    bad = [k for k, (a, b) in enumerate(zip(have, need, strict=True)) if a != b]
    if not bad:
        return
    size = art.files[path].size
    runs: list[tuple[int, int]] = []  # [start, end) of each run of consecutive bad chunks
    for k in bad:
        s, e = k * chunk_size, min((k + 1) * chunk_size, size)
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))
    shown = ", ".join(_in_units(s, e) for s, e in runs[:3]) + (f" and {len(runs) - 3} more ranges" if len(runs) > 3 else "")
    msg = f"bytes {shown} differ ({len(bad)} of {len(need)} chunks)"
    header, tensors = damaged_tensors(art, path, runs)
    what = (["the safetensors header"] if header else []) + (
        [f"tensors {', '.join(tensors[:5])}" + (f" and {len(tensors) - 5} more" if len(tensors) > 5 else "")] if tensors else [])
    if what:
        msg += ": " + "; ".join(what)
    ranges = ",".join(f"{s}-{e - 1}" for s, e in runs[:8])
    hint = (f"download the file again, or fetch only the damaged bytes with an HTTP Range request (Range: bytes={ranges}; "
            f"e.g. curl -L -r {runs[0][0]}-{runs[0][1] - 1} URL) and write them back at the same offsets")
    f = Finding.of("digest-mismatch", msg, path=path, hint=hint,
                   expected={"chunk_size": chunk_size, "chunks": len(need), "bad_chunks": bad,
                             "byte_ranges": [[s, e - 1] for s, e in runs], "tensors": tensors, "header": header})
    if opts.fail_fast:
        _emit(report, [f], opts)
    into.append(f)


def _emit_digest_mismatches(report: Report, found: list[Finding], source: str, opts: Options) -> None:
    _emit_grouped(report, found, lambda fs, items: f"{len(items)} files' content differs from {source} ({examples(items)})", opts)


class _PendingDigests:
    """Digests being computed in the background (see :func:`_start_digests`)."""

    def __init__(self, job: Any, bar: Any, known: list[str], expected: Mapping[str, Mapping[str, str]], algorithms: list[str], source: str):
        self.job, self.bar, self.known = job, bar, known
        self.expected, self.algorithms, self.source = expected, algorithms, source
        self.chunked: dict[str, int] = {}  # paths verified by chunks -> chunk size
        self.chunk_algorithm = CHUNK_ALGORITHM
        self.art: Artifact | None = None

    def close(self) -> None:
        self.job.close()
        self.bar.close()


def _start_digests(art: Artifact, expected: Mapping[str, Mapping[str, str]], paths: list[str], algorithms: list[str], opts: Options,
                   *, cache_key: tuple[str, ...], source: str, chunked: dict[str, int] | None = None,
                   chunk_algorithm: str = CHUNK_ALGORITHM) -> _PendingDigests:
    """Start hashing ``paths`` (stat cache first) to compare with ``expected[path][algorithm]``."""
    infos = [art.files[p] for p in paths]
    # Digests known without reading the file (a staged Git LFS pointer's oid, see precommit.py).
    known: list[str] = []
    if opts.known_digests:
        known = sorted(i.path for i in infos if all(a in opts.known_digests.get(i.path, {}) for a in algorithms))
        known_set = set(known)
        infos = [i for i in infos if i.path not in known_set]
    bar = _progress(opts, sum(i.size for i in infos), "verifying")
    try:
        job = hash_files(art, infos, algorithms, workers=opts.workers, cache=_cache(opts, cache_key), on_bytes=bar.update, chunked=chunked,
                         chunk_algorithm=chunk_algorithm, runner=opts.hash_runner)
    except BaseException:
        bar.close()
        raise
    pending = _PendingDigests(job, bar, known, expected, algorithms, source)
    pending.chunked, pending.art, pending.chunk_algorithm = chunked or {}, art, chunk_algorithm
    return pending


def _finish_digests(p: _PendingDigests, opts: Options, report: Report) -> None:
    """Compare the digests of a :func:`_start_digests` job as they arrive."""
    algorithms, expected, source = p.algorithms, p.expected, p.source
    mismatched: list[Finding] = []
    for path in p.known:
        _digest_mismatch(path, algorithms, opts.known_digests[path], expected[path], f"{source} (staged Git LFS pointer)", opts, report, mismatched)
    if p.known:
        report.stats["files_from_known_digests"] = len(p.known)
    cached: list[str] = []
    hashed_bytes = 0
    chunked = p.chunked
    try:
        for info, res, from_cache in p.job:
            if type(res) is dict and not from_cache and res == expected[info.path] and info.path not in chunked:
                hashed_bytes += info.size  # every digest as listed (the same keys, the same values): no mismatch
                continue
            if isinstance(res, FileChanged):
                _emit(report, [Finding.of("file-changed", f"changed while it was read ({res}); not verified", path=info.path)], opts)
                continue
            if isinstance(res, Exception):
                _emit(report, [Finding.of("unreadable", f"cannot read: {getattr(res, 'strerror', None) or res}", path=info.path)], opts)
                continue
            if from_cache:
                cached.append(info.path)
            else:
                hashed_bytes += info.size
            if info.path in p.chunked and p.art is not None:
                _chunk_mismatch(p.art, info.path, p.chunked[info.path], res, expected[info.path], source, opts, report, mismatched,
                                p.chunk_algorithm)
            else:
                _digest_mismatch(info.path, algorithms, res, expected[info.path], source, opts, report, mismatched)
    finally:
        p.close()
    _emit_digest_mismatches(report, mismatched, source, opts)
    report.mark_checked("digests")
    report.stats.update({"files_hashed": len(p.job.todo), "bytes_hashed": hashed_bytes, "algorithms": algorithms})
    if p.chunked:
        report.stats["files_by_chunks"] = len(p.chunked)
    if cached:
        report.stats["files_from_cache"] = len(cached)
        report.facts["trusted_from_cache"] = cached
        report.mark_checked("digests (stat cache)")


def _verify_digests(art: Artifact, expected: Mapping[str, Mapping[str, str]], paths: list[str], algorithms: list[str], opts: Options,
                    report: Report, *, cache_key: tuple[str, ...], source: str, chunked: dict[str, int] | None = None,
                    chunk_algorithm: str = CHUNK_ALGORITHM) -> None:
    """Hash ``paths`` (stat cache first) and compare with ``expected[path][algorithm]``
    (``chunked`` files: with ``expected[path][chunk_key]``, chunk by chunk)."""
    _finish_digests(_start_digests(art, expected, paths, algorithms, opts, cache_key=cache_key, source=source, chunked=chunked,
                                   chunk_algorithm=chunk_algorithm), opts, report)


def _check_claims(m: Manifest, opts: Options, report: Report) -> None:
    if m.expires is not None:
        if parse_time(m.expires) <= datetime.now(timezone.utc):
            _emit(report, [Finding.of("manifest-expired", f"the manifest expired at {m.expires}", expected=m.expires)], opts)
        report.mark_checked("expiry")
    if opts.expect_model is not None:
        if m.model_id != opts.expect_model:
            msg = f"manifest is for {m.model_id or '(no model id)'}, expected {opts.expect_model}"
            _emit(report, [Finding.of("model-mismatch", msg, expected=opts.expect_model, actual=m.model_id)], opts)
        report.mark_checked("model-id")
    if opts.expect_revision is not None:
        if m.revision != opts.expect_revision:
            msg = f"manifest is for revision {m.revision or '(none)'}, expected {opts.expect_revision}"
            _emit(report, [Finding.of("revision-mismatch", msg, expected=opts.expect_revision, actual=m.revision)], opts)
        report.mark_checked("revision")
    if (opts.expect_model or opts.expect_revision) and not opts.has_anchor:
        report.mark_not_checked("claims-authenticity", "model id and revision were compared, but with no --key anyone could have written them")


# --------------------------------------------------------------------------- check
def check(path: str | os.PathLike[str], *, options: Options | None = None, storage_options: Mapping[str, Any] | None = None,
          **kw: Any) -> Report:
    """Diagnose a checkpoint with no manifest: why would it not load? ``path`` may be an
    fsspec URL, read with ``storage_options`` (see :func:`verify`)."""
    opts = options or Options(**kw)
    root, settings = resolve_target(path, storage_options)
    if "remote" in settings:
        opts = _remote_options(opts)
    report = Report("check", str(path))
    _target_facts(report, path, root, settings)
    t0 = time.perf_counter()
    try:
        art = _discover(root, settings, list(DEFAULT_IGNORE))
        _emit(report, art.problems, opts)
        report.mark_checked("file-types")
        _run_sections(art, all_sections(), None, opts, report)
        report.mark_not_checked("digests", "check needs no manifest, so file contents are not compared with known digests")
        _load_tier(art, opts, report)
    except _Stop:
        pass
    from .diagnosis import apply

    _remote_facts(report, settings)
    apply(report)
    report.stats["seconds"] = round(time.perf_counter() - t0, 4)
    return report


__all__ = ["EXIT_INPUT", "check", "create", "load_manifest", "resolve_target", "verify", "verify_or_raise"]
