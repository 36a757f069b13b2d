"""Tokenizer vocabulary: a layout-independent, semantic reading and fingerprint.

A tokenizer is read from ``tokenizer.json`` when present, otherwise from ``vocab.txt``
(WordPiece), ``vocab.json`` + ``merges.txt`` (BPE) or a sentencepiece model
(``*.model``, parsed from its protobuf wire format; sentencepiece itself is never
imported). ``tokenizer_config.json``, ``special_tokens_map.json`` and
``added_tokens.json`` add special-token roles, added tokens and the lower-casing
switch (``do_lower_case`` overrides ``tokenizer.json``, as the transformers
tokenizers do).

The :func:`fingerprint` covers only what decides token ids and is present in every
layout: the id -> token map (added tokens merged in), the special tokens with their
ids and roles, the model type, the BPE merges or Unigram scores, and the lower-casing
/ accent / CJK settings. So the same vocabulary stored as ``tokenizer.json`` or as
``vocab.txt`` has the same fingerprint, and any added, removed or renumbered token
changes it. :func:`summary` records enough structure (id-block digests, the added
tokens, the specials) for ``verify`` to *name* a change.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..inventory import Artifact
from ..jsonio import JSONError

BLOCK = 4096  # tokens per id block in the summary (a 30k vocab has 8 blocks, a 256k one 63)
MAX_ADDED_RECORDED = 2000
SPM_NAMES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "sentencepiece.model")
BERT_ROLES = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
ROLE_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class TokenizerError(ValueError):
    """A tokenizer file is malformed. ``path`` names it."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Tokenizer:
    """What decides token ids, whatever the file layout."""

    source: str  # the file(s) the vocabulary came from
    model: str  # WordPiece, BPE, Unigram, WordLevel
    tokens: tuple[str | None, ...]  # id -> token, added tokens merged in; None for a hole
    base_size: int  # tokens in the model's own vocabulary
    added: tuple[tuple[int, str, bool], ...]  # (id, content, special) of tokens beyond the model vocabulary
    special: dict[str, int]  # special token -> id (added special tokens and role tokens)
    roles: dict[str, str]  # pad_token -> "[PAD]", additional_special_tokens -> ...
    merges: tuple[tuple[str, str], ...] = ()
    scores: tuple[float, ...] = ()
    lowercase: bool = False
    normalize: dict[str, Any] = field(default_factory=dict)  # strip_accents, chinese_chars (WordPiece)
    params: dict[str, Any] = field(default_factory=dict)  # unk_token, continuing_subword_prefix, byte_fallback
    pipeline: dict[str, str] = field(default_factory=dict)  # tokenizer.json only: part -> digest

    @property
    def size(self) -> int:
        return len(self.tokens)

    def part_digest(self, part: str) -> str:
        """SHA-256 of the JSON of ``tokens``, ``merges`` or ``scores`` (memoized)."""
        cache = self.__dict__.setdefault("_digests", {})
        if part not in cache:
            cache[part] = _h(getattr(self, part))
        return cache[part]

    @cached_property
    def index(self) -> dict[str, int]:
        """token -> its first id."""
        idx: dict[str, int] = {}
        for i, tok in enumerate(self.tokens):
            if tok is not None:
                idx.setdefault(tok, i)
        return idx


# --------------------------------------------------------------------------- hashing
def _h(obj: Any) -> str:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _f32(x: float) -> float:
    """Round a score to float32, as sentencepiece stores it (tokenizer.json widens it)."""
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def canonical(t: Tokenizer) -> dict[str, Any]:
    """The layout-independent content the fingerprint hashes (the large parts by digest)."""
    return {
        "model": t.model,
        "tokens": t.part_digest("tokens"),
        "special": sorted([i, s] for s, i in t.special.items()),
        "roles": dict(sorted(t.roles.items())),
        "merges": t.part_digest("merges"),
        "scores": t.part_digest("scores"),
        "lowercase": t.lowercase,
        "normalize": dict(sorted(t.normalize.items())),
        "params": dict(sorted(t.params.items())),
    }


