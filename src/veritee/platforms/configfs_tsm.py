"""configfs-tsm: the Linux (>= 6.7) attestation-report interface shared by SEV-SNP, TDX and Arm CCA.

The kernel ABI (``Documentation/ABI/testing/configfs-tsm-report``) under
``/sys/kernel/config/tsm/report``:

* ``mkdir report/$name`` creates a report entry (one per requesting context), ``rmdir`` removes it;
* ``inblob`` (write-only, at most 64 bytes): the report data;
* ``privlevel`` (write-only, SEV-SNP VMPL 0..3, not below ``privlevel_floor``);
* ``outblob`` (read-only): the report, generated on read: an SEV-SNP ATTESTATION_REPORT (the raw
  1184 bytes), a TDX quote, or an Arm CCA attestation token (CBOR tag 399);
* ``auxblob`` (read-only, SEV-SNP, kernel >= 6.8): the GHCB certificate table (VCEK or VLEK, ASK,
  ARK) the host supplies;
* ``provider``: ``sev_guest``, ``tdx_guest`` or ``arm_cca_guest``;
* ``generation``: incremented by every write to ``inblob`` or an option.

Two processes may race on one entry: the ABI's rule is to read ``generation`` before writing, and
after reading ``outblob`` check that exactly our writes happened in between (:func:`get_report`
retries a few times, then raises ``platform_busy``). Each request uses its own fresh entry, so
only a writer that deliberately targets it can interfere.
"""

from __future__ import annotations

import errno
import functools
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veritee.errors import MalformedError, PlatformError, UsageError
from veritee.platforms._profile import settle_profile
from veritee.platforms.base import NoSealingKey
from veritee.profiles import Profile

__all__ = [
    "CERT_GUIDS",
    "DEFAULT_ROOT",
    "PROVIDERS",
    "CcaPlatform",
    "TsmReport",
    "available",
    "build_cert_table",
    "get_report",
    "parse_cert_table",
]

DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")
INBLOB_MAX = 64
OUTBLOB_MAX = 32 * 1024
AUXBLOB_MAX = 64 * 1024
PRIVLEVEL_MAX = 3
RETRIES = 5

#: configfs-tsm provider name -> veritee evidence format of ``outblob``.
PROVIDERS = {"sev_guest": "sev-snp", "tdx_guest": "tdx", "arm_cca_guest": "cca"}

#: GHCB (AMD 56421, 4.1.8.1) certificate-table GUIDs -> the file name :func:`parse_cert_table`
#: gives the certificate (all DER).
CERT_GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek.der",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek.der",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask.der",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark.der",
}
_ENTRY = 24  # GUID (16) + offset (u32 LE) + length (u32 LE)


@dataclass(frozen=True)
class TsmReport:
    """What one configfs-tsm request returned."""

    provider: str
    outblob: bytes
    auxblob: bytes = b""
    #: ``generation`` after our writes (for diagnostics).
    generation: int = 0
    attempts: int = 1
    extra: dict[str, bytes] = field(default_factory=dict)

    @property
    def format(self) -> str:
        """The veritee evidence format of ``outblob``."""
        try:
            return PROVIDERS[self.provider]
        except KeyError:
            raise PlatformError(
                f"configfs-tsm provider {self.provider!r} is not one veritee reads",
                code="platform_unsupported",
            ) from None


def available(root: Path = DEFAULT_ROOT) -> bool:
    """configfs-tsm is mounted and a provider is registered (the report folder exists)."""
    return root.is_dir()


def _os_error(e: OSError, what: str) -> PlatformError:
    if e.errno in (errno.EACCES, errno.EPERM):
        return PlatformError(
            f"no permission for {what} (run as root or see docs/platforms.md)",
            code="platform_permission_denied",
        )
    if e.errno == errno.ENOENT:
        return PlatformError(f"{what} does not exist", code="platform_absent")
    if e.errno == errno.ENXIO:
        return PlatformError(f"{what}: no TSM provider is registered", code="platform_absent")
    if e.errno in (errno.EBUSY, errno.EAGAIN):
        return PlatformError(f"{what} is busy", code="platform_busy")
    if e.errno == errno.EINVAL:
        return PlatformError(
            f"the platform refused {what} (invalid argument)", code="platform_refused"
        )
    return PlatformError(f"{what} failed: {os.strerror(e.errno or 0)}", code="platform_failed")


