"""model-manifest: fingerprint, sign and verify Hugging Face-style checkpoints.

The public API is re-exported here; see the README for examples.
"""

__version__ = "0.1.0"

# The public API, imported on first use (``import manifest`` stays cheap for the CLI):
#   from manifest import verify, verify_or_raise, create, check, Options, VerificationFailed
_LAZY = {
    "create": ("api", "create"),
    "verify": ("api", "verify"),
    "verify_or_raise": ("api", "verify_or_raise"),
    "check": ("api", "check"),
    "load_manifest": ("api", "load_manifest"),
    "Options": ("options", "Options"),
    "Report": ("report", "Report"),
    "Finding": ("findings", "Finding"),
    "Manifest": ("document", "Manifest"),
    "ManifestError": ("errors", "ManifestError"),
    "InputError": ("errors", "InputError"),
    "VerificationFailed": ("errors", "VerificationFailed"),
    "load_private_key": ("signing", "load_private_key"),
    "load_public_key": ("signing", "load_public_key"),
    "load_certificates": ("certs", "load_certificates"),
    "load_trust": ("trust", "load_trust"),
    "export_oms": ("oms", "export_oms"),
    "verify_oms": ("oms", "verify_oms"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