def fingerprint(t: Tokenizer) -> str:
    return "sha256:" + _h(canonical(t))


def block_digests(tokens: tuple[str | None, ...] | list[str | None], upto: int | None = None) -> list[str]:
    """Digest of each run of :data:`BLOCK` ids (the last one may be partial)."""
    n = len(tokens) if upto is None else min(upto, len(tokens))
    return [_h(list(tokens[i:min(i + BLOCK, n)]))[:16] for i in range(0, n, BLOCK)]


def summary(t: Tokenizer) -> dict[str, Any]:
    """The manifest's ``tokenizer`` section: fingerprint plus the structure verify names changes with."""
    added = [[i, s, sp] for i, s, sp in t.added]
    d: dict[str, Any] = {
        "fingerprint": fingerprint(t),
        "source": t.source,
        "model": t.model,
        "size": t.size,
        "base_size": t.base_size,
        "lowercase": t.lowercase,
        "normalize": dict(t.normalize),
        "params": dict(t.params),
        "special": dict(sorted(t.special.items(), key=lambda kv: (kv[1], kv[0]))),
        "roles": dict(sorted(t.roles.items())),
        "blocks": block_digests(t.tokens),
        "added": added[:MAX_ADDED_RECORDED],
        "added_count": len(added),
    }
    if t.merges:
        d["merges"] = {"count": len(t.merges), "digest": t.part_digest("merges")}
    if t.scores:
        d["scores"] = {"count": len(t.scores), "digest": t.part_digest("scores")}
    if t.pipeline:
        d["pipeline"] = dict(t.pipeline)
    return d


# --------------------------------------------------------------------------- reading
def _json(art: Artifact, rel: str) -> Any:
    try:
        return art.read_json(rel)
    except JSONError as e:
        raise TokenizerError(f"not valid JSON: {e}", rel) from None


def _obj(art: Artifact, rel: str) -> dict[str, Any]:
    if rel not in art.files:
        return {}
    v = _json(art, rel)
    if not isinstance(v, dict):
        raise TokenizerError("expected a JSON object", rel)
    return v


