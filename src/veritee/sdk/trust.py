"""``veritee.Trust``: port a program to a TEE with about six calls.

::

    trust = Trust("https://certifier:8400", ca_cert="domain_ca.pem", platform="simulated",
                  store="~/.local/state/myapp")
    trust.certify()                      # attest, get an admission certificate (kept until expiry)
    blob = trust.seal(b"state", context=b"state-v3")   # only this workload, this profile
                                         # (sealing="domain": also its upgrades; docs/sealing.md)
    trust.unseal(blob, context=b"state-v3")
    with trust.connect("peer", 9000, policy=ChannelPolicy.allow(measurements={...})) as conn: ...
    trust.serve("0.0.0.0", 9000, handler)  # peers: this measurement, platform and profile
    key = trust.get_secret("db-password")   # released only to attested workloads
    trust.logger.info("...")             # confidential log in staging/production
    uvicorn.run(app, ssl_context_factory=lambda c, d: trust.server_ssl_context(policy=...))
    trust.httpx_client(policy=ChannelPolicy.allow(...)).get("https://peer:8443/")
    trust.capture_logging()              # the app's loggers into the log (dev/testing too)

All network access goes through one ``httpx`` client; tests pass ``transport=`` to run the
service in-process.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import ssl
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.binding import KeyStoreProof, report_data_for, spki_der
from veritee.errors import (
    UsageError,
    VerificationError,
    VeriteeError,
)
from veritee.platforms.base import Platform, SealingMode
from veritee.platforms.measure import MeasureSpec
from veritee.profiles import Profile
from veritee.sdk import sealing
from veritee.sdk.domain_sealing import DomainReleasedPlatform
from veritee.sdk.http import error_from_problem, post_json
from veritee.sdk.keystore import open_workload_keystore
from veritee.sdk.revocation import RevocationCheck, ServiceRevocations
from veritee.sdk.secrets import DomainSealingKey
from veritee.tls import harden

if TYPE_CHECKING:
    from veritee.sdk.adapters import AdmissionContext
    from veritee.sdk.channel import ChannelPolicy
    from veritee.sdk.renewal import Renewal
    from veritee.sdk.service_check import ServiceVerifier

__all__ = ["Trust", "error_from_problem", "open_platform"]

_log = logging.getLogger("veritee.sdk")


def _default_platform_dir() -> Path:
    from veritee.platforms.simulated import default_directory

    return default_directory()


def _main_files(profile: Profile) -> list[Path]:
    """What ``measure=None`` measures: the main program's file, with a warning
    (``measured_file_is_launcher``) when that file is a launcher (flask, gunicorn, uvicorn,
    pytest, a console-script shim, ``python -m``) that would measure every app the same."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main:
        raise UsageError("cannot measure this program: pass measure=[files] or measurement=hex",
                         code="measure_target_missing")  # fmt: skip
    from veritee.platforms.measure import launcher_of

    launcher = launcher_of(main)
    if launcher is not None:
        if profile in (Profile.DEVELOPMENT, Profile.TESTING):
            _log.warning(
                "measured_file_is_launcher: the simulated platform measures %s, the launcher "
                "(%s), the same for every app it runs: pass Trust(measure=...) a package name, "
                "paths or a pyproject.toml",
                main,
                launcher,
            )
        else:
            _log.warning("measured_file_is_launcher")
    return [Path(main)]


def open_platform(
    platform: str | Platform,
    *,
    measurement: str | None = None,
    measure: MeasureSpec | None = None,
    profile: Profile | str | None = None,
    platform_dir: Path | None = None,
    tcti: str | None = None,
) -> Platform:
    """Return the platform driver for ``platform``: ``"auto"`` (detect the TEE; the simulated
    platform, with a warning, where there is none), ``"simulated"``, a hardware platform of
    :data:`veritee.platforms.detect.HARDWARE`, or a driver object.

    On hardware, ``profile`` is only checked against the one the hardware attests (a mismatch
    raises ``profile_mismatch``); ``platform_dir`` keeps driver state (a TPM's AK certificate
    and sealed objects); ``tcti`` names the TPM (default ``device:/dev/tpmrm0``).
    """
    if not isinstance(platform, str):
        return platform
    prof = Profile.parse(profile) if isinstance(profile, str) else profile
    from veritee.platforms.detect import (
        HARDWARE,
        Interfaces,
        default_state_dir,
        detect,
        open_hardware,
    )

    where = Interfaces(tcti=tcti)
    if platform == "auto":
        found = detect(where)
        if found is None:
            _log.warning("no TEE detected: using the SIMULATED platform (no hardware protection)")
            platform = "simulated"
        else:
            platform = found
    if platform != "simulated":
        if platform not in (*HARDWARE, "azure"):
            raise UsageError(
                f"unknown platform {platform!r}; known: auto, simulated, {', '.join(HARDWARE)}",
                code="platform_unknown",
            )
        hardware: Platform = open_hardware(platform, profile=prof, state_dir=platform_dir or default_state_dir(),
                                           where=where)  # fmt: skip
        return hardware
    prof = prof or Profile.DEVELOPMENT
    from veritee.platforms.measure import measure as measure_files
    from veritee.platforms.simulated import SimulatedPlatform

    if measurement is None:
        measurement = measure_files(measure if measure is not None else _main_files(prof))
    return SimulatedPlatform(
        platform_dir or _default_platform_dir(), measurement=measurement, profile=prof
    )


