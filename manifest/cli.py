"""The ``manifest`` command: a thin layer over :mod:`manifest.api`.

Exit codes: 0 verified / no problems, 1 verification failed, 2 usage error or
unreadable / malformed input. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import EXIT_INPUT, ManifestError, UsageError
from .options import Options
from .render import Format, render

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ManifestError as e:
            click.echo(e.one_line(), err=True)
            sys.exit(e.exit_status)
        except KeyboardInterrupt:
            click.echo("error[interrupted]: interrupted; nothing was written", err=True)
            sys.exit(130)
        except Exception as e:  # last resort: a bug must still not print a traceback
            if os.environ.get("MANIFEST_DEBUG"):
                raise
            click.echo(f"error[internal]: {type(e).__name__}: {' '.join(str(e).split())[:300]} (set MANIFEST_DEBUG=1 for details)", err=True)
            sys.exit(EXIT_INPUT)

    return wrapper  # type: ignore[return-value]


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"cannot read size {text!r} (e.g. 8GiB, 500MB, 1073741824)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def sigstore_identities(identities: tuple[str, ...], issuers: tuple[str, ...]) -> list[tuple[str, str]]:
    """``--identity``/``--issuer`` pairs, by position: each identity needs its issuer (an
    identity alone would accept a certificate from any OIDC provider that vouches for the name)."""
    if len(identities) != len(issuers):
        raise UsageError(f"--identity and --issuer come in pairs (one issuer per identity): got {len(identities)} --identity and "
                         f"{len(issuers)} --issuer")
    for value, flag in [*((i, "--identity") for i in identities), *((i, "--issuer") for i in issuers)]:
        if not value.strip():
            raise UsageError(f"{flag} must not be empty")
    return list(zip(identities, issuers, strict=True))


def _emit_report(report: Any, fmt: Format) -> None:
    click.echo(render(report, fmt), nl=False)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if fmt is Format.GITHUB and summary:  # in GitHub Actions the annotations come with a job summary
        try:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(render(report, Format.MARKDOWN))
        except OSError as e:
            click.echo(f"warning: cannot write the job summary to {summary}: {e.strerror}", err=True)
    sys.exit(report.exit_status)


def _storage_options(text: str | None) -> dict[str, Any] | None:
    """``--storage-options JSON`` (None when not given)."""
    if text is None:
        return None
    from .remote import parse_storage_options

    return parse_storage_options(text)


def _is_url(target: str) -> bool:
    from .paths import is_url

    return is_url(target)


def _fmt(json_flag: bool, fmt: str | None) -> Format:
    if json_flag:
        return Format.JSON
    return Format(fmt) if fmt else Format.TEXT


format_options = [
    click.option("--json", "json_flag", is_flag=True, help="Print the report as JSON (schemas/report.schema.json) on stdout."),
    click.option("--format", "fmt", type=click.Choice([f.value for f in Format]), default=None, help="Output format (default text)."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    click.option("--fail-fast", is_flag=True, help="Stop at the first error."),
]
load_options = [
    click.option("--load", type=click.Choice(["structural", "full"]), default=None,
                 help="Opt-in load tier: 'structural' builds the model on the meta device; 'full' runs from_pretrained and a forward pass."),
    click.option("--trust-remote-code", is_flag=True, help="Allow the load tier to run the checkpoint's own Python code."),
    click.option("--memory-limit", default=None,
                 help="Report memory-insufficient if the estimated peak memory of a load exceeds this (e.g. 8GiB; docs/weights.md)."),
    click.option("--check-memory", is_flag=True, help="Compare the estimated peak memory of a load with the memory available."),
]


def _apply(opts: list[Callable[[F], F]]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for o in reversed(opts):
            fn = o(fn)
        return fn

    return deco


class _Main(click.Group):
    """The command group, with click's usage errors as one line ``error[usage]: ...``
    (exit 2) instead of click's usage block; ``--help``, ``--version`` and a bare
    ``manifest`` still print their text."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.format_message(), err=True)  # the help text itself: no arguments at all
            sys.exit(EXIT_INPUT)
        except click.ClickException as e:
            click.echo(usage_line(e), err=True)
            sys.exit(EXIT_INPUT)
        except (click.Abort, KeyboardInterrupt, EOFError):
            click.echo("error[interrupted]: interrupted; nothing was written", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def usage_line(e: click.ClickException) -> str:
    """``error[usage]: No such option '--x' (see: manifest check --help)``: one line."""
    ctx = getattr(e, "ctx", None)
    see = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    text = " ".join(e.format_message().split()).rstrip(".")
    return f"error[usage]: {text}{see}"


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="manifest", message="%(prog)s, version %(version)s")  # a literal message: no gettext lookup at start-up
def main() -> None:
    """Fingerprint, sign and verify Hugging Face-style model checkpoints.

    \b
    manifest create DIR --key private.pem    write DIR/manifest.json, signed
    manifest verify DIR --key public.pem     check DIR against it (exit 0/1/2)
    manifest check DIR                       why won't this model load? (no manifest)
    """