def _token_text(v: Any) -> str | None:
    """A special token as written in a config: a string or an AddedToken dict."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def _side_files(art: Artifact, prefix: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    cfg = _obj(art, prefix + "tokenizer_config.json")
    stm = _obj(art, prefix + "special_tokens_map.json")
    added = _obj(art, prefix + "added_tokens.json")
    return cfg, stm, added


def _roles(cfg: dict[str, Any], stm: dict[str, Any]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for src in (stm, cfg):  # tokenizer_config.json wins, as in transformers
        for k in ROLE_KEYS:
            if k in src:
                tok = _token_text(src[k])
                if tok is not None:
                    roles[k] = tok
                elif src[k] is None:
                    roles.pop(k, None)
        extra = src.get("additional_special_tokens", src.get("extra_special_tokens"))
        if isinstance(extra, list):
            toks = [x for x in (_token_text(e) for e in extra) if x is not None]
            if toks:
                roles["additional_special_tokens"] = "\x1f".join(toks)
    return roles


def _role_tokens(roles: dict[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in roles.items():
        out.extend(v.split("\x1f") if k == "additional_special_tokens" else [v])
    return out


def _config_added(cfg: dict[str, Any], added_json: dict[str, Any], path: str) -> list[tuple[int, str, bool]]:
    """Added tokens declared outside tokenizer.json: ``added_tokens_decoder`` and ``added_tokens.json``."""
    out: dict[int, tuple[int, str, bool]] = {}
    dec = cfg.get("added_tokens_decoder")
    if isinstance(dec, dict):
        for k, v in dec.items():
            tok = _token_text(v)
            if tok is None or not str(k).isdigit():
                raise TokenizerError(f"added_tokens_decoder entry {k!r} is malformed", path)
            out[int(k)] = (int(k), tok, bool(isinstance(v, dict) and v.get("special", False)))
    for tok, i in added_json.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerError(f"added token {tok!r} has id {i!r}, not a non-negative integer", "added_tokens.json")
        out.setdefault(i, (i, tok, False))
    return sorted(out.values())


def _assemble(source: str, model: str, base: dict[str, int] | list[str], added: list[tuple[int, str, bool]],
              *, roles: dict[str, str], path: str, **kw: Any) -> Tokenizer:
    """Merge the model vocabulary and the added tokens into one id -> token table."""
    if isinstance(base, list):
        table: dict[int, str] = dict(enumerate(base))
    else:
        ids = list(base.values())
        if not all(type(i) is int and i >= 0 for i in ids):
            tok, i = next((t, i) for t, i in base.items() if type(i) is not int or i < 0)
            raise TokenizerError(f"token {tok!r} has id {i!r}, not a non-negative integer", path)
        table = dict(zip(ids, base.keys(), strict=True))
        if len(table) != len(base):
            seen: dict[int, str] = {}
            for tok, i in base.items():
                if i in seen:
                    raise TokenizerError(f"id {i} is given to both {seen[i]!r} and {tok!r}", path)
                seen[i] = tok
    base_size = max(table, default=-1) + 1
    specials: dict[str, int] = {}
    extra: list[tuple[int, str, bool]] = []
    for i, tok, special in added:
        if i in table and table[i] != tok:
            raise TokenizerError(f"added token {tok!r} claims id {i}, which the vocabulary gives to {table[i]!r}", path)
        if i not in table:
            extra.append((i, tok, special))
            table[i] = tok
        if special:
            specials[tok] = i
    n = max(table, default=-1) + 1
    if n > 50_000_000:
        raise TokenizerError(f"token id {n - 1} is implausibly large", path)
    tokens = tuple(table[i] for i in range(n)) if len(table) == n else tuple(table.get(i) for i in range(n))
    result = Tokenizer(source=source, model=model, tokens=tokens, base_size=base_size, added=tuple(sorted(extra)),
                       special=specials, roles=roles, **kw)
    index = result.index
    for tok in _role_tokens(roles):
        if tok in index:
            specials.setdefault(tok, index[tok])
    return result


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _bert_normalize(lowercase: bool, strip: Any, chinese: Any) -> dict[str, Any]:
    return {"strip_accents": lowercase if strip is None else bool(strip), "chinese_chars": True if chinese is None else bool(chinese)}


def _walk_normalizer(n: Any) -> list[dict[str, Any]]:
    if not isinstance(n, dict):
        return []
    if n.get("type") == "Sequence" and isinstance(n.get("normalizers"), list):
        out: list[dict[str, Any]] = []
        for c in n["normalizers"]:
            out.extend(_walk_normalizer(c))
        return out
    return [n]


def _from_tokenizer_json(art: Artifact, rel: str, prefix: str) -> Tokenizer:
    doc = _json(art, rel)
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise TokenizerError('no "model" object: not a tokenizers tokenizer.json', rel)
    cfg, stm, added_json = _side_files(art, prefix)
    roles = _roles(cfg, stm)
    m = doc["model"]
    kind = m.get("type")
    vocab = m.get("vocab")
    kw: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if kind is None:  # very old files: infer from the fields
        kind = ("BPE" if "merges" in m else "WordPiece" if "continuing_subword_prefix" in m
                else "Unigram" if isinstance(vocab, list) else "WordLevel")
    if kind in ("WordPiece", "BPE", "WordLevel"):
        if not isinstance(vocab, dict):
            raise TokenizerError(f'{kind} model has no "vocab" object', rel)
        base: dict[str, int] | list[str] = vocab
        if kind == "WordPiece":
            params = {"unk_token": m.get("unk_token"), "continuing_subword_prefix": m.get("continuing_subword_prefix", "##")}
        if kind == "BPE":
            merges = m.get("merges", [])
            if not isinstance(merges, list):
                raise TokenizerError('BPE "merges" is not a list', rel)
            kw["merges"] = _merge_pairs(merges, rel)
            keys = ("continuing_subword_prefix", "end_of_word_suffix", "byte_fallback")
            params = {k: m.get(k) for k in keys if m.get(k) not in (None, False, "")}
    elif kind == "Unigram":
        if not isinstance(vocab, list):
            raise TokenizerError('Unigram model has no "vocab" list', rel)
        pieces: list[str] = []
        scores: list[float] = []
        for e in vocab:
            if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], (int, float))):
                raise TokenizerError("Unigram vocab entry is not [piece, score]", rel)
            pieces.append(e[0])
            scores.append(_f32(e[1]))
        base = pieces
        kw["scores"] = tuple(scores)
        if m.get("byte_fallback"):
            params["byte_fallback"] = True
    else:
        raise TokenizerError(f"tokenizer model type {kind!r} is not known", rel)
    added: list[tuple[int, str, bool]] = []
    for a in doc.get("added_tokens") or []:
        if not (isinstance(a, dict) and isinstance(a.get("id"), int) and isinstance(a.get("content"), str)):
            raise TokenizerError("malformed added_tokens entry", rel)
        added.append((a["id"], a["content"], bool(a.get("special", False))))
    added.extend(x for x in _config_added(cfg, added_json, prefix + "tokenizer_config.json") if x[0] not in {a[0] for a in added})
    # Lower-casing and the Bert normalizer switches; tokenizer_config.json overrides.
    parts = _walk_normalizer(doc.get("normalizer"))
    lowercase = any(p.get("type") == "Lowercase" or (p.get("type") == "BertNormalizer" and p.get("lowercase", True)) for p in parts)
    bert = next((p for p in parts if p.get("type") == "BertNormalizer"), None)
    cfg_lower = _bool(cfg.get("do_lower_case"))
    if cfg_lower is not None:
        lowercase = cfg_lower
    normalize: dict[str, Any] = {}
    if kind == "WordPiece":
        strip = cfg["strip_accents"] if "strip_accents" in cfg else (bert or {}).get("strip_accents")
        chinese = cfg["tokenize_chinese_chars"] if "tokenize_chinese_chars" in cfg else (bert or {}).get("handle_chinese_chars")
        normalize = _bert_normalize(lowercase, strip, chinese)
    pipeline = {k: _h(doc.get(k))[:16] for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder")}
    return _assemble(rel, kind, base, added, roles=roles, path=rel, lowercase=lowercase, normalize=normalize, params=params,
                     pipeline=pipeline, **kw)


def _merge_pairs(merges: list[Any], rel: str) -> tuple[tuple[str, str], ...]:
    """All merges as pairs: the fast path for the usual all-lists or all-strings file."""
    try:
        if merges and type(merges[0]) is list:
            pairs = tuple((a, b) for a, b in merges)
        else:
            pairs = tuple((a, b) for a, b in (x.split(" ") for x in merges))
        if all(type(a) is str and type(b) is str for a, b in pairs):
            return pairs
    except (ValueError, TypeError, AttributeError):
        pass
    return tuple(_merge_pair(x, rel) for x in merges)


def _merge_pair(x: Any, rel: str) -> tuple[str, str]:
    if isinstance(x, str):
        parts = x.split(" ")
        if len(parts) == 2:
            return parts[0], parts[1]
    elif isinstance(x, list) and len(x) == 2 and all(isinstance(p, str) for p in x):
        return x[0], x[1]
    raise TokenizerError(f"malformed BPE merge {str(x)[:40]!r}", rel)


def _text(art: Artifact, rel: str) -> str:
    try:
        return art.read_bytes(rel).decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"not UTF-8 at byte {e.start}", rel) from None


def _from_vocab_txt(art: Artifact, rel: str, prefix: str) -> Tokenizer:
    lines = _text(art, rel).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [ln.rstrip("\r") for ln in lines]  # transformers' load_vocab strips the newline only
    cfg, stm, added_json = _side_files(art, prefix)
    roles = _roles(cfg, stm) or dict(BERT_ROLES)
    lowercase = _bool(cfg.get("do_lower_case"))
    lowercase = True if lowercase is None else lowercase  # BertTokenizer's default
    normalize = _bert_normalize(lowercase, cfg.get("strip_accents"), cfg.get("tokenize_chinese_chars"))
    params = {"unk_token": roles.get("unk_token", "[UNK]"), "continuing_subword_prefix": "##"}
    added = _config_added(cfg, added_json, prefix + "tokenizer_config.json")
    return _assemble(rel, "WordPiece", tokens, added, roles=roles, path=rel, lowercase=lowercase, normalize=normalize, params=params)


def _from_vocab_json(art: Artifact, rel: str, merges_rel: str | None, prefix: str) -> Tokenizer:
    vocab = _json(art, rel)
    if not isinstance(vocab, dict):
        raise TokenizerError("expected a JSON object of token -> id", rel)
    cfg, stm, added_json = _side_files(art, prefix)
    roles = _roles(cfg, stm)
    kw: dict[str, Any] = {}
    model = "WordLevel"
    source = rel
    if merges_rel is not None:
        model = "BPE"
        source = f"{rel}+{merges_rel.rsplit('/', 1)[-1]}"
        merges = []
        for raw in _text(art, merges_rel).split("\n"):
            ln = raw.rstrip("\r")
            if not ln or ln.startswith("#version"):
                continue
            merges.append(_merge_pair(ln, merges_rel))
        kw["merges"] = tuple(merges)
    lowercase = bool(_bool(cfg.get("do_lower_case")))
    added = _config_added(cfg, added_json, prefix + "tokenizer_config.json")
    return _assemble(source, model, vocab, added, roles=roles, path=rel, lowercase=lowercase, **kw)


# -- sentencepiece: ModelProto {1: repeated SentencePiece{1 piece, 2 score, 3 type}, 2: TrainerSpec{3 model_type}}
_SPM_TYPES = {1: "Unigram", 2: "BPE", 3: "WordLevel", 4: "Char"}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = v = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7


def _fields(b: bytes) -> list[tuple[int, int, Any]]:
    """Decode one protobuf message level: (field number, wire type, value)."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        v: int | bytes
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt} is not supported")
        if i > len(b):
            raise ValueError("field runs past the end")
        out.append((num, wt, v))
    return out


