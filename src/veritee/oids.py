"""Object identifiers veritee puts in admission certificates.

They live under ``2.25.<UUID>`` (ITU-T X.667: an OID any party may allocate without a registry).
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

__all__ = ["ADMISSION_CLAIMS", "ARC", "MEASUREMENT", "PLATFORM", "PROFILE"]

ARC = "2.25.33650568122679349865764103694628722319"

#: UTF8String: the attested measurement (hex) of the certified workload.
MEASUREMENT = ObjectIdentifier(ARC + ".1")
#: UTF8String: the platform name (sev-snp, tdx, sgx, nitro, tpm, simulated).
PLATFORM = ObjectIdentifier(ARC + ".2")
#: UTF8String: the logging profile the workload attested (development ... production).
PROFILE = ObjectIdentifier(ARC + ".3")
#: UTF8String: JSON of selected claims (platform-specific), for relying parties.
ADMISSION_CLAIMS = ObjectIdentifier(ARC + ".4")