def _certificates(cert_path: str | None, chain_paths: tuple[str, ...]) -> list[Any] | None:
    """--cert (one certificate) then every certificate of the --cert-chain files, in order."""
    if not cert_path:
        if chain_paths:
            raise UsageError("--cert-chain needs --cert (the signing certificate itself)")
        return None
    from .certs import load_certificates

    leaf = load_certificates(cert_path, "certificate")
    if len(leaf) != 1:
        raise UsageError(f"--cert {cert_path} holds {len(leaf)} certificates: give the signing certificate alone, and the others with --cert-chain")
    return leaf + [c for p in chain_paths for c in load_certificates(p, "certificate chain")]


@main.command()
@click.argument("directory", metavar="DIR")
@click.option("-o", "--output", type=click.Path(),
              help="Manifest file to write (default DIR/manifest.json); only an absent path or a regular file is replaced.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False), help="Private key (PEM) to sign with.")
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False),
              help="The --key's X.509 code-signing certificate (PEM), recorded with the signature for `verify --ca ROOT.pem`.")
@click.option("--cert-chain", "chain_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Intermediate certificate(s) (PEM) between --cert and the root, recorded with it. Repeatable.")
@click.option("--model-id", help="The model's id, e.g. org/name.")
@click.option("--revision", help="The model's revision (commit, tag or version).")
@click.option("--expires", help="Expiry time, YYYY-MM-DDTHH:MM:SSZ.")
@click.option("--hash", "hashes", multiple=True, help="Digest algorithm(s): sha256 (default), blake3, xxh3-128. Repeatable.")
@click.option("--require", "requires", multiple=True, help="Extra requirement specifier to record, e.g. 'torch>=2.6'. Repeatable.")
@click.option("--no-cache", is_flag=True, help="Do not use or fill the stat cache.")
@click.option("--storage-options", "storage_options", default=None, metavar="JSON",
              help="URL targets (s3://, gs://, file://): backend options as a JSON object, e.g. '{\"anon\": true}' (docs/remote.md).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
@_one_line_errors
def create(directory: str, output: str | None, key_path: str | None, cert_path: str | None, chain_paths: tuple[str, ...],
           model_id: str | None, revision: str | None,
           expires: str | None, hashes: tuple[str, ...], requires: tuple[str, ...], no_cache: bool, storage_options: str | None,
           quiet: bool) -> None:
    """Fingerprint DIR into a (signed) manifest."""
    from .api import create as do_create
    key = None
    if key_path:  # cryptography is imported only when there is a key
        from .signing import load_private_key

        key = load_private_key(key_path)
    certificates = _certificates(cert_path, chain_paths)
    opts = Options(algorithms=list(hashes) or None, requires=list(requires), use_cache=not no_cache, progress=not quiet)
    m = do_create(directory, output=output, key=key, model_id=model_id, revision=revision, expires=expires, options=opts,
                  storage_options=_storage_options(storage_options), certificates=certificates)
    if not quiet:
        out = output or str(Path(directory) / "manifest.json")
        signed = "signed" if m.signatures else "unsigned"
        click.echo(f"wrote {out}: {len(m.files)} files, {sum(e.size for e in m.files.values())} bytes, {signed}", err=True)
        if m.directories:
            click.echo(f"recorded {len(m.directories)} empty director{'y' if len(m.directories) == 1 else 'ies'} "
                       f"({', '.join(d + '/' for d in m.directories[:3])}{', ...' if len(m.directories) > 3 else ''}): verify fails "
                       "where one is missing, and git and the Hugging Face Hub do not keep empty directories", err=True)


trust_options = [
    click.option("--key", "key_paths", multiple=True, type=click.Path(dir_okay=False),
                 help="Trusted public key (PEM). Repeatable; only these keys are trusted."),
    click.option("--ca", "ca_paths", multiple=True, type=click.Path(dir_okay=False),
                 help="Trusted X.509 root (PEM, one or more certificates) for certificate signatures. Repeatable."),
    click.option("--trust", "trust_path", type=click.Path(dir_okay=False), default=None,
                 help="Trust policy file (JSON, schemas/trust.schema.json): keys, CA roots and Sigstore identities, added to those of the flags "
                      "(default: $MANIFEST_TRUST; never a file inside DIR)."),
    click.option("--no-signature", "no_signature", is_flag=True,
                 help="Integrity only: check the files against the manifest without a trust anchor; authenticity is not checked."),
]


def _trust_anchors(key_paths: tuple[str, ...], ca_paths: tuple[str, ...], trust_path: str | None, no_signature: bool, targets: list[str],
                   identities: tuple[str, ...] = (), issuers: tuple[str, ...] = (),
                   trusted_root: str | None = None) -> tuple[list[Any], list[Any], list[tuple[str, str]], str | None]:
    """The trust anchors of verify and audit: keys, CA roots, Sigstore identities and trusted
    root, from the flags and the trust policy file (never one inside a target)."""
    if no_signature and (key_paths or ca_paths or trust_path):
        raise UsageError("--no-signature (integrity only) and a trust anchor (--key, --ca, --trust) contradict each other: pass one of them")
    pairs = sigstore_identities(identities, issuers)
    keys: list[Any] = []
    cas: list[Any] = []
    if key_paths:  # cryptography is imported only when there is a key
        from .signing import load_public_key

        keys = [load_public_key(k) for k in key_paths]
    if ca_paths:
        from .certs import load_certificates

        cas = [c for p in ca_paths for c in load_certificates(p, "CA root")]
    if trust_path is None and not no_signature:  # the environment's policy yields to an explicit integrity-only run
        trust_path = os.environ.get("MANIFEST_TRUST") or None
    if trust_path:
        from .trust import load_trust, refuse_inside

        policy = load_trust(trust_path)
        for target in targets:
            refuse_inside(policy, target)
        keys += policy.keys
        cas += policy.cas
        pairs += [p for p in policy.identities if p not in pairs]
        if policy.trusted_root is not None:
            if trusted_root is not None and os.path.realpath(trusted_root) != os.path.realpath(policy.trusted_root):
                raise UsageError(f"--trusted-root {trusted_root} and the trust file's trusted_root {policy.trusted_root} differ: give one")
            trusted_root = policy.trusted_root
    return keys, cas, pairs, trusted_root


@main.command()
@click.argument("directory", metavar="DIR")
@click.option("-m", "--manifest", "manifest_path", type=click.Path(dir_okay=False), help="Manifest to check against (default DIR/manifest.json).")
@_apply(trust_options)
@click.option("--expect-model", help="Refuse a manifest for another model id.")
@click.option("--expect-revision", help="Refuse a manifest for another revision.")
@click.option("--hash", "hashes", multiple=True, help="Check only these recorded digest algorithms.")
@click.option("--no-cache", is_flag=True, help="Rehash every file; do not trust the stat cache.")
@click.option("--exhaustive", is_flag=True, help="Hash digests even when cheaper checks already failed.")
@click.option("--oms", "oms_path", type=click.Path(dir_okay=False),
              help="Verify an OpenSSF Model Signing bundle instead of a manifest (DIR may then be the one file a single-file bundle signs).")
@click.option("--allow-symlinks", is_flag=True,
              help="With --oms: follow symlinks to regular files inside the model (model_signing --allow_symlinks); a link out stays a finding.")
@click.option("--identity", "identities", multiple=True, metavar="ID",
              help="Sigstore keyless (--oms): a signer identity to accept (the certificate's SAN, e.g. an email). Paired in order with --issuer; repeatable.")
@click.option("--issuer", "issuers", multiple=True, metavar="URL",
              help="The OIDC issuer paired with the --identity at the same position, e.g. https://accounts.google.com.")
@click.option("--trusted-root", "trusted_root", type=click.Path(dir_okay=False), default=None,
              help="Sigstore trusted root (or client trust configuration) JSON of a private deployment "
                   "(default: the public-good root shipped with sigstore; nothing is fetched).")
@click.option("--require", "requires", multiple=True, help="Also check this requirement specifier, e.g. 'torch>=2.6'. Repeatable.")
@click.option("--storage-options", "storage_options", default=None, metavar="JSON",
              help="URL targets (s3://, gs://, file://): backend options as a JSON object, e.g. '{\"anon\": true}' (docs/remote.md).")
@_apply(format_options)
@_apply(load_options)
@_one_line_errors
def verify(directory: str, manifest_path: str | None, key_paths: tuple[str, ...], ca_paths: tuple[str, ...], trust_path: str | None,
           no_signature: bool, expect_model: str | None,
           expect_revision: str | None, hashes: tuple[str, ...], no_cache: bool, exhaustive: bool, oms_path: str | None, allow_symlinks: bool,
           identities: tuple[str, ...], issuers: tuple[str, ...], trusted_root: str | None,
           requires: tuple[str, ...], storage_options: str | None, json_flag: bool, fmt: str | None, quiet: bool, fail_fast: bool,
           load: str | None, trust_remote_code: bool, memory_limit: str | None, check_memory: bool) -> None:
    """Verify DIR (or ORG/NAME[@REV] in the Hugging Face cache) against its manifest."""
    keys, cas, pairs, trusted_root = _trust_anchors(key_paths, ca_paths, trust_path, no_signature, [directory], identities, issuers, trusted_root)
    if trusted_root and not pairs:
        raise UsageError("--trusted-root is the root of Sigstore (keyless) verification: pass it with --identity ID --issuer URL")
    opts = Options(
        keys=keys, cas=cas, identities=pairs, trusted_root=trusted_root,
        integrity_only=no_signature, expect_model=expect_model, expect_revision=expect_revision, fail_fast=fail_fast, exhaustive=exhaustive,
        algorithms=list(hashes) or None, use_cache=not no_cache, progress=not quiet,
        memory_limit=parse_size(memory_limit) if memory_limit else None, check_memory=check_memory,
        load=load, trust_remote_code=trust_remote_code, requires=list(requires), allow_symlinks=allow_symlinks,
    )
    if allow_symlinks and not oms_path:
        raise UsageError("--allow-symlinks applies to --oms bundles only (a manifest never records a symlink)")
    if oms_path:
        from .oms import verify_oms

        if storage_options or _is_url(directory):
            raise UsageError("--oms verifies a local directory; for a URL target verify its manifest")
        report = verify_oms(directory, oms_path, options=opts)
    else:
        from .api import verify as do_verify

        report = do_verify(directory, manifest_path, options=opts, storage_options=_storage_options(storage_options))
    _emit_report(report, _fmt(json_flag, fmt))


@main.command()
@click.argument("directory", metavar="DIR")
@click.option("--require", "requires", multiple=True, help="Requirement specifier to check, e.g. 'torch>=2.6'. Repeatable.")
@click.option("--no-cache", is_flag=True, help="ORG/NAME targets: rehash every blob against the Hub's hashes; do not trust the stat cache.")
@click.option("--storage-options", "storage_options", default=None, metavar="JSON",
              help="URL targets (s3://, gs://, file://): backend options as a JSON object, e.g. '{\"anon\": true}' (docs/remote.md).")
@_apply(format_options)
@_apply(load_options)
@_one_line_errors
def check(directory: str, requires: tuple[str, ...], no_cache: bool, storage_options: str | None, json_flag: bool, fmt: str | None,
          quiet: bool, fail_fast: bool, load: str | None, trust_remote_code: bool, memory_limit: str | None, check_memory: bool) -> None:
    """Why won't this model load? Diagnose DIR with no manifest."""
    from .api import check as do_check

    opts = Options(requires=list(requires), fail_fast=fail_fast, progress=not quiet, load=load,
                   trust_remote_code=trust_remote_code, memory_limit=parse_size(memory_limit) if memory_limit else None,
                   check_memory=check_memory, use_cache=not no_cache)
    _emit_report(do_check(directory, options=opts, storage_options=_storage_options(storage_options)), _fmt(json_flag, fmt))


@main.command()
@click.argument("targets", metavar="TARGET...", nargs=-1)
@click.option("--from", "from_file", metavar="FILE", help="Read more targets from FILE, one a line ('-': stdin; '#' starts a comment line).")
@click.option("--ray", "ray_address", metavar="ADDRESS|local",
              help="Verify on Ray: 'local' starts a local Ray instance, an address (or 'auto') joins a cluster.")
@click.option("--split", type=click.Choice(["auto", "model", "units"]), default="auto", show_default=True,
              help="With --ray: a task per model, or per file and chunk (units; the cheap checks run here); auto: units when the models are "
                   "fewer than the cluster's CPUs.")
@click.option("--retries", type=click.IntRange(0, 100), default=2, show_default=True,
              help="With --ray: times a task whose worker died is run again before its model is reported not verified.")
@click.option("-j", "--jobs", type=click.IntRange(1, 100000), default=None,
              help="Models verified at once (default: the CPU count; with --ray, as many as the cluster's CPUs run; split by units, 16).")
@_apply(trust_options)
@click.option("--hash", "hashes", multiple=True, help="Check only these recorded digest algorithms.")
@click.option("--no-cache", is_flag=True, help="Rehash every file; do not trust the stat cache.")
@click.option("--exhaustive", is_flag=True, help="Hash digests even when cheaper checks already failed.")
@click.option("--json", "json_flag", is_flag=True, help="Print the audit as JSON (schemas/audit.schema.json): every model's report and a summary.")
@click.option("--storage-options", "storage_options", default=None, metavar="JSON",
              help="URL targets (s3://, gs://, file://): backend options as a JSON object, e.g. '{\"anon\": true}' (docs/remote.md).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@_one_line_errors
def audit(targets: tuple[str, ...], from_file: str | None, ray_address: str | None, split: str, retries: int, jobs: int | None, key_paths: tuple[str, ...],
          ca_paths: tuple[str, ...], trust_path: str | None, no_signature: bool, hashes: tuple[str, ...], no_cache: bool, exhaustive: bool,
          storage_options: str | None, json_flag: bool, quiet: bool) -> None:
    """Verify many models, each TARGET (a directory, ORG/NAME or URL) against its own manifest.

    Prints a table and a summary; exits with the worst outcome: 0 all pass, 1 some
    verification failed, 2 some model not verified (unreadable, no manifest, worker lost).
    """
    from .audit import audit as do_audit
    from .audit import read_targets, render_text
    from .progress import make_counter

    items = list(targets) + (read_targets(from_file) if from_file else [])
    if ray_address is None and retries != 2:
        raise UsageError("--retries applies to --ray only")
    if ray_address is None and split != "auto":
        raise UsageError("--split applies to --ray only")
    keys, cas, pairs, trusted_root = _trust_anchors(key_paths, ca_paths, trust_path, no_signature, items)
    opts = Options(keys=keys, cas=cas, identities=pairs, trusted_root=trusted_root, integrity_only=no_signature, exhaustive=exhaustive,
                   algorithms=list(hashes) or None, use_cache=not no_cache)
    bar = make_counter(not quiet, len(items), "auditing", "model")
    try:
        result = do_audit(items, options=opts, ray=ray_address, workers=jobs, retries=retries, storage_options=_storage_options(storage_options),
                          on_done=lambda m: bar.update(1), split=split)
    finally:
        bar.close()
    if json_flag:
        import json

        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(result), nl=False)
    sys.exit(result.exit_status)


@main.command()
@click.option("-o", "--output", "prefix", default="manifest-key", show_default=True,
              help="Writes PREFIX.pem (private, mode 0600) and PREFIX.pub.pem; never over an existing path.")
@click.option("--type", "kind", type=click.Choice(["ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ml-dsa-65"]), default="ed25519",
              show_default=True, help="Key type. OpenSSF Model Signing (export --oms) takes the ECDSA ones; ml-dsa-65 is post-quantum (FIPS 204).")
@click.option("--passphrase-env", default=None, metavar="VAR", help="Encrypt the private key with the passphrase in this environment variable.")
@_one_line_errors
def keygen(prefix: str, kind: str, passphrase_env: str | None) -> None:
    """Make a signing key pair."""
    from .signing import generate, write_keypair

    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise UsageError(f"environment variable {passphrase_env} is empty or unset")
        passphrase = value.encode()
    priv, pub = Path(prefix + ".pem"), Path(prefix + ".pub.pem")
    write_keypair(generate(kind), priv, pub, passphrase)
    click.echo(f"wrote {priv} (private, keep secret) and {pub} (public, give to verifiers)", err=True)


@main.command()
@click.argument("directory", metavar="[DIR]", default=".", required=False)
@click.option("--oms", "oms_path", required=True, type=click.Path(),
              help="Write an OpenSSF Model Signing (OMS v1.0) bundle here, e.g. model.sig (only an absent path or a regular file is replaced).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False),
              help="ECDSA private key (PEM; P-256, P-384 or P-521) to sign the bundle with.")
@click.option("-m", "--manifest", "manifest_path", type=click.Path(dir_okay=False), help="Manifest to export (default DIR/manifest.json).")
@click.option("--name", help="The bundle's subject name (default: the manifest's model id, else the directory name).")
@click.option("--shard-size", default=None, metavar="SIZE",
              help="Sign by shards of SIZE bytes (e.g. 1000000000, model_signing's default), as its use_shard_serialization does.")
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False),
              help="The --key's X.509 certificate (PEM): write a certificate bundle (`model_signing verify certificate`). "
                   "Default: the manifest's own certificates, when it is signed with one for this key.")
