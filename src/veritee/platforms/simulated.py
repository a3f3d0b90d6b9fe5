"""The simulated platform driver (attester side), for development on machines without a TEE.

Its platform key (ECDSA P-384) is created on first use under ``<data>/simulated-platform/`` and
is never a constant: each install is a different "machine". The measurement is SHA-384 over the
measured files (:func:`veritee.platforms.measure.measure`: what is measured, the formula). Sealing keys are HKDF over the platform secret, with the
measurement, the profile and the debug state in ``info`` (the contract of
:mod:`veritee.platforms.base`), so a blob sealed by one measurement, or in one profile, does not
unseal under another. It has no monotonic counter: anything it could keep lives on the host.
``has_sealing_key=False`` makes it behave as TDX, Arm CCA and Nitro do: no sealing key of its
own (``SealingMode.DOMAIN_RELEASED``), so a workload seals with the key broker's
domain-released key (docs/sealing.md), to try that mode on a laptop.

This platform gives no protection at all: it exists so that the whole system can run and be
tested on a laptop. A verifier trusts it only where a policy lists its key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import SealingError, UsageError
from veritee.evidence.simulated import CODE_OF_PROFILE, sign_report
from veritee.platforms.base import MonotonicCounter, SealingMode
from veritee.platforms.measure import measure
from veritee.profiles import Profile

__all__ = [
    "SimulatedPlatform",
    "default_directory",
    "load_or_create_platform_key",
    "measure",
    "platform_key_id",
]

KEY_FILE = "platform_key.pem"


def default_directory() -> Path:
    """Where ``Trust(platform="simulated")`` keeps the platform key without ``platform_dir``:
    ``$VERITEE_SIMULATED_DIR``, else ``$XDG_DATA_HOME/veritee/simulated-platform`` (default
    ``~/.local/share/...``)."""
    env = os.environ.get("VERITEE_SIMULATED_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "veritee" / "simulated-platform"


def load_or_create_platform_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    """The per-install platform key, created (0600) on first use."""
    path = directory / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise UsageError(f"{path} is not an EC private key")
        return key
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        # Another process may have won the race: keep whichever landed first.
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        return load_or_create_platform_key(directory)
    tmp.unlink()
    return key


def platform_key_id(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """SHA-256 (hex) of the platform key's SPKI DER: what a policy's ``platform_keys`` lists."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class SimulatedPlatform:
    """A development TEE: signs evidence for one measurement with the per-install key."""

    name = "simulated"

    def __init__(
        self,
        directory: Path,
        *,
        measurement: str,
        profile: Profile = Profile.DEVELOPMENT,
        debug: bool | None = None,
        has_sealing_key: bool = True,
    ) -> None:
        try:
            raw = bytes.fromhex(measurement)
        except ValueError:
            raise UsageError("measurement must be hex") from None
        if len(raw) != 48:
            raise UsageError("measurement must be 48 bytes (SHA-384)")
        self._measurement = raw
        self._profile = profile
        # A debuggable build is what development and testing profiles are.
        self._debug = profile.allows_debug if debug is None else debug
        if self._debug and not profile.allows_debug:
            raise UsageError(f"profile {profile.value} cannot run a debuggable build")
        self._key = load_or_create_platform_key(directory)
        self._has_sealing_key = has_sealing_key

    @property
    def measurement(self) -> str:
        return self._measurement.hex()

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def debug(self) -> bool:
        return self._debug

    @property
    def sealing_mode(self) -> SealingMode:
        return SealingMode.PLATFORM if self._has_sealing_key else SealingMode.DOMAIN_RELEASED

    @property
    def key_id(self) -> str:
        return platform_key_id(self._key)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The platform key's public half (what a policy's ``platform_keys`` names by its id)."""
        return self._key.public_key()

    def evidence(self, report_data: bytes) -> bytes:
        return sign_report(
            self._key,
            measurement=self._measurement,
            report_data=report_data,
            profile=self._profile,
            debug=self._debug,
        )

    def sealing_key(self, context: bytes) -> bytes:
        """HKDF over the platform secret; ``info`` binds measurement, profile, debug, context.

        Without a sealing key (``has_sealing_key=False``): :class:`SealingError`
        ``sealing_key_unavailable``, as on TDX."""
        if not self._has_sealing_key:
            raise SealingError(
                "this simulated platform has no sealing key (has_sealing_key=False): seal with "
                "the key broker's domain-released key (Trust(sealing='domain'))",
                code="sealing_key_unavailable",
            )
        info = b"".join(
            [
                self._measurement,
                bytes([CODE_OF_PROFILE[self._profile], 1 if self._debug else 0]),
                len(context).to_bytes(4, "big"),
                context,
            ]
        )
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"veritee-simulated-sealing-v2", info=info
        ).derive(self._secret())

    def legacy_sealing_key_v1(self, context: bytes) -> bytes:
        """The version-1 sealing key (measurement only), to open blobs sealed before v2."""
        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"veritee-simulated-sealing-v1",
            info=self._measurement + b"|" + context,
        ).derive(self._secret())

    def monotonic_counter(self, label: str) -> MonotonicCounter | None:
        """None: a counter kept by the simulated platform would be a file the host can replace."""
        return None

    def _secret(self) -> bytes:
        return self._key.private_numbers().private_value.to_bytes(48, "big")
