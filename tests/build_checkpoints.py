"""Build real fine-tuned checkpoints from the bundled MiniLM, with transformers.

    python tests/build_checkpoints.py MINILM_DIR OUT_DIR

writes, each saved with ``save_pretrained`` (model and tokenizer):

- ``OUT_DIR/clean``: a ``BertForTokenClassification`` with a 5-label set;
- ``OUT_DIR/stale_vocab``: the same after ``tokenizer.add_tokens`` (3 tokens) and
  ``model.resize_token_embeddings``, with config.json's ``vocab_size`` put back to the
  old 30522 (a config saved before the resize: weights and tokenizer say 30525).

    python tests/build_checkpoints.py --trained MINILM_DIR OUT_DIR

writes a 9-label NER model fine-tuned a few steps, and the variants of it that need
transformers to make (see :func:`trained`).

    python tests/build_checkpoints.py --trainer-state MODEL_DIR OUT_DIR

writes a Trainer checkpoint's state files for MODEL_DIR into OUT_DIR (``optimizer.pt``,
``scheduler.pt``, ``rng_state.pth``, ``training_args.bin``).

    python tests/build_checkpoints.py --families OUT_DIR

writes one tiny randomly initialized checkpoint per model family of
:mod:`manifest.architecture` (``OUT_DIR/bert``, ``OUT_DIR/gpt2``, ...), each with sizes
that differ from one another (so a rule reading the wrong axis or key cannot pass).

Run in a subprocess by the fixtures so the test process never imports torch or
transformers.
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


NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
NER_DATA = [("Angela Merkel visited Paris in May .", [1, 2, 0, 5, 0, 0, 0]),
            ("Google opened an office in Zurich .", [3, 0, 0, 0, 0, 5, 0]),
            ("The Eiffel Tower is in France .", [0, 7, 8, 0, 0, 5, 0]),
            ("Barack Obama spoke at Stanford University .", [1, 2, 0, 0, 3, 4, 0])]


def trained(src: str, out: str) -> None:
    """A 9-label NER BertForTokenClassification fine-tuned a few steps from MiniLM, and the
    checkpoints a diagnosis corpus derives from it with transformers itself:

    - ``clean``: model and tokenizer (save_pretrained);
    - ``trainer``: the Trainer's state files for it (optimizer, scheduler, RNG, arguments);
    - ``fp16``: the weights saved in float16 (config.json then put back to float32);
    - ``resized``: 3 tokens added, embeddings resized, config.json's vocab_size put back."""
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    torch.manual_seed(0)
    o = Path(out)
    tok = AutoTokenizer.from_pretrained(src)
    model = BertForTokenClassification.from_pretrained(
        src, num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS)), label2id={n: i for i, n in enumerate(NER_LABELS)})
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model.train()
    for _ in range(6):
        for text, labels in NER_DATA:
            enc = tok(text.split(), is_split_into_words=True, return_tensors="pt")
            target = torch.tensor([[-100 if w is None else labels[w] for w in enc.word_ids()]])
            model(**enc, labels=target).loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    model.save_pretrained(o / "clean")
    tok.save_pretrained(o / "clean")
    trainer_state(str(o / "clean"), str(o / "trainer"))
    model.half().save_pretrained(o / "fp16")
    tok.save_pretrained(o / "fp16")
    model.float()
    _set(o / "fp16" / "config.json", dtype="float32")
    tok.add_tokens(ADDED)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(o / "resized")
    tok.save_pretrained(o / "resized")
    _set(o / "resized" / "config.json", vocab_size=30522)


def _set(path: Path, **kw: object) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(kw)
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def trainer_state(model_dir: str, out: str) -> None:
    """The files a Trainer checkpoint holds besides the model, written as the Trainer writes
    them (torch.save of the optimizer, scheduler and RNG states and of TrainingArguments).
    TrainingArguments is filled field by field: constructing it needs accelerate."""
    import dataclasses
    import random

    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification, TrainingArguments, get_linear_schedule_with_warmup
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType
    from transformers.training_args import OptimizerNames

    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    opt = torch.optim.AdamW(model.classifier.parameters(), lr=1e-4)  # the head only: the same file format, 60 KB not 180 MB
    model(input_ids=torch.tensor([[101, 2000, 102]])).logits.sum().backward()
    opt.step()
    sched = get_linear_schedule_with_warmup(opt, 1, 10)
    torch.save(opt.state_dict(), o / "optimizer.pt")
    torch.save(sched.state_dict(), o / "scheduler.pt")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}, o / "rng_state.pth")
    args = TrainingArguments.__new__(TrainingArguments)
    for f in dataclasses.fields(TrainingArguments):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        setattr(args, f.name, None if default is dataclasses.MISSING else default)
    args.output_dir, args.eval_strategy, args.save_strategy = "out", IntervalStrategy("no"), SaveStrategy("steps")
    args.lr_scheduler_type, args.optim = SchedulerType("linear"), OptimizerNames("adamw_torch")
    torch.save(args, o / "training_args.bin")


def families(out: str) -> None:
    import torch
    import transformers as t

    torch.manual_seed(0)
    bert = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 37, "max_position_embeddings": 64}
    llama = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 37}
    specs = {
        "bert": (t.BertConfig, t.BertForTokenClassification, {**bert, "type_vocab_size": 3, "num_labels": 3}),
        "roberta": (t.RobertaConfig, t.RobertaForMaskedLM, {**bert, "num_hidden_layers": 2, "max_position_embeddings": 66}),
        "electra": (t.ElectraConfig, t.ElectraForSequenceClassification, {**bert, "embedding_size": 16}),
        "distilbert": (t.DistilBertConfig, t.DistilBertForTokenClassification,
                       {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37, "max_position_embeddings": 64}),
        "gpt2": (t.GPT2Config, t.GPT2LMHeadModel,
                 {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_inner": 37, "n_positions": 64, "bos_token_id": 0, "eos_token_id": 0}),
        "llama": (t.LlamaConfig, t.LlamaForCausalLM, llama),
        "mistral": (t.MistralConfig, t.MistralForCausalLM, {**llama, "num_key_value_heads": 1}),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM, llama),
        "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM, {**llama, "head_dim": 16}),
        "t5": (t.T5Config, t.T5ForConditionalGeneration,
               {"d_model": 32, "d_ff": 37, "d_kv": 8, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 3,
                "relative_attention_num_buckets": 16}),
    }
    for name, (config_cls, model_cls, kw) in specs.items():
        model_cls(config_cls(vocab_size=99, **kw)).save_pretrained(Path(out) / name)


if __name__ == "__main__":
    if sys.argv[1] == "--families":
        families(sys.argv[2])
    elif sys.argv[1] == "--trained":
        trained(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--trainer-state":
        trainer_state(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2])
