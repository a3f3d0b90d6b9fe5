"""Audit anchors: `veritee audit head` signs the head; `audit verify --anchor` catches a log that
was truncated or rebuilt behind a valid chain, and refuses forged or garbled anchor files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.service.storage.storage_helpers import drop_audit_triggers, raw_execute

from veritee.anchors import read_anchor, sign_anchor
from veritee.cli.exits import EXIT_NOT_ACCEPTED, EXIT_USAGE
from veritee.cli.main import _register, cli
from veritee.domain import Domain
from veritee.errors import MalformedError, VerificationError
from veritee.service.storage import Storage

_register()
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _append(domain: Domain, n: int, tag: str = "a") -> None:
    store = Storage(domain.database_url)
    try:
        for i in range(n):
            with store.transaction() as tx:
                tx.append_audit(kind="attest", actor="w", subject=f"{tag}{i}", decision="accept",
                                details={"i": i}, now=T0)  # fmt: skip
    finally:
        store.close()


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    runner = CliRunner()
    data = tmp_path / "d"
    assert runner.invoke(cli, ["init", "--data", str(data)]).exit_code == 0
    d = Domain.open(data)
    _append(d, 3)
    return d


def _head(domain: Domain, out: Path) -> Path:
    r = CliRunner().invoke(cli, ["audit", "head", "--data", str(domain.path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _verify(domain: Domain, *anchors: Path) -> tuple[int, str]:
    args = ["audit", "verify", "--data", str(domain.path)]
    for a in anchors:
        args += ["--anchor", str(a)]
    r = CliRunner().invoke(cli, args)
    return r.exit_code, r.output


def test_anchor_holds_while_the_log_only_grows(domain: Domain, tmp_path: Path) -> None:
    first = _head(domain, tmp_path / "h3.jws")
    anchor = read_anchor(first.read_bytes(), domain.token_key.public_key())
    assert anchor.seq == 3 and anchor.issuer == domain.name
    _append(domain, 2, "b")
    second = _head(domain, tmp_path / "h5.jws")
    code, out = _verify(domain, first, second)
    assert code == 0 and "intact: 5 entries; holds 2 anchor(s)" in out


def _delete_behind_the_triggers(domain: Domain, sql: str) -> None:
    """What someone with write access to the database file can do."""
    store = Storage(domain.database_url)
    try:
        drop_audit_triggers(store)
        raw_execute(store, sql)
    finally:
        store.close()


def test_truncated_log_is_caught_though_its_chain_verifies(domain: Domain, tmp_path: Path) -> None:
    anchor = _head(domain, tmp_path / "h.jws")
    _delete_behind_the_triggers(domain, "DELETE FROM audit_log WHERE seq = 3")
    assert _verify(domain)[0] == 0  # the shorter chain is itself intact
    code, out = _verify(domain, anchor)
    assert (
        code == EXIT_NOT_ACCEPTED and "truncated" in out and "names entry 3, the log has 2" in out
    )


def test_rebuilt_log_is_caught_though_its_chain_verifies(domain: Domain, tmp_path: Path) -> None:
    anchor = _head(domain, tmp_path / "h.jws")
    _delete_behind_the_triggers(domain, "DELETE FROM audit_log")
    _append(domain, 4, "forged")  # a fresh, valid chain, longer than before
    assert _verify(domain)[0] == 0
    code, out = _verify(domain, anchor)
    assert code == EXIT_NOT_ACCEPTED and "rewritten" in out and "entry 3" in out


def test_forged_and_garbled_anchors_are_refused(domain: Domain, tmp_path: Path) -> None:
    good = _head(domain, tmp_path / "good.jws").read_text().strip()
    other = Domain.create(tmp_path / "other", name="other", now=T0)
    foreign = tmp_path / "foreign.jws"
    foreign.write_text(sign_anchor(other.token_key, kid=other.token_kid, issuer="other", seq=3,
                                   entry_hash=bytes(32), now=T0))  # fmt: skip
    code, out = _verify(domain, foreign)
    assert code == EXIT_NOT_ACCEPTED and "foreign.jws" in out and "signature" in out

    head, payload, sig = good.split(".")
    cases = {
        "tampered.jws": f"{head}.{payload[:-2]}AA.{sig}",
        "garbage.jws": "not an anchor",
        "truncated.jws": good[: len(good) // 2],
        "huge.jws": "A" * 10_000,
        "binary.jws": "\udcff",
        "empty.jws": "",
    }
    for name, text in cases.items():
        f = tmp_path / name
        f.write_bytes(text.encode("utf-8", "surrogateescape"))
        code, out = _verify(domain, f)
        assert code in (EXIT_NOT_ACCEPTED, EXIT_USAGE), (name, out)
        assert name in out, (name, out)
    code, out = _verify(domain, tmp_path / "missing.jws")
    assert code == EXIT_USAGE


def test_read_anchor_checks_every_field(domain: Domain) -> None:
    import jwt

    key, pub = domain.token_key, domain.token_key.public_key()

    def make(payload: dict[str, object], typ: str = "veritee-audit-head+jwt") -> str:
        return jwt.encode(payload, key, algorithm="ES256", headers={"typ": typ})

    base = {"iss": "x", "seq": 1, "entry_hash": "00" * 32, "iat": 1}
    assert read_anchor(make(base), pub).seq == 1
    for bad in ({"seq": -1}, {"seq": "1"}, {"seq": True}, {"entry_hash": "00"},
                {"entry_hash": "zz" * 32}, {"entry_hash": 5}, {"iat": "1"}):  # fmt: skip
        with pytest.raises(MalformedError):
            read_anchor(make(base | bad), pub)
    with pytest.raises(MalformedError):
        read_anchor(make(base, typ="JWT"), pub)
    with pytest.raises(MalformedError):
        read_anchor(make({k: v for k, v in base.items() if k != "iss"}), pub)
    other = Domain.create(domain.path.parent / "o2", name="o", now=T0)
    with pytest.raises(VerificationError) as e:
        read_anchor(jwt.encode(base, other.token_key, algorithm="ES256",
                               headers={"typ": "veritee-audit-head+jwt"}), pub)  # fmt: skip
    assert e.value.code == "anchor_signature"


def test_anchor_of_the_empty_log_always_holds(tmp_path: Path) -> None:
    data = tmp_path / "e"
    assert CliRunner().invoke(cli, ["init", "--data", str(data)]).exit_code == 0
    d = Domain.open(data)
    anchor = _head(d, tmp_path / "h0.jws")
    assert _verify(d, anchor)[0] == 0
