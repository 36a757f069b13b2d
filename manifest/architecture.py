"""Config sizes against the weights' shapes, from one table of model families.

Each :class:`Family` is data, not code: which ``model_type`` values it covers, which
config keys name each size (aliases: the first key present wins), and which tensor
names carry that size on which axis. One set of rules reads every family:

- a size (``hidden_size``, ``intermediate_size``, ``max_position_embeddings``,
  ``type_vocab_size``, ...) must equal the axis of every tensor its pattern matches;
- ``num_attention_heads`` must divide the hidden size where the family requires it,
  and heads x head_dim must equal the query projection's rows;
- the layer count (``num_hidden_layers`` / ``n_layer`` / ``num_layers`` ...) must equal
  the number of ``layer.N`` / ``layers.N`` / ``h.N`` / ``block.N`` indices, with no gap;
- every layer holds the same tensors (one missing from a layer is initialized at random),
  and in families whose layers all have biases, every weight has its bias;
- the tensor names' base-model prefix belongs to the ``model_type`` (a BERT checkpoint
  relabelled ``roberta`` loads nothing).

``vocab_size`` is checked for every family by :func:`manifest.consistency.check_sizes`
(the embedding matrix is found by name). Only header names and shapes are read.
Each table entry is verified against a real tiny checkpoint built by transformers
(tests/test_architecture.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .findings import Finding

CONFIG = "config.json"
SC = "shape-config-mismatch"


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    #: quantity -> config keys, first present wins; "=q" falls back to another quantity,
    #: "=a/b" to the floor quotient of two (how the model classes derive head_dim).
    keys: Mapping[str, tuple[str, ...]]
    #: (quantity or "a*b", tensor-name regex (searched), axis)
    dims: tuple[tuple[str, str, int], ...]
    #: (quantity, regex whose group 1 is the layer index)
    layers: tuple[tuple[str, str], ...]
    #: (hidden quantity, heads quantity) that must divide, or None
    divide: tuple[str, str] | None = None
    #: model_type -> the distinctive prefix of its tensor names when saved with a head
    prefixes: Mapping[str, str] = field(default_factory=dict)
    #: for a family whose every linear and norm layer has a bias: the weights that have none
    #: (embeddings, tied output projections); None when the family has bias-free layers
    no_bias: str | None = None


_BERT_KEYS = {"hidden": ("hidden_size",), "intermediate": ("intermediate_size",), "positions": ("max_position_embeddings",),
              "type_vocab": ("type_vocab_size",), "embedding": ("embedding_size", "=hidden"), "layers": ("num_hidden_layers",),
              "heads": ("num_attention_heads",), "head_dim": ("=hidden/heads",)}
_LLAMA_KEYS = {"hidden": ("hidden_size",), "intermediate": ("intermediate_size",), "layers": ("num_hidden_layers",),
               "heads": ("num_attention_heads",), "kv_heads": ("num_key_value_heads", "=heads"), "head_dim": ("head_dim", "=hidden/heads")}

FAMILIES: tuple[Family, ...] = (
    Family(
        "bert", ("bert", "roberta", "xlm-roberta", "camembert", "electra"), _BERT_KEYS,
        dims=(("hidden", r"(?:^|\.)encoder\.layer\.\d+\.output\.dense\.weight$", 0),
              ("intermediate", r"(?:^|\.)encoder\.layer\.\d+\.intermediate\.dense\.weight$", 0),
              ("positions", r"(?:^|\.)embeddings\.position_embeddings\.weight$", 0),
              ("type_vocab", r"(?:^|\.)embeddings\.token_type_embeddings\.weight$", 0),
              ("embedding", r"(?:^|\.)embeddings\.word_embeddings\.weight$", 1)),
        layers=(("layers", r"(?:^|\.)encoder\.layer\.(\d+)\."),),
        divide=("hidden", "heads"),
        prefixes={"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta", "electra": "electra"},
        no_bias=r"(?:^|\.)(?:\w+_embeddings|decoder)\.weight$",
    ),
    Family(
        "distilbert", ("distilbert",),
        {"hidden": ("dim", "hidden_size"), "intermediate": ("hidden_dim",), "positions": ("max_position_embeddings",),
         "layers": ("n_layers", "num_hidden_layers"), "heads": ("n_heads", "num_attention_heads")},
        dims=(("hidden", r"(?:^|\.)transformer\.layer\.\d+\.attention\.out_lin\.weight$", 0),
              ("hidden", r"(?:^|\.)embeddings\.word_embeddings\.weight$", 1),
              ("intermediate", r"(?:^|\.)transformer\.layer\.\d+\.ffn\.lin1\.weight$", 0),
              ("positions", r"(?:^|\.)embeddings\.position_embeddings\.weight$", 0)),
        layers=(("layers", r"(?:^|\.)transformer\.layer\.(\d+)\."),),
        divide=("hidden", "heads"),
        prefixes={"distilbert": "distilbert"},
        no_bias=r"(?:^|\.)\w+_embeddings\.weight$",
    ),
    Family(
        "gpt2", ("gpt2",),
        {"hidden": ("n_embd", "hidden_size"), "intermediate": ("n_inner",), "positions": ("n_positions", "max_position_embeddings"),
         "layers": ("n_layer", "num_hidden_layers"), "heads": ("n_head", "num_attention_heads")},
        dims=(("hidden", r"(?:^|\.)wte\.weight$", 1),
              ("positions", r"(?:^|\.)wpe\.weight$", 0),
              ("intermediate", r"(?:^|\.)h\.\d+\.mlp\.c_fc\.weight$", 1),
              ("hidden", r"(?:^|\.)h\.\d+\.mlp\.c_proj\.weight$", 1)),
        layers=(("layers", r"(?:^|\.)h\.(\d+)\."),),
        divide=("hidden", "heads"),
        no_bias=r"(?:^|\.)(?:wte|wpe|lm_head)\.weight$",
    ),
    Family(
        "llama", ("llama", "mistral", "qwen2", "qwen3"), _LLAMA_KEYS,
        dims=(("hidden", r"(?:^|\.)embed_tokens\.weight$", 1),
              ("intermediate", r"(?:^|\.)layers\.\d+\.mlp\.gate_proj\.weight$", 0),
              ("hidden", r"(?:^|\.)layers\.\d+\.mlp\.down_proj\.weight$", 0),
              ("heads*head_dim", r"(?:^|\.)layers\.\d+\.self_attn\.q_proj\.weight$", 0),
              ("kv_heads*head_dim", r"(?:^|\.)layers\.\d+\.self_attn\.k_proj\.weight$", 0)),
        layers=(("layers", r"(?:^|\.)layers\.(\d+)\."),),
    ),
    Family(
        "t5", ("t5", "mt5"),
        {"hidden": ("d_model",), "intermediate": ("d_ff",), "layers": ("num_layers",), "decoder_layers": ("num_decoder_layers", "=layers"),
         "heads": ("num_heads",), "head_dim": ("d_kv",), "buckets": ("relative_attention_num_buckets",)},
        dims=(("hidden", r"(?:^|\.)shared\.weight$", 1),
              ("intermediate", r"(?:^|\.)block\.\d+\.layer\.\d+\.DenseReluDense\.wi(?:_0)?\.weight$", 0),
              ("heads*head_dim", r"(?:^|\.)block\.\d+\.layer\.0\.SelfAttention\.q\.weight$", 0),
              ("buckets", r"(?:^|\.)relative_attention_bias\.weight$", 0)),
        layers=(("layers", r"(?:^|\.)encoder\.block\.(\d+)\."), ("decoder_layers", r"(?:^|\.)decoder\.block\.(\d+)\.")),
    ),
)
_BY_TYPE = {mt: fam for fam in FAMILIES for mt in fam.model_types}
_ALL_PREFIXES = {p: mt for fam in FAMILIES for mt, p in fam.prefixes.items()}


def family_of(model_type: str | None) -> Family | None:
    return _BY_TYPE.get(model_type or "")


def _size(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def resolve(raw: Mapping[str, Any], fam: Family, q: str, _depth: int = 0) -> tuple[str, int] | None:
    """(what the config calls it, value) of quantity ``q``, or None when the config does not say."""
    if _depth > 4:
        return None
    for key in fam.keys.get(q, ()):
        if key.startswith("="):
            expr = key[1:]
            if "/" in expr:
                a, b = (resolve(raw, fam, x, _depth + 1) for x in expr.split("/"))
                if a and b and b[1]:
                    return (f"{a[0]} / {b[0]}", a[1] // b[1])  # floor division, as the model classes compute it
                continue
            got = resolve(raw, fam, expr, _depth + 1)
            if got:
                return got
        elif _size(raw.get(key)) is not None:
            return (key, raw[key])
    return None


def _expect(raw: Mapping[str, Any], fam: Family, expr: str) -> tuple[str, int] | None:
    parts = [resolve(raw, fam, q) for q in expr.split("*")]
    if not all(parts):
        return None
    value = 1
    for p in parts:
        value *= p[1]  # type: ignore[index]
    if len(parts) == 1:
        return parts[0]
    names = " x ".join(f"{p[0]} ({p[1]})" for p in parts)  # type: ignore[index]
    return (names, value)


def _keys_of(name: str) -> str:
    """The config keys a product names ('num_attention_heads (4) x head_dim (8)' -> 'num_attention_heads or head_dim')."""
    keys = [part.split(" (")[0].split(" / ")[-1] for part in name.split(" x ")]
    return " or ".join(dict.fromkeys(keys))


def check_family(raw: Mapping[str, Any], model_type: str | None, shapes: Mapping[str, Any]) -> list[Finding]:
    """Every rule of the model_type's family; [] for a family the table does not know."""
    fam = family_of(model_type)
    if fam is None or not shapes:
        return []
    out: list[Finding] = []
    out.extend(_prefix(raw, model_type or "", fam, shapes))
    if out:
        return out  # no size is comparable when the names belong to another family
    out.extend(_divide(raw, fam))
    out.extend(_dims(raw, fam, shapes))
    layers = _layers(raw, fam, shapes)
    out.extend(layers)
    named = {n for f in layers if isinstance(f.actual, list) for n in f.actual if isinstance(n, str)}
    out.extend(_biases(fam, shapes, named))
    return out


