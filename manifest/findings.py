"""Findings: the data every check produces, with a registry of stable codes.

A code is a contract: its name, its one-line meaning (rendered into ``docs/codes.md``
by ``scripts/gen_docs.py`` and checked by a test) and its default severity never
change once released. New codes may be added.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Severity(str, Enum):
    """How a finding counts toward the verdict."""

    ERROR = "error"  # fails verification (exit 1)
    WARNING = "warning"  # shown, does not fail
    INFO = "info"  # context only

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


@dataclass(frozen=True)
class CodeInfo:
    code: str
    meaning: str
    severity: Severity = Severity.ERROR
    group: str = "files"
    hint: str = ""  # the default fix, when the check that finds it knows no better one


_CODES: dict[str, CodeInfo] = {}


def _c(code: str, meaning: str, severity: Severity = Severity.ERROR, group: str = "files", *, hint: str = "") -> None:
    _CODES[code] = CodeInfo(code, meaning, severity, group, hint)


# -- manifest and trust -------------------------------------------------------
_c("manifest-invalid", "The manifest is not a well-formed manifest of a supported version (exit 2).", group="manifest", hint="get the manifest again from its publisher, or write a new one with `manifest create DIR`")
_c("manifest-unsupported", "The manifest uses a format version or feature this tool does not know (exit 2).", group="manifest", hint="upgrade model-manifest (pip install -U model-manifest), or create the manifest again with this version")
_c("weak-digest", "The manifest relies on a digest algorithm that is unknown or not cryptographic (md5, none, xxh3 alone).", group="manifest", hint="create the manifest again with a cryptographic digest: `manifest create DIR --hash sha256`")
_c("signature-invalid", "A signature by a trusted key does not verify over the manifest's canonical bytes.", group="trust", hint="get the manifest again from its publisher; if you changed it yourself, sign it again with `manifest create DIR --key PRIVATE_KEY.pem`")
_c("signature-missing", "A key was given but the manifest carries no signature.", group="trust", hint="ask the publisher for a signed manifest (`manifest create DIR --key PRIVATE_KEY.pem`), or verify with --no-signature (instead of --key) to compare the files only")
_c("signature-ignored", "A signature that does not verify (by a given key, or malformed) beside a valid one by a given key; one valid signature suffices.",
   Severity.WARNING, group="trust", hint="drop the entry from the manifest's signatures, or sign again with `manifest create DIR --key PRIVATE_KEY.pem`")
_c("no-trust-anchor", "verify was given no trust anchor (--key, --ca, --identity/--issuer, or a --trust file): authenticity is not established; pass one, or --no-signature for an integrity-only check.",
   group="trust", hint="pass --key PUBLIC.pem, or --no-signature for an integrity-only check")
_c("untrusted-key", "The manifest is signed, but by none of the keys given on the command line.", group="trust", hint="pass the publisher's public key with --key, or get a manifest signed by a key you trust")
_c("certificate-expired", "A certificate of a signature's chain is not valid at the time of verification (expired, or not yet valid).",
   group="trust", hint="ask the publisher to sign again with a current certificate (a certificate signature carries no trusted timestamp)")
_c("certificate-eku", "A signing certificate is not for code signing: no code-signing extended key usage (1.3.6.1.5.5.7.3.3), or a key usage without digitalSignature.",
   group="trust", hint="sign with a certificate issued for code signing (extendedKeyUsage = codeSigning)")
_c("model-mismatch", "The manifest belongs to another model than --expect-model names.", group="trust", hint="this manifest describes another model: use the manifest published with this model, or correct --expect-model")
_c("revision-mismatch", "The manifest belongs to another revision than --expect-revision names (replay of an older manifest).", group="trust", hint="use the manifest of this revision (an older manifest may be replayed), or correct --expect-revision")
_c("manifest-expired", "The manifest's expiry time has passed.", group="trust", hint="ask the publisher for a fresh manifest (`manifest create DIR --expires ... --key PRIVATE_KEY.pem`)")
_c("manifest-symlink", "The manifest (or OMS bundle) inside the directory is a symlink: it must be a regular file; what it points to is checked like any other entry, never left out.", group="manifest", hint="put the manifest there as a regular file (not a link), or keep it outside the directory and pass it with -m")
_c("identity-mismatch", "A Sigstore (keyless) bundle's certificate names a signer identity (SAN) or OIDC issuer other than every --identity/--issuer pair given, or no pair was given beside other trust anchors.",
   group="trust", hint="pass the publisher's identity and OIDC issuer with --identity ID --issuer URL (the finding names the ones the certificate claims), or get a bundle signed by an identity you trust")
_c("certificate-untrusted", "A signing certificate does not chain to a trusted root: a Sigstore certificate to a Fulcio root of the trusted root at the time of signing "
   "(with a valid SCT and the code-signing usage); an X.509 certificate signature (--ca) to a given root, or its certificates are unreadable.",
   group="trust", hint="Sigstore: check that the bundle comes from the instance you trust (--trusted-root FILE for a private one); a certificate signature: "
   "pass the publisher's root with --ca ROOT.pem, and check that the signature carries its intermediates; otherwise it is forged or damaged")
_c("transparency-log-invalid", "A Sigstore bundle's Rekor transparency log entry (inclusion proof, checkpoint, signed entry timestamp) does not verify with the trusted root, or does not match the signature it records; or no verified time of signing exists.",
   group="trust", hint="get the bundle again from the publisher; a bundle from a private Sigstore instance needs its trusted root (--trusted-root FILE)")
_c("timestamp-unverified", "A Sigstore bundle's RFC 3161 signed timestamp does not verify with the trusted root's timestamp authorities; it was not counted, and the Rekor entry alone gave the time of signing.",
   Severity.WARNING, group="trust", hint="a bundle from a newer timestamp authority needs a newer trusted root (upgrade sigstore, or --trusted-root FILE); otherwise the timestamp was damaged: get the bundle again")
_c("key-invalid", "A key file cannot be read, or is not a supported key: Ed25519, ECDSA P-256/P-384/P-521 or ML-DSA-65 (exit 2).", group="trust", hint="pass a PEM Ed25519, ECDSA (P-256, P-384, P-521) or ML-DSA-65 key (make a pair with `manifest keygen`)")
# -- file set ---------------------------------------------------------------------
_c("missing-file", "A file the manifest lists is not in the directory.", hint="restore the file from the original checkpoint (download it again); if it was removed on purpose, create the manifest again")
_c("extra-file", "The directory holds a file the manifest does not list.", hint="delete the file if it does not belong to the model; if it was added on purpose, create the manifest again")
_c("unsigned-empty-file", "An empty file beside a model verified against an OMS shard bundle: model_signing cuts an empty file into no shard, so a shard bundle cannot list it and its presence is not signed.", Severity.WARNING, hint="delete the empty file if it does not belong to the model; to have it signed, sign by files instead of shards")
_c("extra-directory", "The directory holds a directory (empty or not) that no listed file or recorded empty directory accounts for; loaders match directory names too.", hint="delete the directory if it does not belong to the model (transformers reads names like tekken.json or chat_template.jinja even as directories); if it was added on purpose, create the manifest again")
_c("missing-directory", "An empty directory the manifest records is not in the directory.", hint="make the empty directory again, or create the manifest again without it (git and the Hub do not keep empty directories)")
_c("size-mismatch", "A file's size differs from the size the manifest records.", hint="download the file again or restore it from the original checkpoint; if it was changed on purpose, create the manifest again")
_c("digest-mismatch", "A file's digest differs from the digest the manifest records.", hint="the content changed: download the file again or restore it; if it was changed on purpose, create the manifest again")
_c("file-changed", "A file changed while it was being read (size or mtime moved; for an object in storage, its ETag or generation moved since the listing); its digest proves nothing.", hint="run again when nothing writes to the directory or the bucket prefix")
_c("unsafe-path", "A path could escape the directory or is not portable (.., absolute, backslash, NUL, newline, symlink out or loop).", hint="remove or rename the path (no '..', absolute paths, backslashes, or links out of the directory)")
_c("path-collision", "Two paths differ only by case or Unicode normalization and would collide on some file systems.", hint="rename one of the two files so that their names differ by more than case or Unicode normalization")
_c("unsupported-file", "A symlink, FIFO, socket or device where a regular file is expected; it is never opened.", hint="replace it with a regular file, or delete it")
_c("unreadable", "A file or directory cannot be read (permission denied or I/O error) (exit 2 when nothing else can be checked).", hint="check the file's permissions and the disk, then run again")
_c("cached-digest", "A digest was taken from the stat cache instead of being recomputed (the file's size, mtime, inode and device are unchanged).", Severity.INFO, hint="run with --no-cache to hash every file again")
# -- weights ------------------------------------------------------------------------
_c("lfs-pointer", "A Git LFS pointer file stands in place of the real content.", group="weights", hint="run `git lfs install && git lfs pull`, or download the file from the Hub")
_c("truncated", "A file holds fewer or more bytes than its own header promises (interrupted or corrupted download).", group="weights", hint="download the file again (`hf download ORG/NAME FILE`, or `git lfs pull`)")
_c("header-invalid", "A safetensors header is malformed or breaks a format rule, or the file is not safetensors at all.", group="weights", hint="download the file again, or save the model again with save_pretrained")
_c("pickle-file", "A pickle file (weights as .bin, .pt, .pth, .pkl, .ckpt, or Trainer state such as optimizer.pt) that would run code when unpickled; lists its imports.", Severity.WARNING, group="weights", hint="prefer a safetensors checkpoint; torch.load(weights_only=True) limits what runs")
_c("index-mismatch", "A shard index (*.safetensors.index.json) disagrees with its shards (a warning when transformers still loads every tensor).", group="weights", hint="save the checkpoint again (save_pretrained), or download the index and all its shards from one revision")
_c("tensor-mismatch", "A tensor was renamed, added, removed, or changed dtype or shape against the manifest.", group="weights", hint="restore the weights the manifest was created for; if the change is intended (fine-tuning, a dtype cast), create the manifest again")
_c("memory-insufficient", "Loading the weights needs more memory than is available or than --memory-limit allows.", group="weights", hint="load in a smaller dtype (torch_dtype), spread the model over devices (device_map), or use a machine with more memory")
# -- semantics -----------------------------------------------------------------------
_c("tokenizer-mismatch", "The tokenizer's vocabulary or id-changing settings differ from the manifest, or contradict the model (casing, special ids).", group="semantics", hint="restore the tokenizer files (tokenizer.json, vocab files, tokenizer_config.json) the model was trained with")
_c("label-map-mismatch", "id2label/label2id are inconsistent with each other or with the manifest.", group="semantics", hint="restore id2label/label2id in config.json to the labels the classifier head was trained with")
_c("config-mismatch", "A recorded config fact (model_type, architectures, sizes, dtype, ...) differs from the manifest.", group="semantics", hint="restore config.json from the original checkpoint, or create the manifest again if the change is intended")
_c("shape-config-mismatch", "Config, tokenizer and weights disagree with each other (vocab size, label count, head present).", group="semantics", hint="restore whichever of config.json, the tokenizer and the weights was changed, from the original checkpoint")
_c("version-unsatisfied", "An installed library version does not satisfy a requirement, or transformers does not know the model_type.", group="environment", hint="install a version that satisfies the requirement (pip install 'NAME>=VERSION')")
_c("side-file-invalid", "A config or tokenizer file (config.json, tokenizer.json, vocab files, ...) is malformed.", group="semantics", hint="restore the file from the original checkpoint")
_c("side-file-missing", "A file loading needs is absent: config.json beside weights, the vocabulary a tokenizer_config.json "
   "needs, or (a warning) any tokenizer beside a model that reads token ids.", group="semantics",
   hint="copy the file from the checkpoint the weights were saved with (save_pretrained writes it)")
_c("remote-code", "The checkpoint asks for custom code (auto_map or *.py files) that runs only with --trust-remote-code.", Severity.WARNING, group="semantics", hint="read the code before loading; it runs only with trust_remote_code=True (--trust-remote-code)")
_c("load-mismatch", "A structural load found state_dict keys or shapes that differ from the weights headers.", group="load", hint="restore config.json and the weights from one checkpoint (`manifest check DIR` names what disagrees)")
_c("load-failed", "The real load (from_pretrained and a forward pass) raised an error.", group="load", hint="`manifest check DIR` names the usual causes without loading; the error names the rest")
# -- Hugging Face cache ----------------------------------------------------------------
_c("hub-record-mismatch", "A cached file disagrees with the Hub's own record in the cache (blob name, tree listing).", group="hub", hint="the cached file is not what the Hub served: download it again (`hf download ORG/NAME FILE --force-download`)")
_c("hub-absent-marker", "The Hugging Face cache marks a file the snapshot or manifest has as absent on the Hub (.no_exist/<commit>/<path>): loading by repo id skips it.", group="hub", hint="delete the marker and load the snapshot by its path (facts.snapshot_path)")
_c("incomplete-download", "The cache holds an unfinished download (*.incomplete blob) or a snapshot misses a file.", group="hub", hint="download the model again (`hf download ORG/NAME`): an interrupted download resumes")
# -- the run itself (one-line errors, exit 2 or 130) ---------------------------------------
_c("ambiguous-target", "ORG/NAME is also a local directory: the directory was checked, not the Hugging Face cache's snapshot.", Severity.WARNING, group="run", hint="write ./ORG/NAME for the directory or ORG/NAME@REVISION for the cache")
_c("usage", "The command line is wrong (unknown option value, conflicting options) (exit 2).", group="run", hint="see `manifest COMMAND --help`")
_c("input-invalid", "An input file is unusable: over a size cap, or not of the expected kind (exit 2).", group="run", hint="pass a file of the expected kind and size")
_c("manifest-too-large", "The manifest create would write is over the 64 MiB a verifier reads (millions of tensors or files); nothing was written (exit 2).", group="run", hint="leave generated or duplicate files out of the directory; a checkpoint of millions of tensors cannot be recorded tensor by tensor")
_c("interrupted", "The run was interrupted (Ctrl-C); nothing was written (exit 130).", group="run", hint="run the command again")
_c("write-failed", "The manifest, key or bundle could not be written (no such directory, no space, no permission); nothing partial is left (exit 2).", group="run", hint="check that the output directory exists, is writable and has space")
_c("write-refused", "An output path (create -o, keygen -o, export --oms) exists and is not a regular file (a FIFO, symlink, device node, socket or directory): it is never replaced, and nothing is written (exit 2).", group="run", hint="write to a new path, or remove what is there first if it is yours")
_c("worker-lost", "audit --ray: the Ray worker or node verifying a model, or hashing one of its files or chunks, died, and every retry (--retries) died too; the model is not verified, never passed (exit 2).", group="run", hint="run the audit again; if the same model loses its worker each time, verify it alone (`manifest verify DIR`) and check the node's memory")
_c("internal", "A bug in this tool: please report it with MANIFEST_DEBUG=1 output (exit 2).", group="run", hint="run again with MANIFEST_DEBUG=1 and report the traceback")


def code_info(code: str) -> CodeInfo:
    return _CODES[code]


def all_codes() -> dict[str, CodeInfo]:
    return dict(_CODES)


@dataclass(frozen=True)
class Finding:
    """One thing a check found. ``code`` is a stable identifier from the registry."""

    code: str
    message: str
    path: str | None = None
    expected: Any = None
    actual: Any = None
    hint: str | None = None
    severity: Severity = field(default=Severity.ERROR)
    # What a grouped finding covers: the files or tensors that all show the same change
    # (see :func:`group_repeats`); the message names the count and a few of them.
    items: tuple[str, ...] | None = None
    # A root cause carries an ``id``; the findings it explains point at it with
    # ``caused_by`` (see :mod:`manifest.diagnosis`). Reports list root causes first.
    id: str | None = None
    caused_by: str | None = None

    def __post_init__(self) -> None:
        if self.code not in _CODES:
            raise ValueError(f"unregistered finding code {self.code!r}")

    @classmethod
    def of(cls, code: str, message: str, **kw: Any) -> Finding:
        """A finding with the code's default severity and, unless one is given, its default hint."""
        kw.setdefault("severity", _CODES[code].severity)
        if not kw.get("hint"):
            kw["hint"] = _CODES[code].hint or None
        return cls(code, message, **kw)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        text = " ".join(self.message.split())
        return f"{self.severity.value}[{self.code}]: {where}{text}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "severity": self.severity.value, "message": self.message}
        if self.path is not None:
            d["path"] = self.path
        if self.expected is not None:
            d["expected"] = self.expected
        if self.actual is not None:
            d["actual"] = self.actual
        if self.hint is not None:
            d["hint"] = self.hint
        if self.items is not None:
            d["items"] = list(self.items)
            d["count"] = len(self.items)
        if self.id is not None:
            d["id"] = self.id
        if self.caused_by is not None:
            d["caused_by"] = self.caused_by
        return d


