"""Root causes first: link the findings that one cause explains to that cause.

A replaced tokenizer shows up as a dozen findings (files resized, tokens removed,
special tokens moved, casing switched, the normalizer changed, ...). Each is true, but
the one thing to act on is "the tokenizer does not belong to this model". So, after
every check ran:

- A *root cause* is a finding with an ``id``. A check may emit one itself, when it alone
  sees the cause (the tokenizer section names a foreign tokenizer against the manifest);
  the rules below make one from other findings (with no manifest: a tokenizer that the
  config, the weights and its own settings contradict in two or more ways), or promote
  the finding that explains a file's change.
- Every finding a root cause explains gets ``caused_by`` = that id: the findings on the
  files it covers, and a file's bare size / digest / Hub-record mismatch, explained by
  the specific finding on the same file (a dtype cast, a truncated download, a config
  edit).
- The report lists each root cause, then the findings it explains, then the rest in
  the order the checks found them. Nothing is dropped: JSON keeps every finding.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .findings import Finding, Severity

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
                             "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                             "sentencepiece.model"})
TOKENIZER_ROOT = "tokenizer-replaced"
# A file whose bytes differ says only that it changed; these say how (or that it is damaged).
FILE_LEVEL = frozenset({"size-mismatch", "digest-mismatch", "hub-record-mismatch"})
EXPLAINS_A_FILE = ("truncated", "lfs-pointer", "header-invalid", "side-file-invalid", "tensor-mismatch", "index-mismatch",
                   "tokenizer-mismatch", "config-mismatch", "label-map-mismatch", "pickle-file")
# No manifest: contradictions between the tokenizer and the model.
TOKENIZER_CONTRADICTIONS = frozenset({"shape-config-mismatch", "tokenizer-mismatch"})
RESTORE_TOKENIZER = ("restore every tokenizer file (tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab files) "
                     "from the checkpoint the weights come from, e.g. AutoTokenizer.from_pretrained(ORIGINAL).save_pretrained(DIR); "
                     "another tokenizer needs a model trained with it")


def is_tokenizer_file(path: str | None) -> bool:
    return path is not None and posixpath.basename(path) in TOKENIZER_FILES


def paths_of(f: Finding) -> list[str]:
    """The files a finding is about: its path, or the files a grouped file finding lists."""
    if f.items is not None and f.code in FILE_LEVEL | {"missing-file", "extra-file"}:
        return list(f.items)
    return [f.path] if f.path else []


def describe_tokenizer(t: dict[str, Any] | None) -> str:
    """``an uncased WordPiece of 30522 tokens`` from a tokenizer summary (the manifest's, or the report's facts)."""
    if not t:
        return "a tokenizer"
    case = "lower-casing" if t.get("lowercase") else "cased"
    return f"a {case} {t.get('model') or 'tokenizer'} of {t.get('size')} tokens"


def _tokenizer_contradicted(findings: list[Finding], facts: dict[str, Any]) -> Finding | None:
    """No manifest: a tokenizer that the config and the weights contradict in two or more ways."""
    evidence = [f for f in findings if f.is_error and f.caused_by is None and f.code in TOKENIZER_CONTRADICTIONS and is_tokenizer_file(f.path)]
    if len(evidence) < 2:
        return None
    tok = facts.get("tokenizer") if isinstance(facts.get("tokenizer"), dict) else None
    source = evidence[0].path
    first = " ".join(evidence[0].message.split())
    msg = (f"the tokenizer does not belong to this model: {source} ({describe_tokenizer(tok)}) fails {len(evidence)} checks against "
           f"the config, the weights and its own settings; first: {first}")
    return Finding.of("tokenizer-mismatch", msg, path=source, hint=RESTORE_TOKENIZER, id=TOKENIZER_ROOT)


def link(findings: list[Finding], facts: dict[str, Any], *, manifest: bool = False) -> list[Finding]:
    """The findings with root causes identified and linked, root causes (each followed
    by what it explains) first. Pure: returns a new list. With a ``manifest``, whether
    the tokenizer is another one is the tokenizer section's call (it compares the
    recorded vocabulary); without one, the contradictions decide."""
    from dataclasses import replace

    out = list(findings)
    if not manifest and not any(f.id == TOKENIZER_ROOT for f in out):
        root = _tokenizer_contradicted(out, facts)
        if root is not None:
            # A check that already states the diagnosis leads; else the rule's own finding does.
            lead = next((i for i, f in enumerate(out) if f.code in TOKENIZER_CONTRADICTIONS and f.is_error and root.path == f.path
                         and "does not belong to this model" in f.message), None)
            if lead is not None:
                out[lead] = replace(out[lead], id=TOKENIZER_ROOT)
            else:
                out.insert(0, root)
    roots = {f.id: f for f in out if f.id is not None}
    tok_root = roots.get(TOKENIZER_ROOT)
    # Each file's most specific error explains the bare "this file changed" findings on it.
    explainer: dict[str, Finding] = {}
    for code in EXPLAINS_A_FILE:
        for f in out:
            if f.code == code and f.is_error and f.path and f.path not in explainer and f.id != TOKENIZER_ROOT:
                explainer[f.path] = f
    for i, f in enumerate(out):
        if f.id is not None or f.caused_by is not None:
            continue
        paths = paths_of(f)
        if tok_root is not None and paths and all(is_tokenizer_file(p) for p in paths) and f.code in FILE_LEVEL | TOKENIZER_CONTRADICTIONS:
            out[i] = replace(f, caused_by=TOKENIZER_ROOT)
            continue
        if f.code not in FILE_LEVEL or len(paths) != 1 or paths[0] not in explainer:
            continue
        cause = explainer[paths[0]]
        if tok_root is not None and cause.caused_by == TOKENIZER_ROOT:
            out[i] = replace(f, caused_by=TOKENIZER_ROOT)
            continue
        if cause.id is None:
            j = out.index(cause)
            cause = out[j] = replace(cause, id=f"{cause.code}:{cause.path}")
            explainer[paths[0]] = cause
        out[i] = replace(f, caused_by=cause.id)
    return order(out)


def order(findings: Iterable[Finding]) -> list[Finding]:
    """Root causes (findings that others point at) first, each followed by the findings
    it explains; then the rest, as found. Errors lead: a root cause that is only a
    warning comes after the error roots."""
    fs = list(findings)
    explained: dict[str, list[Finding]] = {}
    for f in fs:
        if f.caused_by is not None:
            explained.setdefault(f.caused_by, []).append(f)
    roots = [f for f in fs if f.id is not None and f.id in explained]
    roots.sort(key=lambda f: f.severity is not Severity.ERROR)
    out: list[Finding] = []
    for r in roots:
        out.append(r)
        out.extend(explained.pop(r.id or ""))
    placed = {id(f) for f in out}
    out.extend(f for f in fs if id(f) not in placed)  # the rest; evidence of a root that is not there stays in place
    return out


def apply(report: Report) -> None:
    """Link and order a report's findings in place."""
    report.findings = link(report.findings, report.facts, manifest=report.command == "verify")
