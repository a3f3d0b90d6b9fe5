"""Charts as inline SVG, drawn on the server (no script, no outside resource).

Every label and tooltip goes through :func:`veritee.service.console.html.h`, so a reason code or
platform name is text inside the SVG, never markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from veritee.service.console.html import Safe, h, join

__all__ = ["COLORS", "bars", "stacked_columns"]

#: Series colours (fill attributes: allowed under the console's CSP, unlike style attributes).
COLORS = {"accepted": "#1b7f3b", "refused": "#b3261e", "released": "#1b7f3b", "denied": "#b3261e"}
_OTHER = ("#3b6fb6", "#8a5cc2", "#c27c0e", "#2a9d8f", "#6c757d")


def _color(name: str, i: int) -> str:
    return COLORS.get(name, _OTHER[i % len(_OTHER)])


def _tick(value: float) -> str:
    """A gridline's value: whole counts only (half of 1 is no count)."""
    return f"{value:g}" if value == int(value) else ""


def _legend(names: Sequence[str], x: int, y: int) -> Safe:
    out = []
    for i, name in enumerate(names):
        shown = name if len(name) <= 17 else name[:16] + "\u2026"
        out.append(h('<rect x="{}" y="{}" width="10" height="10" fill="{}"></rect>'
                     '<text x="{}" y="{}"><title>{}</title>{}</text>', x + i * 130, y, _color(name, i),
                     x + i * 130 + 14, y + 9, name, shown))  # fmt: skip
    return join(out)


def stacked_columns(
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    title: str,
    width: int = 760,
    height: int = 220,
) -> Safe:
    """One column per label (a time bucket), the series stacked in it; ``title`` names the
    chart for screen readers (``<title>``)."""
    left, top, bottom = 40, 24, 38
    plot_h = height - top - bottom
    n = max(len(labels), 1)
    slot = (width - left - 10) / n
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    peak = max([*totals, 1])
    if not series:
        return h('<p class="empty">{}</p>', "nothing to chart yet")
    parts: list[Safe] = [h("<title>{}</title>", title), _legend(list(series), left, 4)]
    for frac in (0.0, 0.5, 1.0):  # gridlines with their values
        y = top + plot_h - frac * plot_h
        parts.append(h('<line x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}" stroke="#e3e5e8"></line>'
                       '<text x="{}" y="{:.1f}" text-anchor="end">{}</text>',
                       left, y, width - 10, y, left - 4, y + 4, _tick(peak * frac)))  # fmt: skip
    every = max(1, len(labels) // 12)
    for i, label in enumerate(labels):
        x = left + i * slot + slot * 0.15
        w = max(slot * 0.7, 1.0)
        base = float(top + plot_h)
        for j, (name, values) in enumerate(series.items()):
            v = values[i]
            if v <= 0:
                continue
            bar = v / peak * plot_h
            base -= bar
            parts.append(h('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">'
                           '<title>{}: {} {}</title></rect>', x, base, w, bar, _color(name, j),
                           label, v, name))  # fmt: skip
        if i % every == 0:
            parts.append(h('<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>',
                           x + w / 2, height - bottom + 14, label))  # fmt: skip
    return h('<svg class="chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}" '
             'xmlns="http://www.w3.org/2000/svg">{}</svg>', width, height, width, height, join(parts))  # fmt: skip


def bars(
    rows: Sequence[tuple[str, Mapping[str, int]]],
    *,
    title: str,
    series: Sequence[str],
    width: int = 760,
) -> Safe:
    """Horizontal bars: one row per label, its series side by side in one stacked bar, with
    the counts written after it."""
    if not rows:
        return h('<p class="empty">{}</p>', "nothing to chart yet")
    label_w, row_h, top = 230, 22, 22
    height = top + row_h * len(rows) + 8
    peak = max([sum(c.values()) for _, c in rows] + [1])
    plot_w = width - label_w - 170
    parts: list[Safe] = [h("<title>{}</title>", title), _legend(list(series), label_w, 4)]
    for i, (label, counts) in enumerate(rows):
        y = top + i * row_h
        shown = label if len(label) <= 34 else label[:33] + "\u2026"
        parts.append(h('<text x="{}" y="{}" text-anchor="end"><title>{}</title>{}</text>',
                       label_w - 6, y + 14, label, shown))  # fmt: skip
        x = float(label_w)
        for j, name in enumerate(series):
            v = counts.get(name, 0)
            if v <= 0:
                continue
            w = v / peak * plot_w
            parts.append(h('<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}">'
                           '<title>{}: {} {}</title></rect>', x, y + 3, w, row_h - 6,
                           _color(name, j), label, v, name))  # fmt: skip
            x += w
        text = " / ".join(f"{counts.get(n, 0)} {n}" for n in series if counts.get(n, 0))
        parts.append(h('<text x="{:.1f}" y="{}">{}</text>', x + 6, y + 14, text))
    return h('<svg class="chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}" '
             'xmlns="http://www.w3.org/2000/svg">{}</svg>', width, height, width, height, join(parts))  # fmt: skip
