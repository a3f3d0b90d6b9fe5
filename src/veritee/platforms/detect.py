"""``platform="auto"``: find the TEE this program runs in and open its driver.

In this order (the first interface present wins):

1. ``/dev/nsm``: a Nitro enclave;
2. configfs-tsm (its provider names the TEE: ``sev_guest``, ``tdx_guest``, ``arm_cca_guest``),
   then ``/dev/sev-guest`` and ``/dev/tdx_guest`` for kernels without configfs-tsm;
3. a TPM (``device:/dev/tpmrm0`` or the TCTI given) holding Azure's HCL report at NV 0x01400001:
   an Azure confidential VM (its paravisor hides the SEV-SNP and TDX devices);
4. the TPM named by an explicit TCTI: ``tpm``. A TPM found only by its device is not taken: a
   plain TPM attests a boot, not an isolated workload, and nearly every laptop has one, so a
   program asks for it (``platform="tpm"`` or a TCTI) rather than getting it by default;
5. nothing: None (the caller decides whether the simulated platform may stand in).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from veritee.errors import PlatformError, UsageError
from veritee.platforms import configfs_tsm
from veritee.profiles import Profile

__all__ = ["HARDWARE", "Interfaces", "default_state_dir", "detect", "open_hardware"]

#: Platform names an attester driver exists for (besides ``simulated``).
HARDWARE = ("sev-snp", "tdx", "cca", "nitro", "tpm", "az-snp-vtpm", "az-tdx-vtpm")


def default_state_dir() -> Path:
    """Where drivers keep state by default: ``$XDG_DATA_HOME/veritee/platform``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "veritee" / "platform"


class Interfaces:
    """Where the kernel interfaces are (tests point these at fixtures)."""

    def __init__(
        self,
        *,
        tsm_root: Path = configfs_tsm.DEFAULT_ROOT,
        sev_guest: Path = Path("/dev/sev-guest"),
        tdx_guest: Path = Path("/dev/tdx_guest"),
        nsm: Path = Path("/dev/nsm"),
        tcti: str | None = None,
    ) -> None:
        self.tsm_root, self.sev_guest, self.tdx_guest, self.nsm = (
            tsm_root,
            sev_guest,
            tdx_guest,
            nsm,
        )
        self.tcti = tcti

    @property
    def tpm_tcti(self) -> str | None:
        if self.tcti is not None:
            return self.tcti
        return "device:/dev/tpmrm0" if Path("/dev/tpmrm0").exists() else None


def _tsm_provider(root: Path) -> str | None:
    """The configfs-tsm provider, read from a throw-away entry."""
    entry = root / f"veritee-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        entry.mkdir()
    except OSError:
        return None
    try:
        return (entry / "provider").read_text().strip()
    except OSError:
        return None
    finally:
        try:
            entry.rmdir()
        except OSError:
            pass


def _azure(tcti: str) -> bool:
    from veritee.platforms.azure import HCL_REPORT_INDEX
    from veritee.platforms.tpm import _tss

    try:
        t = _tss()
        with t.ESAPI(tcti) as e:
            _, data = e.get_capability(t.TPM2_CAP.HANDLES, HCL_REPORT_INDEX, 1)
            return any(int(h) == HCL_REPORT_INDEX for h in data.data.handles)
    except Exception:
        return False


def detect(where: Interfaces | None = None) -> str | None:
    """The name of the TEE found (module docstring), or None."""
    w = where or Interfaces()
    if w.nsm.exists():
        return "nitro"
    if configfs_tsm.available(w.tsm_root):
        provider = _tsm_provider(w.tsm_root)
        if provider in configfs_tsm.PROVIDERS:
            return configfs_tsm.PROVIDERS[provider]
    if w.sev_guest.exists():
        return "sev-snp"
    if w.tdx_guest.exists():
        return "tdx"
    tcti = w.tpm_tcti
    if tcti is not None:
        if _azure(tcti):
            return "azure"  # az-snp-vtpm or az-tdx-vtpm: the HCL report says which
        if w.tcti is not None:
            return "tpm"
    return None


def open_hardware(
    name: str,
    *,
    profile: Profile | None = None,
    state_dir: Path,
    where: Interfaces | None = None,
    **kw: Any,
) -> Any:
    """The driver for ``name`` (one of :data:`HARDWARE`, or ``azure`` for either Azure format).

    ``state_dir`` keeps what a driver stores (the TPM's AK certificate and sealed objects).
    """
    w = where or Interfaces()
    if name == "sev-snp":
        from veritee.platforms.sev_guest import SevSnpPlatform

        return SevSnpPlatform(profile=profile, device=w.sev_guest, tsm_root=w.tsm_root, **kw)
    if name == "tdx":
        from veritee.platforms.tdx_guest import TdxPlatform

        return TdxPlatform(profile=profile, device=w.tdx_guest, tsm_root=w.tsm_root)
    if name == "cca":
        return configfs_tsm.CcaPlatform(profile=profile, root=w.tsm_root)
    if name == "nitro":
        from veritee.platforms.nsm import NitroPlatform

        return NitroPlatform(profile=profile, device=w.nsm)
    tcti = w.tpm_tcti
    if name in ("tpm", "azure", "az-snp-vtpm", "az-tdx-vtpm"):
        if tcti is None:
            raise PlatformError(
                "no TPM: /dev/tpmrm0 is absent and no TCTI was given", code="platform_absent"
            )
        if name == "tpm":
            from veritee.platforms.tpm import TpmPlatform

            return TpmPlatform(tcti=tcti, state_dir=state_dir, profile=profile, **kw)
        from veritee.platforms.azure import AzureCvmPlatform

        platform = AzureCvmPlatform(tcti=tcti, state_dir=state_dir, profile=profile, **kw)
        if name != "azure" and platform.name != name:
            raise PlatformError(
                f"this Azure CVM is {platform.name}, not {name}", code="platform_unsupported"
            )
        return platform
    raise UsageError(
        f"unknown platform {name!r}; known: auto, simulated, {', '.join(HARDWARE)}",
        code="platform_unknown",
    )
