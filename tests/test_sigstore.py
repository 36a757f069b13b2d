"""Sigstore keyless OMS bundles, verified offline, against the REAL public-good bundle of the
OMS conformance vectors (tests/assets/oms-v1.0, Apache-2.0; made by ``model_signing sign
sigstore``) and the real ``sigstore`` and ``model_signing`` packages.

Every run of either tool here goes through ``tests/offline_guard.py``: the network is cut
off in the process, and any attempt is written to stderr, which the tests read.
``model_signing verify sigstore`` cannot run offline by default (it refreshes Sigstore's
TUF repository first, and fails without the network: shown below); given
``--trust_config`` with the trusted root shipped inside ``sigstore``, it can, and then it
agrees with ``manifest verify`` on every case.

The vector's certificate expired minutes after it was issued, in October 2025: a pass
shows that verification uses the Rekor integrated time and the signed timestamp, never
the wall clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import pytest

pytest.importorskip("sigstore", reason="Sigstore verification needs the sigstore package (oms and test extras)")
pytest.importorskip("model_signing", reason="the interop tests need model-signing==1.1.1 (test extra)")

HERE = Path(__file__).resolve().parent
VECTOR = HERE / "assets" / "oms-v1.0" / "test-vectors" / "v1.0" / "valid" / "sigstore.bundle.json"
KEY_VECTOR = VECTOR.with_name("key.bundle.json")
GUARD = HERE / "offline_guard.py"
MARK = "OFFLINE-GUARD: network access attempted"
PUBLIC_GOOD = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
STAGING = "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def errors(self) -> list[str]:
        return [f["code"] for f in json.loads(self.out)["findings"] if f["severity"] == "error"]


def offline(module: str, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Run:
    """``python -m MODULE ARGS`` with the network cut off; fails the test if it tried."""
    p = subprocess.run([sys.executable, str(GUARD), module, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL, check=False, env={**os.environ, **(env or {})})
    assert MARK not in p.stderr, f"{module} tried the network: {p.stderr[-800:]}"
    return Run(p.returncode, p.stdout, p.stderr)


def manifest(*args: str | Path, cwd: Path) -> Run:
    return offline("manifest", "verify", *args, "--json", "-q", "--no-cache", cwd=cwd)


def model_signing(model: Path, sig: Path, identity: str, issuer: str, trust_config: Path, cwd: Path) -> Run:
    return offline("model_signing", "verify", "sigstore", model, "--signature", sig, "--identity", identity, "--identity_provider", issuer,
                   "--trust_config", trust_config, cwd=cwd)


@pytest.fixture(scope="module")
def claims() -> dict[str, str]:
    """The signer identity (SAN) and OIDC issuer the vector's certificate names, read with cryptography."""
    from cryptography import x509

    doc = json.loads(VECTOR.read_text())
    cert = x509.load_der_x509_certificate(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    identity = (sans.get_values_for_type(x509.RFC822Name) + sans.get_values_for_type(x509.UniformResourceIdentifier))[0]
    issuer = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")).value.value.decode()
    integrated = datetime.fromtimestamp(int(doc["verificationMaterial"]["tlogEntries"][0]["integratedTime"]), tz=timezone.utc)
    assert cert.not_valid_before_utc <= integrated <= cert.not_valid_after_utc < datetime.now(timezone.utc)  # long expired
    return {"identity": identity, "issuer": issuer, "integrated": integrated.strftime("%Y-%m-%dT%H:%M:%SZ")}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The vector's model: two files, each holding its own name, no newline."""
    d = tmp_path / "model"
    d.mkdir()
    for name in ("signme-1", "signme-2"):
        (d / name).write_bytes(name.encode())
    return d


@pytest.fixture(scope="module")
def trust_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client trust configuration holding the public-good trusted root and signing
    configuration shipped inside the sigstore package (what ``--trust_config`` reads)."""
    store = resources.files("sigstore._store").joinpath(PUBLIC_GOOD)
    doc = {"mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
           "trustedRoot": json.loads(store.joinpath("trusted_root.json").read_text()),
           "signingConfig": json.loads(store.joinpath("signing_config.v0.2.json").read_text())}
    p = tmp_path_factory.mktemp("trust") / "trust_config.json"
    p.write_text(json.dumps(doc))
    return p


def edited(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    doc = json.loads(VECTOR.read_text())
    change(doc)
    p = tmp_path / "edited.sigstore.json"
    p.write_text(json.dumps(doc))
    return p


def test_the_real_sigstore_vector_verifies_offline_in_both_tools(model: Path, claims: dict[str, str], trust_config: Path, tmp_path: Path) -> None:
    r = manifest(model, "--oms", VECTOR, "--identity", claims["identity"], "--issuer", claims["issuer"], cwd=tmp_path)
    assert r.code == 0, (r.out, r.err)
    rep = json.loads(r.out)
    assert rep["verdict"] == "pass" and {"signature", "digests"} <= set(rep["checked"])
    facts = rep["facts"]["sigstore"]
    assert facts["identity"] == [claims["identity"]] and facts["issuer"] == claims["issuer"]
    assert facts["integrated_time"] == claims["integrated"] and facts["signed_timestamps"] == 1 and len(facts["verified_timestamps"]) == 1
    assert facts["trusted_root"].startswith("embedded public-good root (sigstore 4.")
    assert facts["trusted_root_newest"] >= "2025-09-23"
    r = model_signing(model, VECTOR, claims["identity"], claims["issuer"], trust_config, tmp_path)
    assert r.code == 0 and "Verification succeeded" in r.out, (r.out, r.err)


def test_model_signing_by_default_needs_the_network(model: Path, claims: dict[str, str], tmp_path: Path) -> None:
    """Without --trust_config, ``model_signing verify sigstore`` refreshes Sigstore's TUF
    repository first: offline it fails, and the guard sees it try (so the guard works)."""
    p = subprocess.run([sys.executable, str(GUARD), "model_signing", "verify", "sigstore", str(model), "--signature", str(VECTOR),
                        "--identity", claims["identity"], "--identity_provider", claims["issuer"]],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert MARK in p.stderr
    assert p.returncode != 0 and "Failed to refresh TUF metadata" in p.stdout + p.stderr


def _edit_payload(model: Path):  # type: ignore[no-untyped-def]
    """A consistent forgery: signme-1 changed, its digest in the payload changed to match, the
    subject digest recomputed; the DSSE signature is left as it was."""
    (model / "signme-1").write_bytes(b"forged")

    def change(doc: dict) -> None:  # type: ignore[type-arg]
        st = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
        for r in st["predicate"]["resources"]:
            if r["name"] == "signme-1":
                r["digest"] = hashlib.sha256(b"forged").hexdigest()
        st["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in st["predicate"]["resources"])).hexdigest()
        doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()

    return change


CASES = ["wrong-identity", "wrong-issuer", "changed-file", "edited-payload", "inclusion-proof", "integrated-time"]


@pytest.mark.parametrize("case", CASES)
def test_each_tampered_form_fails_in_both_tools(case: str, model: Path, claims: dict[str, str], trust_config: Path, tmp_path: Path) -> None:
    identity, issuer, sig = claims["identity"], claims["issuer"], VECTOR
    expected = {"wrong-identity": "identity-mismatch", "wrong-issuer": "identity-mismatch", "changed-file": "digest-mismatch",
                "edited-payload": "signature-invalid", "inclusion-proof": "transparency-log-invalid",
                "integrated-time": "transparency-log-invalid"}[case]
    if case == "wrong-identity":
        identity = "someone.else@us.ibm.com"
    elif case == "wrong-issuer":
        issuer = "https://accounts.google.com"
    elif case == "changed-file":
        (model / "signme-2").write_bytes(b"signme-3")
    elif case == "edited-payload":
        sig = edited(tmp_path, _edit_payload(model))
    elif case == "inclusion-proof":
        def change(doc: dict) -> None:  # type: ignore[type-arg]
            doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0] = base64.b64encode(bytes(32)).decode()

        sig = edited(tmp_path, change)
    else:  # a later integrated time than Rekor signed (the signed entry timestamp covers it)
        def change(doc: dict) -> None:  # type: ignore[type-arg]
            t = doc["verificationMaterial"]["tlogEntries"][0]
            t["integratedTime"] = str(int(t["integratedTime"]) + 60)

        sig = edited(tmp_path, change)
    r = manifest(model, "--oms", sig, "--identity", identity, "--issuer", issuer, cwd=tmp_path)
    assert r.code == 1, (r.out, r.err)
    assert r.errors() == [expected], r.out
    ms = model_signing(model, sig, identity, issuer, trust_config, tmp_path)
    assert ms.code == 1 and "Verification failed" in ms.out + ms.err, (ms.out, ms.err)


def _drop_set(doc: dict) -> None:  # type: ignore[type-arg]
    del doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]


def _drop_timestamp(doc: dict) -> None:  # type: ignore[type-arg]
    del doc["verificationMaterial"]["timestampVerificationData"]


def _damage_timestamp(doc: dict) -> None:  # type: ignore[type-arg]
    t = doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
    raw = bytearray(base64.b64decode(t["signedTimestamp"]))
    raw[-10] ^= 1  # inside the TSA's signature: the token still parses
    t["signedTimestamp"] = base64.b64encode(bytes(raw)).decode()


TIME_CASES = {  # name: (edits, manifest's exit status, its findings, model_signing verifies)
    "log-time-only": ([_drop_timestamp], 0, [], True),
    "signed-timestamp-only": ([_drop_set], 0, [], True),
    "damaged-timestamp-beside-the-log-time": ([_damage_timestamp], 0, ["timestamp-unverified"], True),
    "damaged-timestamp-alone": ([_damage_timestamp, _drop_set], 1, ["transparency-log-invalid"], False),
    "no-time-at-all": ([_drop_timestamp, _drop_set], 2, None, False),
}


@pytest.mark.parametrize("case", list(TIME_CASES))
def test_the_time_of_signing_comes_from_the_log_or_a_signed_timestamp(case: str, model: Path, claims: dict[str, str], trust_config: Path,
                                                                      tmp_path: Path) -> None:
    """Either verified source of time suffices (the Rekor integrated time, bound by its SET,
    or an RFC 3161 signed timestamp); a signed timestamp that does not verify is not counted
    (sigstore's rule), and manifest says so with a warning; with no source, nothing passes."""
    edits, code, findings, ms_ok = TIME_CASES[case]

    def change(doc: dict) -> None:  # type: ignore[type-arg]
        for e in edits:
            e(doc)

    sig = edited(tmp_path, change)
    r = offline("manifest", "verify", model, "--oms", sig, "--identity", claims["identity"], "--issuer", claims["issuer"], "--json", "-q",
                cwd=tmp_path)
    assert r.code == code, (r.out, r.err)
    if code == 2:
        assert r.err.startswith("error[manifest-invalid]: OMS bundle: not a valid Sigstore bundle: ") and r.err.count("\n") == 1, r.err
    else:
        assert [f["code"] for f in json.loads(r.out)["findings"]] == findings, r.out
    ms = model_signing(model, sig, claims["identity"], claims["issuer"], trust_config, tmp_path)
    assert (ms.code == 0) == ms_ok, (ms.out, ms.err)


def test_a_trust_file_lists_the_sigstore_identity_and_trusted_root(model: Path, claims: dict[str, str], trust_config: Path,
                                                                   tmp_path: Path) -> None:
    """The gate's policy in one reviewed file (``--trust`` or ``MANIFEST_TRUST``): its
    identity pairs and trusted root verify the real bundle as the flags do."""
    policy = tmp_path / "trust.json"

    def write(identity: str, root: str | None) -> Path:
        doc: dict[str, object] = {"version": 1, "identities": [{"identity": identity, "issuer": claims["issuer"]}]}
        if root is not None:
            doc["trusted_root"] = root
        policy.write_text(json.dumps(doc))
        return policy

    r = manifest(model, "--oms", VECTOR, "--trust", write(claims["identity"], None), cwd=tmp_path)
    assert r.code == 0 and json.loads(r.out)["facts"]["sigstore"]["trusted_root"].startswith("embedded public-good root"), r.out
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "trust_config.json").write_bytes(trust_config.read_bytes())
    r = offline("manifest", "verify", model, "--oms", VECTOR, "--json", "-q", cwd=tmp_path,
                env={"MANIFEST_TRUST": str(write(claims["identity"], "roots/trust_config.json"))})  # relative to the trust file
    assert r.code == 0 and json.loads(r.out)["facts"]["sigstore"]["trusted_root"] == str(roots / "trust_config.json"), r.out
    r = manifest(model, "--oms", VECTOR, "--trust", write("someone.else@us.ibm.com", None), cwd=tmp_path)
    assert r.code == 1 and r.errors() == ["identity-mismatch"], r.out
    # the flags add to the file's pairs: one accepted pair suffices
    r = manifest(model, "--oms", VECTOR, "--trust", policy, "--identity", claims["identity"], "--issuer", claims["issuer"], cwd=tmp_path)
    assert r.code == 0, r.out


def test_identity_pairs_are_repeatable_and_paired(model: Path, claims: dict[str, str], tmp_path: Path) -> None:
    good, other = (claims["identity"], claims["issuer"]), ("someone.else@us.ibm.com", "https://accounts.google.com")
    # one accepted pair suffices, whatever its position
    r = manifest(model, "--oms", VECTOR, "--identity", other[0], "--issuer", other[1], "--identity", good[0], "--issuer", good[1], cwd=tmp_path)
    assert r.code == 0, r.out
    # the right identity with another pair's issuer is no match: pairs, not two lists
    r = manifest(model, "--oms", VECTOR, "--identity", good[0], "--issuer", other[1], "--identity", other[0], "--issuer", good[1], cwd=tmp_path)
    assert r.code == 1 and r.errors() == ["identity-mismatch"]
    f = json.loads(r.out)["findings"][0]
    assert f["actual"] == {"identity": [good[0]], "issuer": good[1]} and claims["identity"] in f["message"]


@pytest.mark.parametrize("args", [["--identity", "a@b.c"], ["--issuer", "https://accounts.google.com"],
                                  ["--identity", "a@b.c", "--issuer", "https://x", "--identity", "d@e.f"],
                                  ["--identity", "", "--issuer", "https://x"], ["--identity", "a@b.c", "--issuer", " "],
                                  ["--trusted-root", str(VECTOR)],
                                  ["--identity", "a@b.c", "--issuer", "https://x", "--no-signature"]],
                         ids=["lone-identity", "lone-issuer", "unpaired", "empty-identity", "empty-issuer", "root-alone", "no-signature"])
def test_usage_errors(args: list[str], model: Path, tmp_path: Path) -> None:
    r = offline("manifest", "verify", model, "--oms", VECTOR, *args, cwd=tmp_path)
    assert r.code == 2 and r.out == "" and r.err.startswith("error[usage]: ") and r.err.count("\n") == 1, r.err


def test_trusted_root_selects_the_sigstore_instance(model: Path, claims: dict[str, str], trust_config: Path, tmp_path: Path) -> None:
    ident = ["--identity", claims["identity"], "--issuer", claims["issuer"]]
    # the same public-good root, from a file (here a client trust configuration, as model_signing reads it)
    r = manifest(model, "--oms", VECTOR, *ident, "--trusted-root", trust_config, cwd=tmp_path)
    assert r.code == 0 and json.loads(r.out)["facts"]["sigstore"]["trusted_root"] == str(trust_config)
    # another instance's root (Sigstore's staging, shipped in sigstore too): its Fulcio did not issue the certificate
    staging = Path(str(resources.files("sigstore._store").joinpath(STAGING, "trusted_root.json")))
    r = manifest(model, "--oms", VECTOR, *ident, "--trusted-root", staging, cwd=tmp_path)
    assert r.code == 1 and r.errors() == ["certificate-untrusted"], r.out
    # an unusable root file: one line, exit 2
    for bad in ["", "{}", '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": "x"}', "[1]"]:
        p = tmp_path / "root.json"
        p.write_text(bad)
        r = offline("manifest", "verify", model, "--oms", VECTOR, *ident, "--trusted-root", p, cwd=tmp_path)
        assert r.code == 2 and r.err.startswith("error[input-invalid]: ") and r.err.count("\n") == 1 and "Traceback" not in r.err, (bad, r.err)


@pytest.mark.parametrize(("damage", "code"), [("certificate", None), ("log-body", "transparency-log-invalid"),
                                             ("log-kind", "transparency-log-invalid"), ("no-log-entry", None)])
def test_a_malformed_sigstore_bundle_is_one_line_or_a_finding(damage: str, code: str | None, model: Path, claims: dict[str, str],
                                                             tmp_path: Path) -> None:
    def change(doc: dict) -> None:  # type: ignore[type-arg]
        vm = doc["verificationMaterial"]
        if damage == "certificate":
            vm["certificate"]["rawBytes"] = base64.b64encode(b"not a certificate").decode()
        elif damage == "log-body":
            vm["tlogEntries"][0]["canonicalizedBody"] = base64.b64encode(b"{not json").decode()
        elif damage == "log-kind":
            vm["tlogEntries"][0]["kindVersion"]["kind"] = "intoto"
        else:
            vm["tlogEntries"] = [{"logIndex": "1"}]

    r = offline("manifest", "verify", model, "--oms", edited(tmp_path, change), "--identity", claims["identity"], "--issuer", claims["issuer"],
                "--json", "-q", cwd=tmp_path)
    if code is None:
        assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith("error[manifest-invalid]: OMS bundle: "), r.err
    else:
        assert r.code == 1 and r.errors() == [code], r.out


def test_anchors_of_another_kind_never_pass(model: Path, claims: dict[str, str], tmp_path: Path) -> None:
    """A key does not verify a Sigstore bundle, and an identity does not verify a key-signed
    bundle or a manifest: each fails (exit 1) instead of passing on an anchor that checked nothing."""
    from manifest.signing import generate, write_keypair

    write_keypair(generate("ecdsa-p256"), tmp_path / "k.pem", tmp_path / "k.pub.pem")
    r = manifest(model, "--oms", VECTOR, "--key", tmp_path / "k.pub.pem", cwd=tmp_path)
    assert r.code == 1 and r.errors() == ["identity-mismatch"] and claims["identity"] in json.loads(r.out)["findings"][0]["message"]
    ident = ["--identity", claims["identity"], "--issuer", claims["issuer"]]
    r = manifest(model, "--oms", KEY_VECTOR, *ident, cwd=tmp_path)
    assert r.code == 1 and r.errors() == ["untrusted-key"], r.out
    r = manifest(model, "--oms", VECTOR, cwd=tmp_path)  # no anchor at all: the hint names the flags
    assert r.code == 1 and r.errors() == ["no-trust-anchor"] and "--identity" in json.loads(r.out)["findings"][-1]["hint"]
    assert offline("manifest", "create", model, "-q", cwd=tmp_path).code == 0
    r = manifest(model, *ident, cwd=tmp_path)
    assert r.code == 1 and r.errors() == ["untrusted-key"], r.out


@pytest.mark.parametrize("pair", [("stefanb@us.ibm.com", ""), ("", "https://sigstore.verify.ibm.com/oauth2"), ("stefanb@us.ibm.com",)])
def test_the_api_refuses_an_identity_without_its_issuer(pair: tuple[str, ...], model: Path) -> None:
    """sigstore's Identity policy skips the issuer check for an empty issuer: never passed one."""
    from manifest.errors import UsageError
    from manifest.oms import verify_oms
    from manifest.options import Options

    with pytest.raises(UsageError):
        verify_oms(model, VECTOR, options=Options(identities=[pair]))  # type: ignore[list-item]


def _string_fields(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_fields(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _string_fields(v, (*path, i))]
    return [path] if isinstance(node, str) else []


def test_a_flipped_bit_anywhere_in_the_bundle_never_passes_nor_crashes(model: Path, claims: dict[str, str], tmp_path: Path) -> None:
    """Three single-bit flips (fixed seed) in every string of the real bundle: the
    certificate, the envelope, each part of the log entry, the signed timestamp. Each one
    fails with a finding or is refused as malformed (ManifestError), never another
    exception; only a flip inside the signed timestamp may still pass (sigstore does not
    count a timestamp that does not verify, and the Rekor entry still dates the signature)."""
    import copy
    import random

    from manifest.errors import ManifestError
    from manifest.oms import verify_oms
    from manifest.options import Options

    doc = json.loads(VECTOR.read_text())
    opts = Options(identities=[(claims["identity"], claims["issuer"])], use_cache=False)
    rng = random.Random(15)
    seen: dict[str, int] = {}
    fields = _string_fields(doc)
    assert len(fields) > 20
    for path in fields:
        for _ in range(3):
            bad = copy.deepcopy(doc)
            parent = bad
            for k in path[:-1]:
                parent = parent[k]
            value = parent[path[-1]]
            try:
                raw, encode = bytearray(base64.b64decode(value, validate=True)), True
            except ValueError:
                raw, encode = bytearray(value.encode()), False
            if not raw:
                continue
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            parent[path[-1]] = base64.b64encode(bytes(raw)).decode() if encode else bytes(raw).decode("utf-8", "replace")
            sig = tmp_path / "flipped.json"
            sig.write_text(json.dumps(bad))
            try:
                report = verify_oms(model, sig, options=opts)
            except ManifestError as e:
                assert e.exit_status == 2 and "\n" not in e.one_line(), e.one_line()
                outcome = "refused"
            else:
                outcome = "pass" if report.ok else "fail"
                if report.ok:
                    assert "timestampVerificationData" in path, (path, report.codes())
            seen[outcome] = seen.get(outcome, 0) + 1
    assert seen.get("fail", 0) > 50 and seen.get("refused", 0) > 10, seen


def test_manifest_codes_lists_the_sigstore_codes_in_aligned_columns(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "manifest", "codes"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
    rows = {line.split()[0]: line for line in p.stdout.splitlines()}
    for code in ("identity-mismatch", "certificate-untrusted", "transparency-log-invalid", "timestamp-unverified"):
        assert code in rows
    columns = {line.index(line.split()[1], len(line.split()[0])) for line in rows.values()}
    assert len(columns) == 1, "the severity column moves with the code's length"