def _from_spm(art: Artifact, rel: str, prefix: str) -> Tokenizer:
    data = art.read_bytes(rel)
    pieces: list[str] = []
    scores: list[float] = []
    specials: list[tuple[int, str, bool]] = []
    model = "Unigram"
    try:
        for num, wt, v in _fields(data):
            if num == 1 and wt == 2:
                piece, score, typ = None, 0.0, 1
                for n2, w2, v2 in _fields(v):
                    if n2 == 1 and w2 == 2:
                        piece = v2.decode("utf-8")
                    elif n2 == 2 and w2 == 5:
                        score = struct.unpack("<f", v2)[0]
                    elif n2 == 3 and w2 == 0:
                        typ = v2
                if piece is None:
                    raise ValueError("a piece without text")
                if typ in (2, 3):  # UNKNOWN, CONTROL
                    specials.append((len(pieces), piece, True))
                pieces.append(piece)
                scores.append(_f32(score))
            elif num == 2 and wt == 2:
                for n2, w2, v2 in _fields(v):
                    if n2 == 3 and w2 == 0:
                        model = _SPM_TYPES.get(v2, f"sentencepiece-{v2}")
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise TokenizerError(f"not a sentencepiece model: {e}", rel) from None
    if not pieces:
        raise TokenizerError("not a sentencepiece model: no pieces", rel)
    cfg, stm, added_json = _side_files(art, prefix)
    roles = _roles(cfg, stm)
    lowercase = bool(_bool(cfg.get("do_lower_case")))
    added = specials + [x for x in _config_added(cfg, added_json, prefix + "tokenizer_config.json") if x[0] >= len(pieces)]
    kept = tuple(scores) if model == "Unigram" else ()
    return _assemble(rel, model, pieces, added, roles=roles, path=rel, lowercase=lowercase, scores=kept)


