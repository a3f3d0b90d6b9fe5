"""Collateral: vendor material a verifier needs besides the evidence itself, kept apart by who
supplied it.

A :class:`Collateral` is an immutable set of X.509 certificates, CRLs, Intel DCAP JSON documents
and bare public keys. It is built from files and folders given in any order
(:meth:`Collateral.from_paths`) or from bytes (:meth:`Collateral.from_blobs`); each verifier picks
out what it needs. Reading files happens here, at the edge; the verifiers only ever see the parsed
set.

Provenance (issue 11 item 3; the way cryptography's ``verify(leaf, untrusted_intermediates)`` and
sigstore's ``TrustedRoot`` keep trust apart from what the attester carries). Trust a priori lives
in the verifiers' pinned vendor roots (``AmdTrust``, ``DcapTrust``, the TPM and NVIDIA pins). Of
the rest:

* **the relying party's own endorsements** (``certificates``, ``crls``, ``documents``,
  ``public_keys``): its collateral folder, ``veritee verify --collateral``, an operator's dry run.
  Only these may name a platform key, a relying party's CA, or be preferred as TCB info, QE
  identity and CRLs. Where several fit, the newest wins (highest ``tcbEvaluationDataNumber``,
  newest CRL ``thisUpdate``).
* **the attester's certificates** (``untrusted``): the PCK chain or SNP certificates sent with
  the evidence. Candidates for a path up to a pinned root, never a root, key, CRL or TCB info.
* **the attester's endorsements** (``attester``): TCB info, QE identity and CRLs sent with the
  evidence. Used only where the relying party admits them (the service's setting
  ``accept_attester_collateral``, off by default), and then ranked below the relying party's own:
  the relying party's set for an FMSPC always wins.

The relying party's endorsements are never rolled back: :attr:`Collateral.marks` carries the
newest TCB info, QE identity and CRLs it accepted before (:mod:`veritee.collateral.marks`,
recorded by the service in its database); a set older than those does not decide.

:meth:`Collateral.with_attester` is the one way attester material enters; :meth:`joined` only
joins two sets of the same provenance.

Accepted inputs: certificates and CRLs as DER or PEM (a PEM file may hold several of either),
public keys as PEM ``PUBLIC KEY`` blocks,
and JSON documents: DCAP collateral in the layout of the test vectors (``tcb_info``,
``qe_identity``, ``pck_crl``, ... keys), or Intel PCS responses (``{"tcbInfo": ..., "signature"}``,
``{"enclaveIdentity": ..., "signature"}``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

from veritee import certs as _certs
from veritee.collateral.marks import Marks
from veritee.errors import MalformedError, OversizedError, UsageError

__all__ = ["MAX_COLLATERAL_FILE_BYTES", "Collateral"]

#: No single collateral file is larger than this (a PCK CRL is the largest, ~50 KiB).
MAX_COLLATERAL_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Collateral:
    """Certificates, CRLs, JSON documents and keys supplied to a verifier, by provenance (module
    docstring): the relying party's own, the attester's certificates, the attester's endorsements."""

    certificates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    documents: tuple[dict[str, Any], ...] = ()
    sources: tuple[str, ...] = field(default=(), compare=False)
    #: Bare public keys (PEM ``PUBLIC KEY``), e.g. an Arm CCA platform attestation key.
    public_keys: tuple[PublicKeyTypes, ...] = ()
    #: The attester's certificates: path candidates up to a pinned root, never trusted alone.
    untrusted: tuple[x509.Certificate, ...] = ()
    #: The attester's endorsements (CRLs, DCAP documents), admitted by the relying party;
    #: ranked below its own. Never holds keys, nor a further ``attester``.
    attester: Collateral | None = None
    #: The relying party's high-water marks (:mod:`veritee.collateral.marks`): a DCAP set older
    #: than one does not decide (``collateral_rolled_back``). None: nothing recorded.
    marks: Marks | None = field(default=None, compare=False)

    @classmethod
    def empty(cls) -> Collateral:
        return cls()

    @property
    def path_candidates(self) -> tuple[x509.Certificate, ...]:
        """Every certificate that may sit on a path to a pinned root, the relying party's first."""
        extra = self.attester.certificates if self.attester is not None else ()
        return self.certificates + self.untrusted + extra

    @property
    def crl_candidates(self) -> tuple[x509.CertificateRevocationList, ...]:
        """The relying party's CRLs, then the admitted attester's."""
        return self.crls + (self.attester.crls if self.attester is not None else ())

    def joined(self, other: Collateral) -> Collateral:
        """Both sets together, each part keeping its provenance (``other`` as trusted as self)."""
        attester = self.attester
        if other.attester is not None:
            attester = other.attester if attester is None else attester.joined(other.attester)
        return Collateral(
            self.certificates + other.certificates,
            self.crls + other.crls,
            self.documents + other.documents,
            self.sources + other.sources,
            self.public_keys + other.public_keys,
            self.untrusted + other.untrusted,
            attester,
            self.marks
            if other.marks is None
            else other.marks
            if self.marks is None
            else self.marks.joined(other.marks),
        )

    def with_marks(self, marks: Marks | None) -> Collateral:
        """This set, judged against the relying party's high-water ``marks``."""
        return replace(self, marks=marks)

    def with_untrusted(self, certificates: Iterable[x509.Certificate]) -> Collateral:
        """This set plus certificates the attester carried, as path candidates only."""
        return replace(self, untrusted=self.untrusted + tuple(certificates))

    def with_attester(
        self, sent: Collateral, *, admit_endorsements: bool = False
    ) -> tuple[Collateral, tuple[str, ...]]:
        """This (relying party's) set plus what an attester ``sent``, and what was left out.

        Its certificates become path candidates (:attr:`untrusted`). Its CRLs and DCAP documents
        become :attr:`attester` endorsements when ``admit_endorsements``, else they are left
        out; its public keys are always left out (a key the attester names is no root of
        trust). The second value names what was left out, for a warning.
        """
        left_out: list[str] = []
        if sent.public_keys:
            left_out.append(f"{len(sent.public_keys)} public key(s)")
        out = self.with_untrusted(sent.path_candidates)
        endorsements = Collateral(
            crls=sent.crl_candidates,
            documents=sent.documents
            + (sent.attester.documents if sent.attester is not None else ()),
            sources=sent.sources,
        )
        if endorsements.crls or endorsements.documents:
            if admit_endorsements:
                joined = endorsements if out.attester is None else out.attester.joined(endorsements)
                out = replace(out, attester=joined)
            else:
                if endorsements.crls:
                    left_out.append(f"{len(endorsements.crls)} CRL(s)")
                if endorsements.documents:
                    left_out.append(f"{len(endorsements.documents)} collateral document(s)")
        return out, tuple(left_out)

    @classmethod
    def from_blobs(cls, blobs: Iterable[tuple[str, bytes]]) -> Collateral:
        """Build from ``(name, bytes)`` pairs; ``name`` is only used in error messages."""
        certs: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        docs: list[dict[str, Any]] = []
        keys: list[PublicKeyTypes] = []
        names: list[str] = []
        for name, data in blobs:
            if len(data) > MAX_COLLATERAL_FILE_BYTES:
                raise OversizedError(
                    f"collateral {name} is larger than {MAX_COLLATERAL_FILE_BYTES}"
                )
            c, r, d, k = _classify(name, data)
            certs += c
            crls += r
            docs += d
            keys += k
            names.append(name)
        return cls(tuple(certs), tuple(crls), tuple(docs), tuple(names), tuple(keys))

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> Collateral:
        """Read files and (recursively) folders; unknown file kinds in folders are skipped."""
        blobs: list[tuple[str, bytes]] = []
        for p in paths:
            path = Path(p)
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    if child.is_file() and _looks_like_collateral(child):
                        blobs.append((str(child), _read(child)))
            elif path.is_file():
                blobs.append((str(path), _read(path)))
            else:
                raise UsageError(f"collateral path not found: {path}")
        return cls.from_blobs(blobs)


