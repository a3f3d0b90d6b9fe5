"""How fresh the service's collateral is: one row per dated item of what it has loaded.

Read from the :class:`~veritee.collateral.Collateral` the service decides with
(:meth:`veritee.service.context.ServiceContext.collateral`), never from the network: per vendor
and FMSPC (Intel TCB info), QE identity, CRL issuer or AMD product (ARK/ASK/VCEK/VLEK names),
when the item was issued and when its issuer promises the next one (``nextUpdate``; for a
certificate, ``notAfter``). An item past that time is *stale*: the verifiers refuse evidence
that rests on it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.collateral import Collateral
from veritee.errors import VeriteeError
from veritee.evidence.dcap import _der_or_hex
from veritee.evidence.dcap_tcb import collateral_time

__all__ = ["SOON", "Item", "items"]

#: Items with less than this left are flagged (amber) before they go stale (red).
SOON = dt.timedelta(days=7)


@dataclass(frozen=True)
class Item:
    vendor: str
    #: FMSPC, QE identity, AMD product (Milan, Genoa, ...), or the issuer's name.
    subject: str
    #: ``TCB info``, ``QE identity``, ``PCK CRL``, ``root CA CRL``, ``CRL``, ``certificate``.
    what: str
    issued: dt.datetime | None
    next_update: dt.datetime | None
    source: str = ""

    def left(self, now: dt.datetime) -> dt.timedelta | None:
        return None if self.next_update is None else self.next_update - now

    def state(self, now: dt.datetime) -> str:
        """``stale`` (past its next update), ``soon`` (within :data:`SOON`) or ``fresh``."""
        left = self.left(now)
        if left is None or left <= dt.timedelta(0):
            return "stale"
        return "soon" if left < SOON else "fresh"


def _cn(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _vendor(name: x509.Name) -> str:
    text = name.rfc4514_string()
    if "Advanced Micro Devices" in text or "AMD" in text:
        return "AMD"
    if "Intel" in text:
        return "Intel"
    orgs = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(orgs[0].value) if orgs else "other"


def _amd_product(cn: str) -> str:
    """``ARK-Milan`` / ``SEV-Milan`` / ``SEV-VLEK-Genoa`` -> the product name."""
    return cn.rsplit("-", 1)[-1] if "-" in cn else cn


def _crl_item(crl: x509.CertificateRevocationList, what: str, source: str) -> Item:
    vendor, cn = _vendor(crl.issuer), _cn(crl.issuer)
    subject = _amd_product(cn) if vendor == "AMD" else cn
    return Item(vendor, subject, what, crl.last_update_utc, crl.next_update_utc, source)


def _json_item(doc: Any, what: str, source: str) -> Item | None:
    if not isinstance(doc, dict):
        return None
    try:
        issued = collateral_time(doc.get("issueDate"), f"{what}.issueDate")
        nxt = collateral_time(doc.get("nextUpdate"), f"{what}.nextUpdate")
    except VeriteeError:
        issued, nxt = None, None
    ident = str(doc.get("id", "SGX" if "fmspc" in doc else "QE"))
    subject = f"{ident} FMSPC {str(doc.get('fmspc', '?')).upper()}" if "fmspc" in doc else ident
    return Item("Intel", subject, what, issued, nxt, source)


def _parsed(text: Any) -> Any:
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text) if isinstance(text, str | bytes) else None
    except ValueError:
        return None


def items(collateral: Collateral) -> list[Item]:
    """Every dated item of ``collateral`` (the relying party's own), by vendor and subject."""
    out: list[Item] = []
    seen_crls: set[bytes] = set()
    for doc in collateral.documents:
        source = str(doc.get("_source", ""))
        if isinstance(doc.get("tcb_info"), str):  # the test-vector layout: one whole DCAP set
            for key, what in (("tcb_info", "TCB info"), ("qe_identity", "QE identity")):
                item = _json_item(_parsed(doc.get(key)), what, source)
                if item is not None:
                    out.append(item)
            for key, what in (("pck_crl", "PCK CRL"), ("root_ca_crl", "root CA CRL")):
                try:
                    der = _der_or_hex(doc.get(key), key)
                    crl = x509.load_der_x509_crl(der)
                except (VeriteeError, ValueError):
                    continue
                seen_crls.add(der)
                out.append(_crl_item(crl, what, source))
        elif "tcbInfo" in doc:
            item = _json_item(_parsed(doc.get("tcbInfo")), "TCB info", source)
            if item is not None:
                out.append(item)
        elif "enclaveIdentity" in doc:
            item = _json_item(_parsed(doc.get("enclaveIdentity")), "QE identity", source)
            if item is not None:
                out.append(item)
    for crl in collateral.crls:
        if crl.public_bytes(Encoding.DER) in seen_crls:
            continue
        out.append(_crl_item(crl, "CRL", ""))
    for cert in collateral.certificates:
        vendor = _vendor(cert.issuer)
        # AMD: the product of the chain (the issuer's name: ARK-Milan, SEV-Milan); else the name.
        subject = _amd_product(_cn(cert.issuer)) if vendor == "AMD" else _cn(cert.subject)
        out.append(Item(vendor, subject, f"certificate {_cn(cert.subject)}",
                        cert.not_valid_before_utc, cert.not_valid_after_utc))  # fmt: skip
    out.sort(key=lambda i: (i.vendor, i.subject, i.what))
    return out
