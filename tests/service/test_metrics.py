"""veritee.service.metrics in one process: series per app, declared by first use, callbacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily

from veritee.service.metrics import Metrics


def test_counters_gauges_histogram_and_callbacks_render() -> None:
    m = Metrics()
    assert m.multiprocess_dir is None
    m.inc("veritee_decisions_total", "Appraisal decisions", kind="attest", outcome="accept")
    m.inc("veritee_decisions_total", "Appraisal decisions", 2, kind="attest", outcome="accept")
    m.gauge("veritee_test_items", "Items", mode="max", vendor="intel").set(7)
    m.observe(0.003, route="/v1/attest")

    def collateral() -> list[GaugeMetricFamily]:
        g = GaugeMetricFamily("veritee_test_age_seconds", "Age", labels=["item"])
        g.add_metric(["crl"], 42.0)
        return [g]

    m.add_collector(collateral)
    text = m.render()
    assert 'veritee_decisions_total{kind="attest",outcome="accept"} 3.0' in text
    assert "_created" not in text
    assert 'veritee_test_items{vendor="intel"} 7.0' in text
    assert 'veritee_request_duration_seconds_bucket{le="0.005",route="/v1/attest"} 1.0' in text
    assert 'veritee_request_duration_seconds_bucket{le="0.001",route="/v1/attest"} 0.0' in text
    assert 'veritee_test_age_seconds{item="crl"} 42.0' in text


def test_apps_in_one_process_do_not_mix() -> None:
    a, b = Metrics(), Metrics()
    a.inc("veritee_http_requests_total", "HTTP requests", route="/x", status="200")
    assert 'route="/x"' in a.render()
    assert 'route="/x"' not in b.render()


def test_a_series_keeps_its_kind_and_labels() -> None:
    m = Metrics()
    m.inc("veritee_releases_total", "Secret releases", outcome="released")
    with pytest.raises(ValueError, match="labels"):
        m.inc("veritee_releases_total", "Secret releases", result="released")
    with pytest.raises(ValueError, match="counter"):
        m.gauge("veritee_releases_total", "Secret releases", mode="max", outcome="x")
    with pytest.raises(ValueError, match="not a metric name"):
        m.inc("veritee releases", "bad")
    with pytest.raises(ValueError):
        m.gauge("veritee_g", "g", mode="average")  # type: ignore[arg-type]


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.inc("veritee_http_requests_total", "HTTP requests", route='/a"b\\c\nd', status="200")
    assert r'route="/a\"b\\c\nd"' in m.render()


def test_request_series_kept_by_the_middleware_count_each_route_and_status(tmp_path: Path) -> None:
    """The request middleware keeps the series it updates (per route, per route and status):
    every request is still counted under its own route and status, and timed under its route."""
    import datetime as dt
    import re

    from fastapi.testclient import TestClient

    from veritee.domain import Domain
    from veritee.service.app import create_app
    from veritee.service.settings import Settings

    domain = Domain.create(tmp_path / "d", name="t", now=dt.datetime.now(dt.UTC))
    with TestClient(create_app(Settings(data_dir=domain.path))) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            assert client.post("/v1/challenge").status_code == 200
        assert client.get("/nowhere").status_code == 404
        assert client.post("/healthz").status_code == 405
        text = client.get("/metrics").text

    def value(pattern: str) -> float:
        m = re.search("^" + pattern + r" (\S+)$", text, re.M)
        assert m is not None, pattern
        return float(m.group(1))

    total = r'veritee_http_requests_total\{route="%s",status="%s"\}'
    assert value(total % ("/healthz", "200")) == 3.0
    assert value(total % ("/v1/challenge", "200")) == 3.0
    assert value(total % ("unmatched", "404")) == 1.0
    assert value(total % ("/healthz", "405")) == 1.0
    count = r'veritee_request_duration_seconds_count\{route="%s"\}'
    assert value(count % "/healthz") == 4.0
    assert value(count % "/v1/challenge") == 3.0
    assert value(r"veritee_http_requests_in_progress") == 1.0  # the scrape itself