@click.option("--cert-chain", "chain_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Intermediate certificate(s) (PEM) between --cert and the root. Repeatable.")
@_one_line_errors
def export(directory: str, oms_path: str, key_path: str, manifest_path: str | None, name: str | None, shard_size: str | None,
           cert_path: str | None, chain_paths: tuple[str, ...]) -> None:
    """Export DIR's manifest as a signed OMS bundle (verifiable with `model_signing verify key`, or `verify certificate`)."""
    from .oms import export_oms

    done = export_oms(manifest_path or directory, key_path, oms_path, directory=directory, name=name,
                      shard_size=parse_size(shard_size) if shard_size is not None else None,
                      certificates=_certificates(cert_path, chain_paths))
    left = f"; outside the OMS signing scope (git files): {', '.join(done.left_out)}" if done.left_out else ""
    if done.directories:
        left += (f"; OMS records no directories, so verify --oms reports these empty ones as extra: "
                 f"{', '.join(d + '/' for d in done.directories)}")
    if done.empty_files:
        left += (f"; a shard bundle cannot list empty files, so these are not signed (verify --oms warns of them): "
                 f"{', '.join(done.empty_files)}")
    what = f"{done.files} shards" if shard_size is not None else f"{done.files} files"
    how = f"{done.signer} and its certificate chain" if "x509CertificateChain" in done.bundle["verificationMaterial"] else done.signer
    click.echo(f"wrote {done.path}: OMS v1.0 bundle over {what}, signed with {how}{left}", err=True)