def _read(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise _os_error(e, str(path)) from None
    if len(data) > limit:
        raise PlatformError(f"{path} is larger than {limit} bytes", code="platform_failed")
    return data


def _write(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise _os_error(e, str(path)) from None
    if written != len(data):
        raise PlatformError(f"short write to {path}", code="platform_failed")


def _generation(entry: Path) -> int:
    text = _read(entry / "generation", 32).strip()
    try:
        return int(text)
    except ValueError:
        raise PlatformError(f"{entry}/generation is not a number", code="platform_failed") from None


def _attempt(entry: Path, inblob: bytes, privlevel: int | None) -> TsmReport | None:
    """One try on a fresh entry; None when another writer interfered."""
    before = _generation(entry)
    writes = 0
    if privlevel is not None:
        _write(entry / "privlevel", f"{privlevel}\n".encode())
        writes += 1
    _write(entry / "inblob", inblob)
    writes += 1
    outblob = _read(entry / "outblob", OUTBLOB_MAX)
    auxblob = _read(entry / "auxblob", AUXBLOB_MAX) if (entry / "auxblob").exists() else b""
    provider = _read(entry / "provider", 64).decode("ascii", "replace").strip()
    after = _generation(entry)
    if after != before + writes:
        return None
    if not outblob:
        raise PlatformError("the platform returned an empty report", code="platform_failed")
    return TsmReport(provider=provider, outblob=outblob, auxblob=auxblob, generation=after)


def get_report(
    inblob: bytes,
    *,
    privlevel: int | None = None,
    root: Path = DEFAULT_ROOT,
    retries: int = RETRIES,
) -> TsmReport:
    """Ask the platform for a report binding ``inblob`` (at most 64 bytes).

    Creates a fresh entry, writes ``privlevel`` (if given) and ``inblob``, reads ``outblob``,
    ``auxblob`` and ``provider``, checks the generation counter, and removes the entry. Retries
    up to ``retries`` times when another writer changed the entry meanwhile. Raises
    :class:`PlatformError` (``platform_absent``, ``platform_permission_denied``, ``platform_busy``,
    ``platform_refused``) and :class:`UsageError` for a bad ``inblob``/``privlevel``.
    """
    if not isinstance(inblob, bytes) or not 0 < len(inblob) <= INBLOB_MAX:
        raise UsageError(f"inblob must be 1..{INBLOB_MAX} bytes")
    if privlevel is not None and not 0 <= privlevel <= PRIVLEVEL_MAX:
        raise UsageError(f"privlevel must be 0..{PRIVLEVEL_MAX}")
    if not root.is_dir():
        raise PlatformError(
            f"configfs-tsm is not available ({root} is absent)", code="platform_absent"
        )
    for attempt in range(1, retries + 1):
        entry = root / f"veritee-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            entry.mkdir()
        except OSError as e:
            raise _os_error(e, f"creating a report entry in {root}") from None
        try:
            report = _attempt(entry, inblob, privlevel)
        finally:
            try:
                entry.rmdir()
            except OSError:
                pass  # already gone (another cleaner); nothing of ours is left to lose
        if report is not None:
            return TsmReport(report.provider, report.outblob, report.auxblob, report.generation,
                             attempt)  # fmt: skip
        time.sleep(0.01 * attempt)
    raise PlatformError(
        f"configfs-tsm report entry was changed by another writer {retries} times in a row",
        code="platform_busy",
    )


def parse_cert_table(table: bytes) -> dict[str, bytes]:
    """The certificates of a GHCB certificate table (``auxblob``, SNP_GET_EXT_REPORT), by file
    name (``vcek.der``, ``vlek.der``, ``ask.der``, ``ark.der``; other GUIDs as ``<guid>.der``).

    Layout (AMD 56421, 4.1.8.1): entries of GUID (16 bytes, RFC 4122 order), offset and length
    (u32 little-endian, from the table's start), ended by an all-zero entry; then the
    certificates. Raises :class:`MalformedError` for an entry outside the table.
    """
    certs: dict[str, bytes] = {}
    at = 0
    while True:
        if at + _ENTRY > len(table):
            raise MalformedError(
                "certificate table has no terminating entry", field="cert_table", offset=at
            )
        entry = table[at : at + _ENTRY]
        if entry == bytes(_ENTRY):
            return certs
        guid = uuid.UUID(bytes=entry[:16])
        offset = int.from_bytes(entry[16:20], "little")
        length = int.from_bytes(entry[20:24], "little")
        if length == 0 or offset + length > len(table) or offset < at + _ENTRY:
            raise MalformedError("certificate table entry points outside the table",
                                 field="cert_table", offset=at)  # fmt: skip
        certs[CERT_GUIDS.get(guid, f"{guid}.der")] = table[offset : offset + length]
        at += _ENTRY
        if len(certs) > 16:
            raise MalformedError("certificate table has too many entries", field="cert_table")


def build_cert_table(certs: dict[uuid.UUID, bytes]) -> bytes:
    """The inverse of :func:`parse_cert_table` (used by tests and fixtures)."""
    head = _ENTRY * (len(certs) + 1)
    entries, body = b"", b""
    for guid, der in certs.items():
        entries += (
            guid.bytes + (head + len(body)).to_bytes(4, "little") + len(der).to_bytes(4, "little")
        )
        body += der
    return entries + bytes(_ENTRY) + body


class CcaPlatform(NoSealingKey):
    """The Arm CCA realm attester (Linux >= 6.13 ``arm_cca_guest``): evidence is the CCA token
    (format ``cca``); the realm challenge is veritee's report data. The platform attestation
    key (CPAK) that verifiers need comes from the platform's endorsements, not from the realm."""

    platform_title = "Arm CCA"

    name = "cca"

    def __init__(self, *, profile: Profile | None = None, root: Path = DEFAULT_ROOT) -> None:
        if not available(root):
            raise PlatformError(
                f"configfs-tsm is not available ({root} is absent)", code="platform_absent"
            )
        self.root = root
        self._requested = profile

    def evidence(self, report_data: bytes) -> bytes:
        got = get_report(report_data, root=self.root)
        if got.format != "cca":
            raise PlatformError(f"configfs-tsm provider is {got.provider}, not arm_cca_guest",
                                code="platform_unsupported")  # fmt: skip
        return got.outblob

    def collateral(self) -> dict[str, bytes]:
        return {}

    @functools.cached_property
    def own_report(self) -> dict[str, Any]:
        from veritee.evidence import cca

        claims: dict[str, Any] = cca.parse_claims(self.evidence(bytes(64)))
        return claims

    @property
    def measurement(self) -> str:
        return str(self.own_report["measurement"])

    @property
    def debug(self) -> bool:
        return bool(self.own_report.get("debug"))

    @functools.cached_property
    def profile(self) -> Profile:
        """The profile the Realm Personalization Value binds (development without it)."""
        return settle_profile(self._requested, self.own_report)

    def describe(self) -> dict[str, Any]:
        return {"interface": "configfs-tsm", **self.own_report, "profile": self.profile.value}
