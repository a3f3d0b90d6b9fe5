"""bench/bench_peers.py's pure parts and driver protocol (no peer is installed or timed here)."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from tests.conftest import testvectors_dir as tv_dir

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench" / "bench_peers.py"
DRIVERS = ROOT / "bench" / "peers"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bp = _load(BENCH, "bench_peers_under_test")
driver = _load(DRIVERS / "_driver.py", "bench_peers_driver_under_test")


def test_parse_reply_takes_one_json_object() -> None:
    assert bp.parse_reply('{"calls": 3, "seconds": 0.5}\n') == {"calls": 3, "seconds": 0.5}


@pytest.mark.parametrize("line", ["", "\n", "[1, 2]", '"text"', '{"error": "unknown op"}'])
def test_parse_reply_refuses_no_answer_non_objects_and_errors(line: str) -> None:
    with pytest.raises(ValueError):
        bp.parse_reply(line)


def test_parse_reply_refuses_truncated_json() -> None:
    with pytest.raises(ValueError):  # json.JSONDecodeError is a ValueError
        bp.parse_reply('{"calls": 3, "seco')


def test_rate_is_calls_per_second() -> None:
    assert bp.rate({"calls": 300, "seconds": 0.5}) == pytest.approx(600.0)


@pytest.mark.parametrize("reply", [
    {}, {"calls": 0, "seconds": 1.0}, {"calls": 5, "seconds": 0}, {"calls": 5, "seconds": -1.0},
    {"calls": 2.5, "seconds": 1.0}, {"calls": True, "seconds": 1.0}, {"calls": 5, "seconds": "1"},
    {"calls": 5, "seconds": float("nan")},
])  # fmt: skip
def test_rate_refuses_malformed_time_answers(reply: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        bp.rate(reply)


def test_median_ratio_is_the_median_of_the_rounds_ratios() -> None:
    # rounds: 2/1, 4/1, 6/2 -> 2, 4, 3 -> median 3 (not the ratio of the medians, 4/1)
    assert bp.median_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == pytest.approx(3.0)
    assert bp.median_ratio([1.0, 3.0], [2.0, 2.0]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("ours", "theirs"), [([], []), ([1.0], [1.0, 2.0]), ([1.0], [0.0]), ([-1.0], [1.0])]
)
def test_median_ratio_refuses_unpaired_or_non_positive_rates(
    ours: list[float], theirs: list[float]
) -> None:
    with pytest.raises(ValueError):
        bp.median_ratio(ours, theirs)


def test_rounds_alternate_which_side_runs_first() -> None:
    assert [bp.peer_first(i) for i in range(4)] == [True, False, True, False]


def test_ratio_line_format() -> None:
    assert bp.ratio_line("tdx", "dcap-qvl", 3.456) == "peer-ratio tdx dcap-qvl 3.46"


def test_agreement_counts_and_lists_disagreements() -> None:
    ours = {"good": {"ok": True}, "sig": {"ok": False, "why": "x"}, "trunc": {"ok": False}}
    theirs = {"good": {"ok": True}, "sig": {"ok": True, "why": ""}, "trunc": {"ok": False}}
    assert bp.agreement(ours, theirs) == (2, 3, ["sig"])
    assert bp.verdict_text(ours["sig"]) == "refuse (x)"
    assert bp.verdict_text(theirs["sig"]) == "accept"


def test_agreement_refuses_a_case_without_a_verdict_on_one_side() -> None:
    with pytest.raises(ValueError):
        bp.agreement({"good": {"ok": True}}, {"good": {"ok": True}, "other": {"ok": False}})


def test_flip_changes_exactly_one_bit() -> None:
    data = bytes(range(16))
    for offset in (0, 7, -1):
        out = bp.flip(data, offset)
        assert len(out) == len(data)
        diff = [i for i in range(16) if out[i] != data[i]]
        assert diff == [offset % 16] and out[offset] ^ data[offset] == 1
    with pytest.raises(IndexError):
        bp.flip(data, 16)


def _read_pcr_blob(blob: bytes) -> tuple[dict[int, int], list[bytes]]:
    """An independent reader of tpm2-tools' PCR file layout (as the TSS writes it)."""
    (count,) = struct.unpack_from("<I", blob, 0)
    selections, o = {}, 4
    for _ in range(16):
        alg, size = struct.unpack_from("<HB", blob, o)
        selections[alg] = int.from_bytes(blob[o + 3 : o + 3 + size], "little") if size else 0
        o += 8
    assert count == 1
    (digests,) = struct.unpack_from("<I", blob, o)
    o += 4
    values = []
    for _ in range(digests):
        (n,) = struct.unpack_from("<I", blob, o)
        o += 4
        for j in range(8):
            (size,) = struct.unpack_from("<H", blob, o)
            if j < n:
                values.append(blob[o + 2 : o + 2 + size])
            o += 66
    assert o == len(blob)
    return selections, values


