"""Build real fine-tuned checkpoints from the bundled MiniLM, with transformers.

    python tests/build_checkpoints.py MINILM_DIR OUT_DIR

writes, each saved with ``save_pretrained`` (model and tokenizer):

- ``OUT_DIR/clean``: a ``BertForTokenClassification`` with a 5-label set;
- ``OUT_DIR/stale_vocab``: the same after ``tokenizer.add_tokens`` (3 tokens) and
  ``model.resize_token_embeddings``, with config.json's ``vocab_size`` put back to the
  old 30522 (a config saved before the resize: weights and tokenizer say 30525).

Run in a subprocess by the ``tokcls_build`` fixture so the test process never imports
torch or transformers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ADDED = ["covid19", "bnt162b2", "sars2"]


def main(src: str, out: str) -> None:
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    torch.manual_seed(0)
    o = Path(out)
    model = BertForTokenClassification.from_pretrained(
        src, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)}
    )
    tok = AutoTokenizer.from_pretrained(src)
    model.save_pretrained(o / "clean")
    tok.save_pretrained(o / "clean")
    tok.add_tokens(ADDED)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(o / "stale_vocab")
    tok.save_pretrained(o / "stale_vocab")
    cfg_path = o / "stale_vocab" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["vocab_size"] = 30522
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
