"""The service's Prometheus metrics, on prometheus-client; right with several worker processes.

One :class:`Metrics` per app. With one process its series live in a registry of its own (so
several apps in one process, as in the tests, never mix). Under ``veritee serve --workers N``
the CLI gives every worker the same private folder in ``$PROMETHEUS_MULTIPROC_DIR`` (made empty
for each start of the service, removed at its end): prometheus-client's multiprocess mode keeps
each worker's values in memory-mapped files there, and a scrape of any worker adds up the files
of all of them, so ``/metrics`` tells the totals of the whole service, not of the worker that
happened to answer.

Adding a metric is one call where the event happens; a series is declared by its first use (its
label names are fixed then)::

    ctx.metrics.inc("veritee_releases_total", "Secret releases", outcome="released")
    ctx.metrics.gauge("veritee_collateral_next_update_seconds", "Seconds until ...",
                      mode="max", vendor="intel", item="tcb_info:00906ED50000").set(seconds)

A gauge needs a ``mode``: how the values the workers hold are combined into one
(prometheus-client's ``multiprocess_mode``): ``"max"``/``"min"`` for a fact every worker sees
alike (a collateral item's expiry), ``"livesum"`` for what the live workers hold together
(requests in progress), ``"mostrecent"`` for the last value set by any worker. Values computed
at scrape time instead (from the database or a shared folder) come from a callback added with
:meth:`Metrics.add_collector`, run by the worker that answers the scrape.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import Metric

__all__ = ["BUCKETS", "CONTENT_TYPE", "MULTIPROC_ENV", "GaugeMode", "Metrics", "multiprocess_dir"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

GaugeMode = Literal["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
                    "mostrecent", "livemostrecent"]  # fmt: skip

# Counters are exposed without their ``_created`` twin (a per-process start time, meaningless
# once the workers' values are added up, and absent in multiprocess mode anyway).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: The most labelled series :class:`Metrics` keeps at hand (the rest are looked up each time).
MAX_CACHED_SERIES = 4096
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db\Z")


def multiprocess_dir() -> str | None:
    """The folder of the workers' shared values when prometheus-client runs in multiprocess
    mode in this process (chosen when it was first imported, from ``$PROMETHEUS_MULTIPROC_DIR``),
    else None."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Counters, gauges and the request-latency histogram of one app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.multiprocess_dir = multiprocess_dir()
        # Multiprocess mode: values go to the shared files, never to a registry of this process.
        self._registry: CollectorRegistry | None = (
            None if self.multiprocess_dir else CollectorRegistry()
        )
        self._metrics: dict[str, tuple[str, tuple[str, ...], Any]] = {}
        # (kind, name, labels as given) -> the labelled series: a request's counts then cost a
        # dict lookup each instead of prometheus-client's label validation under its lock
        self._children: dict[tuple[Any, ...], Any] = {}
        self._collectors: list[Callable[[], Iterable[Metric]]] = []
        #: HTTP requests this process is answering now (kept by the app's request middleware).
        self.requests_in_progress = 0

    # --- declaring and updating ------------------------------------------------------------
    def _get(
        self, kind: str, name: str, help_text: str, labelnames: tuple[str, ...], **kw: Any
    ) -> Any:
        with self._lock:
            known = self._metrics.get(name)
            if known is None:
                if not _NAME.match(name):
                    raise ValueError(f"not a metric name: {name!r}")
                cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
                metric = cls(name, help_text, labelnames, registry=self._registry, **kw)
                self._metrics[name] = known = (kind, labelnames, metric)
        if known[0] != kind or known[1] != labelnames:
            raise ValueError(
                f"metric {name} is a {known[0]} with labels {known[1]}; used as a {kind} with {labelnames}"
            )
        return known[2]

    def _child(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        child = self._children.get(key)
        if child is None:
            child = make()
            if len(self._children) < MAX_CACHED_SERIES:  # label values are few; bounded anyway
                self._children[key] = child
        return child

    def counter(self, name: str, help_text: str, **labels: str) -> Any:
        """The counter ``name`` with these labels (``.inc(amount)``)."""
        key = ("counter", name, *labels.items())
        child = self._children.get(key)
        if child is not None:
            return child
        return self._child(key, lambda: self._counter(name, help_text, labels))

    def _counter(self, name: str, help_text: str, labels: dict[str, str]) -> Any:
        names = tuple(sorted(labels))
        metric = self._get("counter", name, help_text, names)
        return metric.labels(**labels) if names else metric

    def inc(self, name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
        self.counter(name, help_text, **labels).inc(amount)

    def gauge(self, name: str, help_text: str, *, mode: GaugeMode, **labels: str) -> Any:
        """The gauge ``name`` with these labels (``.set(v)``, ``.inc()``, ``.dec()``); ``mode``
        combines the workers' values (see the module's documentation)."""

        def make() -> Any:
            names = tuple(sorted(labels))
            metric = self._get("gauge", name, help_text, names, multiprocess_mode=mode)
            return metric.labels(**labels) if names else metric

        return self._child(("gauge", name, mode, *labels.items()), make)

    def observe(self, seconds: float, **labels: str) -> None:
        """One request's latency into ``veritee_request_duration_seconds``."""
        self.histogram(**labels).observe(seconds)

    def histogram(self, **labels: str) -> Any:
        """The series of ``veritee_request_duration_seconds`` with these labels (``.observe``)."""

        def make() -> Any:
            names = tuple(sorted(labels))
            metric = self._get("histogram", "veritee_request_duration_seconds", "HTTP request latency",
                               names, buckets=BUCKETS)  # fmt: skip
            return metric.labels(**labels) if names else metric

        return self._child(("histogram", *labels.items()), make)

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Metric families computed at each scrape (prometheus-client ``Metric`` objects, e.g.
        ``GaugeMetricFamily``) by the process that answers it: for facts read from the database
        or a shared folder, the same whichever worker answers."""
        self._collectors.append(collect)

    # --- exposition --------------------------------------------------------------------------
    def render(self) -> str:
        """The Prometheus text exposition: the whole service's totals in multiprocess mode."""
        registry = CollectorRegistry()
        if self.multiprocess_dir:
            self._forget_dead_workers()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            sources = list(self._collectors)
        else:
            assert self._registry is not None
            sources = [self._registry.collect, *self._collectors]
        if sources:
            registry.register(_Chain(sources))
        return generate_latest(registry).decode()

    def _forget_dead_workers(self) -> None:
        """``live*`` gauges of a worker that died without shutting down (killed; restarted by
        the supervisor under a new pid) stop counting."""
        assert self.multiprocess_dir is not None
        for path in glob.glob(os.path.join(self.multiprocess_dir, "gauge_live*_*.db")):
            m = _LIVE_FILE.search(os.path.basename(path))
            if m is None:
                continue
            pid = int(m.group(1))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]
            except PermissionError:  # alive, under another user
                pass

    def close(self) -> None:
        """This worker is exiting: its ``live*`` gauges stop counting (its counters stay)."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


class _Chain:
    """A collector over several callbacks (one registration, no name checks across them)."""

    def __init__(self, sources: list[Callable[[], Iterable[Metric]]]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source()