GROUP_MIN = 4  # this many findings with the same change become one
EXAMPLES = 3  # items a grouped message names


def examples(items: Sequence[str], n: int = EXAMPLES, quote: bool = False) -> str:
    """``a, b, c, ...``: the first ``n`` items, for a grouped message."""
    shown = [repr(i) if quote else i for i in items[:n]]
    return ", ".join(shown) + (", ..." if len(items) > n else "")


def group_repeats(
    findings: Iterable[Finding],
    key: Callable[[Finding], Hashable | None],
    describe: Callable[[list[Finding], tuple[str, ...]], str],
    *,
    subject: Callable[[Finding], str] | None = None,
    min_count: int = GROUP_MIN,
) -> list[Finding]:
    """Findings of one code that show the same change (equal ``key``, never None) over
    ``min_count`` or more subjects become one finding, in the place of the first: its
    message is ``describe(members, items)``, ``items`` lists every subject (a file path by
    default), and ``expected``/``actual``/``path`` are kept where all members agree."""
    subj = subject or (lambda f: f.path or "")
    buckets: dict[Any, list[Finding]] = {}
    order: list[list[Finding]] = []
    for f in findings:
        k = key(f)
        if k is None:
            order.append([f])
            continue
        bucket = buckets.get((f.code, f.severity, k))
        if bucket is None:
            bucket = buckets[(f.code, f.severity, k)] = []
            order.append(bucket)
        bucket.append(f)
    out: list[Finding] = []
    for members in order:
        if len(members) < min_count:
            out.extend(members)
            continue
        first = members[0]
        items = tuple(subj(m) for m in members)

        def common(attr: str, members: list[Finding] = members, first: Finding = first) -> Any:
            v = getattr(first, attr)
            return v if all(getattr(m, attr) == v for m in members) else None

        out.append(replace(first, message=describe(members, items), items=items, path=common("path"),
                           expected=common("expected"), actual=common("actual")))
    return out
