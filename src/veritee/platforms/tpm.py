"""TPM 2.0 attester: quotes, enrollment and sealing through tpm2-tss (tpm2-pytss bindings).

The TPM is reached over a TCTI, spelled as tpm2-tools spell it: ``device:/dev/tpmrm0`` (the
default: the kernel's resource manager), ``swtpm:host=127.0.0.1,port=2321``,
``mssim:host=...,port=...`` or ``tabrmd:``. Keys, all created deterministically from templates
so nothing secret is stored on disk:

* the **EK**: the TCG default template (EK Credential Profile 2.x, RSA 2048, else ECC P-256) in
  the endorsement hierarchy; it matches the EK certificate at NV 0x01C00002 (0x01C0000A for ECC),
  whose chain intermediates are read from NV 0x01C00100.. where the manufacturer put them;
* the **AK**: a restricted ECDSA P-256 signing key (fixedTPM, fixedParent, sensitiveDataOrigin,
  userWithAuth), a primary key of the endorsement hierarchy as go-tpm-tools makes GCE's AK;
* the **SRK**: the TCG storage template (ECC P-256, AES-128-CFB) in the owner hierarchy.

Evidence is go-tpm-tools' ``attest.Attestation`` protobuf (what :mod:`veritee.evidence.tpm` reads):
the AK's TPMT_PUBLIC, one quote per allocated PCR bank (all 24 PCRs, ``extraData`` = the 64-byte
report data), the TCG boot event log when readable, and the AK certificate the Certifier
Service issued at enrollment (Keylime/GCE style: :func:`veritee.sdk.tpm_enroll.enroll`).

Sealing (:meth:`TpmPlatform.sealing_key`): 32 random bytes sealed as a keyed-hash object under
the SRK whose authPolicy is TPM2_PolicyPCR over the SHA-256 PCRs in ``seal_pcrs`` (0-7 by
default: firmware and boot loader) at sealing time. The sealed blob lives in ``state_dir``
(only this TPM can load it; only with those PCR values can it be unsealed); the key is that
secret through HKDF with the profile and the caller's context.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee import tpm2
from veritee.errors import PlatformError, SealingError, UsageError
from veritee.platforms._profile import settle_profile
from veritee.platforms.base import SealingMode
from veritee.profiles import Profile

__all__ = [
    "AK_TEMPLATE_ATTRIBUTES",
    "COUNTER_FIRST",
    "DEFAULT_EVENT_LOG",
    "DEFAULT_TCTI",
    "TpmCounter",
    "TpmPlatform",
    "encode_attestation",
    "parse_tcti",
]

DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
EK_CERT_RSA, EK_CERT_ECC = 0x01C00002, 0x01C0000A
EK_CHAIN_FIRST, EK_CHAIN_LAST = 0x01C00100, 0x01C001FF
MAX_EVENT_LOG = 1024 * 1024
#: Owner NV range for veritee's monotonic counters (TCG handle registry: 0x01000000-0x013FFFFF).
COUNTER_FIRST, COUNTER_SPAN = 0x01000000, 0x00400000
PCR_COUNT = 24
DEFAULT_SEAL_PCRS = tuple(range(8))
AK_TEMPLATE_ATTRIBUTES = (tpm2.ATTR_FIXED_TPM | tpm2.ATTR_FIXED_PARENT | tpm2.ATTR_SENSITIVE_DATA_ORIGIN
                          | tpm2.ATTR_USER_WITH_AUTH | tpm2.ATTR_RESTRICTED | tpm2.ATTR_SIGN)  # fmt: skip
_TCTI_RE = re.compile(r"(device|swtpm|mssim|tabrmd)(:[A-Za-z0-9_./=,:-]{0,200})?")
_BANKS = {
    "sha1": tpm2.ALG_SHA1,
    "sha256": tpm2.ALG_SHA256,
    "sha384": tpm2.ALG_SHA384,
    "sha512": tpm2.ALG_SHA512,
}


def parse_tcti(tcti: str) -> str:
    """Check a TCTI string (``name:config``); returns it. Raises :class:`UsageError`."""
    if not isinstance(tcti, str) or _TCTI_RE.fullmatch(tcti) is None:
        raise UsageError(
            f"TCTI {tcti!r} is not one of device:PATH, swtpm:host=H,port=P, mssim:host=H,port=P, tabrmd:",
            code="usage",
        )
    return tcti


def _tss() -> Any:
    """The tpm2-pytss module, imported on first use (quiet unless TSS2_LOG asks otherwise)."""
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    try:
        import tpm2_pytss
    except ImportError as e:
        raise PlatformError(
            "the TPM driver needs tpm2-pytss (pip install 'veritee[tpm]'; Debian: libtss2-dev): "
            f"{e}",
            code="platform_driver_missing",
        ) from None
    return tpm2_pytss


# --- go-tpm-tools' Attestation protobuf ------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def encode_attestation(
    *,
    ak_pub: bytes,
    quotes: list[tuple[bytes, bytes, int, dict[int, bytes]]],
    event_log: bytes = b"",
    ak_cert: bytes | None = None,
    intermediates: tuple[bytes, ...] = (),
) -> bytes:
    """``attest.Attestation``: 1 ak_pub, 2 quotes (1 TPMS_ATTEST, 2 TPMT_SIGNATURE, 3 PCRs
    {1 hash, 2 map<uint32, bytes>}), 3 event_log, 6 ak_cert, 7 intermediate_certs."""
    out = _field(1, ak_pub)
    for attest, signature, bank, pcrs in quotes:
        entries = b"".join(_field(2, _field(1, i) + _field(2, v)) for i, v in sorted(pcrs.items()))
        out += _field(
            2, _field(1, attest) + _field(2, signature) + _field(3, _field(1, bank) + entries)
        )
    if event_log:
        out += _field(3, event_log)
    if ak_cert is not None:
        out += _field(6, ak_cert)
    for der in intermediates:
        out += _field(7, der)
    return out


# --- the driver ----------------------------------------------------------------------------


def _tss_error(e: Exception, what: str) -> PlatformError:
    text = str(e)
    if "Connection refused" in text or "tcti" in text.lower() or "No such file" in text:
        return PlatformError(f"cannot reach the TPM for {what}: {text}", code="platform_absent")
    return PlatformError(f"the TPM refused {what}: {text}", code="platform_refused")


class TpmCounter:
    """A TPM NV counter (TPM_NT_COUNTER): TPM2_NV_Increment only ever raises it, and a counter
    index defined again starts no lower than the highest value any counter of this TPM had
    (TPM 2.0 Part 1, 37.2.3.2.3), so the host cannot roll it back."""

    def __init__(self, platform: TpmPlatform, index: int) -> None:
        self.platform, self.index = platform, index

    def read(self) -> int:
        """The value; 0 for a counter never incremented."""
        t = self.platform._t
        with self.platform._esapi("reading a TPM counter") as e:
            nv = e.tr_from_tpmpublic(self.index)
            try:
                return int.from_bytes(bytes(e.nv_read(nv, 8, 0)), "big")
            except t.TSS2_Exception as err:
                if err.rc & 0xFFF == 0x14A:  # TPM_RC_NV_UNINITIALIZED: never incremented
                    return 0
                raise

    def increment(self) -> int:
        with self.platform._esapi("incrementing a TPM counter") as e:
            nv = e.tr_from_tpmpublic(self.index)
            e.nv_increment(nv)
            return int.from_bytes(bytes(e.nv_read(nv, 8, 0)), "big")


class TpmPlatform:
    """The TPM attester (format ``tpm``)."""

    name = "tpm"

    def __init__(
        self,
        *,
        tcti: str = DEFAULT_TCTI,
        state_dir: Path,
        profile: Profile | None = None,
        seal_pcrs: tuple[int, ...] = DEFAULT_SEAL_PCRS,
        event_log: Path | None = DEFAULT_EVENT_LOG,
    ) -> None:
        self.tcti = parse_tcti(tcti)
        if self.tcti.split(":", 1)[0] == "device":
            device = Path(self.tcti.partition(":")[2] or "/dev/tpmrm0")
            if not device.exists():
                raise PlatformError(f"no TPM at {device}", code="platform_absent")
        if not seal_pcrs or any(not 0 <= i < PCR_COUNT for i in seal_pcrs):
            raise UsageError("seal_pcrs must name PCRs 0..23")
        self.state_dir = Path(state_dir)
        self.seal_pcrs = tuple(sorted(set(seal_pcrs)))
        self.event_log_path = event_log
        self._requested = profile
        self._t = _tss()

    @contextmanager
    def _esapi(self, what: str) -> Iterator[Any]:
        t = self._t
        try:
            ctx = t.ESAPI(self.tcti)
        except Exception as e:
            raise _tss_error(e, what) from None
        try:
            yield ctx
        except t.TSS2_Exception as e:
            raise _tss_error(e, what) from None
        finally:
            ctx.close()

    # --- keys ------------------------------------------------------------------------------
    def _ak(self, e: Any) -> tuple[Any, bytes]:
        t = self._t
        template = t.TPM2B_PUBLIC.parse(
            "ecc256:ecdsa-sha256:null", objectAttributes=AK_TEMPLATE_ATTRIBUTES, nameAlg="sha256"
        )
        handle, public, *_ = e.create_primary(
            t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.ENDORSEMENT
        )
        return handle, bytes(public.publicArea.marshal())

    def _ek(self, e: Any) -> tuple[Any, bytes, bytes | None]:
        """(handle, TPMT_PUBLIC, EK certificate DER or None)."""
        t = self._t
        from tpm2_pytss.utils import NVReadEK, create_ek_template

        reader = NVReadEK(e)
        last: Exception | None = None
        for kind in ("EK-RSA2048", "EK-ECC256"):
            try:
                cert, template = create_ek_template(kind, reader)
            except (ValueError, t.TSS2_Exception) as err:
                last = err
                continue
            handle, public, *_ = e.create_primary(
                t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.ENDORSEMENT
            )
            return handle, bytes(public.publicArea.marshal()), (bytes(cert) if cert else None)
        raise PlatformError(f"no endorsement key could be created: {last}", code="platform_refused")

    def _ek_chain(self, e: Any) -> list[bytes]:
        """Certificates the manufacturer stored at NV 0x01C00100..0x01C001FF (may be none)."""
        t = self._t
        from tpm2_pytss.utils import NVReadEK

        _more, data = e.get_capability(t.TPM2_CAP.HANDLES, EK_CHAIN_FIRST, 256)
        reader = NVReadEK(e)
        out = []
        for handle in data.data.handles:
            if EK_CHAIN_FIRST <= int(handle) <= EK_CHAIN_LAST:
                out.append(bytes(reader(int(handle))))
        return out

    def enrollment_request(self) -> dict[str, Any]:
        """What the service needs to enroll this TPM: the EK certificate (and NV chain), the EK
        and AK public areas (TPMT_PUBLIC)."""
        with self._esapi("reading the EK and AK") as e:
            ek, ek_pub, cert = self._ek(e)
            e.flush_context(ek)
            ak, ak_pub = self._ak(e)
            e.flush_context(ak)
            chain = self._ek_chain(e)
        if cert is None:
            raise PlatformError("this TPM has no EK certificate in NV: it cannot be enrolled",
                                code="platform_refused")  # fmt: skip
        return {"ek_certificate": cert, "ek_chain": chain, "ek_public": ek_pub, "ak_public": ak_pub}

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential with the AK and the EK (EK authorized by PolicySecret on the
        endorsement hierarchy, the default EK policy)."""
        t = self._t
        with self._esapi("activating the enrollment credential") as e:
            ek, _, _ = self._ek(e)
            ak, _ = self._ak(e)
            session = e.start_auth_session(
                t.ESYS_TR.NONE, t.ESYS_TR.NONE, t.TPM2_SE.POLICY,
                t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.NULL), t.TPM2_ALG.SHA256,
            )  # fmt: skip
            try:
                e.policy_secret(t.ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
                secret = e.activate_credential(
                    ak, ek, t.TPM2B_ID_OBJECT(credential=credential_blob),
                    t.TPM2B_ENCRYPTED_SECRET(secret=encrypted_secret),
                    session1=t.ESYS_TR.PASSWORD, session2=session,
                )  # fmt: skip
            finally:
                e.flush_context(session)
                e.flush_context(ak)
                e.flush_context(ek)
        return bytes(secret)

    @functools.cached_property
    def ak_public(self) -> bytes:
        with self._esapi("reading the AK") as e:
            ak, pub = self._ak(e)
            e.flush_context(ak)
        return pub

    def _ak_cert_path(self) -> Path:
        return self.state_dir / f"tpm-ak-{hashlib.sha256(self.ak_public).hexdigest()[:16]}.der"

    @property
    def needs_enrollment(self) -> bool:
        """No AK certificate yet: ``Trust`` enrolls before it attests (:mod:`veritee.sdk.tpm_enroll`)."""
        return self.ak_certificate() is None

    def ak_certificate(self) -> bytes | None:
        path = self._ak_cert_path()
        return path.read_bytes() if path.is_file() else None

    def store_ak_certificate(self, der: bytes) -> None:
        """Keep the AK certificate the service issued; it must certify this TPM's AK."""
        cert = x509.load_der_x509_certificate(der)
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if tpm2.parse_public(self.ak_public).spki_der() != spki:
            raise UsageError("the AK certificate certifies another key")
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._ak_cert_path().with_suffix(".tmp")
        tmp.write_bytes(der)
        tmp.replace(self._ak_cert_path())

    # --- PCRs and quotes -------------------------------------------------------------------
    def _banks(self, e: Any) -> list[int]:
        """Hash algorithms of the PCR banks that have all 24 PCRs allocated."""
        t = self._t
        _, data = e.get_capability(t.TPM2_CAP.PCRS, 0, 1)
        banks = []
        for sel in data.data.assignedPCR:
            bits = bytes(sel.pcrSelect)[: sel.sizeofSelect]
            if len(bits) >= 3 and bits[:3] == b"\xff\xff\xff" and int(sel.hash) in tpm2.HASH_ALGS:
                banks.append(int(sel.hash))
        if tpm2.ALG_SHA256 not in banks:
            raise PlatformError("the TPM has no full SHA-256 PCR bank", code="platform_refused")
        return sorted(banks)

    def _read_pcrs(self, e: Any, bank: int, indices: tuple[int, ...]) -> dict[int, bytes]:
        t = self._t
        name = tpm2.HASH_ALGS[bank][0]
        values: dict[int, bytes] = {}
        for start in range(0, len(indices), 8):
            chunk = indices[start : start + 8]
            sel = t.TPML_PCR_SELECTION.parse(f"{name}:{','.join(map(str, chunk))}")
            _, _, digests = e.pcr_read(sel)
            got = [bytes(d) for d in digests]
            if len(got) != len(chunk):
                raise PlatformError(
                    "the TPM returned fewer PCRs than asked", code="platform_failed"
                )
            values.update(zip(chunk, got, strict=True))
        return values

    def pcrs(self, bank: int = tpm2.ALG_SHA256) -> dict[int, bytes]:
        with self._esapi("reading PCRs") as e:
            return self._read_pcrs(e, bank, tuple(range(PCR_COUNT)))

    def _quote_bank(
        self, e: Any, ak: Any, bank: int, report_data: bytes
    ) -> tuple[bytes, bytes, int, dict[int, bytes]]:
        t = self._t
        name = tpm2.HASH_ALGS[bank][0]
        selection = t.TPML_PCR_SELECTION.parse(f"{name}:{','.join(map(str, range(PCR_COUNT)))}")
        for _ in range(3):
            pcrs = self._read_pcrs(e, bank, tuple(range(PCR_COUNT)))
            attest, signature = e.quote(
                ak, selection, report_data, t.TPMT_SIG_SCHEME(scheme=t.TPM2_ALG.NULL)
            )
            raw = bytes(attest)
            info, _ = t.TPMS_ATTEST.unmarshal(raw)
            # The quote signs H_sig(PCRs); the AK signs with SHA-256.
            if (
                bytes(info.attested.quote.pcrDigest)
                == hashlib.sha256(b"".join(pcrs[i] for i in range(PCR_COUNT))).digest()
            ):
                return raw, bytes(signature.marshal()), bank, pcrs
        raise PlatformError("the PCRs kept changing while quoting", code="platform_busy")

    def _event_log(self) -> bytes:
        path = self.event_log_path
        if path is None:
            return b""
        try:
            with path.open("rb") as f:
                data = f.read(MAX_EVENT_LOG + 1)
        except OSError:
            return b""  # not readable (no TPM log, or no permission): the quote still verifies
        return data if len(data) <= MAX_EVENT_LOG else b""

    def evidence(self, report_data: bytes) -> bytes:
        """An Attestation: quotes of every full PCR bank with ``report_data`` as extraData."""
        if len(report_data) != 64:
            raise UsageError("TPM report data is exactly 64 bytes")
        with self._esapi("quoting") as e:
            ak, ak_pub = self._ak(e)
            try:
                quotes = [self._quote_bank(e, ak, bank, report_data) for bank in self._banks(e)]
            finally:
                e.flush_context(ak)
        return encode_attestation(ak_pub=ak_pub, quotes=quotes, event_log=self._event_log(),
                                  ak_cert=self.ak_certificate())  # fmt: skip

    def collateral(self) -> dict[str, bytes]:
        return {}  # the AK certificate travels in the evidence; the domain CA is the verifier's

    @property
    def measurement(self) -> str:
        """SHA-384 over the SHA-256 PCRs 0-9, as :mod:`veritee.evidence.tpm` computes it."""
        values = self.pcrs()
        return hashlib.sha384(b"".join(values[i] for i in range(10))).hexdigest()

    @functools.cached_property
    def profile(self) -> Profile:
        """Development: a TPM quote binds no launch data for a profile (binding rule 3)."""
        return settle_profile(self._requested, {"platform": self.name, "debug": self.debug})

    @property
    def debug(self) -> bool:
        return False  # a TPM attests no debug state; the PCRs say what booted

    @property
    def sealing_mode(self) -> SealingMode:
        return SealingMode.PLATFORM

    # --- sealing ---------------------------------------------------------------------------
    def _srk(self, e: Any) -> Any:
        t = self._t
        attrs = (t.TPMA_OBJECT.RESTRICTED | t.TPMA_OBJECT.DECRYPT | t.TPMA_OBJECT.FIXEDTPM
                 | t.TPMA_OBJECT.FIXEDPARENT | t.TPMA_OBJECT.SENSITIVEDATAORIGIN
                 | t.TPMA_OBJECT.USERWITHAUTH | t.TPMA_OBJECT.NODA)  # fmt: skip
        template = t.TPM2B_PUBLIC.parse(
            "ecc256:aes128cfb", objectAttributes=attrs, nameAlg="sha256"
        )
        handle, *_ = e.create_primary(t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.OWNER)
        return handle

    def _pcr_policy(self, e: Any, session_type: Any) -> tuple[Any, bytes]:
        t = self._t
        session = e.start_auth_session(
            t.ESYS_TR.NONE, t.ESYS_TR.NONE, session_type,
            t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.NULL), t.TPM2_ALG.SHA256,
        )  # fmt: skip
        selection = t.TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, self.seal_pcrs)))
        e.policy_pcr(session, b"", selection)
        return session, bytes(e.policy_get_digest(session))

    def _sealed_path(self, policy: bytes) -> Path:
        tag = hashlib.sha256(self.ak_public + policy).hexdigest()[:24]
        return self.state_dir / f"tpm-sealed-{tag}.bin"

    def _root_secret(self) -> bytes:
        t = self._t
        with self._esapi("sealing") as e:
            trial, policy = self._pcr_policy(e, t.TPM2_SE.TRIAL)
            e.flush_context(trial)
            path = self._sealed_path(policy)
            srk = self._srk(e)
            try:
                if not path.is_file():
                    attrs = t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT | t.TPMA_OBJECT.NODA
                    template = t.TPM2B_PUBLIC.parse("keyedhash", objectAttributes=attrs, nameAlg="sha256",
                                                    authPolicy=policy)  # fmt: skip
                    sensitive = t.TPM2B_SENSITIVE_CREATE(
                        t.TPMS_SENSITIVE_CREATE(data=t.TPM2B_SENSITIVE_DATA(os.urandom(32)))
                    )
                    private, public, *_ = e.create(srk, sensitive, template)
                    self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(bytes(public.marshal()) + bytes(private.marshal()))
                    tmp.replace(path)
                blob = path.read_bytes()
                try:
                    public, used = t.TPM2B_PUBLIC.unmarshal(blob)
                    private, _ = t.TPM2B_PRIVATE.unmarshal(blob[used:])
                except Exception:  # the binding's own parse errors
                    raise SealingError(
                        f"{path.name} is not a sealed TPM object", code="unseal_failed"
                    ) from None
                # Only an object sealed the way this driver seals (fixedTPM, fixedParent, no
                # password use, this PCR policy) may stand for the sealing secret: a host-made
                # object with a weaker policy would hand the host the key.
                area = public.publicArea
                required = t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
                if (int(area.type) != int(t.TPM2_ALG.KEYEDHASH) or bytes(area.authPolicy) != policy
                        or int(area.objectAttributes) & int(required) != int(required)
                        or int(area.objectAttributes) & int(t.TPMA_OBJECT.USERWITHAUTH)):  # fmt: skip
                    raise SealingError(
                        f"{path.name} is not sealed to this PCR policy", code="unseal_failed"
                    )
                obj = e.load(srk, private, public)
                session, _ = self._pcr_policy(e, t.TPM2_SE.POLICY)
                try:
                    secret = bytes(e.unseal(obj, session1=session))
                except t.TSS2_Exception:
                    raise SealingError("the TPM refuses to unseal: the PCRs differ from those sealed to",
                                       code="unseal_failed") from None  # fmt: skip
                finally:
                    e.flush_context(session)
                    e.flush_context(obj)
            finally:
                e.flush_context(srk)
        return secret

    def sealing_key(self, context: bytes) -> bytes:
        """HKDF over the PCR-sealed secret, the profile and ``context``."""
        info = b"veritee-tpm-sealing-v1|" + self.profile.value.encode() + b"|" + context
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._root_secret())

    def monotonic_counter(self, label: str) -> TpmCounter:
        """The TPM NV counter for ``label`` (defined on first use, empty auth, no dictionary-
        attack lockout); its index is derived from the label in the owner range."""
        if not label or len(label) > 200:
            raise UsageError("a counter label is 1..200 characters")
        t = self._t
        index = (
            COUNTER_FIRST
            + int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big") % COUNTER_SPAN
        )
        with self._esapi("defining a TPM counter") as e:
            _, data = e.get_capability(t.TPM2_CAP.HANDLES, index, 1)
            if not any(int(h) == index for h in data.data.handles):
                attrs = (t.TPMA_NV.OWNERWRITE | t.TPMA_NV.OWNERREAD | t.TPMA_NV.AUTHREAD
                         | t.TPMA_NV.AUTHWRITE | t.TPMA_NV.NO_DA
                         | (t.TPM2_NT.COUNTER << t.TPMA_NV.TPM2_NT_SHIFT))  # fmt: skip
                public = t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
                    nvIndex=index, nameAlg=t.TPM2_ALG.SHA256, attributes=attrs, dataSize=8))  # fmt: skip
                e.nv_define_space(b"", public, auth_handle=t.ESYS_TR.OWNER)
        return TpmCounter(self, index)

    def describe(self) -> dict[str, Any]:
        """EK certificate, AK, enrollment and PCRs, for ``veritee attest --show``."""
        with self._esapi("describing the TPM") as e:
            ek, _, cert = self._ek(e)
            e.flush_context(ek)
            banks = self._banks(e)
            pcrs = {tpm2.HASH_ALGS[b][0]: {str(i): v.hex() for i, v in self._read_pcrs(e, b, tuple(range(PCR_COUNT))).items()}
                    for b in banks}  # fmt: skip
        out: dict[str, Any] = {"interface": self.tcti, "platform": "tpm"}
        if cert:
            c = x509.load_der_x509_certificate(cert)
            out["ek_certificate"] = {"issuer": c.issuer.rfc4514_string(),
                                     "sha256": hashlib.sha256(cert).hexdigest()}  # fmt: skip
        ak = self.ak_certificate()
        out["ak_sha256"] = hashlib.sha256(self.ak_public).hexdigest()
        out["enrolled"] = ak is not None
        if ak is not None:
            c = x509.load_der_x509_certificate(ak)
            out["ak_certificate"] = {"issuer": c.issuer.rfc4514_string(),
                                     "not_after": c.not_valid_after_utc.isoformat()}  # fmt: skip
        sha256 = pcrs.get("sha256", {})
        out["measurement"] = hashlib.sha384(
            b"".join(bytes.fromhex(sha256[str(i)]) for i in range(10))
        ).hexdigest()
        out["pcrs"] = pcrs
        out["profile"] = self.profile.value
        return out
