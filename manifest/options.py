"""Options shared by ``create``, ``verify`` and ``check`` (one object, passed down)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError


@dataclass
class Options:
    # trust (verify)
    keys: list[Any] = field(default_factory=list)  # public keys, from the verifier's flags only
    # X.509 roots (cryptography Certificate objects) a certificate-signed manifest or bundle must chain to
    cas: list[Any] = field(default_factory=list)
    # Sigstore keyless: accepted (identity, issuer) pairs, and the trusted root (None: the public-good root)
    identities: list[tuple[str, str]] = field(default_factory=list)
    trusted_root: str | None = None
    # verify --oms: follow symlinks that stay inside the model (model_signing --allow_symlinks bundles)
    allow_symlinks: bool = False
    expect_model: str | None = None
    expect_revision: str | None = None
    # verify: check only the files' agreement with the manifest, not who signed it (no trust anchor).
    # Explicit, because a pass without a trust anchor says nothing about authenticity.
    integrity_only: bool = False
    # flow
    fail_fast: bool = False
    exhaustive: bool = False  # hash digests even when cheap checks already failed
    # hashing
    algorithms: list[str] | None = None  # create: digests to record; verify: subset to check
    use_cache: bool = True
    # verify: path -> {algorithm: hex} known without reading the file (a staged Git LFS pointer's oid)
    known_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    workers: int | None = None
    # verify: a digest.UnitRunner that hashes the files and chunks elsewhere (audit --ray: Ray tasks); None: local threads
    hash_runner: Any = None
    progress: bool = False
    # create: the chunk size of chunk digests (None: digest.CHUNK_SIZE); files over one chunk get them
    chunk_size: int | None = None
    # weights
    memory_limit: int | None = None  # bytes; compare load size with this
    check_memory: bool = False  # compare load size with available memory
    # environment
    requires: list[str] = field(default_factory=list)  # extra requirement specifiers (create, check)
    # load tier
    load: str | None = None  # None, "structural" or "full"
    trust_remote_code: bool = False

    @property
    def has_anchor(self) -> bool:
        """A trust anchor of any kind came from the verifier: a key, a CA root or a Sigstore identity."""
        return bool(self.keys or self.cas or self.identities)

    def __post_init__(self) -> None:
        if self.integrity_only and self.has_anchor:
            raise UsageError("--no-signature (integrity only) and a trust anchor (--key, --ca, --identity) contradict each other: pass one of them")
