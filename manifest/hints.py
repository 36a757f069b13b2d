"""Fixes that need the run's context: the exact command that records an intended change.

Every finding code has a default fix in the registry (:mod:`manifest.findings`); the
checks give a more precise one where they know more. What only the caller of ``verify``
knows (the directory as typed, the manifest's path, how the manifest was made) is added
here: a finding that may be an intended change gets the one ``manifest create`` command
that records it with the same settings.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from .diagnosis import TOKENIZER_ROOT
from .inventory import DEFAULT_MANIFEST_NAME

# Findings that mean "the files moved on from the manifest" (a refresh records the change);
# anything else means a file is broken or unsafe, and refreshing would record the damage.
STALE_CODES = frozenset(
    {
        "digest-mismatch",
        "size-mismatch",
        "missing-file",
        "extra-file",
        "missing-directory",
        "extra-directory",
        "tensor-mismatch",
        "config-mismatch",
        "tokenizer-mismatch",
        "label-map-mismatch",
        "index-mismatch",
    }
)
KEY_PLACEHOLDER = "PRIVATE_KEY.pem"
CERT_PLACEHOLDER = "CERTIFICATE.pem"
CHAIN_PLACEHOLDER = "INTERMEDIATES.pem"


def refresh_command(directory: str, m: Any, *, output: str | None = None, key: str | None = None) -> str:
    """The one command that rewrites manifest ``m`` of ``directory`` with the same settings
    (``-o`` when ``output`` is given; ``--key`` with ``key`` or a placeholder when it is signed)."""
    parts = ["manifest", "create", directory]
    if output is not None:
        parts += ["-o", output]
    if key or m.signatures:
        parts += ["--key", key or KEY_PLACEHOLDER]
    certified = next((len(s["certificates"]) for s in m.signatures if s.get("certificates")), 0)
    if certified:  # signed with a certificate: sign again the same way
        parts += ["--cert", CERT_PLACEHOLDER] + (["--cert-chain", CHAIN_PLACEHOLDER] if certified > 1 else [])
    if m.model_id:
        parts += ["--model-id", m.model_id]
    if m.revision:
        parts += ["--revision", m.revision]
    if m.expires and m.expires > datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"):
        parts += ["--expires", m.expires]
    if m.algorithms != ["sha256"]:
        for a in m.algorithms:
            parts += ["--hash", a]
    return " ".join(shlex.quote(p) for p in parts)


def default_output(directory: str, manifest_path: str | None) -> str:
    from .paths import is_url

    if is_url(manifest_path or directory):  # a URL target's manifest is written locally, then uploaded
        return os.path.basename(manifest_path) if manifest_path else DEFAULT_MANIFEST_NAME
    return manifest_path if manifest_path is not None else os.path.join(directory, DEFAULT_MANIFEST_NAME)


def add_refresh(report: Any, m: Any, manifest_path: str | None) -> None:
    """Give each stale finding of a ``verify`` report the command that records the change,
    unless another error says a file is damaged or unsafe (a refresh would record it)."""
    errors = report.errors
    if not errors or any(f.code not in STALE_CODES for f in errors):
        return
    cmd = refresh_command(report.artifact, m, output=default_output(report.artifact, manifest_path))
    for i, f in enumerate(report.findings):
        if f.code not in STALE_CODES or (f.hint and "manifest create" in f.hint) or f.id == TOKENIZER_ROOT:  # another tokenizer is no edit
            continue
        base = (f.hint or "").rstrip(". ")
        if base.endswith("create the manifest again"):
            hint = f"{base}: {cmd}"
        elif base:
            hint = f"{base}; if the change is intended, create the manifest again: {cmd}"
        else:
            hint = f"if the change is intended, create the manifest again: {cmd}"
        report.findings[i] = replace(f, hint=hint)