def test_pcr_blob_layout_for_24_sha256_pcrs() -> None:
    pcrs = {i: bytes([i]) * 32 for i in range(24)}
    blob = bp.pcr_blob(0x000B, pcrs)
    assert len(blob) == 4 + 16 * 8 + 4 + 3 * (4 + 8 * 66)
    selections, values = _read_pcr_blob(blob)
    assert selections[0x000B] == 0xFFFFFF
    assert values == [pcrs[i] for i in range(24)]


def test_pcr_blob_sparse_selection_keeps_index_order() -> None:
    pcrs = {16: b"\x10" * 32, 0: b"\x00" * 32, 7: b"\x07" * 32}
    selections, values = _read_pcr_blob(bp.pcr_blob(0x000B, pcrs))
    assert selections[0x000B] == (1 << 0) | (1 << 7) | (1 << 16)
    assert values == [pcrs[0], pcrs[7], pcrs[16]]


@pytest.mark.parametrize("pcrs", [{}, {24: b"\0" * 32}, {-1: b"\0" * 32}])
def test_pcr_blob_refuses_bad_indices(pcrs: dict[int, bytes]) -> None:
    with pytest.raises(ValueError):
        bp.pcr_blob(0x000B, pcrs)


def test_proto_encoding_reads_back_with_the_tpm_parser() -> None:
    from veritee.evidence import tpm

    data = bp.proto([(1, b"abc"), (2, 300), (7, b"x" * 200)])
    fields = list(tpm._fields(data, "t"))
    assert [(n, v if isinstance(v, int) else bytes(v)) for n, v in fields] == [
        (1, b"abc"), (2, 300), (7, b"x" * 200)]  # fmt: skip


def test_time_calls_counts_calls_and_time() -> None:
    seen = []
    out = driver.time_calls(lambda: seen.append(1), 0.01)
    assert out["calls"] == len(seen) > 0 and out["seconds"] >= 0.01


def test_why_is_short_and_names_the_exception() -> None:
    assert driver.why(ValueError("bad   \n thing")) == "ValueError: bad thing"
    assert driver.why(KeyError()) == "KeyError"
    assert len(driver.why(RuntimeError("x" * 500))) < 100


