"""SEV-SNP launch digests computed from the artefacts, as reference values (issue 17).

Given the OVMF firmware, and optionally the kernel, initrd and kernel command line measured
through OVMF's SEV hashes table, the number of vCPUs, the vCPU type and the VMM, the expected
launch MEASUREMENT of an SEV-SNP guest is computed by the PyPI package ``sev-snp-measure``
(IBM's, pinned in pyproject.toml; it replays the PSP's page-by-page launch digest over the
firmware's SEV metadata sections and the VMSAs). :func:`launch_corim` wraps a measurement in a
CoRIM under AMD's SEV-SNP profile (``tag:amd.com,2024:snp-corim-profile``: class id OID
1.3.6.1.4.1.3704.3.1, the measurement as instance, mkey 641 with its SHA-384 digest, as
Veraison's SEV-SNP plugin provisions it), which :func:`veritee.refvalues.corim.sign` can sign and
``veritee refvalues add`` registers like any other CoRIM.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from pathlib import Path

import cbor2

from veritee.errors import UsageError

__all__ = ["SNP_CLASS_OID", "VCPU_TYPES", "VMM_TYPES", "launch_corim", "launch_digest"]

SNP_CLASS_OID = bytes.fromhex("2b060104019c780301")  # 1.3.6.1.4.1.3704.3.1
SNP_PROFILE = "tag:amd.com,2024:snp-corim-profile"
MKEY_MEASUREMENT = 641
MAX_ARTEFACT_BYTES = 512 * 1024 * 1024


def _catalogue() -> tuple[list[str], list[str]]:
    from sevsnpmeasure import vcpu_types, vmm_types

    return sorted(vcpu_types.CPU_SIGS), [t.name.lower() for t in vmm_types.VMMType]


VCPU_TYPES, VMM_TYPES = _catalogue()


def _file(path: Path, what: str) -> str:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not path.is_file() or size == 0:
        raise UsageError(f"{what} {path} is not a non-empty file")
    if size > MAX_ARTEFACT_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_ARTEFACT_BYTES} bytes")
    return str(path)


def launch_digest(
    ovmf: Path,
    *,
    vcpus: int,
    vcpu_type: str,
    kernel: Path | None = None,
    initrd: Path | None = None,
    append: str | None = None,
    guest_features: int = 0x1,
    vmm: str = "qemu",
) -> bytes:
    """The expected SEV-SNP launch MEASUREMENT (48 bytes). Raises :class:`UsageError` naming
    what is wrong (a missing file, an OVMF without SEV metadata or without the kernel hashes
    table when a kernel is given, an unknown vCPU type)."""
    from sevsnpmeasure import guest, vcpu_types, vmm_types
    from sevsnpmeasure.sev_mode import SevMode

    if not 1 <= vcpus <= 512:
        raise UsageError("vcpus must be 1..512")
    if vcpu_type not in vcpu_types.CPU_SIGS:
        raise UsageError(f"unknown vCPU type {vcpu_type!r} (one of {', '.join(VCPU_TYPES)})")
    if vmm not in VMM_TYPES:
        raise UsageError(f"unknown VMM {vmm!r} (one of {', '.join(VMM_TYPES)})")
    if (initrd is not None or append) and kernel is None:
        raise UsageError("an initrd or a command line is measured only with a kernel")
    if not 0 <= guest_features < 1 << 64:
        raise UsageError("guest features are a 64-bit value")
    vmm_type = next(t for t in vmm_types.VMMType if t.name.lower() == vmm)
    try:
        digest = guest.calc_launch_digest(
            SevMode.SEV_SNP, vcpus, vcpu_types.CPU_SIGS[vcpu_type], _file(ovmf, "OVMF"),
            _file(kernel, "kernel") if kernel is not None else None,
            _file(initrd, "initrd") if initrd is not None else None,
            append if kernel is not None else None,
            guest_features, "", vmm_type,
        )  # fmt: skip
    except UsageError:
        raise
    except (
        ValueError,
        RuntimeError,
        AssertionError,
        KeyError,
        IndexError,
        OSError,
        struct.error,
    ) as e:
        raise UsageError(f"cannot compute the launch digest: {e}") from None
    if (
        not isinstance(digest, bytes) or len(digest) != 48
    ):  # pragma: no cover - the package's contract
        raise UsageError("sev-snp-measure returned no 48-byte digest")
    return digest


def launch_corim(measurement: bytes, *, description: str, corim_id: str | None = None) -> bytes:
    """An unsigned CoRIM (tag 501) carrying ``measurement`` as an SEV-SNP reference value."""
    if len(measurement) != 48:
        raise UsageError("an SEV-SNP launch measurement is 48 bytes")
    env = {
        0: {0: cbor2.CBORTag(111, SNP_CLASS_OID), 1: "AMD", 2: "SEV-SNP"},
        1: cbor2.CBORTag(560, measurement),
    }
    meas = {0: MKEY_MEASUREMENT, 1: {2: [[7, measurement]], 11: description[:200]}}
    tag_id = str(uuid.UUID(bytes=hashlib.sha256(measurement + description.encode()).digest()[:16]))
    comid = {1: {0: tag_id}, 4: {0: [[env, [meas]]]}}
    corim = {
        0: corim_id or f"snp-launch-{measurement.hex()[:16]}",
        1: [cbor2.CBORTag(506, cbor2.dumps(comid))],
        3: cbor2.CBORTag(32, SNP_PROFILE),
    }
    return bytes(cbor2.dumps(cbor2.CBORTag(501, corim)))
