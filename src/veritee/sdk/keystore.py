"""The workload's key store: its key, admission certificate and named secrets, sealed at rest.

One file holds everything, sealed with :func:`veritee.sdk.sealing.seal` for the purpose
``veritee.keystore`` (which ``Trust.unseal`` never opens), so only the same workload (same
measurement, profile and debug state) on the same platform can open it. On a platform without
a sealing key (TDX, Arm CCA, Nitro) ``Trust`` seals it with the domain-released key
(:mod:`veritee.sdk.domain_sealing`): then every measurement the domain's policy admits under the
workload's name and profile opens it, and ``Trust.certify`` renews the certificate it holds
for a previous measurement. A store sealed in
format 1 is opened and re-sealed in format 2 at once. Its plaintext is a CBOR map (RFC 8949)::

    {"v": 2,
     "id": 16 random bytes naming this store (made with it, never changed),
     "gen": the key's generation: 1 for the first key, +1 on every rotate_key(), 0 before,
     "seq": the number of writes so far,
     "ctr": the freshness counter's value this state goes with, or null (no counter),
     "key": PKCS#8 DER of the workload's ECDSA P-256 key, or null,
     "cert": PEM of the admission certificate, or null,
     "chain": [PEM of intermediate CA certificates],
     "ca": PEM of the domain CA certificate, or null,
     "items": {name: bytes}}

Contents in format 1 (``"v": 1``, without id, gen and seq) are read as generation 1 of a new id
and rewritten in format 2.

Rollback: the host can always put back an older copy of the file, and it opens. What the store
does about it: the workload binds the store's id and key generation into its evidence when it
certifies a key (:meth:`proof`, :mod:`veritee.binding`), and the service refuses to certify a
generation lower than one it certified before for that store (``key_superseded``), so a key
that :meth:`rotate_key` replaced is never certified again. The rest of the store (items, the
certificate) is protected against rollback only with a freshness counter the host cannot
reset (:meth:`attach_counter`): a TPM NV counter (``Platform.monotonic_counter``) or the one
the service keeps per key store (:class:`veritee.sdk.freshness.ServiceCounter`). Every write
then stores ``ctr`` = the counter's next value, and afterwards increments the counter; a store
whose ``ctr`` is behind the counter is an older copy and does not open (``keystore_rolled_back``).
A write whose increment did not happen (a crash, the service unreachable, no certificate yet)
is finished at the next :meth:`sync_counter` or attach; until then that one write can be rolled
back (:attr:`fresh` is False).

Every change rewrites the file atomically (temporary file in the same folder, ``fsync``,
``rename``, ``fsync`` of the folder), mode 0600, so a crash leaves either the old or the new
store. A store that exists but does not unseal raises :class:`SealingError` naming the file when
the :class:`KeyStore` is opened; it is never overwritten (move it away to start afresh).

Not covered: several processes writing one store at once (one process per store).

Where ``Trust`` keeps it (:func:`open_workload_keystore`): a key store sealed with the platform's
key opens only for one measurement, profile and debug state, so each of them has its own, in
``<store>/keystores/<platform>-<profile>[-debug]-<measurement>/keystore.bin``; a code edit starts
a new one beside the old (which the old version still opens). A key store sealed with the
domain-released key opens for every admitted measurement and stays ``<store>/keystore.bin``.
A ``<store>/keystore.bin`` written before this layout by a platform-sealed workload is moved to
that workload's folder the first time the same workload opens it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.binding import MAX_GENERATION, STORE_ID_SIZE, KeyStoreProof
from veritee.errors import SealingError, StorageError, UsageError
from veritee.platforms.base import MonotonicCounter, Platform, SealingMode
from veritee.sdk.sealing import LEGACY_VERSION, PURPOSE_KEYSTORE, SealedHeader, seal, unseal

__all__ = ["DEFAULT_RENEWAL_MARGIN", "KeyStore", "open_workload_keystore", "workload_keystore_path"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1
#: Renew this long before the admission certificate expires, unless told otherwise.
DEFAULT_RENEWAL_MARGIN = timedelta(minutes=5)
MAX_STORE_BYTES = 64 * 1024 * 1024
MAX_NAME_LEN = 128


@dataclass(frozen=True)
class _Contents:
    store_id: bytes = field(default_factory=lambda: os.urandom(STORE_ID_SIZE))
    generation: int = 0
    seq: int = 0
    ctr: int | None = None
    key: bytes | None = None
    cert: bytes | None = None
    chain: tuple[bytes, ...] = ()
    ca: bytes | None = None
    items: dict[str, bytes] = field(default_factory=dict)

    def to_cbor(self) -> bytes:
        return cbor2.dumps(
            {
                "v": FORMAT_VERSION,
                "id": self.store_id,
                "gen": self.generation,
                "seq": self.seq,
                "ctr": self.ctr,
                "key": self.key,
                "cert": self.cert,
                "chain": list(self.chain),
                "ca": self.ca,
                "items": dict(self.items),
            }
        )

    @classmethod
    def from_cbor(cls, raw: bytes, path: Path) -> tuple[_Contents, bool]:
        """The contents, and whether they were in format 1 (to be rewritten)."""

        def bad(what: str) -> SealingError:
            return SealingError(f"key store {path}: {what}", code="keystore_corrupt")

        try:
            doc: Any = cbor2.loads(raw)
        except Exception:  # cbor2 raises several types on bad input
            raise bad("contents do not decode") from None
        if not isinstance(doc, dict) or doc.get("v") not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION):
            raise bad(
                f"unsupported format (this build reads versions {LEGACY_FORMAT_VERSION} "
                f"and {FORMAT_VERSION})"
            )
        legacy = doc["v"] == LEGACY_FORMAT_VERSION

        def opt_bytes(name: str) -> bytes | None:
            value = doc.get(name)
            if value is not None and not isinstance(value, bytes):
                raise bad(f"field {name} is not bytes")
            return value

        chain = doc.get("chain", [])
        items = doc.get("items", {})
        if not isinstance(chain, list) or not all(isinstance(c, bytes) for c in chain):
            raise bad("field chain is not a list of bytes")
        if not isinstance(items, dict) or not all(
            isinstance(k, str) and isinstance(v, bytes) for k, v in items.items()
        ):
            raise bad("field items is not a map of names to bytes")
        key = opt_bytes("key")
        store_id: Any = os.urandom(STORE_ID_SIZE)
        generation: Any = 1 if key else 0
        seq: Any = 0
        ctr: Any = None
        if not legacy:
            store_id, generation, seq = doc.get("id"), doc.get("gen"), doc.get("seq")
            if not isinstance(store_id, bytes) or len(store_id) != STORE_ID_SIZE:
                raise bad(f"field id is not {STORE_ID_SIZE} bytes")
            for name, n in (("gen", generation), ("seq", seq)):
                if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_GENERATION:
                    raise bad(f"field {name} is not a count")
            if (generation == 0) != (key is None):
                raise bad("field gen does not match the key")
            ctr = doc.get("ctr")
            if ctr is not None and (
                not isinstance(ctr, int) or isinstance(ctr, bool) or not 0 <= ctr <= MAX_GENERATION
            ):
                raise bad("field ctr is not a count")
        contents = cls(
            store_id=store_id,
            generation=generation,
            seq=seq,
            ctr=ctr,
            key=key,
            cert=opt_bytes("cert"),
            chain=tuple(chain),
            ca=opt_bytes("ca"),
            items=dict(items),
        )
        return contents, legacy


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise UsageError(
            f"{what} is not a PEM X.509 certificate", code="certificate_invalid"
        ) from None


def _spki(key: ec.EllipticCurvePublicKey | Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


class KeyStore:
    """A sealed, atomically written store at ``path`` for the workload on ``platform``.

    Opening reads and unseals the file if it exists: :class:`SealingError` (naming the file) if
    it does not unseal here, :class:`StorageError` if it cannot be read. Methods are thread-safe.
    """

    def __init__(self, path: Path, platform: Platform) -> None:
        self._path = Path(path)
        self._platform = platform
        self._lock = threading.RLock()
        self._legacy_blob = False
        self._counter: MonotonicCounter | None = None
        #: The counter's value as last seen, or None when unknown (a step may be missing).
        self._counter_value: int | None = None
        self._contents = self._read()
        if self._legacy_blob:
            self._update()  # rewrite a store of sealed format 1 or contents format 1

    @property
    def path(self) -> Path:
        return self._path

    # -- the workload key ---------------------------------------------------------------------

    def private_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The stored workload key, or None before :meth:`load_or_create_key`."""
        with self._lock:
            der = self._contents.key
        if der is None:
            return None
        try:
            key = serialization.load_der_private_key(der, password=None)
        except ValueError:
            raise SealingError(
                f"key store {self._path}: stored key does not parse", code="keystore_corrupt"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SealingError(
                f"key store {self._path}: stored key is not an EC key", code="keystore_corrupt"
            )
        return key

    def load_or_create_key(self) -> ec.EllipticCurvePrivateKey:
        """The workload's ECDSA P-256 key: the stored one, or a new one (stored before return)."""
        with self._lock:
            key = self.private_key()
            if key is None:
                key = ec.generate_private_key(ec.SECP256R1())
                self._update(key=_pkcs8(key), generation=self._contents.generation + 1)
            return key

    def rotate_key(self) -> ec.EllipticCurvePrivateKey:
        """Replace the key with a new one of the next generation and drop the certificate
        issued for the old one. The service never certifies the old key for this store again
        once it has certified the new one (module docstring)."""
        with self._lock:
            key = ec.generate_private_key(ec.SECP256R1())
            self._update(
                key=_pkcs8(key), cert=None, chain=(), generation=self._contents.generation + 1
            )
            return key

    def proof(self) -> KeyStoreProof:
        """This store's id and its key's generation, as the workload binds them in evidence.

        Raises :class:`UsageError` before the store holds a key.
        """
        with self._lock:
            c = self._contents
        if c.generation == 0:
            raise UsageError("the key store holds no key yet", code="usage")
        return KeyStoreProof(c.store_id, c.generation)

    @property
    def seq(self) -> int:
        """How many times the store was written."""
        with self._lock:
            return self._contents.seq

    # -- rollback: a freshness counter ---------------------------------------------------------

    def attach_counter(self, counter: MonotonicCounter) -> None:
        """Tie this store to ``counter`` (module docstring) and check it is not an older copy.

        Raises :class:`SealingError` ``keystore_rolled_back`` if the counter has moved past this
        store's state, ``keystore_counter_mismatch`` if the counter is behind it (reset, or
        another store's), and whatever the counter raises if it cannot be read.
        """
        with self._lock:
            value = counter.read()
            ctr = self._contents.ctr
            if ctr is None:
                if value != 0:
                    raise SealingError(
                        f"key store {self._path} was never tied to its freshness counter, but "
                        f"the counter is at {value}: this is an older copy of the store",
                        code="keystore_rolled_back",
                    )
            elif ctr < value:
                raise SealingError(
                    f"key store {self._path} is an older copy: its state goes with freshness "
                    f"counter value {ctr}, the counter is at {value}",
                    code="keystore_rolled_back",
                )
            elif ctr > value + 1:
                raise SealingError(
                    f"key store {self._path} is ahead of its freshness counter ({ctr} > "
                    f"{value} + 1): the counter was reset or is another store's",
                    code="keystore_counter_mismatch",
                )
            self._counter, self._counter_value = counter, value
            if ctr is None:
                self._update()  # ties the store: ctr = value + 1, then the counter steps
            else:
                self.sync_counter()

    def sync_counter(self) -> None:
        """Step the counter up to this store's state (a write whose step did not happen).

        Raises what the counter raises, or :class:`SealingError` ``keystore_counter_mismatch``.
        """
        with self._lock:
            counter, target = self._counter, self._contents.ctr
            if counter is None or target is None:
                return
            value = self._counter_value
            try:
                if value is None:
                    value = counter.read()
                while value < target:
                    value = counter.increment()
            except BaseException:
                self._counter_value = None
                raise
            self._counter_value = value
            if value != target:
                self._counter_value = None
                raise SealingError(
                    f"key store {self._path}: its freshness counter is at {value}, the store "
                    f"at {target}: another writer, or not this store's counter",
                    code="keystore_counter_mismatch",
                )

    @property
    def fresh(self) -> bool:
        """True when a freshness counter confirms the store's latest write."""
        with self._lock:
            return (
                self._counter is not None
                and self._counter_value is not None
                and self._counter_value == self._contents.ctr
            )

    @property
    def counter_attached(self) -> bool:
        with self._lock:
            return self._counter is not None

    @property
    def counter_label(self) -> str:
        """The label of this store's counter (``Platform.monotonic_counter``)."""
        with self._lock:
            return "veritee-keystore-" + self._contents.store_id.hex()

    # -- certificates -------------------------------------------------------------------------

    def save_certificate(
        self,
        pem: bytes,
        *,
        chain: Sequence[bytes] = (),
        ca_certificate: bytes | None = None,
    ) -> x509.Certificate:
        """Store the admission certificate (plus intermediates and, if given, the domain CA).

        Raises :class:`UsageError` if a PEM does not parse or the certificate is not for the
        stored key (call :meth:`load_or_create_key` first).
        """
        cert = _load_cert(pem, "admission certificate")
        for i, c in enumerate(chain):
            _load_cert(c, f"chain certificate {i}")
        if ca_certificate is not None:
            _load_cert(ca_certificate, "CA certificate")
        with self._lock:
            key = self.private_key()
            if key is None or _spki(key.public_key()) != _spki(cert.public_key()):
                raise UsageError(
                    "admission certificate is not for this key store's key",
                    code="certificate_key_mismatch",
                )
            changes: dict[str, Any] = {"cert": bytes(pem), "chain": tuple(bytes(c) for c in chain)}
            if ca_certificate is not None:
                changes["ca"] = bytes(ca_certificate)
            self._update(**changes)
        return cert

    def save_ca_certificate(self, pem: bytes) -> x509.Certificate:
        """Store the domain CA certificate (the trust anchor for attested channels)."""
        cert = _load_cert(pem, "CA certificate")
        with self._lock:
            self._update(ca=bytes(pem))
        return cert

    def certificate(self) -> x509.Certificate | None:
        """The stored admission certificate, or None."""
        with self._lock:
            pem = self._contents.cert
        return None if pem is None else self._parse_stored(pem, "admission certificate")

    def chain(self) -> list[x509.Certificate]:
        """Intermediate CA certificates stored with the admission certificate."""
        with self._lock:
            pems = self._contents.chain
        return [self._parse_stored(p, "chain certificate") for p in pems]

    def ca_certificate(self) -> x509.Certificate | None:
        """The stored domain CA certificate, or None."""
        with self._lock:
            pem = self._contents.ca
        return None if pem is None else self._parse_stored(pem, "CA certificate")

    def needs_renewal(self, now: datetime, margin: timedelta = DEFAULT_RENEWAL_MARGIN) -> bool:
        """True if there is no usable admission certificate at ``now`` + ``margin``.

        That is: no key or no certificate, a certificate for another key, a certificate not yet
        valid at ``now``, or one that expires within ``margin`` of ``now``.
        """
        if now.tzinfo is None:
            raise UsageError("now must be timezone-aware", code="naive_datetime")
        if margin < timedelta(0):
            raise UsageError("margin must not be negative")
        with self._lock:
            cert = self.certificate()
            key = self.private_key()
        if cert is None or key is None:
            return True
        if _spki(key.public_key()) != _spki(cert.public_key()):
            return True
        now = now.astimezone(UTC)
        return now < cert.not_valid_before_utc or now + margin >= cert.not_valid_after_utc

    # -- named items --------------------------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (replacing any previous value)."""
        _check_name(name)
        if not isinstance(data, bytes | bytearray):
            raise UsageError("key store items are bytes")
        with self._lock:
            items = dict(self._contents.items)
            items[name] = bytes(data)
            self._update(items=items)

    def get(self, name: str) -> bytes | None:
        """The bytes stored under ``name``, or None."""
        _check_name(name)
        with self._lock:
            return self._contents.items.get(name)

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if it was there."""
        _check_name(name)
        with self._lock:
            if name not in self._contents.items:
                return False
            items = dict(self._contents.items)
            del items[name]
            self._update(items=items)
            return True

    def names(self) -> list[str]:
        """Names of the stored items, sorted."""
        with self._lock:
            return sorted(self._contents.items)

    # -- file handling ------------------------------------------------------------------------

    def _parse_stored(self, pem: bytes, what: str) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise SealingError(
                f"key store {self._path}: stored {what} does not parse", code="keystore_corrupt"
            ) from None

    def _read(self) -> _Contents:
        try:
            with open(self._path, "rb") as f:
                blob = f.read(MAX_STORE_BYTES + 1)
        except FileNotFoundError:
            return _Contents()
        except OSError as exc:
            raise StorageError(
                f"key store {self._path} cannot be read: {exc.strerror}", code="keystore_io"
            ) from None
        if len(blob) > MAX_STORE_BYTES:
            raise SealingError(
                f"key store {self._path} is larger than {MAX_STORE_BYTES} bytes",
                code="keystore_corrupt",
            )
        try:
            raw = unseal(self._platform, blob, purpose=PURPOSE_KEYSTORE)
            legacy_blob = SealedHeader.from_bytes(blob).version == LEGACY_VERSION
        except SealingError as exc:
            raise SealingError(
                f"key store {self._path} does not unseal: {exc.message}; it was left untouched",
                code=exc.code,
            ) from None
        contents, legacy_contents = _Contents.from_cbor(raw, self._path)
        self._legacy_blob = legacy_blob or legacy_contents
        return contents

    def _update(self, **changes: Any) -> None:
        if self._counter is not None:
            base = self._contents.ctr if self._contents.ctr is not None else self._counter_value
            changes["ctr"] = (base or 0) + 1
        new = replace(self._contents, seq=self._contents.seq + 1, **changes)
        self._write(seal(self._platform, new.to_cbor(), purpose=PURPOSE_KEYSTORE))
        self._contents = new
        if self._counter is not None:
            try:
                self.sync_counter()
            except Exception as exc:  # the write stands; its step waits for sync_counter()
                log.warning(
                    "key store write not yet confirmed by its freshness counter (%s); "
                    "it is confirmed at the next sync",
                    getattr(exc, "code", type(exc).__name__),
                )

    def _write(self, blob: bytes) -> None:
        folder = self._path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # mkstemp creates the file 0600 with O_EXCL in the same folder (same file system).
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StorageError(
                f"key store {self._path} cannot be written: {exc.strerror}", code="keystore_io"
            ) from None


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LEN:
        raise UsageError(f"item names are 1..{MAX_NAME_LEN} characters", code="item_name_invalid")


#: What a key store that does not open says about it (Trust; :func:`open_workload_keystore`).
_NOT_OPENED_HINT = (
    "each measurement has its own key store under {root}, so no other version of the code wrote "
    "this file: it was modified or replaced (restore it from a backup, or move it away to start "
    "afresh with a new key), or it comes from another platform install. Data that must survive "
    "code upgrades: seal it with Trust(sealing='domain') (docs/sealing.md)"
)


def workload_keystore_path(store: Path, platform: Platform) -> Path:
    """Where ``Trust`` keeps the key store of ``platform``'s workload under the folder ``store``
    (module docstring): per measurement, profile and debug state when the platform's own key
    seals it, else ``<store>/keystore.bin``."""
    if platform.sealing_mode is not SealingMode.PLATFORM:
        return store / "keystore.bin"
    profile = platform.profile.value if platform.profile is not None else "unknown"
    folder = f"{platform.name}-{profile}{'-debug' if platform.debug else ''}-{platform.measurement.lower()}"
    return store / "keystores" / folder / "keystore.bin"


def open_workload_keystore(store: Path, platform: Platform) -> KeyStore:
    """Open (or start) the key store of ``platform``'s workload under ``store``
    (:func:`workload_keystore_path`).

    A ``<store>/keystore.bin`` of the earlier layout that this workload opens is moved into its
    folder; one that it does not open belongs to another measurement and is left alone. A key
    store in the workload's own folder that does not open raises :class:`SealingError` (its
    code from :func:`veritee.sdk.sealing.unseal`) saying what happened and what to do.
    """
    path = workload_keystore_path(store, platform)
    legacy = store / "keystore.bin"
    if path != legacy and not path.exists() and legacy.exists():
        try:
            KeyStore(legacy, platform)
        except SealingError:
            pass  # another measurement's (or another mode's): not ours to move
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(legacy, path)
            log.info("key store moved to its measurement's folder: %s", path.parent.name)
    if path != legacy:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return KeyStore(path, platform)
    except SealingError as exc:
        if path == legacy:
            raise
        raise SealingError(
            f"{exc.message}. " + _NOT_OPENED_HINT.format(root=store / "keystores"), code=exc.code
        ) from None