def _converse(
    script: Path, requests: list[dict[str, object]], cwd: Path
) -> list[dict[str, object]]:
    text = "".join(json.dumps(r) + "\n" for r in requests)
    r = subprocess.run([sys.executable, str(script)], input=text, capture_output=True, text=True,
                       cwd=cwd, timeout=120, env={"PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return [bp.parse_reply(line) for line in r.stdout.splitlines()]


def test_driver_protocol_load_verdicts_time(tmp_path: Path) -> None:
    script = tmp_path / "drive_toy.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(DRIVERS)!r})
        from _driver import Refused, serve

        def prepare(case):
            if case["kind"] == "broken":
                raise ValueError("cannot take this in")
            def call():
                print("a peer printing to stdout")  # must not reach the protocol
                if case["kind"] == "refuse":
                    raise Refused("no")
            return call

        serve(prepare)
    """)
    )
    replies = _converse(script, [
        {"op": "load", "cases": {"good": {"kind": "ok"}, "bad": {"kind": "refuse"}, "odd": {"kind": "broken"}}},
        {"op": "verdicts"},
        {"op": "time", "case": "good", "seconds": 0.01},
    ], tmp_path)  # fmt: skip
    assert len(replies) == 3
    assert replies[0]["failed_to_load"] == {"odd": "ValueError: cannot take this in"}
    assert replies[1]["verdicts"] == {
        "good": {"ok": True, "why": ""}, "bad": {"ok": False, "why": "Refused: no"},
        "odd": {"ok": False, "why": "Refused: ValueError: cannot take this in"}}  # fmt: skip
    assert bp.rate(replies[2]) > 0


def test_driver_answers_an_unknown_op_with_an_error(tmp_path: Path) -> None:
    script = tmp_path / "drive_toy.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(DRIVERS)!r})\n"
                      "from _driver import serve\nserve(lambda case: (lambda: None))\n")  # fmt: skip
    r = subprocess.run([sys.executable, str(script)], input='{"op": "nonsense"}\n', capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    with pytest.raises(ValueError, match="unknown op"):
        bp.parse_reply(r.stdout)


def test_help_runs() -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "peer-ratio" in r.stdout and "--rounds" in r.stdout


def test_unknown_format_is_a_usage_error() -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--only", "nope", "--no-install"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0


def test_veritee_driver_accepts_every_good_vector_and_refuses_every_mutant(tmp_path: Path) -> None:
    """The cases both sides are given, run through veritee's driver (no peer, no timing)."""
    tv_dir()  # skips with a message when ../shared/testvectors is absent
    cases: dict[str, dict[str, object]] = {}
    for fmt, _peer in bp.COMPARISONS:
        folder = tmp_path / fmt
        folder.mkdir()
        built = bp.BUILDERS[fmt](fmt, folder)
        assert set(built.ours) == set(built.theirs) and "good" in built.ours
        cases.update({f"{fmt}/{name}": case for name, case in built.ours.items()})
    replies = _converse(
        DRIVERS / "drive_veritee.py", [{"op": "load", "cases": cases}, {"op": "verdicts"}], tmp_path
    )
    assert replies[0]["failed_to_load"] == {}
    verdicts = replies[1]["verdicts"]
    assert isinstance(verdicts, dict)
    accepted = {name for name, verdict in verdicts.items() if verdict["ok"]}
    # good vectors, and zeros after a DCAP quote's signature data (outside every signature:
    # ignored and recorded, docs/reason-codes.md); every other mutant is refused
    expected = {f"{fmt}/good" for fmt, _ in bp.COMPARISONS}
    expected |= {
        "nvidia-gpu/second-gpu-good",
        "nitro/aws-sample",
        "nitro-cold/aws-sample",
        "tdx/appended-zeros",
        "sgx/appended-zeros",
    }
    assert accepted == expected


def test_resigned_nitro_sample_keeps_the_shape_and_verifies_under_its_own_root() -> None:
    import cbor2
    from cryptography import x509

    from veritee.collateral import Collateral
    from veritee.errors import VerificationError
    from veritee.evidence import nitro

    real = (tv_dir() / "nitro" / "nitrite_attestation.cbor").read_bytes()
    doc, root = bp.resign_nitro(real)
    fields, original = cbor2.loads(cbor2.loads(doc)[2]), cbor2.loads(cbor2.loads(real)[2])
    assert len(fields["user_data"]) <= 512 and len(fields["nonce"]) <= 512
    assert len(fields["cabundle"]) == len(original["cabundle"]) and fields["cabundle"][0] == root
    assert fields["pcrs"] == original["pcrs"] and fields["module_id"] == original["module_id"]
    names = [
        x509.load_der_x509_certificate(d).subject
        for d in [*fields["cabundle"], fields["certificate"]]
    ]
    assert names == [
        x509.load_der_x509_certificate(d).subject
        for d in [*original["cabundle"], original["certificate"]]
    ]
    at = bp.datetime(2024, 9, 7, 14, 40, tzinfo=bp.UTC)
    own = nitro.NitroTrust(root_sha256=(bp.hashlib.sha256(root).hexdigest(),))
    nitro.verify(doc, collateral=Collateral.empty(), at=at, trust=own)
    with pytest.raises(VerificationError):  # not under the pinned AWS root
        nitro.verify(doc, collateral=Collateral.empty(), at=at)
