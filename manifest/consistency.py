"""Cross-consistency of config, tokenizer and weights, with no manifest.

Each rule compares what two of the three say and, when they disagree, returns a
finding with the fix a user would apply:

- the tokenizer's size vs ``config.vocab_size`` vs the embedding matrix's rows;
- ``len(id2label)`` vs the classifier head's rows vs an explicit ``num_labels``;
- ``label2id`` is the exact inverse of ``id2label``, whose keys are 0..n-1;
- the head that ``config.architectures`` names is present in the weights;
- ``tie_word_embeddings`` agrees with the presence (and shape) of an output embedding;
- special token ids and ``pad_token_id`` (and bos/eos/...) lie inside the vocabulary.

Weights are known from safetensors headers only (names, shapes), never their data.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from .architecture import check_family, family_of
from .findings import Finding, Severity
from .formats.config import CONFIG, ConfigFacts
from .formats.tokenizer import Tokenizer

INPUT_EMBEDDINGS = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "shared.weight", "tok_embeddings.weight",
                    "word_embedding.weight", "embed_in.weight")
OUTPUT_EMBEDDINGS = ("lm_head.weight", "cls.predictions.decoder.weight", "lm_head.decoder.weight", "vocab_projector.weight",
                     "embed_out.weight", "generator_lm_head.weight", "pred_layer.proj.weight")
LM_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForConditionalGeneration", "ForPreTraining")
LABEL_SUFFIXES = ("ForTokenClassification", "ForSequenceClassification", "ForAudioClassification", "ForImageClassification")
_CLASSIFIER = re.compile(r"(?:^|\.)(?:classifier|score|logits_proj)(?:\.out_proj)?\.weight$")
_CLASSIFIER_ENDS = ("classifier.weight", "score.weight", "logits_proj.weight", "out_proj.weight")
_QA = re.compile(r"(?:^|\.)qa_outputs\.weight$")


def _find(tensors: dict[str, Any], suffixes: tuple[str, ...]) -> str | None:
    """The tensor ending with the first suffix that matches (the shortest such name)."""
    candidates = [n for n in tensors if n.endswith(suffixes)]  # one pass over a table of maybe 100k names
    for suf in suffixes:
        hits = [n for n in candidates if n == suf or n.endswith("." + suf)]
        if hits:
            return min(hits, key=len)
    return None


def input_embedding(tensors: dict[str, Any]) -> str | None:
    return _find(tensors, INPUT_EMBEDDINGS)


def output_embedding(tensors: dict[str, Any]) -> str | None:
    return _find(tensors, OUTPUT_EMBEDDINGS)


def classifier(tensors: dict[str, Any]) -> str | None:
    # every match ends with one of these: a C-level pass over the table first
    hits = [n for n in tensors if n.endswith(_CLASSIFIER_ENDS) and _CLASSIFIER.search(n)]
    if not hits:
        return None
    return min(hits, key=lambda n: (".out_proj." not in n, len(n)))


def _rows(tensors: dict[str, Any], name: str | None) -> int | None:
    if name is None:
        return None
    shape = tensors[name].shape
    return int(shape[0]) if shape else None


def _f(code: str, message: str, hint: str, path: str = CONFIG, **kw: Any) -> Finding:
    return Finding.of(code, message, path=path, hint=hint, **kw)


def check_labels(cfg: ConfigFacts) -> list[Finding]:
    """id2label / label2id / num_labels agree with each other."""
    out: list[Finding] = []
    lm = "label-map-mismatch"
    if cfg.id2label is None:
        if cfg.label2id:
            out.append(_f(lm, "config.json has label2id but no id2label",
                          "add id2label (the inverse of label2id) to config.json; transformers reads labels from id2label"))
        return out
    bad_keys = [k for k in cfg.id2label if not re.fullmatch(r"-?\d+", str(k))]
    if bad_keys:
        out.append(_f(lm, f"id2label key {bad_keys[0]!r} is not an integer",
                      'id2label maps class ids to names: its keys must be "0", "1", ... n-1', actual=bad_keys[:10]))
        return out
    labels = {int(k): v if isinstance(v, str) else json.dumps(v) for k, v in cfg.id2label.items()}
    n = len(labels)
    if sorted(labels) != list(range(n)):
        ids = sorted(labels)
        missing = sorted(set(range(n)) - set(ids))
        gap = f" (missing {_span(missing)})" if missing else ""
        out.append(_f(lm, f"id2label keys are {_span(ids)}, not 0..{n - 1}{gap}",
                      f"renumber id2label to the ids the classifier head outputs, 0..{n - 1}, and make label2id its inverse",
                      expected=list(range(n)), actual=ids))
    if cfg.num_labels is not None and cfg.num_labels != n:
        out.append(_f(lm, f"num_labels is {cfg.num_labels} but id2label has {n} entries",
                      "remove num_labels from config.json (transformers derives it from id2label) or make both agree",
                      expected=n, actual=cfg.num_labels))
    if cfg.label2id is not None:
        problems = _inverse_problems(labels, cfg.label2id)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            out.append(_f(lm, f"label2id is not the inverse of id2label: {problems[0]}{more}",
                          "rewrite label2id as the exact inverse of id2label "
                          "(config.label2id = {v: k for k, v in config.id2label.items()}) and save the config again",
                          expected={v: k for k, v in sorted(labels.items())}, actual=cfg.label2id))
    return out


def _inverse_problems(labels: dict[int, Any], label2id: dict[str, Any]) -> list[str]:
    inverse: dict[str, int] = {}
    problems: list[str] = []
    for i, name in sorted(labels.items()):
        if name in inverse:
            problems.append(f"label {name!r} appears twice in id2label (ids {inverse[name]} and {i})")
        inverse.setdefault(name, i)
    for name, i in sorted(inverse.items(), key=lambda kv: kv[1]):
        if name not in label2id:
            problems.append(f"label {name!r} (id {i}) is missing from label2id")
        elif label2id[name] != i:
            problems.append(f"label2id[{name!r}] is {label2id[name]!r} but id2label[{i}] is {name!r}")
    problems.extend(f"label2id has {name!r}, which id2label does not" for name in label2id if name not in inverse)
    return problems


def _span(ids: list[int]) -> str:
    if len(ids) > 8:
        return ", ".join(map(str, ids[:8])) + ", ..."
    return ", ".join(map(str, ids)) or "(none)"


RESIZE = "call model.resize_token_embeddings(len(tokenizer)) and save the model again"
#: A tokenizer below this fraction of the embedding rows is another model's. Embedding
#: matrices are often padded past the tokenizer (to a multiple of 64 or 128: GPT-J 50400
#: rows for 50257 tokens, Phi-2 51200 for 50295, Qwen2 152064 for 151646); the padding
#: stays within a few per cent.
SMALL_TOKENIZER = 0.9


def check_sizes(cfg: ConfigFacts | None, tok: Tokenizer | None, tensors: dict[str, Any]) -> list[Finding]:
    """Tokenizer size vs config.vocab_size vs embedding rows; token ids inside the vocabulary."""
    out: list[Finding] = []
    sc = "shape-config-mismatch"
    emb = input_embedding(tensors)
    rows = _rows(tensors, emb)
    vocab = cfg.vocab_size if cfg is not None else None
    size_reported = False
    if vocab is not None and rows is not None and vocab != rows:
        if tok is not None and tok.size == rows:
            hint = (f"set vocab_size to {rows} in config.json (the tokenizer and the weights agree on {rows}; "
                    "the config was saved before resize_token_embeddings)")
            size_reported = True
        elif tok is not None and tok.size == vocab:
            hint = f"the config and the tokenizer say {vocab} tokens: call model.resize_token_embeddings({vocab}) and save again"
            size_reported = True
        else:
            hint = f"set vocab_size to {rows} in config.json, or use the weights this config was written for"
        msg = f"config.vocab_size is {vocab} but the embedding matrix {emb} has {rows} rows"
        out.append(_f(sc, msg, hint, expected=rows, actual=vocab))
    known = [x for x in (vocab, rows) if x is not None]
    limit = min(known) if known else None
    if limit is None:
        return out
    if tok is not None and tok.size > limit and not size_reported:
        who = "config.vocab_size" if vocab == limit else f"the embedding matrix {emb}"
        beyond = ", ".join(repr(t or "") for t in tok.tokens[limit:limit + 5]) + (", ..." if tok.size - limit > 5 else "")
        msg = f"{who} is {limit} but the tokenizer has {tok.size} tokens: ids {limit}-{tok.size - 1} ({beyond}) have no embedding row"
        out.append(_f(sc, msg,
                      f"{RESIZE} (len(tokenizer) is {tok.size}), or restore the tokenizer these weights were trained with",
                      path=tok.source, expected=tok.size, actual=limit))
        size_reported = True
    if tok is not None and rows is not None and not size_reported and tok.size < SMALL_TOKENIZER * rows:
        out.append(_f("tokenizer-mismatch",
                      f"the tokenizer does not belong to this model: it has {tok.size} tokens, but the embedding matrix {emb} has "
                      f"{rows} rows ({tok.size / rows:.1%}); the ids the model was trained on mean other tokens or can never occur",
                      "use the tokenizer the model was trained with (save it beside the model with tokenizer.save_pretrained)",
                      path=tok.source, expected=rows, actual=tok.size))
        size_reported = True
    if tok is not None and not size_reported:
        for name, i in sorted(tok.special.items(), key=lambda kv: kv[1]):
            if i >= limit:
                out.append(_f(sc, f"special token {name!r} has id {i}, outside the vocabulary of {limit}",
                              f"{RESIZE}, or give the special token an id below {limit}", path=tok.source, actual=i))
    if cfg is not None:
        for key, ids in cfg.token_ids().items():
            for i in ids:
                if i < 0 or i >= limit:
                    tid = _tok_id(tok, key)
                    which = f" ({tid})" if tid is not None else ""
                    out.append(_f(sc, f"{key} is {i}, outside the vocabulary of {limit}",
                                  f"set {key} in config.json to the tokenizer's id for that token{which}", actual=i,
                                  expected=f"0..{limit - 1}"))
    return out


def check_heads(cfg: ConfigFacts, tensors: dict[str, Any]) -> list[Finding]:
    """The head config.architectures names is in the weights, with as many rows as labels;
    tie_word_embeddings agrees with the output embedding."""
    out: list[Finding] = []
    sc = "shape-config-mismatch"
    arch = cfg.architectures[0] if cfg.architectures else None
    if not arch or not tensors:
        return out
    if arch.endswith(LABEL_SUFFIXES):
        head = classifier(tensors)
        if head is None:
            msg = f"config.architectures names {arch}, but the weights hold no classification head (classifier.weight / score.weight)"
            out.append(_f(sc, msg,
                          f"these weights are a bare base model, and from_pretrained would initialize {arch}'s head at random: "
                          "save the fine-tuned model (with its head) again, or set architectures to the base model class", expected=arch))
            return out
        head_rows = _rows(tensors, head)
        n = len(cfg.id2label) if cfg.id2label is not None else None
        if cfg.labels() is not None and n is not None and head_rows is not None and n != head_rows:
            out.append(_f(sc, f"id2label has {n} labels but the classifier head {head} has {head_rows} rows",
                          f"restore the label set the head was trained with ({head_rows} entries in id2label and label2id); "
                          "another label count needs a new head (from_pretrained(..., num_labels=N, ignore_mismatched_sizes=True)) "
                          "and training", expected=head_rows, actual=n))
        if cfg.num_labels is not None and head_rows is not None and cfg.num_labels not in (head_rows, n):
            out.append(_f(sc, f"num_labels is {cfg.num_labels} but the classifier head {head} has {head_rows} rows",
                          f"set num_labels to {head_rows} or remove it", expected=head_rows, actual=cfg.num_labels))
    elif arch.endswith("ForQuestionAnswering") and not any(_QA.search(n) for n in tensors):
        out.append(_f(sc, f"config.architectures names {arch}, but the weights hold no qa_outputs head",
                      "save the fine-tuned question-answering model again (with qa_outputs), or set architectures to the base model class"))
    if arch.endswith(LM_SUFFIXES):
        out.extend(_check_tie(cfg, arch, tensors))
    return out


def _check_tie(cfg: ConfigFacts, arch: str, tensors: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    sc = "shape-config-mismatch"
    emb = input_embedding(tensors)
    out_emb = output_embedding(tensors)
    if out_emb is None:
        if cfg.tie_word_embeddings is False:
            out.append(_f(sc, f"tie_word_embeddings is false, but the weights hold no output embedding (lm_head.weight) for {arch}",
                          "the LM head would be initialized at random: set tie_word_embeddings to true in config.json "
                          "if the model shares its input embedding, or save the model with its lm_head", expected="lm_head.weight"))
        return out
    out_rows = _rows(tensors, out_emb)
    vocab = cfg.vocab_size
    if vocab is not None and out_rows is not None and out_rows != vocab and _rows(tensors, emb) in (None, vocab):
        out.append(_f(sc, f"config.vocab_size is {vocab} but the output embedding {out_emb} has {out_rows} rows",
                      "resize the token embeddings (input and output) and save the model again", expected=out_rows, actual=vocab))
    if cfg.tie_word_embeddings is True and emb is not None and tuple(tensors[emb].shape) != tuple(tensors[out_emb].shape):
        out.append(_f(sc, f"tie_word_embeddings is true, but {out_emb} {list(tensors[out_emb].shape)} cannot be tied to "
                      f"{emb} {list(tensors[emb].shape)}",
                      "set tie_word_embeddings to false in config.json (the head is a separate matrix), or resize and save again"))
    return out


_BRACKETED = re.compile(r"^(\[.*\]|<.*>|<\|.*\|>)$")


def check_casing(tok: Tokenizer) -> list[Finding]:
    """Lower-casing must fit the vocabulary: a cased vocabulary behind a lower-casing
    normalizer has tokens that can never be produced; an uncased one without it turns
    every capitalized word into [UNK] or pieces the model never saw."""
    alpha = upper = 0
    special = set(tok.special)
    for t in tok.tokens[:tok.base_size]:
        if t is None:
            continue
        low = t.lower()
        if low == t.upper() or t in special or (t[0] in "[<" and _BRACKETED.match(t)):
            continue  # no cased letter, or a marker like [unused0] / <s>
        alpha += 1
        if t != low:
            upper += 1
    if alpha < 500:
        return []
    tm = "tokenizer-mismatch"
    if tok.lowercase and upper > 0.05 * alpha:
        return [_f(tm, f"lower-casing is on, but {upper} of {alpha} vocabulary tokens contain upper-case letters (a cased vocabulary): "
                       "they can never be produced",
                   "set do_lower_case to false in tokenizer_config.json (and the normalizer's lowercase in tokenizer.json): "
                   "this vocabulary is cased", path=tok.source)]
    if not tok.lowercase and upper == 0 and tok.model == "WordPiece":
        return [_f(tm, f"lower-casing is off, but none of the {alpha} vocabulary tokens has an upper-case letter (an uncased vocabulary): "
                       "capitalized words become [UNK] or pieces the model never saw",
                   "set do_lower_case to true in tokenizer_config.json (and the normalizer's lowercase in tokenizer.json): "
                   "this vocabulary is uncased", path=tok.source)]
    return []


def check_special_ids(cfg: ConfigFacts, tok: Tokenizer) -> list[Finding]:
    """The token ids config.json names (pad, bos, eos, sep) are the tokenizer's ids for those roles."""
    out: list[Finding] = []
    ids = cfg.token_ids()
    for key in ("pad_token_id", "sep_token_id", "bos_token_id", "eos_token_id"):
        if key not in ids:
            continue
        role = key[: -len("_id")]
        name = tok.roles.get(role)
        tid = tok.index.get(name) if name is not None else None
        if tid is None or tid in ids[key]:
            continue
        want = ids[key][0] if len(ids[key]) == 1 else ids[key]
        other = tok.tokens[want] if isinstance(want, int) and 0 <= want < tok.size else None
        at = f" (the tokenizer has {other!r} there)" if other is not None else ""
        out.append(_f("tokenizer-mismatch", f"config.{key} is {want}{at}, but the tokenizer's {role} {name!r} has id {tid}: "
                                            "the config and the tokenizer disagree on this special token",
                      f"if the tokenizer is the one the model was trained with, set {key} to {tid} in config.json; "
                      "otherwise use the model's own tokenizer",
                      path=tok.source, expected=want, actual=tid, severity=Severity.WARNING))
    return out