@main.command()
@click.argument("directories", metavar="[DIR]...", nargs=-1)
@click.option("--full", is_flag=True, help="Rehash every file (no stat cache, no Git LFS pointer shortcut): the pre-push stage.")
@click.option("--refresh-key", metavar="PATH", help="Private key path to show in the refresh command (never read).")
@click.option("--manifest-name", default="manifest.json", show_default=True, help="File name of the manifests to check.")
@_one_line_errors
def hook(directories: tuple[str, ...], full: bool, refresh_key: str | None, manifest_name: str) -> None:
    """pre-commit hook: fail when a committed manifest no longer matches its files.

    Checks each DIR (default: every tracked manifest.json in the repository).
    """
    from .precommit import run_hook

    status, lines = run_hook(list(directories), full=full, refresh_key=refresh_key, manifest_name=manifest_name)
    for line in lines:
        click.echo(line)
    sys.exit(status)


@main.command()
@click.argument("code", required=False)
def codes(code: str | None) -> None:
    """List the finding codes and what each means."""
    from .findings import all_codes

    codes = all_codes()
    width = max(map(len, codes))
    for c, info in codes.items():
        if code is None or code == c:
            click.echo(f"{c:{width}} {info.severity.value:8} {info.meaning}")


if __name__ == "__main__":  # pragma: no cover
    main()