def _check_service_url(url: str, profile: Profile) -> None:
    """``https://`` always; plain ``http://`` only in the development profile.

    Over HTTP a host on the path sees and changes every request and answer: tokens, the
    certificate it is given, counter values. Released secrets stay safe (their envelopes are
    signed by the key broker and encrypted to the workload), but nothing else is.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "https":
        return
    if scheme == "http" and profile is Profile.DEVELOPMENT:
        _log.warning("the Certifier Service is reached over plain HTTP (development profile only)")
        return
    if scheme == "http":
        raise UsageError(
            f"a {profile.value} workload does not reach its Certifier Service over plain HTTP: "
            "use an https:// URL (veritee serve --tls)",
            code="service_url_insecure",
        )
    raise UsageError("the service URL must start with https:// (or http:// in development)",
                     code="service_url_insecure")  # fmt: skip


class Trust:
    """A workload's handle on its security domain.

    ``service_url`` must be ``https://`` (the service's certificate must chain to ``ca_cert``),
    except in the development profile, where ``http://`` is allowed with a warning.
    ``ca_cert`` is the domain CA (a PEM file, PEM bytes or a certificate): the only trust anchor
    for the service and for every peer.

    ``store`` is this workload's folder (``~`` expanded): its key store and admission
    certificate, one per measurement (a code edit starts a new one), and its confidential log
    (``logs/``; a restart continues it). ``platform`` is ``"auto"`` (the TEE found here, else
    the simulated platform with a warning), ``"simulated"``, a hardware platform
    (``"sev-snp"``, ``"tdx"``, ...) or a driver object; ``platform_dir`` (``~`` expanded) holds
    the simulated platform's key (default: ``$VERITEE_SIMULATED_DIR``, else
    ``~/.local/share/veritee/simulated-platform``; workloads and ``veritee platform-key`` must
    use the same one) or a hardware driver's state (a TPM's AK certificate); ``tcti`` names the
    TPM (default ``device:/dev/tpmrm0``). ``profile`` is ``development`` (the simulated
    platform's default), ``testing``, ``staging`` or ``production``; on hardware it is only
    checked against the attested one.

    ``timeout`` bounds each request to the service (seconds); ``renewal_margin`` is how long
    before expiry the admission certificate is renewed (at most a third of its validity);
    ``transport`` replaces the ``httpx`` transport (tests run the service in-process with it).

    On the simulated platform, ``measure`` says what is measured
    (:mod:`veritee.platforms.measure`, the same as ``veritee measure``): a package or module
    name (``measure="myapp"``), paths, a pyproject.toml (its ``[tool.veritee] measure`` list, or
    the project's package and lock files), or a list of these; bytecode and caches are skipped.
    Without it the main program's file is measured, with a warning
    (``measured_file_is_launcher``) when that is a launcher such as ``flask``, ``gunicorn``,
    ``uvicorn``, ``pytest``, a console script or ``python -m``. ``measurement`` (hex) gives the
    value itself. Hardware measures what it loads and ignores both.

    ``freshness`` protects the whole key store against rollback (docs/sealing.md): ``"platform"``
    ties it to the platform's monotonic counter (a TPM NV counter; :class:`UsageError`
    ``counter_unavailable`` where there is none), ``"service"`` to the counter the service keeps
    for it (from the first certification on; a store that holds a valid certificate is checked
    here, which reaches the service). An older copy of the store then raises
    :class:`SealingError` ``keystore_rolled_back``. ``"none"`` (the default): only the key's
    generation is protected, by the service, at certification.

    ``sealing`` chooses the key of :meth:`seal` (docs/sealing.md): ``"platform"``, the
    platform's own key, bound to this measurement (a code change loses the data);
    ``"domain"``, the key the domain's key broker releases to every measurement the policy admits
    under this workload's name and profile (it survives upgrades; fetched with fresh evidence at
    the first use, kept in memory only). ``"auto"`` (the default) is ``"platform"`` where the
    platform has a sealing key and ``"domain"`` where it has none (TDX, Arm CCA, Nitro). The key
    store (and the log's buffer key) is sealed with the platform's key where there is one, else
    with the domain-released key.

    ``tenant_key_secret`` names a secret of the domain's key broker that holds the tenant's
    public key (PEM; X25519, P-256 or P-384): the confidential log's key is sealed to it. The
    broker releases it only to this attested workload, so the host cannot substitute its own
    key. ``tenant_key`` (a key object or PEM) is the same without that protection: in staging
    and production the log then says so (VT-0104 on stderr), and with neither it says that
    nobody can read the log (VT-0105). In staging and production the host sees catalogue codes
    only: :mod:`veritee.sdk.confidential`.

    ``service_policy`` makes the workload verify its verifier (:mod:`veritee.sdk.service_check`):
    before the first request that relies on the service, the service's own evidence
    (``/v1/domain/evidence``, ``veritee serve --attest-self``) must be authentic, accepted by this
    appraisal policy (a :class:`veritee.appraisal.Policy`, its YAML text or a ``pathlib.Path``:
    the service's allowed measurements and platform keys) and bind the domain CA key of
    ``ca_cert``, every key of its JWKS and the TLS key it presents; else every call raises
    :class:`~veritee.errors.VerificationError` (``service_evidence_missing``,
    ``service_evidence_refused``, ``service_measurement_not_allowed``, ``service_binding_mismatch``,
    ``service_evidence_stale``). The verified proof (:attr:`service`) is kept until the keys
    rotate; :meth:`verify_token` checks a token of the service with it.

    ``appraisal_policy`` names the appraisal policy the service appraises this workload under (a
    domain holds several; by default the first in force that admits it decides). A refusal then
    names that policy in the ``veritee admit`` command that would admit this version.
    """

    def __init__(
        self,
        service_url: str,
        ca_cert: str | os.PathLike[str] | bytes | x509.Certificate,
        *,
        platform: str | Platform = "auto",
        store: str | os.PathLike[str],
        measurement: str | None = None,
        measure: MeasureSpec | None = None,
        profile: Profile | str | None = None,
        platform_dir: str | os.PathLike[str] | None = None,
        tcti: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        renewal_margin: dt.timedelta = dt.timedelta(minutes=5),
        tenant_key: Any = None,
        tenant_key_secret: str | None = None,
        freshness: Literal["none", "service", "platform"] = "none",
        sealing: Literal["auto", "platform", "domain"] = "auto",
        appraisal_policy: str | None = None,
        service_policy: Any = None,
    ) -> None:
        #: The named appraisal policy this workload is appraised under (None: the first in force
        #: that admits it); it is also the one a refusal's hint names.
        self.appraisal_policy = appraisal_policy
        self.ca_certificate = self._load_ca(ca_cert)
        self.platform = open_platform(
            platform,
            measurement=measurement,
            measure=measure,
            profile=profile,
            platform_dir=Path(platform_dir).expanduser() if platform_dir else None,
            tcti=tcti,
        )
        _check_service_url(service_url, self.platform.profile)
        #: The sealing mode of :meth:`seal`: ``"platform"`` or ``"domain"`` (class docstring).
        self.sealing = self._sealing_mode(sealing)
        self._domain_sealing = DomainReleasedPlatform(self.platform, self._fetch_sealing_key)
        #: What seals the SDK's own keys: the platform where it has a key, else the domain's.
        self._own_sealing: Platform = (
            self.platform
            if self.platform.sealing_mode is SealingMode.PLATFORM
            else self._domain_sealing
        )
        self.store_path = Path(store).expanduser()
        self.store_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        verify: ssl.SSLContext | bool = True
        if service_url.startswith("https://"):
            ctx = harden(ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH))  # AEAD only
            ctx.load_verify_locations(
                cadata=self.ca_certificate.public_bytes(serialization.Encoding.PEM).decode()
            )
            verify = ctx
        #: The check of the service's own evidence (``service_policy``), or None.
        self.service: ServiceVerifier | None = None
        if service_policy is not None and transport is None and isinstance(verify, ssl.SSLContext):
            from veritee.sdk.service_check import BoundTlsTransport

            # every connection's TLS key is held to the one the service's evidence binds
            later = _Later(self)
            transport = BoundTlsTransport(
                httpx.HTTPTransport(verify=verify), later.check_tls, later.fetching
            )
        self._http = httpx.Client(base_url=service_url, transport=transport, timeout=timeout, verify=verify,
                                  event_hooks={"request": [self._verify_service]})  # fmt: skip
        if service_policy is not None:
            from veritee.sdk.service_check import ServiceVerifier

            self.service = ServiceVerifier(self._http, self.ca_certificate, service_policy)
        #: What :meth:`connect` and :meth:`serve` check peers against: the service's CRL,
        #: fetched at most every 30 s (:class:`veritee.sdk.revocation.ServiceRevocations`).
        #: Replace it with a :class:`~veritee.sdk.revocation.RevocationList` given another way.
        self.revocations: RevocationCheck = ServiceRevocations(self._http, self.ca_certificate)
        #: Per measurement where the platform's key seals it (keystore.open_workload_keystore).
        self.keystore = open_workload_keystore(self.store_path, self._own_sealing)
        self.renewal_margin = renewal_margin
        from veritee.sdk.confidential import parse_tenant_key

        self._tenant_key = parse_tenant_key(tenant_key) if tenant_key is not None else None
        self._tenant_key_secret = tenant_key_secret
        self._workload_log: Any = None
        self._containment: Any = None
        self._servers: list[Any] = []
        #: TLS contexts of the adapters (server_ssl_context, client_ssl_context): renewed too,
        #: while someone holds them (a client made per request is not kept alive here).
        self._contexts: weakref.WeakSet[AdmissionContext] = weakref.WeakSet()
        self._certify_lock = threading.RLock()
        self._renewal: Renewal | None = None
        self.freshness = freshness
        if not self.platform.profile.free_form_to_host:
            from veritee.sdk.confidential import contain

            self._containment = contain(self._open_log(attach=False))
        self._attach_counter(at_start=True)

    def _sealing_mode(self, sealing: str) -> Literal["platform", "domain"]:
        has_key = self.platform.sealing_mode is SealingMode.PLATFORM
        if sealing == "auto":
            return "platform" if has_key else "domain"
        if sealing == "domain":
            return "domain"
        if sealing == "platform":
            if not has_key:
                raise UsageError(
                    f"platform {self.platform.name!r} has no sealing key: use sealing='domain' "
                    "(or 'auto'), the key broker's domain-released key",
                    code="sealing_key_unavailable",
                )
            return "platform"
        raise UsageError("sealing is 'auto', 'platform' or 'domain'", code="sealing_mode_invalid")

    def _fetch_sealing_key(self) -> DomainSealingKey:
        """The domain-released sealing key, with fresh evidence (:class:`DomainReleasedPlatform`)."""
        from veritee.sdk.secrets import fetch_sealing_key

        self._ensure_enrolled()
        with self._explaining():
            return fetch_sealing_key(self._http, self.platform, ca_certificate=self.ca_certificate,
                                     policy=self.appraisal_policy)  # fmt: skip

    def _attach_counter(self, *, at_start: bool) -> None:
        """Tie the key store to its freshness counter (class docstring), or bring it up to date."""
        if self.freshness == "none":
            return
        if self.freshness == "platform":
            if at_start:
                counter = self.platform.monotonic_counter(self.keystore.counter_label)
                if counter is None:
                    raise UsageError(
                        f"platform {self.platform.name!r} has no monotonic counter: use "
                        "freshness='service'",
                        code="counter_unavailable",
                    )
                self.keystore.attach_counter(counter)
            return
        if self.freshness != "service":
            raise UsageError("freshness is 'none', 'service' or 'platform'")
        if self.keystore.counter_attached:
            self.keystore.sync_counter()
            return
        now = dt.datetime.now(dt.UTC)
        if at_start and self.keystore.needs_renewal(now, dt.timedelta(0)):
            return  # no valid certificate yet: tied at the first certify()
        from veritee.sdk.freshness import ServiceCounter

        self.keystore.attach_counter(ServiceCounter(self._http, self.keystore, self.ca_certificate))

    @staticmethod
    def _load_ca(ca: str | os.PathLike[str] | bytes | x509.Certificate) -> x509.Certificate:
        if isinstance(ca, x509.Certificate):
            return ca
        data = ca if isinstance(ca, bytes) else Path(ca).expanduser().read_bytes()
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError:
            raise UsageError("ca_cert is not a PEM certificate") from None

    # --- HTTP ---------------------------------------------------------------------------
    def _verify_service(self, request: httpx.Request) -> None:
        """Before every request to the service (but those that fetch its proof): its evidence
        verified (``service_policy``; cached until its keys rotate)."""
        service = getattr(self, "service", None)
        if service is not None and not service.fetching():
            service.check()

    def verify_token(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """Check an EAR token of the service (:func:`veritee.tokens.decode_ear`) with a key its
        verified evidence binds (needs ``service_policy``); ``audience`` defaults to the issuer."""
        if self.service is None:
            raise UsageError("verify_token needs Trust(service_policy=...): without it, check tokens with "
                             "veritee.tokens.decode_ear and the domain's token key")  # fmt: skip
        return self.service.verify_token(token, audience=audience)

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._explaining():
            return post_json(self._http, path, body)

    def _explaining(self) -> Any:
        """A refusal a policy entry would lift says which (:mod:`veritee.sdk.refusals`)."""
        from veritee.sdk.refusals import explaining

        return explaining(
            self.platform, str(self._http.base_url).rstrip("/"), policy=self.appraisal_policy
        )

    def challenge(self) -> bytes:
        return bytes.fromhex(self._post("/v1/challenge")["nonce"])

    def evidence_for(
        self,
        nonce: bytes,
        public_key: ec.EllipticCurvePublicKey | None,
        key_store: KeyStoreProof | None = None,
    ) -> bytes:
        """Evidence whose report data binds ``nonce``, ``public_key`` (or no key), the profile
        this workload runs as and ``key_store`` (:func:`veritee.binding.report_data_for`)."""
        spki = spki_der(public_key) if public_key is not None else b""
        return self.platform.evidence(
            report_data_for(nonce, spki, profile=self.platform.profile, key_store=key_store)
        )

    def _ensure_enrolled(self) -> None:
        """A TPM without an AK certificate enrolls with the service first (EK certificate,
        MakeCredential/ActivateCredential, AK certificate from the domain CA)."""
        if getattr(self.platform, "needs_enrollment", False):
            from veritee.sdk.tpm_enroll import enroll

            enroll(self._http, self.platform, self.ca_certificate)  # type: ignore[arg-type]

    # --- the six calls --------------------------------------------------------------------
    def certify(self, *, force: bool = False) -> x509.Certificate:
        """Get (or reuse, until it nears expiry) an admission certificate for this workload.

        A stored certificate is reused until ``renewal_margin`` before its expiry (at most a
        third of its validity before: short-lived certificates are not renewed at every call).
        """
        with self._certify_lock:
            return self._certify(force)

    def _certify(self, force: bool) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        key = self.keystore.load_or_create_key()
        cert = self.keystore.certificate()
        if (
            cert is not None
            and not force
            and not self.keystore.needs_renewal(now, self._reuse_margin(cert))
            and self._certifies_this_workload(cert)
        ):
            return cert
        self._ensure_enrolled()
        nonce = self.challenge()
        proof = self.keystore.proof()
        evidence = self.evidence_for(nonce, key.public_key(), proof)
        resp = self._post(
            "/v1/certify",
            {
                "evidence": base64.b64encode(evidence).decode(),
                "nonce": nonce.hex(),
                "key_store": proof.to_json(),
                "format": self.platform.name,
                "public_key": key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode(),
            }
            | self._named_policy(),
        )
        pem = resp["certificate"].encode()
        issued = x509.load_pem_x509_certificate(pem)
        self._check_issued(issued, key)
        self.keystore.save_certificate(
            pem, ca_certificate=self.ca_certificate.public_bytes(serialization.Encoding.PEM)
        )
        self._attach_counter(at_start=False)
        self.last_token = str(resp.get("token", ""))
        if self.service is not None and self.last_token:
            self.service.verify_token(
                self.last_token
            )  # signed by a key the service's evidence binds
        self._attach_log()
        # Attested servers already running present the renewed certificate from now on.
        for server in (*self._servers, *list(self._contexts)):
            server.update_credentials(key=key, cert=issued, ca_cert=self.ca_certificate)
        if self._renewal is not None:
            self._renewal.seen(issued)
        return issued

    def _reuse_margin(self, cert: x509.Certificate) -> dt.timedelta:
        return min(self.renewal_margin, (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3)

    def renew_in_background(
        self, *, first_retry: float | None = None, max_retry: float | None = None
    ) -> Renewal:
        """Keep the admission certificate valid from a daemon thread (:mod:`veritee.sdk.renewal`):
        renewed at two thirds of its remaining validity, retried with backoff from
        ``first_retry`` seconds (doubling, up to ``max_retry``) while the service is down or
        refuses; running servers present the renewed one to new connections. :meth:`serve`
        starts it; call it yourself to keep a client's certificate fresh. Returns the
        :class:`~veritee.sdk.renewal.Renewal` (one per ``Trust``; later calls return it)."""
        from veritee.sdk import renewal

        with self._certify_lock:
            if self._renewal is None:
                self._renewal = renewal.Renewal(
                    lambda: self.certify(force=True),
                    self.certify(),
                    url=str(self._http.base_url),
                    first_retry=renewal.FIRST_RETRY if first_retry is None else first_retry,
                    max_retry=renewal.MAX_RETRY if max_retry is None else max_retry,
                ).start()
            return self._renewal

    @property
    def renewal(self) -> Renewal | None:
        """The background renewal (:meth:`renew_in_background`), once started."""
        return self._renewal

    def _certifies_this_workload(self, cert: x509.Certificate) -> bool:
        """Does the stored certificate name this measurement? A key store sealed with the
        domain-released key opens after an upgrade too, holding the certificate of the previous
        measurement: that one is renewed, never presented. (A platform-sealed store opens only
        for the measurement that sealed it.)"""
        if self._own_sealing is self.platform:
            return True
        from veritee.admission import AdmissionInfo

        try:
            info = AdmissionInfo.from_certificate(cert)
        except VeriteeError:
            return False
        return info.measurement.lower() == self.platform.measurement.lower()

    def _check_issued(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if spki_der(cert.public_key()) != spki_der(key.public_key()):
            raise VerificationError(
                "the service certified another key", code="certificate_key_mismatch"
            )
        try:
            cert.verify_directly_issued_by(self.ca_certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise VerificationError(
                "admission certificate is not issued by the domain CA",
                code="certificate_wrong_issuer",
            ) from None

    def attest(self) -> dict[str, Any]:
        """Attest without a key: returns the service's answer with its EAR ``token``."""
        self._ensure_enrolled()
        nonce = self.challenge()
        ev = self.evidence_for(nonce, None)
        return self._post(
            "/v1/attest",
            {
                "evidence": base64.b64encode(ev).decode(),
                "nonce": nonce.hex(),
                "format": self.platform.name,
            }
            | self._named_policy(),
        )

    def _named_policy(self) -> dict[str, str]:
        return {} if self.appraisal_policy is None else {"policy": self.appraisal_policy}

    def seal(
        self, data: bytes, *, context: bytes = b"", purpose: str = sealing.PURPOSE_APP
    ) -> bytes:
        """Encrypt ``data`` so that only this workload (measurement, profile, debug state, on this
        platform) can unseal it, for ``purpose`` and ``context``. With ``sealing="domain"``:
        every measurement the domain's policy admits under this workload's name and profile
        (its upgrades), on this platform; the first call fetches the key from the key broker
        (its refusal is raised: :class:`~veritee.errors.VerificationError` ``sealing_key_denied``).

        ``context`` is associated data, authenticated but not stored: pass what the blob belongs
        to (a file name, a record id, a version) and give the same to :meth:`unseal`, so that a
        blob put in another place does not open there. ``purpose`` names the use (``app`` by
        default); names starting with ``veritee`` are reserved for the SDK's own keys.
        """
        keys = self.platform if self.sealing == "platform" else self._domain_sealing
        return sealing.seal(keys, data, purpose=sealing.check_app_purpose(purpose), context=context)

    def unseal(
        self, blob: bytes, *, context: bytes = b"", purpose: str = sealing.PURPOSE_APP
    ) -> bytes:
        """Decrypt a blob from :meth:`seal` with the same ``purpose`` and ``context``.

        A blob opens with the key of the mode it was sealed in (its header says which), whatever
        ``sealing`` is now: to move data from platform-bound to domain-released sealing, unseal
        and seal again. A domain-released blob fetches the key at its first use (the key
        broker's refusal is raised: :class:`~veritee.errors.VerificationError`
        ``sealing_key_denied``, when the policy no longer admits this measurement).

        Raises :class:`~veritee.errors.SealingError` for anything else, including the SDK's own
        sealed keys (key store, log buffer), which are never opened here.
        """
        purpose = sealing.check_app_purpose(purpose)
        keys: Platform = self.platform
        if isinstance(blob, bytes | bytearray | memoryview):
            hdr = sealing.SealedHeader.from_bytes(bytes(blob))
            if hdr.mode is SealingMode.DOMAIN_RELEASED:
                keys = self._domain_sealing
        return sealing.unseal(keys, blob, purpose=purpose, context=context)

    def _credentials(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        cert = self.certify()
        key = self.keystore.private_key()
        if key is None:  # pragma: no cover - certify() creates it
            raise UsageError("no workload key")
        return key, cert

    def connect(
        self,
        host: str,
        port: int,
        *,
        policy: ChannelPolicy | None = None,
        allowed_measurements: Iterable[str] | None = None,
        allowed_platforms: Iterable[str] | None = None,
        allowed_profiles: Iterable[Profile | str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Open an attested mutual-TLS connection to a peer this workload's policy admits and
        the domain has not revoked (:attr:`revocations`).

        ``policy`` is a :class:`veritee.sdk.channel.ChannelPolicy` (or give the ``allowed_*``
        keywords); whatever it leaves open must be the same as this workload's own: by default
        the peer runs this measurement on this platform in this profile.
        """
        from veritee.sdk import channel

        key, cert = self._credentials()
        return channel.connect(
            host,
            port,
            key=key,
            cert=cert,
            ca_cert=self.ca_certificate,
            policy=policy,
            allowed_measurements=allowed_measurements,
            allowed_platforms=allowed_platforms,
            allowed_profiles=allowed_profiles,
            timeout=timeout,
            revocations=self.revocations,
        )

    def serve(
        self,
        host: str,
        port: int,
        handler: Callable[[Any], None],
        *,
        policy: ChannelPolicy | None = None,
        allowed_measurements: Iterable[str] | None = None,
        allowed_platforms: Iterable[str] | None = None,
        allowed_profiles: Iterable[Profile | str] | None = None,
    ) -> Any:
        """Start an attested mutual-TLS server (returns it started; ``.stop()`` to end), and
        the background renewal of the admission certificate it presents
        (:meth:`renew_in_background`).

        Whom it admits: ``policy`` or the ``allowed_*`` keywords, as for :meth:`connect`; never
        a peer the domain has revoked (:attr:`revocations`).
        """
        from veritee.sdk import channel

        key, cert = self._credentials()
        server = channel.serve(
            host,
            port,
            handler,
            key=key,
            cert=cert,
            ca_cert=self.ca_certificate,
            policy=policy,
            allowed_measurements=allowed_measurements,
            allowed_platforms=allowed_platforms,
            allowed_profiles=allowed_profiles,
            revocations=self.revocations,
        )
        server.start()
        self._servers.append(server)
        self.renew_in_background()
        return server

    # --- adapters: HTTP apps and clients over admitted TLS (veritee.sdk.adapters) ----------
    def server_ssl_context(
        self,
        *,
        policy: ChannelPolicy | None = None,
        on_refusal: Callable[[VerificationError], None] | None = None,
    ) -> AdmissionContext:
        """An :class:`ssl.SSLContext` for an HTTP server (uvicorn, aiohttp, werkzeug, gunicorn)
        that presents this workload's admission certificate and admits only clients that chain
        to the domain CA, that ``policy`` allows (as for :meth:`serve`: what it leaves open is
        "the same as mine") and the domain has not revoked (:mod:`veritee.sdk.adapters`)::

            uvicorn.run(app, host="0.0.0.0", port=8443,
                        ssl_context_factory=lambda config, default: trust.server_ssl_context(
                            policy=ChannelPolicy.allow(measurements={client_m})))

        Starts the background renewal (:meth:`renew_in_background`); the context presents the
        renewed certificate to new connections. ``on_refusal(error)`` sees each refused client.
        """
        from veritee.sdk.adapters import AdmissionContext

        key, cert = self._credentials()
        ctx = AdmissionContext.create(True, key=key, cert=cert, ca_cert=self.ca_certificate, policy=policy,
                                      revocations=self.revocations, on_refusal=on_refusal)  # fmt: skip
        self._contexts.add(ctx)
        self.renew_in_background()
        return ctx

    def client_ssl_context(self, *, policy: ChannelPolicy | None = None) -> AdmissionContext:
        """An :class:`ssl.SSLContext` for an HTTP client (``httpx.Client(verify=...)``,
        ``httpx.AsyncClient(verify=...)``) that presents this workload's admission
        certificate and refuses, before any request is sent, a server that does not chain to
        the domain CA, that ``policy`` does not allow, or that the domain revoked: raising
        :class:`~veritee.errors.VerificationError` with the reason code. Renewals made by this
        ``Trust`` reach it (call :meth:`renew_in_background` in a long-lived client)."""
        from veritee.sdk.adapters import AdmissionContext

        key, cert = self._credentials()
        ctx = AdmissionContext.create(False, key=key, cert=cert, ca_cert=self.ca_certificate, policy=policy,
                                      revocations=self.revocations)  # fmt: skip
        self._contexts.add(ctx)
        return ctx

    def httpx_transport(
        self, *, policy: ChannelPolicy | None = None, **kwargs: Any
    ) -> httpx.HTTPTransport:
        """An ``httpx.HTTPTransport`` over :meth:`client_ssl_context` (``kwargs`` go to it)."""
        return httpx.HTTPTransport(verify=self.client_ssl_context(policy=policy), **kwargs)

    def httpx_client(self, *, policy: ChannelPolicy | None = None, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` whose every connection goes through :meth:`httpx_transport`
        (``kwargs`` go to the client: ``base_url``, ``timeout``, ...)::

            with trust.httpx_client(policy=ChannelPolicy.allow(measurements={server_m})) as c:
                c.get("https://10.0.0.5:8443/items")   # VerificationError if not admitted
        """
        return httpx.Client(transport=self.httpx_transport(policy=policy), **kwargs)

    def capture_logging(self) -> None:
        """Route the application's loggers (the root logger and all that propagate to it),
        Python warnings and uncaught exceptions (main thread and others) into this workload's
        confidential log (:func:`veritee.sdk.confidential.contain`). Staging and production do
        this as :class:`Trust` starts; call it in development or testing to get the same log
        there (plaintext on stderr in those profiles). Records pass the levels the app set
        (the root logger's default is WARNING). :meth:`close` puts everything back. Calling it
        again does nothing."""
        if self._containment is None:
            from veritee.sdk.confidential import contain

            self._containment = contain(self._open_log(attach=False))

    def get_secret(self, name: str, *, with_certificate: bool = False) -> bytes:
        """Fetch a secret the key broker releases only to workloads its policy admits.

        By default the workload proves fresh evidence. With ``with_certificate=True`` it
        presents its admission certificate (certifying first if needed) and a fresh proof of
        possession of the certified key instead: cheaper, and the release policy then sees the
        claims the certificate carries (platform, measurement, profile).
        """
        from veritee.sdk.secrets import fetch_secret, fetch_secret_certified

        if not with_certificate:
            self._ensure_enrolled()
            with self._explaining():
                return fetch_secret(
                    self._http, self.platform, name, ca_certificate=self.ca_certificate
                )
        key, cert = self._credentials()
        return fetch_secret_certified(
            self._http,
            key,
            cert.public_bytes(serialization.Encoding.PEM),
            name,
            ca_certificate=self.ca_certificate,
        )

    def _open_log(self, *, attach: bool = True) -> Any:
        """The workload's confidential log, opened on first use (in staging and production as
        :class:`Trust` starts: :mod:`veritee.sdk.confidential`).

        Before this workload holds an admission certificate the log buffers records sealed to
        the platform (the control plane is not up yet); :meth:`certify`, or the first use with
        a valid certificate, attaches the admission-certified key, which signs the log's tree
        heads from then on. Catalogue notices go to the host's stderr.
        """
        if self._workload_log is None:
            from veritee.logs import open_workload_log
            from veritee.sdk.confidential import HOST_STDERR

            log_id = f"{self.platform.name}-{self.platform.measurement[:16]}"
            sealer = sealing.Sealer(self._own_sealing, sealing.PURPOSE_LOG_PENDING)
            self._workload_log = open_workload_log(
                profile=self.platform.profile,
                directory=self.store_path / "logs" / log_id,
                signing_key=None,
                tenant_public_key=None,
                seal=sealer.seal,
                unseal=sealer.unseal,
                log_id=log_id,
                host_stream=HOST_STDERR,
            )
        if (
            attach
            and not self._workload_log.attached
            and not self.keystore.needs_renewal(dt.datetime.now(dt.UTC), dt.timedelta(0))
        ):
            self._attach_log()
        return self._workload_log

    @property
    def logger(self) -> logging.Logger:
        """A logger whose records go to this workload's confidential log.

        In development/testing records are written in plaintext; in staging/production they
        are encrypted, appended to a signed Merkle log in ``<store>/logs/<log id>/`` (the host
        keeps the segments, unreadable), and only catalogue codes reach stderr. Every start of
        the workload on the same store continues that log in a new run folder ``run-NNNNNN``
        (with ``tenant_key``, its log key sealed to the tenant beside it), which names the run
        before it; records held before :meth:`certify` by a start that crashed are replayed.
        """
        log: logging.Logger = self._open_log().logger("veritee.workload")
        return log

    @property
    def workload_log(self) -> Any:
        """The :class:`veritee.logs.WorkloadLog` behind :attr:`logger`."""
        return self._open_log()

    def _attach_log(self) -> None:
        """Start the signed log with the certified key, the log key sealed to the tenant; put
        the admission certificate beside the run (``admission.pem``) for the tenant."""
        log = self._workload_log
        key = self.keystore.private_key()
        if log is None or key is None:
            return
        if not log.attached:
            log.attach_control_plane(key, self._log_tenant_key())
            self._announce_tenant_key(log)
        cert = self.keystore.certificate()
        if cert is not None:  # beside every run this process writes (forked children's too)
            log.set_certificate(cert.public_bytes(serialization.Encoding.PEM))

    def _log_tenant_key(self) -> Any:
        """The key the log key is sealed to: from the released secret ``tenant_key_secret``
        (the host cannot substitute it), else the ``tenant_key`` argument."""
        if self._tenant_key_secret is not None:
            from veritee.sdk.confidential import parse_tenant_key

            return parse_tenant_key(self.get_secret(self._tenant_key_secret, with_certificate=True))
        return self._tenant_key

    def _announce_tenant_key(self, log: Any) -> None:
        """In staging and production a tenant key given as an argument is VT-0104 (a host-chosen
        key reads the log), and none at all VT-0105: in the log, and as a code on stderr."""
        if self._tenant_key_secret is not None or not self.platform.profile.encrypts_logs:
            return
        if self._tenant_key is None:
            level, state, msg = logging.ERROR, "VT-0105", (
                "the confidential log is sealed to no tenant key: nobody can read it; give "
                "Trust(tenant_key_secret=...)")  # fmt: skip
        else:
            level, state, msg = logging.WARNING, "VT-0104", (
                "the log's tenant key is a constructor argument, which the host may have "
                "chosen; give Trust(tenant_key_secret=...)")  # fmt: skip
        # straight to this log's handler: no logger's configuration is touched
        log.handler.handle(logging.makeLogRecord({
            "name": _log.name, "levelno": level, "levelname": logging.getLevelName(level),
            "msg": msg, "catalogue_code": state}))  # fmt: skip

    def close(self) -> None:
        """Stop renewal, servers and the log, and put logging and the hooks back. Called while
        an exception propagates (a ``finally:`` or ``except:`` block), in staging and
        production it treats that exception as :meth:`__exit__` does."""
        self._close(sys.exc_info()[1])

    def _close(self, leaving: BaseException | None) -> None:
        contained = self._containment is not None and not self.platform.profile.free_form_to_host
        if contained and isinstance(leaving, Exception):
            logging.getLogger("veritee.uncaught").error("exception leaving Trust", exc_info=leaving)
        if self._renewal is not None:
            self._renewal.stop()
        for server in self._servers:
            server.stop()
        self._servers.clear()
        self._contexts.clear()
        if self._workload_log is not None:
            self._workload_log.close()
        if self._containment is not None:
            self._containment.release()
            self._containment = None
        self._http.close()
        if contained and isinstance(leaving, Exception):
            _show_code_only(leaving, self.platform.profile)

    def __enter__(self) -> Trust:
        return self

    def __exit__(
        self, etype: type[BaseException] | None, value: BaseException | None, tb: Any
    ) -> None:
        """Close. In staging and production an exception leaving the block goes into the log
        first, and if nothing catches it the host is shown its catalogue code only (``close``
        has put the interpreter's hooks back by the time Python would print it)."""
        self._close(value)


class _Later:
    """The ``Trust``'s :class:`ServiceVerifier`, made after the client it checks (a cycle)."""

    def __init__(self, trust: Trust) -> None:
        self._trust = weakref.ref(trust)

    def check_tls(self, key: Any) -> None:
        trust = self._trust()
        if trust is not None and trust.service is not None:
            trust.service.check_tls(key)

    def fetching(self) -> bool:
        trust = self._trust()
        return trust is None or trust.service is None or trust.service.fetching()


def _show_code_only(leaving: BaseException, profile: Profile) -> None:
    """If ``leaving`` ends up uncaught (main thread or another), write its catalogue code to the
    host's stderr instead of its traceback; other exceptions go to the hooks as before."""
    from veritee.logs.catalogue import public_message

    previous, previous_thread = sys.excepthook, threading.excepthook

    def hook(etype: type[BaseException], value: BaseException, tb: Any) -> None:
        if value is leaving:
            sys.stderr.write(f"veritee: {public_message(value, profile)}\n")
        else:
            previous(etype, value, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is leaving:
            sys.stderr.write(f"veritee: {public_message(args.exc_value, profile)}\n")
        else:
            previous_thread(args)

    sys.excepthook, threading.excepthook = hook, thread_hook
