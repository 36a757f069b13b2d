"""Load many checkpoints with the real transformers / safetensors / huggingface_hub and print
what each load produced, as one JSON object.

    python tests/loader_fingerprint.py < jobs.json

``jobs.json`` is ``{"name": {"kind": ..., "path": ..., ...}, ...}``; the output maps each
name to its fingerprint, or to ``{"error": "..."}`` when the load raised. Kinds:

- ``tokenizer``: ``AutoTokenizer.from_pretrained(path)``: class, vocabulary size, the ids of a
  fixed sentence, ``model_max_length``, and a digest of the chat template(s);
- ``config``: ``AutoConfig.from_pretrained(path)``: ``id2label``, ``vocab_size``, model type;
- ``model``: ``AutoModelForTokenClassification`` (or ``AutoModel`` with ``"auto": "base"``)
  ``.from_pretrained(path)``: a SHA-256 over the state dict as loaded (names, dtypes, shapes,
  bytes) and ``id2label``;
- ``safetensors``: ``safetensors.safe_open(path, framework="np")``: a SHA-256 over every tensor
  as read;
- ``hub_file``: ``try_to_load_from_cache(repo_id, filename, cache_dir=...)`` (what transformers'
  ``cached_file`` asks): a digest of the file it resolves, or ``absent``;
- ``hub``: like ``tokenizer``, loaded by repo id from a Hugging Face cache
  (``repo_id``, ``cache_dir``), the way "verify the cache, then load by repo id" does.

Run in a subprocess by tests/test_loader_differential.py (one process for every load) so the
test process never imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

SENTENCE = "The quick brown fox got covid19 and bnt162b2, said Zoë in 2026."
CHAT = [{"role": "user", "content": "hello"}]


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:16]


def _tensor_digest(items: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(items):
        t = tensor.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _tokenizer(tok: Any) -> dict[str, Any]:
    tmpl = tok.chat_template
    rendered = None
    if tmpl is not None:
        try:
            rendered = _sha(tok.apply_chat_template(CHAT, tokenize=False))
        except Exception as e:  # the template itself may not render
            rendered = f"error: {type(e).__name__}"
    return {
        "class": type(tok).__name__,
        "vocab": len(tok),
        "ids": tok(SENTENCE)["input_ids"],
        "model_max_length": float(tok.model_max_length),
        "chat_template": None if tmpl is None else _sha(json.dumps(tmpl, sort_keys=True)),
        "chat_rendered": rendered,
    }


def run(job: dict[str, Any]) -> dict[str, Any]:
    kind, path = job["kind"], job.get("path")
    if kind == "tokenizer":
        from transformers import AutoTokenizer

        return _tokenizer(AutoTokenizer.from_pretrained(path))
    if kind == "hub":
        from transformers import AutoTokenizer

        return _tokenizer(AutoTokenizer.from_pretrained(job["repo_id"], cache_dir=job["cache_dir"]))
    if kind == "hub_file":  # how transformers' cached_file resolves one file of a cached repo
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.file_download import _CACHED_NO_EXIST

        p = try_to_load_from_cache(job["repo_id"], job["filename"], cache_dir=job["cache_dir"])
        if p is None or p is _CACHED_NO_EXIST:
            return {"file": "absent (.no_exist marker)" if p is _CACHED_NO_EXIST else "absent"}
        with open(p, "rb") as f:
            return {"file": _sha(f.read())}
    if kind == "config":
        from transformers import AutoConfig

        c = AutoConfig.from_pretrained(path)
        return {"model_type": c.model_type, "vocab_size": c.vocab_size, "id2label": {str(k): v for k, v in c.id2label.items()}}
    if kind == "model":
        import transformers

        cls = transformers.AutoModel if job.get("auto") == "base" else transformers.AutoModelForTokenClassification
        m = cls.from_pretrained(path)
        return {"state_dict": _tensor_digest(m.state_dict().items()),
                "id2label": {str(k): v for k, v in m.config.id2label.items()}}
    if kind == "safetensors":  # read with numpy: no torch import, so this kind is fast
        from safetensors import safe_open

        h = hashlib.sha256()
        with safe_open(path, framework="np") as f:
            for k in sorted(f.keys()):
                t = f.get_tensor(k)
                h.update(f"{k}|{t.dtype}|{t.shape}|".encode())
                h.update(t.tobytes())
        return {"state_dict": h.hexdigest()[:16]}
    raise ValueError(f"unknown kind {kind!r}")


def main() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    jobs = json.load(sys.stdin)
    out: dict[str, Any] = {}
    for name, job in jobs.items():
        try:
            out[name] = run(job)
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
