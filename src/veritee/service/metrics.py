"""A small Prometheus text-format registry (counters and a latency histogram), thread-safe."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(items: tuple[tuple[str, str], ...]) -> str:
    if not items:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), "").replace(chr(34), "")}"' for k, v in items)
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._help: dict[str, str] = {}
        self._hist: dict[tuple[tuple[str, str], ...], list[float]] = {}
        self._hist_sum: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)

    def inc(self, name: str, help_text: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help.setdefault(name, help_text)
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + amount

    def observe(self, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts = self._hist.setdefault(key, [0.0] * (len(BUCKETS) + 1))
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    counts[i] += 1
            counts[-1] += 1
            self._hist_sum[key] += seconds

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines.append(f"# HELP {name} {self._help.get(name, name)}")
                lines.append(f"# TYPE {name} counter")
                for key, value in sorted(series.items()):
                    lines.append(f"{name}{_labels(key)} {value:g}")
            name = "veritee_request_duration_seconds"
            lines.append(f"# HELP {name} HTTP request latency")
            lines.append(f"# TYPE {name} histogram")
            for key, counts in sorted(self._hist.items()):
                for i, b in enumerate(BUCKETS):
                    lines.append(f"{name}_bucket{_labels((*key, ('le', str(b))))} {counts[i]:g}")
                lines.append(f"{name}_bucket{_labels((*key, ('le', '+Inf')))} {counts[-1]:g}")
                lines.append(f"{name}_sum{_labels(key)} {self._hist_sum[key]:g}")
                lines.append(f"{name}_count{_labels(key)} {counts[-1]:g}")
        return "\n".join(lines) + "\n"