_SIZE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size", "num_key_value_heads", "head_dim", "num_labels")
_ID_KEYS = ("pad_token_id", "sep_token_id", "decoder_start_token_id")
_ID_OR_LIST_KEYS = ("bos_token_id", "eos_token_id")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_values(cfg: ConfigFacts) -> list[Finding]:
    """Config values transformers refuses (a string or negative size, a size no tensor can
    have, a token id that is not an integer), and oddities it tolerates (warnings)."""
    out: list[Finding] = []
    raw = cfg.raw
    fam = family_of(cfg.model_type)
    # sizes of the families the table knows (other families may write lists or per-layer values)
    keys = ["vocab_size"] + ([*_SIZE_KEYS, *(k for ks in fam.keys.values() for k in ks if not k.startswith("="))] if fam else [])
    bad = "side-file-invalid"
    for key in dict.fromkeys(keys):
        v = raw.get(key)
        if v is None:
            continue
        if not _is_int(v):
            out.append(_f(bad, f"{key} is {json.dumps(v)[:40]}, not an integer: transformers refuses this config",
                          f"write {key} as a plain integer (no quotes) in config.json", actual=v if isinstance(v, str) else None))
        elif v < 0:
            out.append(_f(bad, f"{key} is {v}: a size cannot be negative (transformers fails to build the model)",
                          f"restore {key} to the value the model was trained with", actual=v))
        elif v >= 2**53:
            out.append(_f(bad, f"{key} is {v}: far beyond any size a tensor can have (transformers fails to build the model)",
                          f"restore {key} to the value the model was trained with"))
    for key in _ID_KEYS + _ID_OR_LIST_KEYS:
        v = raw.get(key)
        ok = v is None or _is_int(v) or (isinstance(v, list) and all(_is_int(x) for x in v))
        if not ok:
            out.append(_f(bad, f"{key} is {json.dumps(v)[:40]}, not an integer token id: transformers refuses this config",
                          f"set {key} to the tokenizer's integer id for that token (or null) in config.json"))
    tv = raw.get("transformers_version")
    if tv is not None and (not isinstance(tv, str) or not re.fullmatch(r"\d+(\.\d+)*(\.?(a|b|rc|dev|post)\d*)*(\+[\w.]+)?", tv)):
        out.append(_f(bad, f"transformers_version is {json.dumps(tv)[:40]}, not a version number: the writing version is unknown",
                      "set transformers_version to the version that saved the checkpoint (save_pretrained writes it), or remove it",
                      severity=Severity.WARNING))
    if isinstance(raw.get("architectures"), str):
        out.append(_f(bad, f"architectures is the string {raw['architectures']!r}, not a list of class names",
                      f'write it as a list: "architectures": [{json.dumps(raw["architectures"])}]', severity=Severity.WARNING))
    return out