def _biases(fam: Family, shapes: Mapping[str, Any], named: set[str]) -> list[Finding]:
    """A weight whose bias is not in the checkpoint, in a family where every such layer has one."""
    if fam.no_bias is None:
        return []
    exempt = re.compile(fam.no_bias)
    missing = sorted(n[:-len("weight")] + "bias" for n in shapes
                     if n.endswith(".weight") and not exempt.search(n) and n[:-len("weight")] + "bias" not in shapes
                     and n[:-len("weight")] + "bias" not in named)
    if not missing:
        return []
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return [Finding.of(SC, f"{len(missing)} bias tensor(s) are missing beside their weights: {', '.join(missing[:3])}{more}; "
                           "from_pretrained initializes them afresh and the trained values are lost",
                       path=CONFIG, actual=missing[:50],
                       hint="the weights are incomplete: save the model again with save_pretrained, or download the weights again")]


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in (t.shape if hasattr(t, "shape") else t))


def _dims(raw: Mapping[str, Any], fam: Family, shapes: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    seen: set[str] = set()
    for expr, pattern, axis in fam.dims:
        want = _expect(raw, fam, expr)
        if want is None or ("*" in expr and out):
            continue  # a product is compared only when its factors' own sizes agree with the weights
        rx = re.compile(pattern)
        bad = [(n, _shape(t)) for n, t in sorted(shapes.items()) if rx.search(n)]
        bad = [(n, s) for n, s in bad if len(s) > axis and s[axis] != want[1]]
        if not bad or want[0] in seen:
            continue
        seen.add(want[0])
        name, shape = bad[0]
        got = shape[axis]
        more = f" (and {len(bad) - 1} more tensor(s) like it)" if len(bad) > 1 else ""
        has = f"{got} rows" if axis == 0 else f"{got} columns" if axis == 1 else f"{got} on axis {axis}"
        if "*" in expr:
            hint = (f"set {_keys_of(want[0])} in config.json so that the product is {got} (the value the weights were trained with), "
                    "or use the weights this config belongs to")
        else:
            hint = f"set {want[0]} to {got} in config.json (the value the weights were trained with), or use the weights this config belongs to"
        out.append(Finding.of(SC, f"{want[0]} is {want[1]}, but {name} {list(shape)} has {has}{more}: "
                                  "from_pretrained refuses these weights (size mismatch)",
                              path=CONFIG, hint=hint, expected=got, actual=want[1]))
    return out


def _divide(raw: Mapping[str, Any], fam: Family) -> list[Finding]:
    if fam.divide is None:
        return []
    h, n = (resolve(raw, fam, q) for q in fam.divide)
    if not h or not n:
        return []
    if n[1] == 0 or h[1] % n[1]:
        return [Finding.of(SC, f"{h[0]} {h[1]} is not a multiple of {n[0]} {n[1]}: transformers refuses to build the model",
                           path=CONFIG, actual=n[1],
                           hint=f"restore {n[0]} to the value the model was trained with (a divisor of {h[1]})")]
    return []


def _layers(raw: Mapping[str, Any], fam: Family, shapes: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for q, pattern in fam.layers:
        rx = re.compile(pattern)
        by_index: dict[int, set[str]] = {}
        for n in shapes:
            m = rx.search(n)
            if m:
                by_index.setdefault(int(m.group(1)), set()).add(n[:m.start(1)] + "{}" + n[m.end(1):])
        if not by_index:
            continue
        have = max(by_index) + 1
        want = resolve(raw, fam, q)
        example = next(iter(sorted(by_index[max(by_index)]))).replace("{}", "N").split(".N.")[0] + ".N"
        if want is not None and want[1] != have:
            key = want[0]
            if want[1] < have:
                effect = (f"from_pretrained silently drops layers {_range(want[1], have - 1)} "
                          "and the model computes something else")
            else:
                effect = f"from_pretrained initializes layers {_range(have, want[1] - 1)} at random"
            out.append(Finding.of(SC, f"{key} is {want[1]}, but the weights hold {have} layers ({example}, N = 0..{have - 1}): "
                                      f"{effect}", path=CONFIG, expected=have, actual=want[1],
                                  hint=f"set {key} to {have} in config.json (the layer count the weights were trained with)"))
        gaps = [i for i in range(have) if i not in by_index]
        if gaps:
            out.append(Finding.of(SC, f"the weights have no tensors for layer(s) {_span(gaps)} of {example}: "
                                      "from_pretrained initializes them at random",
                                  path=CONFIG, actual=gaps[:20],
                                  hint="the weight file is incomplete: save the model again with save_pretrained, or download it again"))
        counts: dict[str, int] = {}
        for names in by_index.values():
            for t in names:
                counts[t] = counts.get(t, 0) + 1
        present = len(by_index)
        missing = sorted(t.format(i) for t, c in counts.items() if c * 2 > present and c < present
                         for i in sorted(by_index) if t not in by_index[i])
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            out.append(Finding.of(SC, f"{len(missing)} tensor(s) that the other layers hold are missing: {', '.join(missing[:3])}{more}; "
                                      "from_pretrained initializes them at random",
                                  path=CONFIG, actual=missing[:50],
                                  hint="the weights are incomplete: save the model again with save_pretrained, or download the weights again"))
    return out


def _prefix(raw: Mapping[str, Any], model_type: str, fam: Family, shapes: Mapping[str, Any]) -> list[Finding]:
    mine = fam.prefixes.get(model_type)
    if mine is None:
        return []
    roots = {n.split(".", 1)[0] for n in shapes}
    if mine in roots:
        return []
    other = sorted(p for p in roots if p in _ALL_PREFIXES and p != mine)
    if not other:
        return []
    theirs = _ALL_PREFIXES[other[0]]
    return [Finding.of(SC, f"model_type is {model_type!r}, but the tensor names start with {other[0] + '.'!r} (a {theirs} checkpoint): "
                           f"from_pretrained looks for {mine + '.*'!r}, finds none, and initializes the whole model at random",
                       path=CONFIG, expected=theirs, actual=model_type,
                       hint=f"set model_type to {theirs!r} in config.json (and architectures to its class), "
                            "or use the weights this config belongs to")]


def _range(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}-{b}"


def _span(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:8])) + (", ..." if len(ids) > 8 else "")