def find_source(art: Artifact, prefix: str = "") -> str | None:
    """The file the vocabulary is read from, by preference."""
    for name in ("tokenizer.json", "vocab.txt", "vocab.json", *SPM_NAMES):
        if prefix + name in art.files:
            return prefix + name
    return None


def read_tokenizer(art: Artifact, prefix: str = "") -> Tokenizer | None:
    """The artifact's tokenizer (memoized), None when it has none. Raises :class:`TokenizerError`."""

    def compute() -> Tokenizer | TokenizerError | None:
        src = find_source(art, prefix)
        try:
            if src is None:
                return None
            name = src[len(prefix):]
            if name == "tokenizer.json":
                return _from_tokenizer_json(art, src, prefix)
            if name == "vocab.txt":
                return _from_vocab_txt(art, src, prefix)
            if name == "vocab.json":
                merges = prefix + "merges.txt"
                return _from_vocab_json(art, src, merges if merges in art.files else None, prefix)
            return _from_spm(art, src, prefix)
        except TokenizerError as e:
            return e

    res = art.memo(("tokenizer", prefix), compute)
    if isinstance(res, TokenizerError):
        raise res
    return res


# --------------------------------------------------------------------------- naming a change
def _ids(a: int, b: int) -> str:
    return f"id {a}" if a == b else f"ids {a}-{b}"


