"""What transformers itself does with each checkpoint: the ground truth of the diagnosis corpus.

    python tests/diagnosis_probe.py ORIGINAL DIR...

prints one JSON line per DIR: ``{"dir", "outcome", "why"}`` with outcome

- ``raises``: AutoTokenizer/AutoModelForTokenClassification.from_pretrained or the forward
  pass raised;
- ``differs``: it loads, but on a fixed sentence the token ids, the predicted label names,
  the label ids those names map back to (``config.label2id``, what evaluation and further
  training use) or the logits (beyond 1e-4) differ from ORIGINAL's;
- ``same``: none of these differ.

Run in a subprocess by tests/test_diagnosis_corpus.py (the test process never imports
torch or transformers); every DIR is loaded in this one process.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

SENTENCE = "Angela Merkel met the CEO of Siemens in Munich on Tuesday ."


def behaviour(d: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
    model = AutoModelForTokenClassification.from_pretrained(d, local_files_only=True)
    model.eval()
    enc = tok(SENTENCE, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits[0].float()
    names = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    return {"ids": enc["input_ids"][0].tolist(), "labels": names, "back": [model.config.label2id.get(n) for n in names],
            "logits": logits.tolist(), "dtype": str(model.dtype).removeprefix("torch.")}


def compare(base: dict[str, Any], b: dict[str, Any]) -> list[str]:
    why = []
    if b["ids"] != base["ids"]:
        why.append(f"token ids ({len(base['ids'])} -> {len(b['ids'])} tokens)")
    if b["labels"] != base["labels"]:
        why.append("predicted labels")
    if b["back"] != base["back"]:
        why.append("label2id of the predicted labels")
    if len(b["logits"]) == len(base["logits"]):
        diff = max(abs(x - y) for r1, r2 in zip(b["logits"], base["logits"], strict=True) for x, y in zip(r1, r2, strict=True))
        if diff > 1e-4:
            why.append(f"logits (max diff {diff:.2g}, loaded as {b['dtype']})")
    return why


def main(original: str, dirs: list[str]) -> None:
    warnings.filterwarnings("ignore")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    base = behaviour(original)
    for d in dirs:
        try:
            b = behaviour(d)
        except Exception as e:  # the ground truth: whatever from_pretrained or the forward pass raises
            line = {"dir": d, "outcome": "raises", "why": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"}
        else:
            why = compare(base, b)
            line = {"dir": d, "outcome": "differs" if why else "same", "why": ", ".join(why)}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