_SUFFIXES = {".pem", ".der", ".crt", ".cer", ".crl", ".json", ".pub"}


def _looks_like_collateral(path: Path) -> bool:
    return path.suffix.lower() in _SUFFIXES


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_COLLATERAL_FILE_BYTES:
        raise OversizedError(
            f"collateral file {path} is {size} bytes; limit {MAX_COLLATERAL_FILE_BYTES}"
        )
    return path.read_bytes()


def _classify(
    name: str, data: bytes
) -> tuple[
    list[x509.Certificate],
    list[x509.CertificateRevocationList],
    list[dict[str, Any]],
    list[PublicKeyTypes],
]:
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        try:
            doc = json.loads(data)
        except RecursionError:
            raise MalformedError(f"collateral {name} is nested too deeply", field=name) from None
        except (ValueError, UnicodeDecodeError) as e:
            raise MalformedError(f"collateral {name} is not valid JSON: {e}", field=name) from None
        if not isinstance(doc, dict):
            raise MalformedError(f"collateral {name}: JSON must be an object", field=name)
        doc.setdefault("_source", name)
        # The exact text, so signatures over raw JSON (Intel TCB info, QE identity) are checked
        # over the bytes that were signed, not over a re-serialization.
        doc.setdefault("_raw", data.decode("utf-8", errors="replace"))
        return [], [], [doc], []
    if b"-----BEGIN" in data:
        certs: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        keys: list[PublicKeyTypes] = []
        try:
            if b"BEGIN CERTIFICATE" in data:
                certs = _certs.load_pem_certificates(data, name)
            for block in _pem_blocks(data, b"X509 CRL"):
                crls.append(_certs.load_pem_crl(block, name))
            for block in _pem_blocks(data, b"PUBLIC KEY"):
                keys.append(serialization.load_pem_public_key(block))
        except (ValueError, UnsupportedAlgorithm) as e:
            raise MalformedError(f"collateral {name}: bad PEM: {e}", field=name) from None
        except MalformedError as e:
            raise MalformedError(f"collateral {name}: {e.message}", field=name) from None
        if not certs and not crls and not keys:
            raise MalformedError(
                f"collateral {name}: no certificate, CRL or public key in PEM", field=name
            )
        return certs, crls, [], keys
    # DER: a certificate or a CRL (veritee.certs checks every part of either). AMD VCEKs carry
    # serial number 0, which cryptography warns about; the VCEK is still what AMD issues, so the
    # warning is silenced here only.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(data)
    except _certs.PARSE_ERRORS:
        pass
    else:
        return [_certs.checked_certificate(cert, name)], [], [], []
    try:
        crl = x509.load_der_x509_crl(data)
    except _certs.PARSE_ERRORS:
        raise MalformedError(
            f"collateral {name} is neither a certificate, a CRL nor a JSON document", field=name
        ) from None
    return [], [_certs.checked_crl(crl, name)], [], []


def _pem_blocks(data: bytes, label: bytes) -> list[bytes]:
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    out: list[bytes] = []
    pos = 0
    while (i := data.find(begin, pos)) != -1:
        j = data.find(end, i)
        if j == -1:
            raise ValueError(f"unterminated PEM block {label.decode()}")
        out.append(data[i : j + len(end)] + b"\n")
        pos = j + len(end)
    return out
