"""Differential test: veritee against dcap-qvl on the same quotes and collateral (issue 11 item 12).

The inputs are the real TDX and SGX vectors, the synthetic quotes of ``tests.fakes.intel``,
and seeded, deterministic mutations of both: bytes flipped in and cut off quotes, bytes flipped
in every collateral field, and (synthetic, re-signed by the test TCB signer so the signatures
still hold) changed TCB levels, statuses, SVNs, QE identity masks and module identities. Each
case compares the verdict (verified or not, TCB status, advisory IDs). Every disagreement must be
one of :data:`KNOWN`, each with the reason veritee is right, Intel's QVL being the reference.

dcap-qvl is the ``compare`` extra (``make test`` installs it). Without it the module is skipped,
except in CI (``CI=true``), where a missing dcap-qvl is an error, so the comparison cannot
silently stop running.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
from tests.conftest import TESTVECTORS, manifest_cases
from tests.fakes.intel import (
    AT,
    KEYS,
    Spec,
    Synthetic,
    build,
    pck_chain,
    pem_chain,
    raw_sign,
    signed_under_root,
    tdx_level,
)

from veritee.collateral import Collateral
from veritee.errors import VeriteeError
from veritee.evidence import dcap, verify

try:
    import dcap_qvl
except ImportError:
    if os.environ.get("CI") == "true":
        raise ImportError(
            "dcap-qvl (the 'compare' extra) must be installed in CI: pip install -e '.[compare]'"
        ) from None
    pytest.skip("dcap-qvl (the 'compare' extra) is not installed", allow_module_level=True)

#: (verified, TCB status or None, sorted advisory IDs)
Verdict = tuple[bool, str | None, tuple[str, ...]]
REFUSED: Verdict = (False, None, ())

#: Disagreements with dcap-qvl where veritee follows Intel's QVL: case label -> (who refuses,
#: why veritee is right). "veritee": veritee refuses and dcap-qvl verifies; "dcap-qvl": the reverse.
KNOWN: dict[str, tuple[str, str]] = {
    "tcb-info-signed-by-pck-key": ("veritee", (
        "Intel QVL's TCBSigningChain::verify accepts only the Intel SGX TCB Signing certificate "
        "issued by the root; dcap-qvl takes any end-entity certificate under the root, so a PCK "
        "key could sign its own platform's TCB info (issue 11 item 2)."
    )),
    "duplicated-tcb-levels": ("veritee", (
        "Intel QVL refuses TCB info with two equal levels ('Detected duplicated TCB levels'); "
        "dcap-qvl sorts them and takes the first."
    )),
    "chain-root-corrupted": ("veritee", (
        "The last certificate of a PCK or collateral issuer chain is missing, unparsable or not the "
        "pinned root. Intel QVL takes the chain's root (CertificateChain::getRootCert), refuses "
        "the chain without one and compares it with the trusted root; dcap-qvl ignores the chain's "
        "root and uses its built-in trust anchor."
    )),
    "pck-crl-issuer-chain-corrupted": ("veritee", (
        "The PCK CRL issuer chain does not parse or link. Intel QVL verifies the PCK CRL with it "
        "(sgxAttestationVerifyPCKRevocationList: STATUS_SGX_CA_CERT_UNSUPPORTED_FORMAT); dcap-qvl "
        "does not read pck_crl_issuer_chain and checks the CRL against the quote's PCK chain."
    )),
    "qe-identity-status-invalid": ("veritee", (
        "A QE identity level's tcbStatus may only be UpToDate, OutOfDate or Revoked (Intel QVL's "
        "IdentityTcbLevel: 'TCB level [tcbStatus] JSON field has invalid value'); dcap-qvl "
        "accepts ConfigurationNeeded and OutOfDateConfigurationNeeded there."
    )),
    "malformed-collateral-field": ("veritee", (
        "A field of the TCB info or QE identity is missing, of the wrong type or malformed. Intel "
        "QVL parses every field of every level (TcbInfo, TcbLevel, EnclaveIdentityV2, "
        "IdentityTcbLevel: tcbDate, 16 components, the QE identity's version 2, ...) and refuses "
        "the collateral; dcap-qvl reads only the fields it uses and the levels up to the match."
    )),
    "qe-levels-out-of-order": ("status", (
        "QE identity levels listed out of order: Intel QVL orders them by ISVSVN (then tcbDate), "
        "highest first (IdentityTcbLevel::operator>), as veritee does; dcap-qvl takes the first "
        "level in JSON order that the QE meets, so both verify with different statuses."
    )),
    "debug-td": ("dcap-qvl", (
        "dcap-qvl refuses a debug TD or enclave by default; Intel QVL does not check the debug "
        "attribute, which is the relying party's policy: veritee verifies the quote, reports "
        "debug=true and the appraisal refuses it (`debug`) unless a policy allows it."
    )),
    "service-td": ("dcap-qvl", (
        "dcap-qvl refuses a TD report 1.5 bound to a service TD (MRSERVICETD not zero) by default; "
        "Intel QVL does not check it: veritee reports mr_service_td as a claim for the policy."
    )),
}  # fmt: skip


def _theirs(quote: bytes, doc: dict[str, Any], at: datetime, root_der: bytes | None) -> Verdict:
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    try:
        col = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(body))
        now = int(at.timestamp())
        r = (
            dcap_qvl.verify(quote, col, now)
            if root_der is None
            else dcap_qvl.verify_with_root_ca(quote, col, root_der, now)
        )
    except BaseException as e:  # dcap-qvl raises ValueError/RuntimeError, or pyo3's PanicException
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return REFUSED
    return True, str(r.status), tuple(sorted(r.advisory_ids))


def _ours(
    quote: bytes, collateral: Collateral, at: datetime, trust: dcap.DcapTrust | None
) -> Verdict:
    """Anything but a veritee error escaping is a crash: it fails the test."""
    try:
        v = verify(quote, collateral=collateral, at=at, trust=trust)
    except VeriteeError:
        return REFUSED
    return True, v.claims["tcb_status"], tuple(sorted(v.claims["advisory_ids"]))


@dataclass(frozen=True)
class Case:
    label: str
    quote: bytes
    doc: dict[str, Any]
    at: datetime
    trust: dcap.DcapTrust | None = None
    root_der: bytes | None = None
    #: What veritee is given instead of ``doc`` (the same collateral as separate PCS responses).
    bag: Collateral | None = None


def _check(case: Case) -> tuple[Verdict, Verdict]:
    ours = _ours(case.quote, case.bag or Collateral(documents=(case.doc,)), case.at, case.trust)
    theirs = _theirs(case.quote, case.doc, case.at, case.root_der)
    return ours, theirs


def _assert_agree(cases: list[Case]) -> None:
    unexplained = []
    for case in cases:
        ours, theirs = _check(case)
        if ours == theirs:
            continue
        who = KNOWN.get(case.label, ("", ""))[0]
        if (
            (who == "veritee" and ours == REFUSED and theirs[0])
            or (who == "dcap-qvl" and theirs == REFUSED and ours[0])
            or (who == "status" and ours[0] and theirs[0])
        ):
            continue
        unexplained.append(f"{case.label}: veritee {ours}, dcap-qvl {theirs}")
    assert not unexplained, "\n".join(unexplained)


# --- the real vectors -----------------------------------------------------------------------


def _real() -> list[Case]:
    out = []
    for c in manifest_cases():
        if c["format"] not in ("tdx", "sgx"):
            continue
        data = (TESTVECTORS / c["evidence"]).read_bytes()
        # dcap-qvl ignores bytes after the quote; compare on the quote (padding has its own rule).
        quote = data[: dcap.parse_quote(data).end]
        doc = json.loads((TESTVECTORS / c["collateral"][0]).read_text())
        out.append(
            Case(
                f"{c['evidence']}@{c['verify_at']}",
                quote,
                doc,
                datetime.fromisoformat(c["verify_at"]),
            )
        )
    return out


REAL = _real()


@pytest.mark.parametrize("case", REAL, ids=[c.label for c in REAL])
def test_real_vectors_same_verdict(case: Case) -> None:
    _assert_agree([case])


def _in_last_pem(data: bytes | str, offset: int) -> bool:
    """Whether ``offset`` lies in the last PEM certificate of ``data`` (a chain's root)."""
    raw = data.encode() if isinstance(data, str) else data
    begin = raw.rfind(b"-----BEGIN CERTIFICATE-----")
    return begin != -1 and begin <= offset < raw.find(b"-----END CERTIFICATE-----", begin) + 25


def _quote_mutations(base: Case, rng: random.Random, n: int) -> Iterator[Case]:
    q = base.quote
    for i in range(n):
        if i % 5 == 4:
            yield replace(base, label=f"{base.label}/cut", quote=q[: rng.randrange(0, len(q))])
            continue
        at = rng.randrange(len(q))
        flipped = bytearray(q)
        flipped[at] ^= rng.randrange(1, 256)
        label = "chain-root-corrupted" if _in_last_pem(q, at) else f"{base.label}/flip@{at}"
        yield replace(base, label=label, quote=bytes(flipped))


def _flip_text(rng: random.Random, text: str) -> tuple[str, int]:
    """One character of ``text`` replaced by another printable one (the field stays a string)."""
    i = rng.randrange(len(text))
    alphabet = '0123456789abcdefABCDEF{}[]":,. \n-=+/xyz'
    return text[:i] + rng.choice([c for c in alphabet if c != text[i]]) + text[i + 1 :], i


_FIELDS = (
    "tcb_info", "tcb_info_signature", "tcb_info_issuer_chain", "qe_identity", "qe_identity_signature",
    "qe_identity_issuer_chain", "pck_crl", "pck_crl_issuer_chain", "root_ca_crl",
)  # fmt: skip


def _collateral_mutations(base: Case, rng: random.Random, n: int) -> Iterator[Case]:
    for i in range(n):
        key = _FIELDS[i % len(_FIELDS)]
        doc = dict(base.doc)
        doc[key], at = _flip_text(rng, doc[key])
        if key.endswith("chain") and _in_last_pem(base.doc[key], at):
            label = "chain-root-corrupted"
        elif key == "pck_crl_issuer_chain":
            label = "pck-crl-issuer-chain-corrupted"
        else:
            label = f"{base.label}/{key}@{at}"
        yield replace(base, label=label, doc=doc)


def test_mutated_real_quotes_and_collateral() -> None:
    """Seeded byte flips and cuts of the real quotes, and flips in each collateral field."""
    rng = random.Random(11_12)
    cases = [m for base in REAL for m in _quote_mutations(base, rng, 40)]
    cases += [m for base in REAL for m in _collateral_mutations(base, rng, 27)]
    assert len(cases) >= 300
    _assert_agree(cases)


# --- synthetic quotes with collateral the test signs ------------------------------------------


def _case(label: str, syn: Synthetic, doc: dict[str, Any] | None = None) -> Case:
    return Case(label, syn.quote, doc or syn.doc, AT, syn.trust, syn.root_der)


def _resign(
    doc: dict[str, Any], info: dict[str, Any] | None = None, qe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``doc`` with TCB info / QE identity replaced and signed by the synthetic TCB signer."""
    out = dict(doc)
    for key, value in (("tcb_info", info), ("qe_identity", qe)):
        if value is not None:
            raw = json.dumps(value, separators=(",", ":"))
            out[key] = raw
            out[f"{key}_signature"] = raw_sign(KEYS["tcb"], raw.encode()).hex()
    return out


IDENTITY_STATUSES = ("UpToDate", "OutOfDate", "Revoked")
STATUSES = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
            "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked")  # fmt: skip


def _random_spec(rng: random.Random) -> Spec:
    kind = rng.choice(["tdx", "tdx", "sgx"])
    version = 3 if kind == "sgx" else rng.choice([4, 5])
    keys: set[tuple[Any, ...]] = set()
    levels = []
    for _ in range(rng.randrange(1, 5)):
        sgx, pce = rng.randrange(2, 7), rng.randrange(4, 13)
        td = (rng.randrange(2, 7), 0, rng.randrange(0, 4)) + (0,) * 13
        key = (sgx, pce, td) if kind == "tdx" else (sgx, pce)  # SGX levels have no TDX components
        if key in keys:  # duplicated levels are a case of their own
            continue
        keys.add(key)
        adv = [f"INTEL-SA-{rng.randrange(1, 9):05d}"] if rng.random() < 0.5 else None
        levels.append(tdx_level(sgx, pce, list(td), rng.choice(STATUSES), adv))
    qe_svns = sorted(rng.sample(range(1, 8), rng.randrange(1, 4)), reverse=True)
    qe_levels = tuple(
        {"tcb": {"isvsvn": s}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": rng.choice(IDENTITY_STATUSES),
         "advisoryIDs": [f"INTEL-SA-{s:05d}"]}
        for s in qe_svns
    )  # fmt: skip
    order = rng.random()
    if order < 0.5:
        rng.shuffle(levels)
    misc_mask = rng.choice(["FFFFFFFF", "00000000", "FEFFFFFF", "FFFFFFFE", "01000000"])
    return Spec(
        kind=kind, version=version, v15=version == 5 and rng.random() < 0.5, mr_service_td=bytes(48),
        platform_svn=rng.randrange(2, 7), pcesvn=rng.randrange(4, 13),
        tee_tcb_svn=bytes([rng.randrange(2, 7), 0, rng.randrange(0, 4)] + [0] * 13),
        levels=tuple(levels), qe_levels=qe_levels, qe_isvsvn=rng.randrange(1, 8),
        qe_misc_select=rng.choice([0, 1]), qe_identity={"miscselect": "00000000", "miscselectMask": misc_mask},
    )  # fmt: skip


def test_random_synthetic_quotes_same_verdict() -> None:
    """Seeded random TCB infos, QE identities and platform SVNs: every status, convergence and
    level order, MISCSELECT masks, QE levels, TDX v4/v5 and SGX."""
    rng = random.Random(2026_11)
    cases = [_case(f"random-{i}", build(_random_spec(rng))) for i in range(150)]
    _assert_agree(cases)


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document, containers included."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*path, i))
    if path:
        yield path


_SVN_KEYS = ("svn", "pcesvn", "isvsvn")


def _mutate_json(
    rng: random.Random, doc: dict[str, Any], identity: bool
) -> tuple[str, dict[str, Any]]:
    """One change to ``doc``: a value a signer may legitimately write (an SVN one up or down,
    another status, another evaluation number: both verifiers must agree) or a malformed field
    (deleted, of another type, a character changed, a list emptied or grown)."""
    out = json.loads(json.dumps(doc))
    path = rng.choice(list(_paths(out)))
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    key, value = path[-1], parent[path[-1]]
    in_module = "tdxModuleIdentities" in path
    if key in _SVN_KEYS and isinstance(value, int) and rng.random() < 0.7:
        parent[key] = min(255, value + 1) if rng.random() < 0.5 or value == 0 else value - 1
        return f"json-value:{path}", out
    if key == "tcbStatus" and rng.random() < 0.7:
        parent[key] = rng.choice(IDENTITY_STATUSES if identity or in_module else STATUSES)
        return f"json-value:{path}", out
    if key == "tcbEvaluationDataNumber" and rng.random() < 0.7:
        parent[key] = value + rng.choice([-1, 1])
        return f"json-value:{path}", out
    op = rng.randrange(4)
    if op == 0 and isinstance(parent, dict):
        del parent[key]
    elif op == 1:
        parent[key] = rng.choice([None, "x", 7, [], {}, True])
    elif op == 2 and isinstance(value, str) and value:
        i = rng.randrange(len(value))
        parent[key] = value[:i] + rng.choice("0F9aZ-:T ") + value[i + 1 :]
    elif op == 3 and isinstance(value, list):
        parent[key] = rng.choice([[], value[:1], value + value[-1:]])
    elif isinstance(value, int) and not isinstance(value, bool):
        parent[key] = rng.choice([value + 1, -1, 256, 65536, str(value)])
    else:
        parent[key] = None
    return "malformed-collateral-field", out


def test_mutated_collateral_fields_same_verdict() -> None:
    """Seeded changes to the fields of synthetic TCB infos (SGX, TDX, TDX with module identities)
    and QE identities, re-signed by the test TCB signer so that only the field decides."""
    ident = _module_identity([(3, "UpToDate"), (1, "OutOfDate")])
    bases = [build(Spec()), build(Spec(kind="sgx", version=3)), build(Spec(platform_svn=4, qe_isvsvn=3)),
             build(Spec(tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,)))]  # fmt: skip
    rng = random.Random(11_122)
    cases = []
    for _ in range(200):
        syn = rng.choice(bases)
        which = rng.choice(["tcb_info", "qe_identity"])
        label, changed = _mutate_json(
            rng, json.loads(syn.doc[which]), identity=which == "qe_identity"
        )
        doc = _resign(syn.doc, **{"info" if which == "tcb_info" else "qe": changed})
        cases.append(_case(label, syn, doc))
    _assert_agree(cases)


def _as_pcs_responses(doc: dict[str, Any]) -> Collateral:
    """``doc`` as what ``veritee collateral fetch`` reads from Intel PCS: the TCB info and QE
    identity responses (raw member text kept), the issuer chains' certificates and the CRLs."""
    blobs = [
        ("tcb.json", ('{"tcbInfo":' + doc["tcb_info"] + ',"signature":"' + doc["tcb_info_signature"] + '"}').encode()),
        ("qe.json", ('{"enclaveIdentity":' + doc["qe_identity"] + ',"signature":"' + doc["qe_identity_signature"] + '"}').encode()),
        ("tcb_chain.pem", doc["tcb_info_issuer_chain"].encode()),
        ("pck_crl_chain.pem", doc["pck_crl_issuer_chain"].encode()),
        ("pck.crl", bytes.fromhex(doc["pck_crl"])),
        ("root.crl", bytes.fromhex(doc["root_ca_crl"])),
    ]  # fmt: skip
    return Collateral.from_blobs(blobs)


def test_pcs_response_path_same_verdict() -> None:
    """The same collateral given to veritee as separate PCS responses (the bag path) and to
    dcap-qvl as one document: the real TDX/SGX sets and seeded random synthetic ones."""
    rng = random.Random(11_2)
    cases = [replace(c, label=f"{c.label}/pcs", bag=_as_pcs_responses(c.doc)) for c in REAL]
    for i in range(40):
        syn = build(_random_spec(rng))
        cases.append(_case(f"random-pcs-{i}", syn, syn.doc))
        cases[-1] = replace(cases[-1], bag=_as_pcs_responses(syn.doc))
    assert any(_check(c)[0][0] for c in cases[: len(REAL)])  # some real set verifies on this path
    _assert_agree(cases)


def _module_identity(levels: list[tuple[int, str]]) -> dict[str, Any]:
    return {"id": "TDX_03", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
            "tcbLevels": [{"tcb": {"isvsvn": n}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": s}
                          for n, s in levels]}  # fmt: skip


def _explicit() -> list[Case]:
    """The specs of the original comparison, module identities, and each known disagreement."""
    ident = _module_identity([(3, "UpToDate"), (1, "OutOfDate")])
    specs: dict[str, Spec] = {
        "up-to-date": Spec(),
        "v5": Spec(version=5, v15=False),
        "v5-td15": Spec(version=5, v15=True, mr_service_td=bytes(48)),
        "service-td": Spec(version=5, v15=True),
        "sgx": Spec(kind="sgx", version=3),
        "platform-out-of-date": Spec(platform_svn=4),
        "no-level": Spec(platform_svn=2),
        "qe-out-of-date": Spec(qe_isvsvn=3),
        "module-out-of-date": Spec(
            tee_tcb_svn=bytes([2, 3, 2] + [0] * 13), module_identities=(ident,)
        ),
        "module-up-to-date": Spec(
            tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(ident,)
        ),
        "pck-revoked": Spec(pck_revoked=(3,)),
        "pck-ca-revoked": Spec(root_revoked=(2,)),
        "debug-td": Spec(debug=True),
        "qe-levels-out-of-order": Spec(qe_levels=tuple(reversed(Spec().qe_levels))),
        "qe-identity-status-invalid": Spec(
            qe_levels=(
                {
                    "tcb": {"isvsvn": 4},
                    "tcbDate": "2024-03-13T00:00:00Z",
                    "tcbStatus": "ConfigurationNeeded",
                },
            )
        ),
    }
    for status in STATUSES:
        qe = (
            {
                "tcb": {"isvsvn": 4},
                "tcbDate": "2024-03-13T00:00:00Z",
                "tcbStatus": status,
                "advisoryIDs": ["INTEL-SA-00009"],
            },
        )
        label = (
            "qe-identity-status-invalid"
            if status in ("ConfigurationNeeded", "OutOfDateConfigurationNeeded")
            else f"qe-{status}"
        )
        specs.setdefault(label, Spec(qe_levels=qe))
    for status in STATUSES:
        module = _module_identity([(3, status), (1, "OutOfDate")])
        specs[f"module-{status}"] = Spec(
            tee_tcb_svn=bytes([3, 3, 2] + [0] * 13), module_identities=(module,)
        )
    cases = [_case(label, build(spec)) for label, spec in specs.items()]
    syn = build(Spec(platform_svn=4))
    info = json.loads(syn.doc["tcb_info"])
    info["tcbLevels"].append(dict(info["tcbLevels"][0], tcbStatus="Revoked"))
    cases.append(_case("duplicated-tcb-levels", syn, _resign(syn.doc, info=info)))
    info = json.loads(syn.doc["tcb_info"])
    info["tcbLevels"][1]["tcbDate"] = "not a date"  # a level after the one the platform meets
    cases.append(_case("malformed-collateral-field", syn, _resign(syn.doc, info=info)))
    chain = pem_chain(*pck_chain(syn))
    by_pck = dict(syn.doc, tcb_info_issuer_chain=chain, qe_identity_issuer_chain=chain,
                  tcb_info_signature=raw_sign(KEYS["pck"], syn.doc["tcb_info"].encode()).hex(),
                  qe_identity_signature=raw_sign(KEYS["pck"], syn.doc["qe_identity"].encode()).hex())  # fmt: skip
    cases.append(_case("tcb-info-signed-by-pck-key", syn, by_pck))
    as_ca = signed_under_root(build(), "Intel SGX TCB Signing", ca=True)
    cases.append(_case("tcb-signer-is-a-ca", as_ca))
    return cases


EXPLICIT = _explicit()


@pytest.mark.parametrize("case", EXPLICIT, ids=[c.label for c in EXPLICIT])
def test_synthetic_same_verdict(case: Case) -> None:
    _assert_agree([case])


def test_known_disagreements_still_disagree() -> None:
    """Each known disagreement has a case and still is one (the list never outlives its reason)."""
    labelled = {c.label: c for c in EXPLICIT}
    labelled["chain-root-corrupted"] = next(
        m
        for m in _quote_mutations(REAL[0], random.Random(1), 200)
        if m.label == "chain-root-corrupted"
    )
    real = REAL[0]
    root_only = real.doc["pck_crl_issuer_chain"][
        real.doc["pck_crl_issuer_chain"].rfind("-----BEGIN") :
    ]
    labelled["pck-crl-issuer-chain-corrupted"] = replace(
        real, doc={**real.doc, "pck_crl_issuer_chain": root_only}
    )
    for label, (who, _) in KNOWN.items():
        ours, theirs = _check(labelled[label])
        if who == "status":
            still = ours[0] and theirs[0] and ours != theirs
        else:
            refused, verified = (ours, theirs) if who == "veritee" else (theirs, ours)
            still = refused == REFUSED and verified[0]
        assert still, f"{label} no longer disagrees: veritee {ours}, dcap-qvl {theirs}"
