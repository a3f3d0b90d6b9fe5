"""The web console's parts without a service: escaping, SVG charts, series over time."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from veritee.service.console import charts
from veritee.service.console.html import CSP, CSS, Safe, attr_url, esc, h, table

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
HOSTILE = [
    "<script>alert(1)</script>",
    '"><svg onload=alert(1)>',
    "' onmouseover='x",
    "&amp;",
    "</text><script>",
]


def test_every_argument_is_escaped_and_safe_fragments_are_not_twice() -> None:
    for bad in HOSTILE:
        out = h('<a title="{}">{}</a>', bad, bad)
        assert "<script" not in out and "<svg" not in out and "'" not in out.replace("&#x27;", "")
        assert out.count("<") == 2  # the template's own tags only
    assert h("<p>{}</p>", Safe("<b>x</b>")) == "<p><b>x</b></p>"
    assert esc(None) == "&#8211;" and esc(True) == "yes" and h("{:.1f}", 2.25) == "2.2"
    assert table(["<h>"], [["<td>"]]).count("&lt;") == 2
    assert "nothing recorded" in table(["a"], [])
    assert (
        attr_url("/ui/policies/diff", name="a&b=<c>", a=1)
        == "/ui/policies/diff?name=a%26b%3D%3Cc%3E&a=1"
    )
    with pytest.raises(ValueError):
        attr_url("javascript:alert(1)")
    # the CSP allows no script and pins the one style block by its hash
    assert "script" not in CSP and "'unsafe-inline'" not in CSP and "sha256-" in CSP and CSS


def test_charts_are_svg_with_escaped_labels() -> None:
    svg = charts.stacked_columns(
        ["00:00", HOSTILE[0]], {"accepted": [1, 2], "refused": [0, 3]}, title=HOSTILE[1]
    )
    assert svg.startswith("<svg") and "<script" not in svg and "<svg onload" not in svg
    # one bar per non-empty count (each with its tooltip), besides the legend's swatches
    assert len(re.findall(r'fill="#b3261e"><title>', svg)) == 1
    assert len(re.findall(r'fill="#1b7f3b"><title>', svg)) == 2
    bars = charts.bars(
        [(HOSTILE[4], {"refused": 3}), ("x" * 80, {"refused": 1})], title="t", series=("refused",)
    )
    assert (
        "<script" not in bars and "</text><script>" not in bars and "\u2026" in bars
    )  # long labels cut
    assert "nothing to chart" in charts.bars([], title="t", series=("refused",))
    assert charts.stacked_columns([], {"accepted": []}, title="empty").startswith("<svg")


def test_series_by_key_over_time_keeps_the_top_keys_and_sums_the_rest() -> None:
    from veritee.service.console import data

    now = NOW + dt.timedelta(minutes=30)  # the last bucket is the current hour, 12:00 to 13:00

    def decision(
        minutes_ago: int, platform: str, accepted: bool, codes: tuple[str, ...] = ()
    ) -> data.Decision:
        return data.Decision(1, now - dt.timedelta(minutes=minutes_ago), "attest", accepted, "-", platform,
                             tuple((c, "m") for c in codes), (), {})  # fmt: skip

    items = [decision(5, f"p{i}", True) for i in range(7)] + [decision(5, "p0", False, ("a", "b")),
             decision(70, "p1", False), decision(60 * 30, "p1", False)]  # fmt: skip
    labels, series = data.series_by(
        items, lambda d: {d.platform}, now=now, length=dt.timedelta(hours=1), count=24
    )
    assert len(labels) == 24 and list(series)[:2] == ["p0", "p1"] and "other" in series
    assert series["p0"][-1] == 2 and series["p1"][-2] == 1  # the 30 h old one is out of range
    assert sum(map(sum, series.values())) == 9
    _, reasons = data.series_by(
        items, data.reason_codes, now=now, length=dt.timedelta(hours=1), count=24
    )
    assert reasons == {
        "a": [0] * 23 + [1],
        "b": [0] * 23 + [1],
        "(no reason recorded)": [0] * 22 + [1, 0],
    }
    assert "nothing to chart" in charts.stacked_columns(labels, {}, title="none")


def test_latest_decisions_read_back_from_the_head_in_batches(tmp_path: object) -> None:
    from pathlib import Path

    from veritee.service.console import data
    from veritee.service.storage import Storage

    store = Storage(f"sqlite:///{Path(str(tmp_path)) / 'db.sqlite'}")
    store.migrate()
    with store.transaction() as tx:
        for i in range(1, 121):  # every 3rd entry an admin action, every 5th a refusal
            decision = None if i % 3 == 0 else "reject" if i % 5 == 0 else "accept"
            tx.append_audit(
                kind="attest", actor="t", subject=str(i), decision=decision, details={}, now=NOW
            )
    with store.transaction(readonly=True) as tx:
        every = data.latest_decisions(tx, 50, batch=7)
        refused = data.latest_decisions(tx, 50, lambda d: not d.accepted, batch=7)
        assert data.latest_decisions(tx, 5) == every[:5]
    store.close()
    assert [d.seq for d in every] == [i for i in range(120, 0, -1) if i % 3][:50]
    assert [d.seq for d in refused] == [i for i in range(120, 0, -1) if i % 3 and i % 5 == 0]