_TORCH_TO_ST = {"float32": "F32", "float": "F32", "float16": "F16", "half": "F16", "bfloat16": "BF16", "float64": "F64", "double": "F64"}
_ST_TO_TORCH = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def check_dtype(cfg: ConfigFacts, tensors: dict[str, Any]) -> list[Finding]:
    """The config's dtype (torch_dtype / dtype) against the dtype the weights are stored in:
    transformers 5 loads in the config's dtype, so a mismatch silently changes precision."""
    want = _TORCH_TO_ST.get((cfg.dtype or "").removeprefix("torch."))
    if want is None or not tensors or cfg.raw.get("quantization_config"):
        return []
    by_dtype: dict[str, int] = {}
    for t in tensors.values():
        if t.dtype in _ST_TO_TORCH:
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + getattr(t, "nbytes", 0)
    if not by_dtype:
        return []
    have = max(by_dtype, key=lambda k: by_dtype[k])
    if have == want:
        return []
    key = "dtype" if "dtype" in cfg.raw else "torch_dtype"
    share = "" if len(by_dtype) == 1 else " (most of the floating-point bytes)"
    effect = ("precision is lost, and the outputs differ from the trained model's" if _bits(want) < _bits(have)
              else "they are upcast, which takes more memory and does not restore precision the stored weights lack")
    return [_f("shape-config-mismatch",
               f"{key} is {cfg.dtype}, but the weights are stored as {have}{share}: from_pretrained loads them as "
               f"{cfg.dtype} (transformers 5 follows the config's dtype): {effect}",
               f"set {key} to {_ST_TO_TORCH[have]} in config.json to load the weights as stored, or pass dtype= to from_pretrained "
               "if the change is intended", expected=_ST_TO_TORCH[have], actual=cfg.dtype, severity=Severity.WARNING)]


