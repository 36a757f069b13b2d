"""``config.json``: the facts about a checkpoint that decide how it loads.

Read with the strict JSON reader; nothing is imported from transformers. Label maps
are normalized (``id2label`` keys become integers when they are integers) but their
defects are kept, so :mod:`manifest.consistency` can name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..inventory import Artifact
from ..jsonio import JSONError

CONFIG = "config.json"
TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id")


class ConfigError(ValueError):
    """config.json is malformed."""


@dataclass(frozen=True)
class ConfigFacts:
    raw: dict[str, Any]
    model_type: str | None
    architectures: tuple[str, ...]
    id2label: dict[str, Any] | None  # as written (string keys)
    label2id: dict[str, Any] | None
    num_labels: int | None  # an explicit "num_labels" key, rare
    vocab_size: int | None
    hidden_size: int | None
    dtype: str | None
    transformers_version: str | None
    tie_word_embeddings: bool | None  # None: not written (transformers' default applies)
    auto_map: dict[str, Any] = field(default_factory=dict)

    def token_ids(self) -> dict[str, list[int]]:
        """pad/bos/eos/... ids the config names (eos may be a list)."""
        out: dict[str, list[int]] = {}
        for k in TOKEN_ID_KEYS:
            v = self.raw.get(k)
            vals = v if isinstance(v, list) else [v]
            ids = [x for x in vals if isinstance(x, int) and not isinstance(x, bool)]
            if ids:
                out[k] = ids
        return out

    def labels(self) -> dict[int, str] | None:
        """id2label with integer keys, or None when absent or when a key is not an integer."""
        if self.id2label is None:
            return None
        out: dict[int, str] = {}
        for k, v in self.id2label.items():
            try:
                out[int(k)] = str(v)
            except ValueError:
                return None
        return out

    def facts(self) -> dict[str, Any]:
        """The manifest's ``config`` section (JSON-able)."""
        labels = self.labels()
        d: dict[str, Any] = {
            "model_type": self.model_type,
            "architectures": list(self.architectures),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "dtype": self.dtype,
            "transformers_version": self.transformers_version,
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        if self.id2label is not None:
            d["id2label"] = {str(k): v for k, v in sorted(labels.items())} if labels is not None else dict(self.id2label)
            d["num_labels"] = len(self.id2label)
        if self.label2id is not None:
            d["label2id"] = dict(sorted(self.label2id.items()))
        if self.auto_map:
            d["auto_map"] = dict(self.auto_map)
        return d


def _int(v: Any) -> int | None:
    """A plausible size: a non-negative integer that JSON canonicalization can carry."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53 else None


def _sub(raw: dict[str, Any], key: str) -> Any:
    """A value from the top level, else from a nested text config (multimodal models)."""
    if key in raw:
        return raw[key]
    for sub in ("text_config", "language_config", "llm_config"):
        s = raw.get(sub)
        if isinstance(s, dict) and key in s:
            return s[key]
    return None


def parse_config(raw: Any) -> ConfigFacts:
    if not isinstance(raw, dict):
        raise ConfigError("config.json is not a JSON object")
    arch = raw.get("architectures") or []
    if isinstance(arch, str):
        arch = [arch]  # transformers accepts one class name as a string (manifest.consistency warns)
    if not isinstance(arch, list) or not all(isinstance(a, str) for a in arch):
        raise ConfigError('"architectures" is not a list of class names')
    id2label = raw.get("id2label")
    if id2label is not None and not isinstance(id2label, dict):
        raise ConfigError('"id2label" is not an object')
    label2id = raw.get("label2id")
    if label2id is not None and not isinstance(label2id, dict):
        raise ConfigError('"label2id" is not an object')
    dtype = raw.get("dtype", raw.get("torch_dtype"))
    tie = raw.get("tie_word_embeddings")
    auto_map = raw.get("auto_map") or {}
    mt = raw.get("model_type")
    tv = raw.get("transformers_version")
    return ConfigFacts(
        raw=raw,
        model_type=mt if isinstance(mt, str) else None,
        architectures=tuple(arch),
        id2label=id2label,
        label2id=label2id,
        num_labels=_int(raw.get("num_labels")),
        vocab_size=_int(_sub(raw, "vocab_size")),
        hidden_size=_int(_sub(raw, "hidden_size")),
        dtype=dtype if isinstance(dtype, str) else None,
        transformers_version=tv if isinstance(tv, str) else None,
        tie_word_embeddings=tie if isinstance(tie, bool) else None,
        auto_map=auto_map if isinstance(auto_map, dict) else {},
    )


def read_config(art: Artifact) -> ConfigFacts | None:
    """The artifact's config.json facts (memoized); None without one. Raises :class:`ConfigError`."""

    def compute() -> ConfigFacts | ConfigError | None:
        if CONFIG not in art.files:
            return None
        try:
            return parse_config(art.read_json(CONFIG))
        except JSONError as e:
            return ConfigError(f"config.json is not valid JSON: {e}")
        except ConfigError as e:
            return e
        except OSError as e:  # permission denied, I/O error: a finding, never a crash
            return ConfigError(f"config.json cannot be read: {e.strerror or e}")
        except InputError as e:  # over the side-file size cap
            return ConfigError(e.message)

    res = art.memo("config-facts", compute)
    if isinstance(res, ConfigError):
        raise res
    return res


def remote_code(art: Artifact) -> dict[str, Any]:
    """What custom code the checkpoint asks for: ``auto_map`` entries (config.json,
    tokenizer_config.json) and the ``*.py`` files it ships."""
    out: dict[str, Any] = {}
    try:
        cfg = read_config(art)
    except ConfigError:
        cfg = None
    if cfg is not None and cfg.auto_map:
        out["auto_map"] = dict(cfg.auto_map)
    if "tokenizer_config.json" in art.files:
        try:
            tc = art.read_json("tokenizer_config.json")
        except (JSONError, ValueError, OSError, InputError):  # unreadable or too big: the tokenizer section reports it
            tc = None
        if isinstance(tc, dict) and isinstance(tc.get("auto_map"), (dict, list)):
            out["tokenizer_auto_map"] = tc["auto_map"]
    py = sorted(p for p in art.files if p.endswith(".py"))
    if py:
        out["python_files"] = py
    return out


def signable(section: dict[str, Any], path: str) -> dict[str, Any]:
    """``section`` itself, once it is known to canonicalize (RFC 8785): a lone surrogate
    or an integer beyond 2**53 in a side file must stop ``create`` with one clear line."""
    from ..errors import InputError
    from ..jsonio import canonical_bytes

    try:
        canonical_bytes(section)
    except JSONError as e:
        raise InputError(f"cannot be recorded in a manifest: {e}", code="side-file-invalid", path=path) from None
    return section