def _quote(tokens: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(t) for t in tokens[:limit])
    return shown + (f" and {len(tokens) - limit} more" if len(tokens) > limit else "")


def describe_changes(recorded: dict[str, Any], live: Tokenizer) -> list[tuple[str, str]]:
    """Name each difference between a recorded summary and the live tokenizer as
    ``(kind, message)``. Empty when the fingerprints agree."""
    if recorded.get("fingerprint") == fingerprint(live):
        return []
    out: list[tuple[str, str]] = []
    r_model = recorded.get("model")
    if r_model != live.model:
        out.append(("model", f"tokenizer model changed from {r_model} to {live.model}"))
    r_size = int(recorded.get("size", 0))
    r_blocks = list(recorded.get("blocks", []))
    n = live.size
    if r_size != n:
        common = min(r_size, n)
        prefix_same = _prefix_same(r_blocks, r_size, live, common)
        if n > r_size and prefix_same:
            new = [t or "" for t in live.tokens[r_size:n]]
            out.append(("added", f"{n - r_size} token{'s' if n - r_size != 1 else ''} added ({_ids(r_size, n - 1)}: {_quote(new)})"))
        elif n < r_size and prefix_same and common < BLOCK:
            # No whole id block is left to compare with the record: what the remaining ids hold is unknown.
            out.append(("removed", f"vocabulary shrank from {r_size} to {n} tokens ({_ids(n, r_size - 1)} gone; the remaining "
                                   f"ids cannot be compared with the record, which fingerprints blocks of {BLOCK} tokens)"))
        elif n < r_size and prefix_same:
            gone = [t for i, s, _ in recorded.get("added", []) for t in [s] if i >= n]
            what = f": {_quote(gone)}" if gone else ""
            out.append(("removed", f"{r_size - n} token{'s' if r_size - n != 1 else ''} removed ({_ids(n, r_size - 1)}{what})"))
        else:
            changed = _changed_ranges(r_blocks, block_digests(live.tokens, common), common)
            where = changed or "every id block"
            out.append(("replaced", f"vocabulary changed from {r_size} to {n} tokens, and tokens differ in {where}: a different tokenizer"))
    else:
        changed = _changed_ranges(r_blocks, block_digests(live.tokens), n)
        if changed:
            out.append(("renumbered", f"tokens changed or renumbered in {changed} (size unchanged at {n})"))
    r_special = {str(k): int(v) for k, v in (recorded.get("special") or {}).items()}
    for tok, i in sorted(live.special.items(), key=lambda kv: kv[1]):
        if tok not in r_special:
            out.append(("special", f"special token {tok!r} (id {i}) is new"))
        elif r_special[tok] != i:
            out.append(("special", f"special token {tok!r} moved from id {r_special[tok]} to id {i}"))
    for tok, i in r_special.items():
        if tok not in live.special:
            out.append(("special", f"special token {tok!r} (id {i}) is no longer special or gone"))
    r_roles = recorded.get("roles") or {}
    for role in sorted(set(r_roles) | set(live.roles)):
        a, b = r_roles.get(role), live.roles.get(role)
        if a != b:
            out.append(("role", f"{role} changed from {_role(a)} to {_role(b)}"))
    if bool(recorded.get("lowercase")) != live.lowercase:
        out.append(("lowercase", "lower-casing switched " + ("on" if live.lowercase else "off")))
    r_norm = recorded.get("normalize") or {}
    for k in sorted(set(r_norm) | set(live.normalize)):
        if r_norm.get(k) != live.normalize.get(k):
            label = {"strip_accents": "accent stripping", "chinese_chars": "CJK character splitting"}.get(k, k)
            b = live.normalize.get(k)
            out.append(("normalize", f"{label} switched {'on' if b else 'off'}" if isinstance(b, bool) else f"{label} changed"))
    if (recorded.get("params") or {}) != live.params:
        out.append(("params", f"tokenizer model settings changed from {recorded.get('params')} to {live.params}"))
    r_merges = recorded.get("merges")
    if live.merges or r_merges:
        live_m = {"count": len(live.merges), "digest": live.part_digest("merges")} if live.merges else None
        if (r_merges or None) != live_m:
            out.append(("merges", f"BPE merges changed ({(r_merges or {}).get('count', 0)} -> {len(live.merges)} merges)"))
    r_scores = recorded.get("scores")
    if live.scores or r_scores:
        live_s = {"count": len(live.scores), "digest": live.part_digest("scores")} if live.scores else None
        if (r_scores or None) != live_s:
            out.append(("scores", "Unigram piece scores changed"))
    if not out:
        out.append(("other", "the vocabulary fingerprint differs"))
    return out