def _bits(st: str) -> int:
    return {"F64": 64, "F32": 32, "F16": 16, "BF16": 16}[st]


def _uses_labels(cfg: ConfigFacts, tensors: dict[str, Any]) -> bool:
    arch = cfg.architectures[0] if cfg.architectures else ""
    return arch.endswith(LABEL_SUFFIXES) or classifier(tensors) is not None or not tensors


def cross_check(cfg: ConfigFacts | None, tok: Tokenizer | None, tensors: dict[str, Any]) -> list[Finding]:
    """Every rule whose inputs are present. ``tensors``: name -> object with ``.shape``."""
    out: list[Finding] = []
    if cfg is not None:
        out.extend(check_values(cfg))
        labels = check_labels(cfg)
        if not _uses_labels(cfg, tensors):
            # a model without a classification head never reads its label maps; keys that are not
            # integers still fail (transformers converts them when it reads the config)
            arch = cfg.architectures[0] if cfg.architectures else "the model"
            labels = [f if "is not an integer" in f.message else
                      dataclasses.replace(f, severity=Severity.WARNING, message=f"{f.message} (unused: {arch} has no classification head)")
                      for f in labels]
        out.extend(labels)
    sizes = check_sizes(cfg, tok, tensors)
    # the root cause first: a tokenizer of another model explains the findings that follow
    out[:0] = [f for f in sizes if f.message.startswith("the tokenizer does not belong")]
    out.extend(f for f in sizes if not f.message.startswith("the tokenizer does not belong"))
    if tok is not None:
        out.extend(check_casing(tok))
        if cfg is not None:
            out.extend(check_special_ids(cfg, tok))
    if cfg is not None:
        out.extend(check_heads(cfg, tensors))
        out.extend(check_family(cfg.raw, cfg.model_type, tensors))
        out.extend(check_dtype(cfg, tensors))
    return out


def _tok_id(tok: Tokenizer | None, key: str) -> int | None:
    if tok is None:
        return None
    role = key.replace("_id", "").replace("decoder_start_token", "bos_token")
    name = tok.roles.get(role)
    return tok.index.get(name) if name is not None else None
