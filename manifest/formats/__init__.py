"""One pure reader per file format. The file kinds below are known by name alone, so a
caller can tell whether a (heavier) reader is needed before importing it."""

INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json", ".pt.index.json")  # shard indexes
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")  # pickle-based weights
