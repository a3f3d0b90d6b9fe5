"""configfs-tsm: the driver against a FUSE directory that behaves like the kernel's; its SNP, TDX
and CCA outputs go through the matching verifiers."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fakes import tee
from tests.fakes.configfs_tsm import fuse_available, mounted

from veritee.binding import profile_launch_data
from veritee.collateral import Collateral
from veritee.errors import MalformedError, PlatformError, SealingError, UsageError
from veritee.evidence import cca, sev_snp, tdx
from veritee.platforms import configfs_tsm
from veritee.platforms.base import Platform, SealingMode
from veritee.platforms.configfs_tsm import CcaPlatform, get_report, parse_cert_table
from veritee.platforms.sev_guest import SevSnpPlatform
from veritee.platforms.tdx_guest import TdxPlatform
from veritee.profiles import Profile

pytestmark = pytest.mark.attester
NO_DEVICE = Path("/nonexistent/dev")
RD = bytes(range(64))


def _needs_fuse() -> None:
    why = fuse_available()
    if why:
        pytest.skip(f"configfs-tsm fixture needs FUSE: {why}")


@pytest.fixture(scope="module")
def snp_maker() -> tee.Maker:
    return tee.snp()


def test_snp_report_and_certificate_table_verify(snp_maker: tee.Maker) -> None:
    _needs_fuse()
    with mounted("sev_guest", snp_maker.generate) as fs:
        got = get_report(RD, root=fs.root)
        assert got.provider == "sev_guest" and got.format == "sev-snp" and got.attempts == 1
        certs = parse_cert_table(got.auxblob)
        assert set(certs) == {"vcek.der", "ask.der", "ark.der"}
        # The host's VCEK (from auxblob) is what the verifier needs besides the pinned chain.
        collateral = Collateral.from_blobs(certs.items())
        ev = sev_snp.verify(
            got.outblob, collateral=collateral, trust=snp_maker.trust, at=snp_maker.at
        )
        assert ev.claims["report_data"] == RD.hex()
        assert os.listdir(fs.root) == []  # the entry is removed


def test_snp_platform_evidence_and_collateral(snp_maker: tee.Maker) -> None:
    _needs_fuse()
    with mounted("sev_guest", snp_maker.generate) as fs:
        platform = SevSnpPlatform(tsm_root=fs.root, device=NO_DEVICE)
        report = platform.evidence(RD)
        files = platform.collateral()
        ev = sev_snp.verify(report, collateral=Collateral.from_blobs(files.items()),
                            trust=snp_maker.trust, at=snp_maker.at)  # fmt: skip
        assert ev.claims["report_data"] == RD.hex()
        assert platform.measurement == ev.claims["measurement"]
        assert platform.profile is Profile.DEVELOPMENT  # HOST_DATA binds none
        assert isinstance(platform, Platform) and platform.sealing_mode is SealingMode.PLATFORM
        with pytest.raises(PlatformError) as e:
            platform.sealing_key(b"x")  # the derived key needs /dev/sev-guest
        assert e.value.code == "platform_absent"


def test_snp_privlevel_is_written_and_counted(snp_maker: tee.Maker) -> None:
    _needs_fuse()
    with mounted("sev_guest", snp_maker.generate) as fs:
        got = get_report(RD, privlevel=2, root=fs.root)
        assert got.generation == 2 and got.attempts == 1


def test_profile_comes_from_host_data_never_from_the_caller() -> None:
    _needs_fuse()
    maker = tee.snp(host_data=profile_launch_data(Profile.PRODUCTION, 32))
    with mounted("sev_guest", maker.generate) as fs:
        assert SevSnpPlatform(tsm_root=fs.root, device=NO_DEVICE).profile is Profile.PRODUCTION
        with pytest.raises(UsageError) as e:
            _ = SevSnpPlatform(
                profile=Profile.DEVELOPMENT, tsm_root=fs.root, device=NO_DEVICE
            ).profile
        assert e.value.code == "profile_mismatch"
    debug = tee.snp(host_data=profile_launch_data(Profile.PRODUCTION, 32), policy=0x30000 | 1 << 19)
    with mounted("sev_guest", debug.generate) as fs:
        platform = SevSnpPlatform(tsm_root=fs.root, device=NO_DEVICE)
        assert platform.debug and platform.profile is Profile.DEVELOPMENT
        with pytest.raises(UsageError):
            _ = SevSnpPlatform(
                profile=Profile.PRODUCTION, tsm_root=fs.root, device=NO_DEVICE
            ).profile


def test_tdx_quote_verifies() -> None:
    _needs_fuse()
    maker = tee.tdx()
    with mounted("tdx_guest", maker.generate) as fs:
        platform = TdxPlatform(tsm_root=fs.root, device=NO_DEVICE)
        quote = platform.evidence(RD)
        ev = tdx.verify(quote, collateral=maker.collateral, trust=maker.trust, at=maker.at)
        assert ev.claims["report_data"] == RD.hex()
        assert platform.measurement == ev.claims["mrtd"]
        with pytest.raises(SealingError) as e:
            platform.sealing_key(b"x")
        assert e.value.code == "sealing_key_unavailable"
        assert (
            platform.sealing_mode is SealingMode.DOMAIN_RELEASED
            and platform.monotonic_counter("x") is None
        )
        with pytest.raises(PlatformError) as e:
            SevSnpPlatform(tsm_root=fs.root, device=NO_DEVICE).evidence(RD)
        assert e.value.code == "platform_unsupported"


def test_cca_token_verifies() -> None:
    _needs_fuse()
    maker = tee.cca(personalization=profile_launch_data(Profile.STAGING, 64))
    with mounted("arm_cca_guest", maker.generate) as fs:
        platform = CcaPlatform(root=fs.root)
        token = platform.evidence(RD)
        ev = cca.verify(token, collateral=maker.collateral, at=maker.at)
        assert ev.claims["report_data"] == RD.hex() and ev.claims["debug"] is False
        assert platform.profile is Profile.STAGING


def test_a_concurrent_writer_is_detected_and_the_request_retried(snp_maker: tee.Maker) -> None:
    _needs_fuse()
    with mounted("sev_guest", snp_maker.generate) as fs:
        left = [2]

        def twice(_entry: object) -> bool:
            left[0] -= 1
            return left[0] >= 0

        fs.interfere = twice
        got = get_report(RD, root=fs.root)
        assert got.attempts == 3
        assert sev_snp.parse_claims(got.outblob)["report_data"] == RD.hex()
        fs.interfere = lambda _entry: True
        with pytest.raises(PlatformError) as e:
            get_report(RD, root=fs.root, retries=3)
        assert e.value.code == "platform_busy"
        assert os.listdir(fs.root) == []


def test_a_real_writer_thread_racing_on_the_entries(snp_maker: tee.Maker) -> None:
    """Another thread writes into every entry it sees, through the file system."""
    _needs_fuse()
    with mounted("sev_guest", snp_maker.generate) as fs:
        stop = threading.Event()
        hits = [0]

        def writer() -> None:
            seen: set[str] = set()
            while not stop.is_set():
                for name in os.listdir(fs.root):
                    if name in seen:
                        continue
                    seen.add(name)
                    # every other entry: a writer that changes each entry it sees always wins
                    # on a loaded machine, and no retry count can help (the kernel's contract
                    # is only that a concurrent change is detected)
                    if len(seen) % 2:
                        continue
                    try:
                        with open(fs.root / name / "inblob", "wb") as f:
                            f.write(os.urandom(64))
                        hits[0] += 1
                    except OSError:
                        pass

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for i in range(20):
                rd = bytes([i]) * 64
                got = get_report(rd, root=fs.root, retries=50)
                assert sev_snp.parse_claims(got.outblob)["report_data"] == rd.hex()
        finally:
            stop.set()
            thread.join()
        assert os.listdir(fs.root) == []


@pytest.mark.parametrize("inblob", [b"", bytes(65)])
def test_bad_inblob_is_a_usage_error(inblob: bytes, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        get_report(inblob, root=tmp_path)


def test_bad_privlevel_and_absent_root(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        get_report(RD, privlevel=4, root=tmp_path)
    with pytest.raises(PlatformError) as e:
        get_report(RD, root=tmp_path / "absent")
    assert e.value.code == "platform_absent"
    with pytest.raises(PlatformError) as e:
        CcaPlatform(root=tmp_path / "absent")
    assert e.value.code == "platform_absent"


def test_a_plain_directory_is_not_a_tsm(tmp_path: Path) -> None:
    """mkdir succeeds but there are no attributes: a clear error, and nothing left behind."""
    with pytest.raises(PlatformError) as e:
        get_report(RD, root=tmp_path)
    assert e.value.code == "platform_absent"
    assert os.listdir(tmp_path) == []


# --- the GHCB certificate table --------------------------------------------------------------

VCEK, ASK = (list(configfs_tsm.CERT_GUIDS)[i] for i in (0, 2))


def test_certificate_table_round_trip_and_unknown_guid() -> None:
    other = uuid.UUID("12345678-1234-5678-1234-567812345678")
    table = configfs_tsm.build_cert_table({VCEK: b"vcek", ASK: b"ask!", other: b"x"})
    assert parse_cert_table(table) == {
        "vcek.der": b"vcek",
        "ask.der": b"ask!",
        f"{other}.der": b"x",
    }
    assert parse_cert_table(bytes(24)) == {}


@pytest.mark.parametrize("cut", [0, 10, 23, 47])
def test_truncated_certificate_table(cut: int) -> None:
    table = configfs_tsm.build_cert_table({VCEK: b"vcek"})
    with pytest.raises(MalformedError):
        parse_cert_table(table[:cut])


def test_entry_pointing_outside_the_table() -> None:
    table = bytearray(configfs_tsm.build_cert_table({VCEK: b"vcek"}))
    table[20:24] = (10_000).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        parse_cert_table(bytes(table))
    table[16:20] = (0).to_bytes(4, "little")  # offset inside the entries
    table[20:24] = (4).to_bytes(4, "little")
    with pytest.raises(MalformedError):
        parse_cert_table(bytes(table))


@given(st.binary(max_size=400))
def test_certificate_table_fuzz_raises_only_malformed(data: bytes) -> None:
    try:
        parse_cert_table(data)
    except MalformedError:
        pass


# --- platform="auto" -------------------------------------------------------------------------


def test_detect_reads_the_configfs_provider(snp_maker: tee.Maker, tmp_path: Path) -> None:
    from veritee.platforms.detect import Interfaces, detect, open_hardware

    nothing = Interfaces(tsm_root=tmp_path / "none", sev_guest=NO_DEVICE, tdx_guest=NO_DEVICE, nsm=NO_DEVICE,
                         tcti=None)  # fmt: skip
    if Path("/dev/tpmrm0").exists():
        pytest.skip("this machine has a TPM: detection would find it")
    assert detect(nothing) is None
    _needs_fuse()
    for provider, maker, name in (("sev_guest", snp_maker, "sev-snp"), ("tdx_guest", tee.tdx(), "tdx"),
                                  ("arm_cca_guest", tee.cca(), "cca")):  # fmt: skip
        with mounted(provider, maker.generate) as fs:
            where = Interfaces(
                tsm_root=fs.root, sev_guest=NO_DEVICE, tdx_guest=NO_DEVICE, nsm=NO_DEVICE
            )
            assert detect(where) == name
            assert open_hardware(name, state_dir=tmp_path, where=where).name == name
            assert os.listdir(fs.root) == []  # the probe entry is gone
    nsm_file = tmp_path / "nsm"
    nsm_file.touch()
    assert detect(Interfaces(tsm_root=tmp_path / "none", nsm=nsm_file)) == "nitro"
    with pytest.raises(UsageError) as e:
        open_hardware("sgx", state_dir=tmp_path)
    assert e.value.code == "platform_unknown"


def test_trust_on_tdx_seals_with_the_domain_released_key(tmp_path: Path) -> None:
    """TDX has no sealing key: Trust seals in domain mode by default, refuses platform mode, and
    reaches for the key broker (here unreachable) instead of failing for want of a key."""
    _needs_fuse()
    from tests.unit.sdk.sdk_pki import TestCA

    from veritee.errors import StorageError
    from veritee.sdk.trust import Trust

    maker = tee.tdx()
    with mounted("tdx_guest", maker.generate) as fs:
        platform = TdxPlatform(tsm_root=fs.root, device=NO_DEVICE)
        with pytest.raises(UsageError) as u:
            Trust("http://127.0.0.1:9", TestCA().cert, platform=platform, store=tmp_path / "a",
                  sealing="platform")  # fmt: skip
        assert u.value.code == "sealing_key_unavailable"
        trust = Trust("http://127.0.0.1:9", TestCA().cert, platform=platform, store=tmp_path / "b")
        assert trust.sealing == "domain"
        with pytest.raises(StorageError) as e:
            trust.seal(b"state")
        assert e.value.code == "service_unreachable"
        trust.close()
