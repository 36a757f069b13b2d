"""An estimate of the peak memory a real load needs, from the headers alone.

Weight bytes alone understate it: loading the bundled MiniLM (87 MiB of float32 weights)
with ``--load full`` peaks at 451 MiB, most of it torch and transformers themselves. The model (calibrated by ``scripts/calibrate_memory.py``; the measurements
are in docs/weights.md, "Memory")::

    peak = RUNTIME_BYTES + WEIGHT_FACTOR * (weight bytes at the load dtype)

- *load dtype*: what ``from_pretrained`` (transformers 5, ``dtype="auto"``) loads floating
  tensors in: config.json's ``dtype`` (or ``torch_dtype``), else the first floating
  tensor's dtype; integer tensors keep theirs.
- ``RUNTIME_BYTES``: the loader process with torch and transformers imported, the
  tokenizer loaded and one sentence through the model (its activations are a few
  hundred KiB for one sentence, inside this constant).
- ``WEIGHT_FACTOR``: the weights' bytes as resident memory (the parameters, plus what
  the safetensors reader maps while it copies them).

It is an estimate of a CPU load in one process, the load tier's; a GPU load, another
dtype or quantization, and a batch of long inputs need a different amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

RUNTIME_BYTES = 377 * 2**20
WEIGHT_FACTOR = 0.87
TOLERANCE = 0.15  # the estimate is within this fraction of a measured --load full peak (tests/test_output.py)

FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1,
                "F8_E5M2FNUZ": 1}
_TORCH_NAMES = {"float64": "F64", "double": "F64", "float32": "F32", "float": "F32", "float16": "F16", "half": "F16",
                "bfloat16": "BF16", "float8_e5m2": "F8_E5M2", "float8_e4m3fn": "F8_E4M3"}


def load_dtype(totals: Iterable[Mapping[str, Any]], config_dtype: str | None) -> str | None:
    """The safetensors dtype name floating tensors are loaded in (None: no floating tensor).

    ``totals``: per safetensors file in path order, ``dtype -> (elements, bytes)`` in the
    order each dtype first appears in the file (``Header.dtype_totals``)."""
    if isinstance(config_dtype, str):
        name = _TORCH_NAMES.get(config_dtype.removeprefix("torch."))
        if name is not None:
            return name
    for per_file in totals:
        for d in per_file:
            if d in FLOAT_DTYPES:
                return str(d)
    return None


def weight_bytes_at(totals: Iterable[Mapping[str, Any]], dtype: str | None) -> int:
    """Bytes of the tensors once floating ones are cast to ``dtype``."""
    total = 0
    for per_file in totals:
        for d, (numel, nbytes) in per_file.items():
            total += numel * FLOAT_DTYPES[dtype] if dtype is not None and d in FLOAT_DTYPES else nbytes
    return total


def estimate(totals: Sequence[Mapping[str, Any]], config_dtype: str | None) -> dict[str, Any]:
    """The estimated peak, with its terms (the report's ``facts.memory_estimate``), from
    each safetensors file's per-dtype totals (see :func:`load_dtype`)."""
    dtype = load_dtype(totals, config_dtype)
    weights = weight_bytes_at(totals, dtype)
    return {
        "bytes": int(RUNTIME_BYTES + WEIGHT_FACTOR * weights),
        "weights_at_load_dtype": weights,
        "load_dtype": dtype,
        "runtime_bytes": RUNTIME_BYTES,
        "weight_factor": WEIGHT_FACTOR,
    }


def formula(est: dict[str, Any]) -> str:
    """``400 MiB runtime + 1.0 x 86.7 MiB of F32 weights``, for messages."""
    from .sections.weights import _human

    return (f"{_human(est['runtime_bytes'])} for torch, transformers and one forward pass + {est['weight_factor']} x "
            f"{_human(est['weights_at_load_dtype'])} of {est['load_dtype'] or 'stored'} weights")