def describe_pipeline(recorded: dict[str, Any], live: Tokenizer) -> list[tuple[str, str]]:
    """tokenizer.json parts outside the fingerprint (normalizer, pre-tokenizer, ...), when both sides have them."""
    r = recorded.get("pipeline") if isinstance(recorded.get("pipeline"), dict) else {}
    if not r or not live.pipeline:
        return []
    names = {"normalizer": "normalizer", "pre_tokenizer": "pre-tokenizer",
             "post_processor": "post-processor (special-token template)", "decoder": "decoder"}
    return [("pipeline", f"tokenizer.json {names.get(k, k)} changed") for k in sorted(r) if k in live.pipeline and r[k] != live.pipeline[k]]


def _role(v: str | None) -> str:
    if v is None:
        return "(unset)"
    return _quote(v.split("\x1f"), 3)


def _prefix_same(r_blocks: list[str], r_size: int, live: Tokenizer, common: int) -> bool:
    """Whether the first ``common`` ids agree with the record. When the vocabulary
    shrank, the record's last (partial) block cannot be recomputed: whole blocks only."""
    live_blocks = block_digests(live.tokens, common)
    if common == r_size:
        return live_blocks == r_blocks
    full = common // BLOCK
    return live_blocks[:full] == r_blocks[:full]


def _changed_ranges(r_blocks: list[str], l_blocks: list[str], n: int) -> str:
    bad = [k for k in range(min(len(r_blocks), len(l_blocks))) if r_blocks[k] != l_blocks[k]]
    if not bad:
        return ""
    spans = [f"ids {k * BLOCK}-{min((k + 1) * BLOCK, n) - 1}" for k in bad[:4]]
    more = f" and {len(bad) - 4} more blocks" if len(bad) > 4 else ""
    return ", ".join(spans) + more
