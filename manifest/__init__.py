"""model-manifest: fingerprint, sign and verify Hugging Face-style checkpoints.

The public API is re-exported here; see the README for examples.
"""

__version__ = "0.1.0"
