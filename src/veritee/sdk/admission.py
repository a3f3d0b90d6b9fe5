"""The SDK's name for :mod:`veritee.admission` (admission-certificate claims, peer checks).

The module lives at the top of the package because the service, the key broker and the
confidential logs read admission certificates too, and none of them may import the SDK.
"""

from veritee.admission import AdmissionInfo, normalize_measurement, verify_peer

__all__ = ["AdmissionInfo", "normalize_measurement", "verify_peer"]
