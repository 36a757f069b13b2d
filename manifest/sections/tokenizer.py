"""The `tokenizer` section: a semantic vocabulary fingerprint, and the names of changes.

``record`` stores :func:`manifest.formats.tokenizer.summary`; ``compare`` names what
changed ("3 tokens added (ids 30522-30524: ...)", "lower-casing switched off") as
``tokenizer-mismatch`` findings, each with the fix. ``diagnose`` reads the tokenizer
(a malformed one is ``side-file-invalid``); its consistency with the config and the
weights is checked by the config section (:mod:`manifest.consistency`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..diagnosis import RESTORE_TOKENIZER, TOKENIZER_ROOT, describe_tokenizer, is_tokenizer_file
from ..errors import InputError
from ..findings import EXAMPLES, Finding, group_repeats
from ..formats.config import signable
from ..formats.tokenizer import Tokenizer, TokenizerError, describe_changes, describe_pipeline, read_tokenizer, summary
from ..inventory import Artifact
from ..options import Options
from ..report import Report

RESTORE = "restore the tokenizer files (tokenizer.json, vocab.txt, tokenizer_config.json) the model was fingerprinted with"
HINTS = {
    "added": "if the tokens were added on purpose, call model.resize_token_embeddings(len(tokenizer)), save the model and create "
             "a new manifest; otherwise " + RESTORE,
    "removed": RESTORE + ": ids the weights were trained on are gone",
    "replaced": "this is another tokenizer than the one the weights were trained with: " + RESTORE,
    "renumbered": "token ids moved, so every id the model sees means something else: " + RESTORE,
    "lowercase": "set do_lower_case (tokenizer_config.json) and the normalizer's lowercase (tokenizer.json) back to what they were, or "
                 + RESTORE,
    "normalize": "set strip_accents / tokenize_chinese_chars back in tokenizer_config.json, or " + RESTORE,
    "special": "special tokens must keep the ids the model was trained with: " + RESTORE,
    "role": "set the special-token role back in tokenizer_config.json / special_tokens_map.json, or " + RESTORE,
}


def live_tokenizer(art: Artifact) -> Tokenizer | TokenizerError | InputError | None:
    try:
        return read_tokenizer(art)
    except (TokenizerError, InputError) as e:
        return e
    except OSError as e:
        return InputError(f"cannot read: {e.strerror}")


def _special_token(f: Finding) -> str:
    """The token a "special token '[UNK]' moved ..." finding is about."""
    m = re.match(r"special token (?P<q>['\"])(?P<tok>.*?)(?P=q) ", f.message)
    return m.group("tok") if m else f.message


class TokenizerSection:
    name = "tokenizer"

    def record(self, art: Artifact, opts: Options) -> dict[str, Any] | None:
        tok = live_tokenizer(art)
        if tok is None:
            return None
        if isinstance(tok, TokenizerError):
            raise InputError(f"{tok}: fix or remove it before creating a manifest", code="side-file-invalid", path=tok.path)
        if isinstance(tok, InputError):
            raise tok
        return signable(summary(tok), tok.source)

    def diagnose(self, art: Artifact, opts: Options, report: Report) -> Iterable[Finding]:
        tok = live_tokenizer(art)
        if tok is None:
            report.mark_not_checked("tokenizer", "no tokenizer files (tokenizer.json, vocab.txt, vocab.json, *.model)")
            return []
        if isinstance(tok, (TokenizerError, InputError)):
            return [Finding.of("side-file-invalid", f"the tokenizer cannot be read: {tok}", path=getattr(tok, "path", None),
                               hint="restore the tokenizer file from the original checkpoint (one that does not parse will not load)")]
        report.facts["tokenizer"] = {"source": tok.source, "model": tok.model, "size": tok.size, "lowercase": tok.lowercase}
        report.mark_checked("tokenizer")
        return []

    def compare(self, art: Artifact, recorded: Any, opts: Options, report: Report) -> Iterable[Finding]:
        if not isinstance(recorded, dict) or "fingerprint" not in recorded:
            report.mark_not_checked("tokenizer (manifest)", "the manifest's tokenizer section is malformed")
            return []
        tok = live_tokenizer(art)
        if tok is None:
            msg = f"the manifest records a {recorded.get('model')} tokenizer from {recorded.get('source')}, but the directory has none"
            return [Finding.of("tokenizer-mismatch", msg, path=recorded.get("source"), hint=RESTORE)]
        if isinstance(tok, (TokenizerError, InputError)):
            report.mark_not_checked("tokenizer (manifest)", "the tokenizer cannot be read")
            return []
        changes = describe_changes(recorded, tok) + describe_pipeline(recorded, tok)
        kinds: dict[int, str] = {}
        out: list[Finding] = []
        for kind, msg in changes:
            f = Finding.of("tokenizer-mismatch", msg, path=tok.source, hint=HINTS.get(kind, RESTORE),
                           expected=recorded.get("fingerprint") if kind == "other" else None)
            kinds[id(f)] = kind
            out.append(f)

        def describe(members: list[Finding], items: tuple[str, ...]) -> str:
            shown = "; ".join(m.message.removeprefix("special token ") for m in members[:EXAMPLES])
            return f"{len(members)} special tokens changed: {shown}{'; ...' if len(members) > EXAMPLES else ''}"

        out = group_repeats(out, lambda f: "special" if kinds.get(id(f)) == "special" else None, describe,
                            subject=_special_token)
        report.mark_checked("tokenizer fingerprint")
        if foreign(changes):
            live = {"model": tok.model, "size": tok.size, "lowercase": tok.lowercase}
            if all(recorded.get(k) == v for k, v in live.items()):
                what = f"{tok.source} has the model's {tok.size} tokens at other ids"
            else:
                what = f"{tok.source} is {describe_tokenizer(live)}, the model was fingerprinted with {describe_tokenizer(recorded)}"
            msg = f"the tokenizer does not belong to this model: {what}{_moved(changes)}"
            root = Finding.of("tokenizer-mismatch", msg, path=tok.source, hint=RESTORE_TOKENIZER, id=TOKENIZER_ROOT,
                              items=tuple(sorted(p for p in art.files if is_tokenizer_file(p))))
            out = [root, *(replace(f, caused_by=TOKENIZER_ROOT) for f in out)]
        return out


def foreign(changes: list[tuple[str, str]]) -> bool:
    """Whether the changes add up to another tokenizer, not an edit of this one: another
    model type or vocabulary, or the vocabulary resized or renumbered while special
    tokens moved to other ids. (Tokens added at the end, with new special tokens, are
    an extension: resize_token_embeddings and fine-tuning make that intended.)"""
    kinds = {k for k, _ in changes}
    if kinds & {"replaced", "model"}:
        return True
    moved = any(k == "special" and "moved from id" in m for k, m in changes)
    return moved and bool(kinds & {"removed", "added", "renumbered"})


def _moved(changes: list[tuple[str, str]]) -> str:
    n = sum(1 for k, m in changes if k == "special" and "moved from id" in m)
    return f", and {n} special token{'s' if n != 1 else ''} moved to other ids" if n else ""
